"""What is in the lake: files, bytes and day partitions per table."""

from __future__ import annotations

from typing import Any

from polymkt_dagster.lib.config import Settings
from polymkt_dagster.lib.lake import Lake
from polymkt_dagster.lib.schemas import RAW_TABLES


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
