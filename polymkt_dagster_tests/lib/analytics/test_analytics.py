"""Price bars, market summary and election groups on constructed trades and on the sample."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from polymkt_dagster.lib.analytics import bars as analytics
from polymkt_dagster.lib.analytics.election_groups import (
    ELECTION_GROUPS,
    OverridesFileError,
    build_election_groups,
    groups_checks,
    groups_from_table,
    groups_table,
    read_groups,
)
from polymkt_dagster.lib.analytics.price_series import PriceSeries, signal_series
from polymkt_dagster.lib.core.duck import connect
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.schemas import TRADES
from polymkt_dagster.lib.research.backtest import StrategyConfig, run_backtest
from polymkt_dagster.lib.research.backtest_runs import compute_backtest
from polymkt_dagster.lib.research.signals import build_favorites, favorite_signals
from polymkt_dagster_tests.lib.research import test_backtest as hand

_ARROW_TYPES = {
    "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
    "VARCHAR": pa.string(),
    "DOUBLE": pa.float64(),
    "BOOLEAN": pa.bool_(),
}
TRADES_ARROW = pa.schema([(name, _ARROW_TYPES[kind]) for name, kind in TRADES.columns])


def trade(
    when: datetime, token: str, price: float, usd: float, *, taker_side: bool, fill: str,
    market: str = "m1", outcome: str = "Yes",
) -> dict[str, Any]:  # fmt: skip
    return {
        "timestamp": when,
        "market_id": market,
        "token_id": token,
        "outcome": outcome,
        "price": price,
        "usd_amount": usd,
        "token_amount": usd / price,
        "order_fill_id": fill,
        "is_taker_side": taker_side,
    }


def write_trades(lake: Lake, rows: list[dict[str, Any]]) -> list[date]:
    """Canonical trades Parquet, one file per UTC day, like derive_trades writes them."""
    days = sorted({r["timestamp"].date() for r in rows})
    for day in days:
        today = [r for r in rows if r["timestamp"].date() == day]
        full = [{name: r.get(name) for name in TRADES.column_names} for r in today]
        target = lake.day_dir(TRADES.name, day) / "part-0.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(full, schema=TRADES_ARROW), target)
    return days


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2024, 3, day, hour, minute, second, tzinfo=UTC)


def test_hourly_and_daily_bars_count_each_match_once(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "parquet")
    rows = [
        # match 1 at 10:05: taker row + its maker row (same price, same USDC)
        trade(at(1, 10, 5), "T", 0.40, 40.0, taker_side=True, fill="a"),
        trade(at(1, 10, 5), "T", 0.40, 40.0, taker_side=False, fill="b"),
        # match 2 at 10:30 and a maker-only fill on T at 10:59 (from a MINT on the other token)
        trade(at(1, 10, 30), "T", 0.50, 100.0, taker_side=True, fill="c"),
        trade(at(1, 10, 59), "T", 0.45, 9.0, taker_side=False, fill="d"),
        # same second, two fills: the close is the one with the larger fill id
        trade(at(1, 11, 0, 1), "T", 0.60, 6.0, taker_side=True, fill="e"),
        trade(at(1, 11, 0, 1), "T", 0.55, 11.0, taker_side=True, fill="f"),
        trade(at(2, 9, 0), "T", 0.70, 7.0, taker_side=True, fill="g"),
    ]
    days = write_trades(lake, rows)
    with connect() as con:
        hourly = analytics.build_hourly_bars(con, lake, days)
        daily = analytics.build_daily_bars(con, lake, days)
        bars = (
            con.execute(
                f"SELECT * FROM {analytics.bars_sql(lake, analytics.PRICE_BARS_1H)} "
                "ORDER BY bucket_start"
            )
            .to_arrow_table()
            .to_pylist()
        )
        day_bars = (
            con.execute(
                f"SELECT * FROM {analytics.bars_sql(lake, analytics.PRICE_BARS_1D)} "
                "ORDER BY bucket_start"
            )
            .to_arrow_table()
            .to_pylist()
        )
        checks = analytics.bars_checks(con, lake, analytics.PRICE_BARS_1H, days)
    assert hourly.rows == 3 and daily.rows == 2
    ten = bars[0]
    assert (ten["open"], ten["high"], ten["low"], ten["close"]) == (0.40, 0.50, 0.40, 0.45)
    assert ten["volume_usd"] == pytest.approx(140.0)  # 40 + 100: maker rows not counted
    assert ten["volume_shares"] == pytest.approx(100 + 200)
    assert ten["vwap"] == pytest.approx(140.0 / 300)
    assert (ten["trade_count"], ten["fill_count"]) == (2, 4)
    assert ten["last_trade_at"] == at(1, 10, 59)
    eleven = bars[1]
    assert eleven["close"] == 0.55  # tie on the second: fill id "f" > "e"
    first_day = day_bars[0]
    assert (first_day["open"], first_day["high"], first_day["low"], first_day["close"]) == (
        0.40, 0.60, 0.40, 0.55,
    )  # fmt: skip
    assert first_day["volume_usd"] == pytest.approx(140.0 + 17.0)
    assert first_day["trade_count"] == 4
    assert all(c.passed for c in checks), checks

    # Rebuilding is idempotent, and a day that lost its trades loses its bars.
    for path in lake.day_files(TRADES.name, date(2024, 3, 2)):
        path.unlink()
    with connect() as con:
        again = analytics.build_hourly_bars(con, lake, days)
    assert again.rows == 2 and again.days_emptied == 1
    assert lake.partition_days(analytics.PRICES_1H) == [date(2024, 3, 1)]


def test_lake_backtest_gives_the_hand_computed_numbers(tmp_path: Path) -> None:
    """The hand test's prices as trades -> bars -> the lake path of a backtest: the same
    metrics, whether its series comes from the daily bars' hourly paths, from the hourly
    bars (daily bars stale), or with the precomputed favorites."""
    lake = Lake(tmp_path / "parquet")
    rows = [
        trade(moment, token, price, 10.0, taker_side=True, fill=f"{token}-{i}")
        for token, points in hand.POINTS.items()
        for i, (moment, price) in enumerate(points)
    ]
    days = write_trades(lake, rows)
    lake.single_file(ELECTION_GROUPS).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(groups_table(hand.groups()), lake.single_file(ELECTION_GROUPS))
    config = StrategyConfig(
        days_before=2, initial_capital=1000, fee_bps=100, slippage_bps=200, stop_loss=0.2
    )
    expected = run_backtest(config, hand.groups(), PriceSeries.from_points(hand.POINTS)).metrics
    assert expected["trades"] == 2
    with connect() as con:
        analytics.build_hourly_bars(con, lake, days)
        analytics.build_daily_bars(con, lake, days)
        fresh = compute_backtest(con, lake, config).metrics
        assert fresh.pop("signals_source").startswith("computed")
        assert fresh == expected
        # Hourly bars rebuilt after the daily ones: the daily paths are not trusted.
        time.sleep(0.05)
        analytics.build_hourly_bars(con, lake, days)
        stale = compute_backtest(con, lake, config).metrics
        stale.pop("signals_source")
        assert stale == expected
        analytics.build_daily_bars(con, lake, days)
        build_favorites(con, lake, [2])
        reused = compute_backtest(con, lake, config).metrics
        assert reused.pop("signals_source") == "signals/favorites partition 2"
        assert reused == expected
        # Hold to expiry: marks from the daily closes only, still the same numbers.
        hold = config.model_copy(update={"stop_loss": None})
        held = compute_backtest(con, lake, hold).metrics
        held.pop("signals_source")
        assert (
            held == run_backtest(hold, hand.groups(), PriceSeries.from_points(hand.POINTS)).metrics
        )
        # The full hourly series and the signal series agree at every signal time.
        tokens = list(hand.POINTS)
        full = PriceSeries.from_bars(con, lake, tokens)
        compact = signal_series(con, lake, hand.groups(), [1, 2, 3])
    for days_before in (1, 2, 3):
        assert [vars(s) for s in favorite_signals(hand.groups(), full, days_before)] == [
            vars(s) for s in favorite_signals(hand.groups(), compact, days_before)
        ]


def test_market_summary_on_the_sample(sample_lake: Lake) -> None:
    lake = Lake(sample_lake.root.parent / "summary_copy")
    # Analytics are derived: build them beside a private copy of the raw layer.
    import shutil

    shutil.copytree(sample_lake.root / "raw", lake.root / "raw")
    days = lake.partition_days(TRADES.name)
    as_of = datetime(2024, 6, 1, tzinfo=UTC)
    with connect() as con:
        analytics.build_hourly_bars(con, lake, days)
        analytics.build_daily_bars(con, lake, days)
        report = analytics.build_market_summary(con, lake, as_of=as_of)
        taker_volume = con.execute(
            f"SELECT sum(usd_amount) FROM {lake.scan_sql(TRADES)} WHERE is_taker_side"
        ).fetchone()[0]
        rows = (
            con.execute(f"SELECT * FROM read_parquet('{report.path}')").to_arrow_table().to_pylist()
        )
    assert report.markets == 400
    assert report.volume_usd == pytest.approx(taker_volume)
    assert report.resolved + report.closed_unresolved + report.open == 400
    assert report.closed_unresolved > 0  # kept apart from resolved
    by_status = {r["status"] for r in rows}
    assert by_status == {"resolved", "closed_unresolved", "open"}
    for row in rows:
        if row["resolved"] and row["winning_outcome_index"] is not None:
            assert row["winning_outcome"] == row["outcomes"][row["winning_outcome_index"]]
        elif row["resolved"]:  # an even split (50/50) has no single winner
            assert row["winning_outcome"] is None
            assert row["payouts"] == [0.5] * len(row["outcomes"])
        expected = (row["end_date"] - as_of).total_seconds() / 86400
        assert row["days_to_expiry"] == pytest.approx(expected)
        assert len(row["last_prices"]) == len(row["token_ids"])


def test_election_groups_on_the_sample_with_overrides(tmp_path: Path, sample_lake: Lake) -> None:
    lake = Lake(tmp_path / "parquet")
    import shutil

    shutil.copytree(sample_lake.root / "raw", lake.root / "raw")
    with connect() as con:
        automatic = build_election_groups(con, lake, None)
    groups = read_groups(lake)
    assert automatic.groups == 25 and automatic.by_source == {"neg_risk": 25}
    assert all(c.passed for c in groups_checks(groups))
    first = groups[0]
    assert all(m.yes_token_id and m.candidate for m in first.members)
    assert first.end_date == max(m.end_date for m in first.members)

    donor, other = groups[0], groups[1]
    moved = donor.members[0].market_id
    overrides = tmp_path / "election_groups.yaml"
    overrides.write_text(
        f"""
