"""Analytics, signals, datasets and backtests run through Dagster on the sample lake."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.parquet as pq
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from dagster_openai import OpenAIResource

from polymkt_dagster.defs.analytics.assets import (
    election_groups_asset,
    market_summary,
    price_index,
    prices_1d,
    prices_1h,
)
from polymkt_dagster.defs.research.assets import (
    backtest_results,
    dataset_markets,
    favorite_signals,
    research_registry_sensor,
)
from polymkt_dagster.defs.shared.resources import SEMANTIC_SEARCH_DISABLED_KEY, PolymktResource
from polymkt_dagster.lib.analytics.bars import newest_bar_time
from polymkt_dagster.lib.analytics.election_groups import read_groups
from polymkt_dagster.lib.analytics.price_series import (
    PRICE_INDEX,
    PriceIndex,
    PriceSeries,
    signal_series,
)
from polymkt_dagster.lib.core.duck import connect
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.schemas import TRADES
from polymkt_dagster.lib.research.backtest import StrategyConfig
from polymkt_dagster.lib.research.backtest_runs import prepare_backtest
from polymkt_dagster.lib.research.datasets import DatasetFilters, save_dataset
from polymkt_dagster.lib.research.research_store import ResearchStore
from polymkt_dagster.lib.research.signals import DAYS_TO_EXPIRY
from polymkt_dagster.lib.research.signals import favorite_signals as signals_at
from polymkt_dagster_tests.conftest import copy_sample
from polymkt_dagster_tests.lib.research.test_agents import chat_route, nulls
from polymkt_dagster_tests.research_data import build_research_data
from polymkt_local.openai_compat import (
    OpenAICompatServer,
)

NO_OPENAI = OpenAIResource(api_key=SEMANTIC_SEARCH_DISABLED_KEY)


@pytest.fixture(scope="module")
def research_data(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Path:
    """The sample's raw layer and analytics, built once for the module."""
    data = tmp_path_factory.mktemp("research") / "data"
    build_research_data(sample_dir, data)
    return data


def test_analytics_assets_over_a_range_in_one_run(
    research_data: Path, sample_dir: Path, tmp_path: Path
) -> None:
    data = copy_sample(sample_dir, tmp_path / "data")
    shutil.copytree(research_data / "parquet" / "raw", data / "parquet" / "raw")
    days = Lake(data / "parquet").partition_days(TRADES.name)[:10]
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [prices_1h, prices_1d, market_summary, election_groups_asset],
            instance=instance,
            resources={"polymkt": PolymktResource(data_dir=str(data))},
            tags={
                ASSET_PARTITION_RANGE_START_TAG: days[0].isoformat(),
                ASSET_PARTITION_RANGE_END_TAG: days[-1].isoformat(),
            },
        )
        assert result.success
        checks = result.get_asset_check_evaluations()
        assert {c.check_name for c in checks} == {
            "ohlc_consistent", "volume_matches_source", "one_winner_per_resolved_group",
        }  # fmt: skip
        assert all(c.passed for c in checks), [c.check_name for c in checks if not c.passed]
        hourly = result.asset_materializations_for_node("analytics__prices_1h")[0].metadata
        assert hourly["run_partitions_written"].value == len(days)
        assert "| bucket_start |" in hourly["preview"].value
        assert len(instance.get_materialized_partitions(dg.AssetKey(["analytics", "prices_1d"])))
        summary = result.asset_materializations_for_node("analytics__market_summary")[0]
        assert summary.metadata["dagster/row_count"].value == 400
        chart = summary.metadata["top_market_price_and_volume"].value
        assert chart.startswith("![price and volume](data:image/png;base64,"), chart[:80]
        groups = result.asset_materializations_for_node("analytics__election_groups")[0]
        assert groups.metadata["groups"].value == 25


def resources(data: Path, openai: OpenAIResource = NO_OPENAI) -> dict[str, Any]:
    return {"polymkt": PolymktResource(data_dir=str(data)), "openai": openai}


