"""The average-cost ledger of wallet positions (docs/architecture.md §5): its rules, its row
types and the vectorised numpy form; the same pass compiled by numba is in
``ledger_kernels.py``. This module knows nothing of the lake: it turns sorted rows into
per-row shares, average price and realized P&L (``run_ledger``).

The rules are Polymarket's pnl-subgraph (Polymarket/polymarket-subgraph, ``pnl-subgraph/src``):

- Fills (``ExchangeMapping.ts``, ``utils/parseOrderFilled.ts``): a wallet is credited only
  with the fill rows where it is the ``maker``; ``maker_direction`` is its side. Shares are
  tracked per (wallet, outcome token). A buy adds shares and cost (``utils/
  updateUserPositionWithBuy.ts``); here its fee is added to the cost too (the subgraph
  ignores fees), so it raises the average price.
- A sell (``utils/updateUserPositionWithSell.ts``) realizes ``(price - avg_price) x
  min(amount, held)`` and leaves ``avg_price`` unchanged; a fill's fee is deducted from
  it, pro rata to the shares held. Shares sold beyond what is held are an *oversell* (a
  data gap: the subgraph gives no P&L for "tokens obtained outside of what we track"):
  counted per row and position, their proceeds reported in ``oversold_proceeds``, never
  in realized P&L; the position stops at zero shares, never below.
- Position events from ``ctf_events`` (docs/architecture.md §3.1; ``lib/wallets/position_events.py``
  turns them into ledger rows): a split buys every outcome at 0.50, a merge sells every
  outcome at 0.50 (``ConditionalTokensMapping.ts``, ``NegRiskAdapterMapping.ts``); a
  Conditional Tokens redemption sells the whole held amount of every outcome at its payout
  (numerator / denominator), a NegRiskAdapter redemption sells ``amounts[i]``; a neg-risk
  conversion sells the NO shares of the converted questions at their own average price
  and buys YES shares of the other questions at ``utils/computeNegRiskYesPrice.ts``'s
  price (resolved by ``ledger_input._resolve_conversion_prices`` before the main pass).
- A resolved market's remaining shares are not realized until redeemed (as on chain): the
  position is ``redeemable``, marked at its payout (unrealized; ``positions.py``). Open
  positions are marked at the token's last trade price at or before the time asked for
  (any wallet's fill).

The average cost is path dependent, so it cannot be a plain window aggregate. With numba
(a pinned dependency) one compiled pass per chunk of positions carries it; without numba
two recurrences, both solved as parallel prefix scans in numpy (O(n log L) for the longest
history L, no Python loop per fill), give the same numbers:

- shares ``S_k = max(0, S_{k-1} + d_k)``: a (max, +) affine map per row, composed by scan;
- average price over the buys ``A_k = a_k A_{k-1} + (1 - a_k) p_k`` with
  ``a_k = S_before / S_after``: an affine map per buy, composed by scan (sells keep A).

Both compositions only multiply by numbers in [0, 1] or add exact integers (shares are
micro-share integers held in float64, exact below 2^53), so they are numerically stable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from polymkt_dagster.lib.core.schemas import AMOUNT_SCALE
from polymkt_dagster.lib.wallets import ledger_kernels
from polymkt_dagster.lib.wallets.position_events import (
    KIND_EVENT_SELL_ALL,
    KIND_EVENT_SELL_AT_AVG,
    KIND_FILL,
)

MICRO = float(AMOUNT_SCALE)


class PositionsInputError(ValueError):
    """Fill arrays that the ledger cannot account for (names the row and field)."""


@dataclass(frozen=True)
class LedgerColumns:
    """Per-row results of the average-cost ledger, aligned with the sorted input."""

    shares_before: np.ndarray  # float64, shares held before the row
    shares_after: np.ndarray
    avg_before: np.ndarray  # average price before the row (0 when nothing held yet)
    avg_after: np.ndarray
    realized: np.ndarray  # P&L realized by the row on the shares held (sells; 0 for buys)
    tracked_sold: np.ndarray  # shares of a sell matched against the tracked position
    oversold: np.ndarray  # shares of a sell beyond the tracked position
    oversold_proceeds: np.ndarray  # what those shares brought in (never realized P&L)
    price: np.ndarray  # the price the row traded at (a conversion's NO sell: avg_before)
    group_start: np.ndarray  # bool, first row of its (wallet, token) group
    group_end: np.ndarray  # bool, last row of its group


def validate_ledger_rows(
    group: np.ndarray,
    is_buy: np.ndarray,
    kind: np.ndarray,
    shares: np.ndarray,
    price: np.ndarray,
    fee: np.ndarray,
    first_row: int = 0,
) -> None:
    """Raise PositionsInputError naming the first bad row (counted from ``first_row``, the
    place of these arrays in a larger input). Fill prices are in [0, inf); an event's price
    may be negative (a conversion's YES price by the subgraph's formula can be); a
    sell-everything row carries no amount."""
    n = len(group)
    for name, arr in (
        ("is_buy", is_buy), ("kind", kind), ("shares", shares), ("price", price), ("fee", fee)
    ):  # fmt: skip
        if len(arr) != n:
            raise PositionsInputError(f"{name} has {len(arr)} rows, group has {n}")
    if n and np.any(group[1:] < group[:-1]):
        row = int(np.flatnonzero(group[1:] < group[:-1])[0]) + 1
        raise PositionsInputError(f"fills are not sorted by group (row {row + first_row})")
    sell_all = kind == KIND_EVENT_SELL_ALL
    fill = kind == KIND_FILL
    for name, bad, ok in (
        ("kind", (kind < KIND_FILL) | (kind > KIND_EVENT_SELL_AT_AVG), "must be 0-3"),
        ("shares", ~np.isfinite(shares) | np.where(sell_all, shares < 0, shares <= 0),
         "must be positive"),
        ("price", ~np.isfinite(price) | (fill & (price < 0)), "must be >= 0"),
        ("fee", ~np.isfinite(fee) | (fee < 0), "must be >= 0"),
    ):  # fmt: skip
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            values = {"kind": kind, "shares": shares, "price": price, "fee": fee}[name]
            raise PositionsInputError(f"row {row + first_row}: {name} {ok}, got {values[row]!r}")


def _longest_run(starts: np.ndarray) -> int:
    if len(starts) == 0:
        return 0
    idx = np.flatnonzero(starts)
    return int(np.diff(np.append(idx, len(starts))).max())


def _reflected_walk_scan(delta: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """S_k = max(0, S_{k-1} + delta_k) by a (max, +) prefix scan (any magnitudes).

    Each row is the map x -> max(c, x + e) (c = 0, e = delta; a group's first row is the
    constant max(0, delta)); maps compose as (c1, e1) then (c2, e2) = (max(c2, c1 + e2),
    e1 + e2). A Hillis-Steele inclusive scan runs until the step covers the longest group.
    """
    c = np.where(starts, np.maximum(delta, 0.0), 0.0)
    e = np.where(starts, -np.inf, delta)
    longest = _longest_run(starts)
    step = 1
    while step < longest:
        new_c = np.maximum(c[step:], c[:-step] + e[step:])
        new_e = e[:-step] + e[step:]
        c[step:] = new_c
        e[step:] = new_e
        step *= 2
    return c


def _reflected_walk(delta: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """S_k = max(0, S_{k-1} + delta_k), S = 0 before each group's first row.

    Closed form: S_k = X_k - min(0, min_{j<=k} X_j) with X the in-group running sum. The
    in-group running minimum comes from one global ``minimum.accumulate`` after shifting
    each group's values below every earlier group's (exact int64 arithmetic on
    micro-shares). Totals too large for int64 fall back to the prefix scan.
    """
    n = len(delta)
    if n == 0:
        return np.zeros(0)
    if float(np.abs(delta).sum()) * 2 + n >= 2**62:
        return _reflected_walk_scan(delta, starts)
    d = delta.astype(np.int64)
    group = np.cumsum(starts) - 1
    x = np.cumsum(d)
    first = np.flatnonzero(starts)
    before = np.where(first > 0, x[first - 1], 0)
    x -= before[group]  # in-group running sums
    hi = np.maximum(np.maximum.reduceat(x, first), 0)
    lo = np.minimum(np.minimum.reduceat(x, first), 0)
    # group g's values lie in [lo_g, hi_g]; shift them strictly below group g-1's range
    shift = np.zeros(len(first), dtype=np.int64)
    if len(first) > 1:
        shift[1:] = np.cumsum(lo[:-1] - hi[1:] - 1)
    running = np.minimum.accumulate(x + shift[group]) - shift[group]
    return (x - np.minimum(running, 0)).astype(np.float64)


def _affine_scan(a: np.ndarray, b: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """x_k = a_k x_{k-1} + b_k with a = 0 on each group's first row; returns x.

    Hillis-Steele over the rows still needing work: at step s only rows at least s
    positions into their group change, so short groups (most of them) drop out early.
    Composition of (a1, b1) then (a2, b2) is (a1 a2, a2 b1 + b2); every a is in [0, 1].
    """
    a = a.copy()
    b = b.copy()
    n = len(a)
    if n == 0:
        return b
    first = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    position = np.arange(n) - first
    active = np.flatnonzero(position >= 1)
    step = 1
    while len(active):
        previous = active - step
        new_b = a[active] * b[previous] + b[active]
        new_a = a[active] * a[previous]
        b[active] = new_b
        a[active] = new_a
        step *= 2
        active = active[position[active] >= step]
    return b


def _shift_in_group(values: np.ndarray, starts: np.ndarray, fill: float) -> np.ndarray:
    out = np.empty_like(values)
    if len(values):
        out[0] = fill
        out[1:] = values[:-1]
        out[starts] = fill
    return out


def run_ledger(
    group: np.ndarray,
    is_buy: np.ndarray,
    shares: np.ndarray,
    price: np.ndarray,
    fee: np.ndarray | None = None,
    *,
    kind: np.ndarray | None = None,
    engine: str = "auto",
) -> LedgerColumns:
    """Average-cost accounting over rows sorted by (group, time).

    ``group`` identifies the (wallet, token) of each row (any sortable integer), ``shares``
    are share amounts (> 0; ignored by a sell-everything row), ``price`` USDC per share,
    ``fee`` USDC (default 0), ``kind`` what each row is (``KIND_*``, default: all fills).
    ``engine``: "scan" (numpy prefix scans), "loop" (one compiled pass, numba) or "auto"
    (the compiled pass when numba is there). Both give the same numbers (tested).
    """
    if engine not in ("auto", "scan", "loop"):
        raise ValueError(f"engine must be auto, scan or loop, not {engine!r}")
    compiled = ledger_kernels.compiled_ledger
    if engine == "loop" and compiled is None:
        raise PositionsInputError("engine 'loop' needs numba")
    use_loop = engine == "loop" or (engine == "auto" and compiled is not None)
    group = np.asarray(group)
    is_buy = np.asarray(is_buy, dtype=bool)
    n = len(group)
    kind = np.zeros(n, np.int8) if kind is None else np.asarray(kind, dtype=np.int8)
    raw_shares = np.asarray(shares, dtype=np.float64)
    # micro-shares as exact integers in float64: sums of them stay exact below 2^53
    shares = np.rint(raw_shares * MICRO)
    price = np.asarray(price, dtype=np.float64)
    fee = np.zeros(n) if fee is None else np.asarray(fee, np.float64)
    if np.isnan(fee).any():  # a missing fee is no fee
        fee = np.nan_to_num(fee, nan=0.0, posinf=np.inf, neginf=-np.inf)
    validate_ledger_rows(group, is_buy, kind, shares, price, fee)

    if use_loop:
        assert compiled is not None
        out = np.empty((9, n))
        starts = np.empty(n, dtype=bool)
        compiled(group, is_buy, kind, raw_shares, price, fee, MICRO, out, starts)
        out[(0, 1, 5, 6), :] /= MICRO
        return LedgerColumns(
            shares_before=out[0],
            shares_after=out[1],
            avg_before=out[2],
            avg_after=out[3],
            realized=out[4],
            tracked_sold=out[5],
            oversold=out[6],
            oversold_proceeds=out[7],
            price=out[8],
            group_start=starts,
            group_end=_group_ends(starts),
        )
    starts = np.ones(n, dtype=bool)
    if n > 1:
        starts[1:] = group[1:] != group[:-1]

    sell_all = ~is_buy & (kind == KIND_EVENT_SELL_ALL)
    # a redemption of everything: a drop larger than anything the group can hold
    everything = float(np.where(is_buy, shares, 0.0).sum()) + 1.0
    delta = np.where(is_buy, shares, -np.where(sell_all, everything, shares))
    s_after = _reflected_walk(delta, starts)
    s_before = _shift_in_group(s_after, starts, 0.0)
    asked = np.where(sell_all, s_before, shares)
    tracked = np.where(is_buy, 0.0, np.minimum(asked, s_before))
    oversold = np.where(is_buy, 0.0, asked - tracked)

    # Average price: only buys change it, so scan over the buys alone and carry it forward.
    buy_idx = np.flatnonzero(is_buy)
    avg_after = np.zeros(n)
    if len(buy_idx):
        buy_group = group[buy_idx]
        buy_starts = np.ones(len(buy_idx), dtype=bool)
        buy_starts[1:] = buy_group[1:] != buy_group[:-1]
        s_pre = s_before[buy_idx]
        s_post = s_after[buy_idx]
        q = shares[buy_idx]
        # fee raises the cost of a buy: effective price per share
        effective = price[buy_idx] + fee[buy_idx] * MICRO / q
        a = np.where(buy_starts | (s_post <= 0), 0.0, s_pre / np.where(s_post > 0, s_post, 1.0))
        b = (1.0 - a) * effective
        avg_buys = _affine_scan(a, b, buy_starts)
        # carry each buy's average forward to later rows of the same group
        last_buy = np.full(n, -1, dtype=np.int64)
        last_buy[buy_idx] = np.arange(len(buy_idx))
        last_buy = np.maximum.accumulate(last_buy)
        group_first = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
        valid = last_buy >= 0
        valid[valid] &= buy_idx[last_buy[valid]] >= group_first[valid]
        avg_after[valid] = avg_buys[last_buy[valid]]
    avg_before = _shift_in_group(avg_after, starts, 0.0)

    used_price = np.where(~is_buy & (kind == KIND_EVENT_SELL_AT_AVG), avg_before, price)
    fee_held = np.where(asked > 0, fee * tracked / np.where(asked > 0, asked, 1.0), 0.0)
    realized = np.where(is_buy, 0.0, tracked * (used_price - avg_before) / MICRO - fee_held)
    proceeds = np.where(is_buy, 0.0, oversold * used_price / MICRO - (fee - fee_held))
    return LedgerColumns(
        shares_before=s_before / MICRO,
        shares_after=s_after / MICRO,
        avg_before=avg_before,
        avg_after=avg_after,
        realized=realized,
        tracked_sold=tracked / MICRO,
        oversold=oversold / MICRO,
        oversold_proceeds=proceeds,
        price=used_price,
        group_start=starts,
        group_end=_group_ends(starts),
    )


def _group_ends(starts: np.ndarray) -> np.ndarray:
    """Last row of each group: the row before a group start, and the final row."""
    ends = np.ones(len(starts), dtype=bool)
    ends[:-1] = starts[1:]
    return ends


def ledger_table(fills: pa.Table) -> tuple[pa.Table, LedgerColumns]:
    """Run the ledger over ``load_sorted_fills`` output; returns per-row results too."""
    ledger = run_ledger(
        fills.column("gkey").to_numpy(),
        fills.column("is_buy").to_numpy(zero_copy_only=False),
        fills.column("shares").to_numpy(),
        fills.column("price").to_numpy(),
        fills.column("fee").to_numpy(),
        kind=fills.column("kind").to_numpy(),
    )
    return fills, ledger
