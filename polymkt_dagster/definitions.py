"""Root of the Dagster code location: every definition under defs/ plus shared policies."""

from pathlib import Path

import dagster as dg

from polymkt_dagster.automation import with_gap_tolerant_automation
from polymkt_dagster.jobs import job_definitions

_loaded = dg.load_from_defs_folder(path_within_project=Path(__file__).parent / "defs")
defs = dg.Definitions.merge(
    with_gap_tolerant_automation(_loaded),
    job_definitions(_loaded),
    # Runs execute their steps in the run worker's process: a 10-minute sync or a one-day
    # backfill is seconds of work, and a process per step cost more than the work on 2 cores.
    dg.Definitions(executor=dg.in_process_executor),
)
