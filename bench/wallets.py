"""Wallet benchmark: positions and P&L of every wallet over >= 20 million trades, and the
5-minute P&L snapshot of a 100-wallet watchlist.

Targets (issues 6 and 11): full recompute under 30 s with peak RSS under 4 GB, with CTF
position events at a realistic ratio (one split or merge per 20 fills, plus redemptions
and neg-risk conversions); one 5-minute snapshot of 100 wallets under 2 s. Both are
reported with their ratio to one scan of the trades' columns the ledger reads (the
baseline, measured in the same run), and the positions beside the same ledger without the
position events (``fills only``).

    python bench/wallets.py            # 20,000,000 trades (lake built once, then reused)
    python bench/wallets.py --quick    # 300,000 trades, seconds (smoke run)

Build: the generated sample (sharp wallets, noise wallets, resolved markets) written as
the real lake by bench/query.py's builders (order fills, then derive_trades), then
raw/polymarket/ctf_events from the trades (``build_ctf_events``: a split or merge by the
maker of one fill in 20, of its amount; a Conditional Tokens redemption by the maker of
one fill in 200 of a resolved market; a neg-risk conversion by the maker of one fill in
2,000 of a neg-risk market; the resolved markets' ConditionResolution). Each
measurement runs in a fresh worker process so its peak RSS is its own (os.wait4):

  - scan: SELECT max(maker), max(token_id), sum(price * token_amount), max(timestamp) over
    every trades file (the columns the ledger needs), the baseline;
  - positions: compute_positions(all wallets) written to Parquet (what wallets/positions
    runs), with its stages timed; the same with the ctf_events moved aside (fills only);
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

    from polymkt_dagster.lib.core.lake import Lake

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


EVENT_EVERY = 20  # fills per split or merge
REDEEM_EVERY = 200  # fills of resolved markets per redemption
CONVERT_EVERY = 2_000  # fills of neg-risk markets per conversion


def build_ctf_events(root: Path, seed: int) -> int:
    """raw/polymarket/ctf_events from the lake's trades (see the module doc); returns rows."""
    from polymkt_dagster.lib.core.duck import connect
    from polymkt_dagster.lib.core.lake import DAY_COLUMN, Lake
    from polymkt_dagster.lib.core.schemas import CTF_EVENTS, MARKETS, TRADES

    lake = Lake(root)
    if lake.files(CTF_EVENTS.name):
        return -1
    started = time.perf_counter()
    trades = lake.scan_sql(TRADES)
    # hash buckets of the fill id pick the sampled fills: deterministic for a seed
    pick = f"hash(order_fill_id || '{seed}')"
    columns = ", ".join(CTF_EVENTS.column_names)
    sql = f"""
        WITH m AS (
            SELECT lower(condition_id) AS condition_id, market_id, neg_risk,
                   neg_risk_market_id, question_id, resolved, winning_outcome_index,
                   coalesce(closed_time, end_date) AS resolved_at
            FROM {lake.scan_sql(MARKETS)}
        ),
        t AS (
            SELECT t."timestamp", t.maker, t.token_amount, t.order_fill_id, {pick} AS h,
                   m.*
            FROM {trades} t JOIN m ON m.market_id = t.market_id
            WHERE t.maker IS NOT NULL
        ),
        ev AS (
            SELECT "timestamp", maker AS stakeholder,
                   CASE WHEN neg_risk THEN 'neg_risk_adapter' ELSE 'conditional_tokens' END
                     AS contract,
                   CASE WHEN h % 2 = 0 THEN 'PositionSplit' ELSE 'PositionsMerge' END AS event,
                   condition_id, NULL AS neg_risk_market_id, NULL AS question_id,
                   ['1', '2'] AS index_sets, CAST(token_amount * 1e6 AS BIGINT) AS amount,
                   NULL::BIGINT[] AS amounts, NULL::BIGINT[] AS payout_numerators,
                   order_fill_id
            FROM t WHERE h % {EVENT_EVERY} = 0
            UNION ALL BY NAME
            SELECT resolved_at + INTERVAL 1 DAY AS "timestamp", maker AS stakeholder,
                   'conditional_tokens' AS contract, 'PayoutRedemption' AS event,
                   condition_id, ['1', '2'] AS index_sets, order_fill_id
            FROM t WHERE resolved AND h % {REDEEM_EVERY} = 1
            UNION ALL BY NAME
            SELECT "timestamp", maker AS stakeholder, 'neg_risk_adapter' AS contract,
                   'PositionsConverted' AS event, neg_risk_market_id,
                   [CAST(1 << TRY_CAST('0x' || right(question_id, 2) AS INTEGER) AS VARCHAR)]
                     AS index_sets,
                   CAST(token_amount * 1e6 AS BIGINT) AS amount, order_fill_id
            FROM t WHERE neg_risk AND neg_risk_market_id IS NOT NULL
              AND TRY_CAST('0x' || right(question_id, 2) AS INTEGER) < 62
              AND h % {CONVERT_EVERY} = 2
            UNION ALL BY NAME
            SELECT resolved_at AS "timestamp", '0x' || repeat('0e', 20) AS stakeholder,
                   'conditional_tokens' AS contract, 'ConditionResolution' AS event,
                   condition_id, 2 AS outcome_slot_count,
                   CASE WHEN winning_outcome_index = 0 THEN [1, 0] ELSE [0, 1] END
                     AS payout_numerators, market_id AS order_fill_id
            FROM m WHERE resolved AND winning_outcome_index IS NOT NULL
              AND resolved_at IS NOT NULL
        ),
        keyed AS (
            SELECT *, row_number() OVER (ORDER BY "timestamp", order_fill_id, event) AS n
            FROM ev WHERE "timestamp" IS NOT NULL
        )
        SELECT {columns}, CAST("timestamp" AS DATE) AS {DAY_COLUMN}
        FROM (
            SELECT *, '0x' || lpad(printf('%x', n), 64, '0') || '_' || (n % 500) AS id,
                   n AS block_number, CAST(n % 500 AS INTEGER) AS log_index,
                   '0x' || lpad(printf('%x', n), 64, '0') AS transaction_hash,
                   NULL AS collateral_token, NULL AS parent_collection_id, NULL AS payout,
                   'csv' AS source
            FROM keyed UNION ALL BY NAME ({CTF_EVENTS.typed_empty_select()})
        )
        ORDER BY {DAY_COLUMN}, "timestamp", id
    """
    with connect(temp_dir=root.parent / ".duckdb_tmp") as con:
        typed = ", ".join(f"CAST({n} AS {t}) AS {n}" for n, t in CTF_EVENTS.columns)
        reader = con.execute(f"SELECT {typed}, {DAY_COLUMN} FROM ({sql})").to_arrow_reader(122_880)
        writes = lake.write_sorted_days(CTF_EVENTS.name, reader)
    rows = sum(w.rows for w in writes)
    print(f"built {rows:,} ctf_events in {time.perf_counter() - started:,.0f} s", flush=True)
    return rows


