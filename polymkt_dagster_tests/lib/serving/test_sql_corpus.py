"""The SQL guard against a corpus kept as data (sql_corpus/*.yaml), on both engines.

- hostile.yaml: statements by category; each is refused by the guard, with a reason matching
  its category, on every engine it names (DuckDB and ClickHouse via chdb by default);
- limit_normalised.yaml: row-limit forms accepted only after clamping; they answer with at
  most max_rows rows on the real engines;
- legitimate.yaml: analyst queries (joins, window functions, CTEs, aggregates) that pass the
  guard and answer on DuckDB and on ClickHouse over the analyst tables.

``test_corpus_counts`` prints the counts per category and engine (run with ``-s``).
"""

# ruff: noqa: F811 - pytest fixtures imported from helper modules are parameters here

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from polymkt_dagster.lib.core.duck import connect
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.serving import clickhouse as ch
from polymkt_dagster.lib.serving.sql_guard import SqlRefused, guard_sql
from polymkt_dagster.lib.serving.sql_runner import run_guarded
from polymkt_dagster.lib.wallets.positions import compute_positions
from polymkt_dagster.lib.wallets.rollups import build_rollups
from polymkt_dagster_tests.wallet_helpers import (  # noqa: F401 - fixtures
    chdb_dsn,
    fresh_database,
    wallet_lake,
)

CORPUS = Path(__file__).parent / "sql_corpus"
ENGINES = ("duckdb", "clickhouse")
MAX_ROWS = 50

# Placeholders for statements too long to write out in the YAML file.
_EXPANSIONS = {
    "open3000": "(" * 3000,
    "close3000": ")" * 3000,
    "open65": "(" * 65,
    "close65": ")" * 65,
    "not3000": "NOT " * 3000,
    "minus3000": "- " * 3000,
    "plus3000": "+".join(["1"] * 3000),
    "or3000": " OR ".join(["trades = 1"] * 1200),
    "subquery100": "(SELECT " * 100 + "1" + " FROM wallet_metrics_1d)" * 100,
    "case300": "CASE WHEN trades > 0 THEN " * 300 + "1" + " END" * 300,
    "longtail": "x" * 20_001,
}


def _expand(sql: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: _EXPANSIONS.get(m.group(1), m.group(0)), sql)


def _load(name: str) -> Any:
    return yaml.safe_load((CORPUS / name).read_text(encoding="utf-8"))


def hostile_cases() -> list[tuple[str, str, str, str]]:
    """(category, engine, sql, reason regex) for every hostile statement and engine."""
    cases = []
    for category, block in _load("hostile.yaml").items():
        for entry in block["statements"]:
            for engine in entry.get("engines", ENGINES):
                cases.append(
                    (category, engine, _expand(entry["sql"]), entry.get("reason", block["reason"]))
                )
    return cases


def normalised_cases() -> list[tuple[str, str]]:
    return [(e, entry["sql"]) for entry in _load("limit_normalised.yaml")
            for e in entry.get("engines", ENGINES)]  # fmt: skip


def legitimate_cases() -> list[tuple[str, str, str, int]]:
    return [
        (entry["name"], engine, entry["sql"], entry.get("min_rows", 1))
        for entry in _load("legitimate.yaml")
        for engine in entry.get("engines", ENGINES)
    ]


def _case_id(value: Any) -> str:
    return str(value)[:60] if isinstance(value, str) else str(value)


def test_corpus_counts() -> None:
    hostile = hostile_cases()
    statements = {(c, s) for c, _, s, _ in hostile}
    per_category = Counter(c for c, _ in statements)
    per_engine = Counter((c, e) for c, e, _, _ in hostile)
    legitimate = legitimate_cases()
    print("\nSQL corpus: refused statements per category (duckdb / clickhouse runs)")
    for category in sorted(per_category):
        duck, click = per_engine[(category, "duckdb")], per_engine[(category, "clickhouse")]
        print(f"  {category:36} {per_category[category]:4}   {duck:4} / {click:4}")
    print(f"  {'total hostile statements':36} {len(statements):4}   "
          f"{sum(1 for h in hostile if h[1] == 'duckdb'):4} / "
          f"{sum(1 for h in hostile if h[1] == 'clickhouse'):4}")  # fmt: skip
    print(f"  limit forms normalised to the clamp: {len(normalised_cases())} runs")
    print(f"  legitimate queries: {len({n for n, *_ in legitimate})} "
          f"({sum(1 for c in legitimate if c[1] == 'duckdb')} duckdb / "
          f"{sum(1 for c in legitimate if c[1] == 'clickhouse')} clickhouse runs)")  # fmt: skip
    assert len(statements) >= 150
    assert sum(1 for h in hostile if h[1] == "clickhouse") >= 150
    assert sum(1 for h in hostile if h[1] == "duckdb") >= 150
    assert len({n for n, *_ in legitimate}) >= 30
    for category in ("cte_shadowing", "limit_bypass", "unbounded_generation", "deep_nesting",
                     "comment_and_quoting_tricks", "stacked_statements", "ddl_dml_session",
                     "file_and_network_table_functions", "environment_and_settings",
                     "system_and_catalog_tables"):  # fmt: skip
        assert per_category[category] >= 5, category


