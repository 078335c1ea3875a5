"""The wallet assets and serving/clickhouse through Dagster, then the CLI over the result."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from click.testing import CliRunner
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from polymkt_dagster.cli.main import main
from polymkt_dagster.defs.ingest.assets import (
    raw_ctf_events,
    raw_events,
    raw_markets,
    raw_order_filled,
    raw_trades,
)
from polymkt_dagster.defs.serving.clickhouse import serving_clickhouse
from polymkt_dagster.defs.shared.automation import analytics_automation
from polymkt_dagster.defs.shared.resources import ClickHouseResource, PolymktResource
from polymkt_dagster.defs.wallets.assets import (
    metric_rollups,
    wallet_alerts,
    wallet_pnl_snapshots,
    wallet_positions,
)
from polymkt_dagster.lib.serving import clickhouse as ch
from polymkt_dagster_tests.conftest import copy_sample
from polymkt_dagster_tests.wallet_helpers import (
    WebhookReceiver,
    chdb_dsn,
    fresh_database,
    sharp_wallets,
)

FIRST, LAST = "2024-03-01", "2024-03-30"
ASSETS = [
    raw_markets, raw_events, raw_order_filled, raw_trades, raw_ctf_events, wallet_positions,
    wallet_pnl_snapshots, wallet_alerts, metric_rollups, serving_clickhouse,
]  # fmt: skip


def _metadata(result: dg.ExecuteInProcessResult, key: str) -> dict[str, Any]:
    for event in result.get_asset_materialization_events():
        if event.asset_key and event.asset_key.to_user_string() == key:
            return {k: v.value for k, v in event.materialization.metadata.items()}
    raise AssertionError(f"no materialization of {key}")


@pytest.fixture(scope="module")
def materialized(
    sample_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    data_dir = copy_sample(sample_dir, tmp_path_factory.mktemp("wallet_assets") / "data")
    sharps = sorted(sharp_wallets())
    (data_dir / "watchlists.yaml").write_text(
        "watchlists:\n  - name: sharps\n    alert_min_usd: 50\n    cooldown_minutes: 0\n"
        "    wallets:\n"
        + "".join(f"      - address: '{w}'\n        label: sharp\n" for w in sharps),
        "utf-8",
    )
    receiver = WebhookReceiver()
    database = fresh_database()
    mp = pytest.MonkeyPatch()
    mp.setenv("POLYMKT_ALERTS_WEBHOOK_URL", receiver.url)
    mp.delenv("POLYMKT_WATCHLISTS_FILE", raising=False)
    try:
        with dg.instance_for_test() as instance:
            result = dg.materialize(
                ASSETS,
                instance=instance,
                resources={
                    "polymkt": PolymktResource(data_dir=str(data_dir)),
                    "clickhouse": ClickHouseResource(
                        enabled=True, dsn=chdb_dsn(), database=database
                    ),
                },
                tags={ASSET_PARTITION_RANGE_START_TAG: FIRST, ASSET_PARTITION_RANGE_END_TAG: LAST},
            )
            assert result.success
            yield {
                "result": result,
                "data_dir": data_dir,
                "database": database,
                "webhook": receiver,
                "sharps": sharps,
            }
    finally:
        mp.undo()
        receiver.stop()


def test_assets_materialize_with_readable_metadata(materialized: dict[str, Any]) -> None:
    result = materialized["result"]
    positions = _metadata(result, "wallets/positions")
    assert positions["dagster/row_count"] > 100 and positions["wallets"] > 10
    assert "| wallet |" in positions["top_wallets_by_realized_pnl"]
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["shares_non_negative"].passed
    # the oversell check measures a share of sell proceeds against its threshold and
    # names the worst wallets; the sample's market makers fund their sells with splits, so
    # with its position events the check passes. The little that is left comes from this
    # 30-day window: sells funded by buys or splits before its first day.
    oversells = checks["oversells_reported"]
    share = oversells.metadata["oversold_share"].value
    assert oversells.metadata["threshold"].value == 0.05
    assert 0.0 < share <= 0.05 and oversells.passed
    assert share == pytest.approx(
        positions["oversold_proceeds"] / oversells.metadata["sell_proceeds"].value
    )
    worst = oversells.metadata["worst_wallets"].value
    assert "| wallet |" in worst

    snapshots = _metadata(result, "wallets/pnl_snapshots")
    assert snapshots["watchlists"] == "sharps" and snapshots["watched_wallets"] == 5
    charts = [
        (event.partition, event.materialization.metadata["pnl_over_time"].value)
        for event in result.get_asset_materialization_events()
        if event.asset_key.to_user_string() == "wallets/pnl_snapshots"
        and "pnl_over_time" in event.materialization.metadata
    ]
    assert len(charts) == 1 and charts[0][0] == LAST
    assert charts[0][1].startswith("![P&L over time](data:image/png;base64,")
    assert snapshots["run_row_count"] == 30 * 288 * 5  # 30 days, every 5 min, 5 wallets

    alerts = _metadata(result, "wallets/alerts")
    assert alerts["dagster/row_count"] == alerts["candidates"] > 0
    assert alerts["delivered"] == alerts["dagster/row_count"]
    assert "secret-token" not in alerts["webhook"]
    assert len(materialized["webhook"].received) == alerts["delivered"]

    for key in ("wallets/metrics_1m", "wallets/metrics_1d", "analytics/market_metrics_1h"):
        meta = _metadata(result, key)
        assert meta["run_row_count"] > 0 and meta["run_days"] == 30

    served = _metadata(result, "serving/clickhouse")
    assert served["enabled"] is True and served["rows_published"] > 0
    assert "wallet_metrics_1m" in served["tables"]
    client = ch.get_client(chdb_dsn())
    counts = ch.table_counts(client, materialized["database"])
    assert counts["wallet_pnl_snapshots"] == snapshots["run_row_count"]
    assert counts["wallet_alerts"] == alerts["dagster/row_count"]


def test_clickhouse_disabled_skips_cleanly(materialized: dict[str, Any]) -> None:
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [serving_clickhouse],
            instance=instance,
            resources={
                "polymkt": PolymktResource(data_dir=str(materialized["data_dir"])),
                "clickhouse": ClickHouseResource(enabled=False, dsn="chdb:///nowhere"),
            },
        )
    assert result.success
    meta = _metadata(result, "serving/clickhouse")
    assert meta["enabled"] is False and meta["dagster/row_count"] == 0


def test_analytics_mode_decides_automation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYMKT_ANALYTICS_MODE", "off")
    assert analytics_automation() is None
    monkeypatch.setenv("POLYMKT_ANALYTICS_MODE", "on")
    assert analytics_automation() is not None


def _cli(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    runner = CliRunner()
    result = runner.invoke(main, ["--data-dir", str(data_dir), *args], env=env or {})
    assert result.exit_code == 0, (result.output, result.stderr if result.stderr_bytes else "")
    return json.loads(result.stdout)


def test_cli_over_the_materialized_lake(materialized: dict[str, Any]) -> None:
    data_dir: Path = materialized["data_dir"]
    env = {"POLYMKT_OPENAI_API_KEY": "", "POLYMKT_CLICKHOUSE_ENABLED": "false"}
    alerts = _cli(data_dir, "alerts", "--json")
    assert alerts["count"] > 0 and {a["wallet"] for a in alerts["alerts"]} <= set(
        materialized["sharps"]
    )
    later = _cli(data_dir, "alerts", "--since", "2024-03-15", "--json")
    assert 0 < later["count"] < alerts["count"]
    assert all(a["alerted_at"] >= "2024-03-15" for a in later["alerts"])
    sharp = alerts["alerts"][0]["wallet"]  # a sharp wallet that traded in the window

    listed = _cli(data_dir, "watchlists", "list", "--json")
    assert [w["name"] for w in listed["watchlists"]] == ["sharps"]
    made = _cli(data_dir, "watchlists", "create", "mine", sharp, "--alert-min-usd", "10", "--json")
    assert made["wallets"][0]["address"] == sharp and made["alert_min_usd"] == 10
    added = _cli(data_dir, "watchlists", "add", "mine", "0x" + "ab" * 20, "--label", "x", "--json")
    assert len(added["wallets"]) == 2
    removed = _cli(data_dir, "watchlists", "remove", "mine", "0x" + "ab" * 20, "--json")
    assert len(removed["wallets"]) == 1
    assert _cli(data_dir, "watchlists", "delete", "mine", "--json") == {"deleted": "mine"}

    positions = _cli(data_dir, "wallet", sharp, "positions", "--all", "--json")
    assert positions["wallet"] == sharp and positions["totals"]["fills"] > 0
    assert all(p["shares"] >= 0 for p in positions["positions"])
    pnl = _cli(data_dir, "wallet", sharp, "pnl", "--json")
    assert pnl["totals"]["total_pnl"] == pytest.approx(
        sum(m["total_pnl"] for m in pnl["markets"]), abs=1e-6
    )
    trades = _cli(data_dir, "wallet", sharp, "trades", "--limit", "3", "--json")
    assert 0 < trades["count"] <= 3

    sql = _cli(
        data_dir, "sql", "SELECT wallet, sum(trades) AS n FROM wallet_metrics_1d GROUP BY wallet",
        "--max-rows", "5", "--json", env=env,
    )  # fmt: skip
    assert sql["engine"] == "duckdb" and len(sql["rows"]) == 5 and "LIMIT 5" in sql["sql"]
    answer = _cli(data_dir, "ask", "which wallets made the most?", "--json", env=env)
    assert answer["plan"]["source"] == "rules" and answer["rows"]

    refused = CliRunner().invoke(
        main, ["--data-dir", str(data_dir), "sql", "DROP TABLE wallet_metrics_1d"], env=env
    )
    assert refused.exit_code == 2 and "only SELECT" in refused.output

    status = _cli(data_dir, "status", "--json", env=env)
    assert status["lake_bytes"] > 0 and status["sync"]["trades"]["last_sync"] == "never"
    assert status["clickhouse"] == {"enabled": False}
