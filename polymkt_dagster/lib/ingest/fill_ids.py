"""Fill ids for order fills that come without an order hash (poly_data's orderFilled.csv).

A fill id is ``<transaction hash>_<16 hex digits>``: the digits are the XXH64 (seed 0) of
the fill's content, its canonical cells joined by ``|``::

    maker|taker|maker_asset_id|taker_asset_id|maker_amount_filled|taker_amount_filled

(addresses lower-case, ids and amounts as decimal text), written big-endian as
``xxhash.xxh64_hexdigest`` prints it. The same content always gives the same id, so
importing a fill twice lands it once; two fills of one transaction differ in content.

XXH64 is a published, versioned algorithm (unlike DuckDB's ``hash``, which may change
between releases) and about ten times cheaper per byte than MD5, which the import used
before. It is compiled with numba and checked against the ``xxhash`` package in the tests.
"""

from __future__ import annotations

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numba import types as nt

SEPARATOR = ord("|")
DIGEST_HEX = 16
_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)

_P1 = np.uint64(11400714785074694791)
_P2 = np.uint64(14029467366897019727)
_P3 = np.uint64(1609587929392839161)
_P4 = np.uint64(9650029242287828579)
_P5 = np.uint64(2870177450012600261)


@numba.njit(inline="always")
def _rotl(x: np.uint64, r: int) -> np.uint64:
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


@numba.njit(inline="always")
def _round(acc: np.uint64, lane: np.uint64) -> np.uint64:
    return _rotl(acc + lane * _P2, 31) * _P1


@numba.njit(inline="always")
def _merge_round(acc: np.uint64, lane: np.uint64) -> np.uint64:
    return (acc ^ _round(np.uint64(0), lane)) * _P1 + _P4


@numba.njit(inline="always")
def xxh64(buffer: np.ndarray, lanes: np.ndarray, length: int) -> np.uint64:
    """XXH64 of ``buffer[:length]`` (seed 0); ``lanes`` is the same memory as uint64."""
    i = 0
    if length >= 32:
        v1 = _P1 + _P2
        v2 = _P2
        v3 = np.uint64(0)
        v4 = np.uint64(0) - _P1
        while i + 32 <= length:
            v1 = _round(v1, lanes[i >> 3])
            v2 = _round(v2, lanes[(i >> 3) + 1])
            v3 = _round(v3, lanes[(i >> 3) + 2])
            v4 = _round(v4, lanes[(i >> 3) + 3])
            i += 32
        h = _rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)
        h = _merge_round(h, v1)
        h = _merge_round(h, v2)
        h = _merge_round(h, v3)
        h = _merge_round(h, v4)
    else:
        h = _P5
    h = h + np.uint64(length)
    while i + 8 <= length:
        h = _rotl(h ^ _round(np.uint64(0), lanes[i >> 3]), 27) * _P1 + _P4
        i += 8
    if i + 4 <= length:
        word = np.uint64(buffer[i]) | (np.uint64(buffer[i + 1]) << np.uint64(8))
        word |= (np.uint64(buffer[i + 2]) << np.uint64(16)) | (
            np.uint64(buffer[i + 3]) << np.uint64(24)
        )
        h = _rotl(h ^ (word * _P1), 23) * _P2 + _P3
        i += 4
    while i < length:
        h = _rotl(h ^ (np.uint64(buffer[i]) * _P5), 11) * _P1
        i += 1
    h = (h ^ (h >> np.uint64(33))) * _P2
    h = (h ^ (h >> np.uint64(29))) * _P3
    return h ^ (h >> np.uint64(32))


@numba.njit(inline="always")
def _append(buffer: np.ndarray, at: int, offsets: np.ndarray, data: np.ndarray, row: int) -> int:
    for j in range(offsets[row], offsets[row + 1]):
        buffer[at] = data[j]
        at += 1
    return at


