"""`polymkt pipeline`: materialize the asset graph over the data dir into DAGSTER_HOME.

It runs the same definitions the web UI shows, in-process, against the persistent
instance, so `dagster dev` afterwards lists every materialization, its metadata and checks.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from polymkt_dagster.defs.ingest.partitions import daily_partitions
from polymkt_dagster.defs.resources import PolymktResource
from polymkt_dagster.jobs import MAIN_JOB, run_job
from polymkt_dagster.lib.bootstrap import source_day_range
from polymkt_dagster.lib.config import Settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RUN_TAG = "polymkt/pipeline_id"


@dataclass
class StepEvent:
    step: str
    kind: str  # started | succeeded | failed | log
    message: str = ""


@dataclass
class PipelineResult:
    run_id: str
    success: bool
    partition_range: tuple[str, str] | None
    materialized: list[str] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)
    skipped_assets: list[str] = field(default_factory=list)
    error: str | None = None


def prepare_dagster_home(home: Path | None = None) -> Path:
    """Resolve DAGSTER_HOME (default ./.dagster_home) and give it the project's dagster.yaml."""
    resolved = Path(home or os.environ.get("DAGSTER_HOME") or ".dagster_home").resolve()
    resolved.mkdir(parents=True, exist_ok=True)
    config = resolved / "dagster.yaml"
    template = PROJECT_ROOT / "dagster.yaml"
    if not config.exists() and template.exists():
        shutil.copyfile(template, config)
    os.environ["DAGSTER_HOME"] = str(resolved)
    return resolved


def _load_definitions() -> dg.Definitions:
    from polymkt_dagster.definitions import defs

    return defs


def run_pipeline(
    settings: Settings,
    *,
    dagster_home: Path | None = None,
    on_event: Callable[[StepEvent], None] | None = None,
) -> PipelineResult:
    """Materialize every daily-partitioned and unpartitioned asset in one run.

    The daily range is the span of days found in the data dir's order fills, so a range
    of partitions is materialized in a single run (the assets' single-run backfill policy).
    """
    prepare_dagster_home(dagster_home)
    defs = _load_definitions()
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    runnable = [a for a in assets if a.partitions_def in (None, daily_partitions)]
    skipped = sorted(k.to_user_string() for a in assets if a not in runnable for k in a.keys)
    span = source_day_range(settings.data_dir)
    # The pipeline imports the data dir only: never the live sources (see defs/ingest/live.py).
    tags = {RUN_TAG: uuid.uuid4().hex, "polymkt/ingest": "csv"}
    partition_range: tuple[str, str] | None = None
    if span is not None:
        partition_range = (_key(span[0]), _key(span[1]))
        tags[ASSET_PARTITION_RANGE_START_TAG] = partition_range[0]
        tags[ASSET_PARTITION_RANGE_END_TAG] = partition_range[1]
    else:
        runnable = [a for a in runnable if a.partitions_def is None]
    resources = dict(defs.resources or {})
    resources["polymkt"] = PolymktResource.from_settings(settings)

    instance = dg.DagsterInstance.get()
    watcher = _EventWatcher(instance, tags[RUN_TAG], on_event)
    watcher.start()
    try:
        # The code location's `main` job, so the run can be re-executed from the UI.
        result = run_job(
            MAIN_JOB,
            asset_selection=[k for a in runnable for k in a.keys],
            instance=instance,
            resources=resources,
            tags=tags,
            raise_on_error=False,
            # The event log keeps everything for the UI; the terminal shows our progress.
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
    finally:
        watcher.stop()
    materialized = sorted(
        {
            e.asset_key.to_user_string()
            for e in result.get_asset_materialization_events()
            if e.asset_key is not None
        }
    )
    failed_checks = [
        f"{e.asset_check_key.asset_key.to_user_string()}:{e.asset_check_key.name}"
        for e in result.get_asset_check_evaluations()
        if not e.passed
    ]
    error = None
    if not result.success:
        failures = [e for e in result.all_events if e.is_step_failure]
        error = (
            "; ".join(
                f"{e.step_key}: {e.event_specific_data.error.message.strip()}"  # type: ignore[union-attr]
                for e in failures
            )
            or "run failed"
        )
    success = result.success
    if success:
        # signals/favorites (static partitions) and the example backtest (a dynamic
        # partition) cannot share the daily run: they follow it, so the UI shows them too.
        from polymkt_dagster.research_runs import run_research_assets

        extra, extra_errors = run_research_assets(
            settings, instance, {RUN_TAG: tags[RUN_TAG]}, on_event
        )
        materialized += extra
        skipped = [k for k in skipped if not any(m.split("[")[0] == k for m in extra)]
        if extra_errors:
            success, error = False, "; ".join(extra_errors)
    return PipelineResult(
        run_id=result.run_id,
        success=success,
        partition_range=partition_range,
        materialized=materialized,
        failed_checks=failed_checks,
        skipped_assets=skipped,
        error=error,
    )


def _key(day: date) -> str:
    return day.strftime("%Y-%m-%d")


class _EventWatcher:
    """Polls the instance's event log of the pipeline run and reports step progress."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        pipeline_id: str,
        on_event: Callable[[StepEvent], None] | None,
    ) -> None:
        self._instance = instance
        self._pipeline_id = pipeline_id
        self._on_event = on_event
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        if self._on_event:
            self._thread.start()

    def stop(self) -> None:
        if self._on_event and self._thread.is_alive():
            self._stop.set()
            self._thread.join(timeout=5)
            self._drain()

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            self._drain()

    _run_id: str | None = None
    _cursor: str | None = None

    def _drain(self) -> None:
        assert self._on_event is not None
        if self._run_id is None:
            runs = self._instance.get_runs(
                filters=dg.RunsFilter(tags={RUN_TAG: self._pipeline_id}), limit=1
            )
            if not runs:
                return
            self._run_id = runs[0].run_id
        while True:
            page = self._instance.get_records_for_run(self._run_id, cursor=self._cursor, limit=1000)
            for record in page.records:
                self._report(record.event_log_entry)
            self._cursor = page.cursor
            if not page.has_more:
                return

    def _report(self, entry: dg.EventLogEntry) -> None:
        assert self._on_event is not None
        step = entry.step_key or ""
        event = entry.dagster_event
        if event is None:
            if entry.user_message and step:
                self._on_event(StepEvent(step, "log", entry.user_message))
        elif event.event_type == dg.DagsterEventType.STEP_START:
            self._on_event(StepEvent(step, "started"))
        elif event.event_type == dg.DagsterEventType.STEP_SUCCESS:
            self._on_event(StepEvent(step, "succeeded"))
        elif event.event_type == dg.DagsterEventType.STEP_FAILURE:
            self._on_event(StepEvent(step, "failed"))
