"""Day partitions of the fill import: grouping good rows by day, spilling, writing.

``DayAssembler`` groups the good rows of the stream by UTC day and hands a day on once the
(time-ordered) stream has left it; rows of a day already written, or of a day too large to
hold, are spilled to a temporary Parquet file and merged at the end by
``merge.merge_order_fills`` (DuckDB's external sort). ``DayWriter`` finishes complete days
in writer threads: repeated fill ids dropped, the union with the rows the lake holds, the
sort (a compiled kernel, ``_day_order``, with Arrow's sort as the exact fallback) and the
atomic write. Separate from reading and checking rows: this is where memory is bounded and
where the lake is written.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from numba import types as nt

from polymkt_dagster.lib.core.duck import sql_string
from polymkt_dagster.lib.core.lake import (
    PART_FILE,
    Lake,
    PartitionWrite,
    rows_in_files,
    write_atomically,
)
from polymkt_dagster.lib.core.schemas import ORDER_FILLED
from polymkt_dagster.lib.ingest.fill_ids import string_buffers
from polymkt_dagster.lib.ingest.merge import merge_order_fills, stored_fill_wins_sql
from polymkt_dagster.lib.ingest.sources.order_fill_buffers import (
    BYTES,
    INTS,
    WORDS,
    int64_values,
    overlapping_words,
    primitive_array,
)
from polymkt_dagster.lib.ingest.sources.order_fill_report import FillImport

ROW_GROUP_ROWS = 122_880  # rows per Parquet row group of a written day
# A day holding more good rows than this is assembled by DuckDB's external sort instead of
# in memory (about 400 bytes a row in Arrow: ~400 MB).
MAX_DAY_ROWS = 1_000_000
WRITER_THREADS = 3  # measured: 3-5% faster than 2 on 2 cores (writes wait on the file system too)
MAX_PENDING_DAYS = 16
SORT_KEYS = [("timestamp", "ascending"), ("transaction_hash", "ascending"), ("id", "ascending")]
# Columns whose values repeat (wallets, tokens, constants): dictionary-encoded. Fill ids,
# hashes, amounts and timestamps are nearly unique per day; a dictionary only costs time.
DICTIONARY_COLUMNS = [
    "block_number", "log_index", "order_hash", "maker", "taker", "maker_asset_id",
    "taker_asset_id", "fee", "exchange", "contract_version", "source",
]  # fmt: skip
# Min/max of the text columns (random hex hashes and addresses, 77-digit token ids)
# prune nothing within a day and cost a tenth of the write: only numbers and times get them.
STATISTICS_COLUMNS = [name for name, sql_type in ORDER_FILLED.columns if sql_type != "VARCHAR"]
WRITE_BATCH_ROWS = 65_536  # values the Parquet writer encodes at a time (default 1,024)


def side_connection(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """A second connection to the same database: the scan streams on ``con`` meanwhile.

    Memory limit and spill directory are database-wide; session settings are not.
    """
    side = con.cursor()
    side.execute("SET TimeZone = 'UTC'")
    side.execute("SET enable_progress_bar = false")
    return side


class DayAssembler:
    """Groups good rows by day; yields each day's rows once the stream has left the day."""

    def __init__(
        self,
        lake: Lake,
        con: duckdb.DuckDBPyConnection,
        schema: pa.Schema,
        spill_dir: Path,
        result: FillImport,
        max_day_rows: int,
    ) -> None:
        self.lake = lake
        self.con = con
        self.schema = schema
        self.result = result
        self.max_day_rows = max_day_rows
        self.pieces: dict[int, list[pa.Table]] = {}
        self.buffered_rows: dict[int, int] = {}
        self.written: set[int] = set()
        self.spilled_days: set[int] = set()
        self.spill_path = spill_dir / f"order_filled_spill_{uuid.uuid4().hex}.parquet"
        self.spill_dir = spill_dir
        self.spill: pq.ParquetWriter | None = None

    def add(self, good: pa.Table, day_numbers: np.ndarray) -> Iterator[tuple[date, list[pa.Table]]]:
        if good.num_rows == 0:
            return
        if np.any(day_numbers[1:] < day_numbers[:-1]):
            order = np.argsort(day_numbers, kind="stable")
            good, day_numbers = good.take(order), day_numbers[order]
        cuts = np.flatnonzero(day_numbers[1:] != day_numbers[:-1]) + 1
        bounds = np.concatenate([[0], cuts, [len(day_numbers)]])
        for begin, stop in itertools.pairwise(bounds):
            day = int(day_numbers[begin])
            piece = good.slice(begin, stop - begin)
            if day in self.written or day in self.spilled_days:
                self._spill(day, piece)
                continue
            self.pieces.setdefault(day, []).append(piece)
            self.buffered_rows[day] = self.buffered_rows.get(day, 0) + piece.num_rows
            if self.buffered_rows[day] > self.max_day_rows:
                for held in self.pieces.pop(day):
                    self._spill(day, held)
                del self.buffered_rows[day]
        # Days other than the one the stream is in are complete unless the file is not
        # grouped by day (then their late rows are spilled and merged at the end).
        current = int(day_numbers[-1])
        for day in sorted(d for d in self.pieces if d != current):
            yield self._emit(day)

    def finish(self) -> Iterator[tuple[date, list[pa.Table]]]:
        for day in sorted(self.pieces):
            yield self._emit(day)

    def _emit(self, day: int) -> tuple[date, list[pa.Table]]:
        del self.buffered_rows[day]
        self.written.add(day)
        return date(1970, 1, 1) + timedelta(days=day), self.pieces.pop(day)

    def _spill(self, day: int, piece: pa.Table) -> None:
        self.spilled_days.add(day)
        if self.spill is None:
            self.spill_dir.mkdir(parents=True, exist_ok=True)
            self.spill = pq.ParquetWriter(self.spill_path, self.schema, compression="lz4")
        self.spill.write_table(piece)

    def merge_spilled(self, on_partition: Callable[[PartitionWrite], None]) -> None:
        """Merge spilled rows into their days (union, dedup, external sort in DuckDB)."""
        if self.spill is None:
            return
        self.spill.close()
        self.spill = None
        days = sorted(date(1970, 1, 1) + timedelta(days=d) for d in self.spilled_days)
        before = sum(
            self.result.partitions[d].rows for d in days if d in self.result.partitions
        ) + sum(self._stored_rows(d) for d in days if d not in self.result.partitions)
        spilled = pq.ParquetFile(self.spill_path).metadata.num_rows
        writes = merge_order_fills(
            self.con, self.lake, f"SELECT * FROM read_parquet({sql_string(self.spill_path)})"
        )
        for write in writes:
            on_partition(write)
        # Spilled rows that did not add a row: duplicates of rows of the same day.
        self.result.duplicates_dropped += before + spilled - sum(w.rows for w in writes)

    def _stored_rows(self, day: date) -> int:
        return rows_in_files(self.lake.day_files(ORDER_FILLED.name, day))

    def close(self) -> None:
        if self.spill is not None:
            self.spill.close()
            self.spill = None
        self.spill_path.unlink(missing_ok=True)


