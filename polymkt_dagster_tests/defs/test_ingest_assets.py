"""The raw assets run through Dagster: partitions, single-run ranges, metadata, checks."""

from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from polymkt_dagster.defs.ingest.assets import (
    raw_events,
    raw_markets,
    raw_order_filled,
    raw_trades,
)
from polymkt_dagster.defs.serving.catalog import duckdb_catalog
from polymkt_dagster.defs.shared.resources import PolymktResource
from polymkt_dagster.lib.core.duck import connect
from polymkt_dagster.lib.core.lake import Lake, rows_in_files
from polymkt_dagster.lib.core.schemas import ORDER_FILLED, TRADES
from polymkt_dagster.lib.ingest.bootstrap import source_day_range

ALL_ASSETS = [raw_markets, raw_events, raw_order_filled, raw_trades, duckdb_catalog]


def _range_tags(data_dir: Path) -> dict[str, str]:
    first, last = source_day_range(data_dir)
    return {
        ASSET_PARTITION_RANGE_START_TAG: first.isoformat(),
        ASSET_PARTITION_RANGE_END_TAG: last.isoformat(),
    }


def _materialization(result: dg.ExecuteInProcessResult, key: str) -> dg.AssetMaterialization:
    events = result.asset_materializations_for_node(key.replace("/", "__"))
    assert events, f"no materialization for {key}"
    return events[0]


def test_whole_graph_in_one_range_run(data_dir: Path) -> None:
    resources = {"polymkt": PolymktResource(data_dir=str(data_dir))}
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            ALL_ASSETS, instance=instance, resources=resources, tags=_range_tags(data_dir)
        )
        assert result.success
        checks = result.get_asset_check_evaluations()
        assert checks and all(c.passed for c in checks), [
            (c.check_name, c.description) for c in checks if not c.passed
        ]
        trades = _materialization(result, "raw/trades").metadata
        fills = _materialization(result, "raw/order_filled").metadata
        assert trades["run_row_count"].value == fills["run_row_count"].value > 1000
        assert fills["rows_rejected"].value == 0
        assert "| timestamp |" in fills["preview"].value
        catalog = data_dir / "polymkt.duckdb"
        with connect(catalog, read_only=True) as con:
            count = con.execute("SELECT count(*) FROM trades").fetchone()[0]
        assert count == trades["run_row_count"].value
        # Each partition tells its own rows, not the run's (per-partition metadata).
        per_day = [
            e.metadata["dagster/row_count"].value
            for e in result.asset_materializations_for_node("raw__trades")
        ]
        assert sum(per_day) == count and max(per_day) < count
        # One run materialized every day partition in the range (single-run backfill).
        partitions = instance.get_materialized_partitions(dg.AssetKey(["raw", "trades"]))
        assert len(partitions) > 100


def test_rematerializing_a_partition_is_idempotent(data_dir: Path) -> None:
    resources = {"polymkt": PolymktResource(data_dir=str(data_dir))}
    lake = Lake(data_dir / "parquet")
    first, _ = source_day_range(data_dir)
    day_key = first.isoformat()
    with dg.instance_for_test() as instance:
        dg.materialize([raw_markets], instance=instance, resources=resources)
        counts = []
        for _ in range(2):
            result = dg.materialize(
                [raw_order_filled, raw_trades],
                instance=instance,
                resources=resources,
                partition_key=day_key,
            )
            assert result.success
            with connect() as con:
                counts.append(
                    con.execute(
                        f"SELECT count(*), count(DISTINCT order_fill_id) "
                        f"FROM {lake.scan_sql(TRADES)}"
                    ).fetchone()
                )
        assert counts[0] == counts[1] and counts[0][0] == counts[0][1] > 0
        assert lake.partition_days(ORDER_FILLED.name) == [first]


