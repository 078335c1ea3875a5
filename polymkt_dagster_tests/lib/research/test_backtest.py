"""The backtest engine against numbers computed by hand on a tiny constructed dataset.

Every expected value below is written as the arithmetic a person does on paper, from the
prices listed in ``POINTS``; nothing is taken from the engine's own output.
"""

from __future__ import annotations

import math
import statistics
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from polymkt_dagster.lib.analytics.election_groups import Group, Member
from polymkt_dagster.lib.analytics.price_series import PriceSeries
from polymkt_dagster.lib.research.backtest import StrategyConfig, equity_png, run_backtest
from polymkt_dagster.lib.research.signals import favorite_signals


def t(day: int, hour: int = 0) -> datetime:
    return datetime(2024, 3, day, hour, tzinfo=UTC)


# Yes-token prices (time, last trade price). Group ends: A 03-10, B 03-11, C 03-12.
POINTS = {
    "tokA1": [(t(7, 12), 0.50), (t(8, 6), 0.60), (t(9, 12), 0.80)],
    # look-ahead trap: A2 trades at 0.70 one hour AFTER A's signal time (03-08 00:00)
    "tokA2": [(t(7, 18), 0.40), (t(8, 1), 0.70)],
    "tokB1": [(t(8, 10), 0.70), (t(9, 12), 0.15), (t(10, 0), 0.10)],
    "tokB2": [(t(8, 20), 0.25)],
    # C's only trade comes after its signal time (03-10 00:00): no price, skipped
    "tokC1": [(t(10, 6), 0.50)],
}


def member(market_id: str, won: bool, end: datetime, resolved: bool = True) -> Member:
    return Member(
        market_id=market_id,
        candidate=f"Candidate {market_id}",
        question=f"Will {market_id} win?",
        yes_token_id=f"tok{market_id}",
        end_date=end,
        closed=resolved,
        resolved=resolved,
        won=won if resolved else None,
    )


def groups() -> list[Group]:
    return [
        Group(
            "A", "user", "Group A", None, [member("A1", True, t(10)), member("A2", False, t(10))]
        ),
        Group(
            "B", "user", "Group B", None, [member("B1", False, t(11)), member("B2", True, t(11))]
        ),
        Group(
            "C", "user", "Group C", None, [member("C1", True, t(12)), member("C2", False, t(12))]
        ),
    ]


def test_signals_use_only_prices_at_or_before_the_signal_time() -> None:
    series = PriceSeries.from_points(POINTS)
    by_group = {s.group_id: s for s in favorite_signals(groups(), series, days_before=2)}

    a = by_group["A"]  # signal 03-08 00:00: A1 last traded 0.50 (03-07 12h), A2 0.40 (18h)
    assert a.signal_time == t(8)
    assert (a.favorite_market_id, a.favorite_price, a.favorite_price_at) == ("A1", 0.50, t(7, 12))
    assert (a.runner_up_market_id, a.runner_up_price) == ("A2", 0.40)
    assert a.margin == pytest.approx(0.50 - 0.40)
    assert a.favorite_won is True and a.winner_market_id == "A1"

    b = by_group["B"]  # signal 03-09 00:00: B1 0.70 (03-08 10h), B2 0.25 (03-08 20h)
    assert (b.favorite_market_id, b.favorite_price, b.runner_up_price) == ("B1", 0.70, 0.25)
    assert b.margin == pytest.approx(0.45)
    assert b.favorite_won is False and b.winner_candidate == "Candidate B2"

    c = by_group["C"]
    assert c.status == "skipped" and c.n_priced == 0
    assert c.skip_reason == "no candidate has a Yes trade at or before the signal time"

    # Had A ended one hour later, its signal (03-08 01:00) would see A2's 0.70 trade.
    shifted = [g for g in groups() if g.group_id == "A"]
    shifted[0].end_date_override = t(10, 1)  # signal at 03-08 01:00 sees A2's trade
    assert favorite_signals(shifted, series, days_before=2)[0].favorite_market_id == "A2"


