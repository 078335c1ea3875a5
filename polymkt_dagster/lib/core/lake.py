"""The Parquet lake: where each table lives, atomic partition replacement, scans.

Layout (docs/architecture.md §2), relative to the lake root:

    raw/polymarket/markets.parquet
    raw/polymarket/events.parquet
    raw/polymarket/order_filled/year=YYYY/month=MM/day=DD/part-0.parquet
    raw/polymarket/trades/year=YYYY/month=MM/day=DD/[bucket=K/]part-0.parquet
    raw/polymarket/ctf_events/year=YYYY/month=MM/day=DD/part-0.parquet
    analytics/<name>/...

A partition is only ever replaced whole: each file is written under a temporary name in
its final directory and moved into place with an atomic rename, so a reader or a crash
sees either the previous file or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from polymkt_dagster.lib.core.crashpoints import before_rename
from polymkt_dagster.lib.core.duck import sql_string
from polymkt_dagster.lib.core.schemas import RAW_TABLES, Table

PARQUET_OPTIONS = "FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880"
DAY_COLUMN = "__day"
BUCKET_COLUMN = "__bucket"
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


def day_end(day: date) -> datetime:
    """The last microsecond of a UTC day: a ledger state there holds every row of the day."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1, microseconds=-1)


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


@dataclass(frozen=True)
class PartitionWrite:
    """What one partition replacement wrote."""

    day: date
    rows: int
    files: tuple[Path, ...]
    bytes: int


class PartitionFile(NamedTuple):
    """One Parquet file of a day partition and the identity of its current version.

    Plain strings rather than ``Path``: a query lists every file of the table, and
    building a Path per file costs more than the directory walk itself.
    """

    day: date
    path: str
    bucket_dir: str | None  # "bucket=K" with hash bucketing, else None
    inode: int
    size: int
    mtime_ns: int

    @property
    def identity(self) -> str:
        """Changes whenever the file is replaced (a replacement is always a new file)."""
        return f"{self.path}|{self.inode}|{self.size}|{self.mtime_ns}"


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
        return [Path(f.path) for f in _files_under(str(self.day_dir(table, day)), day)]

    def files(
        self,
        table: str,
        *,
        start: date | None = None,
        end: date | None = None,
        buckets: Iterable[int] | None = None,
    ) -> list[Path]:
        """Parquet files of a day-partitioned table, optionally pruned by day and bucket."""
        return [Path(f.path) for f in self.listing(table, start=start, end=end, buckets=buckets)]

    def listing(
        self,
        table: str,
        *,
        start: date | None = None,
        end: date | None = None,
        buckets: Iterable[int] | None = None,
    ) -> list[PartitionFile]:
        """Like ``files``, with each file's day and identity (inode, size, mtime).

        One ``os.scandir`` walk (a glob per day costs ~20 ms over a year of days, paid by
        every query); the identity tells a rewritten partition from the one a derived copy
        was built from, since a replacement is always a new file moved into place.
        """
        wanted_buckets = None if buckets is None else {f"bucket={b}" for b in buckets}
        found: list[PartitionFile] = []
        for day, day_dir in _day_dirs(self.table_dir(table)):
            if (start and day < start) or (end and day > end):
                continue
            for file in _files_under(day_dir, day):
                if (
                    wanted_buckets is not None
                    and file.bucket_dir is not None
                    and file.bucket_dir not in wanted_buckets
                ):
                    continue
                found.append(file)
        return found

    def partition_days(self, table: str) -> list[date]:
        return [day for day, _ in _day_dirs(self.table_dir(table))]

    # ---- writes ----------------------------------------------------------------------
    def write_single(self, table: str, con: duckdb.DuckDBPyConnection, select_sql: str) -> Path:
        """Replace a single-file table with the result of ``select_sql``."""
        target = self.single_file(table)
        _copy_atomically(con, select_sql, target)
        return target

    def write_sorted_days(
        self,
        table: str,
        reader: pa.RecordBatchReader,
        *,
        row_group_size: int = 122_880,
        on_partition: Callable[[PartitionWrite], None] | None = None,
    ) -> list[PartitionWrite]:
        """Stream rows sorted by ``__day`` (and ``__bucket``) into day partitions.

        One pass over the stream: each (day, bucket) run becomes one file, written under a
        temporary name and renamed into place once complete. When a day is finished, files
        of its previous version that were not rewritten are removed. Memory stays at about
        one row group whatever the number of rows.
        """
        writes: list[PartitionWrite] = []
        current: _DayFiles | None = None
        for batch in reader:
            if batch.num_rows == 0:
                continue
            for key, piece in _runs(batch):
                day, bucket = key
                if current is None or current.day != day:
                    if current is not None:
                        writes.append(current.finish(self, table))
                        if on_partition:
                            on_partition(writes[-1])
                    current = _DayFiles(day, row_group_size)
                current.write(self, table, bucket, piece.drop_columns(_helper_columns(piece)))
        if current is not None:
            writes.append(current.finish(self, table))
            if on_partition:
                on_partition(writes[-1])
        return writes

    def remove_stale(self, table: str, day: date, *, keep: Iterable[Path]) -> None:
        """Remove the day's files other than ``keep`` (what its previous version left)."""
        kept = set(keep)
        for stale in self.day_files(table, day):
            if stale not in kept:
                stale.unlink()
                _prune_empty_dirs(stale.parent, stop=self.table_dir(table))

    def remove_day(self, table: str, day: date) -> None:
        for path in self.day_files(table, day):
            path.unlink()
            _prune_empty_dirs(path.parent, stop=self.table_dir(table))

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