def test_rejected_rows_are_reported_and_good_rows_land(data_dir: Path) -> None:
    source = data_dir / "orderFilled.csv"
    lines = source.read_text().splitlines()
    lines.insert(2, lines[1].replace(lines[1].split(",")[1], "0xnot-an-address"))
    source.write_text("\n".join(lines) + "\n")
    resources = {"polymkt": PolymktResource(data_dir=str(data_dir))}
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [raw_order_filled], instance=instance, resources=resources, tags=_range_tags(data_dir)
        )
    metadata = _materialization(result, "raw/order_filled").metadata
    assert metadata["rows_rejected"].value == 1
    assert metadata["rows_accepted"].value == len(lines) - 2
    assert Path(metadata["rejects_file"].value).is_file()


def test_unreadable_file_fails_the_run_naming_it(data_dir: Path) -> None:
    (data_dir / "orderFilled.csv").write_text("timestamp,maker\n1,2\n")
    resources = {"polymkt": PolymktResource(data_dir=str(data_dir))}
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [raw_order_filled],
            instance=instance,
            resources=resources,
            partition_key="2024-06-01",
            raise_on_error=False,
        )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.event_specific_data.error.cause.message  # type: ignore[union-attr]
    assert "orderFilled.csv" in message and "makerAssetId" in message


def test_definitions_load_with_every_asset() -> None:
    from polymkt_dagster.definitions import defs

    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"raw/markets", "raw/events", "raw/order_filled", "raw/trades"} <= keys
    job = defs.resolve_implicit_global_asset_job_def()
    assert job is not None


@pytest.mark.parametrize("partitioned", [True])
def test_hash_buckets_from_resource(data_dir: Path, partitioned: bool) -> None:
    resources = {
        "polymkt": PolymktResource(
            data_dir=str(data_dir),
            parquet_partitioning_enabled=partitioned,
            parquet_hash_bucket_count=4,
        )
    }
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [raw_markets, raw_order_filled, raw_trades],
            instance=instance,
            resources=resources,
            tags=_range_tags(data_dir),
        )
    assert result.success
    lake = Lake(data_dir / "parquet")
    buckets = {p.parent.name for p in lake.files(TRADES.name)}
    assert buckets <= {f"bucket={i}" for i in range(4)} and len(buckets) == 4


def test_a_range_run_gives_every_partition_its_own_rows_and_files(data_dir: Path) -> None:
    resources = {"polymkt": PolymktResource(data_dir=str(data_dir))}
    lake = Lake(data_dir / "parquet")
    first, _ = source_day_range(data_dir)
    days = [first + timedelta(days=i) for i in range(3)]
    tags = {
        ASSET_PARTITION_RANGE_START_TAG: days[0].isoformat(),
        ASSET_PARTITION_RANGE_END_TAG: days[-1].isoformat(),
    }
    with dg.instance_for_test() as instance:
        dg.materialize([raw_markets], instance=instance, resources=resources)
        result = dg.materialize(
            [raw_order_filled, raw_trades], instance=instance, resources=resources, tags=tags
        )
        assert result.success
        for node, table in (("raw__order_filled", ORDER_FILLED), ("raw__trades", TRADES)):
            events = {e.partition: e.metadata for e in result.asset_materializations_for_node(node)}
            assert sorted(events) == [d.isoformat() for d in days]
            on_disk = {d.isoformat(): rows_in_files(lake.day_files(table.name, d)) for d in days}
            assert {k: m["dagster/row_count"].value for k, m in events.items()} == on_disk
            assert all(m["files"].value == len(lake.day_files(table.name, date.fromisoformat(k)))
                       for k, m in events.items())  # fmt: skip
            # The run's totals are labelled as such on every partition.
            assert all(m["run_row_count"].value == sum(on_disk.values()) for m in events.values())
            assert all(m["run_days"].value == 3 for m in events.values())
        # The instance (the UI's partitions view) holds the same per-day figures.
        stored = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=raw_trades.key, asset_partitions=[days[1].isoformat()]),
            limit=1,
        ).records[0]
        metadata = stored.asset_materialization.metadata
        assert metadata["dagster/row_count"].value == rows_in_files(
            lake.day_files(TRADES.name, days[1])
        )