def test_hand_computed_backtest_every_metric() -> None:
    config = StrategyConfig(
        days_before=2,
        initial_capital=1000,
        stake=100,
        fee_bps=100,  # 1% of notional on each buy and each sale
        slippage_bps=200,  # buyer pays price x 1.02, seller gets price x 0.98
        take_profit=0.95,
        stop_loss=0.20,
    )
    result = run_backtest(config, groups(), PriceSeries.from_points(POINTS))
    m = result.metrics

    # --- trades, by hand -----------------------------------------------------------------
    # A: enter 03-08 00:00 at 0.50 x 1.02 = 0.51; shares = 100 / 0.51; fee 1.00; cost 101.
    #    Path after entry 0.60, 0.80: no TP (>= 0.95) / SL (<= 0.20): held; A1 won -> 1/share
    #    at 03-10 00:00, no fee on redemption.
    shares_a = 100 / 0.51
    pnl_a = shares_a * 1.0 - 101  # = 196.078431 - 101 = 95.078431
    # B: enter 03-09 00:00 at 0.70 x 1.02 = 0.714; shares = 100 / 0.714; cost 101.
    #    03-09 12:00 price 0.15 <= 0.20: stop loss, sell at 0.15 x 0.98 = 0.147,
    #    proceeds = shares x 0.147, sale fee 1% of proceeds.
    shares_b = 100 / 0.714
    proceeds_b = shares_b * 0.147  # = 20.588235
    pnl_b = proceeds_b * 0.99 - 101  # = 20.382353 - 101 = -80.617647
    trades = result.trades.to_pylist()
    assert [r["group_id"] for r in trades] == ["A", "B"]
    ta, tb = trades
    assert ta["entry_price"] == pytest.approx(0.51)
    assert ta["shares"] == pytest.approx(shares_a)
    assert ta["entry_fee"] == pytest.approx(1.0)
    assert (ta["exit_reason"], ta["exit_time"], ta["exit_price"]) == ("resolution", t(10), 1.0)
    assert ta["pnl"] == pytest.approx(pnl_a)
    assert tb["entry_price"] == pytest.approx(0.714)
    assert (tb["exit_reason"], tb["exit_time"]) == ("stop_loss", t(9, 12))
    assert tb["exit_price"] == pytest.approx(0.147)
    assert tb["exit_fee"] == pytest.approx(proceeds_b * 0.01)
    assert tb["pnl"] == pytest.approx(pnl_b)

    # --- equity at each UTC midnight -------------------------------------------------------
    # 03-07 (last midnight before the first entry): 1000 cash.
    e0 = 1000.0
    # 03-08: A bought at 00:00 -> cash 1000 - 101 = 899, A marked at its last price 0.50.
    e1 = 899 + shares_a * 0.50  # = 997.039216
    # 03-09: B bought at 00:00 -> cash 798; A marked at 0.60 (03-08 06h), B at 0.70.
    e2 = 798 + shares_a * 0.60 + shares_b * 0.70  # = 1013.686275
    # 03-10: B sold 03-09 12h (+proceeds x 0.99), A redeemed 00:00 (+shares_a): all cash.
    e3 = 798 + proceeds_b * 0.99 + shares_a  # = 1014.460784
    curve = result.equity.to_pylist()
    assert [r["day"] for r in curve] == [t(7), t(8), t(9), t(10)]
    assert [r["equity"] for r in curve] == pytest.approx([e0, e1, e2, e3])
    assert [r["open_positions"] for r in curve] == [0, 1, 2, 0]

    # --- metrics ---------------------------------------------------------------------------
    returns = [e1 / e0 - 1, e2 / e1 - 1, e3 / e2 - 1]  # per calendar day
    assert m["final_equity"] == pytest.approx(e3)
    assert m["total_return"] == pytest.approx(e3 / 1000 - 1)  # = 0.014461
    assert m["pnl"] == pytest.approx(pnl_a + pnl_b)  # = 14.460784, equals e3 - 1000
    assert m["pnl"] == pytest.approx(e3 - 1000)
    assert m["trades"] == 2 and m["wins"] == 1
    assert m["win_rate"] == pytest.approx(0.5)
    assert m["avg_return_per_trade"] == pytest.approx((pnl_a / 101 + pnl_b / 101) / 2)
    assert m["avg_entry_price"] == pytest.approx((0.50 + 0.70) / 2)
    assert m["sharpe"] == pytest.approx(
        statistics.mean(returns) / statistics.stdev(returns) * math.sqrt(365)
    )
    assert m["max_drawdown"] == pytest.approx(1 - e1 / e0)  # the only dip: 1000 -> 997.04
    # Days (03-07, 03-08]: A entered at the closing midnight only -> not exposed;
    # (03-08, 03-09] and (03-09, 03-10]: positions open -> 2 of 3 days.
    assert m["exposure"] == pytest.approx(2 / 3)
    assert m["capital_utilisation"] == pytest.approx(
        ((shares_a * 0.50) / e1 + (shares_a * 0.60 + shares_b * 0.70) / e2 + 0 / e3) / 3
    )
    assert m["fees_paid"] == pytest.approx(1 + 1 + proceeds_b * 0.01)
    assert m["days"] == 3
    assert m["groups_considered"] == 3 and m["groups_skipped"] == 1
    assert result.skipped[0]["group_id"] == "C"
    assert m["sanity_warning"] is None


