"""The platform under the real `dagster-daemon`: live sync sensors against the local Polymarket
servers, then the analytics automation sensor, with shortened sensor intervals."""

import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.scheduler.instigation import TickStatus
from dagster._core.storage.tags import AUTOMATION_CONDITION_TAG, SENSOR_NAME_TAG

from polymkt_dagster.defs.analytics.assets import PRICES_1D_KEY, PRICES_1H_KEY
from polymkt_dagster.defs.ingest.assets import TRADES_KEY
from polymkt_dagster.defs.ingest.sensors import FILLS_SENSOR, MARKETS_SENSOR, SENSOR_TAG
from polymkt_dagster.defs.research.assets import FAVORITES_KEY
from polymkt_dagster.defs.research.partitions import favorites_partitions
from polymkt_dagster.defs.serving.trades_by_market import TRADES_BY_MARKET_KEY
from polymkt_dagster.defs.shared.automation import AUTOMATION_SENSOR, SINGLE_RUN_SENSOR
from polymkt_dagster.lib.core.duck import connect
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.schemas import ORDER_FILLED
from polymkt_dagster.lib.ingest.sync import days_to_sync, window_for_days
from polymkt_local.daemon import (
    instance_at,
    prepare_home,
    running_daemon,
    runs_with_tag,
    sensor_ticks,
    wait_for,
)
from polymkt_local.polymarket_apis import PolymarketServers

# Bounded by events, not sleeps: each wait ends as soon as its event is recorded. Generous for
# a loaded 2-core machine, where every run pays a process start and the code's imports.
TIMEOUT_S = 360


def _daemon_env(servers: PolymarketServers, data_dir: Path) -> dict[str, str]:
    return {
        **servers.env("goldsky"),
        "POLYMKT_DATA_DIR": str(data_dir),
        "POLYMKT_INGEST_MODE": "live",
        "POLYMKT_ANALYTICS_MODE": "on",
        "POLYMKT_FILLS_SENSOR_INTERVAL_SECONDS": "5",
        "POLYMKT_AUTOMATION_INTERVAL_SECONDS": "5",
    }


def _latest_materialization(
    instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None = None
) -> dg.EventLogRecord | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None),
        limit=1,
    ).records
    return records[0] if records else None


def _by_automation(instance: dg.DagsterInstance, record: dg.EventLogRecord | None) -> bool:
    if record is None:
        return False
    run = instance.get_run_by_id(record.run_id)
    return run is not None and run.tags.get(AUTOMATION_CONDITION_TAG) == "true"


def _automation_runs(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict[str, set[str]]:
    """The partitions of ``key`` each automation run materialized, by run id."""
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=500)
    runs: dict[str, set[str]] = {}
    for record in records.records:
        if _by_automation(instance, record) and record.partition_key is not None:
            runs.setdefault(record.run_id, set()).add(record.partition_key)
    return runs


def _fill_ids(lake: Lake) -> list[str]:
    with connect() as con:
        return [
            r[0] for r in con.execute(f"SELECT id FROM {lake.scan_sql(ORDER_FILLED)}").fetchall()
        ]


@pytest.mark.slow
def test_sensors_sync_and_automation_follows_under_the_daemon(
    tmp_path: Path, polymarket_servers: PolymarketServers
) -> None:
    data_dir, home, log = (
        tmp_path / "data",
        prepare_home(tmp_path / "home"),
        tmp_path / "daemon.log",
    )
    lake = Lake(data_dir / "parquet")
    days = days_to_sync(datetime.now(UTC), None)
    start, end = window_for_days(days)
    expected = polymarket_servers.store.expected_ids(int(start.timestamp()), int(end.timestamp()))
    assert expected, "the local servers serve fills for the synced days"
    today = days[-1].isoformat()
    instance = instance_at(home)

    with running_daemon(home, _daemon_env(polymarket_servers, data_dir), log) as daemon:
        deadline = time.monotonic() + TIMEOUT_S

        def waited(what, probe):
            left = deadline - time.monotonic()
            return wait_for(what, probe, timeout_s=left, process=daemon, log=log)

        def fills_run_succeeded():
            runs = runs_with_tag(instance, SENSOR_TAG, FILLS_SENSOR)
            failed = [r for r in runs if r.status == dg.DagsterRunStatus.FAILURE]
            assert not failed, f"sync run {failed[0].run_id} failed"
            return [r for r in runs if r.status == dg.DagsterRunStatus.SUCCESS]

        (sync_run, *_) = waited("for the fills sensor's run to succeed", fills_run_succeeded)
        assert sync_run.tags[SENSOR_NAME_TAG] == FILLS_SENSOR
        waited(
            "for the markets sensor's run",
            lambda: [
                r for r in runs_with_tag(instance, SENSOR_TAG, MARKETS_SENSOR) if r.is_finished
            ],
        )

        # The source's head does not move: the next ticks skip, saying why.
        def quiet_ticks():
            return [
                t
                for t in sensor_ticks(instance, FILLS_SENSOR)
                if t.status == TickStatus.SKIPPED and "no new fills" in (t.skip_reason or "")
            ]

        skipped = waited("for a readable skip of the fills sensor", quiet_ticks)
        assert "watermark" in skipped[0].skip_reason
        # Automation: the synced day's bars, the market-clustered copy and the favorite
        # signals follow by themselves.
        horizons = favorites_partitions.get_partition_keys()
        for key, partition in (
            (PRICES_1H_KEY, today),
            (PRICES_1D_KEY, today),
            (TRADES_BY_MARKET_KEY, None),
            # several partitions of one asset on one tick (every horizon)
            *((FAVORITES_KEY, horizon) for horizon in horizons),
        ):
            waited(
                f"for automation to materialize {key.to_user_string()} {partition or ''}",
                lambda k=key, p=partition: _by_automation(
                    instance, _latest_materialization(instance, k, p)
                ),
            )
        automation_ticks = sensor_ticks(instance, AUTOMATION_SENSOR)
        assert any(t.status == TickStatus.SUCCESS for t in automation_ticks)
        # The horizons a tick requested together are one run (the asset's single-run
        # backfill policy), not a run per horizon, each paying a process start.
        favorites_runs = _automation_runs(instance, FAVORITES_KEY)
        assert favorites_runs
        assert any(
            t.status == TickStatus.SUCCESS for t in sensor_ticks(instance, SINGLE_RUN_SENSOR)
        )
        assert all(parts == set(horizons) for parts in favorites_runs.values()), favorites_runs
        # ... as runs the daemon starts at once: no backfill for the backfill daemon to
        # pick up a tick later (and to hold "in progress" for everything downstream).
        assert instance.get_backfills() == []

    # Exactly once: every fill served for the synced days, no duplicate.
    ids = _fill_ids(lake)
    assert len(ids) == len(set(ids))
    assert set(ids) == expected
    assert _latest_materialization(instance, TRADES_KEY, today) is not None
    assert len(runs_with_tag(instance, SENSOR_TAG, FILLS_SENSOR)) == 1