def warm_compiled_ledger() -> None:
    """Compile the numba passes once (cached on disk), as any earlier run would have: the
    workers then time the work, not the one-off compilation (reported here)."""
    import numpy as np
    import pyarrow as pa

    from polymkt_dagster.lib.wallets.fill_reader import read_sorted_rows
    from polymkt_dagster.lib.wallets.ledger import run_ledger
    from polymkt_dagster.lib.wallets.position_events import EventRows
    from polymkt_dagster.lib.wallets.position_summary import summarize_fills

    started = time.perf_counter()
    fills = pa.table(
        {
            "gkey": np.array([1, 1], np.int64), "ts_us": np.array([1, 2], np.int64),
            "is_buy": [True, False], "kind": np.array([0, 1], np.int8), "shares": [1.0, 1.0],
            "price": [0.5, 0.6], "fee": [0.0, 0.0], "frn": np.array([0, 1], np.int64),
        }
    )  # fmt: skip
    summarize_fills(fills, 2)
    run_ledger(np.array([1]), np.array([True]), np.array([1.0]), np.array([0.5]))
    # the counting sort, merge and gather of load_sorted_fills, over two opening rows
    opening = pa.table(
        {"wallet": ["0xa", "0xa"], "token_id": ["2", "1"], "shares": [1.0, 1.0],
         "avg_price": [0.5, 0.5]}
    )  # fmt: skip
    read_sorted_rows([], opening, 1, None, None, EventRows.empty())
    print(f"compiled ledger ready in {time.perf_counter() - started:.1f} s", flush=True)


def worker_scan(root: Path) -> None:
    from polymkt_dagster.lib.core.duck import connect, sql_string
    from polymkt_dagster.lib.core.lake import Lake

    pattern = sql_string(Lake(root).table_dir("trades") / "**/*.parquet")
    with connect() as con:
        started = time.perf_counter()
        row = con.execute(
            f"SELECT count(*), max(maker), max(token_id), sum(price * token_amount), "
            f'max("timestamp") FROM read_parquet({pattern})'
        ).fetchone()
        seconds = time.perf_counter() - started
    c.emit_result({"seconds": seconds, "rows": int(row[0]) if row else 0})