def test_favorites_for_every_horizon_in_one_run(research_data: Path) -> None:
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [favorite_signals],
            instance=instance,
            resources=resources(research_data),
            tags={ASSET_PARTITION_RANGE_START_TAG: "1", ASSET_PARTITION_RANGE_END_TAG: "90"},
        )
        assert result.success
        done = instance.get_materialized_partitions(dg.AssetKey(["signals", "favorites"]))
        assert done == {"1", "3", "7", "14", "30", "60", "90"}
        (check,) = result.get_asset_check_evaluations()
        assert check.check_name == "no_look_ahead" and check.passed
        meta = result.asset_materializations_for_node("signals__favorites")[0].metadata
        curve = meta["calibration_curve"].value
        assert curve.startswith("![calibration curve](data:image/png;base64,"), curve[:80]
    lake = Lake(research_data / "parquet")
    for days in (1, 90):
        rows = pq.read_table(
            lake.single_file(f"analytics/signals/favorites/days_before={days}")
        ).to_pylist()
        assert len(rows) == 25
        for row in rows:
            if row["status"] == "ok":
                assert row["favorite_price_at"] <= row["signal_time"]
                assert row["runner_up_price"] is None or (
                    row["favorite_price"] >= row["runner_up_price"]
                )
            else:
                assert row["skip_reason"]


def test_dataset_and_backtest_created_from_sentences_in_the_ui_path(
    research_data: Path, openai_server: OpenAICompatServer
) -> None:
    """Add partitions, materialize with from_text: agents via the OpenAI resource."""

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        properties = body["response_format"]["json_schema"]["schema"]["properties"]
        if "categories" in properties:  # the dataset agent
            return nulls(properties, categories=["Elections"], resolved=True)
        return nulls(properties, days_before=14, min_price=0.5, dataset="ui-elections")

    seen = chat_route(openai_server, answer)
    openai = OpenAIResource(api_key="sk-test", base_url=openai_server.base_url)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("datasets", ["ui-elections"])
        made = dg.materialize(
            [dataset_markets],
            instance=instance,
            resources=resources(research_data, openai),
            partition_key="ui-elections",
            run_config={
                "ops": {
                    "backtest__datasets": {"config": {"from_text": "resolved election markets"}}
                }
            },
        )
        assert made.success
        meta = made.asset_materializations_for_node("backtest__datasets")[0].metadata
        assert meta["filters"].value == {"categories": ["Elections"], "resolved": True}
        assert meta["dagster/row_count"].value > 50

        instance.add_dynamic_partitions("backtests", ["ui-backtest"])
        run = dg.materialize(
            [backtest_results],
            instance=instance,
            resources=resources(research_data, openai),
            partition_key="ui-backtest",
            run_config={
                "ops": {
                    "backtest__results": {
                        "config": {"from_text": "buy the favorite 14 days out above 50c"}
                    }
                }
            },
        )
        assert run.success
        meta = run.asset_materializations_for_node("backtest__results")[0].metadata
    assert len(seen) == 2 and seen[1]["messages"][0]["content"].count("ui-elections") == 1
    config = meta["config"].value
    assert (config["days_before"], config["min_price"], config["dataset"]) == (
        14, 0.5, "ui-elections",
    )  # fmt: skip
    assert meta["equity_curve"].value.startswith("![equity curve](data:image/png;base64,")
    assert "| Sharpe (daily, x sqrt(365)) |" in meta["metrics"].value
    assert meta["dagster/row_count"].value > 0
    trades = pq.read_table(meta["trades_path"].value).to_pylist()
    assert len(trades) == meta["dagster/row_count"].value
    assert all(t["observed_price"] >= 0.5 for t in trades)
    store = ResearchStore.in_data_dir(research_data)
    record = store.require_backtest("ui-backtest")
    assert record.status == "succeeded" and record.metrics["trades"] == len(trades)