@pytest.mark.parametrize(("category", "engine", "sql", "reason"), hostile_cases(), ids=_case_id)
def test_hostile_statement_is_refused(category: str, engine: str, sql: str, reason: str) -> None:
    with pytest.raises(SqlRefused, match=reason) as refused:
        guard_sql(sql, dialect=engine, max_rows=MAX_ROWS)
    assert refused.value.reason and len(refused.value.reason) < 400


# ---- execution on the analyst tables ------------------------------------------------------


def _write_snapshots(lake: Lake, wallets: list[str], days: int = 365) -> int:
    """A year of daily P&L snapshots for ``wallets`` (the snapshot engine's output shape)."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    rows = 0
    for month in range(12):
        snapshot_at, wallet, realized, unrealized, total, exposure, open_positions = (
            [], [], [], [], [], [], []
        )  # fmt: skip
        for offset in range(days):
            moment = start + timedelta(days=offset)
            if moment.month != month + 1:
                continue
            for index, address in enumerate(wallets):
                drift = ((index * 37 + offset * 11) % 97 - 48) / 10
                snapshot_at.append(moment)
                wallet.append(address)
                realized.append(index * 0.5 + offset * 0.1)
                unrealized.append(drift)
                total.append(index * 0.5 + offset * 0.1 + drift)
                exposure.append(abs(drift) * 3)
                open_positions.append((index + offset) % 5)
        table = pa.table({
            "snapshot_at": pa.array(snapshot_at, pa.timestamp("us", tz="UTC")),
            "wallet": wallet, "realized_pnl": realized, "unrealized_pnl": unrealized,
            "total_pnl": total, "exposure": exposure,
            "open_positions": pa.array(open_positions, pa.int64()),
        })  # fmt: skip
        target = lake.day_dir("analytics/wallets/pnl_snapshots", date(2024, month + 1, 1))
        target.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, target / "part-0.parquet")
        rows += table.num_rows
    return rows


def _write_alerts(lake: Lake, con: Any) -> None:
    target = lake.day_dir("analytics/wallets/alerts", date(2024, 6, 1))
    target.mkdir(parents=True, exist_ok=True)
    positions = lake.single_file("analytics/wallets/positions")
    con.execute(
        f"""COPY (SELECT 'a' || row_number() OVER () AS alert_id,
                 TIMESTAMPTZ '2024-06-01 00:00:00+00'
                   + to_seconds(row_number() OVER ()) AS alerted_at,
                 wallet, market_id, CASE WHEN buys > sells THEN 'BUY' ELSE 'SELL' END AS side,
                 abs(cost_basis) AS size_usd, avg_price AS price
               FROM read_parquet('{positions}') ORDER BY wallet, token_id LIMIT 300)
            TO '{target / "part-0.parquet"}' (FORMAT PARQUET)"""
    )


@pytest.fixture(scope="module")
def analyst_lake(wallet_lake: Lake) -> Lake:
    with connect() as con:
        build_rollups(con, wallet_lake, wallet_lake.partition_days("trades")[:40])
        compute_positions(
            con, wallet_lake, output=wallet_lake.single_file("analytics/wallets/positions")
        )
        wallets = [r[0] for r in con.execute(
            "SELECT DISTINCT wallet FROM read_parquet(?) ORDER BY 1 LIMIT 60",
            [str(wallet_lake.single_file("analytics/wallets/positions"))],
        ).fetchall()]  # fmt: skip
        _write_alerts(wallet_lake, con)
    _write_snapshots(wallet_lake, wallets)
    return wallet_lake


@pytest.fixture(scope="module")
def analyst_clickhouse(analyst_lake: Lake) -> tuple[Any, str]:
    database = fresh_database()
    ch.publish(ch.get_client(chdb_dsn()), analyst_lake, database=database)
    return ch.get_client(chdb_dsn(), read_only=True), database


def _run(engine: str, sql: str, lake: Lake, clickhouse: tuple[Any, str] | None, **kw: Any) -> Any:
    if engine == "clickhouse":
        assert clickhouse is not None
        client, database = clickhouse
        return run_guarded(sql, lake=lake, engine="clickhouse", clickhouse_client=client,
                           clickhouse_database=database, **kw)  # fmt: skip
    return run_guarded(sql, lake=lake, **kw)


@pytest.mark.parametrize(("name", "engine", "sql", "min_rows"), legitimate_cases(), ids=_case_id)
def test_legitimate_query_answers(
    name: str, engine: str, sql: str, min_rows: int, analyst_lake: Lake,
    request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    clickhouse = request.getfixturevalue("analyst_clickhouse") if engine == "clickhouse" else None
    result = _run(engine, sql, analyst_lake, clickhouse, max_rows=200, timeout_s=60)
    assert result.engine == engine
    assert min_rows <= len(result.rows) <= 200, (name, result.sql)
    assert result.columns and all(set(row) == set(result.columns) for row in result.rows)


@pytest.mark.parametrize(("engine", "sql"), normalised_cases(), ids=_case_id)
def test_limit_forms_are_clamped(
    engine: str, sql: str, analyst_lake: Lake, request: pytest.FixtureRequest
) -> None:
    guarded = guard_sql(sql, dialect=engine, max_rows=7)
    assert guarded.limit <= 7
    clickhouse = request.getfixturevalue("analyst_clickhouse") if engine == "clickhouse" else None
    result = _run(engine, sql, analyst_lake, clickhouse, max_rows=7)
    assert 1 <= len(result.rows) <= 7


@pytest.mark.parametrize(
    ("engine", "sql"),
    [
        (
            "duckdb",
            "SELECT * FROM pg_settings WHERE EXISTS (WITH pg_settings AS "
            "(SELECT wallet FROM wallet_metrics_1d) SELECT * FROM pg_settings)",
        ),
        (
            "duckdb",
            "SELECT * FROM duckdb_views WHERE EXISTS (WITH duckdb_views AS "
            "(SELECT wallet FROM wallet_metrics_1d) SELECT * FROM duckdb_views)",
        ),
        (
            "duckdb",
            "SELECT * FROM sqlite_master WHERE EXISTS (WITH sqlite_master AS "
            "(SELECT wallet FROM wallet_metrics_1d) SELECT * FROM sqlite_master)",
        ),
        (
            "clickhouse",
            "SELECT * FROM _polymkt_publish_log WHERE EXISTS (WITH "
            "_polymkt_publish_log AS (SELECT wallet FROM wallet_metrics_1d) "
            "SELECT * FROM _polymkt_publish_log)",
        ),
        ("duckdb", "SELECT * FROM wallet_metrics_1d LIMIT 100%"),
    ],
    ids=_case_id,
)
def test_issue_bypasses_are_refused_before_running(
    engine: str, sql: str, analyst_lake: Lake, request: pytest.FixtureRequest
) -> None:
    clickhouse = request.getfixturevalue("analyst_clickhouse") if engine == "clickhouse" else None
    with pytest.raises(SqlRefused):
        _run(engine, sql, analyst_lake, clickhouse)


@pytest.mark.parametrize(
    "sql",
    [
        "WITH wallet_alerts AS (SELECT wallet FROM wallet_metrics_1d WHERE 0 = 1) "
        "SELECT count(*) AS n FROM wallet_alerts",
        "WITH wallet_alerts AS (SELECT wallet FROM wallet_metrics_1d WHERE 0 = 1) "
        "SELECT count(*) AS n FROM wallet_metrics_1d WHERE wallet IN "
        "(SELECT wallet FROM wallet_alerts)",
        "WITH wallet_alerts AS (SELECT wallet FROM wallet_metrics_1d WHERE 0 = 1) "
        "SELECT count(*) AS n FROM (SELECT wallet FROM wallet_alerts) AS q",
        "WITH wallet_alerts AS (SELECT wallet FROM wallet_metrics_1d WHERE 0 = 1), "
        "b AS (SELECT wallet FROM wallet_alerts) SELECT count(*) AS n FROM b",
    ],
    ids=["main", "in-subquery", "derived-table", "later-cte"],
)
@pytest.mark.parametrize("engine", ENGINES)
def test_engines_scope_ctes_as_the_guard_does(
    engine: str, sql: str, analyst_lake: Lake, request: pytest.FixtureRequest
) -> None:
    """A CTE in scope wins over the real table on both engines (the real wallet_alerts has
    rows, the CTE none): the guard's scoping matches what the engines read."""
    clickhouse = request.getfixturevalue("analyst_clickhouse") if engine == "clickhouse" else None
    assert _run(engine, "SELECT count(*) AS n FROM wallet_alerts", analyst_lake,
                clickhouse).rows[0]["n"] > 0  # fmt: skip
    assert _run(engine, sql, analyst_lake, clickhouse).rows == [{"n": 0}]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    "question", ["which wallets made the most?", "top 3 markets by volume", "most active wallets"]
)
def test_rule_based_ask_answers_on_both_engines(
    engine: str, question: str, analyst_lake: Lake, request: pytest.FixtureRequest
) -> None:
    from polymkt_dagster.lib.serving.ask import ask_rules

    plan = ask_rules(question, dialect=engine)
    clickhouse = request.getfixturevalue("analyst_clickhouse") if engine == "clickhouse" else None
    assert _run(engine, plan.sql, analyst_lake, clickhouse).rows