class DayWriter:
    """Finishes and writes complete days in background threads, each day atomically.

    Per day: duplicates of a fill id dropped (the first row stays), the union with the
    rows the lake already holds for the day (a stored fill id keeps its stored row), the
    sort by (timestamp, transaction_hash, id). The file is written under a temporary name
    in its final directory and renamed into place, then files of the day's previous
    version that were not rewritten are removed: the contract of
    ``Lake.write_sorted_days``. Sorting and Parquet compression run without the GIL, so
    several days are written at once while the main thread checks the next batch; at most
    ``MAX_PENDING_DAYS`` days wait for the writers, which bounds memory.
    """

    def __init__(
        self,
        lake: Lake,
        con: duckdb.DuckDBPyConnection,
        schema: pa.Schema,
        on_written: Callable[[PartitionWrite, int], None],
        result: FillImport,
    ) -> None:
        self.lake = lake
        self.result = result
        self.con = con  # each writer thread merges through a cursor of its own
        self.cursors: list[duckdb.DuckDBPyConnection] = []
        self.cursor_lock = threading.Lock()
        self.local = threading.local()
        self.schema = schema
        self.stored_days = set(lake.partition_days(ORDER_FILLED.name))
        self.on_written = on_written
        self.pool = ThreadPoolExecutor(
            max_workers=WRITER_THREADS, thread_name_prefix="fill-day-writer"
        )
        self.pending: deque[Future[tuple[PartitionWrite, int]]] = deque()

    def submit(self, day: date, pieces: list[pa.Table]) -> None:
        while len(self.pending) >= MAX_PENDING_DAYS:
            self._collect()
        self.pending.append(self.pool.submit(self._finish, day, pieces))

    def drain(self) -> None:
        while self.pending:
            self._collect()

    def _collect(self) -> None:
        started = time.perf_counter()
        write, duplicates = self.pending.popleft().result()
        self.result.timed("waiting for the writer (main thread)", started)
        self.on_written(write, duplicates)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        for cursor in self.cursors:
            cursor.close()

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cursor = getattr(self.local, "cursor", None)
        if cursor is None:
            with self.cursor_lock:  # the shared connection is not thread-safe itself
                cursor = self.local.cursor = side_connection(self.con)
                self.cursors.append(cursor)
        return cursor

    def _finish(self, day: date, pieces: list[pa.Table]) -> tuple[PartitionWrite, int]:
        started = time.perf_counter()
        try:
            return self._finish_day(day, pieces)
        finally:
            self.result.timed("dedup, sort, Parquet write (writer threads, summed)", started)

    def _finish_day(self, day: date, pieces: list[pa.Table]) -> tuple[PartitionWrite, int]:
        table = pa.concat_tables(pieces)  # take() below copies once; no need to combine first
        if day not in self.stored_days:
            ordered = _sorted_first_per_id(table)
            if ordered is not None:
                return self._write(day, ordered[0]), ordered[1]
        duplicates = table.num_rows - pc.count_distinct(table.column("id")).as_py()
        if duplicates:
            table = _first_per_id(table)
        if day in self.stored_days:
            table = self._merge_stored(day, table)
        else:
            table = table.take(pc.sort_indices(table, SORT_KEYS))
        return self._write(day, table), duplicates

    def _merge_stored(self, day: date, fresh: pa.Table) -> pa.Table:
        """The union with the day's stored rows; a stored fill id keeps its stored row."""
        view = f"fresh_day_{uuid.uuid4().hex[:8]}"
        con = self._cursor()
        con.register(view, fresh)
        try:
            stored = self.lake.scan_sql(ORDER_FILLED, self.lake.day_files(ORDER_FILLED.name, day))
            return (
                con.execute(
                    f"{stored_fill_wins_sql(view, stored)} "
                    'ORDER BY "timestamp", transaction_hash, id'
                )
                .to_arrow_table()
                .cast(self.schema)
            )
        finally:
            con.unregister(view)

    def _write(self, day: date, table: pa.Table) -> PartitionWrite:
        target = self.lake.day_dir(ORDER_FILLED.name, day) / PART_FILE
        write_atomically(
            target,
            lambda tmp: pq.write_table(
                table,
                tmp,
                compression="zstd",
                row_group_size=ROW_GROUP_ROWS,
                use_dictionary=DICTIONARY_COLUMNS,
                write_statistics=STATISTICS_COLUMNS,
                write_batch_size=WRITE_BATCH_ROWS,
            ),
        )
        self.lake.remove_stale(ORDER_FILLED.name, day, keep=[target])
        return PartitionWrite(
            day=day, rows=table.num_rows, files=(target,), bytes=target.stat().st_size
        )