def test_backtest_on_the_sample_stays_in_a_sane_range(research_data: Path) -> None:
    store = ResearchStore.in_data_dir(research_data)
    prepare_backtest(
        store,
        StrategyConfig(days_before=30, min_price=0.5, max_price=0.95, slippage_ticks=1),
        backtest_id="sane-30d",
    )
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("backtests", ["sane-30d"])
        result = dg.materialize(
            [backtest_results],
            instance=instance,
            resources=resources(research_data),
            partition_key="sane-30d",
        )
        assert result.success
    metrics = store.require_backtest("sane-30d").metrics
    assert metrics["trades"] >= 5
    # docs/architecture.md §5: no look-ahead means no implausible edge over the entry price.
    assert metrics["win_rate"] - metrics["avg_entry_price"] < 0.25
    assert -1 < metrics["total_return"] < 0.2
    assert 0 <= metrics["max_drawdown"] < 1 and 0 < metrics["exposure"] <= 1


def test_missing_backtest_fails_with_a_clear_message(research_data: Path) -> None:
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("backtests", ["never-prepared"])
        result = dg.materialize(
            [backtest_results],
            instance=instance,
            resources=resources(research_data),
            partition_key="never-prepared",
            raise_on_error=False,
        )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.event_specific_data.error.message  # type: ignore[union-attr]
    assert "backtest 'never-prepared' is not saved yet" in message


def test_registry_sensor_adds_partitions_for_saved_items(
    research_data: Path, sample_dir: Path, tmp_path: Path
) -> None:
    data = copy_sample(sample_dir, tmp_path / "data")  # a data dir with a new store
    lake = Lake(research_data / "parquet")
    store = ResearchStore.in_data_dir(data)
    with connect() as con:
        save_dataset(store, con, lake, "crypto", DatasetFilters(categories=["Crypto"]), create=True)
    prepare_backtest(store, StrategyConfig(days_before=7), backtest_id="bt-7")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("datasets", ["known"])
        context = dg.build_sensor_context(instance=instance)
        result = research_registry_sensor(context, polymkt=PolymktResource(data_dir=str(data)))
    assert result is not None
    added = {r.partitions_def_name: r.partition_keys for r in result.dynamic_partitions_requests}
    assert added == {"datasets": ["crypto"], "backtests": ["bt-7"]}
    assert [r.partition_key for r in result.run_requests] == ["crypto"]
    assert json.dumps(added)  # plain data, shown in the sensor's tick log


def test_price_index_asset_serves_the_same_signals_as_the_bars(
    research_data: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    shutil.copytree(research_data / "parquet", data / "parquet")
    lake = Lake(data / "parquet")
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [price_index],
            instance=instance,
            resources={"polymkt": PolymktResource(data_dir=str(data))},
        )
    assert result.success
    metadata = result.asset_materializations_for_node("analytics__price_index")[0].metadata
    hourly_days = lake.partition_days("analytics/prices_1h")
    assert metadata["days_indexed"].value == metadata["source_files"].value == len(hourly_days)
    assert metadata["hourly_closes"].value > metadata["daily_closes"].value > 0
    assert metadata["dagster/row_count"].value == (
        metadata["hourly_closes"].value + metadata["daily_closes"].value
    )
    assert metadata["path"].value == str(lake.single_file(PRICE_INDEX))
    index = PriceIndex.open(lake)
    assert index is not None and index.dirty_days == []
    groups = read_groups(lake)
    tokens = [m.yes_token_id for g in groups for m in g.members]
    with connect() as con:
        through_index = signal_series(con, lake, groups, DAYS_TO_EXPIRY)
        bars = PriceSeries.from_bars(con, lake, tokens)
        data_end = newest_bar_time(con, lake)  # as build_favorites passes it
    assert through_index.token_ids != bars.token_ids  # the index's token numbers
    for days in DAYS_TO_EXPIRY:
        assert [vars(s) for s in signals_at(groups, through_index, days, data_end=data_end)] == [
            vars(s) for s in signals_at(groups, bars, days, data_end=data_end)
        ]
