"""Automation on a gappy history: the real definitions' conditions, evaluated on an instance
whose daily partitions (from 2020-09-01) are almost all missing, as on every real lake."""

from datetime import UTC, datetime

import dagster as dg
import pytest

from polymkt_dagster.defs.analytics.assets import (
    ELECTION_GROUPS_KEY,
    MARKET_SUMMARY_KEY,
    PRICE_INDEX_KEY,
    PRICES_1D_KEY,
    PRICES_1H_KEY,
)
from polymkt_dagster.defs.ingest.assets import (
    EVENTS_KEY,
    MARKETS_KEY,
    ORDER_FILLED_KEY,
    TRADES_KEY,
)
from polymkt_dagster.defs.research.assets import FAVORITES_KEY
from polymkt_dagster.defs.research.partitions import favorites_partitions
from polymkt_dagster.defs.serving.trades_by_market import TRADES_BY_MARKET_KEY
from polymkt_dagster.defs.shared.automation import (
    AUTOMATION_SENSOR,
    DAILY_LABEL,
    SINGLE_RUN_SENSOR,
    WALLETS_SENSOR,
    WHOLE_LABEL,
)
from polymkt_dagster.defs.shared.single_run_automation import one_run_per_range
from polymkt_dagster.defs.shared.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_TAG,
)
from polymkt_dagster.defs.wallets.assets import (
    ALERTS_KEY,
    MARKET_METRIC_KEYS,
    PNL_SNAPSHOTS_KEY,
    POSITIONS_KEY,
)

NOW = datetime(2024, 3, 10, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    from polymkt_dagster.definitions import defs

    return defs


def _materialized(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None = None):
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=partition))


def _evaluate(defs: dg.Definitions, instance: dg.DagsterInstance, cursor=None):
    return dg.evaluate_automation_conditions(
        defs=defs, instance=instance, cursor=cursor, evaluation_time=NOW
    )


def _requested(result, key: dg.AssetKey) -> set[str | None]:
    requested = result.get_requested_partitions(key)
    return {p for p in requested} if requested else set()


def test_the_conditions_are_the_gap_tolerant_ones_and_the_sensor_runs(defs):
    graph = defs.resolve_asset_graph()
    assert graph.get(PRICES_1H_KEY).automation_condition.get_label() == DAILY_LABEL
    assert graph.get(PNL_SNAPSHOTS_KEY).automation_condition.get_label() == DAILY_LABEL
    assert graph.get(POSITIONS_KEY).automation_condition.get_label() == WHOLE_LABEL
    assert graph.get(TRADES_BY_MARKET_KEY).automation_condition.get_label() == WHOLE_LABEL
    for name in (AUTOMATION_SENSOR, SINGLE_RUN_SENSOR, WALLETS_SENSOR):
        sensor = defs.get_sensor_def(name)
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
        assert sensor.minimum_interval_seconds == 30
    # the wallet layer is evaluated apart (its runs never carry the day's bars), whole
    wallets = defs.get_sensor_def(WALLETS_SENSOR).asset_selection.resolve(graph)
    assert {POSITIONS_KEY, PNL_SNAPSHOTS_KEY, ALERTS_KEY, MARKET_METRIC_KEYS["1d"]} <= wallets
    assert PRICES_1H_KEY not in wallets
    analytics = defs.get_sensor_def(AUTOMATION_SENSOR).asset_selection.resolve(graph)
    assert not analytics & wallets