_FixedWidth = tuple[np.ndarray, np.ndarray, int]


def _fixed_width(values: np.ndarray, width: int) -> _FixedWidth:
    """Values of ``width`` bytes laid end to end, with their ``overlapping_words``."""
    values = np.ascontiguousarray(values)
    return values, overlapping_words(values), width


# A day's rows in one second share a transaction or two; a longer run of equal seconds
# than this is sorted by Arrow instead of by insertion.
LONGEST_TIE_RUN = 64
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing


@numba.njit(inline="always")
def _compare_ids(ids: _FixedWidth, a: int, b: int) -> int:
    """-1, 0, 1 as id ``a`` sorts before, equal to, after id ``b`` (bytewise).

    Ids of one transaction share 67 bytes: those are skipped 8 at a time.
    """
    data, words, width = ids
    at_a, at_b = a * width, b * width
    k = 0
    while k + 8 <= width and words[at_a + k] == words[at_b + k]:
        k += 8
    while k < width:
        x, y = data[at_a + k], data[at_b + k]
        if x != y:
            return 1 if x > y else -1
        k += 1
    return 0


@numba.njit(inline="always")
def _fingerprint(ids: _FixedWidth, row: int) -> np.uint64:
    """64 bits of an id: its first 8 bytes after the ``0x`` and its last 8. Equal ids have
    equal fingerprints (which is all the repeat check needs)."""
    _, words, width = ids
    return words[row * width + 2] ^ (words[row * width + width - 8] * _GOLDEN)


