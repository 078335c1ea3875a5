"""Runs of a killed `polymkt` process are marked failed, not left STARTED forever.

`polymkt pipeline` and `polymkt sync backfill` execute their Dagster runs in their own
process. Each run is tagged with that process's pid and start time; when the next command
starts, a run still STARTED (or STARTING) whose process is gone is reported failed with a
message saying so, so the UI and `dagster` CLI show the truth.
"""

from __future__ import annotations

import os
import socket

import dagster as dg

from polymkt_dagster.lib.core.housekeeping import process_is_running, process_started_at

PID_TAG = "polymkt/pid"
PROCESS_STARTED_TAG = "polymkt/process_started_at"
HOST_TAG = "polymkt/host"


def process_tags() -> dict[str, str]:
    """Tags naming the process that executes a run in-process."""
    return {
        PID_TAG: str(os.getpid()),
        PROCESS_STARTED_TAG: f"{process_started_at():.3f}",
        HOST_TAG: socket.gethostname(),
    }


def fail_orphaned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed every in-progress run of a `polymkt` process that no longer exists on
    this host; returns their run ids."""
    runs = instance.get_runs(
        filters=dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING],
        )
    )
    host = socket.gethostname()
    failed: list[str] = []
    for run in runs:
        tags = run.tags
        if PID_TAG not in tags or tags.get(HOST_TAG, host) != host:
            continue  # launched by the Dagster daemon or on another machine: not ours to judge
        try:
            pid = int(tags[PID_TAG])
            started = float(tags[PROCESS_STARTED_TAG]) if PROCESS_STARTED_TAG in tags else None
        except ValueError:
            continue
        if process_is_running(pid, started):
            continue
        instance.report_run_failed(
            run,
            message=(
                f"The process that executed this run (pid {pid} on {host}) ended without "
                "finishing it (killed or crashed); marked failed when the next polymkt "
                "command started. Its partial outputs were never renamed into the lake."
            ),
        )
        failed.append(run.run_id)
    return failed