def test_a_rebuilt_day_on_a_gappy_history_refreshes_that_day_downstream(defs):
    instance = dg.DagsterInstance.ephemeral()
    # Nothing has happened yet: switching the sensor on does not backfill history.
    first = _evaluate(defs, instance)
    assert first.total_requested == 0
    for key in (MARKETS_KEY, EVENTS_KEY):
        _materialized(instance, key)
    _materialized(instance, ORDER_FILLED_KEY, "2024-03-04")
    _materialized(instance, TRADES_KEY, "2024-03-04")

    second = _evaluate(defs, instance, first.cursor)
    # Daily assets: exactly the rebuilt day (not today, not 2,000 missing days).
    for key in (PRICES_1H_KEY, PRICES_1D_KEY, ALERTS_KEY):
        assert _requested(second, key) == {"2024-03-04"}, key
    # The day's P&L snapshots wait for the positions they start from (never built yet).
    assert _requested(second, PNL_SNAPSHOTS_KEY) == set()
    # Unpartitioned: one run each although 1,200+ upstream days were never materialized.
    for key in (
        POSITIONS_KEY,
        TRADES_BY_MARKET_KEY,
        MARKET_SUMMARY_KEY,
        ELECTION_GROUPS_KEY,
    ):
        assert _requested(second, key) == {None}, key
    # The price index follows the hourly bars once they are written (a run of their own).
    assert _requested(second, PRICE_INDEX_KEY) == set()
    for key in (PRICES_1H_KEY, POSITIONS_KEY, TRADES_BY_MARKET_KEY):
        _materialized(instance, key, "2024-03-04" if key == PRICES_1H_KEY else None)

    # Once handled, nothing more is asked until something upstream changes again; the
    # snapshots' day, still pending, follows now that positions exist.
    third = _evaluate(defs, instance, second.cursor)
    assert _requested(third, PNL_SNAPSHOTS_KEY) == {"2024-03-04"}
    assert _requested(third, PRICE_INDEX_KEY) == {None}
    assert _requested(third, PRICES_1H_KEY) == set()
    assert _requested(third, POSITIONS_KEY) == set()

    # An older day rebuilt later (a backfill): only that day, never the latest partition.
    _materialized(instance, TRADES_KEY, "2023-11-20")
    fourth = _evaluate(defs, instance, third.cursor)
    assert _requested(fourth, PRICES_1H_KEY) == {"2023-11-20"}
    assert _requested(fourth, PNL_SNAPSHOTS_KEY) == {"2023-11-20"}
    assert _requested(fourth, TRADES_BY_MARKET_KEY) == {None}


def test_a_new_price_index_alone_does_not_run_the_favorites_again(defs):
    # favorites read through the index only to go faster (its bars are read when it is
    # stale): the bars' update starts their run, the index's own update starts none
    instance = dg.DagsterInstance.ephemeral()
    first = _evaluate(defs, instance)
    for key in (ELECTION_GROUPS_KEY, PRICE_INDEX_KEY):
        _materialized(instance, key)
    _materialized(instance, PRICES_1H_KEY, "2024-03-04")
    second = _evaluate(defs, instance, first.cursor)
    assert _requested(second, FAVORITES_KEY) == set(favorites_partitions.get_partition_keys())
    for horizon in favorites_partitions.get_partition_keys():
        _materialized(instance, FAVORITES_KEY, horizon)
    third = _evaluate(defs, instance, second.cursor)
    _materialized(instance, PRICE_INDEX_KEY)  # built after the favorites' run
    fourth = _evaluate(defs, instance, third.cursor)
    assert _requested(fourth, FAVORITES_KEY) == set()
    _materialized(instance, ELECTION_GROUPS_KEY)  # a real change still runs them
    fifth = _evaluate(defs, instance, fourth.cursor)
    assert _requested(fifth, FAVORITES_KEY) == set(favorites_partitions.get_partition_keys())


def test_an_unpartitioned_parent_update_does_not_fan_out_to_every_day(defs):
    instance = dg.DagsterInstance.ephemeral()
    first = _evaluate(defs, instance)
    _materialized(instance, POSITIONS_KEY)
    _materialized(instance, MARKETS_KEY)
    _materialized(instance, EVENTS_KEY)
    second = _evaluate(defs, instance, first.cursor)
    # markets and positions feed every day's snapshots and alerts: no day is requested.
    for key in (PNL_SNAPSHOTS_KEY, ALERTS_KEY, PRICES_1H_KEY):
        assert _requested(second, key) == set(), key
    assert _requested(second, ELECTION_GROUPS_KEY) == {None}
    assert _requested(second, MARKET_SUMMARY_KEY) == {None}


def test_a_day_waits_for_its_own_upstream_day(defs):
    instance = dg.DagsterInstance.ephemeral()
    first = _evaluate(defs, instance)
    _materialized(instance, MARKETS_KEY)
    _materialized(instance, POSITIONS_KEY)
    # prices_1d's parent day is missing and prices_1h is not requested for it: prices_1d waits.
    _materialized(instance, PRICES_1H_KEY, "2024-03-05")
    second = _evaluate(defs, instance, first.cursor)
    assert _requested(second, PRICES_1D_KEY) == {"2024-03-05"}
    assert _requested(second, PRICES_1H_KEY) == set()