@numba.njit(
    nt.Tuple((INTS, nt.boolean))(INTS, nt.Tuple((BYTES, WORDS, nt.int64)), INTS),
    nogil=True,
    cache=True,
)
def _day_order(
    timestamps: np.ndarray, ids: _FixedWidth, order: np.ndarray
) -> tuple[np.ndarray, bool]:
    """``order`` (a stable sort by timestamp) refined to (timestamp, id), repeated ids
    dropped (the first in row order stays).

    ``ids`` holds one fixed-width id per row (``_fixed_width``). Runs of equal timestamps
    are short, so an insertion sort per run finishes the order in about linear time.
    False when that does not hold: a run longer than ``LONGEST_TIE_RUN``, or two rows that
    may share an id at different timestamps (equal fingerprints), which the exact Arrow
    path then handles.
    """
    rows = len(timestamps)
    keep = np.ones(rows, dtype=np.bool_)
    start = 0
    while start < rows:
        stop = start + 1
        while stop < rows and timestamps[order[stop]] == timestamps[order[start]]:
            stop += 1
        if stop - start > LONGEST_TIE_RUN:
            return order, False
        for i in range(start + 1, stop):
            current = order[i]
            j = i - 1
            while j >= start and _compare_ids(ids, order[j], current) > 0:
                order[j + 1] = order[j]
                j -= 1
            order[j + 1] = current
        for i in range(start + 1, stop):
            keep[i] = _compare_ids(ids, order[i - 1], order[i]) != 0
        start = stop
    order = order[keep]
    # Repeats across timestamps: an open-addressing set of fingerprints (0 marks empty).
    bits = 1
    while (1 << bits) < 2 * len(order):
        bits += 1
    table = np.zeros(1 << bits, dtype=np.uint64)
    mask = (1 << bits) - 1
    for k in range(len(order)):
        fingerprint = _fingerprint(ids, order[k]) | np.uint64(1)
        slot = np.int64((fingerprint * _GOLDEN) >> np.uint64(64 - bits))  # < 2**bits
        while table[slot] != 0:
            if table[slot] == fingerprint:
                return order, False
            slot = (slot + 1) & mask
        table[slot] = fingerprint
    return order, True


def _sorted_first_per_id(table: pa.Table) -> tuple[pa.Table, int] | None:
    """The day sorted with repeated fill ids dropped, and how many were; None when the
    compiled order does not apply (ids of different widths, long ties, maybe-repeats).

    Every id of the import is its 66-character transaction hash, ``_`` and a digest, so
    ordering by (timestamp, id) is ordering by (timestamp, transaction_hash, id).
    """
    ids = table.column("id").combine_chunks()
    offsets, data = string_buffers(ids)
    widths = np.diff(offsets)
    if len(widths) == 0 or ids.null_count or not (widths == widths[0]).all():
        return None
    fixed = _fixed_width(data[offsets[0] : offsets[-1]], int(widths[0]))
    timestamps = np.concatenate([int64_values(c) for c in table.column("timestamp").chunks])
    by_time = np.argsort(timestamps, kind="stable")  # near-sorted input: about linear
    order, ok = _day_order(timestamps, fixed, by_time)
    if not ok:
        return None
    taken = primitive_array(order, pa.int64())
    columns = [
        pa.nulls(len(order), column.type)
        if column.null_count == len(column)
        else column.take(taken)
        for column in table.columns
    ]
    return pa.Table.from_arrays(columns, schema=table.schema), table.num_rows - len(order)


def _first_per_id(table: pa.Table) -> pa.Table:
    """The first row of each fill id, in table order (a repeated fill lands once)."""
    by_id = pc.sort_indices(table, [("id", "ascending")])  # stable: firsts lead
    ids = table.column("id").take(by_id)
    starts = pc.not_equal(ids.slice(1), ids.slice(0, len(ids) - 1))
    keep = pa.concat_arrays([pa.array([True]), starts.combine_chunks()])
    firsts = by_id.filter(keep)
    return table.take(firsts.take(pc.sort_indices(firsts)))
