"""Root of the Dagster code location: every definition under defs/ plus the location-wide
build steps, and :func:`run_job`, which executes one of its jobs in this process.

Loading: every module under defs/ is discovered by ``dg.load_from_defs_folder``; assets,
checks and sensors are module-level objects (no module lists them again), and the only
``@dg.definitions`` function is ``defs/shared/resources.py:resources``. Two steps need the
whole graph and run here: the gap-tolerant automation conditions (and their sensor) and the
named jobs.
"""

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg

# Dagster has no public API to execute a named job in this process under its code location's
# origin (execute_in_process records no origin, so the UI cannot re-execute its runs); these
# are the pieces `dagster job launch` and the run worker use.
from dagster._core.definitions.reconstruct import ReconstructableJob, ReconstructableRepository
from dagster._core.execution.api import create_execution_plan, execute_run
from dagster._core.remote_origin import (
    ManagedGrpcPythonEnvCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from polymkt_dagster.defs.jobs import job_definitions
from polymkt_dagster.defs.shared.automation import with_gap_tolerant_automation
from polymkt_dagster.defs.shared.resources import PolymktResource
from polymkt_dagster.lib.core.allocators import use_plain_pages

use_plain_pages()  # every process that runs the location's work loads this module


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


# The code location's name in workspace.yaml and pyproject.toml: a run recorded under it is
# one the web UI can re-execute and place on the overview timeline.
LOCATION_NAME = "polymkt"
_REPOSITORY_NAME = "__repository__"  # Dagster's name for the repository of a Definitions
_PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _location_job(name: str) -> tuple[RemoteJobOrigin, ReconstructableJob]:
    """Job ``name`` as the UI knows it (its remote origin: the same one a run launched from
    ``dagster dev`` carries, so the run page's "Re-execute" finds the job) and as a run
    worker rebuilds it (this module's ``defs``)."""
    cwd = str(_PROJECT_ROOT)  # workspace.yaml's working directory, wherever the CLI runs
    target = LoadableTargetOrigin(
        module_name=__name__, working_directory=cwd, executable_path=sys.executable
    )
    location = ManagedGrpcPythonEnvCodeLocationOrigin(target, LOCATION_NAME)
    remote = RemoteRepositoryOrigin(location, _REPOSITORY_NAME).get_job_origin(name)
    repository = ReconstructableRepository.for_module(__name__, "defs", working_directory=cwd)
    return remote, repository.get_reconstructable_job(name)


def run_job(
    name: str,
    *,
    instance: dg.DagsterInstance,
    polymkt: PolymktResource,
    tags: dict[str, str],
    run_config: dict[str, Any] | None = None,
    partition_key: str | None = None,
    asset_selection: list[dg.AssetKey] | None = None,
    raise_on_error: bool = False,
) -> dg.JobExecutionResult:
    """Execute job ``name`` of the code location in this process, recorded as a run of the
    location (not an ad-hoc ``execute_in_process``), so the UI can re-execute it and shows it
    on the overview timeline.

    The caller's lake (``polymkt``) travels in the run's config, not as a swapped resource:
    a re-execution from the UI reads the same data dir, and the job's snapshot stays the
    location's own.
    """
    job_def = defs.resolve_job_def(name)
    config = {**(run_config or {}), **polymkt.as_run_config()}
    run_tags = {**job_def.run_tags, **tags}
    if partition_key is not None:
        run_tags.update(job_def.get_tags_for_partition_key(partition_key, None))
    selection = frozenset(asset_selection or ()) or None
    if selection == frozenset(job_def.asset_layer.executable_asset_keys):
        selection = None  # the whole job, as the UI would launch it
    remote_origin, job = _location_job(name)
    selected = job.get_subset(asset_selection=selection) if selection else job
    plan = create_execution_plan(
        selected,
        run_config=config,
        instance_ref=instance.get_ref() if instance.is_persistent else None,
    )
    with _planned_events_per_asset():
        run = instance.create_run_for_job(
            job_def=selected.get_definition(),
            execution_plan=plan,
            run_config=config,
            tags=run_tags,
            asset_selection=selection,
            remote_job_origin=remote_origin,
            job_code_origin=job.get_python_origin(),
        )
    return execute_run(job, run, instance, raise_on_error=raise_on_error)


@contextmanager
def _planned_events_per_asset() -> Iterator[None]:
    """One "materialization planned" event per asset of a range run, not one per day.

    Dagster writes one per partition by default: for `polymkt pipeline` over a year of days
    that is half of the run's event log (4,744 of 9,659 events on the sample), which the
    run page loads. Dagster reads this switch when it creates the run; its cost, in its own
    words, is that a failed run's partitions show as missing rather than failed (the run
    itself still shows failed, and the CLI says what failed). A value already set in the
    environment is kept.
    """
    if _PLANNED_SUBSET_ENV in os.environ:
        yield
        return
    os.environ[_PLANNED_SUBSET_ENV] = "true"
    try:
        yield
    finally:
        os.environ.pop(_PLANNED_SUBSET_ENV, None)


_PLANNED_SUBSET_ENV = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"
