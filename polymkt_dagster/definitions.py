"""Root of the Dagster code location: every definition under defs/ plus the location-wide
build steps, and :func:`run_job`, which executes one of its jobs in this process.

Loading: every module under defs/ is discovered by ``dg.load_from_defs_folder``; assets,
checks and sensors are module-level objects (no module lists them again), and the only
``@dg.definitions`` function is ``defs/shared/resources.py:resources``. Two steps need the
whole graph and run here: the gap-tolerant automation conditions (and their sensor) and the
named jobs.
"""

from pathlib import Path

import dagster as dg

from polymkt_dagster.defs.jobs import job_definitions
from polymkt_dagster.defs.shared.automation import with_gap_tolerant_automation


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


def run_job(
    name: str,
    *,
    instance: dg.DagsterInstance,
    resources: dict[str, object],
    tags: dict[str, str],
    run_config: dict[str, object] | None = None,
    partition_key: str | None = None,
    asset_selection: list[dg.AssetKey] | None = None,
    raise_on_error: bool = False,
) -> dg.ExecuteInProcessResult:
    """Execute a job of the code location in this process, recorded under its own name."""
    # The caller's resources (its data dir) replace the location's: a job is built from
    # definitions whose resources are bound, so they are swapped there, not per run.
    with_resources = dg.Definitions(
        assets=defs.assets,
        asset_checks=defs.asset_checks,
        jobs=defs.jobs,
        resources={**(defs.resources or {}), **resources},
        executor=defs.executor,
    )
    return with_resources.resolve_job_def(name).execute_in_process(
        instance=instance,
        tags=tags,
        run_config=run_config,
        partition_key=partition_key,
        asset_selection=asset_selection,
        raise_on_error=raise_on_error,
    )
