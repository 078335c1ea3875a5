"""The SQL guard: a corpus of hostile queries, each refused with a reason; allowed queries
run read-only with a LIMIT and a timeout on DuckDB and on embedded ClickHouse."""

from __future__ import annotations

import pytest

from polymkt_dagster.lib import clickhouse as ch
from polymkt_dagster.lib.sql_guard import (
    QueryTimeout,
    SqlRefused,
    guard_sql,
    run_guarded,
)

HOSTILE: list[tuple[str, str]] = [
    # DDL / DML / session commands
    ("DROP TABLE wallet_metrics_1d", "only SELECT"),
    ("DELETE FROM wallet_metrics_1d", "only SELECT"),
    ("UPDATE wallet_metrics_1d SET trades = 0", "only SELECT"),
    ("INSERT INTO wallet_metrics_1d SELECT * FROM wallet_metrics_1h", "only SELECT"),
    ("CREATE TABLE x AS SELECT * FROM wallet_metrics_1d", "only SELECT"),
    ("ALTER TABLE wallet_metrics_1d ADD COLUMN x INT", "only SELECT"),
    ("TRUNCATE TABLE wallet_metrics_1d", "only SELECT"),
    ("ATTACH 'other.duckdb' AS other", "only SELECT"),
    ("COPY wallet_metrics_1d TO '/tmp/out.csv'", "only SELECT"),
    ("PRAGMA database_list", "only SELECT"),
    ("SET enable_external_access = true", "only SELECT"),
    ("INSTALL httpfs", "not valid SQL|only SELECT"),
    ("LOAD httpfs", "not valid SQL|only SELECT"),
    ("CALL pragma_version()", "not valid SQL|only SELECT"),
    ("EXPORT DATABASE '/tmp/x'", "not valid SQL|only SELECT"),
    ("BEGIN TRANSACTION", "only SELECT"),
    ("DESCRIBE wallet_metrics_1d", "only SELECT"),
    ("SHOW TABLES", "only SELECT"),
    # several statements
    ("SELECT wallet FROM wallet_metrics_1d; DROP TABLE wallet_metrics_1d", "exactly one"),
    ("SELECT 1 FROM wallet_metrics_1d; SELECT 2 FROM wallet_metrics_1d", "exactly one"),
    ("SELECT wallet FROM wallet_metrics_1d;;DELETE FROM wallet_alerts", "exactly one"),
    # table functions: files, URLs, object stores, generators
    ("SELECT * FROM read_parquet('/etc/passwd')", "not allowed"),
    ("SELECT * FROM read_csv_auto('/etc/passwd')", "not allowed"),
    ("SELECT * FROM read_json('/home/x.json')", "not allowed"),
    ("SELECT * FROM read_text('/etc/shadow')", "not allowed"),
    ("SELECT * FROM parquet_scan('s3://bucket/x.parquet')", "not allowed"),
    ("SELECT * FROM 'data/polymkt.duckdb'", "not allowlisted"),
    ("SELECT * FROM '/etc/passwd'", "not allowlisted"),
    ("SELECT * FROM glob('/home/*')", "not allowed"),
    ("SELECT * FROM range(1000000000)", "not allowed"),
    ("SELECT * FROM generate_series(1, 10)", "not allowed"),
    ("SELECT * FROM wallet_metrics_1d, read_parquet('x.parquet')", "not allowed"),
    ("SELECT (SELECT count(*) FROM read_csv('/etc/hosts')) FROM wallet_metrics_1d", "not allowed"),
    ("SELECT * FROM sqlite_scan('x.db', 't')", "not allowed"),
    ("SELECT * FROM query_table('wallet_metrics_1d')", "not allowed"),
    # system and catalog tables
    ("SELECT * FROM information_schema.tables", "schema-qualified"),
    ("SELECT * FROM duckdb_settings()", "not allowed"),
    ("SELECT * FROM duckdb_tables()", "not allowed"),
    ("SELECT * FROM pg_catalog.pg_tables", "schema-qualified"),
    ("SELECT * FROM main.wallet_metrics_1d", "schema-qualified"),
    ("SELECT * FROM other.main.wallet_metrics_1d", "schema-qualified"),
    ("SELECT * FROM sqlite_master", "not allowlisted"),
    ("SELECT * FROM trades", "not allowlisted"),
    ("SELECT * FROM markets", "not allowlisted"),
    # environment and side effects through functions
    ("SELECT getenv('HOME') FROM wallet_metrics_1d", "not allowed"),
    ("SELECT current_setting('temp_directory') FROM wallet_metrics_1d", "not allowed"),
    ("SELECT version() FROM wallet_metrics_1d", "not allowed"),
    ("SELECT load_extension('x') FROM wallet_metrics_1d", "not allowed"),
    ("SELECT sleep(100) FROM wallet_metrics_1d", "not allowed"),
    ("SELECT my_udf(wallet) FROM wallet_metrics_1d", "unknown function"),
    # columns that are not allowlisted, unknown qualifiers
    ("SELECT password FROM wallet_metrics_1d", "not allowlisted"),
    ("SELECT w.secret FROM wallet_metrics_1d AS w", "not allowlisted"),
    ("SELECT x.wallet FROM wallet_metrics_1d AS w", "unknown table"),
    ("SELECT wallet FROM wallet_metrics_1d WHERE rowid > 0", "not allowlisted"),
    # no table at all, or nonsense
    ("SELECT 1", "at least one allowlisted table"),
    ("SELECT 'x' AS a", "at least one allowlisted table"),
    ("", "empty query"),
    ("   ", "empty query"),
    ("SELEKT * FROM wallet_metrics_1d", "not valid SQL|only SELECT"),
    ("SELECT * FROM wallet_metrics_1d WHERE", "not valid SQL"),
    ("SELECT * FROM wallet_metrics_1d LIMIT (SELECT 10)", "LIMIT must be a whole number"),
    ("SELECT * FROM wallet_metrics_1d LIMIT 'a'", "LIMIT must be a whole number"),
    ("SELECT * FROM wallet_metrics_1d " + "x" * 20_001, "longer than"),
    ("SELECT * FROM wallet_metrics_1d\x00", "NUL"),
]

