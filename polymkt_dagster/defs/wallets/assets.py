"""Wallet tracking assets: positions, 5-minute P&L snapshots, alerts and metric rollups.

Thin wiring over lib/positions, lib/snapshots, lib/alerts and lib/rollups. The daily
assets follow raw/trades partition by partition, so the 10-minute sync's new trades are
picked up by the eager automation (when POLYMKT_ANALYTICS_MODE=on) and a range backfill
is one run (single-run backfill policy).
"""

import time
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import dagster as dg
import duckdb
import pyarrow as pa

from polymkt_dagster.defs.ingest.assets import CTF_EVENTS_KEY, MARKETS_KEY, TRADES_KEY
from polymkt_dagster.defs.shared.automation import analytics_automation
from polymkt_dagster.defs.shared.partition_metadata import describe_days
from polymkt_dagster.defs.shared.partitions import daily_partitions, window_days
from polymkt_dagster.defs.shared.resources import PolymktResource
from polymkt_dagster.lib.core import charts
from polymkt_dagster.lib.core.background import run_at_low_priority
from polymkt_dagster.lib.core.duck import connect, sql_string
from polymkt_dagster.lib.core.lake import DAY_COLUMN, Lake
from polymkt_dagster.lib.core.report import markdown_table
from polymkt_dagster.lib.wallets import alerts as alerts_lib
from polymkt_dagster.lib.wallets.positions import update_positions
from polymkt_dagster.lib.wallets.rollups import GRAINS, build_rollups, market_table, wallet_table
from polymkt_dagster.lib.wallets.snapshots import SNAPSHOT_SCHEMA, pnl_series, snapshot_days
from polymkt_dagster.lib.wallets.watchlists import (
    Watchlist,
    WatchlistStore,
    effective_watchlists,
    watched_set,
)

# raw/ctf_events (defs/ingest, docs/architecture.md §3.1): the position events the ledger reads
POSITIONS_KEY = dg.AssetKey(["wallets", "positions"])
PNL_SNAPSHOTS_KEY = dg.AssetKey(["wallets", "pnl_snapshots"])
ALERTS_KEY = dg.AssetKey(["wallets", "alerts"])
WALLET_METRIC_KEYS = {g: dg.AssetKey(["wallets", f"metrics_{g}"]) for g in GRAINS}
MARKET_METRIC_KEYS = {g: dg.AssetKey(["analytics", f"market_metrics_{g}"]) for g in GRAINS}
POSITIONS_TABLE = "analytics/wallets/positions"
SNAPSHOTS_TABLE = "analytics/wallets/pnl_snapshots"
PNL_CHART_WALLETS = 5  # more lines than this are unreadable at the UI's width
TOP_WALLET_COLUMNS = [
    "wallet", "realized_pnl", "unrealized_pnl", "total_pnl", "oversold_proceeds", "fills",
]  # fmt: skip
WORST_OVERSELL_COLUMNS = [
    "wallet", "oversold_proceeds", "sell_proceeds", "oversold_share", "realized_pnl",
]  # fmt: skip


def _watchlists(
    polymkt: PolymktResource, con: duckdb.DuckDBPyConnection, lake: Lake
) -> list[Watchlist]:
    """The watchlists in force (YAML + CLI-managed, else the suggested top wallets)."""
    settings = polymkt.settings()
    store = WatchlistStore.for_data_dir(settings.data_dir, settings.resolved_watchlists_file)
    positions = lake.single_file(POSITIONS_TABLE)
    current_positions = f"read_parquet({sql_string(positions)})" if positions.exists() else None
    return effective_watchlists(store, con, lake, current_positions=current_positions)


def _daily_wallet_asset(
    key: dg.AssetKey, *, deps: list[dg.AssetKey], description: str
) -> Callable[[Callable[..., dg.MaterializeResult]], dg.AssetsDefinition]:
    """A day-partitioned wallets asset, one run per backfill, eager in analytics mode."""
    return dg.asset(
        key=key,
        deps=deps,
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="wallets",
        kinds={"parquet"},
        automation_condition=analytics_automation(),
        description=description,
    )


