"""The main job on poly_data's own layout, kill -9 at three moments, and the run lock.

The data dir holds only ``markets.csv`` and ``orderFilled.csv`` (what real poly_data dumps
are: no market resolved, no end date, every position stays open), the layout that ran the
P&L snapshots out of memory. `polymkt pipeline` is killed with SIGKILL during the fill
import, the trade derivation and the rollups, at a moment chosen by work done (the n-th
file about to be renamed into the lake, ``lib/core/crashpoints.py``), never by a clock; a
re-run must then give a clean run's row counts with every Parquet file readable, no
temporary file left and the killed runs marked failed in the Dagster instance.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from polymkt_dagster.cli.runs import RUN_TAG
from polymkt_dagster.lib.core.crashpoints import CRASH_ENV
from polymkt_dagster.lib.core.duck import TEMP_ROOT
from polymkt_dagster.lib.core.housekeeping import LOCK_FILE

REPO_ROOT = Path(__file__).resolve().parent.parent
CSV_ONLY = ("markets.csv", "orderFilled.csv")
# generous: a bound for a machine shared with other jobs, not a performance claim
PIPELINE_TIMEOUT_S = 3600
KILL_POINTS = {
    "fill import": "/raw/polymarket/order_filled/:20",
    "trade derivation": "/raw/polymarket/trades/:20",
    "rollups": "/analytics/wallets/metrics_1h/:5",
}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYMKT_")}
    env.update(extra)
    return env


def _csv_only(sample_dir: Path, data_dir: Path, last_days: int | None = None) -> Path:
    """The sample's ``markets.csv`` and ``orderFilled.csv`` alone; with ``last_days`` only
    the fills of the sample's last days (fewer daily partitions: a shorter run)."""
    data_dir.mkdir(parents=True)
    for name in CSV_ONLY:
        shutil.copyfile(sample_dir / name, data_dir / name)
    if last_days is not None:
        header, *rows = (sample_dir / "orderFilled.csv").read_text().splitlines()
        newest = max(int(row.split(",", 1)[0]) for row in rows)
        since = newest - last_days * 86_400
        kept = [row for row in rows if int(row.split(",", 1)[0]) > since]
        (data_dir / "orderFilled.csv").write_text("\n".join([header, *kept]) + "\n")
    return data_dir


def _pipeline(data_dir: Path, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "polymkt_dagster.cli", "pipeline", "--no-sample",
         "--data-dir", str(data_dir), "--dagster-home", str(home)],
        env=_env(**env), capture_output=True, text=True, timeout=PIPELINE_TIMEOUT_S,
        cwd=REPO_ROOT,
    )  # fmt: skip


def _table_of(path: Path, root: Path) -> str:
    parts = path.relative_to(root).parts
    for i, part in enumerate(parts):
        if part.startswith("year="):
            return "/".join(parts[:i])
    return "/".join(parts)


def _row_counts(data_dir: Path) -> dict[str, int]:
    """Rows per table of the lake, reading every Parquet file whole (so each is readable)."""
    root = data_dir / "parquet"
    counts: dict[str, int] = {}
    for path in sorted(root.rglob("*.parquet")):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        table = _table_of(path, root)
        counts[table] = counts.get(table, 0) + pq.read_table(path).num_rows
    return counts


def _leftovers(data_dir: Path) -> list[str]:
    temp = [str(p) for p in data_dir.rglob("*.tmp")]
    spill = data_dir / TEMP_ROOT / "duckdb-spill"
    return temp + ([str(p) for p in spill.iterdir()] if spill.is_dir() else [])


@pytest.mark.slow
@pytest.mark.timeout(3 * PIPELINE_TIMEOUT_S)
def test_kill_9_at_three_moments_then_a_rerun_equals_a_clean_run(
    tmp_path: Path, sample_dir: Path
) -> None:
    # the sample's last 30 days: 30 daily partitions, enough for every kill point
    reference = _csv_only(sample_dir, tmp_path / "clean", last_days=30)
    clean = _pipeline(reference, tmp_path / "clean_home")
    assert clean.returncode == 0, clean.stderr[-4000:]
    clean_run = _row_counts(reference)
    data_dir, home = _csv_only(sample_dir, tmp_path / "data", last_days=30), tmp_path / "home"
    for moment, point in KILL_POINTS.items():
        killed = _pipeline(data_dir, home, **{CRASH_ENV: point})
        assert killed.returncode == -signal.SIGKILL, (moment, killed.stderr[-3000:])
        # killed with a complete temporary file not yet renamed into the lake
        assert any(p.endswith(".tmp") for p in _leftovers(data_dir)), moment

    rerun = _pipeline(data_dir, home)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert "left by an interrupted run" in rerun.stderr
    # each run marks the run of the one killed before it: the rerun marks the last one
    assert "Marked 1 run(s) of a killed polymkt process failed" in " ".join(rerun.stderr.split())
    assert _row_counts(data_dir) == clean_run
    assert _leftovers(data_dir) == []

    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = [r for r in instance.get_runs() if RUN_TAG in r.tags]
        statuses = sorted(r.status.value for r in runs)
        assert statuses.count("FAILURE") == 3
        assert "STARTED" not in statuses and "STARTING" not in statuses
        failed = [r for r in runs if r.status == dg.DagsterRunStatus.FAILURE]
        for run in failed:
            records = instance.get_records_for_run(run.run_id).records
            messages = " ".join(r.event_log_entry.message or "" for r in records)
            assert "ended without finishing it (killed or crashed)" in messages


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> dict[str, int]:
    """The main job on the CSV-only layout, uninterrupted: the reference row counts."""
    base = tmp_path_factory.mktemp("clean_csv_only")
    data_dir = _csv_only(sample_dir, base / "data")
    completed = _pipeline(data_dir, base / "home")
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert _leftovers(data_dir) == []
    return _row_counts(data_dir)


