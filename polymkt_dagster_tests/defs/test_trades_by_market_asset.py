"""serving/trades_by_market through Dagster: builds the copy, then rebuilds nothing unchanged."""

import shutil
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from polymkt_dagster.defs.serving.trades_by_market import trades_by_market
from polymkt_dagster.defs.shared.automation import analytics_automation
from polymkt_dagster.defs.shared.resources import PolymktResource
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.schemas import TRADES
from polymkt_dagster.lib.serving.queries import query_trades
from polymkt_dagster.lib.serving.trades_by_market import read_markets, serving_dir


def test_asset_builds_the_copy_and_queries_use_it(sample_lake: Lake, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(sample_lake.root, data_dir / "parquet")
    lake = Lake(data_dir / "parquet")
    resources = {"polymkt": PolymktResource(data_dir=str(data_dir))}
    with dg.instance_for_test() as instance:
        first = dg.materialize([trades_by_market], instance=instance, resources=resources)
        again = dg.materialize([trades_by_market], instance=instance, resources=resources)
    assert first.success and again.success
    built = first.asset_materializations_for_node("serving__trades_by_market")[0].metadata
    total = sum(pq.read_metadata(p).num_rows for p in lake.files(TRADES.name))
    assert built["dagster/row_count"].value == total
    assert built["years_rebuilt"].value != "none"
    freshness = built["freshness"].value
    assert freshness.startswith("![freshness per source](data:image/png;base64,")
    unchanged = again.asset_materializations_for_node("serving__trades_by_market")[0].metadata
    assert unchanged["years_rebuilt"].value == "none"
    assert unchanged["dagster/row_count"].value == 0
    assert unchanged["delta_rebuilt"].value is False
    assert unchanged["delta_days"].value == "none"

    assert any(serving_dir(lake).rglob("*.arrow"))
    # every day partition is answered by the copy the asset wrote
    served = read_markets(lake, ["no-such-market"], lake.listing(TRADES.name))
    assert served.raw_days == set()
    assert query_trades(lake, ["no-such-market"]).num_rows == 0


def test_a_sync_rebuilds_only_the_delta(sample_lake: Lake, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(sample_lake.root, data_dir / "parquet")
    lake = Lake(data_dir / "parquet")
    resources = {"polymkt": PolymktResource(data_dir=str(data_dir))}
    last = lake.partition_days(TRADES.name)[-1]
    with dg.instance_for_test() as instance:
        assert dg.materialize([trades_by_market], instance=instance, resources=resources).success
        for path in lake.day_files(TRADES.name, last):  # as a sync replaces today's file
            copy = path.with_name(f".{path.name}.tmp")
            shutil.copyfile(path, copy)
            copy.replace(path)
        after_sync = dg.materialize([trades_by_market], instance=instance, resources=resources)
    meta = after_sync.asset_materializations_for_node("serving__trades_by_market")[0].metadata
    assert meta["years_rebuilt"].value == "none"
    assert meta["delta_rebuilt"].value is True
    assert meta["delta_days"].value == last.isoformat()
    assert meta["dagster/row_count"].value == sum(
        pq.read_metadata(p).num_rows for p in lake.day_files(TRADES.name, last)
    )
    assert read_markets(lake, ["no-such-market"], lake.listing(TRADES.name)).raw_days == set()


def test_analytics_mode_decides_automation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYMKT_ANALYTICS_MODE", "off")
    assert analytics_automation() is None
    monkeypatch.setenv("POLYMKT_ANALYTICS_MODE", "on")
    assert analytics_automation() is not None
