"""The average-cost ledger: a hand-computed ledger, a property test, bad input."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polymkt_dagster.lib.positions import PositionsInputError, run_ledger


@dataclass
class ReferencePosition:
    """The pnl-subgraph's rules, one fill at a time (the obvious, slow implementation)."""

    shares: float = 0.0
    avg: float = 0.0
    realized: float = 0.0
    oversold: float = 0.0

    def buy(self, q: float, p: float, fee: float = 0.0) -> None:
        cost = self.shares * self.avg + q * p + fee
        self.shares += q
        self.avg = cost / self.shares

    def sell(self, q: float, p: float, fee: float = 0.0) -> None:
        tracked = min(q, self.shares)
        self.realized += tracked * (p - self.avg) + (q - tracked) * p - fee
        self.oversold += q - tracked
        self.shares -= tracked


ENGINES = ["scan", "loop"]


@pytest.mark.parametrize("engine", ENGINES)
def test_hand_computed_ledger(engine: str) -> None:
    # Two tokens of one wallet (groups 1 and 2).
    # Group 1 (will win, payout 1):
    #   buy 100 @ 0.40            -> 100 sh, avg 0.40
    #   buy 300 @ 0.60            -> 400 sh, avg (40 + 180) / 400 = 0.55
    #   sell 100 @ 0.70, fee 1    -> realized 100 x 0.15 - 1 = 14, 300 sh, avg 0.55
    #   buy 100 @ 0.35            -> 400 sh, avg (165 + 35) / 400 = 0.50
    #   sell 500 @ 0.80           -> tracked 400: 400 x 0.30 = 120; oversold 100 x 0.80 = 80
    #                                realized 200, 0 sh
    #   buy 50 @ 0.90             -> 50 sh, avg 0.90 (fresh position)
    # Group 2 (will lose, payout 0):
    #   buy 200 @ 0.30, fee 2     -> 200 sh, avg (60 + 2) / 200 = 0.31
    #   sell 50 @ 0.20            -> realized 50 x (0.20 - 0.31) = -5.5, 150 sh, avg 0.31
    group = np.array([1, 1, 1, 1, 1, 1, 2, 2])
    is_buy = np.array([True, True, False, True, False, True, True, False])
    shares = np.array([100, 300, 100, 100, 500, 50, 200, 50], dtype=float)
    price = np.array([0.40, 0.60, 0.70, 0.35, 0.80, 0.90, 0.30, 0.20])
    fee = np.array([0, 0, 1, 0, 0, 0, 2, 0], dtype=float)
    ledger = run_ledger(group, is_buy, shares, price, fee, engine=engine)

    np.testing.assert_allclose(ledger.shares_after, [100, 400, 300, 400, 0, 50, 200, 150])
    np.testing.assert_allclose(ledger.avg_after, [0.40, 0.55, 0.55, 0.50, 0.50, 0.90, 0.31, 0.31])
    np.testing.assert_allclose(ledger.realized, [0, 0, 14, 0, 200, 0, 0, -5.5], atol=1e-9)
    np.testing.assert_allclose(ledger.oversold, [0, 0, 0, 0, 100, 0, 0, 0])
    np.testing.assert_allclose(ledger.tracked_sold, [0, 0, 100, 0, 400, 0, 0, 50])
    assert ledger.group_start.tolist() == [True, False, False, False, False, False, True, False]
    assert ledger.group_end.tolist() == [False, False, False, False, False, True, False, True]

    # Resolution: group 1 wins (50 sh at avg 0.90 settle at 1 -> +5), group 2 loses
    # (150 sh at avg 0.31 settle at 0 -> -46.5).
    settle_1 = ledger.shares_after[5] * (1.0 - ledger.avg_after[5])
    settle_2 = ledger.shares_after[7] * (0.0 - ledger.avg_after[7])
    assert settle_1 == pytest.approx(5.0)
    assert settle_2 == pytest.approx(-46.5)
    realized_1 = ledger.realized[:6].sum() + settle_1
    realized_2 = ledger.realized[6:].sum() + settle_2
    assert realized_1 == pytest.approx(219.0)
    assert realized_2 == pytest.approx(-52.0)
    # Cash check for group 1: paid 40 + 180 + 35 + 45 = 300, received 70 - 1 + 400 + 50 = 519
    assert realized_1 == pytest.approx(519.0 - 300.0)


@pytest.mark.parametrize("engine", ENGINES)
def test_sell_first_is_an_oversell_against_zero_cost(engine: str) -> None:
    ledger = run_ledger(np.array([7, 7]), np.array([False, True]), np.array([10.0, 5.0]),
                        np.array([0.6, 0.5]), engine=engine)  # fmt: skip
    assert ledger.realized[0] == pytest.approx(6.0)
    assert ledger.oversold[0] == pytest.approx(10.0)
    assert ledger.shares_after.tolist() == [0.0, 5.0]
    assert ledger.avg_after[1] == pytest.approx(0.5)


def test_bad_input_names_the_row() -> None:
    with pytest.raises(PositionsInputError, match="row 1: shares must be positive"):
        run_ledger(np.array([1, 1]), np.array([True, True]), np.array([1.0, 0.0]),
                   np.array([0.5, 0.5]))  # fmt: skip
    with pytest.raises(PositionsInputError, match="not sorted"):
        run_ledger(np.array([2, 1]), np.array([True, True]), np.array([1.0, 1.0]),
                   np.array([0.5, 0.5]))  # fmt: skip
    with pytest.raises(PositionsInputError, match="row 0: price"):
        run_ledger(np.array([1]), np.array([True]), np.array([1.0]), np.array([math.nan]))


