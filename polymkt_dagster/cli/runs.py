"""Every Dagster run the CLI executes in its own process, and the tags those runs carry.

- `polymkt pipeline`: the code location's ``main`` job over the days found in the data dir,
  then the favorite signals and the example backtest (``run_pipeline``);
- `polymkt backtest run`: one partition of backtest/results (``materialize_backtest``);
- `polymkt sync backfill`: raw/order_filled + raw/trades + raw/ctf_events over a day range
  from the live sources (``run_backfill``).

They run the same definitions the web UI shows against the persistent instance at
DAGSTER_HOME, so `dagster dev` afterwards lists every materialization with its metadata and
checks. This is the only CLI module that builds runs; it uses Dagster's public API only.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import dagster as dg

from polymkt_dagster.cli.dagster_home import prepare_dagster_home
from polymkt_dagster.cli.run_hygiene import fail_orphaned_runs, process_tags
from polymkt_dagster.definitions import run_job
from polymkt_dagster.defs.ingest.live import INGEST_TAG
from polymkt_dagster.defs.jobs import BACKTEST_JOB, FAVORITES_JOB, MAIN_JOB, RAW_SYNC_JOB
from polymkt_dagster.defs.research.assets import BACKTEST_RESULTS_KEY, FAVORITES_KEY
from polymkt_dagster.defs.research.partitions import backtests_partitions, favorites_partitions
from polymkt_dagster.defs.shared.partitions import daily_partitions
from polymkt_dagster.defs.shared.resources import PolymktResource
from polymkt_dagster.defs.shared.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from polymkt_dagster.lib.analytics.election_groups import read_groups
from polymkt_dagster.lib.core.config import Settings
from polymkt_dagster.lib.core.duck import memory_limit_message
from polymkt_dagster.lib.core.redact import redact_text
from polymkt_dagster.lib.ingest.bootstrap import source_day_range
from polymkt_dagster.lib.research.backtest import StrategyConfig
from polymkt_dagster.lib.research.backtest_runs import prepare_backtest
from polymkt_dagster.lib.research.research_store import ResearchStore

# The tags of a CLI run. Dagster reads the two range tags to run one range of partitions in
# a single run; their names are Dagster's own (it exports no public constant for them).
RUN_TAG = "polymkt/pipeline_id"  # one `polymkt pipeline`: its main, signals and backtest runs
# The event log keeps every message for the UI; the terminal shows our own progress and the
# summary of causes (no stack traces).
QUIET_RUN_CONFIG: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}

# The example backtest `polymkt pipeline` runs so the UI has one to show: favorites priced
# 0.50-0.95 two weeks before the end, held to expiry, one tick of slippage.
EXAMPLE_BACKTEST_ID = "example-fav-14d-hold"
EXAMPLE_STRATEGY = StrategyConfig(days_before=14, min_price=0.5, max_price=0.95, slippage_ticks=1)


def range_tags(first: str, last: str) -> dict[str, str]:
    """Tags that make one run materialize partitions ``first`` to ``last`` inclusive."""
    return {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}


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


@dataclass
class BackfillResult:
    run_id: str
    success: bool
    error: str | None = None
    orphaned_runs: list[str] = field(default_factory=list)


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
    from polymkt_dagster.definitions import defs

    prepare_dagster_home(dagster_home)
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    runnable = [a for a in assets if a.partitions_def in (None, daily_partitions)]
    skipped = sorted(k.to_user_string() for a in assets if a not in runnable for k in a.keys)
    span = source_day_range(settings.data_dir)
    # The pipeline imports the data dir only: never the live sources (see defs/ingest/live.py).
    tags = {RUN_TAG: uuid.uuid4().hex, INGEST_TAG: "csv", **process_tags()}
    partition_range: tuple[str, str] | None = None
    if span is not None:
        partition_range = (_key(span[0]), _key(span[1]))
        tags.update(range_tags(*partition_range))
    else:
        runnable = [a for a in runnable if a.partitions_def is None]

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
            polymkt=PolymktResource.from_settings(settings),
            tags=tags,
            raise_on_error=False,
            run_config=QUIET_RUN_CONFIG,
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


def materialize_backtest(
    settings: Settings,
    backtest_id: str,
    instance: dg.DagsterInstance,
    *,
    tags: Mapping[str, str] | None = None,
) -> dg.JobExecutionResult:
    """Register the backtest's partition and materialize it (raises with the asset's error)."""
    instance.add_dynamic_partitions(backtests_partitions.name, [backtest_id])
    return run_job(
        BACKTEST_JOB,
        raise_on_error=True,
        instance=instance,
        polymkt=PolymktResource.from_settings(settings),
        partition_key=backtest_id,
        tags=dict(tags or {}),
        run_config=QUIET_RUN_CONFIG,
    )


def run_research_assets(
    settings: Settings,
    instance: dg.DagsterInstance,
    tags: Mapping[str, str],
    on_event: Callable[[StepEvent], None] | None = None,
) -> tuple[list[str], list[str]]:
    """After the main run: every signals/favorites partition in one run, then the example
    backtest. Returns (materialized asset keys, errors)."""

    def report(step: str, kind: str) -> None:
        if on_event:
            on_event(StepEvent(step, kind))

    keys = favorites_partitions.get_partition_keys()
    materialized: list[str] = []
    errors: list[str] = []
    step = FAVORITES_KEY.to_user_string()
    report(step, "started")
    signals = run_job(
        FAVORITES_JOB,
        instance=instance,
        polymkt=PolymktResource.from_settings(settings),
        tags={**tags, **range_tags(keys[0], keys[-1])},
        run_config=QUIET_RUN_CONFIG,
        raise_on_error=False,
    )
    report(step, "succeeded" if signals.success else "failed")
    if not signals.success:
        errors += step_failure_causes(signals.all_events) or [f"{step}: run failed"]
        return materialized, errors
    materialized.append(step)
    if not read_groups(PolymktResource.from_settings(settings).lake()):
        return materialized, errors  # no election groups: nothing to backtest
    prepare_backtest(
        ResearchStore.in_data_dir(settings.data_dir), EXAMPLE_STRATEGY,
        backtest_id=EXAMPLE_BACKTEST_ID, prompt="example run by polymkt pipeline",
    )  # fmt: skip
    step = f"{BACKTEST_RESULTS_KEY.to_user_string()}[{EXAMPLE_BACKTEST_ID}]"
    report(step, "started")
    try:
        materialize_backtest(settings, EXAMPLE_BACKTEST_ID, instance, tags=tags)
        materialized.append(step)
        report(step, "succeeded")
    except Exception as exc:  # the main run succeeded; report instead of hiding it
        # Dagster's wrapper ("Error occurred while executing op") holds the asset's error
        cause = getattr(exc, "user_exception", None) or exc
        errors.append(f"{step}: {redact_text(' '.join(str(cause).split()))}")
        report(step, "failed")
    return materialized, errors


def run_backfill(settings: Settings, first: date, last: date) -> BackfillResult:
    """One run of the raw fills, trades and CTF events over ``first``..``last`` from the live
    sources, into the instance at DAGSTER_HOME (call ``prepare_dagster_home`` first)."""
    instance = dg.DagsterInstance.get()
    orphaned = fail_orphaned_runs(instance)
    result = run_job(
        RAW_SYNC_JOB,
        instance=instance,
        polymkt=PolymktResource.from_settings(settings),
        tags={
            INGEST_TAG: "live",
            **range_tags(first.isoformat(), last.isoformat()),
            **process_tags(),
        },
        raise_on_error=False,
        run_config=QUIET_RUN_CONFIG,
    )
    error = None
    if not result.success:
        error = "; ".join(step_failure_causes(result.all_events)) or "run failed"
    return BackfillResult(result.run_id, result.success, error, orphaned)


class ErrorInfo(Protocol):
    """The fields read from Dagster's serialisable error of a failed step or run."""

    cls_name: str | None
    message: str

    @property
    def cause(self) -> ErrorInfo | None: ...

    @property
    def context(self) -> ErrorInfo | None: ...


# Dagster wraps an asset's exception ("Error occurred while executing op ..."): the cause
# is what a person needs to read.
_WRAPPERS = ("DagsterExecutionStepExecutionError", "DagsterUserCodeExecutionError")
_QUALIFIED_CLASS = re.compile(r"^(?:[A-Za-z_][\w]*\.)+([A-Za-z_]\w*): ")


def readable_error(error: ErrorInfo) -> str:
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
