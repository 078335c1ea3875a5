"""`polymkt pipeline`: materialize the asset graph over the data dir into DAGSTER_HOME.

It runs the same definitions the web UI shows, in-process, against the persistent
instance, so `dagster dev` afterwards lists every materialization, its metadata and checks.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from dagster._utils.error import SerializableErrorInfo

from polymkt_dagster.defs.jobs import MAIN_JOB
from polymkt_dagster.defs.shared.partitions import daily_partitions
from polymkt_dagster.defs.shared.resources import PolymktResource
from polymkt_dagster.lib.core.config import Settings
from polymkt_dagster.lib.core.duck import memory_limit_message
from polymkt_dagster.lib.core.redact import redact_text
from polymkt_dagster.lib.ingest.bootstrap import source_day_range
from polymkt_dagster.run_hygiene import fail_orphaned_runs, process_tags

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
    orphaned_runs: list[str] = field(default_factory=list)


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
    from polymkt_dagster.definitions import run_job

    prepare_dagster_home(dagster_home)
    defs = _load_definitions()
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    runnable = [a for a in assets if a.partitions_def in (None, daily_partitions)]
    skipped = sorted(k.to_user_string() for a in assets if a not in runnable for k in a.keys)
    span = source_day_range(settings.data_dir)
    # The pipeline imports the data dir only: never the live sources (see defs/ingest/live.py).
    tags = {RUN_TAG: uuid.uuid4().hex, "polymkt/ingest": "csv", **process_tags()}
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
    orphaned = fail_orphaned_runs(instance)
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
            # The event log keeps everything for the UI; the terminal shows our progress and
            # the summary of causes (no stack traces).
            run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
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
        error = "; ".join(step_failure_causes(result.all_events)) or "run failed"
    success = result.success
    if success:
        # signals/favorites (static partitions) and the example backtest (a dynamic
        # partition) cannot share the daily run: they follow it, so the UI shows them too.
        from polymkt_dagster.research_runs import run_research_assets

        extra, extra_errors = run_research_assets(
            settings, instance, {RUN_TAG: tags[RUN_TAG], **process_tags()}, on_event
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
        orphaned_runs=orphaned,
    )


# Dagster wraps an asset's exception ("Error occurred while executing op ..."): the cause
# is what a person needs to read.
_WRAPPERS = ("DagsterExecutionStepExecutionError", "DagsterUserCodeExecutionError")
_QUALIFIED_CLASS = re.compile(r"^(?:[A-Za-z_][\w]*\.)+([A-Za-z_]\w*): ")


def readable_error(error: SerializableErrorInfo) -> str:
    """The cause of a step failure in one line: the first error in the chain that is not
    Dagster's wrapper, its class without the module path, secrets masked; an out-of-memory
    failure says which setting to raise."""
    chain = [error]
    while (nxt := chain[-1].cause or chain[-1].context) is not None and len(chain) < 20:
        chain.append(nxt)
    for info in chain:
        if "OutOfMemory" in (info.cls_name or ""):
            return memory_limit_message(Exception(info.message), "the step")
    chosen = next((i for i in chain if (i.cls_name or "") not in _WRAPPERS), chain[-1])
    message = " ".join(chosen.message.split())
    match = _QUALIFIED_CLASS.match(message)
    if match:
        name = match.group(1)
        body = message[match.end() :]
        message = body if name == "Failure" else f"{name}: {body}"
    return redact_text(message[:800])


def step_failure_causes(events: Sequence[dg.DagsterEvent]) -> list[str]:
    """``step: cause`` for every failed step of a run (see ``readable_error``); when no
    step failed (a resource that did not start), the run's own failure."""
    causes = [
        f"{e.step_key}: {readable_error(e.event_specific_data.error)}"  # type: ignore[union-attr]
        for e in events
        if e.is_step_failure and e.event_specific_data is not None
    ]
    if causes:
        return causes
    for event in events:
        if event.event_type == dg.DagsterEventType.RUN_FAILURE:
            error = getattr(event.event_specific_data, "error", None)
            causes.append(readable_error(error) if error else redact_text(event.message or ""))
    return [c for c in causes if c]


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
