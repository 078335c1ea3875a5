"""Text renderings shared by the sample's modules: unix time, ``0x`` hex, slugs, Arrow strings.

The vectorised ones (``hex_rows``, ``datetime_text``, ``arrow_strings``) render millions of
cells with numpy byte arithmetic instead of Python string formatting; that is what keeps the
generator fast at tens of millions of fills, and why they sit apart from the domain code.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

__all__ = [
    "arrow_strings",
    "datetime_text",
    "hex_rows",
    "slugify",
    "unix_seconds",
    "utc_datetime",
]

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def unix_seconds(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp())


def utc_datetime(ts: int) -> datetime:
    return datetime.fromtimestamp(int(ts), UTC)


def hex_rows(raw: np.ndarray) -> np.ndarray:
    """(n, k) uint8 bytes -> (n, 2 + 2k) uint8 ASCII ``0x...`` lowercase hex."""
    n, k = raw.shape
    out = np.empty((n, 2 + 2 * k), dtype=np.uint8)
    out[:, 0] = ord("0")
    out[:, 1] = ord("x")
    out[:, 2::2] = _HEX[raw >> 4]
    out[:, 3::2] = _HEX[raw & 15]
    return out


def slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower().replace("'", "").replace(".", ""))
    return slug.strip("-")


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """Non-negative ints -> (n, width) uint8 ASCII, zero-padded on the left."""
    out = np.empty((len(values), width), dtype=np.uint8)
    v = values.astype(np.int64, copy=True)
    for j in range(width - 1, -1, -1):
        v, r = np.divmod(v, 10)
        out[:, j] = r + 48
    return out


def datetime_text(ts: np.ndarray) -> np.ndarray:
    """Unix seconds -> (n,) S19 ``YYYY-MM-DD HH:MM:SS`` (UTC), vectorised civil-from-days."""
    days, secs = np.divmod(ts.astype(np.int64), 86_400)
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2)
    out = np.empty((len(ts), 19), dtype=np.uint8)
    out[:, 0:4] = _digits(year, 4)
    out[:, 5:7] = _digits(month, 2)
    out[:, 8:10] = _digits(day, 2)
    out[:, 11:13] = _digits(secs // 3600, 2)
    out[:, 14:16] = _digits(secs // 60 % 60, 2)
    out[:, 17:19] = _digits(secs % 60, 2)
    out[:, 4] = out[:, 7] = ord("-")
    out[:, 10] = ord(" ")
    out[:, 13] = out[:, 16] = ord(":")
    return out.view("S19").ravel()


def arrow_strings(fixed: np.ndarray) -> pa.Array:
    """(n,) fixed-width bytes (``S<w>``) -> pyarrow string array, one copy-free wrap."""
    n = len(fixed)
    width = fixed.dtype.itemsize
    offsets = np.arange(n + 1, dtype=np.int32) * np.int32(width)
    data = np.ascontiguousarray(fixed)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))
