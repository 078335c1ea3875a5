"""Backtest benchmark: favorite signals for every election group and a full backtest.

Issue target: over >= 2,000 election groups and >= 20 million trades, favorite signals for
all groups plus a full backtest in under 5 s, measured against the time to scan the trades
once (both figures and their ratio are printed).

    python bench/backtest.py            # 2,000 groups, 20,000,000 trades (minutes to build)
    python bench/backtest.py --quick    # 200 groups, 300,000 trades (seconds, smoke run)
    python bench/backtest.py --keep     # keep the generated data for the next run

Build (not timed; with ``--keep`` the work dir stays and the next run with the same size and
seed reuses it, ``--precompute`` rebuilding only the analytics):
generated directly as canonical trades Parquet with numpy/pyarrow, one file per UTC day
sorted by (market_id, timestamp) as ``derive_trades`` writes them, no CSV on the way. Each
group is a negRisk event of 3-7 candidates living 45-240 days; candidate scores follow
random walks, the highest final score wins, and prices are the softmax of the scores over
a Gumbel scale matched to the noise still to come (roughly the probability of finishing
first, so prices are about calibrated at every horizon). Trades (Yes and No tokens, No at
1 - p, a cent of noise, about 40% taker-side rows) get denser towards each group's end.
Markets go to ``raw/polymarket/markets.parquet``.

Measure, in one process:
  - baseline: one scan of the trades (count, sum of price, newest time, token id bytes)
    through ``Lake.scan_sql``, the columns a signal needs;
  - precompute (reported, outside the target): ``analytics/prices_1h``, ``prices_1d`` over
    every day, ``analytics/election_groups`` and ``analytics/price_index`` (every token's
    hourly and daily closes in one file sorted by token), the assets the signals read;
  - target: ``build_favorites`` for the 7 horizons (what the signals/favorites asset does:
    reads every candidate's hourly closes from the index in one read of their sorted run
    of rows, as-of look-ups for every group and horizon, writes 7 Parquet files) plus a
    full backtest (``compute_backtest``, what backtest/results does: reuses the fresh
    30-day favorites, reads the favorites' daily closes from the index, simulates entries,
    resolution and the daily equity curve);
  - (info) the same backtest through ``execute_backtest`` (Parquet outputs and the PNG).
Always exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import _common as c
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from polymkt_dagster.lib.analytics import bars as analytics
from polymkt_dagster.lib.analytics.election_groups import build_election_groups
from polymkt_dagster.lib.analytics.price_series import (
    PRICE_INDEX,
    PriceIndexReport,
    build_price_index,
)
from polymkt_dagster.lib.core.duck import connect
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.schemas import MARKETS, TRADES
from polymkt_dagster.lib.research import signals
from polymkt_dagster.lib.research.backtest import StrategyConfig
from polymkt_dagster.lib.research.backtest_runs import (
    compute_backtest,
    execute_backtest,
    prepare_backtest,
)
from polymkt_dagster.lib.research.research_store import ResearchStore

DEFAULT_GROUPS, DEFAULT_TRADES = 2_000, 20_000_000
QUICK_GROUPS, QUICK_TRADES = 200, 300_000
TARGET_S = 5.0
WINDOW_START = datetime(2023, 1, 1, tzinfo=UTC)
WINDOW_DAYS = 730
DAY_S = 86_400
STRATEGY = StrategyConfig(days_before=30, min_price=0.3, max_price=0.95, slippage_ticks=1,
                          fee_bps=10)  # fmt: skip

T = TypeVar("T")


CPU_SECONDS: dict[str, float] = {}  # label -> process CPU seconds (all threads)


def timed(fn: Callable[[], T], label: str = "") -> tuple[T, float]:
    """Wall seconds of ``fn``; its process CPU seconds are kept under ``label``."""
    cpu = time.process_time()
    started = time.perf_counter()
    value = fn()
    elapsed = time.perf_counter() - started
    CPU_SECONDS[label] = time.process_time() - cpu
    return value, elapsed


# ---------------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------------

_ARROW = {
    "VARCHAR": pa.string(), "VARCHAR[]": pa.list_(pa.string()), "DOUBLE": pa.float64(),
    "DOUBLE[]": pa.list_(pa.float64()), "BOOLEAN": pa.bool_(), "INTEGER": pa.int32(),
    "BIGINT": pa.int64(), "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
}  # fmt: skip


def _token_ids(rng: np.random.Generator, count: int) -> list[str]:
    """Distinct 77-digit decimal token ids (uint256 ERC-1155 positions)."""
    ids: set[str] = set()
    while len(ids) < count:
        ids.add(str(10**76 + int.from_bytes(rng.bytes(31), "big")))
    return sorted(ids)


def _groups(rng: np.random.Generator, n_groups: int) -> dict[str, np.ndarray]:
    """Per candidate: group, life, daily price grid offsets; the winner of each group."""
    sizes = rng.integers(3, 8, n_groups)
    life_days = rng.integers(45, 241, n_groups)
    start_day = rng.integers(0, WINDOW_DAYS - life_days)
    starts = WINDOW_START.timestamp() + start_day * DAY_S + rng.integers(0, 24, n_groups) * 3600
    group_of = np.repeat(np.arange(n_groups), sizes)
    grid_len = np.repeat(life_days + 1, sizes)
    grid_offset = np.concatenate([[0], np.cumsum(grid_len)[:-1]])
    # Scores: random walks; the winner has the highest final score. Prices are the softmax
    # of the scores over a Gumbel scale matched to the noise still to come, which is about
    # the probability of finishing first: prices are roughly calibrated at every horizon.
    sigma = 0.25
    steps = rng.normal(0.0, sigma, int(grid_len.sum()))
    steps[grid_offset] = rng.normal(0.0, 1.0, len(grid_offset))
    scores = np.empty_like(steps)
    for lo, n in zip(grid_offset, grid_len, strict=True):
        scores[lo : lo + n] = np.cumsum(steps[lo : lo + n])
    day_index = np.concatenate([np.arange(n) for n in grid_len])
    remaining = np.maximum(np.repeat(grid_len - 1, grid_len) - day_index, 1)
    z = scores / (sigma * np.sqrt(remaining) * np.sqrt(6.0) / np.pi)
    cell = (np.repeat(group_of, grid_len), day_index)
    peak = np.full((n_groups, int(grid_len.max())), -np.inf)
    np.maximum.at(peak, cell, z)
    weights = np.exp(z - peak[cell])
    totals = np.zeros_like(peak)
    np.add.at(totals, cell, weights)
    prices = weights / totals[cell]
    final = scores[grid_offset + grid_len - 1]
    winners = np.zeros(len(group_of), dtype=bool)
    for g in range(n_groups):
        members = np.flatnonzero(group_of == g)
        winners[members[np.argmax(final[members])]] = True
    return {
        "sizes": sizes, "life_days": life_days, "starts": starts.astype(np.int64),
        "group_of": group_of, "grid_len": grid_len, "grid_offset": grid_offset,
        "prices": np.clip(prices, 0.001, 0.999), "winners": winners,
    }  # fmt: skip


def _write_markets(lake: Lake, g: dict[str, np.ndarray], tokens: list[str]) -> None:
    n = len(g["group_of"])
    ends = g["starts"][g["group_of"]] + g["life_days"][g["group_of"]] * DAY_S
    rows = {name: [None] * n for name, _ in MARKETS.columns}
    for i in range(n):
        group = int(g["group_of"][i])
        rows["market_id"][i] = str(100_000 + i)
        rows["question"][i] = f"Will candidate {i} win race {group}?"
        rows["event_id"][i] = str(group)
        rows["event_title"][i] = f"Race {group}"
        rows["category"][i] = "Elections"
        rows["neg_risk"][i] = True
        rows["neg_risk_market_id"][i] = f"0x{group:064x}"
        rows["group_item_title"][i] = f"Candidate {i}"
        rows["outcomes"][i] = ["Yes", "No"]
        rows["token_ids"][i] = [tokens[2 * i], tokens[2 * i + 1]]
        rows["end_date"][i] = datetime.fromtimestamp(int(ends[i]), UTC)
        rows["closed"][i] = rows["resolved"][i] = True
        rows["winning_outcome_index"][i] = 0 if g["winners"][i] else 1
    schema = pa.schema([(name, _ARROW[kind]) for name, kind in MARKETS.columns])
    target = lake.single_file(MARKETS.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pydict(rows, schema=schema), target)


def build(lake: Lake, n_groups: int, n_trades: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    g = _groups(rng, n_groups)
    n_markets = len(g["group_of"])
    tokens = _token_ids(rng, 2 * n_markets)
    _write_markets(lake, g, tokens)

    # Trades: markets weighted lognormally, times denser towards the group's end.
    weights = rng.lognormal(0.0, 0.8, n_markets)
    market = rng.choice(n_markets, size=n_trades, p=weights / weights.sum()).astype(np.int32)
    group = g["group_of"][market]
    life = g["life_days"][group]
    offset = np.sqrt(rng.random(n_trades)) * (life * DAY_S - 60)
    ts = g["starts"][group] + offset.astype(np.int64)
    day_in_life = (offset // DAY_S).astype(np.int64)
    yes_price = g["prices"][g["grid_offset"][market] + day_in_life]
    is_yes = rng.random(n_trades) < 0.65
    price = np.where(is_yes, yes_price, 1.0 - yes_price) + rng.normal(0, 0.01, n_trades)
    price = np.round(np.clip(price, 0.001, 0.999), 3)
    usd = np.round(rng.lognormal(3.0, 1.2, n_trades), 2)
    taker = rng.random(n_trades) < 0.4
    token = (2 * market + (~is_yes)).astype(np.int32)
    del group, life, offset, day_in_life, yes_price

    day = (ts // DAY_S).astype(np.int64)
    order = np.lexsort((ts, market, day))
    ts, market, token, price, usd, taker, day = (
        a[order] for a in (ts, market, token, price, usd, taker, day)
    )
    bounds = np.flatnonzero(np.diff(day)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [n_trades]])
    token_dict = pa.array(tokens)
    market_dict = pa.array([str(100_000 + i) for i in range(n_markets)])
    wallets = pa.array([f"0x{i:040x}" for i in range(1, 2_001)])
    schema = pa.schema([(name, _ARROW[kind]) for name, kind in TRADES.columns])
    for lo, hi in zip(starts, ends, strict=True):
        n = hi - lo
        sl = slice(lo, hi)
        yes = (token[sl] % 2) == 0
        table = pa.table(
            {
                "timestamp": pa.array(ts[sl] * 1_000_000, pa.timestamp("us", tz="UTC")),
                "market_id": pa.DictionaryArray.from_arrays(market[sl], market_dict),
                "condition_id": pa.DictionaryArray.from_arrays(market[sl], market_dict),
                "token_id": pa.DictionaryArray.from_arrays(token[sl], token_dict),
                "outcome": pa.array(np.where(yes, "Yes", "No")),
                "nonusdc_side": pa.array(np.where(yes, "token1", "token2")),
                "maker": pa.DictionaryArray.from_arrays(
                    rng.integers(0, len(wallets), n, dtype=np.int32), wallets
                ),
                "taker": pa.DictionaryArray.from_arrays(
                    rng.integers(0, len(wallets), n, dtype=np.int32), wallets
                ),
                "maker_direction": pa.array(np.where(taker[sl], "BUY", "SELL")),
                "taker_direction": pa.array(np.where(taker[sl], "SELL", "BUY")),
                "price": price[sl],
                "usd_amount": usd[sl],
                "token_amount": np.round(usd[sl] / price[sl], 2),
                "fee": pa.nulls(n, pa.float64()),
                "transaction_hash": pa.array(np.arange(lo, hi)).cast(pa.string()),
                "order_fill_id": pa.array(np.arange(lo, hi)).cast(pa.string()),
                "is_taker_side": taker[sl],
            }
        )
        table = table.cast(
            pa.schema(
                [
                    pa.field(f.name, f.type)
                    if not pa.types.is_dictionary(table.schema.field(f.name).type)
                    else table.schema.field(f.name)
                    for f in schema
                ]
            )
        )
        moment = datetime.fromtimestamp(int(day[lo]) * DAY_S, UTC).date()
        target = lake.day_dir(TRADES.name, moment) / "part-0.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, target, compression="zstd", row_group_size=122_880)
    return {"groups": n_groups, "markets": n_markets, "trades": n_trades, "seed": seed,
            "days": len(starts)}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Measure
# ---------------------------------------------------------------------------------------------


def scan_once(lake: Lake) -> tuple[int, float]:
    with connect() as con:
        row = con.execute(
            f"""SELECT count(*), sum(price), max("timestamp"), sum(strlen(token_id))
                FROM {lake.scan_sql(TRADES, lake.files(TRADES.name))}"""
        ).fetchone()
    assert row is not None
    return int(row[0]), float(row[1])


def precompute(lake: Lake) -> dict[str, Any]:
    days = lake.partition_days(TRADES.name)
    with connect() as con:
        bars = analytics.build_hourly_bars(con, lake, days)
        daily = analytics.build_daily_bars(con, lake, days)
        groups = build_election_groups(con, lake, None)
    index, index_s = timed(lambda: index_prices(lake))
    return {"bars": bars.rows, "daily_bars": daily.rows, "groups": groups.groups,
            "members": groups.members, "index_rows": index.hourly_rows + index.daily_rows,
            "index_s": index_s}  # fmt: skip


def index_prices(lake: Lake) -> PriceIndexReport:
    """The analytics/price_index asset: every token's hourly and daily closes, one file."""
    with connect() as con:
        return build_price_index(con, lake)


