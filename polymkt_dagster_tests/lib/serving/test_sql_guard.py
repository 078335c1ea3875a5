"""The SQL guard's rules one by one, and the bounds on execution: a query over the timeout
stops within timeout + 1 s on DuckDB (worker killed) and on ClickHouse (chdb), a query over
the memory limit fails with a clear message, bad limits are refused. The hostile and
legitimate corpus lives in sql_corpus/ (test_sql_corpus.py)."""

# ruff: noqa: F811 - pytest fixtures imported from helper modules are parameters here

from __future__ import annotations

import math
import time

import pytest

from polymkt_dagster.lib.core.duck import connect
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.serving import clickhouse as ch
from polymkt_dagster.lib.serving.sql_guard import (
    MAX_NESTING,
    QueryLimitError,
    SqlRefused,
    guard_sql,
)
from polymkt_dagster.lib.serving.sql_runner import (
    QueryFailed,
    QueryTimeout,
    run_guarded,
    validate_timeout,
)
from polymkt_dagster.lib.wallets.rollups import build_rollups
from polymkt_dagster_tests.wallet_helpers import (  # noqa: F401 - fixtures
    chdb_dsn,
    fresh_database,
    wallet_lake,
)

# Four copies of the minute rollup: billions of combinations, interruptible or not.
LONG_QUERY = (
    "SELECT count(*) AS n FROM wallet_metrics_1m a, wallet_metrics_1m b, wallet_metrics_1m c, "
    "wallet_metrics_1m d WHERE a.trades + b.trades + c.trades + d.trades > 1000000"
)


@pytest.fixture(scope="module")
def rollup_lake(wallet_lake: Lake) -> Lake:
    with connect() as con:
        build_rollups(con, wallet_lake, wallet_lake.partition_days("trades")[:40])
    return wallet_lake


def test_limit_added_or_clamped() -> None:
    assert guard_sql("SELECT wallet FROM wallet_metrics_1d", max_rows=7).sql.endswith("LIMIT 7")
    clamped = guard_sql("SELECT wallet FROM wallet_metrics_1d LIMIT 500", max_rows=7)
    assert clamped.limit == 7 and clamped.sql.endswith("LIMIT 7") and clamped.notes
    kept = guard_sql("SELECT wallet FROM wallet_metrics_1d LIMIT 3", max_rows=7)
    assert kept.limit == 3 and not kept.limit_added
    mysql_form = guard_sql("SELECT wallet FROM wallet_metrics_1d LIMIT 1, 1000000", max_rows=7)
    assert mysql_form.sql.endswith("LIMIT 7 OFFSET 1") and mysql_form.limit == 7
    fetch = guard_sql(
        "SELECT wallet FROM wallet_metrics_1d ORDER BY wallet FETCH FIRST 900 ROWS ONLY",
        max_rows=7,
    )
    assert fetch.sql.endswith("LIMIT 7")
    union = guard_sql(
        "SELECT wallet FROM wallet_metrics_1d UNION ALL SELECT wallet FROM wallet_alerts",
        max_rows=7,
    )
    assert union.sql.endswith("LIMIT 7") and union.limit_added


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM wallet_metrics_1d LIMIT 100%",
        "SELECT * FROM wallet_metrics_1d ORDER BY trades FETCH FIRST 5 ROWS WITH TIES",
        "SELECT * FROM wallet_metrics_1d USING SAMPLE 10%",
    ],
)
def test_percent_ties_and_samples_are_refused(sql: str) -> None:
    with pytest.raises(SqlRefused, match=r"PERCENT|WITH TIES|sampling"):
        guard_sql(sql)


