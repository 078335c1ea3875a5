"""Streaming import of poly_data's orderFilled.csv into the order_filled day partitions.

One pass over the file, memory bounded by a few batches and the days waiting to be written:

1. pyarrow's streaming reader parses the CSV (``csv_source.ArrowCells``: cells as bytes,
   rows with the wrong cell count kept as structural rejects) and hands the cells on in
   file order, in Arrow batches, from a background thread. A file it cannot read as
   DuckDB would (invalid UTF-8, an unterminated quote) is read again from the start by
   DuckDB's ``read_csv`` (``csv_source.DuckDbCells``), which gives the same rows.
2. Per batch, compiled kernels (numba, over the Arrow buffers, no regex) pick the rows
   in the plain form a dump has: hex addresses (either case) and a lower-case hex hash of
   the right width, decimal ids and amounts without leading zeros, digits-only timestamps
   in range, price within [0, 1]. For those rows it also produces the canonical values
   (unix seconds, integer amounts, lower-cased addresses): exactly what the canonical SQL
   rules give, since the rules change nothing else in such a row. Their fill ids are
   computed from those values (``fill_ids``).
3. Every other row (rare: bad, padded, upper-case hash, ISO or fractional timestamps,
   leading zeros) goes through the canonical SQL rules (``order_fill_rules``), on just
   those rows: they either normalise it or reject it with its field and reason. One set of
   rules decides; the fast path only skips work whose result it knows.
4. Good rows are grouped by UTC day. A dump is ordered by time, so a day is complete when
   the stream has moved on to another day. One of three writer threads then drops repeated
   fill ids, merges the day with what the lake already holds for it (stored rows win; only
   when the day has files), sorts by (timestamp, transaction_hash, id) and writes it
   atomically. A fresh day is ordered by a compiled kernel (``order_fill_days``), with Arrow's
   sort as the exact fallback.
   Rows of a day already written (a file not grouped by day) or of a day too large to
   hold are spilled to a temporary Parquet file and merged at the end by
   ``merge.merge_order_fills`` (DuckDB's external sort): any order gives the same lake
   with bounded memory, only slower.

Duplicates are found among the rows of one day: a fill id embeds its transaction hash, and
a transaction has one block time, so the rows of one fill share a day.

The import is split along those steps: ``order_fill_rules`` (the canonical SQL rules),
``order_fill_fast_path`` (the compiled checks, step 2), ``order_fill_days`` (grouping,
spilling and writing days, step 4), ``order_fill_report`` (the counts and their accounting)
and ``order_fill_buffers`` (Arrow buffers as numpy views, shared by the kernels). This
module holds the flow that ties them together: the scan thread, the checks per batch, the
writers, and the accounting once the file is read.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Literal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from polymkt_dagster.lib.core.lake import Lake, PartitionWrite
from polymkt_dagster.lib.core.schemas import ORDER_FILLED
from polymkt_dagster.lib.ingest.sources.csv_source import (
    ArrowCells,
    CellBatches,
    CsvReadFallback,
    CsvScan,
    DuckDbCells,
    Rejects,
    text_cells,
)
from polymkt_dagster.lib.ingest.sources.order_fill_buffers import int64_values
from polymkt_dagster.lib.ingest.sources.order_fill_days import (
    MAX_DAY_ROWS,
    ROW_GROUP_ROWS,
    DayAssembler,
    DayWriter,
    side_connection,
)
from polymkt_dagster.lib.ingest.sources.order_fill_fast_path import (
    canonical_fast_rows,
    fast_rows,
)
from polymkt_dagster.lib.ingest.sources.order_fill_report import FillImport, ValidationReject
from polymkt_dagster.lib.ingest.sources.order_fill_rules import canonical_rules_for_rows

Progress = Callable[[str], None]

BATCH_ROWS = ROW_GROUP_ROWS  # a batch read is one row group of a written day
PREFETCH_BATCHES = 3
MICROS_PER_DAY = 86_400_000_000


def import_fill_csv(
    con: duckdb.DuckDBPyConnection,
    scan: CsvScan,
    lake: Lake,
    rejects: Rejects,
    *,
    start: date | None = None,
    end: date | None = None,
    spill_dir: Path,
    progress: Progress | None = None,
    batch_rows: int = BATCH_ROWS,
    max_day_rows: int = MAX_DAY_ROWS,
    reader: Literal["arrow", "duckdb"] = "arrow",
) -> FillImport:
    """Validate, normalise and merge the scanned orderFilled.csv into its day partitions.

    The file is read by pyarrow (``ArrowCells``) unless ``reader`` says DuckDB or pyarrow
    gives up on it; then DuckDB reads it from the start. Days written before that are
    rewritten with the same rows (a day merges with what the lake holds).
    ``batch_rows`` and ``max_day_rows`` trade memory for speed (tests make them tiny to
    drive the spill path with a few rows).
    """
    options = {
        "start": start,
        "end": end,
        "spill_dir": spill_dir,
        "progress": progress,
        "max_day_rows": max_day_rows,
    }
    if reader == "arrow":
        try:
            cells = ArrowCells(scan.path, scan.header, batch_rows)
            return _import_cells(con, cells, scan, lake, rejects, **options)
        except CsvReadFallback as exc:
            if progress:
                progress(f"order_filled: pyarrow cannot read the file ({exc}); using DuckDB")
    cells = DuckDbCells(con, scan, batch_rows, guard_dir=spill_dir)
    return _import_cells(con, cells, scan, lake, rejects, **options)


def _import_cells(
    con: duckdb.DuckDBPyConnection,
    cells: CellBatches,
    scan: CsvScan,
    lake: Lake,
    rejects: Rejects,
    *,
    start: date | None,
    end: date | None,
    spill_dir: Path,
    progress: Progress | None,
    max_day_rows: int,
) -> FillImport:
    """The import over ``cells``; adds to ``rejects`` only once the whole file is read."""
    result = FillImport()
    side = side_connection(con)
    schema = side.execute(ORDER_FILLED.typed_empty_select()).to_arrow_table().schema
    days = DayAssembler(lake, side, schema, spill_dir, result, max_day_rows)
    latest = datetime.now(UTC) + timedelta(days=2)
    latest_micros = int(latest.timestamp() * 1e6)
    first_day = (start - date(1970, 1, 1)).days if start else None
    last_day = (end - date(1970, 1, 1)).days if end else None
    validation_rejects: list[ValidationReject] = []

    def good_rows(batch: pa.RecordBatch) -> tuple[pa.Table, np.ndarray]:
        """The batch's canonical good rows inside [start, end] and their day numbers."""
        started = time.perf_counter()
        record_base = result.rows_read
        result.rows_read += batch.num_rows
        fast = fast_rows(batch, latest_micros)
        good = canonical_fast_rows(batch, fast, schema)
        if not fast.ok.all():
            slow = pa.array(~fast.ok)
            record_no = np.flatnonzero(~fast.ok) + record_base + 1
            slow_rows = text_cells(batch.filter(slow))
            checked = canonical_rules_for_rows(side, slow_rows, record_no, scan.header)
            rejected = checked.filter(pc.is_valid(checked["reject_field"]))
            validation_rejects.extend(
                zip(
                    rejected["record_no"].to_pylist(),
                    rejected["reject_field"].to_pylist(),
                    rejected["reject_reason"].to_pylist(),
                    rejected["raw_line"].to_pylist(),
                    strict=True,
                )
            )
            accepted = checked.filter(pc.is_null(checked["reject_field"]))
            good = pa.concat_tables([good, accepted.select(schema.names).cast(schema)])
            good = good.combine_chunks()
        micros = np.concatenate([int64_values(c) for c in good.column("timestamp").chunks])
        day_numbers = (micros // MICROS_PER_DAY).astype(np.int32)
        keep = np.ones(len(day_numbers), dtype=bool)
        if first_day is not None:
            keep &= day_numbers >= first_day
        if last_day is not None:
            keep &= day_numbers <= last_day
        if not keep.all():
            result.rows_outside_window += int(len(keep) - np.count_nonzero(keep))
            good, day_numbers = good.filter(keep), day_numbers[keep]
        result.rows_accepted += good.num_rows
        result.timed("checks and normalisation (main thread)", started)
        return good, day_numbers

    def on_partition(write: PartitionWrite) -> None:
        result.partitions[write.day] = write
        if progress and len(result.partitions) % 50 == 0:
            progress(
                f"order_filled: {len(result.partitions)} day partitions written, "
                f"{result.rows_read:,} rows read"
            )

    scanned = _prefetched(cells.batches(), PREFETCH_BATCHES, result)

    def on_written(write: PartitionWrite, duplicates: int) -> None:
        result.duplicates_dropped += duplicates
        on_partition(write)

    writer_con = side_connection(con)
    writer = DayWriter(lake, writer_con, schema, on_written, result)
    try:
        for batch in scanned:
            for day, table in days.add(*good_rows(batch)):
                writer.submit(day, table)
        for day, table in days.finish():
            writer.submit(day, table)
        writer.drain()
        started = time.perf_counter()
        days.merge_spilled(on_partition)
        result.timed("merge of spilled rows", started)
    finally:
        # stops the scanning thread before the connection is used or closed again
        scanned.close()
        writer.close()
        days.close()
        writer_con.close()
        side.close()

    result.account(cells, scan, rejects, validation_rejects)
    if progress:
        progress(f"order_filled: {len(result.partitions)} day partitions written")
    return result


_END = object()


def _prefetched(
    reader: Iterator[pa.RecordBatch], depth: int, result: FillImport
) -> Iterator[pa.RecordBatch]:
    """Iterate ``reader`` with up to ``depth`` batches produced ahead in another thread.

    The readers (pyarrow, DuckDB) release the GIL while they parse, so the next batch is
    parsed while this thread checks the previous one.
    """
    batches: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: object) -> bool:
        """Queue ``item`` unless the consumer has stopped (then False)."""
        while not stop.is_set():
            try:
                batches.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        batch_iter = iter(reader)
        try:
            while True:
                started = time.perf_counter()
                batch = next(batch_iter, None)
                result.timed("CSV parsing (scan thread)", started)
                if batch is None:
                    break
                if not offer(batch):
                    return
            item: object = _END
        except BaseException as exc:  # handed to the consumer, which re-raises it
            item = exc
        offer(item)

    worker = threading.Thread(target=produce, name="fill-csv-scan", daemon=True)
    worker.start()
    try:
        while True:
            started = time.perf_counter()
            item = batches.get()
            result.timed("waiting for the scan (main thread)", started)
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        worker.join()