def test_fraction_sizing_is_capped_by_cash_and_tick_slippage() -> None:
    config = StrategyConfig(
        days_before=2,
        initial_capital=1000,
        sizing="fraction",
        fraction=0.5,
        slippage_ticks=1,  # +0.01 to buy, -0.01 to sell
        stop_loss=0.20,
    )
    result = run_backtest(config, groups(), PriceSeries.from_points(POINTS))
    ta, tb = result.trades.to_pylist()
    # A: 0.5 x 1000 = 500 at 0.50 + 0.01 = 0.51 -> 980.392 shares; cash 500.
    assert ta["stake"] == pytest.approx(500) and ta["entry_price"] == pytest.approx(0.51)
    # B at 03-09: equity = 500 + 980.392 x 0.60 = 1088.24 -> 0.5 x = 544.12 > cash 500,
    # so the stake is capped at the 500 of cash; fill 0.70 + 0.01 = 0.71.
    assert tb["stake"] == pytest.approx(500) and tb["entry_price"] == pytest.approx(0.71)
    # B stopped at 0.15 - 0.01 = 0.14; A redeemed at 1.
    final = (500 / 0.71) * 0.14 + (500 / 0.51) * 1.0
    assert tb["exit_price"] == pytest.approx(0.14)
    assert result.metrics["final_equity"] == pytest.approx(final)  # = 1078.98
    assert result.metrics["total_return"] == pytest.approx(final / 1000 - 1)


def test_rules_skip_with_reasons() -> None:
    series = PriceSeries.from_points(POINTS)
    banded = run_backtest(StrategyConfig(days_before=2, min_price=0.6), groups(), series)
    assert banded.metrics["trades"] == 1  # A's 0.50 is below the band, B's 0.70 is in
    assert any("outside [0.6, 1]" in s["reason"] for s in banded.skipped)
    margin = run_backtest(StrategyConfig(days_before=2, min_margin=0.2), groups(), series)
    assert [r["group_id"] for r in margin.trades.to_pylist()] == ["B"]  # A leads by 0.10
    only_b = run_backtest(StrategyConfig(days_before=2, group_ids=["B"]), groups(), series)
    assert only_b.metrics["groups_considered"] == 1
    expensive = run_backtest(
        StrategyConfig(days_before=2, slippage_ticks=40), groups(), series
    )  # 0.70 + 0.40 >= 1: no edge left
    assert any("1 or more" in s["reason"] for s in expensive.skipped)
    dataset = run_backtest(StrategyConfig(days_before=2), groups(), series, dataset_markets={"B2"})
    assert dataset.metrics["groups_considered"] == 1


def test_unresolved_groups_are_skipped_or_marked() -> None:
    open_groups = [
        Group(
            "A", "user", "Group A", None,
            [member("A1", False, t(10), resolved=False), member("A2", False, t(10), False)],
        )
    ]  # fmt: skip
    series = PriceSeries.from_points(POINTS)
    assert run_backtest(StrategyConfig(days_before=2), open_groups, series).metrics["trades"] == 0
    marked = run_backtest(
        StrategyConfig(days_before=2, require_resolved=False, stake=51), open_groups, series
    )
    trade = marked.trades.to_pylist()[0]
    # No payout known: sold on the end date at the last price then (0.80 at 03-09 12h).
    assert trade["exit_reason"] == "unresolved_mark"
    assert trade["pnl"] == pytest.approx(51 / 0.50 * 0.80 - 51)


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValidationError, match="min_price"):
        StrategyConfig(min_price=0.9, max_price=0.5)
    with pytest.raises(ValidationError, match="not both"):
        StrategyConfig(slippage_bps=10, slippage_ticks=1)
    with pytest.raises(ValidationError, match="fee_bps"):
        StrategyConfig(fee_bps=-1)
    with pytest.raises(ValidationError, match=r"unknown_field|extra"):
        StrategyConfig.model_validate({"unknown_field": 1})


def test_equity_png_is_a_small_png() -> None:
    result = run_backtest(StrategyConfig(days_before=2), groups(), PriceSeries.from_points(POINTS))
    png = equity_png(result.equity, "test")
    assert png.startswith(b"\x89PNG") and len(png) < 60_000


def test_a_fifty_fifty_resolution_pays_half_per_share() -> None:
    split = member("A1", False, t(10))
    split.yes_payout = 0.5  # resolved 50/50: neither won, each Yes share pays 0.5
    fifty_fifty = [Group("A", "user", "Group A", None, [split, member("A2", False, t(10))])]
    result = run_backtest(
        StrategyConfig(days_before=2, stake=51), fifty_fifty, PriceSeries.from_points(POINTS)
    )
    trade = result.trades.to_pylist()[0]
    # Bought A1 at 0.50 on 03-08 (102 shares), redeemed at 0.5 on 03-10: nothing gained.
    assert (trade["exit_reason"], trade["exit_price"]) == ("resolution", 0.5)
    assert trade["pnl"] == pytest.approx(51 / 0.50 * 0.5 - 51)
    assert trade["favorite_won"] is False
