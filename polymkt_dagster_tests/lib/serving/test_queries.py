from datetime import UTC, datetime

import pytest

from polymkt_dagster.lib.core.duck import connect
from polymkt_dagster.lib.core.lake import Lake, bucket_of, bucket_sql
from polymkt_dagster.lib.core.schemas import TRADES
from polymkt_dagster.lib.serving.queries import QueryError, parse_when, query_trades


def _busiest_markets(lake: Lake, n: int) -> list[str]:
    with connect() as con:
        return [
            r[0]
            for r in con.execute(
                f"SELECT market_id FROM {lake.scan_sql(TRADES)} GROUP BY 1 "
                f"ORDER BY count(*) DESC, 1 LIMIT {n}"
            ).fetchall()
        ]


def test_single_market_window(sample_lake: Lake) -> None:
    market = _busiest_markets(sample_lake, 1)[0]
    everything = query_trades(sample_lake, [market])
    assert everything.num_rows > 10
    assert set(everything.column("market_id").to_pylist()) == {market}
    times = everything.column("timestamp").to_pylist()
    assert times == sorted(times, reverse=True)

    middle = times[len(times) // 2]
    window = query_trades(sample_lake, [market], start=middle)
    assert window.num_rows == sum(1 for t in times if t >= middle)
    limited = query_trades(sample_lake, [market], limit=3)
    assert limited.column("timestamp").to_pylist() == times[:3]


def test_many_markets_same_with_and_without_buckets(
    sample_lake: Lake, bucketed_sample_lake: Lake
) -> None:
    markets = _busiest_markets(sample_lake, 40)
    plain = query_trades(sample_lake, markets)
    bucketed = query_trades(bucketed_sample_lake, markets)
    assert plain.num_rows == bucketed.num_rows > 0
    assert sorted(plain.column("order_fill_id").to_pylist()) == sorted(
        bucketed.column("order_fill_id").to_pylist()
    )


def test_unknown_market_gives_no_rows(sample_lake: Lake) -> None:
    assert query_trades(sample_lake, ["no-such-market"]).num_rows == 0


def test_bad_arguments_are_explained(sample_lake: Lake) -> None:
    with pytest.raises(QueryError, match="at least one market"):
        query_trades(sample_lake, [" "])
    with pytest.raises(QueryError, match="not before"):
        query_trades(
            sample_lake,
            ["1"],
            start=datetime(2024, 2, 1, tzinfo=UTC),
            end=datetime(2024, 1, 1, tzinfo=UTC),
        )
    with pytest.raises(QueryError, match="cannot read"):
        parse_when("last tuesday")


def test_market_ids_are_data_not_sql(sample_lake: Lake) -> None:
    hostile = "1') OR 1=1 --"
    assert query_trades(sample_lake, [hostile]).num_rows == 0


def test_bucket_function_is_the_same_in_python_and_duckdb() -> None:
    ids = [str(i) for i in range(0, 5000, 7)] + ["0xabc", "512345"]
    with connect() as con:
        from_sql = con.execute(
            f"SELECT {bucket_sql('m', 8)} FROM (SELECT unnest($ids) AS m)", {"ids": ids}
        ).fetchall()
    assert [r[0] for r in from_sql] == [bucket_of(m, 8) for m in ids]


def test_parse_when_forms() -> None:
    assert parse_when("2024-05-01") == datetime(2024, 5, 1, tzinfo=UTC)
    assert parse_when("1714521600") == datetime(2024, 5, 1, tzinfo=UTC)
    assert parse_when(None) is None