def favorites(lake: Lake) -> list[signals.FavoritesReport]:
    with connect() as con:
        return signals.build_favorites(con, lake, signals.DAYS_TO_EXPIRY)


def full_backtest(lake: Lake) -> dict[str, Any]:
    """What the backtest/results asset computes, without writing its outputs."""
    with connect() as con:
        return compute_backtest(con, lake, STRATEGY).metrics


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="200 groups, 300,000 trades")
    parser.add_argument("--groups", type=int, default=None)
    parser.add_argument("--trades", type=int, default=None)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--rebuild", action="store_true", help="regenerate even if kept")
    parser.add_argument("--keep", action="store_true", help="keep the work dir for reuse")
    parser.add_argument(
        "--precompute",
        action="store_true",
        help="rebuild prices_1h/1d, groups and the price index even if cached",
    )
    args = parser.parse_args(argv)
    n_groups = args.groups or (QUICK_GROUPS if args.quick else DEFAULT_GROUPS)
    n_trades = args.trades or (QUICK_TRADES if args.quick else DEFAULT_TRADES)
    workdir = args.workdir or Path(tempfile.gettempdir()) / "polymkt-bench-backtest"
    lake = Lake(workdir / "parquet")
    marker = workdir / "generated.json"
    wanted = {"groups": n_groups, "trades": n_trades, "seed": args.seed}

    c.banner(f"Backtest benchmark: {n_groups:,} election groups, {n_trades:,} trades")
    cached = marker.exists() and all(
        json.loads(marker.read_text()).get(k) == v for k, v in wanted.items()
    )
    if args.rebuild or not cached:
        c.fresh_dir(workdir)
        built, build_s = timed(lambda: build(lake, n_groups, n_trades, args.seed))
        marker.write_text(json.dumps(built))
        print(f"generated {built['markets']:,} candidate markets and {n_trades:,} trades in "
              f"{built['days']} day files: {build_s:.1f} s (not timed below)")  # fmt: skip
    else:
        print(f"reusing the generated data in {workdir} (--rebuild to regenerate)")
    print(f"trades on disk: {c.fmt_mb(c.dir_size(lake.table_dir(TRADES.name)))}")

    # Library imports are not part of any step: a Dagster code server has them loaded
    # (pyarrow brings in pandas on its first timestamp conversion, ~1.5 s here).
    import pandas  # noqa: F401

    (rows, _), scan_s = timed(lambda: scan_once(lake), "scan")
    kept = json.loads(marker.read_text()).get("precompute") if cached else None
    if kept and not args.precompute and lake.files(analytics.PRICES_1H):
        pre, pre_s = kept, None
        if "index_s" not in kept or not lake.single_file(PRICE_INDEX).exists():
            # Data kept by a run from before the as-of index: build just the index.
            index, index_s = timed(lambda: index_prices(lake))
            pre = {**kept, "index_rows": index.hourly_rows + index.daily_rows,
                   "index_s": index_s}  # fmt: skip
            stored = json.loads(marker.read_text())
            stored.update(precompute=pre, precompute_s=stored["precompute_s"] + index_s)
            marker.write_text(json.dumps(stored))
    else:
        pre, pre_s = timed(lambda: precompute(lake))
        marker.write_text(json.dumps({**json.loads(marker.read_text()), "precompute": pre,
                                      "precompute_s": pre_s}))  # fmt: skip
    reports, signals_s = timed(lambda: favorites(lake), "signals")
    metrics, backtest_s = timed(lambda: full_backtest(lake), "backtest")
    store = ResearchStore.in_data_dir(workdir)
    prepare_backtest(store, STRATEGY, backtest_id="bench")

    def through_store() -> Any:
        with connect() as con:
            return execute_backtest(store, con, lake, "bench")

    _, execute_s = timed(through_store)
    total = signals_s + backtest_s
    pre_time = pre_s if pre_s is not None else json.loads(marker.read_text())["precompute_s"]

    c.banner("Results")
    c.print_table(
        ["step", "seconds", "x scan", "what"],
        [
            ["scan trades once (baseline)", scan_s, 1.0, f"{rows:,} rows"],
            ["precompute: bars, groups, index", pre_s or pre_time, pre_time / scan_s,
             f"{pre['bars']:,} hourly + {pre['daily_bars']:,} daily bars, {pre['groups']:,} "
             "groups (outside the target)"
             + ("" if pre_s else "; reused, time from the run that built it")],
            ["  of which the as-of index", pre["index_s"], pre["index_s"] / scan_s,
             f"{pre['index_rows']:,} hourly + daily closes sorted by token (outside the "
             "target)"],
            ["signals, 7 horizons", signals_s, signals_s / scan_s,
             f"{sum(r.groups for r in reports):,} group signals, "
             f"{sum(r.ok for r in reports):,} with a favorite"],
            ["full backtest", backtest_s, backtest_s / scan_s,
             f"{metrics['trades']:,} trades, {metrics['days']} equity days; signals: "
             f"{metrics['signals_source']}"],
            ["signals + backtest (target)", total, total / scan_s, f"target < {TARGET_S:g} s"],
            ["(info) execute_backtest", execute_s, execute_s / scan_s,
             "with Parquet outputs and the PNG"],
        ],
    )  # fmt: skip
    print()
    for r in reports:
        rate = f"{r.favorite_win_rate:.1%}" if r.favorite_win_rate is not None else "n/a"
        print(f"  {r.days_before:>2} days out: favorite won {rate} of {r.favorites_resolved:,}, "
              f"avg favorite price {r.avg_favorite_price or 0:.3f}")  # fmt: skip
    print(
        f"  backtest: total return {metrics['total_return']:.2%}, win rate "
        f"{metrics['win_rate']:.1%} at avg price {metrics['avg_entry_price']:.3f}, "
        f"Sharpe {metrics['sharpe'] or 0:.2f}, max drawdown {metrics['max_drawdown']:.2%}"
    )
    print()
    cpu_total = CPU_SECONDS["signals"] + CPU_SECONDS["backtest"]
    print(
        f"CPU seconds (all threads): scan {CPU_SECONDS['scan']:.2f}, signals "
        f"{CPU_SECONDS['signals']:.2f}, backtest {CPU_SECONDS['backtest']:.2f} "
        f"(ratio {cpu_total / CPU_SECONDS['scan']:.2f}); load average while measuring "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(
        f"signals + backtest: {total:.2f} s vs scan once {scan_s:.2f} s "
        f"(ratio {total / scan_s:.2f}): {c.verdict(total < TARGET_S)} (target < {TARGET_S:g} s)"
    )
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
