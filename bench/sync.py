"""Live-sync benchmark: order fills from the local Goldsky / RPC servers into the lake.

Issue targets: sync at least 1 million fills from the local servers (events/s, peak RSS under
2 GB), trade derivation of a day compared with reading that day's fills, and a 10-minute tick
of typical volume (about 5,000 new fills, through Dagster: fills sync, token lookups, trades
of the day, checks) in under 30 s end to end. CTF position events (issue 11; one split, merge,
redemption, resolution or conversion per 20 fills, on the same blocks) are synced from the
same node and from the activity subgraph, and their throughput is reported next to the fills.

    python bench/sync.py            # 1,000,000 fills over 20 days ending now, a few minutes
    python bench/sync.py --quick    # 100,000 fills over 10 days, well under a minute

The servers (polymkt_local/polymarket_apis.py, real HTTP on 127.0.0.1) run in
this process; every measured step runs in a fresh worker process, whose own peak RSS (VmHWM)
``_common.run_worker`` reports. Baselines measured in the same run:

- sync throughput against a fetch-only run (same source, same pages, ``dry_run``: no merge,
  no state), so the ratio is the cost of landing the rows;
- trade derivation of the busiest day against reading that day's fills from the lake.

Always exits 0: a missed target is reported, not raised.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import _common as c

SCRIPT = Path(__file__).resolve()
WORK = Path("/tmp/polymkt_bench_sync")
TARGET_TICK_S = 30.0
TARGET_RSS_MB = 2048.0
TICK_FILLS = 5_000
CTF_EVENTS_PER_FILLS = 20  # one position event per 20 fills (issue 11's realistic ratio)


# ---------------------------------------------------------------------------------------------
# Workers (each in its own process)
# ---------------------------------------------------------------------------------------------


def _window(args: argparse.Namespace) -> tuple[datetime, datetime]:
    return (datetime.fromtimestamp(args.start, UTC), datetime.fromtimestamp(args.end, UTC))


def worker_sync(args: argparse.Namespace) -> None:
    from polymkt_dagster.lib.core.lake import Lake
    from polymkt_dagster.lib.ingest.sources.ctf_events import CtfRpcSource
    from polymkt_dagster.lib.ingest.sources.ctf_goldsky import CtfGoldskySource
    from polymkt_dagster.lib.ingest.sources.goldsky import GoldskySource
    from polymkt_dagster.lib.ingest.sources.rpc import RpcSource
    from polymkt_dagster.lib.ingest.sync import sync_ctf_events, sync_order_fills

    urls = json.loads(args.urls)
    ctf = args.table == "ctf_events"
    source: Any
    if args.source == "goldsky":
        source = CtfGoldskySource(urls["activity"]) if ctf else GoldskySource(urls["goldsky"])
    else:
        source = (CtfRpcSource if ctf else RpcSource)(urls["rpc"], confirmations=0)
    run = sync_ctf_events if ctf else sync_order_fills
    started = time.perf_counter()
    report = run(
        Lake(Path(args.root)), source, *_window(args), dry_run=args.dry_run, batch_rows=100_000
    )
    seconds = time.perf_counter() - started
    c.emit_result(
        {"seconds": seconds, "rows": report.rows_fetched, "rows_new": report.rows_new,
         "requests": report.requests, "batches": report.batches}
    )  # fmt: skip


def worker_markets(args: argparse.Namespace) -> None:
    from polymkt_dagster.lib.core.lake import Lake
    from polymkt_dagster.lib.ingest.market_sync import sync_gamma
    from polymkt_dagster.lib.ingest.sources.gamma_client import GammaClient

    urls = json.loads(args.urls)
    lake = Lake(Path(args.root))
    started = time.perf_counter()
    for kind in ("markets", "events"):
        sync_gamma(lake, GammaClient(urls["gamma"]), kind, full=True)
    c.emit_result({"seconds": time.perf_counter() - started})


def worker_derive(args: argparse.Namespace) -> None:
    from polymkt_dagster.lib.core.duck import connect
    from polymkt_dagster.lib.core.lake import Lake
    from polymkt_dagster.lib.core.schemas import ORDER_FILLED
    from polymkt_dagster.lib.ingest.trades import derive_trades

    lake = Lake(Path(args.root))
    days = lake.partition_days(ORDER_FILLED.name)
    busiest = max(
        days, key=lambda d: sum(f.stat().st_size for f in lake.day_files("order_filled", d))
    )
    files = lake.day_files(ORDER_FILLED.name, busiest)
    read_s, derive_s, rows = [], [], 0
    for _ in range(3):
        with connect() as con:
            started = time.perf_counter()
            rows = (
                con.execute(f"SELECT * FROM {lake.scan_sql(ORDER_FILLED, files)}")
                .to_arrow_table()
                .num_rows
            )
            read_s.append(time.perf_counter() - started)
        with connect() as con:
            started = time.perf_counter()
            report = derive_trades(con, lake, [busiest])
            derive_s.append(time.perf_counter() - started)
    c.emit_result({"day": busiest.isoformat(), "rows": rows, "read_s": min(read_s),
                   "derive_s": min(derive_s), "trades": report.rows_written,
                   "unmapped": report.unmapped_fills})  # fmt: skip


def worker_tick(args: argparse.Namespace) -> None:
    """One sensor tick's run, in-process through Dagster, as the sensor would request it."""
    import dagster as dg

    from polymkt_dagster.defs.ingest.assets import raw_ctf_events, raw_order_filled, raw_trades
    from polymkt_dagster.defs.shared.resources import PolymktResource
    from polymkt_dagster.defs.shared.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )
    from polymkt_dagster.lib.ingest.sync import days_to_sync

    urls = json.loads(args.urls)
    os.environ.update({
        "POLYMKT_GAMMA_API_URL": urls["gamma"], "POLYMKT_GOLDSKY_ORDERBOOK_URL": urls["goldsky"],
        "POLYMKT_ORDER_FILLED_SOURCE": "goldsky", "POLYMKT_POLYGON_RPC_URL": urls["rpc"],
        "POLYMKT_CTF_EVENTS_SOURCE": "rpc", "POLYMKT_RPC_CONFIRMATIONS": "0",
    })  # fmt: skip
    days = days_to_sync(datetime.now(UTC), datetime.fromtimestamp(args.start, UTC))
    started = time.perf_counter()
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [raw_order_filled, raw_trades, raw_ctf_events],
            instance=instance,
            resources={"polymkt": PolymktResource(data_dir=str(Path(args.root).parent))},
            tags={"polymkt/ingest": "live",
                  ASSET_PARTITION_RANGE_START_TAG: days[0].isoformat(),
                  ASSET_PARTITION_RANGE_END_TAG: days[-1].isoformat()},
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )  # fmt: skip
        seconds = time.perf_counter() - started
        fills = result.asset_materializations_for_node("raw__order_filled")[0].metadata
        trades = result.asset_materializations_for_node("raw__trades")[0].metadata
        ctf = result.asset_materializations_for_node("raw__ctf_events")[0].metadata
    c.emit_result({"seconds": seconds, "success": result.success,
                   "rows_new": fills["rows_new"].value, "ctf_new": ctf["rows_new"].value,
                   "trades": trades["dagster/row_count"].value, "days": len(days)})  # fmt: skip


