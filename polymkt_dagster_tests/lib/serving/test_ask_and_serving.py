"""`polymkt ask` against a local OpenAI-compatible server, and the ClickHouse serving layer
on embedded ClickHouse (chdb)."""

# ruff: noqa: F811 - pytest fixtures imported from helper modules are parameters here

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

import pyarrow.parquet as pq
import pytest

from polymkt_dagster.lib.core.duck import connect
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.serving import clickhouse as ch
from polymkt_dagster.lib.serving.ask import AskError, ask_openai, ask_rules, extract_sql
from polymkt_dagster.lib.wallets.positions import compute_positions
from polymkt_dagster.lib.wallets.rollups import build_rollups, wallet_table
from polymkt_dagster_tests.wallet_helpers import (  # noqa: F401 - fixtures
    chdb_dsn,
    fresh_database,
    wallet_lake,
)
from polymkt_local.openai_compat import (
    OpenAICompatServer,
)


def chat_route(server: OpenAICompatServer, answers: list[str]) -> list[dict[str, Any]]:
    """Register /v1/chat/completions answering ``answers`` in turn; returns the requests."""
    seen: list[dict[str, Any]] = []

    def handler(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        seen.append(body)
        content = answers[min(len(seen), len(answers)) - 1]
        return 200, {
            "id": f"chatcmpl-{len(seen)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        }

    server.routes["/v1/chat/completions"] = handler
    return seen


GOOD_SQL = (
    "```sql\nSELECT wallet, sum(realized_pnl) AS pnl FROM wallet_metrics_1d "
    "GROUP BY wallet ORDER BY pnl DESC LIMIT 5;\n```"
)


def test_ask_openai_writes_guarded_sql(openai_server: OpenAICompatServer) -> None:
    seen = chat_route(openai_server, [GOOD_SQL])
    plan = ask_openai(
        "which sharp wallets made the most this week?",
        api_key="sk-test-secret",
        base_url=openai_server.base_url,
        model="gpt-test",
        now=datetime(2024, 12, 31, tzinfo=UTC),
    )
    assert plan.source == "openai" and plan.attempts == 1
    assert plan.sql.startswith("SELECT wallet, SUM(realized_pnl) AS pnl FROM wallet_metrics_1d")
    system = seen[0]["messages"][0]["content"]
    assert "wallet_metrics_1d(" in system and "market_metrics_1h(" in system
    assert seen[0]["model"] == "gpt-test"


def test_ask_openai_retries_once_with_the_refusal(openai_server: OpenAICompatServer) -> None:
    seen = chat_route(
        openai_server, ["```sql\nSELECT * FROM system.tables\n```", GOOD_SQL]
    )  # fmt: skip
    plan = ask_openai("top wallets", api_key="k", base_url=openai_server.base_url, model="m")
    assert plan.attempts == 2 and "schema-qualified" in plan.refusals[0]
    assert "was refused" in seen[1]["messages"][-1]["content"]

    chat_route(openai_server, ["DROP TABLE wallet_metrics_1d", "DELETE FROM wallet_alerts"])
    with pytest.raises(AskError, match="refused by the guard"):
        ask_openai("drop it", api_key="k", base_url=openai_server.base_url, model="m")


def test_ask_openai_server_errors_are_clear(openai_server: OpenAICompatServer) -> None:
    chat_route(openai_server, [GOOD_SQL])
    openai_server.fail_next(500, 500, 500, 500)
    with pytest.raises(AskError, match="HTTP 500") as error:
        ask_openai("x", api_key="sk-secret-value", base_url=openai_server.base_url, model="m")
    assert "sk-secret-value" not in str(error.value)


def test_ask_rules_without_a_key() -> None:
    now = datetime(2024, 12, 31, tzinfo=UTC)
    plan = ask_rules("which sharp wallets made the most this week?", now=now)
    assert plan.source == "rules" and "wallet_metrics_1d" in plan.sql
    assert "2024-12-24" in plan.sql and "ORDER BY realized_pnl DESC" in plan.sql
    assert "market_metrics_1d" in ask_rules("top 3 markets by volume", now=now).sql
    assert "LIMIT 3" in ask_rules("top 3 markets by volume", now=now).sql
    with pytest.raises(AskError, match="POLYMKT_OPENAI_API_KEY"):
        ask_rules("what is the meaning of life?")
    assert extract_sql("Here:\n```SQL\nSELECT 1;\n```\nthanks") == "SELECT 1"


# ---- ClickHouse ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served_lake(wallet_lake: Lake) -> Lake:
    with connect() as con:
        build_rollups(con, wallet_lake, wallet_lake.partition_days("trades")[:20])
        compute_positions(
            con, wallet_lake, output=wallet_lake.single_file("analytics/wallets/positions")
        )
    return wallet_lake


def test_publish_is_incremental_and_idempotent(served_lake: Lake) -> None:
    client = ch.get_client(chdb_dsn())
    database = fresh_database()
    now = datetime(2025, 1, 1, tzinfo=UTC)
    first = ch.publish(client, served_lake, database=database, now=now)
    by_table = {t.table: t for t in first.tables}
    wallet_1m = by_table["wallet_metrics_1m"]
    expected = sum(pq.read_metadata(f).num_rows for f in served_lake.files(wallet_table("1m")))
    assert wallet_1m.rows_published == wallet_1m.rows_total == expected > 0
    assert by_table["wallet_positions"].rows_total > 1000
    assert wallet_1m.latest is not None and wallet_1m.lag_s == pytest.approx(
        (now - wallet_1m.latest).total_seconds()
    )

    again = ch.publish(client, served_lake, database=database, now=now)
    assert again.rows_published == 0  # unchanged files are not re-sent
    assert all(t.files_published == 0 for t in again.tables)

    # a rewritten partition is re-sent; ReplacingMergeTree keeps one row per key
    first_file = served_lake.files(wallet_table("1m"))[0]
    table = pq.read_table(first_file)
    pq.write_table(table, first_file)
    os.utime(first_file, ns=(time.time_ns(), time.time_ns() + 10**9))
    third = ch.publish(client, served_lake, database=database, now=now)
    resent = {t.table: t for t in third.tables}["wallet_metrics_1m"]
    assert resent.files_published == 1 and resent.rows_published == table.num_rows
    assert resent.rows_total == expected
    pnl = client.query(
        f"SELECT round(sum(realized_pnl), 6) FROM {database}.wallet_metrics_1m FINAL"
    ).result_rows[0][0]
    lake_pnl = sum(
        sum(pq.read_table(f).column("realized_pnl").to_pylist())
        for f in served_lake.files(wallet_table("1m"))
    )
    assert pnl == pytest.approx(lake_pnl, abs=1e-4)
    assert ch.table_counts(client, database)["wallet_metrics_1m"] == expected


def test_second_chdb_path_is_refused_clearly(tmp_path) -> None:
    ch.get_client(chdb_dsn())
    with pytest.raises(ch.ClickHouseError, match="one chdb path per process"):
        ch.get_client(f"chdb://{tmp_path}/other")


def test_unreachable_server_error_hides_credentials() -> None:
    with pytest.raises(ch.ClickHouseError) as error:
        ch.get_client("http://127.0.0.1:9", user="admin", password="hunter2-secret")
    assert "hunter2" not in str(error.value) and "127.0.0.1:9" in str(error.value)


# ---- `polymkt sql` / `polymkt ask`: failures end in one clear line ------------------------


def _invoke(tmp_path, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from polymkt_dagster.cli.main import main

    return CliRunner().invoke(main, ["--data-dir", str(tmp_path), *args], env=env or {})


@pytest.mark.parametrize("command", ["sql", "ask"])
def test_unreachable_clickhouse_is_one_line_and_a_failure(tmp_path, command: str) -> None:
    env = {
        "POLYMKT_CLICKHOUSE_ENABLED": "true",
        "POLYMKT_CLICKHOUSE_DSN": "http://127.0.0.1:9",
        "POLYMKT_CLICKHOUSE_PASSWORD": "hunter2-secret",
        "POLYMKT_OPENAI_API_KEY": "",
    }
    query = "SELECT wallet FROM wallet_metrics_1d" if command == "sql" else "top wallets"
    result = _invoke(tmp_path, command, query, env=env)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.exception is not None
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "ClickHouse is not available" in lines[0]
    assert "127.0.0.1:9" in result.output and "hunter2" not in result.output


@pytest.mark.parametrize("timeout", ["0", "-1", "nan", "inf", "-inf", "1e9"])
def test_bad_timeout_option_is_refused(tmp_path, timeout: str) -> None:
    result = _invoke(tmp_path, "sql", "SELECT wallet FROM wallet_metrics_1d", "--timeout", timeout)
    assert result.exit_code == 2 and "timeout" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("value", ["0", "nan", "inf", "soon"])
def test_bad_timeout_setting_is_refused(tmp_path, value: str) -> None:
    result = _invoke(tmp_path, "sql", "SELECT 1", env={"POLYMKT_SQL_TIMEOUT_S": value})
    assert result.exit_code == 2 and "POLYMKT_SQL_TIMEOUT_S" in result.output


def test_timeout_setting_and_flag_reach_the_query(served_lake: Lake) -> None:
    data_dir = served_lake.root.parent
    slow = (
        "SELECT count(*) AS n FROM wallet_metrics_1m a, wallet_metrics_1m b, "
        "wallet_metrics_1m c, wallet_metrics_1m d WHERE a.trades + b.trades + c.trades "
        "+ d.trades > 1000000"
    )
    started = time.monotonic()
    result = _invoke(data_dir, "sql", slow, env={"POLYMKT_SQL_TIMEOUT_S": "1"})
    assert result.exit_code == 2 and "longer than 1 s" in result.output
    assert "Traceback" not in result.output
    result = _invoke(data_dir, "sql", slow, "--timeout", "1.5")
    assert result.exit_code == 2 and "longer than 1.5 s" in result.output
    assert time.monotonic() - started < 30
    refused = _invoke(data_dir, "sql", "SELECT * FROM wallet_metrics_1d LIMIT 100%")
    assert refused.exit_code == 2 and "refused: LIMIT ... PERCENT" in refused.output
