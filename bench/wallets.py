"""Wallet benchmark: positions and P&L of every wallet over >= 20 million trades, and the
5-minute P&L snapshot of a 100-wallet watchlist.

Targets (issue 6): full recompute under 30 s with peak RSS under 4 GB; one 5-minute
snapshot of 100 wallets under 2 s. Both are reported with their ratio to one scan of the
trades' columns the ledger reads (the baseline, measured in the same run).

    python bench/wallets.py            # 20,000,000 trades (lake built once, then reused)
    python bench/wallets.py --quick    # 300,000 trades, seconds (smoke run)

Build: the generated sample (sharp wallets, noise wallets, resolved markets) written as
the real lake by bench/query.py's builders (order fills, then derive_trades). Each
measurement runs in a fresh worker process so its peak RSS is its own (os.wait4):

  - scan: SELECT max(maker), max(token_id), sum(price * token_amount), max(timestamp) over
    every trades file (the columns the ledger needs), the baseline;
  - positions: compute_positions(all wallets) written to Parquet (what wallets/positions
    runs), with its stages timed;
  - snapshot: the suggested top-100 watchlist marked to market at the last 5-minute mark
    the way a sync's re-run of today's wallets/pnl_snapshots partition does it: from
    yesterday's end-of-day checkpoint (saved first, untimed) plus today's fills, in a fresh
    process; the same snapshot from the whole history is reported beside it.
Always exits 0.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _common as c

SCRIPT = Path(__file__).resolve()
DEFAULT_TRADES = 20_000_000
QUICK_TRADES = 300_000
TARGET_POSITIONS_S = 30.0
TARGET_RSS_MB = 4096.0
TARGET_SNAPSHOT_S = 2.0


def build(workdir: Path, trades: int, seed: int) -> Path:
    """The trades lake, from bench/query.py's CSV-free builders."""
    from query import build_fills, build_trades

    from polymkt_dagster.lib.lake import Lake

    root = workdir / "lake"
    if Lake(root).files("trades"):
        print(f"reusing the lake at {root}", flush=True)
        return root
    c.fresh_dir(workdir)
    started = time.perf_counter()
    build_fills(root, workdir / "data", trades, seed)
    build_trades(root, workdir / "data", None)
    print(f"built the lake in {time.perf_counter() - started:,.0f} s", flush=True)
    return root


def warm_compiled_ledger() -> None:
    """Compile the numba passes once (cached on disk), as any earlier run would have: the
    workers then time the work, not the one-off compilation (reported here)."""
    import numpy as np
    import pyarrow as pa

    from polymkt_dagster.lib import positions as p

    started = time.perf_counter()
    fills = pa.table(
        {
            "gkey": np.array([1, 1], np.int64), "ts_us": np.array([1, 2], np.int64),
            "is_buy": [True, False], "shares": [1.0, 1.0], "price": [0.5, 0.6],
            "fee": [0.0, 0.0], "frn": np.array([0, 1], np.int64),
        }
    )  # fmt: skip
    p.summarize_fills(fills, 2)
    p.run_ledger(np.array([1]), np.array([True]), np.array([1.0]), np.array([0.5]))
    raw = p._RawFills.allocate(2)  # the counting sort and gather of load_sorted_fills
    raw.keep[:], raw.wid[:], raw.tid[:], raw.payload["ts"] = True, 0, [1, 0], [1, 2]
    p._sorted_fills(raw, 1, 2)
    print(f"compiled ledger ready in {time.perf_counter() - started:.1f} s", flush=True)


def worker_scan(root: Path) -> None:
    from polymkt_dagster.lib.duck import connect, sql_string
    from polymkt_dagster.lib.lake import Lake

    pattern = sql_string(Lake(root).table_dir("trades") / "**/*.parquet")
    with connect() as con:
        started = time.perf_counter()
        row = con.execute(
            f"SELECT count(*), max(maker), max(token_id), sum(price * token_amount), "
            f'max("timestamp") FROM read_parquet({pattern})'
        ).fetchone()
        seconds = time.perf_counter() - started
    c.emit_result({"seconds": seconds, "rows": int(row[0]) if row else 0})


def worker_positions(root: Path, out: Path) -> None:
    from polymkt_dagster.lib import positions as p
    from polymkt_dagster.lib.duck import connect
    from polymkt_dagster.lib.lake import Lake

    lake = Lake(root)
    stages: dict[str, float] = {}
    original_load, original_ledger = p.load_sorted_fills, p._summarize_rows

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            result = fn(*args, **kwargs)
            stages[name] = stages.get(name, 0.0) + time.perf_counter() - started
            return result

        return wrapper

    p.load_sorted_fills = timed("load+sort", original_load)
    p._summarize_rows = timed("ledger (second thread)", original_ledger)
    with connect() as con:
        started = time.perf_counter()
        p.compute_positions(con, lake, output=out)
        seconds = time.perf_counter() - started
        row = con.execute(
            f"SELECT count(*), count(DISTINCT wallet), sum(buys + sells), "
            f"count(*) FILTER (WHERE shares < 0) FROM read_parquet('{out}')"
        ).fetchone()
    # the ledger runs beside the rows and the write, so the stages overlap after the load
    stages["after load: marks, ledger + rows || write"] = seconds - stages.get("load+sort", 0.0)
    c.emit_result(
        {
            "seconds": seconds,
            "positions": row[0],
            "wallets": row[1],
            "fills": int(row[2] or 0),
            "negative": row[3],
            "stages": stages,
        }
    )


