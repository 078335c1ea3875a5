"""Wallet positions and P&L by weighted-average cost (docs/architecture.md §5), vectorised.

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
  price (resolved by ``_resolve_conversion_prices`` before the main pass).
- A resolved market's remaining shares are not realized until redeemed (as on chain): the
  position is ``redeemable``, marked at its payout (unrealized). Open positions are marked
  at the token's last trade price at or before the time asked for (any wallet's fill).

The average cost is path dependent, so it cannot be a plain window aggregate. With numba
(a pinned dependency) one compiled pass per chunk of positions carries it; without numba
two recurrences, both solved as parallel prefix scans in numpy (O(n log L) for the longest
history L, no Python loop per fill), give the same numbers:

- shares ``S_k = max(0, S_{k-1} + d_k)``: a (max, +) affine map per row, composed by scan;
- average price over the buys ``A_k = a_k A_{k-1} + (1 - a_k) p_k`` with
  ``a_k = S_before / S_after``: an affine map per buy, composed by scan (sells keep A).

Both compositions only multiply by numbers in [0, 1] or add exact integers (shares are
micro-share integers held in float64, exact below 2^53), so they are numerically stable.

Reading all wallets' positions is bound by moving tens of millions of rows, so the load
avoids strings per row: the trades files are read with pyarrow into preallocated arrays,
maker and token kept as their Parquet dictionaries (ids come from hashing the dictionaries),
and a counting sort on those ids groups the fills (``load_sorted_fills``). Position events
(a few per hundred fills) are read by DuckDB, numbered with the fills and merged into each
group's time order by a linear pass.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from polymkt_dagster.lib.core.duck import sql_string
from polymkt_dagster.lib.core.lake import Lake, write_atomically
from polymkt_dagster.lib.core.schemas import AMOUNT_SCALE, MARKETS, TRADES
from polymkt_dagster.lib.wallets.position_events import (
    KIND_EVENT,
    KIND_EVENT_SELL_ALL,
    KIND_EVENT_SELL_AT_AVG,
    KIND_FILL,
    EventRows,
    load_event_rows,
    market_resolutions_sql,
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


def _validate(
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


def _ledger_loop(
    group: np.ndarray,
    is_buy: np.ndarray,
    kind: np.ndarray,
    shares: np.ndarray,
    price: np.ndarray,
    fee: np.ndarray,
    micro: float,
    out: np.ndarray,
    starts: np.ndarray,
) -> None:
    """The ledger as one compiled pass over the sorted rows (numba), same rules as the
    scans. ``out`` rows: shares before/after, avg before/after, realized, tracked, oversold,
    oversold proceeds, price (shares in micro-share integers held in float64, avg in USDC
    per share)."""
    held = 0.0
    avg = 0.0
    for i in range(len(group)):
        starts[i] = i == 0 or group[i] != group[i - 1]
        if starts[i]:
            held = 0.0
            avg = 0.0
        out[0, i] = held
        out[2, i] = avg
        q = np.rint(shares[i] * micro)
        p = price[i]
        if is_buy[i]:
            after = held + q
            avg = (held * avg + q * p + fee[i] * micro) / after
            held = after
            out[4, i] = 0.0
            out[5, i] = 0.0
            out[6, i] = 0.0
            out[7, i] = 0.0
        else:
            if kind[i] == KIND_EVENT_SELL_ALL:  # a redemption of everything held
                q = held
            if kind[i] == KIND_EVENT_SELL_AT_AVG:  # a conversion's NO side: at the average
                p = avg
            sold = q if q < held else held
            over = q - sold
            fee_held = fee[i] * sold / q if q > 0 else 0.0
            out[4, i] = sold * (p - avg) / micro - fee_held
            out[5, i] = sold
            out[6, i] = over
            out[7, i] = over * p / micro - (fee[i] - fee_held)
            held -= sold
        out[1, i] = held
        out[3, i] = avg
        out[8, i] = p


def _summary_loop(
    gkey: np.ndarray,
    ts: np.ndarray,
    is_buy: np.ndarray,
    kind: np.ndarray,
    shares: np.ndarray,
    price: np.ndarray,
    fee: np.ndarray,
    micro: float,
    sums: np.ndarray,
    counts: np.ndarray,
    keys: np.ndarray,
) -> int:
    """Per (wallet, token) totals in one compiled pass.

    ``sums`` rows (``_SUMS``): shares, avg, realized, bought/sold shares and usd of the
    fills, fees, oversold shares and proceeds, last fill price, bought/sold shares and usd
    of the position events; ``counts`` rows (``_COUNTS``): buys, sells, oversold rows,
    first ts, last ts, events. Returns the number of groups. The per-row ledger never
    materialises: positions need only its end state.
    """
    g = -1
    held = 0.0
    avg = 0.0
    for i in range(len(gkey)):
        if i == 0 or gkey[i] != gkey[i - 1]:
            g += 1
            held = 0.0
            avg = 0.0
            keys[g] = gkey[i]
            for r in range(sums.shape[0]):
                sums[r, g] = 0.0
            sums[10, g] = np.nan
            counts[0, g] = 0
            counts[1, g] = 0
            counts[2, g] = 0
            counts[3, g] = ts[i]
            counts[5, g] = 0
        q = np.rint(shares[i] * micro)
        p = price[i]
        is_fill = kind[i] == KIND_FILL
        if is_buy[i]:
            after = held + q
            avg = (held * avg + q * p + fee[i] * micro) / after
            held = after
            if is_fill:
                counts[0, g] += 1
                sums[3, g] += shares[i]
                sums[5, g] += shares[i] * p
            else:
                sums[11, g] += shares[i]
                sums[13, g] += shares[i] * p
        else:
            if kind[i] == KIND_EVENT_SELL_ALL:
                q = held
            if kind[i] == KIND_EVENT_SELL_AT_AVG:
                p = avg
            sold = q if q < held else held
            over = q - sold
            fee_held = fee[i] * sold / q if q > 0 else 0.0
            sums[2, g] += sold * (p - avg) / micro - fee_held
            held -= sold
            if is_fill:
                counts[1, g] += 1
                sums[4, g] += shares[i]
                sums[6, g] += shares[i] * p
            else:
                sums[12, g] += q / micro
                sums[14, g] += q / micro * p
            if over > 0:
                counts[2, g] += 1
                sums[8, g] += over / micro
                sums[9, g] += over / micro * p - (fee[i] - fee_held)
        if not is_fill:
            counts[5, g] += 1
        else:
            sums[10, g] = p
        sums[7, g] += fee[i]
        sums[0, g] = held / micro
        sums[1, g] = avg
        counts[4, g] = ts[i]
    return g + 1


def _last_trade_loop(
    gkey: np.ndarray,
    ts: np.ndarray,
    frn: np.ndarray,
    kind: np.ndarray,
    price: np.ndarray,
    mark_key: np.ndarray,
    mark_price: np.ndarray,
) -> None:
    """Each token's last trade (``mark_key``/``mark_price`` per token id, the low 32 bits of
    gkey): the latest (second, in-file row) fill seen and its price; later rows win ties.
    Position events are not trades."""
    for i in range(len(gkey)):
        if kind[i] != KIND_FILL:
            continue
        tid = gkey[i] & 0xFFFFFFFF
        key = (ts[i] // 1000000) * 10000000 + frn[i]
        if key >= mark_key[tid]:
            mark_key[tid] = key
            mark_price[tid] = price[i]


def _group_order_loop(
    wid: np.ndarray,
    tid: np.ndarray,
    keep: np.ndarray,
    wallet_count: int,
    token_count: int,
    order: np.ndarray,
    gkey: np.ndarray,
    by_token: np.ndarray,
    by_token_wallet: np.ndarray,
) -> None:
    """The kept rows ordered by (wallet id, token id), stable, into ``order`` with their
    ``gkey``: two counting-sort passes (token, then wallet) over dense ids, O(n) where a
    comparison sort is O(n log n). The wallet id travels with the first pass's output and
    the token id is its bucket, so the second pass reads sequentially (``by_token*`` are
    scratch arrays of the kept size)."""
    start = np.zeros(token_count + 1, dtype=np.int64)
    for i in range(len(wid)):
        if keep[i]:
            start[tid[i] + 1] += 1
    for k in range(token_count):
        start[k + 1] += start[k]
    fill = start.copy()
    for i in range(len(wid)):
        if keep[i]:
            t = tid[i]
            p = fill[t]
            by_token[p] = i
            by_token_wallet[p] = wid[i]
            fill[t] = p + 1
    count = np.zeros(wallet_count + 1, dtype=np.int64)
    for j in range(len(order)):
        count[by_token_wallet[j] + 1] += 1
    for k in range(wallet_count):
        count[k + 1] += count[k]
    for t in range(token_count):
        for j in range(start[t], start[t + 1]):
            w = by_token_wallet[j]
            p = count[w]
            order[p] = by_token[j]
            gkey[p] = (np.int64(w) << 32) | t
            count[w] = p + 1


def _gather_loop(
    order: np.ndarray,
    gkey: np.ndarray,
    columns: tuple[np.ndarray, ...],
    out: tuple[np.ndarray, ...],
) -> bool:
    """Rows in ``order`` into the ``out`` arrays (ts, frn, is_buy, kind, shares, price,
    fee, as ``columns``); True when every group is in (time, file row) order."""
    ts, frn, is_buy, kind, shares, price, fee = columns
    ts_out, frn_out, buy_out, kind_out, shares_out, price_out, fee_out = out
    in_order = True
    for j in range(len(order)):
        i = order[j]
        ts_out[j] = ts[i]
        frn_out[j] = frn[i]
        buy_out[j] = is_buy[i]
        kind_out[j] = kind[i]
        shares_out[j] = shares[i]
        price_out[j] = price[i]
        fee_out[j] = fee[i]
        earlier = ts_out[j] < ts_out[j - 1] or (
            ts_out[j] == ts_out[j - 1] and frn_out[j] < frn_out[j - 1]
        )
        if j > 0 and gkey[j] == gkey[j - 1] and earlier:
            in_order = False
    return in_order


def _merge_prefix_loop(
    order: np.ndarray, gkey: np.ndarray, ts: np.ndarray, frn: np.ndarray, prefix: int
) -> None:
    """Within each group of ``order`` (raw row numbers grouped by ``gkey``), merge the rows
    below ``prefix`` (opening rows and position events, in time order, first in their group
    since the grouping is stable) into the fill rows after them by (time, file row), in
    place: one linear pass, where sorting every group again would cost O(n log n)."""
    n = len(order)
    scratch = np.empty(0, dtype=order.dtype)
    j = 0
    while j < n:
        k = j + 1
        while k < n and gkey[k] == gkey[j]:
            k += 1
        m = j
        while m < k and order[m] < prefix:
            m += 1
        if j < m < k:
            if len(scratch) < k - j:
                scratch = np.empty(max(k - j, 2 * len(scratch)), dtype=order.dtype)
            a, b, o = j, m, 0
            while a < m and b < k:
                ia, ib = order[a], order[b]
                if ts[ib] < ts[ia] or (ts[ib] == ts[ia] and frn[ib] < frn[ia]):
                    scratch[o] = ib
                    b += 1
                else:
                    scratch[o] = ia
                    a += 1
                o += 1
            while a < m:
                scratch[o] = order[a]
                a += 1
                o += 1
            while b < k:
                scratch[o] = order[b]
                b += 1
                o += 1
            for r in range(k - j):
                order[j + r] = scratch[r]
        j = k


try:  # numba compiles the loop once (cached on disk); without it the prefix scans run
    import numba

    _compiled_loop = numba.njit(cache=True, nogil=True)(_ledger_loop)
    _compiled_summary = numba.njit(cache=True, nogil=True)(_summary_loop)
    _compiled_last_trade = numba.njit(cache=True, nogil=True)(_last_trade_loop)
    _compiled_group_order = numba.njit(cache=True, nogil=True)(_group_order_loop)
    _compiled_gather = numba.njit(cache=True, nogil=True)(_gather_loop)
    _compiled_merge_prefix = numba.njit(cache=True, nogil=True)(_merge_prefix_loop)
except ImportError:  # pragma: no cover - numba is a pinned dependency
    _compiled_loop = None
    _compiled_summary = None
    _compiled_last_trade = None
    _compiled_group_order = None
    _compiled_gather = None
    _compiled_merge_prefix = None


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
    if engine == "loop" and _compiled_loop is None:
        raise PositionsInputError("engine 'loop' needs numba")
    use_loop = engine == "loop" or (engine == "auto" and _compiled_loop is not None)
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
    _validate(group, is_buy, kind, shares, price, fee)

    if use_loop:
        assert _compiled_loop is not None
        out = np.empty((9, n))
        starts = np.empty(n, dtype=bool)
        _compiled_loop(group, is_buy, kind, raw_shares, price, fee, MICRO, out, starts)
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


# ---- reading fills from the lake ---------------------------------------------------------


def token_info_sql(lake: Lake) -> str:
    """Per token: market_id, outcome_index, outcome, resolved, payout, resolved_at.

    The one resolution definition of ``lib/analytics/resolutions.py``: the chain's payouts
    (``ConditionResolution`` numerators / their sum, at that block's time) when the lake
    has them, else Gamma's decision (at ``closed_time``, else ``end_date``); a 50/50
    resolution pays 0.5 per outcome.
    """
    return f"""
        SELECT token_id, market_id, CAST(outcome_index AS INTEGER) AS outcome_index, outcome,
               coalesce(r.resolved, false) AS resolved,
               CAST(r.payouts[outcome_index + 1] AS DOUBLE) AS payout,
               CASE WHEN r.resolved THEN r.resolved_at END AS resolved_at
        FROM (
            SELECT
                unnest(token_ids) AS token_id,
                unnest(generate_series(0, len(token_ids) - 1)) AS outcome_index,
                unnest(CASE WHEN len(outcomes) = len(token_ids) THEN outcomes
                            ELSE list_transform(token_ids, x -> NULL::VARCHAR) END) AS outcome,
                market_id
            FROM {lake.scan_sql(MARKETS)}
            WHERE len(token_ids) > 0
        ) t
        LEFT JOIN ({market_resolutions_sql(lake)}) r USING (market_id)
        QUALIFY row_number() OVER (PARTITION BY token_id ORDER BY market_id) = 1
    """


def register_token_info(con: duckdb.DuckDBPyConnection, lake: Lake, prefix: str) -> str:
    """``token_info_sql`` as the temp table ``{prefix}_info`` (one pass over the markets and
    the chain's resolutions for a whole ledger run); returns its name."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {prefix}_info AS {token_info_sql(lake)}")
    return f"{prefix}_info"


def fills_source_sql(
    lake: Lake, until: datetime | None = None, since: datetime | None = None
) -> str:
    """The trades files up to ``until``'s day with ``file_row_number`` (the in-file order).

    Day files are sorted by (market, time, fill id), so for one token and second the row
    number orders fills by fill id: a free, deterministic tie-break within a second.
    """
    files = lake.files(
        TRADES.name, start=since.date() if since else None, end=until.date() if until else None
    )
    empty = f"SELECT {', '.join(f'CAST(NULL AS {t}) AS {c}' for c, t in TRADES.columns)}"
    empty += ", CAST(NULL AS BIGINT) AS file_row_number WHERE false"
    if not files:
        return f"({empty})"
    file_list = "[" + ", ".join(sql_string(f) for f in files) + "]"
    scan = (
        f"read_parquet({file_list}, union_by_name = true, hive_partitioning = false, "
        "file_row_number = true)"
    )
    if all(set(TRADES.column_names) <= set(pq.read_schema(f).names) for f in (files[0], files[-1])):
        # every column present at both ends of the lake: the plain scan keeps DuckDB's
        # projection pushdown and parallelism (the typed union below is for older lakes)
        return scan
    return f"(SELECT * FROM {scan} UNION ALL BY NAME {empty})"


_FILL_COLUMNS = ("maker", "token_id", "timestamp", "maker_direction", "token_amount", "price",
                 "fee")  # fmt: skip


# frn is a row of one day file: int32 is ample, and 80 MB less per 20 million fills
_PAYLOAD = np.dtype(
    [("ts", np.int64), ("frn", np.int32), ("shares", np.float64), ("price", np.float64),
     ("fee", np.float64), ("is_buy", np.bool_), ("kind", np.int8)]
)  # fmt: skip


@dataclass
class _Numbering:
    """Strings numbered in the order first seen, a batch of dictionaries at a time: only the
    distinct strings are kept, not every row group's dictionary until the end."""

    values: pa.Array = field(default_factory=lambda: pa.array([], pa.string()))

    def add(self, dictionaries: list[pa.Array]) -> list[np.ndarray]:
        """The number of each entry of each dictionary (new strings take the next ones:
        dictionary_encode numbers by first occurrence, so earlier numbers stand)."""
        if not dictionaries:
            return []
        seen = len(self.values)
        encoded = pc.dictionary_encode(pa.concat_arrays([self.values, *dictionaries]))
        self.values = encoded.dictionary
        ids = encoded.indices.to_numpy()[seen:].astype(np.int32)
        return np.split(ids, np.cumsum([len(d) for d in dictionaries])[:-1])

    def sorted(self) -> tuple[pa.Array, np.ndarray]:
        """The strings in sorted order, and each number's place in it."""
        order = pc.array_sort_indices(self.values).to_numpy()
        rank = np.empty(len(order), dtype=np.int32)
        rank[order] = np.arange(len(order), dtype=np.int32)
        return self.values.take(pa.array(order)), rank


_PENDING_ENTRIES = 1_000_000  # dictionary entries held before they are numbered


@dataclass
class _RawFills:
    """Own-fill candidates in lake order (opening rows first, then every row of every file,
    at the file's offset), before ids and sorting. ``wid``/``tid`` hold each row's entry in
    its row group's dictionaries, then its number in ``wallets``/``tokens``, until
    ``assign_ids`` makes them sorted ids; ``keep`` marks the rows that are own fills in the
    window. The columns the ledger reads sit together per row (``payload``): the sort
    gathers a row with one memory access, not six."""

    wid: np.ndarray
    tid: np.ndarray
    keep: np.ndarray
    payload: np.ndarray
    wallets: _Numbering = field(default_factory=_Numbering)
    tokens: _Numbering = field(default_factory=_Numbering)
    # row groups not numbered yet: first row, end row, maker and token dictionaries
    pending: list[tuple[int, int, pa.Array, pa.Array]] = field(default_factory=list)
    pending_entries: int = 0
    prefix: int = 0  # opening and event rows come first, in time order; then the files

    @classmethod
    def allocate(cls, rows: int) -> _RawFills:
        # np.empty, then written: np.zeros' calloc pages fault in 4 KiB at a time
        keep = np.empty(rows, bool)
        keep.fill(False)
        return cls(
            wid=np.empty(rows, np.int32), tid=np.empty(rows, np.int32), keep=keep,
            payload=np.empty(rows, _PAYLOAD),
        )  # fmt: skip

    def column(self, name: str) -> np.ndarray:
        return self.payload[name]

    def add_group(self, lo: int, hi: int, makers: pa.Array, tokens: pa.Array) -> None:
        """Rows [lo, hi) hold entries of these dictionaries."""
        self.pending.append((lo, hi, makers, tokens))
        self.pending_entries += len(makers) + len(tokens)
        if self.pending_entries >= _PENDING_ENTRIES:
            self._number_pending()

    def _number_pending(self) -> None:
        wallet_ids = self.wallets.add([g[2] for g in self.pending])
        token_ids = self.tokens.add([g[3] for g in self.pending])
        for (lo, hi, _, _), w_ids, t_ids in zip(self.pending, wallet_ids, token_ids, strict=True):
            if len(w_ids) and len(t_ids):  # else no row of the group is kept
                self.wid[lo:hi] = w_ids[self.wid[lo:hi]]
                self.tid[lo:hi] = t_ids[self.tid[lo:hi]]
        self.pending, self.pending_entries = [], 0

    def assign_ids(self) -> tuple[pa.Array, pa.Array]:
        """Make ``wid``/``tid`` the ids of the sorted wallets and tokens; returns those."""
        self._number_pending()
        wallets, wallet_rank = self.wallets.sorted()
        tokens, token_rank = self.tokens.sorted()
        # rows that are not kept may hold any number: clip keeps the lookup in range
        if len(wallet_rank):
            np.take(wallet_rank, self.wid, out=self.wid, mode="clip")
        if len(token_rank):
            np.take(token_rank, self.tid, out=self.tid, mode="clip")
        return wallets, tokens


def _dictionary_parts(column: pa.Array) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """(dictionary, index per row, valid per row) of a string column, dictionary or not."""
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    dictionary = column.dictionary.cast(pa.string())
    valid = column.indices.is_valid().to_numpy(zero_copy_only=False)
    idx = column.indices.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int32)
    if dictionary.null_count and len(idx):
        valid &= dictionary.is_valid().to_numpy(zero_copy_only=False)[idx]
    return dictionary, idx, valid


def _opening_fills(
    con: duckdb.DuckDBPyConnection, opening: str | None, since_us: int | None
) -> pa.Table:
    """The open positions of ``opening`` (wallet, token_id, shares, avg_price)."""
    if opening is None or since_us is None:
        return pa.table({"wallet": pa.array([], pa.string())})
    return con.execute(
        f"SELECT wallet, token_id, shares, avg_price FROM {opening} "
        "WHERE shares > 0 AND wallet IS NOT NULL AND token_id IS NOT NULL"
    ).to_arrow_table()


def _take_batch(
    batch: pa.RecordBatch,
    lo: int,
    file_row: int,
    raw: _RawFills,
    wallets: pa.Array | None,
    since_us: int | None,
    until_us: int | None,
) -> tuple[int, int, pa.Array, pa.Array]:
    """One record batch of a trades file into ``raw`` at ``lo``, with ``keep`` set on its
    own fills (maker, token and a positive amount present; in the time window; of
    ``wallets`` when given); returns its rows and dictionaries. A column missing from the
    lake is null: no maker or token, no fill; no direction, a sell (as the SQL ``= 'BUY'``
    was); no price, NaN (the ledger then names the row); no fee, none."""
    rows = batch.num_rows
    hi = lo + rows
    makers, raw.wid[lo:hi], keep = _dictionary_parts(batch.column("maker"))
    tokens, raw.tid[lo:hi], token_valid = _dictionary_parts(batch.column("token_id"))
    keep &= token_valid
    if wallets is not None:
        keep &= pc.is_in(makers, value_set=wallets).to_numpy(zero_copy_only=False)[raw.wid[lo:hi]]
    shares = batch.column("token_amount").cast(pa.float64()).fill_null(0.0).to_numpy()
    keep &= shares > 0
    ts = batch.column("timestamp").cast(pa.timestamp("us", tz="UTC"), safe=False)
    keep &= ts.is_valid().to_numpy(zero_copy_only=False)
    ts_us = ts.cast(pa.int64()).fill_null(0).to_numpy()
    if since_us is not None:
        keep &= ts_us > since_us
    if until_us is not None:
        keep &= ts_us <= until_us
    raw.keep[lo:hi] = keep
    row = raw.payload[lo:hi]
    row["ts"] = ts_us
    row["shares"] = shares
    row["frn"] = np.arange(file_row, file_row + rows, dtype=np.int32)
    is_buy = pc.equal(batch.column("maker_direction").cast(pa.string()), "BUY")
    row["is_buy"] = is_buy.fill_null(False).to_numpy(zero_copy_only=False)
    row["price"] = batch.column("price").cast(pa.float64()).to_numpy(zero_copy_only=False)
    row["fee"] = batch.column("fee").cast(pa.float64()).fill_null(0.0).to_numpy()
    row["kind"] = KIND_FILL
    return lo, hi, makers, tokens


def _fill_dataset(files: list[Path]) -> tuple[ds.Dataset, int]:
    """The trades files as one dataset of the columns the ledger reads (maker, token and
    direction as their Parquet dictionaries; a column some files lack is null there), and
    their total rows."""
    metas = [pq.ParquetFile(f) for f in files]
    rows = sum(m.metadata.num_rows for m in metas)
    types: dict[str, pa.DataType] = {}
    for meta in metas:
        for column in meta.schema_arrow:
            types.setdefault(column.name, column.type)
    del metas
    defaults = {"timestamp": pa.timestamp("us", tz="UTC"), "maker_direction": pa.string()}
    fields = []
    for name in _FILL_COLUMNS:
        if name in _DICTIONARY_COLUMNS:
            fields.append(pa.field(name, pa.dictionary(pa.int32(), pa.string())))
        else:
            fields.append(pa.field(name, types.get(name, defaults.get(name, pa.float64()))))
    file_format = ds.ParquetFileFormat(
        read_options=ds.ParquetReadOptions(dictionary_columns=set(_DICTIONARY_COLUMNS))
    )
    return ds.dataset([str(f) for f in files], schema=pa.schema(fields), format=file_format), rows


_DICTIONARY_COLUMNS = ("maker", "token_id", "maker_direction")


def _read_raw_fills(
    files: list[Path],
    opening: pa.Table,
    since_us: int | None,
    until_us: int | None,
    wallets: pa.Array | None,
    events: EventRows | None = None,
) -> _RawFills:
    """The opening rows (as buys at ``since``), the position events' ledger rows (in time
    order), then every row of ``files`` in lake order.

    Arrow's scanner decodes the files on its own threads, in order, while this thread
    copies each decoded batch into the preallocated arrays."""
    dataset, rows = _fill_dataset(files) if files else (None, 0)
    first = opening.num_rows
    event_rows = events.num_rows if events is not None else 0
    raw = _RawFills.allocate(first + event_rows + rows)
    if event_rows:
        assert events is not None
        lo, hi = first, first + event_rows
        raw.wid[lo:hi] = events.wallet_index
        raw.tid[lo:hi] = events.token_index
        raw.keep[lo:hi] = True
        row = raw.payload[lo:hi]
        for name in ("ts", "frn", "is_buy", "kind", "shares", "price"):
            row[name] = events.columns[name]
        row["fee"] = 0.0
        raw.add_group(lo, hi, events.wallets, events.tokens)
    if first:
        makers, raw.wid[:first], _ = _dictionary_parts(opening.column("wallet").combine_chunks())
        tokens, raw.tid[:first], _ = _dictionary_parts(opening.column("token_id").combine_chunks())
        raw.keep[:first] = True
        row = raw.payload[:first]
        row["ts"] = since_us
        row["frn"] = -1  # before any fill of that time
        row["is_buy"] = True
        row["shares"] = opening.column("shares").to_numpy()
        row["price"] = opening.column("avg_price").to_numpy()
        row["fee"] = 0.0
        row["kind"] = KIND_FILL
        raw.add_group(0, first, makers, tokens)
    raw.prefix = first + event_rows
    if dataset is None:
        return raw
    lo, path, file_row = raw.prefix, None, 0
    scanner = dataset.scanner(use_threads=True, batch_readahead=4, fragment_readahead=2)
    for tagged in scanner.scan_batches():
        batch = tagged.record_batch
        if tagged.fragment.path != path:
            path, file_row = tagged.fragment.path, 0
        if batch.num_rows:
            raw.add_group(*_take_batch(batch, lo, file_row, raw, wallets, since_us, until_us))
        lo += batch.num_rows
        file_row += batch.num_rows
    return raw


def _sorted_fills(raw: _RawFills, wallet_count: int, token_count: int) -> dict[str, np.ndarray]:
    """The kept rows by (wallet, token, time, file row), as load_sorted_fills' columns, and
    ``prefix_at``: where each opening or event row (raw row < ``raw.prefix``) landed (-1
    when not kept).

    Rows are in lake order (the opening and event rows in time order, then the day files
    in turn, each sorted by market and time), so a stable order by (wallet, token) alone
    is by time within each group except that the prefix rows come first: a linear merge
    puts them in place. That order is checked while gathering, and a full sort is the
    fallback.
    """
    kept = int(np.count_nonzero(raw.keep))
    columns = tuple(raw.column(name) for name in _PAYLOAD_ORDER)
    if _compiled_group_order is not None and _compiled_gather is not None:
        # fresh memory is slow to fault in, so the sort's scratch arrays become the
        # gathered ts and frn columns (same types), and row numbers are int32 when they fit
        order = np.empty(kept, dtype=np.int32 if len(raw.keep) < 2**31 else np.int64)
        gkey = np.empty(kept, dtype=np.int64)
        ts_out = np.empty(kept, dtype=np.int64)
        frn_out = np.empty(kept, dtype=np.int32)
        by_token = ts_out if order.dtype == np.int64 else ts_out.view(np.int32)[:kept]
        _compiled_group_order(
            raw.wid, raw.tid, raw.keep, wallet_count, token_count, order, gkey, by_token, frn_out
        )
        del by_token
        if raw.prefix and _compiled_merge_prefix is not None:
            _compiled_merge_prefix(order, gkey, columns[0], columns[1], raw.prefix)
        out = (ts_out, frn_out, *(np.empty(kept, dtype=c.dtype) for c in columns[2:]))
        if _compiled_gather(order, gkey, columns, out):
            result = dict(zip(("gkey", *_SORTED_COLUMNS), (gkey, *out), strict=True))
            result["prefix_at"] = _prefix_positions(order, raw.prefix)
            return result
        del order, gkey, out
    rows = np.flatnonzero(raw.keep)
    ts, frn = raw.column("ts")[rows], raw.column("frn")[rows]
    order = rows[np.lexsort((frn, ts, raw.tid[rows], raw.wid[rows]))]
    del rows, ts, frn
    gkey = (raw.wid[order].astype(np.int64) << 32) | raw.tid[order]
    return (
        {"gkey": gkey}
        | {name: column[order] for name, column in zip(_SORTED_COLUMNS, columns, strict=True)}
        | {"prefix_at": _prefix_positions(order, raw.prefix)}
    )


def _prefix_positions(order: np.ndarray, prefix: int) -> np.ndarray:
    """For each raw row below ``prefix``, its place in ``order`` (-1 when not there)."""
    at = np.full(prefix, -1, dtype=np.int64)
    if prefix:
        places = np.flatnonzero(order < prefix)
        at[order[places]] = places
    return at


_PAYLOAD_ORDER = ("ts", "frn", "is_buy", "kind", "shares", "price", "fee")
_SORTED_COLUMNS = ("ts_us", "frn", "is_buy", "kind", "shares", "price", "fee")


def load_sorted_fills(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    *,
    wallets: Sequence[str] | None = None,
    until: datetime | None = None,
    prefix: str = "_fills",
    since: datetime | None = None,
    opening: str | None = None,
    token_info: str | None = None,
) -> pa.Table:
    """Own fills and position events sorted by (wallet, token, time, in-file order) as
    compact numeric columns.

    A wallet is credited with the fills where it is the maker (maker, token and a positive
    amount present). With ``since``, only fills after it are read (only the day files from
    its day on), and ``opening`` (a relation of wallet, token_id, shares, avg_price) opens
    each position as a synthetic buy of its shares at its average price at ``since``: from
    an empty position that reproduces the state exactly, so a checkpoint plus the newer
    fills give the same ledger as the whole history.

    The users' position events of ``ctf_events`` (``lib/wallets/position_events.py``) join them as
    ledger rows of their ``kind``, conversions' YES prices resolved
    (``_resolve_conversion_prices``); ``token_info`` is ``token_info_sql``'s relation when
    the caller has it already (redemptions read its payouts).

    Columns: gkey (wallet id << 32 | token id), ts_us, is_buy, kind, shares, price, fee,
    frn (the row's place in its day file: with the second, it orders a token's trades). Wallets and
    tokens are numbered in sorted order, kept in temp tables ``{prefix}_w(wallet, wid)``
    and ``{prefix}_t(token_id, tid)`` (``attach_keys`` maps back).

    The files are read with an Arrow dataset scanner straight into preallocated arrays,
    keeping the Parquet dictionaries of maker and token: ids come from hashing the
    dictionaries, not tens of millions of addresses and 77-digit token ids, and rows are
    ordered by a counting sort on the ids.
    """
    if opening is not None and since is None:
        raise ValueError("an opening state needs the time it holds at (since)")
    since_us = _epoch_us(since) if since is not None else None
    until_us = _epoch_us(until) if until is not None else None
    watched = pa.array(sorted(set(wallets)), pa.string()) if wallets is not None else None
    files = lake.files(
        TRADES.name, start=since.date() if since else None, end=until.date() if until else None
    )
    events = load_event_rows(
        con, lake, wallets=wallets, since=since, until=until,
        token_info=token_info or f"({token_info_sql(lake)})",
    )  # fmt: skip
    raw = _read_raw_fills(
        files, _opening_fills(con, opening, since_us), since_us, until_us, watched, events
    )
    first_event = raw.prefix - events.num_rows
    wallet_names, token_names = raw.assign_ids()
    columns = _sorted_fills(raw, len(wallet_names), len(token_names))
    del raw
    _register_keys(con, prefix, wallet_names, token_names)
    if len(events.no_count):
        _resolve_conversion_prices(columns, columns["prefix_at"][first_event:], events)
    return pa.table({name: columns[name] for name in _FILL_TABLE_COLUMNS})


def _resolve_conversion_prices(
    columns: dict[str, np.ndarray], event_at: np.ndarray, events: EventRows
) -> None:
    """Set the price of each conversion's YES buys (NaN until now), in place.

    ``computeNegRiskYesPrice`` needs the average price of each converted NO position at
    the conversion (pnl-subgraph ``NegRiskAdapterMapping.ts``). NO positions never depend
    on a conversion's YES buys (a conversion only buys YES), so an exact pass of the
    ledger over just the (wallet, NO token) groups that take part in conversions gives
    those prices, before the main pass runs with every price known.
    """
    conversion = events.columns["conversion"]
    kind = events.columns["kind"]
    no_rows = np.flatnonzero((conversion >= 0) & (kind == KIND_EVENT_SELL_AT_AVG))
    yes_rows = np.flatnonzero((conversion >= 0) & (kind == KIND_EVENT))
    gkey = columns["gkey"]
    no_at = event_at[no_rows]
    keys = np.unique(gkey[no_at])
    lo = np.searchsorted(gkey, keys, "left")
    hi = np.searchsorted(gkey, keys, "right")
    lengths = hi - lo
    # the rows of those groups, in order: each group's range [lo, hi) laid end to end
    rows = np.arange(int(lengths.sum()), dtype=np.int64)
    rows += np.repeat(lo - (np.cumsum(lengths) - lengths), lengths)
    ledger = run_ledger(
        gkey[rows], columns["is_buy"][rows], columns["shares"][rows], columns["price"][rows],
        columns["fee"][rows], kind=columns["kind"][rows],
    )  # fmt: skip
    no_avg = ledger.avg_before[np.searchsorted(rows, no_at)]  # rows ascend
    conversions = len(events.no_count)
    no_sum = np.bincount(conversion[no_rows], weights=no_avg, minlength=conversions)
    k = events.no_count.astype(np.float64)
    n = events.question_count.astype(np.float64)
    # integer division in the subgraph (6-decimal BigInts); exact division here. Averages
    # of questions the lake does not map count as 0, as the subgraph's new positions do.
    no_price = np.divide(no_sum, k, out=np.zeros(conversions), where=k > 0)
    yes_price = np.divide(no_price * k - (k - 1.0), n - k, out=np.zeros(conversions), where=n > k)
    columns["price"][event_at[yes_rows]] = yes_price[conversion[yes_rows]]


_FILL_TABLE_COLUMNS = ("gkey", "ts_us", "is_buy", "kind", "shares", "price", "fee", "frn")
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch_us(moment: datetime) -> int:
    """Exact microseconds since the epoch (a naive time is UTC, as DuckDB reads it here)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _UNIX_EPOCH) // timedelta(microseconds=1)


def _register_keys(
    con: duckdb.DuckDBPyConnection, prefix: str, wallets: pa.Array, tokens: pa.Array
) -> None:
    """The id dictionaries as temp tables ``{prefix}_w`` and ``{prefix}_t`` (SQL joins by
    token id, and ``attach_keys``, read them)."""
    for suffix, name, values in (("w", "wallet", wallets), ("t", "token_id", tokens)):
        key = "wid" if suffix == "w" else "tid"
        arrow_name = f"{prefix}_{suffix}_arrow"
        con.register(
            arrow_name, pa.table({name: values, key: np.arange(len(values), dtype=np.int64)})
        )
        try:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {prefix}_{suffix} AS SELECT * FROM {arrow_name}"
            )
        finally:
            con.unregister(arrow_name)


def attach_keys(con: duckdb.DuckDBPyConnection, table: pa.Table, prefix: str) -> pa.Table:
    """Add ``wallet`` and ``token_id`` to a table with gkey (ids decoded, strings taken).

    Ids are dense row numbers, so decoding is two array ``take``s: far cheaper than joining
    millions of groups back to the dictionaries in SQL.
    """
    gkey = table.column("gkey").to_numpy()
    wallets, tokens = _key_names(con, prefix)
    wallet = wallets.take(pa.array(gkey >> 32))
    token = tokens.take(pa.array(gkey & 0xFFFFFFFF))
    return table.append_column("wallet", wallet).append_column("token_id", token)


def _key_names(con: duckdb.DuckDBPyConnection, prefix: str) -> tuple[pa.Array, pa.Array]:
    """The wallets and token ids of ``{prefix}_w``/``{prefix}_t``, each indexed by its id."""
    wallets = con.execute(f"SELECT wallet FROM {prefix}_w ORDER BY wid").to_arrow_table()
    tokens = con.execute(f"SELECT token_id FROM {prefix}_t ORDER BY tid").to_arrow_table()
    return wallets.column(0).combine_chunks(), tokens.column(0).combine_chunks()


def drop_fill_keys(con: duckdb.DuckDBPyConnection, prefix: str = "_fills") -> None:
    con.execute(f"DROP TABLE IF EXISTS {prefix}_w")
    con.execute(f"DROP TABLE IF EXISTS {prefix}_t")


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


def per_group_summary(fills: pa.Table, ledger: LedgerColumns) -> pa.Table:
    """One row per (wallet, token) group: final shares/avg, totals over its rows."""
    gkey = fills.column("gkey").to_numpy()
    n = len(gkey)
    if n == 0:
        return pa.table({name: pa.array([], type=t) for name, t in _SUMMARY_TYPES.items()})
    starts = np.flatnonzero(ledger.group_start)
    ends = np.flatnonzero(ledger.group_end)
    is_buy = fills.column("is_buy").to_numpy(zero_copy_only=False)
    fill = fills.column("kind").to_numpy() == KIND_FILL
    shares = fills.column("shares").to_numpy()
    # a redemption of everything held moves the shares held, whatever the row says
    moved = np.where(is_buy, shares, ledger.tracked_sold + ledger.oversold)
    price = ledger.price
    fee = np.nan_to_num(fills.column("fee").to_numpy(), nan=0.0)
    ts = fills.column("ts_us").to_numpy()
    usd = moved * price

    def total(values: np.ndarray) -> np.ndarray:
        return np.add.reduceat(values, starts)

    fill_rows = np.flatnonzero(fill)
    last_fill = np.full(n, -1, dtype=np.int64)
    last_fill[fill_rows] = fill_rows
    last_fill = np.maximum.accumulate(last_fill)[ends]
    has_fill = last_fill >= starts
    return pa.table(
        {
            "gkey": pa.array(gkey[starts]),
            "shares": ledger.shares_after[ends],
            "avg_price": ledger.avg_after[ends],
            "trading_realized": total(ledger.realized),
            "buys": total((is_buy & fill).astype(np.int64)),
            "sells": total((~is_buy & fill).astype(np.int64)),
            "bought_shares": total(np.where(is_buy & fill, shares, 0.0)),
            "sold_shares": total(np.where(~is_buy & fill, shares, 0.0)),
            "bought_usd": total(np.where(is_buy & fill, usd, 0.0)),
            "sold_usd": total(np.where(~is_buy & fill, usd, 0.0)),
            "fees": total(fee),
            "oversold_shares": total(ledger.oversold),
            "oversold_fills": total((ledger.oversold > 0).astype(np.int64)),
            "oversold_proceeds": total(ledger.oversold_proceeds),
            "first_ts_us": ts[starts],
            "last_ts_us": ts[ends],
            "last_fill_price": np.where(has_fill, price[np.maximum(last_fill, 0)], np.nan),
            "event_bought_shares": total(np.where(is_buy & ~fill, moved, 0.0)),
            "event_sold_shares": total(np.where(~is_buy & ~fill, moved, 0.0)),
            "event_bought_usd": total(np.where(is_buy & ~fill, usd, 0.0)),
            "event_sold_usd": total(np.where(~is_buy & ~fill, usd, 0.0)),
            "position_events": total((~fill).astype(np.int64)),
        }
    )


@dataclass(frozen=True)
class _FillArrays:
    """The sorted rows' columns as numpy arrays (a missing fee is no fee)."""

    gkey: np.ndarray
    ts: np.ndarray
    frn: np.ndarray
    is_buy: np.ndarray
    kind: np.ndarray
    shares: np.ndarray
    price: np.ndarray
    fee: np.ndarray

    @classmethod
    def of(cls, fills: pa.Table) -> _FillArrays:
        fee = fills.column("fee").to_numpy()
        return cls(
            gkey=fills.column("gkey").to_numpy(),
            ts=fills.column("ts_us").to_numpy(),
            frn=fills.column("frn").to_numpy(),
            is_buy=fills.column("is_buy").to_numpy(zero_copy_only=False),
            kind=fills.column("kind").to_numpy(),
            shares=fills.column("shares").to_numpy(),
            price=fills.column("price").to_numpy(),
            fee=np.nan_to_num(fee, nan=0.0) if np.isnan(fee).any() else fee,
        )


def _group_chunks(gkey: np.ndarray, groups_per_chunk: int) -> list[tuple[int, int, int]]:
    """(first row, end row, groups) of consecutive runs of ``groups_per_chunk`` whole
    groups; one empty chunk when there are no fills."""
    n = len(gkey)
    if n == 0:
        return [(0, 0, 0)]
    starts = np.flatnonzero(np.r_[True, gkey[1:] != gkey[:-1]])
    bounds = np.append(starts, n)
    return [
        (int(bounds[g]), int(bounds[min(g + groups_per_chunk, len(starts))]),
         min(groups_per_chunk, len(starts) - g))
        for g in range(0, len(starts), groups_per_chunk)
    ]  # fmt: skip


# rows of the compiled summary's arrays (see _summary_loop)
_SUMS = (
    "shares", "avg_price", "trading_realized", "bought_shares", "sold_shares", "bought_usd",
    "sold_usd", "fees", "oversold_shares", "oversold_proceeds", "last_fill_price",
    "event_bought_shares", "event_sold_shares", "event_bought_usd", "event_sold_usd",
)  # fmt: skip
_COUNTS = ("buys", "sells", "oversold_fills", "first_ts_us", "last_ts_us", "position_events")


def _summarize_rows(fills: pa.Table, arrays: _FillArrays, chunk: tuple[int, int, int]) -> pa.Table:
    """Per-group summary (as ``per_group_summary``) of the whole groups in rows [lo, hi):
    the compiled pass when numba is there, else the per-row ledger and numpy reductions."""
    lo, hi, groups = chunk
    if _compiled_summary is None or hi == lo:
        piece, ledger = ledger_table(fills.slice(lo, hi - lo))
        return per_group_summary(piece, ledger)
    gkey, ts = arrays.gkey[lo:hi], arrays.ts[lo:hi]
    is_buy, kind, shares = arrays.is_buy[lo:hi], arrays.kind[lo:hi], arrays.shares[lo:hi]
    price, fee = arrays.price[lo:hi], arrays.fee[lo:hi]
    _validate(gkey, is_buy, kind, np.rint(shares * MICRO), price, fee, first_row=lo)
    sums = np.empty((len(_SUMS), groups))
    counts = np.empty((len(_COUNTS), groups), dtype=np.int64)
    keys = np.empty(groups, dtype=np.int64)
    _compiled_summary(gkey, ts, is_buy, kind, shares, price, fee, MICRO, sums, counts, keys)
    columns = {"gkey": keys} | dict(zip(_SUMS, sums, strict=True))
    columns |= dict(zip(_COUNTS, counts, strict=True))
    return pa.table({name: columns[name] for name in _SUMMARY_TYPES})


def _last_trade_prices(arrays: _FillArrays, token_count: int) -> np.ndarray:
    """Each token id's last trade price among the fills (NaN when none; events are not
    trades)."""
    marks = np.full(token_count, np.nan)
    gkey, ts, frn, price = arrays.gkey, arrays.ts, arrays.frn, arrays.price
    if _compiled_last_trade is not None:
        mark_key = np.full(token_count, np.iinfo(np.int64).min, dtype=np.int64)
        _compiled_last_trade(gkey, ts, frn, arrays.kind, price, mark_key, marks)
        return marks
    fill = np.flatnonzero(arrays.kind == KIND_FILL)
    gkey, ts, frn, price = gkey[fill], ts[fill], frn[fill], price[fill]
    tid = gkey & 0xFFFFFFFF
    order = np.lexsort(((ts // 1_000_000) * 10_000_000 + frn, tid))
    last = order[np.r_[tid[order][1:] != tid[order][:-1], True]] if len(gkey) else order
    marks[tid[last]] = price[last]
    return marks


def summarize_fills(fills: pa.Table, token_count: int) -> tuple[pa.Table, np.ndarray]:
    """Per-group summary (as ``per_group_summary``) and each token's last trade price
    (NaN when none), straight from the sorted rows."""
    arrays = _FillArrays.of(fills)
    chunk = _group_chunks(arrays.gkey, max(len(arrays.gkey), 1))[0]
    return _summarize_rows(fills, arrays, chunk), _last_trade_prices(arrays, token_count)


_SUMMARY_TYPES: dict[str, pa.DataType] = {
    "gkey": pa.int64(),
    "shares": pa.float64(),
    "avg_price": pa.float64(),
    "trading_realized": pa.float64(),
    "buys": pa.int64(),
    "sells": pa.int64(),
    "bought_shares": pa.float64(),
    "sold_shares": pa.float64(),
    "bought_usd": pa.float64(),
    "sold_usd": pa.float64(),
    "fees": pa.float64(),
    "oversold_shares": pa.float64(),
    "oversold_fills": pa.int64(),
    "oversold_proceeds": pa.float64(),
    "first_ts_us": pa.int64(),
    "last_ts_us": pa.int64(),
    "last_fill_price": pa.float64(),
    "event_bought_shares": pa.float64(),
    "event_sold_shares": pa.float64(),
    "event_bought_usd": pa.float64(),
    "event_sold_usd": pa.float64(),
    "position_events": pa.int64(),
}

POSITION_COLUMNS = (
    "wallet", "market_id", "token_id", "outcome_index", "outcome", "status", "shares",
    "avg_price", "cost_basis", "mark_price", "exposure", "realized_pnl", "unrealized_pnl",
    "total_pnl", "settlement_pnl", "payout", "buys", "sells", "bought_shares", "sold_shares",
    "bought_usd", "sold_usd", "fees", "oversold_shares", "oversold_fills", "oversold_proceeds",
    "position_events", "event_bought_shares", "event_sold_shares", "event_bought_usd",
    "event_sold_usd", "first_trade_at", "last_trade_at", "resolved_at", "as_of",
)  # fmt: skip


def _token_table(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    as_of: datetime | None,
    prefix: str,
    marks: np.ndarray | None = None,
) -> pa.Table:
    """Per token id (dense, in tid order): market, outcome, payout, resolution time, mark
    (``marks`` by tid when known, else the last trade price from the lake). Reads the
    token facts from ``{prefix}_info`` (``register_token_info``)."""
    if marks is not None:
        info = con.execute(
            f"""
            SELECT t.tid, ti.market_id, ti.outcome_index, ti.outcome, ti.payout,
                   epoch_us(ti.resolved_at) AS resolved_us
            FROM {prefix}_t t LEFT JOIN {prefix}_info ti USING (token_id)
            ORDER BY t.tid
            """
        ).to_arrow_table()
        return info.append_column("mark_price", pa.array(marks, from_pandas=True))
    until_clause = f"AND \"timestamp\" <= TIMESTAMPTZ '{as_of.isoformat()}'" if as_of else ""
    return con.execute(
        f"""
        WITH marks AS (
            -- last trade by (second, in-file order); an integer key beats a struct here
            SELECT token_id,
                   arg_max(price, (epoch_us("timestamp") // 1000000) * 10000000
                                  + file_row_number) AS mark_price
            FROM {fills_source_sql(lake, as_of)}
            WHERE token_id IN (SELECT token_id FROM {prefix}_t) {until_clause}
            GROUP BY token_id
        )
        SELECT t.tid, ti.market_id, ti.outcome_index, ti.outcome, ti.payout,
               epoch_us(ti.resolved_at) AS resolved_us, m.mark_price
        FROM {prefix}_t t
        LEFT JOIN {prefix}_info ti USING (token_id)
        LEFT JOIN marks m USING (token_id)
        ORDER BY t.tid
        """
    ).to_arrow_table()


def _position_rows(
    summary: pa.Table,
    tokens: pa.Table,
    wallets: pa.Array,
    token_ids: pa.Array,
    as_of: datetime | None,
) -> pa.Table:
    """Positions from per-group totals and per-token facts, in numpy (no SQL join of
    millions of string rows, which costs far more than these array takes)."""
    gkey = summary.column("gkey").to_numpy()
    tid = pa.array(gkey & 0xFFFFFFFF)

    def token(name: str) -> pa.Array:
        return tokens.column(name).combine_chunks().take(tid)

    def floats(array: pa.Array) -> np.ndarray:
        return array.to_numpy(zero_copy_only=False).astype(np.float64)

    payout = floats(token("payout").fill_null(np.nan))
    resolved_us = token("resolved_us")
    cutoff = int(as_of.timestamp() * 1_000_000) if as_of else None
    resolved = ~np.isnan(payout)
    if cutoff is not None:
        due = resolved_us.fill_null(np.iinfo(np.int64).min).to_numpy()
        resolved &= due <= cutoff
    last_trade = floats(token("mark_price").fill_null(np.nan))
    # a resolved market's shares are worth their payout until redeemed (pnl-subgraph:
    # only the redemption realizes them); open ones are marked at the last trade
    mark = np.where(resolved, payout, last_trade)
    shares = summary.column("shares").to_numpy()
    avg = summary.column("avg_price").to_numpy()
    realized = summary.column("trading_realized").to_numpy()
    unrealized = shares * (mark - avg)
    held = shares > 0
    # status and the two big string columns as dictionary arrays over ids we already have:
    # nothing to hash when Parquet writes them (they read back as plain strings)
    status_code = np.where(held, np.where(resolved, 2, 1), 0).astype(np.int8)
    status = pa.DictionaryArray.from_arrays(
        pa.array(status_code), pa.array(["closed", "open", "redeemable"])
    )
    as_of_us = cutoff if cutoff is not None else int(datetime.now(UTC).timestamp() * 1e6)
    utc = pa.timestamp("us", tz="UTC")

    def ts(values: np.ndarray | pa.Array | pa.ChunkedArray) -> pa.Array:
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if isinstance(values, np.ndarray):
            values = pa.array(values, pa.int64())  # zero-copy from numpy
        return values.cast(pa.int64()).cast(utc)

    columns: dict[str, pa.Array | np.ndarray] = {
        "wallet": pa.DictionaryArray.from_arrays(pa.array((gkey >> 32).astype(np.int32)), wallets),
        "market_id": token("market_id"),
        "token_id": pa.DictionaryArray.from_arrays(tid.cast(pa.int32()), token_ids),
        "outcome_index": token("outcome_index"),
        "outcome": token("outcome"),
        "status": status,
        "shares": shares,
        "avg_price": avg,
        "cost_basis": shares * avg,
        "mark_price": pa.array(mark, from_pandas=True),
        "exposure": pa.array(np.where(held, shares * mark, 0.0), from_pandas=True),
        "realized_pnl": realized,
        "unrealized_pnl": pa.array(np.where(held, unrealized, 0.0), from_pandas=True),
        "total_pnl": pa.array(realized + np.where(held, unrealized, 0.0), from_pandas=True),
        "settlement_pnl": np.where(resolved & held, unrealized, 0.0),
        "payout": pa.array(np.where(resolved, payout, np.nan), from_pandas=True),
    }
    for name in (
        "buys", "sells", "bought_shares", "sold_shares", "bought_usd", "sold_usd", "fees",
        "oversold_shares", "oversold_fills", "oversold_proceeds", "position_events",
        "event_bought_shares", "event_sold_shares", "event_bought_usd", "event_sold_usd",
    ):  # fmt: skip
        columns[name] = summary.column(name)
    columns["first_trade_at"] = ts(summary.column("first_ts_us"))
    columns["last_trade_at"] = ts(summary.column("last_ts_us"))
    columns["resolved_at"] = ts(resolved_us)
    columns["as_of"] = ts(np.full(len(gkey), as_of_us, dtype=np.int64))
    return pa.table(columns)


def compute_positions(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    *,
    wallets: Sequence[str] | None = None,
    as_of: datetime | None = None,
    output: Path | None = None,
    chunk_rows: int = 1_000_000,
) -> pa.Table | None:
    """Positions of every wallet (or ``wallets``) and token from all fills up to ``as_of``.

    Returned as a table sorted by wallet, or with ``output`` written to that Parquet file
    (atomically, in chunks so memory stays bounded) and None returned. The ledger reads
    the fills and the users' CTF position events up to ``as_of``. Shares of markets
    resolved by ``as_of`` (resolution time at or before it; any resolved market when
    ``as_of`` is None) are marked at their payout until redeemed (status ``redeemable``);
    open positions at the token's last trade price at or before ``as_of`` (NULL when it
    never traded).
    """
    prefix = "_pos"
    try:
        info = register_token_info(con, lake, prefix)
        fills = load_sorted_fills(
            con, lake, wallets=wallets, until=as_of, prefix=prefix, token_info=info
        )
        arrays = _FillArrays.of(fills)
        wallet_array, token_array = _key_names(con, prefix)
        marks = None
        if not wallets:
            # with every wallet, the fills are every trade: their last prices are the marks
            marks = _last_trade_prices(arrays, len(token_array))
        tokens = _token_table(con, lake, as_of, prefix, marks=marks)
    finally:
        drop_fill_keys(con, prefix)
        con.execute(f"DROP TABLE IF EXISTS {prefix}_info")
    chunks = _group_chunks(arrays.gkey, chunk_rows)

    def piece(chunk: tuple[int, int, int]) -> pa.Table:
        summary = _summarize_rows(fills, arrays, chunk)
        return _position_rows(summary, tokens, wallet_array, token_array, as_of)

    def pieces() -> Iterator[pa.Table]:
        # the next chunk's ledger and rows (numba and numpy, mostly without the GIL) are
        # computed while this one is written: the two cores work at once, one chunk ahead
        with ThreadPoolExecutor(max_workers=1) as pool:
            ahead: deque[Future[pa.Table]] = deque()
            for chunk in chunks:
                ahead.append(pool.submit(piece, chunk))
                if len(ahead) > 1:
                    yield ahead.popleft().result()
            while ahead:
                yield ahead.popleft().result()

    if output is None:
        table = pa.concat_tables(list(pieces()))
        for name in ("wallet", "token_id", "status"):
            index = table.schema.get_field_index(name)
            table = table.set_column(index, name, table.column(name).cast(pa.string()))
        return table.sort_by([("wallet", "ascending"), ("market_id", "ascending"),
                              ("outcome_index", "ascending")])  # fmt: skip

    def write(tmp: Path) -> None:
        writer: pq.ParquetWriter | None = None
        try:
            for rows in pieces():
                if writer is None:
                    writer = pq.ParquetWriter(tmp, rows.schema, **_POSITIONS_PARQUET)
                writer.write_table(rows, row_group_size=chunk_rows)
        finally:
            if writer is not None:
                writer.close()

    write_atomically(output, write)
    return None


# Wallet and token id are written as the Parquet dictionaries of the ids we hold (nothing
# to hash, a fraction of the bytes of 77-digit strings); the dictionary page limit is
# raised so a large token dictionary never falls back to plain strings. Statistics only
# where a reader prunes by them (the file is sorted by wallet). lz4 keeps the write of
# millions of rows quick: the file is rewritten whole on every run.
_POSITIONS_PARQUET: dict[str, object] = {
    "compression": "lz4",
    "use_dictionary": ["wallet", "token_id", "market_id", "outcome", "status"],
    "dictionary_pagesize_limit": 1 << 30,
    "write_statistics": ["wallet"],
}


def wallet_totals(con: duckdb.DuckDBPyConnection, positions: str, limit: int = 20) -> pa.Table:
    """Per wallet (best realized P&L first: what the pnl-subgraph counts, no oversold
    proceeds): realized, unrealized, total P&L, exposure, oversells, counts.

    ``positions`` is a relation: a registered table name or a read_parquet(...) call.
    """
    return con.execute(
        f"""
        SELECT wallet,
               sum(realized_pnl) AS realized_pnl,
               sum(unrealized_pnl) AS unrealized_pnl,
               sum(total_pnl) AS total_pnl,
               sum(exposure) AS exposure,
               count(*) FILTER (WHERE status = 'open') AS open_positions,
               count(*) AS positions,
               sum(buys + sells) AS fills,
               sum(bought_usd + sold_usd) AS volume_usd,
               sum(oversold_shares) AS oversold_shares,
               sum(oversold_proceeds) AS oversold_proceeds
        FROM {positions} GROUP BY wallet
        ORDER BY realized_pnl DESC, wallet LIMIT {int(limit)}
        """
    ).to_arrow_table()


@dataclass(frozen=True)
class OversellReport:
    """How much of the sells the ledger could not match with shares held (data gaps):
    ``share`` = oversold proceeds / all sell proceeds (fills, merges, redemptions,
    conversions); ``worst`` the wallets with the most oversold proceeds."""

    sell_proceeds: float
    oversold_proceeds: float
    oversold_shares: float
    positions_with_oversells: int
    realized_pnl: float
    worst: pa.Table

    @property
    def share(self) -> float:
        return self.oversold_proceeds / self.sell_proceeds if self.sell_proceeds > 0 else 0.0


def oversell_report(
    con: duckdb.DuckDBPyConnection, positions: str, worst: int = 10
) -> OversellReport:
    """The oversells of a positions relation (see ``OversellReport``)."""
    row = con.execute(
        f"""
        SELECT coalesce(sum(sold_usd + event_sold_usd), 0), coalesce(sum(oversold_proceeds), 0),
               coalesce(sum(oversold_shares), 0),
               count(*) FILTER (WHERE oversold_shares > 0), coalesce(sum(realized_pnl), 0)
        FROM {positions}
        """
    ).fetchone()
    assert row is not None
    table = con.execute(
        f"""
        SELECT wallet, sum(oversold_proceeds) AS oversold_proceeds,
               sum(sold_usd + event_sold_usd) AS sell_proceeds,
               sum(oversold_proceeds) / nullif(sum(sold_usd + event_sold_usd), 0)
                 AS oversold_share,
               sum(realized_pnl) AS realized_pnl
        FROM {positions} GROUP BY wallet HAVING sum(oversold_proceeds) > 0
        ORDER BY oversold_proceeds DESC, wallet LIMIT {int(worst)}
        """
    ).to_arrow_table()
    return OversellReport(
        float(row[0]), float(row[1]), float(row[2]), int(row[3]), float(row[4]), table
    )


def register_ledger_state(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    *,
    wallets: Sequence[str] | None,
    until: datetime | None,
    prefix: str,
    since: datetime | None = None,
    opening: str | None = None,
) -> int:
    """Run the ledger and keep its per-row state in temp tables ``{prefix}_state`` and
    ``{prefix}_events``; returns the number of ledger rows (fills and position events; see
    ``load_sorted_fills`` for ``since``/``opening``: a checkpoint instead of the whole
    history).

    ``_state``: gkey, wallet, token_id, market_id, ts_us, next_ts_us (the group's next row,
    max int64 after its last), shares, avg_price (after the row), realized, seq, payout,
    resolved_us. ``_events``: every realized P&L amount with its time, one per row (fills,
    merges, redemptions, conversions: the same numbers as ``compute_positions``; a resolved
    market's shares realize only when redeemed, until then they are marked at the payout).
    """
    info = register_token_info(con, lake, prefix)
    loaded = load_sorted_fills(
        con, lake, wallets=wallets, until=until, prefix=prefix, since=since,
        opening=opening, token_info=info,
    )  # fmt: skip
    fills, ledger = ledger_table(loaded)
    ts = fills.column("ts_us").to_numpy()
    next_ts = np.empty_like(ts)
    if len(ts):
        next_ts[:-1] = ts[1:]
    next_ts[ledger.group_end] = np.iinfo(np.int64).max
    kind = fills.column("kind").to_numpy()
    state = attach_keys(
        con,
        pa.table(
            {
                "gkey": fills.column("gkey"),
                "ts_us": ts,
                "next_ts_us": next_ts,
                "shares": ledger.shares_after,
                "avg_price": ledger.avg_after,
                "realized": ledger.realized,
                "is_fill": kind == KIND_FILL,
                "seq": np.arange(len(ts), dtype=np.int64),  # ledger order, ties included
            }
        ),
        prefix,
    )
    arrow_name = f"{prefix}_state_arrow"
    con.register(arrow_name, state)
    try:
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE {prefix}_state AS
            SELECT k.*, ti.market_id, ti.payout, epoch_us(ti.resolved_at) AS resolved_us
            FROM {arrow_name} k
            LEFT JOIN {info} ti ON ti.token_id = k.token_id
            """
        )
    finally:
        con.unregister(arrow_name)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {prefix}_events AS
        SELECT wallet, market_id, token_id, ts_us, realized AS amount,
               CASE WHEN is_fill THEN 'fill' ELSE 'position_event' END AS kind
        FROM {prefix}_state
        """
    )
    return fills.num_rows


def drop_ledger_state(con: duckdb.DuckDBPyConnection, prefix: str) -> None:
    for suffix in ("state", "events", "w", "t", "info"):
        con.execute(f"DROP TABLE IF EXISTS {prefix}_{suffix}")