@dg.asset(
    key=POSITIONS_KEY,
    deps=[TRADES_KEY, MARKETS_KEY, CTF_EVENTS_KEY],
    group_name="wallets",
    kinds={"parquet"},
    automation_condition=analytics_automation(),
    description=(
        "Current position of every wallet in every outcome token: weighted-average cost "
        "(pnl-subgraph convention) over the fills and the CTF position events (splits, "
        "merges, redemptions, neg-risk conversions), realized/unrealized P&L, resolved "
        "shares marked at payout until redeemed, oversells reported apart. Each run starts "
        "from the ledger's checkpoint at the end of the day before the last trading day and "
        "reads the newer day files only; the whole history when no checkpoint still matches "
        "its inputs."
    ),
    check_specs=[
        dg.AssetCheckSpec(
            "shares_non_negative",
            asset=POSITIONS_KEY,
            blocking=True,
            description="No position holds negative shares: oversells stop at zero (blocking).",
        ),
        dg.AssetCheckSpec(
            "oversells_reported",
            asset=POSITIONS_KEY,
            description="Warns about positions that sold more shares than their fills bought.",
        ),
    ],
)
def wallet_positions(
    context: dg.AssetExecutionContext, polymkt: PolymktResource
) -> Iterator[dg.MaterializeResult]:
    lake = polymkt.lake()
    path = lake.single_file(POSITIONS_TABLE)
    threshold = polymkt.settings().oversell_max_share
    with connect() as con:
        update = update_positions(con, lake, path)
    tally = update.tally
    assert tally is not None  # counted as the rows were written
    totals, oversells = tally.wallet_totals(), tally.oversell_report()
    rows, negative, wallets = tally.rows, tally.negative, tally.wallet_count
    open_positions, redeemable = tally.open_positions, tally.redeemable
    origin = update.started_from.isoformat() if update.started_from else "whole history"
    context.log.info(
        f"positions: {rows:,} for {wallets:,} wallets; ledger from {origin}, "
        f"{update.ledger_rows:,} rows read"
    )
    pending = update.pending_checkpoint
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "wallets": wallets,
            "open_positions": open_positions,
            "redeemable_positions": redeemable,
            "ledger_started_from": origin,
            "ledger_rows_read": update.ledger_rows,
            "checkpoint_saved": (
                f"{pending.isoformat()} (after this materialization)" if pending else "none"
            ),
            "realized_pnl": oversells.realized_pnl,
            "oversold_shares": oversells.oversold_shares,
            "oversold_proceeds": oversells.oversold_proceeds,
            "path": dg.MetadataValue.path(str(path)),
            "top_wallets_by_realized_pnl": dg.MetadataValue.md(
                markdown_table(totals, TOP_WALLET_COLUMNS)
            ),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="shares_non_negative",
                passed=negative == 0,
                description="no position holds negative shares (oversells stop at zero)",
                metadata={"negative_positions": negative},
            ),
            dg.AssetCheckResult(
                check_name="oversells_reported",
                passed=oversells.share <= threshold,
                severity=dg.AssetCheckSeverity.WARN,
                description=(
                    "share of sell proceeds (fills, merges, redemptions, conversions) from "
                    "shares the ledger never saw bought, split or converted (data gaps); "
                    f"at most {threshold:.1%} (POLYMKT_OVERSELL_MAX_SHARE). Their proceeds "
                    "are reported apart, never realized P&L"
                ),
                metadata={
                    "oversold_share": oversells.share,
                    "threshold": threshold,
                    "oversold_proceeds": oversells.oversold_proceeds,
                    "sell_proceeds": oversells.sell_proceeds,
                    "positions_with_oversells": oversells.positions_with_oversells,
                    "oversold_shares": oversells.oversold_shares,
                    "worst_wallets": dg.MetadataValue.md(
                        markdown_table(oversells.worst, WORST_OVERSELL_COLUMNS)
                        if oversells.worst.num_rows
                        else "_no oversells_"
                    ),
                },
            ),
        ],
    )
    # Saved once the positions are out: their materialization lets the automation go on
    # while the day's turn computes and writes its checkpoint (a large lake's state), at a
    # lower CPU priority than the runs that automation starts meanwhile.
    if pending is not None:
        started = time.monotonic()

        def save() -> None:
            with connect() as con:
                update.save_checkpoint(con, lake)

        run_at_low_priority(save)
        context.log.info(
            f"ledger checkpoint of {pending.isoformat()} saved in "
            f"{time.monotonic() - started:.1f} s"
        )


