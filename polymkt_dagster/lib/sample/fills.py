"""The sample's fills: orderFilled and trades rows, generated one time slice at a time.

Each time slice draws its matches per market (Poisson, denser near a market's end), their
times and prices (read off the price paths), 1-3 maker orders per match and the wallets, then
lays out poly_data's rows: the maker rows of a match, then its taker row whose ``taker`` is the
exchange contract. Sharp wallets buy the eventual winner early in resolved markets. A slice is
vectorised numpy with its own rng streams ``[seed, 1, k]`` and ``[seed, 2, k]``, so memory is
bounded and the rows do not depend on how they are batched.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from polymkt_dagster.lib.sample.config import MAKERS_PER_MATCH_P, SampleConfig
from polymkt_dagster.lib.sample.formats import arrow_strings, datetime_text, hex_rows
from polymkt_dagster.lib.sample.layout import (
    ORDER_FILLED_COLUMNS,
    ORDER_FILLED_SCHEMA,
    TRADES_COLUMNS,
    TRADES_SCHEMA,
)
from polymkt_dagster.lib.sample.price_paths import GRID_POINTS
from polymkt_dagster.lib.sample.universe import Universe, build_universe
from polymkt_dagster.lib.sample.wallets import SAMPLER_SIZE, SHARP_WALLET_COUNT

__all__ = [
    "FillSlice",
    "count_order_fills",
    "fill_row_count",
    "generate_slice",
    "iter_order_fill_batches",
    "iter_trade_batches",
]

_SHARP_MATCH_P = 0.08  # P(a match in an early window of a resolved market is a sharp buy)
_SHARP_WINDOW = 0.6  # sharp wallets buy in the first 60% of a market's life
_MIXED_CASE_P = 0.10


@dataclass
class FillSlice:
    """The rows of one time slice (``generate_slice``) and what the writer tallies from them."""

    fills: pa.RecordBatch | None  # ORDER_FILLED_SCHEMA (unless for_csv)
    trades: pa.RecordBatch | None  # TRADES_SCHEMA (unless for_csv)
    matches: int
    market_volume: np.ndarray  # raw micro-USDC per market, taker-side rows only
    # own-fill balance changes (time, wallet index, token index, signed raw shares) or None
    positions: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None


def _slice_counts(u: Universe, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Matches per market in slice k, makers per match, and the slice's CDF bounds."""
    rng = np.random.default_rng([u.config.seed, 1, k])
    lo_t = u.t0 + k * u.slice_len
    hi_t = min(u.t1, lo_t + u.slice_len - 1)
    a = np.maximum(u.start, lo_t)
    b = np.minimum(u.trade_end, hi_t)
    active = b >= a
    length = (u.trade_end - u.start + 1).astype(np.float64)
    sa = np.clip((a - u.start) / length, 0.0, 1.0)
    sb = np.clip((b + 1 - u.start) / length, 0.0, 1.0)
    fa = sa**u.alpha
    fb = sb**u.alpha
    lam = np.where(active, u.expected_matches * (fb - fa), 0.0)
    counts = rng.poisson(lam)
    n = int(counts.sum())
    makers = rng.choice(len(MAKERS_PER_MATCH_P), size=n, p=MAKERS_PER_MATCH_P).astype(np.int64) + 1
    return counts, makers, fa, fb


def _slice_rows(u: Universe, k: int) -> int:
    counts, makers, _, _ = _slice_counts(u, k)
    return int(counts.sum() + makers.sum())


def fill_row_count(u: Universe) -> int:
    """The number of orderFilled rows of ``u``, without generating them."""
    return sum(_slice_rows(u, k) for k in range(u.n_slices))


_DIRECTIONS = pa.array(["SELL", "BUY"], type=pa.string())
_SIDES = pa.array(["token1", "token2"], type=pa.string())


