"""Work that may wait for the machine: run it on a thread of lower CPU priority.

A run that has already reported what others wait for (the positions' materialization) may
still have work left that nobody waits for (saving the ledger checkpoint, 10-15 s of CPU
on a large lake). On a 2-core host that work competes with the runs the automation starts
next. Linux keeps a nice value per thread, so this lowers it on a thread of its own: the
work's DuckDB connection, opened on that thread, starts its worker threads there and they
inherit it. The rest of the process (a job's other steps) keeps its priority. Elsewhere,
or where the priority cannot be changed, the work just runs.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

BACKGROUND_NICENESS = 10  # CFS then weighs the thread about 1:10 against a normal one


def run_at_low_priority(work: Callable[[], T], niceness: int = BACKGROUND_NICENESS) -> T:
    """``work()`` on a thread ``niceness`` steps below normal priority; its result, or the
    exception it raised."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            thread_id = threading.get_native_id()
            current = os.getpriority(os.PRIO_PROCESS, thread_id)
            os.setpriority(os.PRIO_PROCESS, thread_id, min(current + niceness, 19))
        except (AttributeError, OSError):  # not Linux, or not allowed: run as we are
            pass
        try:
            outcome.append(work())
        except BaseException as error:  # re-raised on the caller's thread
            failure.append(error)

    thread = threading.Thread(target=target, name="low-priority-work")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]
