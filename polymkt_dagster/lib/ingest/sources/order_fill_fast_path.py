"""The fast path of the fill import: one compiled pass over the Arrow buffers of a batch.

Per batch, compiled kernels (numba, over the Arrow buffers, no regex) pick the rows in the
plain form a dump has: hex addresses (either case) and a lower-case hex hash of the right
width, decimal ids and amounts without leading zeros, digits-only timestamps in range,
price within [0, 1]. For those rows ``fast_rows`` also produces the canonical values (unix
seconds, integer amounts, lower-cased addresses) and ``canonical_fast_rows`` the fill rows
with their ids: exactly what the canonical rules (``order_fill_rules``) give, since the
rules change nothing else in such a row. Every other row is left to those rules. Separate
from the import's flow (``order_fill_csv``) because it is bit-level code with its own
invariants, checked against the rules by the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numba
import numpy as np
import pyarrow as pa
from numba import types as nt

from polymkt_dagster.lib.ingest import normalize as n
from polymkt_dagster.lib.ingest.fill_ids import content_digests, render_fill_ids, string_buffers
from polymkt_dagster.lib.ingest.sources.order_fill_buffers import (
    BYTES,
    INTS,
    WORDS,
    constant_text,
    fixed_width_text,
    overlapping_words,
    primitive_array,
)
from polymkt_dagster.lib.ingest.sources.order_fill_rules import MAX_PRICE

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


# Each kernel is one tight loop over one column. Bytes are checked 8 at a time, as uint64
# words read from any position (``overlapping_words``), by bytewise range tests without
# carries between bytes ("SWAR"): for a 7-bit byte b, b + (0x80 - lo) has its high bit set
# exactly when b >= lo.
_U8 = np.uint8
# Kernels are compiled (or loaded from numba's cache) when this module is imported, with
# explicit signatures: a first import costs ~0.5 s, not the first batch of an import.
_OFFSETS, _FLAGS = nt.int64[::1], nt.boolean[::1]
_CELLS = (_OFFSETS, BYTES, WORDS, _FLAGS)  # offsets, bytes, overlapping words, validity
_HIGH_BITS = np.uint64(0x8080808080808080)
_FROM_ZERO = np.uint64(0x5050505050505050)  # 0x80 - ord("0")
_PAST_NINE = np.uint64(0x4646464646464646)  # 0x80 - (ord("9") + 1)
_FROM_A = np.uint64(0x1F1F1F1F1F1F1F1F)  # 0x80 - ord("a")
_PAST_F = np.uint64(0x1919191919191919)  # 0x80 - (ord("f") + 1)
_CASE_BITS = np.uint64(0x2020202020202020)  # OR-ed in: 'A'..'F' -> 'a'..'f'


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
    nt.void(*[_OFFSETS, BYTES] * 4, nt.int64, nt.int64, _FLAGS, INTS, INTS, INTS),
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


@numba.njit(nt.void(_OFFSETS, BYTES, _FLAGS, nt.uint8[:, ::1]), nogil=True, cache=True)
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
    """Offsets, bytes, the bytes as ``overlapping_words`` and validity of a text column."""
    offsets, data = string_buffers(array)
    data = np.ascontiguousarray(data)
    return offsets, data, overlapping_words(data), _valid(array)


@dataclass
class FastRows:
    """The rows of a batch the fast path takes and their canonical values (all rows)."""

    ok: np.ndarray
    seconds: np.ndarray
    maker_amount: np.ndarray
    taker_amount: np.ndarray
    makers: pa.Array
    takers: pa.Array


def fast_rows(batch: pa.RecordBatch, latest_micros: int) -> FastRows:
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
    found = FastRows(
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
        addresses.append(fixed_width_text(lowered))
    found.makers, found.takers = addresses
    return found


def _asset_id_widths(offsets: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Cells of digits without a leading zero that are ``0`` or 71-78 digits long (the
    token id rule, ``normalize.OUTCOME_TOKEN_PATTERN``)."""
    widths = np.diff(offsets)
    starts = np.minimum(offsets[:-1], max(len(data) - 1, 0))
    usdc = (widths == 1) & (data[starts] == _ZERO) if len(data) else widths < 0
    return usdc | ((widths >= 71) & (widths <= 78))


def canonical_fast_rows(batch: pa.RecordBatch, fast: FastRows, schema: pa.Schema) -> pa.Table:
    """Canonical fill rows of the rows the fast path took (values from ``fast_rows``)."""
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
        "timestamp": primitive_array(
            fast.seconds[rows] * MICROS_PER_SECOND, schema.field("timestamp").type
        ),
        "transaction_hash": transaction_hash,
        "maker": taken(fast.makers),
        "taker": taken(fast.takers),
        "maker_asset_id": taken(batch.column("makerAssetId")),
        "taker_asset_id": taken(batch.column("takerAssetId")),
        "maker_amount_filled": primitive_array(fast.maker_amount[rows], pa.int64()),
        "taker_amount_filled": primitive_array(fast.taker_amount[rows], pa.int64()),
        "contract_version": constant_text("v1", len(rows)),
        "source": constant_text("csv", len(rows)),
    }
    arrays = [
        columns[f.name].cast(f.type) if f.name in columns else pa.nulls(len(rows), f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)