WORKERS = {"sync": worker_sync, "markets": worker_markets, "derive": worker_derive,
           "tick": worker_tick}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


def _run(name: str, **options: object) -> c.WorkerRun:
    argv = ["--worker", name]
    for key, value in options.items():
        if value is True:
            argv.append(f"--{key.replace('_', '-')}")
        elif value is not None and value is not False:
            argv += [f"--{key.replace('_', '-')}", str(value)]
    return c.run_worker(SCRIPT, argv)


def main_driver(args: argparse.Namespace) -> None:
    from polymkt_dagster.lib.sample.config import SampleConfig
    from polymkt_dagster.lib.sample.fills import iter_order_fill_batches
    from polymkt_dagster.lib.sample.gamma import generate_markets
    from polymkt_local.polymarket_apis import (
        ActivityServer,
        CtfStore,
        FillStore,
        GammaServer,
        GoldskyServer,
        RpcServer,
    )

    fills_target = 100_000 if args.quick else args.fills
    days = 10 if args.quick else 20
    end = datetime.now(UTC) - timedelta(hours=1)
    config = SampleConfig(scale=fills_target / 10_000 * 1.02, start=end - timedelta(days=days),
                          end=end)  # fmt: skip
    c.banner(f"bench/sync: {fills_target:,} fills over {days} days ending {end:%Y-%m-%d %H:%M} UTC")
    started = time.perf_counter()
    store = FillStore.from_batches(iter_order_fill_batches(config))
    markets, events = generate_markets(config)
    ctf = CtfStore.over(store, len(store) // CTF_EVENTS_PER_FILLS)
    print(f"generated {len(store):,} fills, {len(ctf):,} CTF position events and "
          f"{len(markets):,} markets in {time.perf_counter() - started:.1f}s")  # fmt: skip
    servers = [GoldskyServer(store), RpcServer(store, max_block_range=5_000, ctf=ctf),
               GammaServer(markets, events), ActivityServer(ctf)]  # fmt: skip
    for server in servers:
        server.start()
    urls = json.dumps({"goldsky": servers[0].base_url, "rpc": servers[1].base_url,
                       "gamma": servers[2].base_url, "activity": servers[3].base_url})  # fmt: skip
    first, last = int(store.timestamp.min()), int(store.timestamp.max()) + 1
    work = c.fresh_dir(WORK)
    try:
        base = _run("sync", source="goldsky", urls=urls, root=work / "dry", start=first,
                    end=last, dry_run=True)  # fmt: skip
        gold = _run("sync", source="goldsky", urls=urls, root=work / "a" / "parquet",
                    start=first, end=last)  # fmt: skip
        rpc = _run("sync", source="rpc", urls=urls, root=work / "b" / "parquet", start=first,
                   end=last)  # fmt: skip
        ctf_rpc = _run("sync", source="rpc", table="ctf_events", urls=urls,
                       root=work / "b" / "parquet", start=first, end=last)  # fmt: skip
        ctf_gold = _run("sync", source="goldsky", table="ctf_events", urls=urls,
                        root=work / "a" / "parquet", start=first, end=last)  # fmt: skip
        _run("markets", urls=urls, root=work / "a" / "parquet", start=0, end=0)
        derive = _run("derive", urls=urls, root=work / "a" / "parquet", start=0, end=0)
        cut = int(store.timestamp[len(store) - TICK_FILLS])
        _run("sync", source="goldsky", urls=urls, root=work / "c" / "parquet", start=first,
             end=cut)  # fmt: skip
        _run("markets", urls=urls, root=work / "c" / "parquet", start=0, end=0)
        tick = _run("tick", urls=urls, root=work / "c" / "parquet", start=cut, end=0)
    finally:
        for server in servers:
            server.stop()

    rows = []
    for label, run in (("fetch only (baseline)", base), ("goldsky sync", gold),
                       ("rpc sync", rpc), ("ctf_events rpc sync", ctf_rpc),
                       ("ctf_events goldsky sync", ctf_gold)):  # fmt: skip
        r = run.result
        rows.append([label, r["rows"], r["seconds"], r["rows"] / r["seconds"], r["requests"],
                     run.peak_rss_mb, r["seconds"] / base.result["seconds"]])  # fmt: skip
    c.print_table(["run", "events", "seconds", "events/s", "requests", "peak RSS MB",
                   "x fetch-only"], rows)  # fmt: skip
    print(f"ctf_events: {len(ctf):,} served by the node; rpc sync landed "
          f"{ctf_rpc.result['rows_new']:,} (all of them: "
          f"{c.verdict(ctf_rpc.result['rows_new'] == len(ctf))}); the activity subgraph keeps "
          f"{ctf_gold.result['rows_new']:,} (no ConditionResolution entity)")  # fmt: skip
    d = derive.result
    print()
    print(f"trade derivation of {d['day']} ({d['rows']:,} fills): derive {d['derive_s']:.2f}s, "
          f"read the day's fills {d['read_s']:.2f}s, ratio {d['derive_s'] / d['read_s']:.1f}x; "
          f"{d['unmapped']} unmapped; peak RSS {derive.peak_rss_mb:,.0f} MB")  # fmt: skip
    t = tick.result
    print(f"10-minute tick through Dagster: {t['rows_new']:,} new fills, {t['ctf_new']:,} CTF "
          f"events of the day(s), {t['trades']:,} trades "
          f"rewritten over {t['days']} day(s) in {t['seconds']:.1f}s (target < "
          f"{TARGET_TICK_S:g}s: {c.verdict(t['seconds'] < TARGET_TICK_S and t['success'])}); "
          f"peak RSS {tick.peak_rss_mb:,.0f} MB")  # fmt: skip
    worst = max(r.peak_rss_mb for r in (gold, rpc, ctf_rpc, ctf_gold, derive, tick))
    synced = gold.result["rows"]
    scale_note = "a --quick smoke run" if args.quick else c.verdict(synced >= 1_000_000)
    print(f"peak RSS of any sync worker: {worst:,.0f} MB (target < {TARGET_RSS_MB:,.0f} MB: "
          f"{c.verdict(worst < TARGET_RSS_MB)}); >= 1M fills synced: {scale_note} "
          f"({synced:,} fills)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 fills: a smoke run")
    parser.add_argument("--fills", type=int, default=1_000_000)
    parser.add_argument("--worker", choices=sorted(WORKERS))
    parser.add_argument("--source", default="goldsky")
    parser.add_argument("--table", default="order_filled", choices=["order_filled", "ctf_events"])
    parser.add_argument("--urls", default="{}")
    parser.add_argument("--root", default=str(WORK))
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--end", type=int, default=0)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    if args.worker:
        WORKERS[args.worker](args)
    else:
        main_driver(args)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