#: Directory -> (inode, mtime_ns, sorted subdirectory names, sorted visible *.parquet names).
_DIRECTORIES: dict[str, tuple[int, int, list[str], list[str]]] = {}
# A directory's mtime moves whenever an entry is added, removed or renamed in it, but only at
# the clock's tick: a listing is kept only once its mtime is older than this, so a change in
# the same tick as the listing cannot hide behind an equal mtime (git's "racy" rule).
_SETTLED_NS = 2_000_000_000


def _entries(directory: str) -> tuple[list[str], list[str]]:
    """(subdirectories, visible parquet files) of a directory, re-read only when it changed.

    One stat instead of a scandir per directory: listing a year of day partitions is part
    of every query.
    """
    try:
        st = os.stat(directory)
    except (FileNotFoundError, NotADirectoryError):
        _DIRECTORIES.pop(directory, None)
        return [], []
    cached = _DIRECTORIES.get(directory)
    if cached is not None and cached[0] == st.st_ino and cached[1] == st.st_mtime_ns:
        return cached[2], cached[3]
    subdirs: list[str] = []
    files: list[str] = []
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_dir():
                    subdirs.append(entry.name)
                elif entry.name.endswith(".parquet") and not entry.name.startswith("."):
                    files.append(entry.name)
    except (FileNotFoundError, NotADirectoryError):
        return [], []
    subdirs.sort()
    files.sort()
    if time.time_ns() - st.st_mtime_ns > _SETTLED_NS:
        _DIRECTORIES[directory] = (st.st_ino, st.st_mtime_ns, subdirs, files)
    return subdirs, files


def _day_dirs(base: Path) -> Iterator[tuple[date, str]]:
    """(day, directory) of every year=/month=/day= partition under ``base``, in day order."""
    root = str(base)
    for year in _entries(root)[0]:
        if not year.startswith("year="):
            continue
        year_dir = f"{root}/{year}"
        for month in _entries(year_dir)[0]:
            if not month.startswith("month="):
                continue
            month_dir = f"{year_dir}/{month}"
            for day_name in _entries(month_dir)[0]:
                if not day_name.startswith("day="):
                    continue
                try:
                    day = date(int(year[5:]), int(month[6:]), int(day_name[4:]))
                except ValueError:
                    continue
                yield day, f"{month_dir}/{day_name}"


