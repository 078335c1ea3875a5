"""The live sync through Dagster: assets in live mode, the two sensors, the dagster CLI and a
sync killed mid-run, all against the local Polymarket servers (and SeaweedFS for S3)."""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from dagster_aws.s3 import S3Resource

from polymkt_dagster.defs.ingest import sensors
from polymkt_dagster.defs.ingest.assets import (
    raw_ctf_events,
    raw_events,
    raw_markets,
    raw_order_filled,
    raw_trades,
)
from polymkt_dagster.defs.serving.s3_lake import s3_lake
from polymkt_dagster.defs.shared.resources import PolymktResource
from polymkt_dagster.lib.core.config import Settings
from polymkt_dagster.lib.core.duck import connect
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.schemas import CTF_EVENTS, MARKETS, ORDER_FILLED, TRADES
from polymkt_dagster.lib.ingest.sources.goldsky import GoldskySource
from polymkt_dagster.lib.ingest.sync import fills_state, sync_order_fills, window_for_days
from polymkt_dagster.lib.serving.status import sync_status as runtime_status
from polymkt_local.polymarket_apis import PolymarketServers
from polymkt_local.seaweed import SeaweedS3

REPO_ROOT = Path(__file__).resolve().parents[2]
RPC_KEY = "rpcKEY0123456789abcdefSECRET"
FILL_ASSETS = [raw_order_filled, raw_trades]
SENSOR_ASSETS = [*FILL_ASSETS, raw_ctf_events]  # what the 10-minute sensor materializes


def _days(n: int) -> list[date]:
    today = datetime.now(UTC).date()
    return [today - timedelta(days=i) for i in range(n - 1, -1, -1)]


def _range_tags(days: list[date]) -> dict[str, str]:
    return {
        ASSET_PARTITION_RANGE_START_TAG: days[0].isoformat(),
        ASSET_PARTITION_RANGE_END_TAG: days[-1].isoformat(),
    }


def _ids(lake: Lake) -> list[str]:
    with connect() as con:
        rows = con.execute(f"SELECT id FROM {lake.scan_sql(ORDER_FILLED)}").fetchall()
    return [r[0] for r in rows]


def _ctf_ids(lake: Lake) -> list[str]:
    with connect() as con:
        rows = con.execute(f"SELECT id FROM {lake.scan_sql(CTF_EVENTS)}").fetchall()
    return [r[0] for r in rows]


def _expected_ctf(servers: PolymarketServers, days: list[date]) -> set[str]:
    start, end = window_for_days(days)
    return servers.ctf.expected_ids(int(start.timestamp()), int(end.timestamp()))


def _expected(servers: PolymarketServers, days: list[date]) -> set[str]:
    start, end = window_for_days(days)
    return servers.store.expected_ids(int(start.timestamp()), int(end.timestamp()))


def _event_log_text(instance: dg.DagsterInstance, run_id: str) -> str:
    return "\n".join(str(entry) for entry in instance.all_logs(run_id))


@pytest.fixture
def live_env(
    polymarket_servers: PolymarketServers, monkeypatch: pytest.MonkeyPatch
) -> PolymarketServers:
    for name, value in polymarket_servers.env("goldsky").items():
        monkeypatch.setenv(name, value)
    return polymarket_servers