def worker_positions(root: Path, out: Path, fills_only: bool = False) -> None:
    from polymkt_dagster.lib.core.duck import connect
    from polymkt_dagster.lib.core.lake import Lake
    from polymkt_dagster.lib.wallets import ledger_input
    from polymkt_dagster.lib.wallets import positions as p
    from polymkt_dagster.lib.wallets.position_events import EventRows

    lake = Lake(root)
    if fills_only:  # the same ledger, the position events left out
        ledger_input.load_event_rows = lambda *args, **kwargs: EventRows.empty()
    stages: dict[str, float] = {}
    original_load, original_ledger = p.load_sorted_fills, p.summarize_chunk

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            result = fn(*args, **kwargs)
            stages[name] = stages.get(name, 0.0) + time.perf_counter() - started
            return result

        return wrapper

    p.load_sorted_fills = timed("load+sort", original_load)
    p.summarize_chunk = timed("ledger (second thread)", original_ledger)
    with connect() as con:
        started = time.perf_counter()
        p.compute_positions(con, lake, output=out)
        seconds = time.perf_counter() - started
        row = con.execute(
            f"SELECT count(*), count(DISTINCT wallet), sum(buys + sells), "
            f"count(*) FILTER (WHERE shares < 0), sum(position_events), sum(realized_pnl), "
            f"sum(oversold_proceeds) / nullif(sum(sold_usd + event_sold_usd), 0) "
            f"FROM read_parquet('{out}')"
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
            "events": int(row[4] or 0),
            "realized": float(row[5] or 0.0),
            "oversold_share": float(row[6] or 0.0),
            "stages": stages,
        }
    )


def worker_snapshot(root: Path, positions: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from polymkt_dagster.lib.core.duck import connect, sql_string
    from polymkt_dagster.lib.core.lake import Lake
    from polymkt_dagster.lib.wallets.snapshots import (
        SnapshotEngine,
        day_end,
        read_checkpoint,
        write_checkpoint,
    )
    from polymkt_dagster.lib.wallets.watchlists import SuggestOptions, rank_wallets

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
        "--worker",
        choices=["scan", "positions", "fills_only", "snapshot"],
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker == "scan":
        worker_scan(args.root)
        return 0
    if args.worker in ("positions", "fills_only"):
        worker_positions(args.root, args.out, fills_only=args.worker == "fills_only")
        return 0
    if args.worker == "snapshot":
        worker_snapshot(args.root, args.out)
        return 0

    trades = QUICK_TRADES if args.quick else args.trades
    workdir = args.workdir or Path(f"/tmp/bench_wallets_{trades}")
    warm_compiled_ledger()
    c.banner(f"Wallet positions and P&L over {trades:,} generated trades")
    root = build(workdir, trades, args.seed)
    build_ctf_events(root, args.seed)
    out = workdir / "positions.parquet"
    runs = {}
    for name, extra in (("scan", []), ("fills_only", ["--out", str(workdir / "fills.parquet")]),
                        ("positions", ["--out", str(out)]),
                        ("snapshot", ["--out", str(out)])):  # fmt: skip
        runs[name] = c.run_worker(SCRIPT, ["--worker", name, "--root", str(root), *extra])
    scan = runs["scan"].result["seconds"]

    def rss(name: str) -> float:
        return runs[name].peak_rss_mb  # the worker's own high-water RSS (VmHWM)

    pos, snap, bare = runs["positions"], runs["snapshot"], runs["fills_only"]
    print(f"trades in the lake: {runs['scan'].result['rows']:,}")
    print(
        f"positions: {pos.result['positions']:,} for {pos.result['wallets']:,} wallets from "
        f"{pos.result['fills']:,} own fills and {pos.result['events']:,} position-event rows "
        f"(1 per {pos.result['fills'] / max(pos.result['events'], 1):.1f} fills); "
        f"negative positions: {pos.result['negative']}"
    )
    print(
        f"realized P&L {pos.result['realized']:,.0f} USDC, oversold share of sell proceeds "
        f"{pos.result['oversold_share']:.1%}; fills only: {bare.result['realized']:,.0f} USDC, "
        f"{bare.result['oversold_share']:.1%}"
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
                "positions, fills only (no events)",
                bare.result["seconds"],
                bare.result["seconds"] / scan,
                rss("fills_only"),
                "",
                "",
            ],
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
