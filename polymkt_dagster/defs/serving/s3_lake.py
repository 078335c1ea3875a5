"""serving/s3_lake: the lake mirrored to S3 (verified uploads, only what changed).

The "s3" resource is dagster-aws ``S3Resource`` configured from POLYMKT_S3_* variables
(defs/shared/resources.py); the keys come through ``dg.EnvVar`` so their values never show in
the UI or run config.
"""

import dagster as dg
from dagster_aws.s3 import S3Resource

from polymkt_dagster.defs.ingest.assets import (
    CTF_EVENTS_KEY,
    EVENTS_KEY,
    MARKETS_KEY,
    ORDER_FILLED_KEY,
    TRADES_KEY,
)
from polymkt_dagster.defs.shared.asset_keys import S3_LAKE_KEY
from polymkt_dagster.defs.shared.resources import PolymktResource
from polymkt_dagster.lib.serving.s3_lake import ensure_bucket, mirror_lake


@dg.asset(
    key=S3_LAKE_KEY,
    deps=[MARKETS_KEY, EVENTS_KEY, ORDER_FILLED_KEY, TRADES_KEY, CTF_EVENTS_KEY],
    group_name="serving",
    kinds={"s3", "parquet"},
    output_required=False,
    description=(
        "The lake mirrored to s3://POLYMKT_S3_BUCKET/POLYMKT_S3_PREFIX in the lake layout "
        "of docs/architecture.md §2; every upload verified by size and checksum. Skipped when "
        "S3 is disabled."
    ),
)
def s3_lake(context: dg.AssetExecutionContext, polymkt: PolymktResource, s3: S3Resource):
    settings = polymkt.settings()
    if not settings.s3_enabled:
        context.log.info("POLYMKT_S3_ENABLED is false: nothing mirrored")
        return
    client = s3.get_client()
    secrets = [settings.s3_access_key_id, settings.s3_secret_access_key]
    ensure_bucket(client, settings.s3_bucket, secrets=secrets)
    report = mirror_lake(
        client,
        polymkt.lake().root,
        settings.s3_bucket,
        settings.s3_prefix,
        secrets=secrets,
        progress=context.log.info,
    )
    shown = [f"- `{k}`" for k in report.uploaded[:20]]
    if len(report.uploaded) > len(shown):
        shown.append(f"- … {len(report.uploaded) - len(shown)} more")
    yield dg.MaterializeResult(
        metadata={
            "bucket_url": f"s3://{settings.s3_bucket}/{settings.s3_prefix}".rstrip("/"),
            "files": report.files,
            "uploaded": len(report.uploaded),
            "verified": report.verified,
            "unchanged": report.skipped,
            "deleted": len(report.deleted),
            "bytes_uploaded": report.bytes_uploaded,
            "elapsed_s": round(report.elapsed_s, 2),
            "uploaded_keys": dg.MetadataValue.md(
                "\n".join(f"- `{k}`" for k in shown)
                + (
                    f"\n- … {len(report.uploaded) - len(shown)} more"
                    if report.uploaded[20:]
                    else ""
                )
                or "_none_"
            ),
        }
    )
