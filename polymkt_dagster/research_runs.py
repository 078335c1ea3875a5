"""Runs of the research assets from the CLI and from `polymkt pipeline`.

They materialize the same asset definitions the UI shows, in-process, into the instance at
DAGSTER_HOME, so a backtest run from the CLI appears in the UI with its metrics and curve.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import dagster as dg

from polymkt_dagster.definitions import run_job
from polymkt_dagster.defs.jobs import BACKTEST_JOB, FAVORITES_JOB
from polymkt_dagster.defs.research.assets import (
    BACKTEST_RESULTS_KEY,
    FAVORITES_KEY,
)
from polymkt_dagster.defs.research.partitions import backtests_partitions, favorites_partitions
from polymkt_dagster.defs.shared.resources import PolymktResource, openai_resource_from_env
from polymkt_dagster.lib.analytics.election_groups import read_groups
from polymkt_dagster.lib.core.config import Settings
from polymkt_dagster.lib.core.redact import redact_text
from polymkt_dagster.lib.research.backtest import StrategyConfig
from polymkt_dagster.lib.research.backtest_runs import prepare_backtest
from polymkt_dagster.lib.research.research_store import ResearchStore

# The example backtest `polymkt pipeline` runs so the UI has one to show: favorites priced
# 0.50-0.95 two weeks before the end, held to expiry, one tick of slippage.
EXAMPLE_BACKTEST_ID = "example-fav-14d-hold"
EXAMPLE_STRATEGY = StrategyConfig(days_before=14, min_price=0.5, max_price=0.95, slippage_ticks=1)
_QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def _resources(settings: Settings) -> dict[str, Any]:
    return {
        "polymkt": PolymktResource.from_settings(settings),
        "openai": openai_resource_from_env(),
    }


def materialize_backtest(
    settings: Settings,
    backtest_id: str,
    instance: dg.DagsterInstance,
    *,
    tags: Mapping[str, str] | None = None,
) -> dg.ExecuteInProcessResult:
    """Register the backtest's partition and materialize it (raises with the asset's error)."""
    instance.add_dynamic_partitions(backtests_partitions.name, [backtest_id])
    return run_job(
        BACKTEST_JOB,
        raise_on_error=True,
        instance=instance,
        resources=_resources(settings),
        partition_key=backtest_id,
        tags=dict(tags or {}),
        run_config=_QUIET,
    )


def run_research_assets(
    settings: Settings,
    instance: dg.DagsterInstance,
    tags: Mapping[str, str],
    on_event: Callable[[Any], None] | None = None,
) -> tuple[list[str], list[str]]:
    """After the main run: every signals/favorites partition in one run, then the example
    backtest. Returns (materialized asset keys, errors)."""
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    from polymkt_dagster.pipeline import StepEvent

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
        resources=_resources(settings),
        tags={
            **tags,
            ASSET_PARTITION_RANGE_START_TAG: keys[0],
            ASSET_PARTITION_RANGE_END_TAG: keys[-1],
        },
        run_config=_QUIET,
        raise_on_error=False,
    )
    report(step, "succeeded" if signals.success else "failed")
    if not signals.success:
        from polymkt_dagster.pipeline import step_failure_causes

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