@_daily_wallet_asset(
    PNL_SNAPSHOTS_KEY,
    deps=[TRADES_KEY, MARKETS_KEY, CTF_EVENTS_KEY, POSITIONS_KEY],
    description=(
        "Mark-to-market P&L of every watched wallet every 5 minutes (realized, unrealized at "
        "the last trade price, total, exposure), by UTC day. Without any watchlist the "
        "suggested top wallets are followed."
    ),
)
def wallet_pnl_snapshots(
    context: dg.AssetExecutionContext, polymkt: PolymktResource
) -> dg.MaterializeResult:
    lake = polymkt.lake()
    days = window_days(context)
    rows = 0
    preview: list[pa.Table] = []
    with connect() as con:
        lists = _watchlists(polymkt, con, lake)
        wallets = watched_set(lists).addresses

        def write_day(day: date, table: pa.Table) -> None:
            nonlocal rows
            if table.num_rows == 0:
                lake.remove_day(SNAPSHOTS_TABLE, day)
                return
            table = table.cast(SNAPSHOT_SCHEMA)
            day_column = pa.array([day] * table.num_rows, pa.date32())
            lake.write_sorted_days(
                SNAPSHOTS_TABLE,
                pa.RecordBatchReader.from_batches(
                    table.schema.append(pa.field(DAY_COLUMN, pa.date32())),
                    table.append_column(DAY_COLUMN, day_column).to_batches(),
                ),
            )
            rows += table.num_rows
            preview[:] = [table.slice(table.num_rows - len(wallets), len(wallets))]

        run = snapshot_days(con, lake, wallets, days, on_day=write_day)
        files = lake.files(SNAPSHOTS_TABLE, start=min(days), end=max(days)) if days else []
        series = pnl_series(con, files, top=PNL_CHART_WALLETS)
    if series:
        # On the run's last day only: metadata shared by a range run is copied onto every
        # partition, and a year's backfill would carry 365 copies of the picture.
        chart = charts.pnl_png(series, f"Total P&L of the {len(series)} largest watched wallets")
        context.add_asset_metadata(
            {"pnl_over_time": dg.MetadataValue.md(charts.png_markdown(chart, "P&L over time"))},
            partition_key=max(days).isoformat(),
        )
    return dg.MaterializeResult(
        metadata=describe_days(
            context,
            lake,
            SNAPSHOTS_TABLE,
            days,
            {
                "dagster/row_count": rows,
                "days": len(days),
                "watched_wallets": len(wallets),
                "watchlists": ", ".join(w.name for w in lists) or "none",
                "fills_in_ledger": run.fills,
                "from_checkpoint": run.from_checkpoint,
                "lake_dir": dg.MetadataValue.path(str(lake.table_dir(SNAPSHOTS_TABLE))),
                "last_snapshot": dg.MetadataValue.md(
                    markdown_table(preview[0]) if preview else "_no snapshot_"
                ),
            },
        )
    )