def generate_slice(
    u: Universe,
    k: int,
    *,
    fills: bool = True,
    trades: bool = True,
    for_csv: bool = False,
    positions: bool = False,
) -> FillSlice:
    """The rows of time slice k.

    ``for_csv`` builds batches that are cheaper to write as CSV and give the same text:
    dictionary-encoded string columns and the trades' timestamp pre-rendered as text.
    ``positions`` also returns each row's balance change for its ``maker`` (the wallet a fill
    row belongs to, docs/architecture.md §4).
    """
    counts, n_makers, fa, fb = _slice_counts(u, k)
    rng = np.random.default_rng([u.config.seed, 2, k])
    n = int(counts.sum())
    n_m = len(u.markets)
    if n == 0:
        none = np.zeros(0, np.int64)
        return FillSlice(
            fills=pa.RecordBatch.from_pylist([], schema=ORDER_FILLED_SCHEMA) if fills else None,
            trades=pa.RecordBatch.from_pylist([], schema=TRADES_SCHEMA) if trades else None,
            matches=0,
            market_volume=np.zeros(n_m),
            positions=(none, none, none, none) if positions else None,
        )

    # --- matches: market, time, price ---------------------------------------------------------
    mkt = np.repeat(np.arange(n_m), counts)
    lo_t = u.t0 + k * u.slice_len
    hi_t = min(u.t1, lo_t + u.slice_len - 1)
    v = fa[mkt] + rng.random(n) * (fb[mkt] - fa[mkt])
    s = v ** (1.0 / u.alpha[mkt])
    length = u.trade_end[mkt] - u.start[mkt] + 1
    t = u.start[mkt] + np.floor(s * length).astype(np.int64)
    t = np.clip(t, np.maximum(u.start[mkt], lo_t), np.minimum(u.trade_end[mkt], hi_t))
    order = np.argsort(t, kind="stable")
    mkt, t, n_makers = mkt[order], t[order], n_makers[order]

    tau = (t - u.start[mkt]) / (u.end[mkt] - u.start[mkt])
    x = np.clip(tau, 0.0, 1.0) * (GRID_POINTS - 1)
    i0 = np.minimum(x.astype(np.int64), GRID_POINTS - 2)
    f = x - i0
    p1 = u.path[mkt, i0] * (1.0 - f) + u.path[mkt, i0 + 1] * f

    # sharp wallets: buy the eventual winner early in resolved markets, as takers
    sharp = (rng.random(n) < _SHARP_MATCH_P) & u.resolved[mkt] & (tau < _SHARP_WINDOW)
    side = np.where(sharp, u.win_side[mkt], rng.random(n) < 0.4).astype(np.int64)
    taker_buys = sharp | (rng.random(n) < 0.52)
    p_tok = np.where(side == 0, p1, 1.0 - p1)
    taker = np.where(
        sharp,
        u.wallets.n_noise + rng.integers(0, SHARP_WALLET_COUNT, n),
        u.wallets.taker_table[rng.integers(0, SAMPLER_SIZE, n)],
    )
    mid_cents = p_tok * 100.0 + rng.normal(0.0, 0.6, n)

    # --- maker orders: the taker sweeps 1-3 price levels ------------------------------------
    n_mk = int(n_makers.sum())
    mk_match = np.repeat(np.arange(n), n_makers)
    first_mk = np.cumsum(n_makers) - n_makers
    level = np.arange(n_mk) - first_mk[mk_match]
    sweep = np.where(taker_buys[mk_match], level, -level)
    cents = np.clip(np.rint(mid_cents[mk_match] + sweep), 1, 99).astype(np.int64)
    size_mu = np.where(sharp[mk_match], math.log(30_000.0), math.log(5_000.0))
    shares_c = np.clip(np.rint(np.exp(rng.normal(size_mu, 1.3))), 100, 20_000_000).astype(
        np.int64
    )  # hundredths of a share
    mk_shares = shares_c * 10_000
    mk_usdc = shares_c * cents * 100
    maker = u.wallets.maker_table[rng.integers(0, SAMPLER_SIZE, n_mk)].astype(np.int64)
    maker = np.where(maker == taker[mk_match], (maker + 1) % u.wallets.n_noise, maker)
    tk_shares = np.add.reduceat(mk_shares, first_mk)
    tk_usdc = np.add.reduceat(mk_usdc, first_mk)

    # --- rows: the maker rows of a match, then its taker row ----------------------------------
    rows_per = n_makers + 1
    n_rows = n + n_mk
    first_row = np.cumsum(rows_per) - rows_per
    mk_pos = first_row[mk_match] + level
    tk_pos = first_row + n_makers
    row_match = np.repeat(np.arange(n), rows_per)

    maker_addr = np.empty(n_rows, dtype=np.int64)
    taker_addr = np.empty(n_rows, dtype=np.int64)
    shares = np.empty(n_rows, dtype=np.int64)
    usdc = np.empty(n_rows, dtype=np.int64)
    maker_buys = np.empty(n_rows, dtype=bool)
    maker_addr[mk_pos] = maker
    taker_addr[mk_pos] = taker[mk_match]
    maker_addr[tk_pos] = taker
    taker_addr[tk_pos] = u.wallets.n_noise + SHARP_WALLET_COUNT + u.neg_risk[mkt]  # the exchange
    shares[mk_pos] = mk_shares
    usdc[mk_pos] = mk_usdc
    shares[tk_pos] = tk_shares
    usdc[tk_pos] = tk_usdc
    maker_buys[mk_pos] = ~taker_buys[mk_match]
    maker_buys[tk_pos] = taker_buys

    r_mkt = mkt[row_match]
    r_side = side[row_match]
    tx = hex_rows(rng.integers(0, 256, size=(n, 32), dtype=np.uint8)).view("S66").ravel()
    tx_rows = arrow_strings(tx[row_match])
    mixed_maker = rng.random(n_rows) < _MIXED_CASE_P
    mixed_taker = rng.random(n_rows) < _MIXED_CASE_P

    def lookup(dictionary: pa.Array, index: np.ndarray) -> pa.Array:
        # CSV: dictionary-encoded (no copy; the CSV text is the same); else plain strings
        if for_csv:
            return pa.DictionaryArray.from_arrays(pa.array(index.astype(np.int32)), dictionary)
        return dictionary.take(pa.array(index))

    fills_batch = trades_batch = None
    if fills:
        token = 2 * r_mkt + r_side
        usdc_id = 2 * n_m
        maker_asset = np.where(maker_buys, usdc_id, token)
        taker_asset = np.where(maker_buys, token, usdc_id)
        fills_batch = pa.RecordBatch.from_arrays(
            [
                pa.array(t[row_match]),
                arrow_strings(u.wallets.addresses[maker_addr + u.wallets.n_addr * mixed_maker]),
                lookup(u.tokens, maker_asset),
                pa.array(np.where(maker_buys, usdc, shares)),
                arrow_strings(u.wallets.addresses[taker_addr + u.wallets.n_addr * mixed_taker]),
                lookup(u.tokens, taker_asset),
                pa.array(np.where(maker_buys, shares, usdc)),
                tx_rows,
            ],
            names=list(ORDER_FILLED_COLUMNS),
        )
    if trades:
        usd_amount = usdc / 1e6
        token_amount = shares / 1e6
        if for_csv:
            ts_col = arrow_strings(datetime_text(t)[row_match])
        else:
            ts_col = pa.array(t[row_match]).cast(pa.timestamp("s"))
        trades_batch = pa.RecordBatch.from_arrays(
            [
                ts_col,
                lookup(u.market_ids, r_mkt),
                arrow_strings(u.wallets.addresses[maker_addr]),
                arrow_strings(u.wallets.addresses[taker_addr]),
                lookup(_SIDES, r_side),
                lookup(_DIRECTIONS, maker_buys.view(np.int8)),
                lookup(_DIRECTIONS, (~maker_buys).view(np.int8)),
                pa.array(usd_amount / token_amount),
                pa.array(usd_amount),
                pa.array(token_amount),
                tx_rows,
            ],
            names=list(TRADES_COLUMNS),
        )
    # raw micro-USDC: exact in float64 up to 9e15 (9 billion USDC per market)
    volume = np.bincount(mkt, weights=tk_usdc, minlength=n_m)
    changes = None
    if positions:
        changes = (
            t[row_match],
            maker_addr,
            2 * r_mkt + r_side,
            np.where(maker_buys, shares, -shares),
        )
    return FillSlice(
        fills=fills_batch,
        trades=trades_batch,
        matches=n,
        market_volume=volume,
        positions=changes,
    )


