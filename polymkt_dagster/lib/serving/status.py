"""What is in the lake (files, bytes, days per table), how fresh it is, what serves it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from polymkt_dagster.lib.core.config import Settings
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.schemas import RAW_TABLES


def lake_status(settings: Settings) -> dict[str, Any]:
    lake = Lake(settings.lake_dir)
    tables: dict[str, Any] = {}
    for name in RAW_TABLES:
        single = lake.single_file(name)
        if single.exists():
            tables[name] = {"files": 1, "bytes": single.stat().st_size}
            continue
        files = lake.files(name)
        days = lake.partition_days(name)
        tables[name] = {
            "files": len(files),
            "bytes": sum(f.stat().st_size for f in files),
            "days": len(days),
            "first_day": days[0].isoformat() if days else None,
            "last_day": days[-1].isoformat() if days else None,
        }
    return {
        "data_dir": str(settings.data_dir),
        "ingest_mode": settings.ingest_mode,
        "analytics_mode": settings.analytics_mode,
        "s3_enabled": settings.s3_enabled,
        "clickhouse_enabled": settings.clickhouse_enabled,
        "tables": tables,
    }


# ---- runtime: sync freshness, lake size, serving health ------------------------------------

# Freshness targets (docs/architecture.md §1): markets/events hourly, fills/trades every 10 minutes.
FRESHNESS_TARGETS_S: dict[str, float] = {
    "markets": 3600.0,
    "events": 3600.0,
    "order_filled": 600.0,
    "trades": 600.0,
    "ctf_events": 600.0,
}
STATE_DIR = "_state"


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def sync_status(settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    """Last sync per source from the sync state files in ``<lake>/_state/``.

    A state file's ``updated_at`` (else its modification time) is the last sync; a table
    whose sources have no state file reports ``never``. trades are derived from the fills,
    so they share the fills' last sync.
    """
    now = now or datetime.now(UTC)
    state_dir = settings.lake_dir / STATE_DIR
    last: dict[str, tuple[datetime, str]] = {}
    for path in sorted(state_dir.glob("*.json")) if state_dir.is_dir() else []:
        try:
            document = json.loads(path.read_text("utf-8"))
        except (OSError, json.JSONDecodeError):
            document = {}
        when = _parse_time(document.get("updated_at") if isinstance(document, dict) else None)
        when = when or datetime.fromtimestamp(path.stat().st_mtime, UTC)
        stem = path.stem
        table = next((t for t in FRESHNESS_TARGETS_S if stem.startswith(t)), None)
        if table is None:
            continue
        if table not in last or when > last[table][0]:
            last[table] = (when, stem)
    if "order_filled" in last and "trades" not in last:
        last["trades"] = last["order_filled"]
    sources: dict[str, Any] = {}
    for table, target in FRESHNESS_TARGETS_S.items():
        if table not in last:
            sources[table] = {"last_sync": "never", "lag_s": None, "target_s": target,
                              "fresh": False}  # fmt: skip
            continue
        when, stem = last[table]
        lag = max(0.0, (now - when).total_seconds())
        sources[table] = {
            "last_sync": when.isoformat(),
            "state_file": stem,
            "lag_s": round(lag, 1),
            "target_s": target,
            "fresh": lag <= target,
        }
    return sources


def clickhouse_health(settings: Settings) -> dict[str, Any]:
    if not settings.clickhouse_enabled:
        return {"enabled": False}
    from polymkt_dagster.lib.core.redact import redact_text, redact_url
    from polymkt_dagster.lib.serving.clickhouse import (
        ClickHouseError,
        get_client,
        ping,
        table_counts,
    )

    dsn = settings.resolved_clickhouse_dsn
    target = "chdb (embedded)" if dsn.startswith("chdb://") else redact_url(dsn)
    try:
        client = get_client(
            dsn, user=settings.clickhouse_user, password=settings.clickhouse_password
        )
    except ClickHouseError as exc:
        return {"enabled": True, "target": target, "ok": False, "error": redact_text(str(exc))}
    except Exception as exc:
        return {"enabled": True, "target": target, "ok": False, "error": type(exc).__name__}
    ok = ping(client)
    return {"enabled": True, "target": target, "ok": ok,
            "tables": table_counts(client) if ok else {}}  # fmt: skip


def s3_health(settings: Settings, timeout_s: float = 3.0) -> dict[str, Any]:
    if not settings.s3_enabled:
        return {"enabled": False}
    import boto3
    from botocore.config import Config

    try:
        client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=settings.s3_secret_access_key,
            config=Config(connect_timeout=timeout_s, read_timeout=timeout_s,
                          retries={"max_attempts": 1}),
        )  # fmt: skip
        client.head_bucket(Bucket=settings.s3_bucket)
        return {"enabled": True, "bucket": settings.s3_bucket, "ok": True}
    except Exception as exc:  # names the failure, never the keys
        return {"enabled": True, "bucket": settings.s3_bucket, "ok": False,
                "error": type(exc).__name__}  # fmt: skip


def runtime_status(settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    """lake_status plus sync lag against the freshness targets, lake size and health."""
    document = lake_status(settings)
    lake_bytes = 0
    if settings.lake_dir.exists():
        for path in settings.lake_dir.rglob("*"):
            if path.is_file():
                lake_bytes += path.stat().st_size
    document.update(
        {
            "sync": sync_status(settings, now),
            "lake_bytes": lake_bytes,
            "clickhouse": clickhouse_health(settings),
            "s3": s3_health(settings),
        }
    )
    return document