HOSTILE_CLICKHOUSE: list[tuple[str, str]] = [
    ("SELECT * FROM file('/etc/passwd', 'CSV')", "not allowed|not allowlisted"),
    ("SELECT * FROM url('http://127.0.0.1:9/x', 'CSV')", "not allowed|not allowlisted"),
    ("SELECT * FROM s3('http://127.0.0.1:9/b/x.parquet')", "not allowed|not allowlisted"),
    ("SELECT * FROM remote('127.0.0.1', system.users)", "not allowed|not allowlisted"),
    ("SELECT * FROM numbers(10000000000)", "not allowed|not allowlisted"),
    ("SELECT * FROM system.tables", "schema-qualified"),
    ("SELECT * FROM system.users", "schema-qualified"),
    ("SELECT * FROM wallet_metrics_1d SETTINGS readonly = 0", "SETTINGS"),
    ("SELECT * FROM wallet_metrics_1d FORMAT CSV", "FORMAT"),
    ("SELECT * FROM mysql('127.0.0.1:3306', 'db', 't', 'u', 'p')", "not allowed|not allowlisted"),
    ("SELECT * FROM executable('x.sh', 'CSV', 'a String')", "not allowed|not allowlisted"),
    ("SELECT getSetting('readonly') FROM wallet_metrics_1d", "not allowed"),
    ("SELECT * FROM default._polymkt_publish_log", "schema-qualified"),
    ("SELECT * FROM _polymkt_publish_log", "not allowlisted"),
    ("KILL QUERY WHERE 1", "not valid SQL|only SELECT"),
    ("OPTIMIZE TABLE wallet_metrics_1d FINAL", "not valid SQL|only SELECT"),
]

ALLOWED = [
    "SELECT wallet, sum(realized_pnl) AS pnl FROM wallet_metrics_1d GROUP BY wallet "
    "ORDER BY pnl DESC LIMIT 5",
    "WITH w AS (SELECT wallet, realized_pnl FROM wallet_metrics_1h) SELECT wallet FROM w",
    "SELECT m.market_id, m.volume_usd FROM market_metrics_1d AS m WHERE m.trades > 2",
    "SELECT wallet FROM wallet_metrics_1d UNION SELECT wallet FROM wallet_pnl_snapshots",
    "SELECT a.wallet, b.total_pnl FROM wallet_metrics_1d a JOIN wallet_pnl_snapshots b "
    "ON a.wallet = b.wallet",
    "SELECT count(*) AS n FROM wallet_alerts WHERE size_usd > 100",
    "SELECT status, count(*) FROM wallet_positions GROUP BY status",
]