# Compiled (or loaded from numba's cache) at import, not on the first call.
@numba.njit(
    nt.uint64[::1](
        nt.int64[::1], *[nt.int64[::1], nt.Array(nt.uint8, 1, "C", readonly=True)] * 6, nt.int64
    ),
    nogil=True,
    cache=True,
)
def _content_digests(
    rows: np.ndarray,
    maker_o: np.ndarray, maker_d: np.ndarray,
    taker_o: np.ndarray, taker_d: np.ndarray,
    maker_asset_o: np.ndarray, maker_asset_d: np.ndarray,
    taker_asset_o: np.ndarray, taker_asset_d: np.ndarray,
    maker_amount_o: np.ndarray, maker_amount_d: np.ndarray,
    taker_amount_o: np.ndarray, taker_amount_d: np.ndarray,
    longest: int,
) -> np.ndarray:  # fmt: skip
    lanes = np.zeros((longest + 15) // 8, dtype=np.uint64)
    buffer = lanes.view(np.uint8)
    digests = np.zeros(len(rows), dtype=np.uint64)
    for k in range(len(rows)):
        row = rows[k]
        at = _append(buffer, 0, maker_o, maker_d, row)
        buffer[at] = SEPARATOR
        at = _append(buffer, at + 1, taker_o, taker_d, row)
        buffer[at] = SEPARATOR
        at = _append(buffer, at + 1, maker_asset_o, maker_asset_d, row)
        buffer[at] = SEPARATOR
        at = _append(buffer, at + 1, taker_asset_o, taker_asset_d, row)
        buffer[at] = SEPARATOR
        at = _append(buffer, at + 1, maker_amount_o, maker_amount_d, row)
        buffer[at] = SEPARATOR
        at = _append(buffer, at + 1, taker_amount_o, taker_amount_d, row)
        digests[k] = xxh64(buffer, lanes, at)
    return digests


def string_buffers(array: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Absolute value offsets (n + 1, int64) and the data bytes of a string or binary array."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    large = pa.types.is_large_string(array.type) or pa.types.is_large_binary(array.type)
    offset_type = np.int64 if large else np.int32
    buffers = array.buffers()
    offsets = np.frombuffer(buffers[1], dtype=offset_type)[
        array.offset : array.offset + len(array) + 1
    ].astype(np.int64)
    data = (
        np.frombuffer(buffers[2], dtype=np.uint8)
        if buffers[2] is not None
        else np.zeros(0, dtype=np.uint8)
    )
    return offsets, data


def content_digests(
    maker: pa.Array,
    taker: pa.Array,
    maker_asset_id: pa.Array,
    taker_asset_id: pa.Array,
    maker_amount_filled: pa.Array,
    taker_amount_filled: pa.Array,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """XXH64 of each fill's content (``rows``: only these row positions; default all).

    Every argument is a string array of canonical cells (amounts as decimal text); a null
    cell counts as empty text.
    """
    columns = [
        string_buffers(c)
        for c in (
            maker,
            taker,
            maker_asset_id,
            taker_asset_id,
            maker_amount_filled,
            taker_amount_filled,
        )
    ]
    if rows is None:
        rows = np.arange(len(maker), dtype=np.int64)
    longest = 8 + sum(int(np.diff(offsets).max(initial=0)) for offsets, _ in columns)
    flat = [part for column in columns for part in column]
    return _content_digests(rows.astype(np.int64, copy=False), *flat, longest)


def render_fill_ids(transaction_hash: pa.Array, digests: np.ndarray) -> pa.Array:
    """``<transaction hash>_<digest as 16 hex digits>`` for each row."""
    rows = len(transaction_hash)
    offsets, data = string_buffers(transaction_hash)
    widths = np.diff(offsets)
    id_offsets = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(widths + 1 + DIGEST_HEX, out=id_offsets[1:])
    ids = np.empty(int(id_offsets[-1]), dtype=np.uint8)
    digest_hex = np.empty((rows, DIGEST_HEX), dtype=np.uint8)
    digest_bytes = digests.astype(">u8").view(np.uint8).reshape(rows, 8)
    digest_hex[:, 0::2] = _HEX_DIGITS[digest_bytes >> 4]
    digest_hex[:, 1::2] = _HEX_DIGITS[digest_bytes & 15]
    if rows and (widths == widths[0]).all():  # the usual case: every hash 66 characters
        width = int(widths[0])
        matrix = ids.reshape(rows, width + 1 + DIGEST_HEX)
        matrix[:, :width] = data[offsets[0] : offsets[-1]].reshape(rows, width)
        matrix[:, width] = ord("_")
        matrix[:, width + 1 :] = digest_hex
    else:
        for row in range(rows):
            start, width = int(id_offsets[row]), int(widths[row])
            ids[start : start + width] = data[offsets[row] : offsets[row + 1]]
            ids[start + width] = ord("_")
            ids[start + width + 1 : id_offsets[row + 1]] = digest_hex[row]
    small = id_offsets[-1] < 2**31
    return pa.Array.from_buffers(
        pa.string() if small else pa.large_string(),
        rows,
        [
            None,
            pa.py_buffer(id_offsets.astype(np.int32) if small else id_offsets),
            pa.py_buffer(ids),
        ],
    )


def fill_ids(
    transaction_hash: pa.Array,
    maker: pa.Array,
    taker: pa.Array,
    maker_asset_id: pa.Array,
    taker_asset_id: pa.Array,
    maker_amount_filled: pa.Array,
    taker_amount_filled: pa.Array,
) -> pa.Array:
    """Fill ids of canonical fills (integer amounts are rendered as decimal text)."""
    amounts = [
        a if pa.types.is_string(a.type) else pc.cast(a, pa.string())
        for a in (maker_amount_filled, taker_amount_filled)
    ]
    digests = content_digests(maker, taker, maker_asset_id, taker_asset_id, *amounts)
    return render_fill_ids(transaction_hash, digests)
