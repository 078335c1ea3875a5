"""The average-cost ledger (pnl-subgraph rules): hand-computed ledgers with fills and CTF
position events, a property test, bad input."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polymkt_dagster.lib.core.duck import connect
from polymkt_dagster.lib.wallets.ledger import PositionsInputError, run_ledger
from polymkt_dagster.lib.wallets.position_events import (
    KIND_EVENT,
    KIND_EVENT_SELL_ALL,
    KIND_EVENT_SELL_AT_AVG,
    KIND_FILL,
)
from polymkt_dagster.lib.wallets.position_reports import oversell_report
from polymkt_dagster.lib.wallets.positions import compute_positions
from polymkt_dagster_tests.wallet_helpers import (
    BINARY_NO,
    BINARY_YES,
    WALLET,
    build_event_lake,
    token,
)


@dataclass
class ReferencePosition:
    """The pnl-subgraph's rules, one row at a time (the obvious, slow implementation)."""

    shares: float = 0.0
    avg: float = 0.0
    realized: float = 0.0
    oversold: float = 0.0
    oversold_proceeds: float = 0.0

    def buy(self, q: float, p: float, fee: float = 0.0) -> None:
        cost = self.shares * self.avg + q * p + fee
        self.shares += q
        self.avg = cost / self.shares

    def sell(self, q: float, p: float, fee: float = 0.0) -> float:
        """Returns the cash the sell brings in."""
        tracked = min(q, self.shares)
        fee_held = fee * tracked / q if q > 0 else 0.0
        self.realized += tracked * (p - self.avg) - fee_held
        self.oversold += q - tracked
        self.oversold_proceeds += (q - tracked) * p - (fee - fee_held)
        self.shares -= tracked
        return q * p - fee


ENGINES = ["scan", "loop"]


@pytest.mark.parametrize("engine", ENGINES)
def test_hand_computed_ledger(engine: str) -> None:
    # Two tokens of one wallet (groups 1 and 2).
    # Group 1:
    #   buy 100 @ 0.40            -> 100 sh, avg 0.40
    #   buy 300 @ 0.60            -> 400 sh, avg (40 + 180) / 400 = 0.55
    #   sell 100 @ 0.70, fee 1    -> realized 100 x 0.15 - 1 = 14, 300 sh, avg 0.55
    #   buy 100 @ 0.35            -> 400 sh, avg (165 + 35) / 400 = 0.50
    #   sell 500 @ 0.80           -> held 400: realized 400 x 0.30 = 120; the 100 oversold
    #                                shares bring 80, reported apart (never realized); 0 sh
    #   buy 50 @ 0.90             -> 50 sh, avg 0.90 (fresh position)
    # Group 2:
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
    np.testing.assert_allclose(ledger.realized, [0, 0, 14, 0, 120, 0, 0, -5.5], atol=1e-9)
    np.testing.assert_allclose(ledger.oversold, [0, 0, 0, 0, 100, 0, 0, 0])
    np.testing.assert_allclose(ledger.oversold_proceeds, [0, 0, 0, 0, 80, 0, 0, 0], atol=1e-9)
    np.testing.assert_allclose(ledger.tracked_sold, [0, 0, 100, 0, 400, 0, 0, 50])
    assert ledger.group_start.tolist() == [True, False, False, False, False, False, True, False]
    assert ledger.group_end.tolist() == [False, False, False, False, False, True, False, True]
    # Cash check for group 1: paid 40 + 180 + 35 + 45 = 300, received 70 - 1 + 400 = 469,
    # still holds 50 bought for 45: realized 134 + oversold proceeds 80 = cash + that cost
    realized_1, proceeds_1 = ledger.realized[:6].sum(), ledger.oversold_proceeds[:6].sum()
    assert (realized_1, proceeds_1) == (pytest.approx(134.0), pytest.approx(80.0))
    assert realized_1 + proceeds_1 == pytest.approx(469.0 - 300.0 + 45.0)