def _files_under(directory: str, day: date) -> list[PartitionFile]:
    """Visible ``*.parquet`` files below a day directory (any depth), sorted by path."""
    found: list[PartitionFile] = []
    pending = [directory]
    while pending:
        current = pending.pop()
        name = os.path.basename(current)
        bucket_dir = name if name.startswith("bucket=") else None
        subdirs, files = _entries(current)
        pending.extend(f"{current}/{d}" for d in subdirs)
        for file_name in files:
            path = f"{current}/{file_name}"
            try:
                # every query stats every file: a file replaced in place is noticed too
                st = os.stat(path)
            except (FileNotFoundError, NotADirectoryError):  # removed while listing
                continue
            found.append(
                PartitionFile(day, path, bucket_dir, st.st_ino, st.st_size, st.st_mtime_ns)
            )
    if len(found) > 1:
        found.sort(key=lambda f: Path(f.path))
    return found


def rows_in_files(files: Iterable[Path]) -> int:
    """Rows of Parquet files from their footers (no data read)."""
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def temp_name(target: Path) -> Path:
    """Hidden temporary name beside ``target``; the writer's pid in it lets the next run
    tell a killed writer's leftover from a file being written now (lib/core/housekeeping.py)."""
    return target.parent / f".{target.name}.{os.getpid()}-{uuid.uuid4().hex}.tmp"


def write_atomically(target: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` to a hidden temporary name beside ``target``, then rename it into place.

    Readers see the old file or the complete new one, never a partial write; the temporary
    file is removed if the write fails.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(target)
    try:
        write(tmp)
        before_rename(target)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _copy_atomically(con: duckdb.DuckDBPyConnection, select_sql: str, target: Path) -> None:
    write_atomically(
        target,
        lambda tmp: con.execute(f"COPY ({select_sql}) TO {sql_string(tmp)} ({PARQUET_OPTIONS})"),
    )


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


def _helper_columns(batch: pa.RecordBatch) -> list[str]:
    return [c for c in (DAY_COLUMN, BUCKET_COLUMN) if c in batch.schema.names]


def _runs(batch: pa.RecordBatch) -> Iterator[tuple[tuple[date, int | None], pa.RecordBatch]]:
    """Split a sorted batch into runs of equal (day, bucket)."""
    days = batch.column(DAY_COLUMN)
    buckets = batch.column(BUCKET_COLUMN) if BUCKET_COLUMN in batch.schema.names else None
    keys = (
        pc.cast(days, pa.int32())
        if buckets is None
        else pc.add(
            pc.multiply(pc.cast(pc.cast(days, pa.int32()), pa.int64()), 100_000),
            pc.cast(buckets, pa.int64()),
        )
    )
    values = keys.to_numpy(zero_copy_only=False)
    start = 0
    n = len(values)
    while start < n:
        # runs are long (rows are sorted), so a vectorised search beats a per-row loop
        first = values[start]
        later = np.flatnonzero(values[start:] != first)
        end = start + int(later[0]) if len(later) else n
        day = days[start].as_py()
        bucket = buckets[start].as_py() if buckets is not None else None
        yield (day, bucket), batch.slice(start, end - start)
        start = end


class _DayFiles:
    """Open writers of one day partition (one per bucket) and what they wrote."""

    def __init__(self, day: date, row_group_size: int) -> None:
        self.day = day
        self.row_group_size = row_group_size
        self.writers: dict[int | None, tuple[pq.ParquetWriter, Path, Path]] = {}
        self.rows = 0

    def write(self, lake: Lake, table: str, bucket: int | None, batch: pa.RecordBatch) -> None:
        if bucket not in self.writers:
            base = lake.day_dir(table, self.day)
            target = (base / f"bucket={bucket}" if bucket is not None else base) / PART_FILE
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = temp_name(target)
            writer = pq.ParquetWriter(tmp, batch.schema, compression="zstd")
            self.writers[bucket] = (writer, tmp, target)
        writer = self.writers[bucket][0]
        writer.write_batch(batch, row_group_size=self.row_group_size)
        self.rows += batch.num_rows

    def finish(self, lake: Lake, table: str) -> PartitionWrite:
        files: list[Path] = []
        for writer, tmp, target in self.writers.values():
            writer.close()
            before_rename(target)
            os.replace(tmp, target)
            files.append(target)
        lake.remove_stale(table, self.day, keep=files)
        return PartitionWrite(
            day=self.day,
            rows=self.rows,
            files=tuple(files),
            bytes=sum(f.stat().st_size for f in files),
        )