def test_corpus_is_big_enough() -> None:
    assert len(HOSTILE) + len(HOSTILE_CLICKHOUSE) >= 50
    assert len({q for q, _ in HOSTILE + HOSTILE_CLICKHOUSE}) == len(HOSTILE + HOSTILE_CLICKHOUSE)


@pytest.mark.parametrize(("sql", "reason"), HOSTILE)
def test_hostile_query_is_refused_with_a_reason(sql: str, reason: str) -> None:
    with pytest.raises(SqlRefused, match=reason) as refused:
        guard_sql(sql)
    assert refused.value.reason


@pytest.mark.parametrize(("sql", "reason"), HOSTILE_CLICKHOUSE)
def test_hostile_clickhouse_query_is_refused(sql: str, reason: str) -> None:
    with pytest.raises(SqlRefused, match=reason):
        guard_sql(sql, dialect="clickhouse")


@pytest.mark.parametrize("sql", ALLOWED)
def test_allowed_queries_pass_with_a_limit(sql: str) -> None:
    guarded = guard_sql(sql, max_rows=100)
    assert guarded.limit <= 100
    assert "LIMIT" in guarded.sql.upper()


def test_limit_added_or_clamped() -> None:
    assert guard_sql("SELECT wallet FROM wallet_metrics_1d", max_rows=7).sql.endswith("LIMIT 7")
    clamped = guard_sql("SELECT wallet FROM wallet_metrics_1d LIMIT 500", max_rows=7)
    assert clamped.limit == 7 and clamped.sql.endswith("LIMIT 7") and clamped.notes
    kept = guard_sql("SELECT wallet FROM wallet_metrics_1d LIMIT 3", max_rows=7)
    assert kept.limit == 3 and not kept.limit_added


def test_duckdb_execution_is_confined_and_times_out(wallet_lake) -> None:  # noqa: F811
    from polymkt_dagster.lib.duck import connect
    from polymkt_dagster.lib.rollups import build_rollups

    with connect() as con:
        build_rollups(con, wallet_lake, wallet_lake.partition_days("trades")[:40])
    result = run_guarded(
        "SELECT market_id, sum(volume_usd) AS v FROM market_metrics_1d GROUP BY market_id "
        "ORDER BY v DESC",
        lake=wallet_lake,
        max_rows=3,
    )
    assert result.engine == "duckdb" and len(result.rows) == 3
    assert result.columns == ["market_id", "v"] and result.rows[0]["v"] >= result.rows[1]["v"]
    with pytest.raises(QueryTimeout):
        run_guarded(
            "SELECT count(*) FROM wallet_metrics_1m a, wallet_metrics_1m b, "
            "wallet_metrics_1m c, wallet_metrics_1m d WHERE a.trades + b.trades + c.trades "
            "+ d.trades > 1000000",
            lake=wallet_lake,
            timeout_s=1.0,
        )


def test_clickhouse_execution_is_read_only(wallet_lake) -> None:  # noqa: F811
    database = fresh_database()
    ch.ensure_tables(ch.get_client(chdb_dsn()), database)
    client = ch.get_client(chdb_dsn(), read_only=True)
    result = run_guarded(
        "SELECT count() AS n FROM wallet_alerts",
        lake=wallet_lake,
        engine="clickhouse",
        clickhouse_client=client,
        clickhouse_database=database,
    )
    assert result.rows == [{"n": 0}]
    # the guard is the first wall; readonly=1 on the query is the second
    with pytest.raises(Exception, match=r"READONLY|readonly"):
        client.query(
            f"CREATE TABLE {database}.x (a Int8) ENGINE = Memory",
            settings={"readonly": 1},
        )
    # that failure left the read-only session read-only; the publisher's is untouched
    ch.get_client(chdb_dsn()).command(f"CREATE TABLE {database}.y (a Int8) ENGINE = Memory")


from polymkt_dagster_tests.wallet_helpers import (  # noqa: E402, F401 - fixtures
    chdb_dsn,
    fresh_database,
    wallet_lake,
)