@pytest.mark.parametrize("engine", ENGINES)
def test_hand_computed_ledger_with_position_events(engine: str) -> None:
    # A binary market: YES is group 1, NO is group 2 (rows of a group in time order).
    #   t1 split 100          -> buy 100 YES @ 0.50 and 100 NO @ 0.50 (pnl-subgraph)
    #   t2 buy 100 YES @ 0.70 -> YES 200 sh, avg (50 + 70) / 200 = 0.60
    #   t3 sell 50 NO @ 0.40  -> realized 50 x (0.40 - 0.50) = -5; NO 50 sh
    #   t4 merge 40           -> sell 40 YES @ 0.50: realized 40 x (0.50 - 0.60) = -4,
    #                            YES 160 sh; sell 40 NO @ 0.50: realized 0, NO 10 sh
    #   t5 sell 200 YES @ 0.90 -> held 160: realized 160 x 0.30 = 48; 40 oversold, their
    #                            36 of proceeds reported apart; YES 0 sh
    #   t6 redemption, NO won (payouts [0, 1]): sells everything held at the payout:
    #                            YES 0 sh -> nothing; NO 10 sh @ 1: realized 10 x 0.5 = 5
    # Realized: YES -4 + 48 = 44, NO -5 + 0 + 5 = 0.
    # Cash: YES paid 50 + 70, got 20 + 180 = +80 = 44 realized + 36 oversold proceeds;
    #       NO paid 50, got 20 + 20 + 10 = 0.
    # YES: split, buy, merge, sell, redemption; NO: split, sell, merge, redemption
    group = np.array([1, 1, 1, 1, 1, 2, 2, 2, 2])
    kind = np.array([KIND_EVENT, KIND_FILL, KIND_EVENT, KIND_FILL, KIND_EVENT_SELL_ALL,
                     KIND_EVENT, KIND_FILL, KIND_EVENT, KIND_EVENT_SELL_ALL])  # fmt: skip
    is_buy = np.array([True, True, False, False, False, True, False, False, False])
    shares = np.array([100, 100, 40, 200, 0, 100, 50, 40, 0], dtype=float)
    price = np.array([0.5, 0.7, 0.5, 0.9, 0.0, 0.5, 0.4, 0.5, 1.0])
    ledger = run_ledger(group, is_buy, shares, price, kind=kind, engine=engine)

    np.testing.assert_allclose(ledger.shares_after, [100, 200, 160, 0, 0, 100, 50, 10, 0])
    np.testing.assert_allclose(ledger.avg_after, [0.5, 0.6, 0.6, 0.6, 0.6, 0.5, 0.5, 0.5, 0.5])
    np.testing.assert_allclose(ledger.realized, [0, 0, -4, 48, 0, 0, -5, 0, 5], atol=1e-9)
    np.testing.assert_allclose(ledger.oversold, [0, 0, 0, 40, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(ledger.oversold_proceeds, [0, 0, 0, 36, 0, 0, 0, 0, 0], atol=1e-9)
    np.testing.assert_allclose(ledger.tracked_sold, [0, 0, 40, 160, 0, 0, 50, 40, 10])
    assert ledger.realized[:5].sum() == pytest.approx(44.0)
    assert ledger.realized[5:].sum() == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("engine", ENGINES)
def test_conversion_no_side_sells_at_its_own_average(engine: str) -> None:
    # buy 100 @ 0.80, then a conversion sells 120 NO at the average: realized 0 on the
    # 100 held; 20 oversold, their proceeds at the average price (16) reported apart
    ledger = run_ledger(np.array([1, 1]), np.array([True, False]), np.array([100.0, 120.0]),
                        np.array([0.8, 0.0]), kind=np.array([KIND_FILL, KIND_EVENT_SELL_AT_AVG]),
                        engine=engine)  # fmt: skip
    np.testing.assert_allclose(ledger.realized, [0, 0], atol=1e-12)
    np.testing.assert_allclose(ledger.oversold_proceeds, [0, 16], atol=1e-9)
    np.testing.assert_allclose(ledger.price, [0.8, 0.8])


@pytest.mark.parametrize("engine", ENGINES)
def test_sell_first_is_an_oversell_outside_realized(engine: str) -> None:
    ledger = run_ledger(np.array([7, 7]), np.array([False, True]), np.array([10.0, 5.0]),
                        np.array([0.6, 0.5]), engine=engine)  # fmt: skip
    assert ledger.realized[0] == 0.0
    assert ledger.oversold[0] == pytest.approx(10.0)
    assert ledger.oversold_proceeds[0] == pytest.approx(6.0)
    assert ledger.shares_after.tolist() == [0.0, 5.0]
    assert ledger.avg_after[1] == pytest.approx(0.5)


def test_lake_ledger_by_hand(tmp_path: Path) -> None:
    """Fills and ctf_events mapped to tokens by condition id, index sets and question index
    (docs/architecture.md §3.1), through compute_positions. Worked out by hand
    (polymkt_dagster_tests/wallet_helpers.build_event_lake has the rows):

    Neg-risk market of 3 questions:
      day 1 buy 100 NO0 @ 0.80 and 100 NO1 @ 0.60 (fills)
      day 2 NegRiskAdapter split 50 of question 2: YES2 and NO2 50 each @ 0.50 (the
            Conditional Tokens split whose stakeholder is the adapter is not the user's)
      day 3 conversion of index set 0b011 (questions 0 and 1), 100 shares: sell NO0 and
            NO1 at their averages (realized 0); noPrice = (0.80 + 0.60) / 2 = 0.70;
            YES price = (0.70 x 2 - 1) / (3 - 2) = 0.40 (computeNegRiskYesPrice); buy
            100 YES2 @ 0.40: YES2 150 sh, avg (25 + 40) / 150 = 0.4333
      day 4 question 2 resolves YES (payouts [1, 0])
      day 5 NegRiskAdapter redemption amounts [150, 50]: YES2 150 @ 1 realizes
            150 x (1 - 0.4333) = 85; NO2 50 @ 0 realizes -25 (the adapter's own
            Conditional Tokens redemption is not the user's)
    Binary market:
      day 2 split 100: YES and NO 100 @ 0.50 each (an exchange's split of 1000 is not a
            user's); sell 120 YES @ 0.70 (fill): 100 held realize 20, 20 oversold bring 14;
            merge 30 in the same second (removals come after the second's fills): YES
            holds nothing, 30 oversold bring 15; NO 70 left, realized 0
      day 4 resolves NO (payouts [0, 1]); never redeemed: NO is redeemable, marked at the
            payout: unrealized 70 x (1 - 0.5) = 35, realized 0
    Wallet: realized 85 - 25 + 20 = 80, oversold proceeds 29, unrealized 35.
    """
    lake = build_event_lake(tmp_path / "parquet")
    with connect() as con:
        table = compute_positions(con, lake, wallets=[WALLET])
    assert table is not None
    rows = {r["token_id"]: r for r in table.to_pylist()}
    expected = {  # token: (shares, avg, realized, oversold shares, proceeds, status)
        token(0, 1): (0, 0.8, 0, 0, 0, "closed"),
        token(1, 1): (0, 0.6, 0, 0, 0, "closed"),
        token(2, 0): (0, 65 / 150, 85, 0, 0, "closed"),
        token(2, 1): (0, 0.5, -25, 0, 0, "closed"),
        BINARY_YES: (0, 0.5, 20, 50, 29, "closed"),
        BINARY_NO: (70, 0.5, 0, 0, 0, "redeemable"),
    }
    assert set(rows) == set(expected)
    for tok, (shares, avg, realized, oversold, proceeds, status) in expected.items():
        row = rows[tok]
        assert row["shares"] == pytest.approx(shares), tok
        assert row["avg_price"] == pytest.approx(avg), tok
        assert row["realized_pnl"] == pytest.approx(realized, abs=1e-9), tok
        assert row["oversold_shares"] == pytest.approx(oversold), tok
        assert row["oversold_proceeds"] == pytest.approx(proceeds, abs=1e-9), tok
        assert row["status"] == status, tok
    assert rows[token(2, 0)]["event_bought_shares"] == pytest.approx(150)
    assert rows[BINARY_YES]["buys"] == 0 and rows[BINARY_YES]["sells"] == 1
    assert rows[BINARY_YES]["position_events"] == 2  # the split and the merge
    no = rows[BINARY_NO]
    assert no["mark_price"] == 1.0 and no["payout"] == 1.0
    assert no["unrealized_pnl"] == pytest.approx(35.0)
    assert no["settlement_pnl"] == pytest.approx(35.0)
    assert no["exposure"] == pytest.approx(70.0)
    assert sum(r["realized_pnl"] for r in rows.values()) == pytest.approx(80.0)
    assert sum(r["oversold_proceeds"] for r in rows.values()) == pytest.approx(29.0)


def test_oversell_report_measures_the_share_of_sell_proceeds(tmp_path: Path) -> None:
    """The hand-made lake: the wallet's sells bring 84 (fill: 120 x 0.70) + 15 + 15
    (merges) + 80 + 60 (conversion's NO sides at their averages) + 150 + 0 (redemption) =
    404, of which 29 from oversold shares (14 + 15): 7.2%; the other wallet only buys."""
    lake = build_event_lake(tmp_path / "parquet")
    with connect() as con:
        con.register("positions", compute_positions(con, lake))
        report = oversell_report(con, "positions")
    assert report.sell_proceeds == pytest.approx(404.0)
    assert report.oversold_proceeds == pytest.approx(29.0)
    assert report.share == pytest.approx(29.0 / 404.0)
    assert report.positions_with_oversells == 1
    assert report.worst.column("wallet").to_pylist() == [WALLET]
    assert report.worst.column("oversold_share").to_pylist() == [pytest.approx(29.0 / 404.0)]


@pytest.mark.parametrize(
    ("payouts", "redeem", "expected"),
    [
        # NO won, redeemed: everything held (70 NO) sells at 1: realized 70 x 0.5 = 35
        ((0, 1), True, {"realized": 35.0, "unrealized": 0.0, "status": "closed", "mark": 1.0}),
        # 50/50 (numerators [1, 1]): 0.5 per outcome; held, marked at 0.5 = its average
        ((1, 1), False, {"realized": 0.0, "unrealized": 0.0, "status": "redeemable",
                         "mark": 0.5}),
        # YES won, never redeemed: the 70 NO are worth 0, a loss of 35 until redeemed
        ((1, 0), False, {"realized": 0.0, "unrealized": -35.0, "status": "redeemable",
                         "mark": 0.0}),
    ],
)  # fmt: skip
def test_binary_market_settles_at_the_chain_payout(
    tmp_path: Path, payouts: tuple[int, int], redeem: bool, expected: dict
) -> None:
    """The binary market of test_lake_ledger_by_hand (70 NO held at 0.50 after day 2)."""
    lake = build_event_lake(tmp_path / "parquet", binary_payouts=payouts, redeem_binary=redeem)
    with connect() as con:
        table = compute_positions(con, lake, wallets=[WALLET])
    assert table is not None
    row = {r["token_id"]: r for r in table.to_pylist()}[BINARY_NO]
    assert row["realized_pnl"] == pytest.approx(expected["realized"], abs=1e-9)
    assert row["unrealized_pnl"] == pytest.approx(expected["unrealized"], abs=1e-9)
    assert row["status"] == expected["status"]
    assert row["mark_price"] == pytest.approx(expected["mark"])
    assert row["shares"] == (0.0 if redeem else pytest.approx(70.0))


def test_bad_input_names_the_row() -> None:
    with pytest.raises(PositionsInputError, match="row 1: shares must be positive"):
        run_ledger(np.array([1, 1]), np.array([True, True]), np.array([1.0, 0.0]),
                   np.array([0.5, 0.5]))  # fmt: skip
    with pytest.raises(PositionsInputError, match="not sorted"):
        run_ledger(np.array([2, 1]), np.array([True, True]), np.array([1.0, 1.0]),
                   np.array([0.5, 0.5]))  # fmt: skip
    with pytest.raises(PositionsInputError, match="row 0: price"):
        run_ledger(np.array([1]), np.array([True]), np.array([1.0]), np.array([math.nan]))


ACTIONS = [
    (True, KIND_FILL), (False, KIND_FILL),  # fills
    (True, KIND_EVENT), (False, KIND_EVENT),  # split / merge, a conversion's YES side
    (False, KIND_EVENT_SELL_ALL),  # a Conditional Tokens redemption
    (False, KIND_EVENT_SELL_AT_AVG),  # a conversion's NO side
]  # fmt: skip
row = st.tuples(
    st.integers(min_value=0, max_value=3),  # group
    st.sampled_from(ACTIONS),
    st.integers(min_value=1, max_value=5_000_000_000).map(lambda micro: micro / 1e6),
    st.integers(min_value=-50, max_value=100).map(lambda cents: cents / 100),
    st.sampled_from([0.0, 0.0, 0.25, 1.0]),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(row, min_size=1, max_size=80), st.lists(st.floats(0.01, 0.99), min_size=4,
       max_size=4))  # fmt: skip
def test_pnl_equals_cash_flows_plus_marked_value(rows: list, marks: list[float]) -> None:
    """Fills and position events in any order: both engines agree with the row-at-a-time
    reference, and realized + oversold proceeds + unrealized = cash flows + marked value
    (a split, merge, redemption or conversion side moves cash at its price)."""
    rows = sorted(rows, key=lambda r: r[0])  # stable: keeps time order inside a group
    group = np.array([r[0] for r in rows])
    is_buy = np.array([r[1][0] for r in rows])
    kind = np.array([r[1][1] for r in rows], dtype=np.int8)
    shares = np.array([r[2] for r in rows])
    # fills trade in [0.01, 1]; events may carry a negative conversion price; events pay
    # no fee, and a redemption of everything names no amount
    price = np.array([abs(r[3]) or 0.01 if r[1][1] == KIND_FILL else r[3] for r in rows])
    fee = np.array([r[4] if r[1][1] == KIND_FILL else 0.0 for r in rows])
    shares = np.where(kind == KIND_EVENT_SELL_ALL, 0.0, shares)
    ledger = run_ledger(group, is_buy, shares, price, fee, kind=kind, engine="scan")
    compiled = run_ledger(group, is_buy, shares, price, fee, kind=kind, engine="loop")
    for field in ("shares_after", "avg_after", "realized", "oversold", "tracked_sold",
                  "oversold_proceeds", "price"):  # fmt: skip
        np.testing.assert_allclose(
            getattr(compiled, field), getattr(ledger, field), rtol=1e-9, atol=1e-6
        )
    assert compiled.group_start.tolist() == ledger.group_start.tolist()

    for g in np.unique(group):
        members = np.flatnonzero(group == g)
        ref = ReferencePosition()
        cash = 0.0
        for i in members:
            if is_buy[i]:
                ref.buy(shares[i], price[i], fee[i])
                cash -= shares[i] * price[i] + fee[i]
            else:
                q = ref.shares if kind[i] == KIND_EVENT_SELL_ALL else shares[i]
                p = ref.avg if kind[i] == KIND_EVENT_SELL_AT_AVG else price[i]
                cash += ref.sell(q, p, fee[i])
            assert ledger.shares_after[i] == pytest.approx(ref.shares, abs=1e-6)
            if ref.shares > 0:
                assert ledger.avg_after[i] == pytest.approx(ref.avg, rel=1e-9, abs=1e-9)
        last = members[-1]
        realized = ledger.realized[members].sum()
        proceeds = ledger.oversold_proceeds[members].sum()
        mark = marks[int(g)]
        held = ledger.shares_after[last]
        unrealized = held * (mark - ledger.avg_after[last])
        assert realized == pytest.approx(ref.realized, rel=1e-9, abs=1e-6)
        assert proceeds == pytest.approx(ref.oversold_proceeds, rel=1e-9, abs=1e-6)
        assert ledger.oversold[members].sum() == pytest.approx(ref.oversold, abs=1e-6)
        assert held >= 0
        assert realized + proceeds + unrealized == pytest.approx(
            cash + held * mark, rel=1e-9, abs=1e-5
        )


def test_reflected_walk_closed_form_equals_the_scan() -> None:
    from polymkt_dagster.lib.wallets.ledger import _reflected_walk, _reflected_walk_scan

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
    from polymkt_dagster.lib.wallets.fill_reader import _RawFills, _sorted_fills

    raw = _RawFills.allocate(6)
    raw.wid[:] = [1, 0, 1, 0, 1, 0]
    raw.tid[:] = [0, 0, 0, 0, 0, 0]
    raw.keep[:] = [True, True, True, True, True, False]
    raw.column("ts")[:] = [10, 10, 20, 30, 20, 5]
    raw.column("frn")[:] = [0, 1, 2, 3, 1, 0]
    raw.column("is_buy")[:] = True
    raw.column("kind")[:] = 0
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

    from polymkt_dagster.lib.wallets.fill_reader import _Numbering

    numbering = _Numbering()
    first = numbering.add([pa.array(["b", "a"]), pa.array(["c", "b"])])
    second = numbering.add([pa.array(["d", "a"])])
    assert [ids.tolist() for ids in first] == [[0, 1], [2, 0]]
    assert second[0].tolist() == [3, 1]  # "a" keeps its number
    values, rank = numbering.sorted()
    assert values.to_pylist() == ["a", "b", "c", "d"]
    assert rank.tolist() == [1, 0, 2, 3]  # b, a, c, d in sorted places