def test_live_run_syncs_every_raw_asset_and_mirrors_to_s3(
    tmp_path: Path, live_env: PolymarketServers, seaweedfs: SeaweedS3,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    bucket = seaweedfs.new_bucket()
    for name, value in seaweedfs.env(bucket).items():
        monkeypatch.setenv(name, value)
    data_dir = tmp_path / "data"
    days = _days(3)
    resources = {
        "polymkt": PolymktResource(data_dir=str(data_dir)),
        "s3": S3Resource(endpoint_url=seaweedfs.endpoint_url, region_name=seaweedfs.region,
                         aws_access_key_id=dg.EnvVar("POLYMKT_S3_ACCESS_KEY_ID"),
                         aws_secret_access_key=dg.EnvVar("POLYMKT_S3_SECRET_ACCESS_KEY")),
    }  # fmt: skip
    live_env.gamma.fail_next(429, retry_after="0.1")
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [raw_markets, raw_events, *SENSOR_ASSETS, s3_lake],
            instance=instance,
            resources=resources,
            tags={"polymkt/ingest": "live", **_range_tags(days)},
        )
        assert result.success
        checks = result.get_asset_check_evaluations()
        assert checks and all(c.passed for c in checks)
        fills = result.asset_materializations_for_node("raw__order_filled")[0].metadata
        trades = result.asset_materializations_for_node("raw__trades")[0].metadata
        markets = result.asset_materializations_for_node("raw__markets")[0].metadata
        ctf = result.asset_materializations_for_node("raw__ctf_events")[0].metadata
        mirror = result.asset_materializations_for_node("serving__s3_lake")[0].metadata
        log_text = _event_log_text(instance, result.run_id)
    lake = Lake(data_dir / "parquet")
    expected = _expected(live_env, days)
    ids = _ids(lake)
    assert expected and len(ids) == len(set(ids)) and set(ids) == expected
    assert fills["source"].value == "goldsky" and fills["rows_new"].value == len(expected)
    assert fills["stopped_reason"].value == "complete"
    assert trades["run_row_count"].value == len(expected)
    assert trades["tokens_still_unknown"].value == 0
    ctf_ids, ctf_expected = _ctf_ids(lake), _expected_ctf(live_env, days)
    assert ctf_expected and sorted(ctf_ids) == sorted(ctf_expected)
    assert ctf["source"].value == "rpc" and ctf["rows_new"].value == len(ctf_expected)
    assert "| PositionSplit |" in ctf["rows_by_event"].value
    assert markets["retries"].value == 1 and markets["rows_parsed"].value > 0
    assert mirror["uploaded"].value == mirror["verified"].value > 0, mirror
    with connect() as con:
        unmapped = con.execute(
            f"SELECT count(*) FROM {lake.scan_sql(TRADES)} WHERE market_id IS NULL"
        ).fetchone()[0]
        markets_in_lake = con.execute(f"SELECT count(*) FROM {lake.scan_sql(MARKETS)}").fetchone()[
            0
        ]
    assert unmapped == 0 and markets_in_lake == markets["dagster/row_count"].value > 0
    keys = {o["Key"] for o in seaweedfs.client().list_objects_v2(Bucket=bucket)["Contents"]}
    assert "raw/polymarket/markets.parquet" in keys
    assert any(k.startswith("raw/polymarket/gamma_api/markets/") for k in keys)
    assert seaweedfs.secret_key not in log_text and seaweedfs.access_key not in log_text
    freshness = runtime_status(Settings.from_env().with_data_dir(data_dir))
    tables = ("markets", "events", "order_filled", "trades", "ctf_events")
    assert all(freshness[t]["fresh"] for t in tables)


def test_a_failing_source_fails_the_run_with_advice_and_no_key(
    tmp_path: Path, live_env: PolymarketServers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYMKT_ORDER_FILLED_SOURCE", "rpc")
    secret_url = f"{live_env.rpc.base_url}/v2/{RPC_KEY}?k={RPC_KEY}"
    monkeypatch.setenv("POLYMKT_POLYGON_RPC_URL", secret_url)
    live_env.rpc.fail_next(*([500] * 12))
    resources = {"polymkt": PolymktResource(data_dir=str(tmp_path / "data"))}
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [raw_order_filled], instance=instance, resources=resources,
            tags={"polymkt/ingest": "live", **_range_tags(_days(1))}, raise_on_error=False,
        )  # fmt: skip
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure)
        message = str(failure.event_specific_data.error)  # type: ignore[union-attr]
        log_text = _event_log_text(instance, result.run_id)
    assert "rpc:" in message and "cursor: eth_blockNumber" in message
    assert "POLYMKT_POLYGON_RPC_URL" in message
    assert RPC_KEY not in message and RPC_KEY not in log_text


