"""Root of the Dagster code location: every definition under defs/ plus shared policies."""

from pathlib import Path

import dagster as dg

from polymkt_dagster.automation import with_gap_tolerant_automation

defs = with_gap_tolerant_automation(
    dg.load_from_defs_folder(path_within_project=Path(__file__).parent / "defs")
)
