"""Helpers shared by the benchmark scripts (not a test module; nothing here is timed).

Importing this module puts the repository root on ``sys.path`` so the scripts run from a
checkout without ``pip install -e .`` (``python bench/ingest.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

RESULT_PREFIX = "BENCH_RESULT "
MB = 1024 * 1024


@dataclass
class WorkerRun:
    """One worker subprocess: what it reported, its wall time and its own peak RSS."""

    result: dict[str, Any]
    wall_s: float
    peak_rss_mb: float


def run_worker(script: Path, args: Sequence[str]) -> WorkerRun:
    """Run ``python script --worker ...`` in a fresh process and return its own peak RSS.

    The worker prints one ``BENCH_RESULT {json}`` line on stdout (``emit_result``), which
    carries its ``VmHWM`` from /proc/self/status: the high-water RSS of the worker's own
    address space. ``ru_maxrss`` cannot be used for this: Linux carries the RSS of the
    *parent* at fork/vfork time over the exec into the child's ru_maxrss (RUSAGE_SELF,
    RUSAGE_CHILDREN and wait4 alike), so a 20 MB worker started by a 1.5 GB driver reports
    1.5 GB. ``ru_maxrss`` from ``os.wait4`` is only the fallback when VmHWM is unavailable.
    """
    cmd = [sys.executable, str(script), *args]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {' '.join(args)} failed with exit code {proc.returncode}")
    lines = [ln for ln in out.splitlines() if ln.startswith(RESULT_PREFIX)]
    if not lines:
        raise RuntimeError(f"worker {' '.join(args)} printed no result:\n{out}")
    result = json.loads(lines[-1][len(RESULT_PREFIX) :])
    hwm_kb = result.pop(_HWM_KEY, None)
    peak_kb = hwm_kb if hwm_kb is not None else usage.ru_maxrss
    return WorkerRun(result=result, wall_s=wall, peak_rss_mb=peak_kb / 1024)


_HWM_KEY = "_vm_hwm_kb"


def peak_rss_kb() -> int | None:
    """This process's own peak RSS (VmHWM) in KiB, or None off Linux."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def emit_result(result: dict[str, Any]) -> None:
    """Worker side of ``run_worker``: print the result, with this process's peak RSS."""
    payload = {**result, _HWM_KEY: peak_rss_kb()}
    print(RESULT_PREFIX + json.dumps(payload, default=str), flush=True)


def scale_for_fills(target: int) -> tuple[float, int]:
    """Smallest tried SampleConfig scale whose sample has at least ``target`` order fills."""
    from polymkt_dagster.lib.sample.config import FILLS_PER_SCALE, SampleConfig
    from polymkt_dagster.lib.sample.fills import count_order_fills

    scale = max(target / FILLS_PER_SCALE, 0.01)
    while True:
        fills = count_order_fills(SampleConfig(scale=scale))
        if fills >= target:
            return scale, fills
        scale *= 1.0 + max(0.002, (target - fills) / target * 1.5)


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                continue
    return total


def fmt_mb(n_bytes: float) -> str:
    return f"{n_bytes / MB:,.0f} MB"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain fixed-width table; numbers right-aligned, text left-aligned."""
    cells = [[str(c) for c in headers]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [
        all(isinstance(row[i], int | float) for row in rows) if rows else False
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))


def _cell(value: object) -> str:
    if isinstance(value, float):
        if value >= 1000:
            return f"{value:,.0f}"
        if value >= 100:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def banner(title: str) -> None:
    print()
    print(title)
    print("=" * len(title))