@pytest.mark.slow
@pytest.mark.timeout(PIPELINE_TIMEOUT_S + 600)
def test_main_job_runs_on_poly_data_layout(clean_run: dict[str, int]) -> None:
    # no market resolves and none has an end date: every watched position stays open
    assert clean_run["analytics/wallets/pnl_snapshots"] > 0
    assert clean_run["raw/polymarket/order_filled"] >= clean_run["raw/polymarket/trades"] > 0
    assert clean_run["analytics/wallets/metrics_1h"] > 0


@pytest.mark.slow
@pytest.mark.timeout(PIPELINE_TIMEOUT_S + 600)
def test_a_second_writer_is_refused_naming_the_lock(tmp_path: Path, sample_dir: Path) -> None:
    data_dir, home = _csv_only(sample_dir, tmp_path / "data"), tmp_path / "home"
    lock = data_dir / LOCK_FILE
    first = subprocess.Popen(
        [sys.executable, "-m", "polymkt_dagster.cli", "pipeline", "--no-sample",
         "--data-dir", str(data_dir), "--dagster-home", str(home)],
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO_ROOT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        holder: dict = {}
        while not holder and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.2)
            try:
                holder = json.loads(lock.read_text() or "{}")
            except (OSError, ValueError):
                holder = {}
        assert holder.get("pid") == first.pid and holder.get("command") == "pipeline"
        for args in (
            ["pipeline", "--no-sample"],
            ["bootstrap"],
            ["sync", "fills", "--start", "2024-03-01"],
            ["pipeline", "--no-sample", "--wait", "1"],
        ):
            second = subprocess.run(
                [sys.executable, "-m", "polymkt_dagster.cli", *args,
                 "--data-dir", str(data_dir)],
                env=_env(DAGSTER_HOME=str(tmp_path / "home2")), capture_output=True,
                text=True, timeout=600, cwd=REPO_ROOT,
            )  # fmt: skip
            text = " ".join(second.stderr.split())
            assert second.returncode == 1, (args, second.stderr[-2000:])
            assert str(lock) in text and f"pid {first.pid}" in text, text
            assert "polymkt pipeline" in text and "Traceback" not in text
        # a reader during the run sees whole files only (written aside, renamed into place)
        for path in (data_dir / "parquet").rglob("*.parquet"):
            if not path.name.startswith("."):
                pq.read_metadata(path)
    finally:
        first.kill()
        first.wait(timeout=60)
    # the OS released the killed holder's lock: the next writer gets it at once
    bootstrap = subprocess.run(
        [sys.executable, "-m", "polymkt_dagster.cli", "--data-dir", str(data_dir), "bootstrap"],
        env=_env(), capture_output=True, text=True, timeout=PIPELINE_TIMEOUT_S, cwd=REPO_ROOT,
    )  # fmt: skip
    assert bootstrap.returncode == 0, bootstrap.stderr[-3000:]
    assert _leftovers(data_dir) == []


@pytest.mark.slow
@pytest.mark.timeout(PIPELINE_TIMEOUT_S + 300)
@pytest.mark.parametrize("fills_file", ["absent", "header only"])
def test_markets_without_fills_give_empty_results(
    tmp_path: Path, sample_dir: Path, fills_file: str
) -> None:
    data_dir, home = tmp_path / "data", tmp_path / "home"
    data_dir.mkdir()
    for name in ("markets.csv", "markets.json", "events.json"):
        shutil.copyfile(sample_dir / name, data_dir / name)
    if fills_file == "header only":
        header = (sample_dir / "orderFilled.csv").read_text().splitlines()[0]
        (data_dir / "orderFilled.csv").write_text(header + "\n")
    completed = _pipeline(data_dir, home)
    assert completed.returncode == 0, completed.stderr[-4000:]
    with dg.DagsterInstance.from_config(str(home)) as instance:

        def rows(*key: str) -> int:
            event = instance.get_latest_materialization_event(dg.AssetKey(list(key)))
            assert event is not None and event.asset_materialization is not None, key
            return int(event.asset_materialization.metadata["dagster/row_count"].value)

        assert rows("raw", "markets") > 0
        assert rows("wallets", "positions") == 0
        assert rows("backtest", "results") == 0  # every group skipped: nothing priced
    assert _leftovers(data_dir) == []