def worker_snapshot(root: Path, positions: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from polymkt_dagster.lib.duck import connect, sql_string
    from polymkt_dagster.lib.lake import Lake
    from polymkt_dagster.lib.snapshots import (
        SnapshotEngine,
        day_end,
        read_checkpoint,
        write_checkpoint,
    )
    from polymkt_dagster.lib.watchlists import SuggestOptions, rank_wallets

    lake = Lake(root)
    relation = f"read_parquet({sql_string(positions)})"
    with connect() as con:
        # the watchlist a user would follow: the suggested top 100 (>= 10 fills)
        wallets = rank_wallets(con, relation, None, SuggestOptions(top=100)).column(0).to_pylist()
        last = con.execute(f"SELECT max(last_trade_at) FROM {relation}").fetchone()[0]
    at = datetime.fromtimestamp((int(last.timestamp()) // 300) * 300, UTC)
    yesterday = at.date() - timedelta(days=1)
    with connect() as con:
        # what the previous day's run of wallets/pnl_snapshots saved (not timed)
        started = time.perf_counter()
        full = SnapshotEngine.prepare(con, lake, wallets, at)
        cold_s = time.perf_counter() - started  # the whole-history ledger alone
        write_checkpoint(lake, yesterday, full.checkpoint(day_end(yesterday)))
        full.close()
    with connect() as con:
        started = time.perf_counter()
        checkpoint = read_checkpoint(lake, yesterday)
        engine = SnapshotEngine.prepare(con, lake, wallets, at, checkpoint)
        rows = engine.at([at])
        seconds = time.perf_counter() - started
        engine.close()
    c.emit_result(
        {
            "seconds": seconds,
            "cold_s": cold_s,
            "wallets": len(wallets),
            "rows": rows.num_rows,
            "fills": engine.fills,
            "cold_fills": full.fills,
            "at": at.isoformat(),
        }
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_TRADES:,} trades")
    parser.add_argument("--trades", type=int, default=DEFAULT_TRADES)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--worker", choices=["scan", "positions", "snapshot"], help=argparse.SUPPRESS
    )
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker == "scan":
        worker_scan(args.root)
        return 0
    if args.worker == "positions":
        worker_positions(args.root, args.out)
        return 0
    if args.worker == "snapshot":
        worker_snapshot(args.root, args.out)
        return 0

    trades = QUICK_TRADES if args.quick else args.trades
    workdir = args.workdir or Path(f"/tmp/bench_wallets_{trades}")
    warm_compiled_ledger()
    c.banner(f"Wallet positions and P&L over {trades:,} generated trades")
    root = build(workdir, trades, args.seed)
    out = workdir / "positions.parquet"
    runs = {}
    for name, extra in (("scan", []), ("positions", ["--out", str(out)]),
                        ("snapshot", ["--out", str(out)])):  # fmt: skip
        runs[name] = c.run_worker(SCRIPT, ["--worker", name, "--root", str(root), *extra])
    scan = runs["scan"].result["seconds"]

    def rss(name: str) -> float:
        return runs[name].peak_rss_mb  # the worker's own high-water RSS (VmHWM)

    pos, snap = runs["positions"], runs["snapshot"]
    print(f"trades in the lake: {runs['scan'].result['rows']:,}")
    print(
        f"positions: {pos.result['positions']:,} for {pos.result['wallets']:,} wallets from "
        f"{pos.result['fills']:,} own fills; negative positions: {pos.result['negative']}"
    )
    print(
        "positions stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in pos.result["stages"].items())
    )
    print(
        f"snapshot at {snap.result['at']} of {snap.result['wallets']} suggested wallets: "
        f"{snap.result['fills']:,} fills after yesterday's checkpoint; the whole-history "
        f"ledger instead ({snap.result['cold_fills']:,} fills) takes {snap.result['cold_s']:.2f} s "
        "before any mark"
    )
    print()
    c.print_table(
        ["measure", "seconds", "x one scan", "peak RSS MB", "target", "verdict"],
        [
            ["one scan of trades (baseline)", scan, 1.0, rss("scan"), "", ""],
            [
                "positions + P&L, all wallets",
                pos.result["seconds"],
                pos.result["seconds"] / scan,
                rss("positions"),
                f"< {TARGET_POSITIONS_S:.0f} s, < {TARGET_RSS_MB:.0f} MB",
                c.verdict(
                    pos.result["seconds"] < TARGET_POSITIONS_S and rss("positions") < TARGET_RSS_MB
                ),
            ],
            [
                "5-minute snapshot, 100 wallets",
                snap.result["seconds"],
                snap.result["seconds"] / scan,
                rss("snapshot"),
                f"< {TARGET_SNAPSHOT_S:.0f} s",
                c.verdict(snap.result["seconds"] < TARGET_SNAPSHOT_S),
            ],
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