@_daily_wallet_asset(
    ALERTS_KEY,
    deps=[TRADES_KEY, MARKETS_KEY],
    description=(
        "An alert per watched-wallet fill at or above the watchlist's size threshold, with a "
        "cooldown per (wallet, market); runs after each sync of raw/trades. Delivered to "
        "POLYMKT_ALERTS_WEBHOOK_URL when set (retries with backoff, each alert once)."
    ),
)
def wallet_alerts(
    context: dg.AssetExecutionContext, polymkt: PolymktResource
) -> dg.MaterializeResult:
    lake = polymkt.lake()
    settings = polymkt.settings()
    days = window_days(context)
    with connect() as con:
        lists = _watchlists(polymkt, con, lake)
        report = alerts_lib.build_alerts(con, lake, watched_set(lists), days)
    metadata: dict[str, Any] = {
        "dagster/row_count": report.alerts,
        "candidates": report.candidates,
        "suppressed_by_cooldown": report.suppressed,
        "watchlists": ", ".join(w.name for w in lists) or "none",
        "lake_dir": dg.MetadataValue.path(str(lake.table_dir(alerts_lib.ALERTS_TABLE))),
        "preview": dg.MetadataValue.md(
            markdown_table(
                report.table if report.table is not None else pa.table({}),
                ["alerted_at", "wallet", "market_id", "side", "size_usd", "price"],
            )
        ),
    }
    if settings.alerts_webhook_url and report.table is not None and report.table.num_rows:
        delivery = alerts_lib.deliver_alerts(
            report.table,
            settings.alerts_webhook_url,
            alerts_lib.DeliveryLog(settings.data_dir / "alerts_delivery.sqlite"),
        )
        for error in delivery.errors[:20]:
            context.log.warning(f"webhook {delivery.target}: {error}")
        metadata.update(
            {
                "webhook": delivery.target,
                "delivered": delivery.delivered,
                "already_delivered": delivery.already_delivered,
                "delivery_failed": delivery.failed,
                "delivery_attempts": delivery.attempts,
            }
        )
    return dg.MaterializeResult(metadata=metadata)


@dg.multi_asset(
    specs=[
        *(
            dg.AssetSpec(
                key,
                deps=[TRADES_KEY, MARKETS_KEY, CTF_EVENTS_KEY],
                group_name="wallets",
                kinds={"parquet"},
                automation_condition=analytics_automation(),
                description=(
                    f"Per wallet and {grain} bucket: volume, trades, buys/sells, realized "
                    "P&L, distinct counterparties and markets, last price."
                ),
            )
            for grain, key in WALLET_METRIC_KEYS.items()
        ),
        *(
            dg.AssetSpec(
                key,
                deps=[TRADES_KEY, MARKETS_KEY, CTF_EVENTS_KEY],
                group_name="analytics",
                kinds={"parquet"},
                automation_condition=analytics_automation(),
                description=(
                    f"Per market and {grain} bucket: volume and trades counted once per match "
                    "(taker side), buys/sells, fills, realized P&L of all wallets, distinct "
                    "wallets, last price of the first outcome."
                ),
            )
            for grain, key in MARKET_METRIC_KEYS.items()
        ),
    ],
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    name="metric_rollups",
)
def metric_rollups(context: dg.AssetExecutionContext, polymkt: PolymktResource):
    lake = polymkt.lake()
    days = window_days(context)
    with connect() as con:
        report = build_rollups(con, lake, days, progress=context.log.info)
    for grain in GRAINS:
        for key, table in (
            (WALLET_METRIC_KEYS[grain], wallet_table(grain)),
            (MARKET_METRIC_KEYS[grain], market_table(grain)),
        ):
            metadata = {
                "dagster/row_count": report.rows.get(table, 0),
                "days": len(days),
                "partitions_written": len(report.writes.get(table, [])),
                "fills_in_ledger": report.fills_in_ledger,
                "ledger_started_from": (
                    report.from_checkpoint.isoformat()
                    if report.from_checkpoint
                    else "whole history"
                ),
                "lake_dir": dg.MetadataValue.path(str(lake.table_dir(table))),
            }
            yield dg.MaterializeResult(
                asset_key=key,
                metadata=describe_days(context, lake, table, days, metadata, asset_key=key),
            )
