"""The Parquet lake: where each table lives, atomic partition replacement, scans.

Layout (DESIGN.md §3), relative to the lake root:

    raw/polymarket/markets.parquet
    raw/polymarket/events.parquet
    raw/polymarket/order_filled/year=YYYY/month=MM/day=DD/part-0.parquet
    raw/polymarket/trades/year=YYYY/month=MM/day=DD/[bucket=K/]part-0.parquet
    analytics/<name>/...

A partition is only ever replaced whole: each file is written under a temporary name in
its final directory and moved into place with an atomic rename, so a reader or a crash
sees either the previous file or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb

from polymkt_dagster.lib.duck import sql_string
from polymkt_dagster.lib.schemas import RAW_TABLES, Table

PARQUET_OPTIONS = "FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880"
PART_FILE = "part-0.parquet"
RAW_PREFIX = "raw/polymarket"


def bucket_of(market_id: str | None, bucket_count: int) -> int:
    """Hash bucket of a market id; the same function as `bucket_sql` in DuckDB."""
    if market_id is None:
        return 0
    digest = hashlib.md5(market_id.encode()).digest()
    return int.from_bytes(digest, "little") % bucket_count


def bucket_sql(column: str, bucket_count: int) -> str:
    return f"coalesce(CAST(md5_number({column}) % {bucket_count} AS INTEGER), 0)"


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day)
    return start, start + timedelta(days=1)


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


@dataclass(frozen=True)
class PartitionWrite:
    """What one partition replacement wrote."""

    day: date
    rows: int
    files: tuple[Path, ...]
    bytes: int


class Lake:
    """A local Parquet lake rooted at ``root`` (DATA_DIR/parquet)."""

    def __init__(self, root: Path, *, bucket_count: int | None = None) -> None:
        self.root = Path(root)
        # None means trades are partitioned by day only; an int adds bucket=K directories.
        self.bucket_count = bucket_count

    # ---- locations -------------------------------------------------------------------
    def table_dir(self, table: str) -> Path:
        if table in RAW_TABLES:
            return self.root / RAW_PREFIX / table
        return self.root / table

    def single_file(self, table: str) -> Path:
        if table in RAW_TABLES:
            return self.root / RAW_PREFIX / f"{table}.parquet"
        return self.root / f"{table}.parquet"

    def day_dir(self, table: str, day: date) -> Path:
        return (
            self.table_dir(table) / f"year={day.year:04d}/month={day.month:02d}/day={day.day:02d}"
        )

    def day_files(self, table: str, day: date) -> list[Path]:
        base = self.day_dir(table, day)
        if not base.exists():
            return []
        return sorted(p for p in base.rglob("*.parquet") if not p.name.startswith("."))

    def files(
        self,
        table: str,
        *,
        start: date | None = None,
        end: date | None = None,
        buckets: Iterable[int] | None = None,
    ) -> list[Path]:
        """Parquet files of a day-partitioned table, optionally pruned by day and bucket."""
        base = self.table_dir(table)
        if not base.exists():
            return []
        wanted_buckets = None if buckets is None else {f"bucket={b}" for b in buckets}
        found: list[Path] = []
        for day in self.partition_days(table):
            if (start and day < start) or (end and day > end):
                continue
            for path in self.day_files(table, day):
                if wanted_buckets is not None and path.parent.name.startswith("bucket="):
                    if path.parent.name not in wanted_buckets:
                        continue
                found.append(path)
        return found

    def partition_days(self, table: str) -> list[date]:
        base = self.table_dir(table)
        days: list[date] = []
        if not base.exists():
            return days
        for year_dir in sorted(base.glob("year=*")):
            for month_dir in sorted(year_dir.glob("month=*")):
                for day_dir in sorted(month_dir.glob("day=*")):
                    try:
                        days.append(
                            date(
                                int(year_dir.name[5:]),
                                int(month_dir.name[6:]),
                                int(day_dir.name[4:]),
                            )
                        )
                    except ValueError:
                        continue
        return days

    # ---- writes ----------------------------------------------------------------------
    def write_single(self, table: str, con: duckdb.DuckDBPyConnection, select_sql: str) -> Path:
        """Replace a single-file table with the result of ``select_sql``."""
        target = self.single_file(table)
        _copy_atomically(con, select_sql, target)
        return target

    def replace_day(
        self,
        table: str,
        con: duckdb.DuckDBPyConnection,
        day: date,
        select_sql: str,
        *,
        order_by: Sequence[str],
        bucket_column: str | None = None,
    ) -> PartitionWrite:
        """Replace one day partition with the rows of ``select_sql`` (already that day's).

        With bucketing on, one file per non-empty bucket. Files of the previous version
        that the new version does not rewrite (an emptied bucket, a layout change) are
        removed after the new files are in place.
        """
        base = self.day_dir(table, day)
        order = ", ".join(order_by)
        rows = con.execute(f"SELECT count(*) FROM ({select_sql})").fetchone()
        total = int(rows[0]) if rows else 0
        new_files: list[Path] = []
        if total:
            if self.bucket_count and bucket_column:
                bucket_expr = bucket_sql(bucket_column, self.bucket_count)
                present = con.execute(
                    f"SELECT DISTINCT {bucket_expr} AS b FROM ({select_sql}) ORDER BY b"
                ).fetchall()
                for (bucket,) in present:
                    target = base / f"bucket={bucket}" / PART_FILE
                    _copy_atomically(
                        con,
                        f"SELECT * FROM ({select_sql}) WHERE {bucket_expr} = {bucket} "
                        f"ORDER BY {order}",
                        target,
                    )
                    new_files.append(target)
            else:
                target = base / PART_FILE
                _copy_atomically(con, f"SELECT * FROM ({select_sql}) ORDER BY {order}", target)
                new_files.append(target)
        keep = set(new_files)
        for stale in self.day_files(table, day):
            if stale not in keep:
                stale.unlink()
        _prune_empty_dirs(base, stop=self.table_dir(table))
        size = sum(p.stat().st_size for p in new_files)
        return PartitionWrite(day=day, rows=total, files=tuple(new_files), bytes=size)

    # ---- reads -----------------------------------------------------------------------
    def scan_sql(self, table: Table, files: Sequence[Path] | None = None) -> str:
        """A relation over the table's files with every canonical column present.

        Older partitions may lack newer columns: ``union_by_name`` reads them as NULL, and
        the zero-row typed relation unioned in guarantees every canonical column exists
        with its canonical type even when no file has it yet (or there are no files).
        """
        if files is None:
            if self.single_file(table.name).exists():
                files = [self.single_file(table.name)]
            else:
                files = self.files(table.name)
        empty = table.typed_empty_select()
        if not files:
            return f"({empty})"
        file_list = "[" + ", ".join(sql_string(p) for p in files) + "]"
        source = (
            f"(SELECT * FROM read_parquet({file_list}, union_by_name = true, "
            f"hive_partitioning = false) UNION ALL BY NAME {empty})"
        )
        return f"({table.canonical_select(source)})"


def _copy_atomically(con: duckdb.DuckDBPyConnection, select_sql: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
    try:
        con.execute(f"COPY ({select_sql}) TO {sql_string(tmp)} ({PARQUET_OPTIONS})")
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _prune_empty_dirs(path: Path, *, stop: Path) -> None:
    if not path.exists():
        path = path.parent
    while path != stop and path.is_dir() and stop in path.parents:
        try:
            next(path.iterdir())
            return
        except StopIteration:
            path.rmdir()
            path = path.parent
