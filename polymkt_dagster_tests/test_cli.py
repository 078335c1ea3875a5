"""The command-line entry points, run as a user runs them (subprocesses, real files)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from polymkt_dagster.cli.main import main
from polymkt_dagster.lib.core.lake import Lake

REPO_ROOT = Path(__file__).resolve().parent.parent


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYMKT_")}
    env.update(extra)
    return env


# Bounded by work, not by a guess at the machine's speed: the same run takes ~2 min on a
# quiet machine and much longer on a shared one, so the bound is generous (issue 15).
PIPELINE_TIMEOUT_S = 3600


@pytest.mark.slow
@pytest.mark.timeout(PIPELINE_TIMEOUT_S + 300)
def test_pipeline_on_the_bundled_sample_fills_the_instance(tmp_path: Path) -> None:
    data_dir, home = tmp_path / "data", tmp_path / "home"
    completed = subprocess.run(
        [sys.executable, "-m", "polymkt_dagster.cli", "pipeline"],
        env=_env(POLYMKT_DATA_DIR=str(data_dir), DAGSTER_HOME=str(home)),
        capture_output=True,
        text=True,
        timeout=PIPELINE_TIMEOUT_S,
        cwd=REPO_ROOT,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "bundled sample" in completed.stderr
    assert (home / "dagster.yaml").is_file()

    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        for key in (["raw", "markets"], ["raw", "trades"], ["serving", "duckdb_catalog"]):
            assert instance.get_latest_materialization_event(dg.AssetKey(key)) is not None
        assert len(instance.get_materialized_partitions(dg.AssetKey(["raw", "trades"]))) > 100
        # Runs of named jobs (re-executable from the UI), not __ephemeral_asset_job__.
        assert {r.job_name for r in instance.get_runs()} == {
            "main",
            "signals_favorites",
            "backtest",
        }
        # ... recorded under the code location, which is what "Re-execute" looks up.
        assert {r.remote_job_origin.location_name for r in instance.get_runs()} == {"polymkt"}
        # Every day partition tells its own rows; the run's total is labelled run_row_count.
        fills = instance.get_latest_materialization_event(dg.AssetKey(["raw", "order_filled"]))
        metadata = fills.asset_materialization.metadata
        assert 0 < metadata["dagster/row_count"].value < metadata["run_row_count"].value

    status = subprocess.run(
        [sys.executable, "-m", "polymkt_dagster.cli", "status", "--json"],
        env=_env(POLYMKT_DATA_DIR=str(data_dir)),
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
    )
    document = json.loads(status.stdout)
    assert document["tables"]["trades"]["files"] > 100


@pytest.mark.slow
@pytest.mark.timeout(PIPELINE_TIMEOUT_S)
def test_dagster_cli_range_backfill_is_one_run(tmp_path: Path, sample_dir: Path) -> None:
    data_dir, home = tmp_path / "data", tmp_path / "home"
    data_dir.mkdir()
    for name in ("markets.csv", "markets.json", "orderFilled.csv"):
        (data_dir / name).write_bytes((sample_dir / name).read_bytes())
    env = _env(POLYMKT_DATA_DIR=str(data_dir), DAGSTER_HOME=str(home))
    home.mkdir()
    base = ["dagster", "asset", "materialize", "-m", "polymkt_dagster.definitions"]
    bin_dir = Path(sys.executable).parent
    subprocess.run(
        [str(bin_dir / base[0]), *base[1:], "--select", "raw/markets"],
        env=env, check=True, capture_output=True, timeout=1200, cwd=REPO_ROOT,
    )  # fmt: skip
    completed = subprocess.run(
        [
            str(bin_dir / base[0]), *base[1:],
            "--select", "raw/order_filled,raw/trades",
            "--partition-range", "2024-03-01...2024-03-07",
        ],
        env=env, capture_output=True, text=True, timeout=1200, cwd=REPO_ROOT,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    lake = Lake(data_dir / "parquet")
    days = lake.partition_days("trades")
    assert days and all("2024-03-01" <= d.isoformat() <= "2024-03-07" for d in days)
    assert lake.partition_days("order_filled") == days


def test_trades_json_is_one_document(sample_lake: Lake) -> None:
    data_dir = sample_lake.root.parent
    runner = CliRunner()
    markets = json.loads(
        runner.invoke(
            main, ["--data-dir", str(data_dir), "status", "--json"], catch_exceptions=False
        ).output
    )
    assert markets["tables"]["trades"]["files"] > 0
    from polymkt_dagster.lib.core.duck import connect
    from polymkt_dagster.lib.core.schemas import TRADES

    with connect() as con:
        market = con.execute(
            f"SELECT market_id FROM {sample_lake.scan_sql(TRADES)} GROUP BY 1 "
            "ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()[0]
    result = runner.invoke(
        main,
        ["--data-dir", str(data_dir), "trades", "--market", market, "--limit", "5", "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document["count"] == 5
    assert {t["market_id"] for t in document["trades"]} == {market}


def test_trades_bad_time_is_a_clear_error(sample_lake: Lake) -> None:
    result = CliRunner().invoke(
        main,
        ["--data-dir", str(sample_lake.root.parent), "trades", "--market", "1", "--start", "soon"],
    )
    assert result.exit_code == 2
    assert "cannot read 'soon' as a time" in result.output
    assert "Traceback" not in result.output


def test_sample_command_writes_the_poly_data_layout(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["sample", "--out", str(tmp_path), "--scale", "0.2"])
    assert result.exit_code == 0, result.output
    header = (tmp_path / "orderFilled.csv").read_text().splitlines()[0]
    assert header.startswith("timestamp,maker,makerAssetId")
    events = (tmp_path / "ctfEvents.csv").read_text().splitlines()
    assert events[0].startswith("timestamp,block_number,log_index,transaction_hash")
    assert f"{len(events) - 1:,} CTF position events" in result.output
