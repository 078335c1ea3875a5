"""Write the sample: ``generate_sample`` (the six files) and ``generate_ctf_events``.

``generate_sample`` writes into a directory:

- ``markets.csv``: poly_data's market table (token ids as 76-78 digit decimal strings);
- ``markets.json`` / ``events.json``: Gamma-shaped market and event objects (``sample.gamma``);
- ``orderFilled.csv``: raw V1 exchange ``OrderFilled`` rows (one per maker order plus one for
  the taker order, whose ``taker`` is the exchange contract), amounts raw with 6 decimals,
  about 10% of the addresses in mixed case (``sample.fills``);
- ``trades.csv``: poly_data's processed trades, one row per ``orderFilled`` row;
- ``ctfEvents.csv``: Conditional Tokens position events that make every wallet's sells covered
  by what it holds (``sample.ctf``; docs/architecture.md §3.1).

It streams the fills slice by slice to two writer threads while the next slice is generated,
and feeds each slice's balance changes to the CTF planner; the Gamma files come last, with
each market's ``volume`` the exact USDC volume of its matches counted once (taker-side rows
only, docs/architecture.md §5).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from polymkt_dagster.lib.sample.config import SampleConfig
from polymkt_dagster.lib.sample.ctf import CTF_EVENTS_CSV_COLUMNS, CtfMarket, CtfPlanner
from polymkt_dagster.lib.sample.fills import fill_row_count, generate_slice
from polymkt_dagster.lib.sample.gamma import gamma_dicts, markets_csv_rows
from polymkt_dagster.lib.sample.layout import (
    MARKETS_CSV_COLUMNS,
    ORDER_FILLED_COLUMNS,
    TRADES_COLUMNS,
)
from polymkt_dagster.lib.sample.universe import Universe, build_universe
from polymkt_dagster.lib.sample.wallets import SHARP_WALLET_COUNT

__all__ = [
    "SampleSummary",
    "generate_ctf_events",
    "generate_sample",
]

_DEFAULT_CONFIG = SampleConfig()


@dataclass(frozen=True)
class SampleSummary:
    """Counts and paths of what ``generate_sample`` wrote."""

    out_dir: Path
    markets: int
    events: int
    election_groups: int
    order_fills: int
    trades: int
    matches: int
    ctf_events: int
    wallets: int
    sharp_wallets: list[str]
    markets_csv: Path
    markets_json: Path
    events_json: Path
    order_filled_csv: Path
    trades_csv: Path
    ctf_events_csv: Path


def _ctf_planner(u: Universe) -> CtfPlanner:
    markets = [
        CtfMarket(
            condition_id=m.condition_id,
            question_id=m.question_id,
            neg_risk_market_id=u.events[m.event].neg_risk_market_id,
            created=m.created,
            trade_start=int(u.start[i]),
            trade_end=int(u.trade_end[i]),
            resolved_at=m.resolved_at,
            payout=m.payout,
        )
        for i, m in enumerate(u.markets)
    ]
    groups = [ev.markets for ev in u.events if ev.neg_risk]  # market ids ascend: question order
    wallets = [a.decode() for a in u.wallets.addresses[: u.wallets.n_noise + SHARP_WALLET_COUNT]]
    return CtfPlanner(
        markets, groups, wallets, seed=u.config.seed, t_end=u.t1, converters=u.wallets.converters
    )


def generate_ctf_events(config: SampleConfig) -> pa.Table:
    """The sample's Conditional Tokens position events (``ctfEvents.csv``'s rows and columns,
    ``CTF_EVENTS_CSV_COLUMNS``), without writing the fills; see ``sample_ctf``."""
    u = build_universe(config)
    planner = _ctf_planner(u)
    for k in range(u.n_slices):
        sl = generate_slice(u, k, fills=False, trades=False, positions=True)
        assert sl.positions is not None
        planner.add_fills(*sl.positions)
    return planner.finish()


def _csv_header(columns: Sequence[str]) -> bytes:
    return (",".join(columns) + "\n").encode()


def generate_sample(
    out_dir: Path,
    config: SampleConfig = _DEFAULT_CONFIG,
    progress: Callable[[int, int], None] | None = None,
    *,
    ctf_events: bool = True,
) -> SampleSummary:
    """Write markets.csv, markets.json, events.json, orderFilled.csv, trades.csv and
    ctfEvents.csv.

    The position events number about one per fill (the generated wallets spread their trading
    over many markets, and each wallet that sells in a market needs its own inventory there);
    ``ctf_events=False`` skips them (no ctfEvents.csv; the other files are the same bytes), as
    benchmarks of the fill import at millions of fills do.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    u = build_universe(config)
    total = fill_row_count(u)
    paths = {
        "markets_csv": out_dir / "markets.csv",
        "markets_json": out_dir / "markets.json",
        "events_json": out_dir / "events.json",
        "order_filled_csv": out_dir / "orderFilled.csv",
        "trades_csv": out_dir / "trades.csv",
        "ctf_events_csv": out_dir / "ctfEvents.csv",
    }
    planner = _ctf_planner(u) if ctf_events else None
    opts = pacsv.WriteOptions(include_header=False, quoting_style="none", batch_size=8192)
    volume_raw = np.zeros(len(u.markets))
    generated = written = matches = 0
    with (
        pa.OSFile(str(paths["order_filled_csv"]), "wb") as fills_f,
        pa.OSFile(str(paths["trades_csv"]), "wb") as trades_f,
        ThreadPoolExecutor(max_workers=1) as fills_pool,
        ThreadPoolExecutor(max_workers=1) as trades_pool,
    ):
        fills_f.write(_csv_header(ORDER_FILLED_COLUMNS))
        trades_f.write(_csv_header(TRADES_COLUMNS))

        def write(f: pa.NativeFile, batch: pa.RecordBatch) -> None:
            pacsv.write_csv(batch, f, write_options=opts)

        # pipeline: slice k+1 is generated while slice k is written by two writer threads;
        # at most one slice is in flight, so memory stays bounded
        in_flight: list[Future[None]] = []
        for k in range(u.n_slices):
            sl = generate_slice(u, k, for_csv=True, positions=planner is not None)
            if planner is not None and sl.positions is not None:
                planner.add_fills(*sl.positions)
            for fut in in_flight:
                fut.result()
            in_flight = []
            if written != generated:
                written = generated
                if progress is not None:
                    progress(written, total)
            volume_raw += sl.market_volume
            matches += sl.matches
            if sl.fills is not None and sl.trades is not None and sl.fills.num_rows:
                in_flight = [
                    fills_pool.submit(write, fills_f, sl.fills),
                    trades_pool.submit(write, trades_f, sl.trades),
                ]
                generated += sl.fills.num_rows
        for fut in in_flight:
            fut.result()
    written = generated
    if progress is not None:
        progress(written, total)

    n_ctf_events = 0
    if planner is not None:
        table = planner.finish()
        n_ctf_events = table.num_rows
        with pa.OSFile(str(paths["ctf_events_csv"]), "wb") as f:
            f.write(_csv_header(CTF_EVENTS_CSV_COLUMNS))
            pacsv.write_csv(table, f, write_options=opts)

    volumes = volume_raw / 1e6
    with paths["markets_csv"].open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(MARKETS_CSV_COLUMNS)
        writer.writerows(markets_csv_rows(u, volumes))
    markets_out, events_out = gamma_dicts(u, volumes)
    paths["markets_json"].write_text(json.dumps(markets_out, ensure_ascii=False) + "\n", "utf-8")
    paths["events_json"].write_text(json.dumps(events_out, ensure_ascii=False) + "\n", "utf-8")

    return SampleSummary(
        out_dir=out_dir,
        markets=len(u.markets),
        events=len(u.events),
        election_groups=u.groups,
        order_fills=written,
        trades=written,
        matches=matches,
        ctf_events=n_ctf_events,
        wallets=u.wallets.n_noise + SHARP_WALLET_COUNT,
        sharp_wallets=list(u.wallets.sharp_wallets),
        **paths,
    )
