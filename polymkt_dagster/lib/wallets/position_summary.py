"""One row per (wallet, token) position from the ledger's sorted rows: final shares and
average price, realized P&L, buy/sell/event totals, oversells, first and last trade, and
each token's last trade price (the mark of open positions). ``positions.py`` builds the
positions table from these; only the end state of each position is needed, so the
compiled pass (``ledger_kernels``) never materialises the per-row ledger, and the numpy
path (the per-row ledger, then reductions) gives the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from polymkt_dagster.lib.wallets import ledger_kernels
from polymkt_dagster.lib.wallets.ledger import (
    MICRO,
    LedgerColumns,
    ledger_table,
    validate_ledger_rows,
)
from polymkt_dagster.lib.wallets.position_events import KIND_FILL


def per_group_summary(fills: pa.Table, ledger: LedgerColumns) -> pa.Table:
    """One row per (wallet, token) group: final shares/avg, totals over its rows."""
    gkey = fills.column("gkey").to_numpy()
    n = len(gkey)
    if n == 0:
        return pa.table({name: pa.array([], type=t) for name, t in SUMMARY_TYPES.items()})
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
class FillArrays:
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
    def of(cls, fills: pa.Table) -> FillArrays:
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


def group_chunks(gkey: np.ndarray, groups_per_chunk: int) -> list[tuple[int, int, int]]:
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


# rows of the compiled summary's arrays (see ledger_kernels._summary_loop)
_SUMS = (
    "shares", "avg_price", "trading_realized", "bought_shares", "sold_shares", "bought_usd",
    "sold_usd", "fees", "oversold_shares", "oversold_proceeds", "last_fill_price",
    "event_bought_shares", "event_sold_shares", "event_bought_usd", "event_sold_usd",
)  # fmt: skip
_COUNTS = ("buys", "sells", "oversold_fills", "first_ts_us", "last_ts_us", "position_events")


def summarize_chunk(fills: pa.Table, arrays: FillArrays, chunk: tuple[int, int, int]) -> pa.Table:
    """Per-group summary (as ``per_group_summary``) of the whole groups in rows [lo, hi):
    the compiled pass when numba is there, else the per-row ledger and numpy reductions."""
    lo, hi, groups = chunk
    compiled = ledger_kernels.compiled_summary
    if compiled is None or hi == lo:
        piece, ledger = ledger_table(fills.slice(lo, hi - lo))
        return per_group_summary(piece, ledger)
    gkey, ts = arrays.gkey[lo:hi], arrays.ts[lo:hi]
    is_buy, kind, shares = arrays.is_buy[lo:hi], arrays.kind[lo:hi], arrays.shares[lo:hi]
    price, fee = arrays.price[lo:hi], arrays.fee[lo:hi]
    validate_ledger_rows(gkey, is_buy, kind, np.rint(shares * MICRO), price, fee, first_row=lo)
    sums = np.empty((len(_SUMS), groups))
    counts = np.empty((len(_COUNTS), groups), dtype=np.int64)
    keys = np.empty(groups, dtype=np.int64)
    compiled(gkey, ts, is_buy, kind, shares, price, fee, MICRO, sums, counts, keys)
    columns = {"gkey": keys} | dict(zip(_SUMS, sums, strict=True))
    columns |= dict(zip(_COUNTS, counts, strict=True))
    return pa.table({name: columns[name] for name in SUMMARY_TYPES})


def last_trade_prices(arrays: FillArrays, token_count: int) -> np.ndarray:
    """Each token id's last trade price among the fills (NaN when none; events are not
    trades)."""
    marks = np.full(token_count, np.nan)
    gkey, ts, frn, price = arrays.gkey, arrays.ts, arrays.frn, arrays.price
    compiled = ledger_kernels.compiled_last_trade
    if compiled is not None:
        mark_key = np.full(token_count, np.iinfo(np.int64).min, dtype=np.int64)
        compiled(gkey, ts, frn, arrays.kind, price, mark_key, marks)
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
    arrays = FillArrays.of(fills)
    chunk = group_chunks(arrays.gkey, max(len(arrays.gkey), 1))[0]
    return summarize_chunk(fills, arrays, chunk), last_trade_prices(arrays, token_count)


SUMMARY_TYPES: dict[str, pa.DataType] = {
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