fill = st.tuples(
    st.integers(min_value=0, max_value=3),  # group
    st.booleans(),  # is_buy
    st.integers(min_value=1, max_value=5_000_000_000).map(lambda micro: micro / 1e6),
    st.integers(min_value=1, max_value=99).map(lambda cents: cents / 100),
    st.sampled_from([0.0, 0.0, 0.25, 1.0]),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(fill, min_size=1, max_size=80), st.lists(st.floats(0.01, 0.99), min_size=4,
       max_size=4))  # fmt: skip
def test_pnl_equals_cash_flows_plus_marked_value(fills: list, marks: list[float]) -> None:
    fills = sorted(fills, key=lambda f: f[0])  # stable: keeps time order inside a group
    group = np.array([f[0] for f in fills])
    is_buy = np.array([f[1] for f in fills])
    shares = np.array([f[2] for f in fills])
    price = np.array([f[3] for f in fills])
    fee = np.array([f[4] for f in fills])
    ledger = run_ledger(group, is_buy, shares, price, fee, engine="scan")
    compiled = run_ledger(group, is_buy, shares, price, fee, engine="loop")
    for field in ("shares_after", "avg_after", "realized", "oversold", "tracked_sold"):
        np.testing.assert_allclose(
            getattr(compiled, field), getattr(ledger, field), rtol=1e-9, atol=1e-6
        )
    assert compiled.group_start.tolist() == ledger.group_start.tolist()

    for g in np.unique(group):
        rows = np.flatnonzero(group == g)
        ref = ReferencePosition()
        cash = 0.0
        for i in rows:
            if is_buy[i]:
                ref.buy(shares[i], price[i], fee[i])
                cash -= shares[i] * price[i] + fee[i]
            else:
                ref.sell(shares[i], price[i], fee[i])
                cash += shares[i] * price[i] - fee[i]
            assert ledger.shares_after[i] == pytest.approx(ref.shares, abs=1e-6)
            if ref.shares > 0:
                assert ledger.avg_after[i] == pytest.approx(ref.avg, rel=1e-9)
        last = rows[-1]
        realized = ledger.realized[rows].sum()
        mark = marks[int(g)]
        held = ledger.shares_after[last]
        unrealized = held * (mark - ledger.avg_after[last])
        assert realized == pytest.approx(ref.realized, rel=1e-9, abs=1e-6)
        assert ledger.oversold[rows].sum() == pytest.approx(ref.oversold, abs=1e-6)
        assert held >= 0
        assert realized + unrealized == pytest.approx(cash + held * mark, rel=1e-9, abs=1e-6)


def test_reflected_walk_closed_form_equals_the_scan() -> None:
    from polymkt_dagster.lib.positions import _reflected_walk, _reflected_walk_scan

    rng = np.random.default_rng(3)
    group = np.sort(rng.integers(0, 300, 5_000))
    delta = rng.integers(-5_000_000, 5_000_000, 5_000).astype(float)
    starts = np.ones(len(group), dtype=bool)
    starts[1:] = group[1:] != group[:-1]
    np.testing.assert_array_equal(
        _reflected_walk(delta, starts), _reflected_walk_scan(delta, starts)
    )


def test_sorted_fills_order_groups_by_time_and_fall_back_when_files_are_unsorted() -> None:
    """The counting sort keeps lake order within a (wallet, token) group; when that order
    is not by time (an unsorted file), the full sort gives (time, file row) order."""
    from polymkt_dagster.lib.positions import _RawFills, _sorted_fills

    raw = _RawFills.allocate(6)
    raw.wid[:] = [1, 0, 1, 0, 1, 0]
    raw.tid[:] = [0, 0, 0, 0, 0, 0]
    raw.keep[:] = [True, True, True, True, True, False]
    raw.column("ts")[:] = [10, 10, 20, 30, 20, 5]
    raw.column("frn")[:] = [0, 1, 2, 3, 1, 0]
    raw.column("is_buy")[:] = True
    raw.column("shares")[:] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    raw.column("price")[:] = 0.5
    raw.column("fee")[:] = 0.0
    rows = _sorted_fills(raw, wallet_count=2, token_count=1)
    # wallet 1: (20, row 1) sorts before (20, row 2) although it came later in the lake
    assert rows["shares"].tolist() == [2.0, 4.0, 1.0, 5.0, 3.0]
    assert rows["gkey"].tolist() == [0, 0, 1 << 32, 1 << 32, 1 << 32]
    raw.column("ts")[4] = 25  # now lake order is time order within every group
    assert _sorted_fills(raw, 2, 1)["shares"].tolist() == [2.0, 4.0, 1.0, 3.0, 5.0]


def test_numbering_keeps_earlier_numbers_and_sorts_at_the_end() -> None:
    import pyarrow as pa

    from polymkt_dagster.lib.positions import _Numbering

    numbering = _Numbering()
    first = numbering.add([pa.array(["b", "a"]), pa.array(["c", "b"])])
    second = numbering.add([pa.array(["d", "a"])])
    assert [ids.tolist() for ids in first] == [[0, 1], [2, 0]]
    assert second[0].tolist() == [3, 1]  # "a" keeps its number
    values, rank = numbering.sorted()
    assert values.to_pylist() == ["a", "b", "c", "d"]
    assert rank.tolist() == [1, 0, 2, 3]  # b, a, c, d in sorted places
