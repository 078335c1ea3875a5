"""Fault injection for the crash-safety tests: die like ``kill -9`` at a named moment.

``POLYMKT_CRASH_BEFORE_RENAME=<path part>:<n>`` makes the process SIGKILL itself right before
the n-th atomic rename of a lake file whose path contains ``<path part>``: the temporary
file is complete, the rename has not happened. Tests use it to stop `polymkt pipeline` during
the fill import (``raw/polymarket/order_filled/:3``), the trade derivation or the rollups at a
moment chosen by work done, not by a clock. Unset (always, outside tests) it costs one
environment lookup per file written.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

CRASH_ENV = "POLYMKT_CRASH_BEFORE_RENAME"
_seen: dict[str, int] = {}


def before_rename(target: Path | str) -> None:
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    needle, _, nth = spec.rpartition(":")
    if not needle or needle not in str(target):
        return
    _seen[spec] = _seen.get(spec, 0) + 1
    if _seen[spec] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
