"""Arrow arrays as numpy buffers and back, without per-row work, for the fill import.

The compiled kernels of the fast path (``order_fill_fast_path``) and of the day writer
(``order_fill_days``) read Arrow buffers directly; this module holds the views they share
(bytes as overlapping 64-bit words, the 64-bit values of an integer column), the arrays
built back from numpy buffers, and the numba types of those views. Building arrays from
buffers also avoids ``pa.array``/``to_numpy``, which import pandas (about a second) on
first use.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from numba import types as nt

# Kernels take explicit signatures; these are the types of the shared views.
INTS = nt.int64[::1]
# Bytes seen through Arrow buffers are read-only; writable arrays convert to these.
BYTES = nt.Array(nt.uint8, 1, "C", readonly=True)
WORDS = nt.Array(nt.uint64, 1, "A", readonly=True)


def overlapping_words(data: np.ndarray) -> np.ndarray:
    """``words[i]`` is the 8 bytes ``data[i:i + 8]`` as one uint64 (an overlapping,
    unaligned view: x86 loads those as fast as aligned ones)."""
    data = np.ascontiguousarray(data)
    return np.ndarray(shape=(max(len(data) - 7, 0),), dtype=np.uint64, buffer=data, strides=(1,))


def fixed_width_text(matrix: np.ndarray) -> pa.Array:
    """A string array whose row i is row i of ``matrix`` (rows x width bytes), no copy."""
    rows, width = matrix.shape
    offsets = np.arange(rows + 1, dtype=np.int32) * width
    return pa.Array.from_buffers(
        pa.string(), rows, [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(matrix))]
    )


def int64_values(array: pa.Array) -> np.ndarray:
    """The 64-bit values of an integer or timestamp array, read from its buffer.

    (``Array.to_numpy`` would import pandas, about a second, on first use.)
    """
    buffer = array.buffers()[1]
    return np.frombuffer(buffer, dtype=np.int64)[array.offset : array.offset + len(array)]


def primitive_array(values: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    """A null-free Arrow array over a numpy buffer (``pa.array`` would import pandas)."""
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(arrow_type, len(values), [None, pa.py_buffer(values)])


def constant_text(text: str, rows: int) -> pa.Array:
    """A string column holding ``text`` in every row, built from buffers (no per-row work)."""
    encoded = text.encode()
    matrix = np.frombuffer(encoded * rows, dtype=np.uint8).reshape(rows, len(encoded))
    return fixed_width_text(matrix)