def _tick(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None = None):
    """One tick of the single-run sensor as the code server evaluates it."""
    repository = defs.get_repository_def()
    context = dg.build_sensor_context(instance=instance, repository_def=repository, cursor=cursor)
    return repository.get_sensor_def(SINGLE_RUN_SENSOR).evaluate_tick(context)


def test_the_horizons_one_tick_requests_are_one_run(defs):
    graph = defs.resolve_asset_graph()
    # The favorites' horizons are evaluated by the single-run sensor alone.
    assert FAVORITES_KEY not in defs.get_sensor_def(AUTOMATION_SENSOR).asset_selection.resolve(
        graph
    )
    instance = dg.DagsterInstance.ephemeral()
    first = _tick(defs, instance)
    assert not first.run_requests
    _materialized(instance, ELECTION_GROUPS_KEY)
    _materialized(instance, PRICE_INDEX_KEY)
    _materialized(instance, PRICES_1H_KEY, "2024-03-04")

    second = _tick(defs, instance, first.cursor)
    # Dagster asks for every horizon; they go out as one run over the horizons' range.
    (evaluation,) = [e for e in second.automation_condition_evaluations if e.key == FAVORITES_KEY]
    assert evaluation.true_subset.size == len(favorites_partitions.get_partition_keys())
    (request,) = second.run_requests
    horizons = favorites_partitions.get_partition_keys()
    assert request.asset_selection == [FAVORITES_KEY]
    assert request.partition_key is None
    assert request.partition_key_range == dg.PartitionKeyRange(horizons[0], horizons[-1])
    assert PARTITION_TAG not in request.tags


def test_only_single_run_static_partitions_are_merged_into_ranges(defs):
    assets = defs.get_repository_def().assets_defs_by_key

    def request(key: dg.AssetKey, partition: str | None) -> dg.RunRequest:
        tags = {"source": "tick", **({PARTITION_TAG: partition} if partition else {})}
        return dg.RunRequest(asset_selection=[key], partition_key=partition, tags=tags)

    # 1, 3, 7 and 60, 90 (30 and 14 in progress): one run per contiguous range.
    favorites = [request(FAVORITES_KEY, h) for h in ("90", "1", "7", "60", "3")]
    daily = [request(PRICES_1H_KEY, day) for day in ("2024-03-04", "2024-03-05")]
    whole = request(TRADES_BY_MARKET_KEY, None)
    merged = one_run_per_range([*favorites, *daily, whole], assets)

    ranges = [
        (r.tags[ASSET_PARTITION_RANGE_START_TAG], r.tags[ASSET_PARTITION_RANGE_END_TAG])
        for r in merged
        if r.asset_selection == [FAVORITES_KEY]
    ]
    assert ranges == [("1", "7"), ("60", "90")]
    assert all(r.tags["source"] == "tick" for r in merged)
    # A daily asset keeps a run per day, an unpartitioned one its single run.
    assert [r for r in merged if r.asset_selection != [FAVORITES_KEY]] == [*daily, whole]


def test_every_check_is_described_and_no_description_loses_text_to_html(defs):
    import re

    checks = [
        spec
        for item in defs.assets or []
        if isinstance(item, dg.AssetsDefinition)
        for spec in item.check_specs
    ]
    assert len(checks) >= 14
    assert [s.key for s in checks if not s.description] == []
    for item in defs.assets or []:
        if isinstance(item, dg.AssetsDefinition):
            for spec in item.specs:
                # Outside code spans the UI reads "<id>" as an HTML tag and drops it.
                prose = re.sub(r"`[^`]*`", "", spec.description or "")
                assert not re.search(r"<[A-Za-z]", prose), (spec.key, spec.description)


def test_the_main_and_research_jobs_are_in_the_definitions(defs):
    from polymkt_dagster.defs.jobs import BACKTEST_JOB, FAVORITES_JOB, MAIN_JOB

    main = defs.resolve_job_def(MAIN_JOB)
    assert TRADES_KEY in main.asset_layer.executable_asset_keys
    assert PRICES_1H_KEY in main.asset_layer.executable_asset_keys
    for name in (FAVORITES_JOB, BACKTEST_JOB):
        assert defs.resolve_job_def(name).name == name
    assert defs.resolve_job_def(MAIN_JOB).executor_def.name == "in_process"
