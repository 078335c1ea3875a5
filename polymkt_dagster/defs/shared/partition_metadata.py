"""Per-partition truth for day-partitioned assets materialized as a range in one run.

Dagster copies a run's materialization metadata onto every partition of the range, so a
3-day backfill would tell each day the run's row count. :func:`describe_days` gives each day
its own row count, files and bytes, read from that day's Parquet footers after the write,
and renames the run-level numbers of the shared metadata to ``run_…`` so they cannot be read
as the partition's own.
"""

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

import dagster as dg

from polymkt_dagster.lib.core.lake import Lake, rows_in_files

# Run-level numbers an asset may put in its shared metadata, renamed once per-day figures
# exist (the per-day figures take the plain names).
RUN_LEVEL_KEYS = {
    "dagster/row_count": "run_row_count",
    "partitions_written": "run_partitions_written",
    "days_written": "run_days_written",
    "bytes_written": "run_bytes_written",
    "days": "run_days",
}


def describe_days(
    context: dg.AssetExecutionContext,
    lake: Lake,
    table: str,
    days: Iterable[date],
    metadata: Mapping[str, Any],
    *,
    asset_key: dg.AssetKey | None = None,
) -> dict[str, Any]:
    """Attach each day's own figures to its partition; return the run-level metadata."""
    key = asset_key or context.asset_key
    days = list(days)
    total_rows = 0
    for day in days:
        files = lake.day_files(table, day)
        rows = rows_in_files(files)
        total_rows += rows
        context.add_asset_metadata(
            {
                "dagster/row_count": rows,
                "files": len(files),
                "bytes_on_disk": sum(f.stat().st_size for f in files),
                "day_dir": dg.MetadataValue.path(str(lake.day_dir(table, day))),
            },
            asset_key=key,
            partition_key=day.isoformat(),
        )
    shared = {RUN_LEVEL_KEYS.get(name, name): value for name, value in metadata.items()}
    shared["run_days"] = len(days)
    shared.setdefault("run_row_count", total_rows)
    if len(days) > 1:
        context.log.info(
            f"{key.to_user_string()}: {len(days)} days {days[0]}..{days[-1]}, "
            f"{total_rows:,} rows in the lake for them"
        )
    return shared
