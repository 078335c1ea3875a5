"""`polymkt datasets` and `polymkt backtest`: in-process through click (fast), and the
backtest run as a user runs it (a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from click.testing import CliRunner

from polymkt_dagster.cli.main import main
from polymkt_dagster_tests.lib.research.test_agents import chat_route, nulls
from polymkt_dagster_tests.research_data import build_research_data
from polymkt_local.openai_compat import (
    OpenAICompatServer,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> dict[str, str]:
    root = tmp_path_factory.mktemp("research_cli")
    data = root / "data"
    build_research_data(sample_dir, data)
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYMKT_")}
    env.update(
        POLYMKT_DATA_DIR=str(data),
        DAGSTER_HOME=str(root / "dagster_home"),
        PYTHONWARNINGS="ignore",
    )
    return env


@dataclass
class Completed:
    stdout: str
    stderr: str


def polymkt(
    env: dict[str, str], *args: str, code: int = 0, subprocess_run: bool = False
) -> Completed:
    if subprocess_run:
        completed = subprocess.run(
            [sys.executable, "-m", "polymkt_dagster.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert completed.returncode == code, completed.stderr
        return Completed(completed.stdout, completed.stderr)
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert result.exit_code == code, result.stderr
    return Completed(result.stdout, result.stderr)


def document(env: dict[str, str], *args: str, subprocess_run: bool = False) -> dict[str, Any]:
    completed = polymkt(env, *args, "--json", subprocess_run=subprocess_run)
    return json.loads(completed.stdout)  # exactly one JSON document on stdout


def test_datasets_crud(cli_env: dict[str, str]) -> None:
    created = document(cli_env, "datasets", "create", "elections", "--category", "Elections",
                       "--resolved")  # fmt: skip
    assert created["filters"] == {"categories": ["Elections"], "resolved": True}
    assert created["market_count"] > 50 and created["markets"][0]["status"] == "resolved"

    updated = document(cli_env, "datasets", "update", "elections", "--min-volume", "1000")
    assert updated["filters"]["min_volume"] == 1000
    assert 0 < updated["market_count"] < created["market_count"]
    assert all(m["volume_usd"] >= 1000 for m in updated["markets"])

    shown = document(cli_env, "datasets", "show", "elections", "--limit", "3")
    assert len(shown["markets"]) == 3 and len(shown["market_ids"]) == updated["market_count"]
    listed = document(cli_env, "datasets", "list")
    assert [d["name"] for d in listed["datasets"]] == ["elections"]

    texted = document(cli_env, "datasets", "create", "crypto", "--from-text",
                      "open crypto markets with volume over 100, banana")  # fmt: skip
    assert texted["filters"] == {"categories": ["Crypto"], "closed": False, "min_volume": 100}
    assert texted["interpretation"]["source"] == "rules"
    assert texted["interpretation"]["not_understood"] == ["banana"]

    home = cli_env["DAGSTER_HOME"]
    instance = dg.DagsterInstance.from_config(home)
    assert set(instance.get_dynamic_partitions("datasets")) == {"elections", "crypto"}
    assert document(cli_env, "datasets", "delete", "crypto") == {"deleted": "crypto"}
    assert instance.get_dynamic_partitions("datasets") == ["elections"]

    missing = polymkt(cli_env, "datasets", "show", "nope", "--json", code=2)
    assert missing.stdout == "" and "no dataset named 'nope'" in missing.stderr


def test_backtest_from_a_sentence_prepare_then_run(cli_env: dict[str, str]) -> None:
    polymkt(cli_env, "datasets", "create", "races", "--neg-risk", "--json")
    prepared = document(
        cli_env, "backtest", "create", "--from-text",
        "buy the favorite 14 days out, hold to expiry, priced above 0.5, $50 per trade, "
        "slippage 1 tick, on the races dataset",
    )  # fmt: skip
    backtest_id = prepared["backtest_id"]
    assert prepared["status"] == "prepared" and prepared["metrics"] is None
    assert prepared["config"]["days_before"] == 14 and prepared["config"]["dataset"] == "races"
    assert prepared["interpretation"]["not_understood"] == []
    assert "14 days before" in prepared["description"]

    ran = document(cli_env, "backtest", "run", backtest_id, subprocess_run=True)
    assert ran["status"] == "succeeded" and ran["dagster_run_id"]
    metrics = ran["metrics"]
    assert metrics["trades"] == len(ran["trades"]) > 0
    assert {"total_return", "win_rate", "sharpe", "max_drawdown", "exposure"} <= set(metrics)
    assert all(t["stake"] == 50 and t["observed_price"] >= 0.5 for t in ran["trades"])
    assert Path(ran["files"]["equity.png"]).read_bytes().startswith(b"\x89PNG")

    shown = document(cli_env, "backtest", "show", backtest_id)
    assert shown["metrics"] == metrics and len(shown["equity"]) == metrics["days"] + 1
    listed = document(cli_env, "backtest", "list")
    assert [b["backtest_id"] for b in listed["backtests"]] == [backtest_id]
    instance = dg.DagsterInstance.from_config(cli_env["DAGSTER_HOME"])
    assert instance.get_dynamic_partitions("backtests") == [backtest_id]
    assert instance.get_materialized_partitions(dg.AssetKey(["backtest", "results"])) == {
        backtest_id
    }

    bad = polymkt(cli_env, "backtest", "create", "--min-price", "0.9", "--max-price", "0.2",
                  code=2)  # fmt: skip
    assert "min_price 0.9 is above max_price 0.2" in bad.stderr


def test_backtest_agent_through_openai_from_the_cli(
    cli_env: dict[str, str], openai_server: OpenAICompatServer
) -> None:
    chat_route(
        openai_server,
        lambda body: nulls(
            body["response_format"]["json_schema"]["schema"]["properties"],
            days_before=90,
            take_profit=0.97,
        ),
    )
    env = dict(
        cli_env,
        POLYMKT_OPENAI_API_KEY="sk-cli-secret-0123456789",
        POLYMKT_OPENAI_BASE_URL=openai_server.base_url,
    )
    completed = polymkt(
        env, "backtest", "create", "--from-text", "favorite 90 days out, take profit at 97c",
        "--id", "from-openai", "--json", subprocess_run=True,
    )  # fmt: skip
    prepared = json.loads(completed.stdout)
    assert prepared["interpretation"]["source"] == "openai"
    assert (prepared["config"]["days_before"], prepared["config"]["take_profit"]) == (90, 0.97)
    assert "sk-cli-secret" not in completed.stdout + completed.stderr
