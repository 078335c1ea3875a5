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
   leading zeros) goes through the canonical SQL rules (``order_fill_rows_sql``), on just
   those rows: they either normalise it or reject it with its field and reason. One set of
   rules decides; the fast path only skips work whose result it knows.
4. Good rows are grouped by UTC day. A dump is ordered by time, so a day is complete when
   the stream has moved on to another day. One of three writer threads then drops repeated
   fill ids, merges the day with what the lake already holds for it (stored rows win; only
   when the day has files), sorts by (timestamp, transaction_hash, id) and writes it
   atomically. A fresh day is ordered by a compiled kernel (``_day_order``), with Arrow's
   sort as the exact fallback.
   Rows of a day already written (a file not grouped by day) or of a day too large to
   hold are spilled to a temporary Parquet file and merged at the end by
   ``merge.merge_order_fills`` (DuckDB's external sort): any order gives the same lake
   with bounded memory, only slower.

Duplicates are found among the rows of one day: a fill id embeds its transaction hash, and
a transaction has one block time, so the rows of one fill share a day.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Literal

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
from polymkt_dagster.lib.ingest import normalize as n
from polymkt_dagster.lib.ingest.fill_ids import (
    content_digests,
    fill_ids,
    render_fill_ids,
    string_buffers,
)
from polymkt_dagster.lib.ingest.merge import merge_order_fills, stored_fill_wins_sql
from polymkt_dagster.lib.ingest.sources.csv_source import (
    ArrowCells,
    CellBatches,
    CsvReadFallback,
    CsvScan,
    DuckDbCells,
    Rejects,
    RowAccounting,
    physical_line,
    reject_expressions,
    text_cells,
)

Progress = Callable[[str], None]

BATCH_ROWS = 122_880
# A day holding more good rows than this is assembled by DuckDB's external sort instead of
# in memory (about 400 bytes a row in Arrow: ~400 MB).
MAX_DAY_ROWS = 1_000_000
PREFETCH_BATCHES = 3
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
MAX_PRICE = 1.000001  # the canonical check: implied price above this is rejected

MICROS_PER_DAY = 86_400_000_000
EARLIEST_MICROS = int(
    (datetime.fromisoformat(n.EARLIEST_TIMESTAMP).replace(tzinfo=UTC)).timestamp() * 1e6
)

# Digits-only timestamps at or above this are milliseconds to the canonical rules: such
# (rare) rows take the rules' path.
MILLISECONDS_FROM = np.uint64(100_000_000_000)
MICROS_PER_SECOND = 1_000_000
_INT64_CEILING = np.uint64(2**63)  # amounts must fit the canonical BIGINT

TX_HASH_WIDTH = 66
ADDRESS_WIDTH = 42
_ZERO, _NINE, _LOWER_X = ord("0"), ord("9"), ord("x")
# The content a fill id digests (``fill_ids``), canonical names.
FILL_CONTENT_COLUMNS = (
    "maker",
    "taker",
    "maker_asset_id",
    "taker_asset_id",
    "maker_amount_filled",
    "taker_amount_filled",
)
# The cells of poly_data's orderFilled.csv.
_CSV_COLUMNS = (
    "timestamp",
    "maker",
    "taker",
    "makerAssetId",
    "takerAssetId",
    "makerAmountFilled",
    "takerAmountFilled",
    "transactionHash",
)


def order_fill_rows_sql(relation: str, header: list[str]) -> str:
    """The canonical rules: fill columns but the id, plus ``reject_field``/``reject_reason``.

    ``relation`` yields ``record_no`` and the CSV cells as text under their header names.
    This is the definition of a valid row and of its normalised values; the streaming
    import's fast path only takes rows for which it provably gives the same result.
    ``canonical_rules`` runs it and adds the fill ids.
    """
    field_case, reason_case, raw_line = reject_expressions(_order_fill_checks(), header)
    return f"""
        WITH norm AS (
            SELECT
                record_no,
                {n.sql_timestamp('"timestamp"')} AS ts,
                {n.sql_address("maker")} AS maker,
                {n.sql_address("taker")} AS taker,
                {n.sql_asset_id('"makerAssetId"')} AS maker_asset_id,
                {n.sql_asset_id('"takerAssetId"')} AS taker_asset_id,
                {n.sql_positive_bigint('"makerAmountFilled"')} AS maker_amount_filled,
                {n.sql_positive_bigint('"takerAmountFilled"')} AS taker_amount_filled,
                {n.sql_tx_hash('"transactionHash"')} AS transaction_hash,
                "timestamp" AS raw_timestamp, maker AS raw_maker, taker AS raw_taker,
                "makerAssetId" AS raw_maker_asset_id, "takerAssetId" AS raw_taker_asset_id,
                "makerAmountFilled" AS raw_maker_amount,
                "takerAmountFilled" AS raw_taker_amount,
                "transactionHash" AS raw_tx,
                {raw_line} AS raw_line
            FROM {relation}
        ),
        checked AS (
            SELECT *,
                CASE WHEN maker_asset_id = '0'
                     THEN maker_amount_filled / taker_amount_filled
                     ELSE taker_amount_filled / maker_amount_filled END AS implied_price
            FROM norm
        )
        SELECT
            record_no,
            ts AS "timestamp",
            CAST(NULL AS BIGINT) AS block_number,
            CAST(NULL AS INTEGER) AS log_index,
            transaction_hash,
            CAST(NULL AS VARCHAR) AS order_hash,
            maker, taker, maker_asset_id, taker_asset_id,
            maker_amount_filled, taker_amount_filled,
            CAST(NULL AS BIGINT) AS fee,
            CAST(NULL AS VARCHAR) AS exchange,
            'v1' AS contract_version,
            'csv' AS source,
            {field_case} AS reject_field,
            {reason_case} AS reject_reason,
            CASE WHEN {field_case} IS NOT NULL THEN raw_line END AS raw_line
        FROM checked
    """


def canonical_rules(con: duckdb.DuckDBPyConnection, relation: str, header: list[str]) -> pa.Table:
    """``order_fill_rows_sql`` over ``relation`` with the fill ids of its accepted rows.

    Without an order hash in the CSV, a fill's id is its transaction plus a digest of its
    content (``fill_ids``): stable across re-imports, so re-imports deduplicate.
    """
    checked = con.execute(order_fill_rows_sql(relation, header)).to_arrow_table()
    ids = fill_ids(*(checked.column(name) for name in ("transaction_hash", *FILL_CONTENT_COLUMNS)))
    ids = pc.if_else(pc.is_null(checked.column("reject_field")), ids, None)
    return checked.add_column(1, "id", ids)


def _order_fill_checks() -> list[tuple[str, str, str]]:
    """(field, failing condition, reason) in the order they are reported."""
    return [
        (
            "timestamp",
            "ts IS NULL",
            "format('unparsable timestamp \"{}\"', coalesce(raw_timestamp, ''))",
        ),
        (
            "timestamp",
            f"NOT {n.sql_timestamp_in_range('ts')}",
            "format('timestamp {} is outside the plausible range', ts)",
        ),
        ("maker", "maker IS NULL", "format('invalid address \"{}\"', coalesce(raw_maker, ''))"),
        ("taker", "taker IS NULL", "format('invalid address \"{}\"', coalesce(raw_taker, ''))"),
        (
            "makerAssetId",
            "maker_asset_id IS NULL",
            'format(\'invalid asset id "{}": expected 0 (USDC) or a token id of 71-78 digits '
            "without a leading zero', coalesce(raw_maker_asset_id, ''))",
        ),
        (
            "takerAssetId",
            "taker_asset_id IS NULL",
            'format(\'invalid asset id "{}": expected 0 (USDC) or a token id of 71-78 digits '
            "without a leading zero', coalesce(raw_taker_asset_id, ''))",
        ),
        (
            "makerAmountFilled",
            "maker_amount_filled IS NULL",
            'format(\'amount "{}" is not a positive integer of digits only (no sign, space, '
            "exponent or fraction) within BIGINT', coalesce(raw_maker_amount, ''))",
        ),
        (
            "takerAmountFilled",
            "taker_amount_filled IS NULL",
            'format(\'amount "{}" is not a positive integer of digits only (no sign, space, '
            "exponent or fraction) within BIGINT', coalesce(raw_taker_amount, ''))",
        ),
        (
            "transactionHash",
            "transaction_hash IS NULL",
            "format('invalid transaction hash \"{}\"', coalesce(raw_tx, ''))",
        ),
        (
            "price",
            f"implied_price > {MAX_PRICE}",
            "format('implied price {} (USDC per share) is outside [0, 1]', "
            "round(implied_price, 6))",
        ),
    ]


# ---------------------------------------------------------------------------------------
# The fast path: one compiled pass over the Arrow buffers of a batch
# ---------------------------------------------------------------------------------------


# Each kernel is one tight loop over one column. Bytes are checked 8 at a time, as uint64
# words read from any position (``_overlapping_words``), by bytewise range tests without
# carries between bytes ("SWAR"): for a 7-bit byte b, b + (0x80 - lo) has its high bit set
# exactly when b >= lo.
_U8 = np.uint8
# Kernels are compiled (or loaded from numba's cache) when this module is imported, with
# explicit signatures: a first import costs ~0.5 s, not the first batch of an import.
_OFFSETS, _FLAGS, _INTS = nt.int64[::1], nt.boolean[::1], nt.int64[::1]
# Bytes seen through Arrow buffers are read-only; writable arrays convert to these.
_BYTES = nt.Array(nt.uint8, 1, "C", readonly=True)
_WORDS = nt.Array(nt.uint64, 1, "A", readonly=True)
_CELLS = (_OFFSETS, _BYTES, _WORDS, _FLAGS)  # offsets, bytes, overlapping words, validity
_HIGH_BITS = np.uint64(0x8080808080808080)
_FROM_ZERO = np.uint64(0x5050505050505050)  # 0x80 - ord("0")
_PAST_NINE = np.uint64(0x4646464646464646)  # 0x80 - (ord("9") + 1)
_FROM_A = np.uint64(0x1F1F1F1F1F1F1F1F)  # 0x80 - ord("a")
_PAST_F = np.uint64(0x1919191919191919)  # 0x80 - (ord("f") + 1)
_CASE_BITS = np.uint64(0x2020202020202020)  # OR-ed in: 'A'..'F' -> 'a'..'f'


def _overlapping_words(data: np.ndarray) -> np.ndarray:
    """``words[i]`` is the 8 bytes ``data[i:i + 8]`` as one uint64 (an overlapping,
    unaligned view: x86 loads those as fast as aligned ones)."""
    data = np.ascontiguousarray(data)
    return np.ndarray(shape=(max(len(data) - 7, 0),), dtype=np.uint64, buffer=data, strides=(1,))


@numba.njit(inline="always")
def _digit_word(word: np.uint64) -> bool:
    if word & _HIGH_BITS:
        return False
    digits = (word + _FROM_ZERO) & ~(word + _PAST_NINE)
    return (digits & _HIGH_BITS) == _HIGH_BITS


@numba.njit(inline="always")
def _hex_word(word: np.uint64, fold: np.uint64) -> bool:
    if word & _HIGH_BITS:
        return False
    digits = (word + _FROM_ZERO) & ~(word + _PAST_NINE)
    letters = word | fold
    letters = (letters + _FROM_A) & ~(letters + _PAST_F)
    return ((digits | letters) & _HIGH_BITS) == _HIGH_BITS


@numba.njit(inline="always")
def _digit_cell(data: np.ndarray, words: np.ndarray, start: int, stop: int) -> bool:
    """Every byte of ``data[start:stop]`` is a decimal digit."""
    if stop - start < 8:
        for j in range(start, stop):  # noqa: SIM110 - numba compiles loops, not all(generator)
            if not _ZERO <= data[j] <= _NINE:
                return False
        return True
    j = start
    while j + 8 < stop:
        if not _digit_word(words[j]):
            return False
        j += 8
    return _digit_word(words[stop - 8])  # the last 8 bytes (may overlap the word before)


@numba.njit(nt.void(*_CELLS, nt.int64, nt.boolean, _FLAGS), nogil=True, cache=True)
def _keep_hex(
    offsets: np.ndarray, data: np.ndarray, words: np.ndarray, valid: np.ndarray, width: int,
    any_case: bool, ok: np.ndarray,
) -> None:  # fmt: skip
    """``ok &=`` the cell is ``0x`` plus hex digits (lower-case unless ``any_case``), ``width``
    long; ``width - 2`` is a multiple of 8."""
    fold = _CASE_BITS if any_case else np.uint64(0)
    for row in range(len(ok)):
        start = offsets[row]
        if not (ok[row] and valid[row] and offsets[row + 1] - start == width):
            ok[row] = False
            continue
        good = data[start] == _ZERO and data[start + 1] == _LOWER_X
        j = start + 2
        while good and j < start + width:
            good = _hex_word(words[j], fold)
            j += 8
        ok[row] = good


@numba.njit(nt.void(*_CELLS, nt.int64, nt.boolean, _FLAGS), nogil=True, cache=True)
def _keep_digits(
    offsets: np.ndarray, data: np.ndarray, words: np.ndarray, valid: np.ndarray, longest: int,
    canonical: bool, ok: np.ndarray,
) -> None:  # fmt: skip
    """``ok &=`` the cell is 1..longest decimal digits; ``canonical``: no leading zero."""
    for row in range(len(ok)):
        start, stop = offsets[row], offsets[row + 1]
        ok[row] = (
            ok[row]
            and valid[row]
            and 0 < stop - start <= longest
            and not (canonical and data[start] == _ZERO and stop - start > 1)
            and _digit_cell(data, words, start, stop)
        )


@numba.njit(inline="always")
def _decimal_value(offsets: np.ndarray, data: np.ndarray, row: int, ceiling: np.uint64) -> int:
    """The value of a digits-only cell, or -1 once it reaches ``ceiling`` (at most 2**63).

    Unsigned, so 19 digits cannot overflow before the comparison.
    """
    value = np.uint64(0)
    for j in range(offsets[row], offsets[row + 1]):
        value = value * np.uint64(10) + np.uint64(data[j] - _ZERO)
        if value >= ceiling:
            return -1
    return np.int64(value)


@numba.njit(
    nt.void(*[_OFFSETS, _BYTES] * 4, nt.int64, nt.int64, _FLAGS, _INTS, _INTS, _INTS),
    nogil=True,
    cache=True,
)
def _keep_values(
    ts_o: np.ndarray, ts_d: np.ndarray,
    maker_amount_o: np.ndarray, maker_amount_d: np.ndarray,
    taker_amount_o: np.ndarray, taker_amount_d: np.ndarray,
    maker_asset_o: np.ndarray, maker_asset_d: np.ndarray,
    earliest_micros: int, latest_micros: int,
    ok: np.ndarray, seconds: np.ndarray, maker_amount: np.ndarray, taker_amount: np.ndarray,
) -> None:  # fmt: skip
    """For rows whose cells passed the form checks: the values, and ``ok &=`` they are in
    range (unix seconds, not milliseconds, in the plausible window; amounts in (0, 2**63);
    implied price at most ``MAX_PRICE``)."""
    for row in range(len(ok)):
        if not ok[row]:
            continue
        second = _decimal_value(ts_o, ts_d, row, MILLISECONDS_FROM)
        maker_value = _decimal_value(maker_amount_o, maker_amount_d, row, _INT64_CEILING)
        taker_value = _decimal_value(taker_amount_o, taker_amount_d, row, _INT64_CEILING)
        micros = second * MICROS_PER_SECOND
        if not (
            second >= 0
            and earliest_micros <= micros < latest_micros
            and maker_value > 0
            and taker_value > 0
        ):
            ok[row] = False
            continue
        start = maker_asset_o[row]
        if maker_asset_o[row + 1] - start == 1 and maker_asset_d[start] == _ZERO:  # USDC side
            price = np.float64(maker_value) / np.float64(taker_value)
        else:
            price = np.float64(taker_value) / np.float64(maker_value)
        ok[row] = price <= MAX_PRICE
        seconds[row] = second
        maker_amount[row] = maker_value
        taker_amount[row] = taker_value


@numba.njit(nt.void(_OFFSETS, _BYTES, _FLAGS, nt.uint8[:, ::1]), nogil=True, cache=True)
def _lower_addresses(
    offsets: np.ndarray, data: np.ndarray, ok: np.ndarray, out: np.ndarray
) -> None:
    """Checked addresses lower-cased into ``out`` (rows x 42): ``| 32`` lower-cases the hex
    letters and leaves digits and ``x`` as they are."""
    for row in range(len(ok)):
        if ok[row]:
            start = offsets[row]
            for j in range(ADDRESS_WIDTH):
                out[row, j] = data[start + j] | _U8(32)


def _valid(array: pa.Array) -> np.ndarray:
    if array.null_count == 0:
        return np.ones(len(array), dtype=np.bool_)
    bits = np.frombuffer(array.buffers()[0], dtype=np.uint8)
    return np.unpackbits(bits, bitorder="little")[array.offset : array.offset + len(array)].astype(
        np.bool_
    )


def _text_column(array: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Offsets, bytes, the bytes as ``_overlapping_words`` and validity of a text column."""
    offsets, data = string_buffers(array)
    data = np.ascontiguousarray(data)
    return offsets, data, _overlapping_words(data), _valid(array)


@dataclass
class _FastRows:
    """The rows of a batch the fast path takes and their canonical values (all rows)."""

    ok: np.ndarray
    seconds: np.ndarray
    maker_amount: np.ndarray
    taker_amount: np.ndarray
    makers: pa.Array
    takers: pa.Array


def _fast_rows(batch: pa.RecordBatch, latest_micros: int) -> _FastRows:
    """Rows in the plain form a dump has, and their canonical values.

    The form: hex addresses (either case) and a lower-case hex hash of the right width,
    decimal ids and amounts without leading zeros, amounts in (0, 2**63), a digits-only
    timestamp in unix seconds inside the plausible range, implied price at most
    ``MAX_PRICE``. For such a row the canonical rules change no cell but the case of the
    addresses, so these values are exactly what the rules give.
    """
    rows = batch.num_rows
    cells = {name: _text_column(batch.column(name)) for name in _CSV_COLUMNS}
    ok = np.ones(rows, dtype=np.bool_)
    _keep_hex(*cells["maker"], ADDRESS_WIDTH, True, ok)
    _keep_hex(*cells["taker"], ADDRESS_WIDTH, True, ok)
    _keep_hex(*cells["transactionHash"], TX_HASH_WIDTH, False, ok)
    _keep_digits(*cells["makerAssetId"], 78, True, ok)
    _keep_digits(*cells["takerAssetId"], 78, True, ok)
    for name in ("makerAssetId", "takerAssetId"):
        ok &= _asset_id_widths(cells[name][0], cells[name][1])
    _keep_digits(*cells["makerAmountFilled"], 19, True, ok)
    _keep_digits(*cells["takerAmountFilled"], 19, True, ok)
    _keep_digits(*cells["timestamp"], 40, False, ok)
    found = _FastRows(
        ok=ok,
        seconds=np.zeros(rows, dtype=np.int64),
        maker_amount=np.zeros(rows, dtype=np.int64),
        taker_amount=np.zeros(rows, dtype=np.int64),
        makers=pa.nulls(0),
        takers=pa.nulls(0),
    )
    _keep_values(
        *cells["timestamp"][:2],
        *cells["makerAmountFilled"][:2],
        *cells["takerAmountFilled"][:2],
        *cells["makerAssetId"][:2],
        EARLIEST_MICROS,
        latest_micros,
        ok,
        found.seconds,
        found.maker_amount,
        found.taker_amount,
    )
    addresses = []
    everything = bool(ok.all())
    for name in ("maker", "taker"):
        offsets, data, _, _ = cells[name]
        if everything:  # then the cells are one block of fixed-width values
            lowered = (data[offsets[0] : offsets[-1]] | np.uint8(32)).reshape(rows, ADDRESS_WIDTH)
        else:
            lowered = np.zeros((rows, ADDRESS_WIDTH), dtype=np.uint8)
            _lower_addresses(offsets, data, ok, lowered)
        addresses.append(_fixed_width_text(lowered))
    found.makers, found.takers = addresses
    return found


def _asset_id_widths(offsets: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Cells of digits without a leading zero that are ``0`` or 71-78 digits long (the
    token id rule, ``normalize.OUTCOME_TOKEN_PATTERN``)."""
    widths = np.diff(offsets)
    starts = np.minimum(offsets[:-1], max(len(data) - 1, 0))
    usdc = (widths == 1) & (data[starts] == _ZERO) if len(data) else widths < 0
    return usdc | ((widths >= 71) & (widths <= 78))


def _fixed_width_text(matrix: np.ndarray) -> pa.Array:
    rows, width = matrix.shape
    offsets = np.arange(rows + 1, dtype=np.int32) * width
    return pa.Array.from_buffers(
        pa.string(), rows, [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(matrix))]
    )


def _int64_values(array: pa.Array) -> np.ndarray:
    """The 64-bit values of an integer or timestamp array, read from its buffer.

    (``Array.to_numpy`` would import pandas, about a second, on first use.)
    """
    buffer = array.buffers()[1]
    return np.frombuffer(buffer, dtype=np.int64)[array.offset : array.offset + len(array)]


# ---------------------------------------------------------------------------------------
# Streaming import
# ---------------------------------------------------------------------------------------


@dataclass
class FillImport:
    """What the streaming import counted and wrote."""

    rows_read: int = 0
    rows_accepted: int = 0  # distinct good rows inside the requested days
    rows_rejected: int = 0
    duplicates_dropped: int = 0
    rows_outside_window: int = 0
    accounting: RowAccounting | None = None
    partitions: dict[date, PartitionWrite] = field(default_factory=dict)
    # Wall seconds each stage was busy; the stages overlap (scan, main and writer threads),
    # so they add up to more than the import took. For benchmarks and logs.
    stage_seconds: dict[str, float] = field(default_factory=dict)
    _timing_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def timed(self, stage: str, started: float) -> None:
        elapsed = time.perf_counter() - started
        with self._timing_lock:  # the writer threads report too
            self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + elapsed


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
    side = _side_connection(con)
    schema = side.execute(ORDER_FILLED.typed_empty_select()).to_arrow_table().schema
    days = _DayAssembler(lake, side, schema, spill_dir, result, max_day_rows)
    latest = datetime.now(UTC) + timedelta(days=2)
    latest_micros = int(latest.timestamp() * 1e6)
    first_day = (start - date(1970, 1, 1)).days if start else None
    last_day = (end - date(1970, 1, 1)).days if end else None
    validation_rejects: list[tuple[int, str, str, str]] = []

    def good_rows(batch: pa.RecordBatch) -> tuple[pa.Table, np.ndarray]:
        """The batch's canonical good rows inside [start, end] and their day numbers."""
        started = time.perf_counter()
        record_base = result.rows_read
        result.rows_read += batch.num_rows
        fast = _fast_rows(batch, latest_micros)
        good = _canonical_fast(batch, fast, schema)
        if not fast.ok.all():
            slow = pa.array(~fast.ok)
            record_no = np.flatnonzero(~fast.ok) + record_base + 1
            slow_rows = text_cells(batch.filter(slow))
            checked = _canonical_rules(side, slow_rows, record_no, scan.header)
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
        micros = np.concatenate([_int64_values(c) for c in good.column("timestamp").chunks])
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

    writer_con = _side_connection(con)
    writer = _DayWriter(lake, writer_con, schema, on_written, result)
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

    rejected_before = len(rejects)
    broken = cells.broken_lines(rejects)
    result.rows_read += len(rejects) - rejected_before
    for record_no, field_name, reason, raw in validation_rejects:
        rejects.add(str(scan.path), physical_line(record_no, broken), field_name, reason, raw)
    result.rows_rejected = len(rejects) - rejected_before
    # rows_accepted counted every good row; a repeated fill id is a duplicate instead
    result.rows_accepted -= result.duplicates_dropped
    count = cells.line_count()
    result.accounting = RowAccounting(
        file=str(scan.path),
        records_in_file=count.records() if count else result.rows_read,
        rows_read=result.rows_read,
        accepted=result.rows_accepted,
        rejected=result.rows_rejected,
        duplicates=result.duplicates_dropped,
        outside_window=result.rows_outside_window,
    ).check()
    if progress:
        progress(f"order_filled: {len(result.partitions)} day partitions written")
    return result


def _side_connection(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """A second connection to the same database: the scan streams on ``con`` meanwhile.

    Memory limit and spill directory are database-wide; session settings are not.
    """
    side = con.cursor()
    side.execute("SET TimeZone = 'UTC'")
    side.execute("SET enable_progress_bar = false")
    return side


def _canonical_fast(batch: pa.RecordBatch, fast: _FastRows, schema: pa.Schema) -> pa.Table:
    """Canonical fill rows of the rows the fast path took (values from ``_fast_rows``)."""
    everything = bool(fast.ok.all())
    rows = np.arange(batch.num_rows) if everything else np.flatnonzero(fast.ok)
    keep = None if everything else pa.array(fast.ok)

    def taken(array: pa.Array) -> pa.Array:
        """The fast rows' cells as text: checked ASCII, so bytes are reinterpreted as is."""
        array = array if keep is None else array.filter(keep)
        if pa.types.is_binary(array.type):
            array = pa.Array.from_buffers(
                pa.string(), len(array), array.buffers(), offset=array.offset
            )
        return array

    digests = content_digests(
        fast.makers,
        fast.takers,
        batch.column("makerAssetId"),
        batch.column("takerAssetId"),
        batch.column("makerAmountFilled"),
        batch.column("takerAmountFilled"),
        rows,
    )
    transaction_hash = taken(batch.column("transactionHash"))
    columns = {
        "id": render_fill_ids(transaction_hash, digests),
        "timestamp": _primitive(
            fast.seconds[rows] * MICROS_PER_SECOND, schema.field("timestamp").type
        ),
        "transaction_hash": transaction_hash,
        "maker": taken(fast.makers),
        "taker": taken(fast.takers),
        "maker_asset_id": taken(batch.column("makerAssetId")),
        "taker_asset_id": taken(batch.column("takerAssetId")),
        "maker_amount_filled": _primitive(fast.maker_amount[rows], pa.int64()),
        "taker_amount_filled": _primitive(fast.taker_amount[rows], pa.int64()),
        "contract_version": _constant_text("v1", len(rows)),
        "source": _constant_text("csv", len(rows)),
    }
    arrays = [
        columns[f.name].cast(f.type) if f.name in columns else pa.nulls(len(rows), f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def _primitive(values: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    """A null-free Arrow array over a numpy buffer (``pa.array`` would import pandas)."""
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(arrow_type, len(values), [None, pa.py_buffer(values)])


def _constant_text(text: str, rows: int) -> pa.Array:
    """A string column holding ``text`` in every row, built from buffers (no per-row work)."""
    encoded = text.encode()
    matrix = np.frombuffer(encoded * rows, dtype=np.uint8).reshape(rows, len(encoded))
    return _fixed_width_text(matrix)


def _canonical_rules(
    con: duckdb.DuckDBPyConnection, rows: pa.RecordBatch, record_no: np.ndarray, header: list[str]
) -> pa.Table:
    """Apply ``order_fill_rows_sql`` to rows the fast checks did not take."""
    raw = pa.Table.from_batches([rows]).select(header)
    raw = raw.add_column(0, "record_no", _primitive(record_no.astype(np.int64), pa.int64()))
    view = f"slow_fills_{uuid.uuid4().hex[:8]}"
    con.register(view, raw)
    try:
        return canonical_rules(con, view, header)
    finally:
        con.unregister(view)


class _DayAssembler:
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


class _DayWriter:
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
                cursor = self.local.cursor = _side_connection(self.con)
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
                row_group_size=BATCH_ROWS,
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
    """Values of ``width`` bytes laid end to end, with their ``_overlapping_words``."""
    values = np.ascontiguousarray(values)
    return values, _overlapping_words(values), width


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
    nt.Tuple((_INTS, nt.boolean))(_INTS, nt.Tuple((_BYTES, _WORDS, nt.int64)), _INTS),
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
    timestamps = np.concatenate([_int64_values(c) for c in table.column("timestamp").chunks])
    by_time = np.argsort(timestamps, kind="stable")  # near-sorted input: about linear
    order, ok = _day_order(timestamps, fixed, by_time)
    if not ok:
        return None
    taken = _primitive(order, pa.int64())
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
