"""The as-of index (analytics/price_index): same answers as the bars, fresh or stale."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from polymkt_dagster.lib.analytics import bars as analytics
from polymkt_dagster.lib.analytics.election_groups import ELECTION_GROUPS, groups_table
from polymkt_dagster.lib.analytics.price_series import (
    INDEX_DAILY,
    INDEX_HOURLY,
    PriceIndex,
    PriceSeries,
    build_price_index,
    daily_series,
    signal_series,
)
from polymkt_dagster.lib.core.duck import connect
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.schemas import TRADES
from polymkt_dagster.lib.research.backtest import StrategyConfig, run_backtest
from polymkt_dagster.lib.research.backtest_runs import compute_backtest
from polymkt_dagster.lib.research.signals import favorite_signals
from polymkt_dagster_tests.lib.analytics.test_analytics import trade, write_trades
from polymkt_dagster_tests.lib.research import test_backtest as hand

NO_TOKEN = "tokA1-no"  # a No token: the index keeps it in the other run of rows
TOKENS = [*hand.POINTS, NO_TOKEN]
# Every half hour across the hand test's days, plus the seconds around each trade.
PROBES = [datetime(2024, 3, 6, tzinfo=UTC) + timedelta(minutes=30 * i) for i in range(8 * 48)]
PROBES += [
    moment + timedelta(seconds=s)
    for points in hand.POINTS.values()
    for moment, _ in points
    for s in (-1, 0, 1)
]


def hand_lake(tmp_path: Path) -> tuple[Lake, list[date]]:
    """The hand test's prices as trades, hourly and daily bars, and its groups."""
    lake = Lake(tmp_path / "parquet")
    rows = [
        trade(moment, token, price, 10.0, taker_side=True, fill=f"{token}-{i}")
        for token, points in hand.POINTS.items()
        for i, (moment, price) in enumerate(points)
    ]
    # A second trade in the same hour as tokA1's first: the hourly close is the later one.
    rows.append(trade(hand.t(7, 12) + timedelta(minutes=20), "tokA1", 0.55, 5.0,
                      taker_side=True, fill="tokA1-late"))  # fmt: skip
    rows += [
        trade(hand.t(day, 15), NO_TOKEN, price, 5.0, taker_side=True, fill=f"no-{day}",
              outcome="No")
        for day, price in ((7, 0.48), (9, 0.21))
    ]  # fmt: skip
    days = write_trades(lake, rows)
    lake.single_file(ELECTION_GROUPS).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(groups_table(hand.groups()), lake.single_file(ELECTION_GROUPS))
    with connect() as con:
        analytics.build_hourly_bars(con, lake, days)
        analytics.build_daily_bars(con, lake, days)
    return lake, days


def answers(series: PriceSeries) -> list[tuple[str, float, int]]:
    """The as-of answer of every token at every probe time (NaN compared as text)."""
    out = []
    for token in TOKENS:
        seconds = np.array([int(p.timestamp()) for p in PROBES], dtype=np.int64)
        prices, at = series.asof(np.full(len(seconds), series.code(token)), seconds)
        out += [(token, repr(float(p)), int(a)) for p, a in zip(prices, at, strict=True)]
    return out


def test_index_answers_like_the_bars_fresh_stale_and_after_rebuild(tmp_path: Path) -> None:
    lake, days = hand_lake(tmp_path)
    with connect() as con:
        report = build_price_index(con, lake)
        assert report.tokens == len(TOKENS)
        assert report.hourly_rows == sum(len(points) for points in hand.POINTS.values()) + 2
        assert report.daily_rows == 12  # (token, day) pairs with a trade
        assert report.days == len(days) and report.source_files == len(days)
        index = PriceIndex.open(lake)
        assert index is not None and index.dirty_days == []
        bars = PriceSeries.from_bars(con, lake, TOKENS)
        assert answers(index.series(con, TOKENS, INDEX_HOURLY)) == answers(bars)
        daily = PriceSeries.from_bars(con, lake, TOKENS, analytics.PRICE_BARS_1D)
        assert answers(index.series(con, TOKENS, INDEX_DAILY)) == answers(daily)
        # A subset of tokens, and a token the index never saw: no rows, no error.
        some = index.series(con, ["tokB2", "tokA1", "unknown"], INDEX_HOURLY)
        assert some.token_ids[-1] == "unknown" and some.code("unknown") >= 0
        picked = [a for a in answers(some) if a[0] in ("tokA1", "tokB2")]
        assert picked == [a for a in answers(bars) if a[0] in ("tokA1", "tokB2")]
        never = some.asof(np.array([some.code("unknown")]), np.array([2**33]))
        assert np.isnan(never[0][0]) and never[1][0] == -1
        # Yes tokens come first: the No token's rows are a run of their own at the end.
        assert len(index.series(con, [NO_TOKEN], INDEX_HOURLY)) == 2

        # Day 03-08 re-materialized with new prices, 03-10 lost its trades and 03-11 is
        # new: the index is now stale for exactly those days, and still answers like the
        # bars.
        time.sleep(0.01)
        rows = [
            trade(hand.t(8, 1), "tokA2", 0.33, 10.0, taker_side=True, fill="new-1"),
            trade(hand.t(8, 23), "tokB2", 0.66, 10.0, taker_side=True, fill="new-2"),
            trade(hand.t(11, 5), "tokB1", 0.05, 10.0, taker_side=True, fill="new-3"),
        ]
        for path in lake.day_files(TRADES.name, date(2024, 3, 8)):
            path.unlink()
        for path in lake.day_files(TRADES.name, date(2024, 3, 10)):
            path.unlink()
        write_trades(lake, rows)
        changed = [date(2024, 3, 8), date(2024, 3, 10), date(2024, 3, 11)]
        analytics.build_hourly_bars(con, lake, changed)
        stale = PriceIndex.open(lake)
        assert stale is not None
        assert stale.dirty_days == changed
        bars = PriceSeries.from_bars(con, lake, TOKENS)
        assert answers(stale.series(con, TOKENS, INDEX_HOURLY)) == answers(bars)
        assert answers(bars) != answers(index.series(con, TOKENS, INDEX_HOURLY))
        # Daily closes of a dirty day come from its hourly bars: same answers at day ends.
        analytics.build_daily_bars(con, lake, changed)
        daily = PriceSeries.from_bars(con, lake, TOKENS, analytics.PRICE_BARS_1D)
        ends = np.array(
            [int(datetime(2024, 3, d, tzinfo=UTC).timestamp()) - 1 for d in range(6, 14)]
        )
        for token in TOKENS:
            got = stale.series(con, TOKENS, INDEX_DAILY)
            want = daily.asof(np.full(len(ends), daily.code(token)), ends)
            have = got.asof(np.full(len(ends), got.code(token)), ends)
            np.testing.assert_array_equal(have[0], want[0])
            np.testing.assert_array_equal(have[1], want[1])

        rebuilt = build_price_index(con, lake)
        assert rebuilt.days == len(days)  # one day gone, one new
        fresh = PriceIndex.open(lake)
        assert fresh is not None and fresh.dirty_days == []
        assert answers(fresh.series(con, TOKENS, INDEX_HOURLY)) == answers(bars)