def test_cte_visible_only_in_its_scope() -> None:
    # the CTE is defined inside EXISTS: the outer pg_settings is the catalog table
    with pytest.raises(SqlRefused, match="'pg_settings' is not allowlisted"):
        guard_sql(
            "SELECT * FROM pg_settings WHERE EXISTS (WITH pg_settings AS "
            "(SELECT wallet FROM wallet_metrics_1d) SELECT * FROM pg_settings)"
        )
    # a CTE in scope, even one named like a system table, is fine
    guarded = guard_sql(
        "WITH pg_settings AS (SELECT wallet FROM wallet_metrics_1d) SELECT * FROM pg_settings"
    )
    assert guarded.tables == ("wallet_metrics_1d",)
    # a CTE defined in an outer query is visible in a subquery
    guard_sql(
        "WITH w AS (SELECT wallet FROM wallet_metrics_1d) SELECT * FROM wallet_alerts "
        "WHERE wallet IN (SELECT wallet FROM w)"
    )
    # a CTE may read an earlier one, never a later one or itself
    with pytest.raises(SqlRefused, match="not allowlisted"):
        guard_sql("WITH a AS (SELECT * FROM b), b AS (SELECT wallet FROM wallet_alerts) "
                  "SELECT * FROM a")  # fmt: skip


def test_clickhouse_tables_are_qualified_with_the_database() -> None:
    guarded = guard_sql(
        "WITH w AS (SELECT wallet FROM wallet_metrics_1d) SELECT * FROM w JOIN wallet_alerts "
        "AS a ON a.wallet = w.wallet",
        dialect="clickhouse",
        database="serving",
    )
    assert "serving.wallet_metrics_1d" in guarded.sql and "serving.wallet_alerts" in guarded.sql
    assert "FROM w JOIN" in guarded.sql


def test_deep_nesting_is_refused_without_recursion_error() -> None:
    for sql in (
        "SELECT wallet FROM wallet_metrics_1d WHERE trades = " + "(" * 3000 + "1" + ")" * 3000,
        "SELECT wallet FROM wallet_metrics_1d WHERE trades = " + "+".join(["1"] * 5000),
        "SELECT wallet FROM wallet_metrics_1d WHERE " + "NOT " * 3000 + "trades > 0",
    ):
        with pytest.raises(SqlRefused, match="nested"):
            guard_sql(sql)
    nested = "(" * MAX_NESTING + "1" + ")" * MAX_NESTING
    guard_sql(f"SELECT wallet FROM wallet_metrics_1d WHERE trades = {nested}")


def test_pad_and_repeat_have_a_length_limit() -> None:
    guard_sql("SELECT lpad(wallet, 50, ' '), repeat('-', 10) FROM wallet_metrics_1d")
    for sql in (
        "SELECT repeat(wallet, 100000000) FROM wallet_metrics_1d",
        "SELECT rpad(wallet, trades, 'x') FROM wallet_metrics_1d",
    ):
        with pytest.raises(SqlRefused, match="literal length"):
            guard_sql(sql)


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, -math.inf, "soon", None, 1e9])
def test_bad_timeouts_are_refused(bad: object, rollup_lake: Lake) -> None:
    with pytest.raises(QueryLimitError, match="timeout"):
        validate_timeout(bad)
    with pytest.raises(QueryLimitError):
        run_guarded("SELECT wallet FROM wallet_metrics_1d", lake=rollup_lake, timeout_s=bad)  # type: ignore[arg-type]


def test_bad_row_limits_are_refused() -> None:
    for bad in (0, -5, 10**9):
        with pytest.raises(QueryLimitError, match="max rows"):
            guard_sql("SELECT wallet FROM wallet_metrics_1d", max_rows=bad)


def test_duckdb_execution_is_confined_and_answers(rollup_lake: Lake) -> None:
    result = run_guarded(
        "SELECT market_id, sum(volume_usd) AS v FROM market_metrics_1d GROUP BY market_id "
        "ORDER BY v DESC",
        lake=rollup_lake,
        max_rows=3,
    )
    assert result.engine == "duckdb" and len(result.rows) == 3
    assert result.columns == ["market_id", "v"] and result.rows[0]["v"] >= result.rows[1]["v"]


def test_duckdb_long_query_stops_within_timeout_plus_one_second(rollup_lake: Lake) -> None:
    started = time.monotonic()
    with pytest.raises(QueryTimeout, match="longer than 1 s") as timeout:
        run_guarded(LONG_QUERY, lake=rollup_lake, timeout_s=1.0)
    elapsed = time.monotonic() - started
    assert timeout.value.query_seconds < 2.0, timeout.value.query_seconds
    # starting the worker and opening the views comes on top (well under a second when quiet)
    assert elapsed < 15.0


