"""Root of the Dagster code location: every definition under defs/ plus shared policies."""

from pathlib import Path

import dagster as dg

from polymkt_dagster.automation import with_gap_tolerant_automation
from polymkt_dagster.jobs import job_definitions


def _build() -> dg.Definitions:
    # A function, so the module holds exactly one Definitions object (the loader's rule).
    loaded = dg.load_from_defs_folder(path_within_project=Path(__file__).parent / "defs")
    return dg.Definitions.merge(
        with_gap_tolerant_automation(loaded),
        job_definitions(loaded),
        # Runs execute their steps in the run worker's process: a 10-minute sync or a one-day
        # backfill is seconds of work, and a process per step cost more than the work.
        dg.Definitions(executor=dg.in_process_executor),
    )


defs = _build()
