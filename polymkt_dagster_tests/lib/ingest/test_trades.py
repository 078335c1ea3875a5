"""Trade derivation against poly_data's own trades.csv of the same fills."""

from pathlib import Path

import pytest

from polymkt_dagster.lib.core.duck import connect, sql_string
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.schemas import EXCHANGE_CONTRACTS, ORDER_FILLED, TRADES


def test_derived_trades_match_poly_data_trades_csv(sample_lake: Lake, sample_dir: Path) -> None:
    trades = sample_lake.scan_sql(TRADES)
    expected = sql_string(sample_dir / "trades.csv")
    with connect() as con:
        derived = con.execute(f"SELECT count(*) FROM {trades}").fetchone()[0]
        listed = con.execute(f"SELECT count(*) FROM read_csv({expected})").fetchone()[0]
        assert derived == listed
        # Same multiset of (tx, maker, taker, market, side, directions, rounded amounts).
        mismatches = con.execute(
            f"""
            WITH ours AS (
                SELECT transaction_hash AS tx, maker, taker, market_id, nonusdc_side,
                       maker_direction, taker_direction,
                       round(usd_amount, 6) AS usd, round(token_amount, 6) AS tokens,
                       round(price, 9) AS price
                FROM {trades}),
            theirs AS (
                SELECT lower("transactionHash") AS tx, lower(maker) AS maker,
                       lower(taker) AS taker, CAST(market_id AS VARCHAR) AS market_id,
                       nonusdc_side, maker_direction, taker_direction,
                       round(usd_amount, 6) AS usd, round(token_amount, 6) AS tokens,
                       round(price, 9) AS price
                FROM read_csv({expected}, all_varchar = false))
            SELECT (SELECT count(*) FROM (SELECT * FROM ours EXCEPT ALL SELECT * FROM theirs))
                 + (SELECT count(*) FROM (SELECT * FROM theirs EXCEPT ALL SELECT * FROM ours))
            """
        ).fetchone()[0]
    assert mismatches == 0


def test_one_taker_side_row_per_match(sample_lake: Lake) -> None:
    trades = sample_lake.scan_sql(TRADES)
    exchanges = ", ".join(f"'{a}'" for a in EXCHANGE_CONTRACTS)
    with connect() as con:
        per_tx = con.execute(
            f"SELECT transaction_hash, count(*) FILTER (WHERE is_taker_side) AS taker_rows, "
            f"count(*) FILTER (WHERE taker IN ({exchanges})) AS exchange_rows "
            f"FROM {trades} GROUP BY 1"
        ).fetchall()
    assert per_tx and all(taker_rows == 1 == rows for _, taker_rows, rows in per_tx)


def test_every_fill_maps_to_a_market_and_prices_are_probabilities(sample_lake: Lake) -> None:
    trades = sample_lake.scan_sql(TRADES)
    with connect() as con:
        unmapped, bad_price, fills, rows = con.execute(
            f"SELECT count(*) FILTER (WHERE market_id IS NULL), "
            f"count(*) FILTER (WHERE NOT price BETWEEN 0 AND 1), "
            f"(SELECT count(*) FROM {sample_lake.scan_sql(ORDER_FILLED)}), count(*) "
            f"FROM {trades}"
        ).fetchone()
    assert unmapped == 0 and bad_price == 0 and rows == fills > 0


def test_files_are_sorted_by_market_then_time(sample_lake: Lake) -> None:
    files = sample_lake.files(TRADES.name)[:20]
    with connect() as con:
        for path in files:
            disorder = con.execute(
                'SELECT count(*) FROM (SELECT market_id, "timestamp", '
                'lag(market_id) OVER () AS pm, lag("timestamp") OVER () AS pt '
                f"FROM read_parquet({sql_string(path)})) "
                'WHERE pm > market_id OR (pm = market_id AND pt > "timestamp")'
            ).fetchone()[0]
            assert disorder == 0, path


@pytest.mark.parametrize("fixture_name", ["sample_lake", "bucketed_sample_lake"])
def test_bucketed_and_plain_layouts_hold_the_same_rows(
    fixture_name: str, request: pytest.FixtureRequest, sample_lake: Lake
) -> None:
    lake: Lake = request.getfixturevalue(fixture_name)
    with connect() as con:
        digest = con.execute(
            f"SELECT count(*), sum(hash(order_fill_id)) FROM {lake.scan_sql(TRADES)}"
        ).fetchone()
        reference = con.execute(
            f"SELECT count(*), sum(hash(order_fill_id)) FROM {sample_lake.scan_sql(TRADES)}"
        ).fetchone()
    assert digest == reference
    if lake.bucket_count:
        assert all(p.parent.name.startswith("bucket=") for p in lake.files(TRADES.name))