groups:
  - id: my-race
    title: My race
    markets: ["{moved}", "{other.members[0].market_id}", "999999999"]
    labels: {{"{moved}": "Renamed"}}
    end_date: 2030-01-01T00:00:00Z
  - id: {other.group_id}
    title: Relabelled group
  - title: no id here
  - id: bad-markets
    markets: 12
exclude: ["{groups[2].group_id}", "not-a-group"]
"""
    )
    with connect() as con:
        report = build_election_groups(con, lake, overrides)
    by_id = {g.group_id: g for g in read_groups(lake)}
    mine = by_id["my-race"]
    assert mine.source == "user" and mine.title == "My race"
    assert {m.market_id for m in mine.members} == {moved, other.members[0].market_id}
    assert {m.candidate for m in mine.members if m.market_id == moved} == {"Renamed"}
    assert mine.end_date == datetime(2030, 1, 1, tzinfo=UTC)
    assert moved not in {m.market_id for m in by_id[donor.group_id].members}
    assert by_id[other.group_id].title == "Relabelled group"
    assert groups[2].group_id not in by_id
    problems = "\n".join(report.problems)
    assert "market 999999999 is not a Yes/No market" in problems
    assert "groups[2]: field 'id' is missing" in problems
    assert "groups[3]: field 'markets' must be a list" in problems
    assert "no automatic group 'not-a-group'" in problems

    overrides.write_text("groups: [unclosed")
    with connect() as con, pytest.raises(OverridesFileError, match=r"election_groups\.yaml"):
        build_election_groups(con, lake, overrides)


def test_groups_read_back_equal_to_what_was_written() -> None:
    groups = hand.groups()
    groups[0].members[1].end_date = None  # a member without an end date
    groups[1].end_date_override = datetime(2024, 3, 11, 12, 30, 15, 250_000, tzinfo=UTC)
    groups[2].members[0].won = None
    back = groups_from_table(groups_table(groups))
    assert [g.members for g in back] == [g.members for g in groups]
    assert [g.end_date for g in back] == [g.end_date for g in groups]
    assert back[0].members[1].end_date is None
    assert back[1].end_date == datetime(2024, 3, 11, 12, 30, 15, 250_000, tzinfo=UTC)
    assert back[1].end_date.utcoffset() == timedelta(0)