def _iter_slices(u: Universe, *, fills: bool = True, trades: bool = True) -> Iterator[FillSlice]:
    for k in range(u.n_slices):
        yield generate_slice(u, k, fills=fills, trades=trades)


def _rebatch(batches: Iterator[pa.RecordBatch], chunk_rows: int) -> Iterator[pa.RecordBatch]:
    """Re-cut a stream of batches into batches of exactly chunk_rows rows (last one shorter)."""
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be >= 1")
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        held += batch.num_rows
        if held < chunk_rows:
            continue
        merged = pa.concat_batches(pending)
        offset = 0
        while merged.num_rows - offset >= chunk_rows:
            yield merged.slice(offset, chunk_rows)
            offset += chunk_rows
        rest = merged.slice(offset)
        pending = [rest] if rest.num_rows else []
        held = rest.num_rows
    if held:
        yield pa.concat_batches(pending)


def iter_order_fill_batches(
    config: SampleConfig, chunk_rows: int = 1_000_000
) -> Iterator[pa.RecordBatch]:
    """Stream the sample's orderFilled rows (timestamp order) in batches of ``chunk_rows``.

    Columns as poly_data's orderFilled.csv (``ORDER_FILLED_SCHEMA``): strings, except
    ``timestamp`` (int64 unix seconds) and the two amounts (int64, 6 decimals). The rows do
    not depend on ``chunk_rows``; memory stays bounded by ``chunk_rows`` plus one time slice.
    """
    u = build_universe(config)
    slices = _iter_slices(u, trades=False)
    yield from _rebatch((s.fills for s in slices if s.fills is not None), chunk_rows)


def iter_trade_batches(
    config: SampleConfig, chunk_rows: int = 1_000_000
) -> Iterator[pa.RecordBatch]:
    """Like ``iter_order_fill_batches`` but poly_data's processed trades (``TRADES_SCHEMA``),
    one row per orderFilled row in the same order; ``timestamp`` is ``timestamp[s]`` (UTC)."""
    u = build_universe(config)
    slices = _iter_slices(u, fills=False)
    yield from _rebatch((s.trades for s in slices if s.trades is not None), chunk_rows)


def count_order_fills(config: SampleConfig) -> int:
    """The exact number of orderFilled rows ``config`` produces, without generating them."""
    u = build_universe(config)
    return fill_row_count(u)