def test_offline_runs_never_touch_the_network(
    data_dir: Path, live_env: PolymarketServers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even with POLYMKT_INGEST_MODE=live, a run tagged csv (the pipeline) reads files only."""
    monkeypatch.setenv("POLYMKT_INGEST_MODE", "live")
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [raw_markets], instance=instance,
            resources={"polymkt": PolymktResource(data_dir=str(data_dir))},
            tags={"polymkt/ingest": "csv"},
        )  # fmt: skip
    assert result.success and not live_env.gamma.requests


# ---- sensors ---------------------------------------------------------------------------


def _tick(sensor: dg.SensorDefinition, instance: dg.DagsterInstance, cursor: str | None,
          data_dir: Path) -> dg.SensorResult:  # fmt: skip
    from polymkt_dagster.definitions import defs

    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"polymkt": PolymktResource(data_dir=str(data_dir))},
        definitions=defs,
    )
    return sensor.evaluate_tick(context)


def _add_run(instance: dg.DagsterInstance, sensor_name: str, status: DagsterRunStatus) -> str:
    run = DagsterRun(job_name="__ASSET_JOB", status=status,
                     tags={sensors.SENSOR_TAG: sensor_name})  # fmt: skip
    instance.add_run(run)
    return run.run_id


def _run_request(instance: dg.DagsterInstance, request: dg.RunRequest, data_dir: Path,
                 assets: list) -> dg.ExecuteInProcessResult:  # fmt: skip
    return dg.materialize(
        assets,
        instance=instance,
        resources={"polymkt": PolymktResource(data_dir=str(data_dir))},
        tags=dict(request.tags),
        raise_on_error=False,
    )


def test_fills_sensor_requests_runs_and_advances_only_after_success(
    tmp_path: Path, live_env: PolymarketServers
) -> None:
    data_dir = tmp_path / "data"
    lake = Lake(data_dir / "parquet")
    with dg.instance_for_test() as instance:
        first = _tick(sensors.order_fills_sensor, instance, None, data_dir)
        (request,) = first.run_requests
        assert set(request.asset_selection) == {a.key for a in SENSOR_ASSETS}
        assert request.tags["polymkt/ingest"] == "live"
        assert request.tags[ASSET_PARTITION_RANGE_END_TAG] == datetime.now(UTC).date().isoformat()
        assert json.loads(first.cursor)["position"] is None

        _add_run(instance, sensors.FILLS_SENSOR, DagsterRunStatus.STARTED)
        busy = _tick(sensors.order_fills_sensor, instance, first.cursor, data_dir)
        assert not busy.run_requests and "still started" in busy.skip_message
        instance.wipe()

        # A failed run: the cursor keeps its watermark and a new run is requested.
        live_env.goldsky.fail_next(400)  # a permanent failure: the run fails at once
        failed = _run_request(instance, request, data_dir, SENSOR_ASSETS)
        assert not failed.success
        after_failure = _tick(sensors.order_fills_sensor, instance, first.cursor, data_dir)
        assert after_failure.run_requests
        assert json.loads(after_failure.cursor)["position"] is None

        ok = _run_request(instance, after_failure.run_requests[0], data_dir, SENSOR_ASSETS)
        assert ok.success
        run_days = [date.fromisoformat(request.tags[ASSET_PARTITION_RANGE_START_TAG]),
                    date.fromisoformat(request.tags[ASSET_PARTITION_RANGE_END_TAG])]  # fmt: skip
        assert set(_ids(lake)) == _expected(live_env, run_days)
        assert set(_ctf_ids(lake)) == _expected_ctf(live_env, run_days)
        quiet = _tick(sensors.order_fills_sensor, instance, after_failure.cursor, data_dir)
        cursor = json.loads(quiet.cursor)
        assert not quiet.run_requests and "no new fills" in quiet.skip_message
        state_end = fills_state(lake, "goldsky").load()["coverage"][-1][1]
        assert cursor["position"] == state_end and cursor["synced_until"]
        assert cursor["ctf_synced_until"]

        live_env.rpc.latest_block += 50  # only the chain moves: the CTF events are behind
        ctf_only = _tick(sensors.order_fills_sensor, instance, quiet.cursor, data_dir)
        assert len(ctf_only.run_requests) == 1
        live_env.rpc.latest_block -= 50

        live_env.goldsky.head_timestamp += 5_000  # the source moves on
        again = _tick(sensors.order_fills_sensor, instance, quiet.cursor, data_dir)
        assert len(again.run_requests) == 1


def test_markets_sensor_is_hourly_and_skips_while_fresh(
    tmp_path: Path, live_env: PolymarketServers
) -> None:
    data_dir = tmp_path / "data"
    assert sensors.markets_events_sensor.minimum_interval_seconds == 3600
    assert sensors.order_fills_sensor.minimum_interval_seconds == 600
    with dg.instance_for_test() as instance:
        first = _tick(sensors.markets_events_sensor, instance, None, data_dir)
        (request,) = first.run_requests
        assert set(request.asset_selection) == {raw_markets.key, raw_events.key}
        result = _run_request(instance, request, data_dir, [raw_markets, raw_events])
        assert result.success and live_env.gamma.requests
        fresh = _tick(sensors.markets_events_sensor, instance, first.cursor, data_dir)
        assert not fresh.run_requests and "less than 55 minutes ago" in fresh.skip_message
        assert json.loads(fresh.cursor)["last_success"]


def test_sensors_start_running_only_in_live_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYMKT_INGEST_MODE", "live")
    assert sensors._default_status() == dg.DefaultSensorStatus.RUNNING
    monkeypatch.setenv("POLYMKT_INGEST_MODE", "off")
    assert sensors._default_status() == dg.DefaultSensorStatus.STOPPED


# ---- processes -------------------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYMKT_")}
    env.update(extra)
    return env


@pytest.mark.slow
def test_dagster_cli_live_range_backfill(tmp_path: Path, live_env: PolymarketServers) -> None:
    data_dir, home = tmp_path / "data", tmp_path / "home"
    home.mkdir()
    days = _days(4)
    env = _env(
        **{
            **live_env.env("rpc"),
            "POLYMKT_POLYGON_RPC_URL": f"{live_env.rpc.base_url}/?apikey={RPC_KEY}",
            "POLYMKT_INGEST_MODE": "live",
            "POLYMKT_DATA_DIR": str(data_dir),
            "DAGSTER_HOME": str(home),
        }
    )
    completed = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "asset", "materialize",
         "-m", "polymkt_dagster.definitions", "--select", "raw/order_filled,raw/trades",
         "--partition-range", f"{days[0]}...{days[-1]}"],
        env=env, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert RPC_KEY not in completed.stdout + completed.stderr
    lake = Lake(data_dir / "parquet")
    ids = _ids(lake)
    assert len(ids) == len(set(ids)) and set(ids) == _expected(live_env, days)
    with connect() as con:
        versions = con.execute(
            f"SELECT DISTINCT source FROM {lake.scan_sql(ORDER_FILLED)}"
        ).fetchall()
    assert versions == [("rpc",)]


@pytest.mark.slow
def test_a_sync_killed_mid_run_resumes_with_every_fill_exactly_once(
    tmp_path: Path, live_env: PolymarketServers
) -> None:
    data_dir = tmp_path / "data"
    lake = Lake(data_dir / "parquet")
    start_day = date.fromtimestamp(int(live_env.store.timestamp.min()))
    end_day = datetime.now(UTC).date()
    live_env.goldsky.delay_s = 0.15  # slow enough to be caught between batches or merges
    process = subprocess.Popen(
        [sys.executable, "-m", "polymkt_dagster.cli", "--data-dir", str(data_dir), "sync",
         "fills", "--start", start_day.isoformat(), "--end", end_day.isoformat(),
         "--batch-rows", "200", "--no-trades", "--json"],
        env=_env(**live_env.env("goldsky")), cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    state = fills_state(lake, "goldsky")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (state.path.exists() and len(_ids(lake)) > 2000):
        time.sleep(0.1)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    landed = _ids(lake)
    assert 0 < len(landed) < len(live_env.store), "the kill should land mid-sync"
    assert len(landed) == len(set(landed))
    live_env.goldsky.delay_s = 0.0
    window = window_for_days([start_day, end_day])
    report = sync_order_fills(lake, GoldskySource(live_env.goldsky.base_url), *window)
    assert report.complete
    ids = _ids(lake)
    assert len(ids) == len(set(ids)) == len(live_env.store)
    assert set(ids) == set(live_env.store.ids)


def test_sync_verbs_print_one_json_document(
    tmp_path: Path, live_env: PolymarketServers, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from polymkt_dagster.cli.main import main

    data_dir = tmp_path / "data"
    runner = CliRunner()

    def run(*args: str) -> dict:
        result = runner.invoke(main, ["--data-dir", str(data_dir), *args])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    markets = run("sync", "markets", "--json")
    assert markets["markets"]["rows_in_table"] > 0 and markets["events"]["rows_in_table"] > 0
    day = _days(2)[0].isoformat()
    dry = run("sync", "fills", "--start", day, "--dry-run", "--json")
    assert dry["fills"]["rows_fetched"] > 0 and dry["fills"]["rows_new"] == 0
    assert not (data_dir / "parquet" / "raw" / "polymarket" / "order_filled").exists()
    status = run("sync", "status", "--json")
    assert status == {}
    ctf_days = _days(2)
    ctf = run("sync", "ctf", "--start", ctf_days[0].isoformat(), "--end",
              ctf_days[1].isoformat(), "--json")  # fmt: skip
    assert ctf["ctf_events"]["rows_new"] == len(_expected_ctf(live_env, ctf_days)) > 0
    assert run("sync", "status", "--json")["ctf_events_rpc"]["unit"] == "block"
    # Catch-up of a gap: one Dagster range run over daily partitions, in DAGSTER_HOME.
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    days = _days(3)
    backfill = run("sync", "backfill", "--start", days[0].isoformat(), "--end",
                   days[-1].isoformat(), "--json")  # fmt: skip
    assert backfill["success"] and (tmp_path / "home" / "dagster.yaml").is_file()
    assert set(_ids(Lake(data_dir / "parquet"))) == _expected(live_env, days)
    assert set(_ctf_ids(Lake(data_dir / "parquet"))) == _expected_ctf(live_env, days)
    assert run("sync", "status", "--json")["goldsky"]["unit"] == "second"
    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        run_record = instance.get_run_by_id(backfill["run_id"])
        assert run_record.tags["polymkt/ingest"] == "live"