def test_signals_and_backtests_through_the_index_match_the_hand_numbers(
    tmp_path: Path,
) -> None:
    lake, _ = hand_lake(tmp_path)
    stop = StrategyConfig(
        days_before=2, initial_capital=1000, fee_bps=100, slippage_bps=200, stop_loss=0.2
    )
    hold = stop.model_copy(update={"stop_loss": None})
    points = {**hand.POINTS, "tokA1": sorted([*hand.POINTS["tokA1"], (hand.t(7, 12)
              + timedelta(minutes=20), 0.55)])}  # fmt: skip
    with connect() as con:
        without_index = [(compute_backtest(con, lake, c).metrics, c) for c in (stop, hold)]
        build_price_index(con, lake)
        assert PriceIndex.open(lake) is not None
        for before, config in without_index:
            metrics = compute_backtest(con, lake, config).metrics
            assert metrics == before
            metrics.pop("signals_source")
            expected = run_backtest(config, hand.groups(), PriceSeries.from_points(points))
            assert metrics == expected.metrics
        full = PriceSeries.from_bars(con, lake, TOKENS)
        compact = signal_series(con, lake, hand.groups(), [1, 2, 3])
        marks = daily_series(con, lake, TOKENS)
    assert compact.token_ids != full.token_ids  # read through the index (its ordinals)
    for days_before in (1, 2, 3):
        assert [vars(s) for s in favorite_signals(hand.groups(), full, days_before)] == [
            vars(s) for s in favorite_signals(hand.groups(), compact, days_before)
        ]
    assert len(marks) == 12


def test_an_unreadable_index_is_ignored(tmp_path: Path) -> None:
    lake, _ = hand_lake(tmp_path)
    path = lake.single_file("analytics/price_index")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not parquet")
    assert PriceIndex.open(lake) is None
    with connect() as con:
        compact = signal_series(con, lake, hand.groups(), [2])
    assert compact.token_ids == sorted(compact.token_ids) and len(compact) > 0  # bars path


@pytest.mark.parametrize("grain", [INDEX_HOURLY, INDEX_DAILY])
def test_empty_lake_builds_an_empty_index(tmp_path: Path, grain: str) -> None:
    lake = Lake(tmp_path / "parquet")
    with connect() as con:
        report = build_price_index(con, lake)
        assert (report.hourly_rows, report.daily_rows, report.tokens) == (0, 0, 0)
        index = PriceIndex.open(lake)
        assert index is not None and index.dirty_days == []
        assert len(index.series(con, ["tok"], grain)) == 0


def test_merging_series_whose_tokens_are_in_another_order() -> None:
    first = PriceSeries.from_points({"a": [(hand.t(1), 0.1)], "b": [(hand.t(1), 0.2)]})
    second = PriceSeries.from_points({"b": [(hand.t(2), 0.3)], "a": [(hand.t(3), 0.4)]})
    merged = PriceSeries.merge(first, second)
    assert merged.token_ids == ["a", "b"]
    moments = np.array([int(hand.t(4).timestamp())] * 2)
    prices, _ = merged.asof(np.array([merged.code("a"), merged.code("b")]), moments)
    assert prices.tolist() == [0.4, 0.3]
    with pytest.raises(ValueError, match="different tokens"):
        PriceSeries.merge(first, PriceSeries.from_points({"c": [(hand.t(1), 0.5)]}))
