"""Asset keys: the raw layer's, derived from the canonical tables, and keys named upstream.

Every raw table of ``lib/core/schemas.RAW_TABLES`` is the asset ``raw/<table name>``; adding a
raw table to that mapping gives it its key here, for the ingest assets, the automation and
the checks alike.

Downstream domains import their parents' keys from the parent's module (analytics from
ingest, serving from wallets). The sync sensors of defs/ingest also request the S3 mirror
(defs/serving/s3_lake) when it is enabled; the key lives here so the raw layer does not
import the serving layer.
"""

import dagster as dg

from polymkt_dagster.lib.core.schemas import RAW_TABLES, Table


def raw_key(table: Table) -> dg.AssetKey:
    return dg.AssetKey(["raw", table.name])


RAW_KEYS: dict[str, dg.AssetKey] = {name: raw_key(table) for name, table in RAW_TABLES.items()}

S3_LAKE_KEY = dg.AssetKey(["serving", "s3_lake"])
