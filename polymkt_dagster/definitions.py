"""Root of the Dagster code location: every definition under defs/ plus shared policies."""

from pathlib import Path

import dagster as dg

from polymkt_dagster.automation import with_gap_tolerant_automation

defs = dg.Definitions.merge(
    with_gap_tolerant_automation(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent / "defs")
    ),
    # Runs execute their steps in the run worker's process: a 10-minute sync or a one-day
    # backfill is seconds of work, and a process per step cost more than the work on 2 cores.
    dg.Definitions(executor=dg.in_process_executor),
)
