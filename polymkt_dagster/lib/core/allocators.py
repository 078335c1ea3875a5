"""Process-wide allocator settings for the processes that run the pipeline's work (the code
location's run workers, daemon and web server, and ``polymkt`` commands that run jobs).

Both NumPy (its ``madvise(MADV_HUGEPAGE)`` on large arrays) and Arrow's bundled mimalloc
ask the kernel for transparent huge pages. On hosts whose huge pages are in ``madvise``
mode with synchronous defragmentation (ours and CI's: ``/sys/kernel/mm/transparent_hugepage``
``enabled`` and ``defrag`` both ``[madvise]``), each first touch of such memory can stall in
kernel compaction. Measured on this 2-core host, in a fresh process:

- a new 1.6 GB NumPy array took 6.3 s to fill with huge pages asked for, 0.6 s without;
- reading a 1.6 GB ledger checkpoint and combining its chunks took 2.6 s + 8.6 s through
  mimalloc, 0.65 s + 0.78 s through the system allocator.

A setting already made in the environment (``NUMPY_MADVISE_HUGEPAGE``,
``ARROW_DEFAULT_MEMORY_POOL``) is left as it is.
"""

from __future__ import annotations

import os


def use_plain_pages() -> None:
    """Allocate without asking for transparent huge pages (see the module doc)."""
    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
        import pyarrow as pa

        pa.set_memory_pool(pa.system_memory_pool())
    if "NUMPY_MADVISE_HUGEPAGE" not in os.environ:
        # NumPy documents only that variable, and reads it at import (numpy.org/doc/stable/
        # reference/global_state.html), before this runs; the function behind it is private,
        # so a NumPy without it keeps its default.
        try:
            from numpy._core.multiarray import _set_madvise_hugepage
        except ImportError:
            return
        _set_madvise_hugepage(False)