def test_duckdb_query_over_the_memory_limit_fails_clearly(rollup_lake: Lake) -> None:
    with pytest.raises(QueryFailed, match="more memory than the limit"):
        run_guarded(
            "SELECT a.wallet || b.wallet || c.wallet AS w, count(*) AS n FROM wallet_metrics_1d a, "
            "wallet_metrics_1d b, wallet_metrics_1d c GROUP BY 1 ORDER BY n DESC",
            lake=rollup_lake,
            memory_limit="32MB",
            timeout_s=60,
        )


def test_clickhouse_execution_is_read_only(rollup_lake: Lake) -> None:
    database = fresh_database()
    ch.ensure_tables(ch.get_client(chdb_dsn()), database)
    client = ch.get_client(chdb_dsn(), read_only=True)
    result = run_guarded(
        "SELECT count() AS n FROM wallet_alerts",
        lake=rollup_lake,
        engine="clickhouse",
        clickhouse_client=client,
        clickhouse_database=database,
    )
    assert result.rows == [{"n": 0}]
    # the guard is the first wall; readonly=2 on the query is the second
    with pytest.raises(Exception, match=r"READONLY|readonly"):
        client.query(
            f"CREATE TABLE {database}.x (a Int8) ENGINE = Memory",
            settings={"readonly": 2},
        )
    # and the read-only session still runs guarded queries with their limits afterwards
    again = run_guarded(
        "SELECT count() AS n FROM wallet_alerts",
        lake=rollup_lake,
        engine="clickhouse",
        clickhouse_client=client,
        clickhouse_database=database,
    )
    assert again.rows == [{"n": 0}]
    # that failure left the read-only session read-only; the publisher's is untouched
    ch.get_client(chdb_dsn()).command(f"CREATE TABLE {database}.y (a Int8) ENGINE = Memory")


def test_clickhouse_long_query_stops_within_timeout_plus_one_second(rollup_lake: Lake) -> None:
    database = fresh_database()
    ch.publish(ch.get_client(chdb_dsn()), rollup_lake, database=database,
               tables=["wallet_metrics_1m"])  # fmt: skip
    client = ch.get_client(chdb_dsn(), read_only=True)
    started = time.monotonic()
    with pytest.raises(QueryTimeout, match="longer than 1 s"):
        run_guarded(LONG_QUERY, lake=rollup_lake, engine="clickhouse", clickhouse_client=client,
                    clickhouse_database=database, timeout_s=1.0)  # fmt: skip
    assert time.monotonic() - started < 2.0


def test_clickhouse_without_published_tables_says_what_to_do(rollup_lake: Lake) -> None:
    client = ch.get_client(chdb_dsn(), read_only=True)
    database = fresh_database()
    ch.get_client(chdb_dsn()).command(f"CREATE DATABASE {database}")
    with pytest.raises(QueryFailed, match="materialize serving/clickhouse"):
        run_guarded(
            "SELECT wallet FROM wallet_metrics_1d",
            lake=rollup_lake,
            engine="clickhouse",
            clickhouse_client=client,
            clickhouse_database=database,
        )


def test_worker_is_killed_inside_a_single_long_function_call() -> None:
    """What DuckDB cannot interrupt (one function building a 10^9-character string) still
    ends at the deadline: the worker process is killed. The guard would refuse this SQL
    (nested replace); it goes to the worker directly to test the last wall."""
    from polymkt_dagster.lib.serving.sql_runner import _run_duckdb_worker

    one_k = "lpad('', 1000, 'a')"
    nested = f"replace(replace({one_k}, 'a', {one_k}), 'a', {one_k})"  # 10^9 characters
    bomb = f"SELECT length(replace({nested}, 'a', 'bb')) AS n"
    request = {
        "setup": ["SET memory_limit = '256MB'", "SET threads = 1", "SET temp_directory = ''"],
        "sql": bomb,
        "max_rows": 1,
        "address_space_bytes": 2 * 2**30,
    }
    with pytest.raises(QueryTimeout) as timeout:
        _run_duckdb_worker(request, 1.0)
    assert timeout.value.query_seconds < 2.0
