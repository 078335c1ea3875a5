"""Work run at low priority: its thread and the DuckDB threads it starts are niced, the
caller's thread is not, and results and errors come back to the caller."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import duckdb
import pytest

from polymkt_dagster.lib.core.background import BACKGROUND_NICENESS, run_at_low_priority

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice is Linux's")


def _thread_niceness() -> dict[int, int]:
    """Nice value of every thread of this process (field 19 of /proc/self/task/*/stat)."""
    values = {}
    for task in Path("/proc/self/task").iterdir():
        stat = (task / "stat").read_text()
        values[int(task.name)] = int(stat.rsplit(")", 1)[1].split()[16])
    return values


def test_the_work_and_its_duckdb_threads_run_niced_and_the_caller_does_not() -> None:
    caller = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def work() -> tuple[int, dict[int, int], int]:
        con = duckdb.connect()
        con.execute("SET threads = 3")  # worker threads, started from this thread
        con.execute("SELECT sum(i) FROM range(3000000) t(i)").fetchall()
        seen = _thread_niceness()
        con.close()
        return threading.get_native_id(), seen, 42

    worker, seen, answer = run_at_low_priority(work)
    assert answer == 42
    expected = min(caller + BACKGROUND_NICENESS, 19)
    assert seen[worker] == expected
    assert seen[threading.get_native_id()] == caller  # the caller keeps its priority
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == caller
    others = [tid for tid, nice in seen.items() if nice == expected and tid != worker]
    assert len(others) >= 2  # DuckDB's workers inherit the work thread's priority


def test_an_error_in_the_work_reaches_the_caller() -> None:
    def work() -> None:
        raise ValueError("checkpoint disk full")

    with pytest.raises(ValueError, match="checkpoint disk full"):
        run_at_low_priority(work)
