"""Raw layer assets: markets, events, order_filled, trades and ctf_events (thin wiring)."""

from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg

from polymkt_dagster.defs.ingest import live
from polymkt_dagster.defs.shared.asset_keys import RAW_KEYS
from polymkt_dagster.defs.shared.checks import check_results
from polymkt_dagster.defs.shared.partition_metadata import describe_days
from polymkt_dagster.defs.shared.partitions import daily_partitions, window_days
from polymkt_dagster.defs.shared.resources import PolymktResource
from polymkt_dagster.lib.core.duck import connect
from polymkt_dagster.lib.core.lake import Lake, rows_in_files
from polymkt_dagster.lib.core.report import counts_table, markdown_table
from polymkt_dagster.lib.core.schemas import (
    CTF_EVENTS,
    EVENTS,
    MARKETS,
    ORDER_FILLED,
    TRADES,
    Table,
)
from polymkt_dagster.lib.ingest import bootstrap, quality
from polymkt_dagster.lib.ingest.trades import derive_trades

MARKETS_KEY = RAW_KEYS["markets"]
EVENTS_KEY = RAW_KEYS["events"]
ORDER_FILLED_KEY = RAW_KEYS["order_filled"]
TRADES_KEY = RAW_KEYS["trades"]
CTF_EVENTS_KEY = RAW_KEYS["ctf_events"]

MARKET_PREVIEW = [
    "market_id",
    "question",
    "event_title",
    "end_date",
    "closed",
    "resolved",
    "volume",
]
EVENT_PREVIEW = ["event_id", "title", "neg_risk", "end_date", "closed", "market_ids"]
FILL_PREVIEW = ["timestamp", "maker", "taker", "maker_asset_id", "maker_amount_filled", "id"]
CTF_PREVIEW = ["timestamp", "event", "contract", "stakeholder", "condition_id", "amount", "payout"]
TRADE_PREVIEW = [
    "timestamp", "market_id", "outcome", "maker_direction", "price", "usd_amount",
    "is_taker_side",
]  # fmt: skip


def _preview(lake: Lake, table, files: list[Path] | None, columns: list[str]) -> str:
    with connect() as con:
        sample = con.execute(
            f"SELECT * FROM {lake.scan_sql(table, files)} LIMIT 10"
        ).to_arrow_table()
        return markdown_table(sample, columns)


def _import_metadata(report: bootstrap.ImportReport) -> dict[str, Any]:
    return {
        "dagster/row_count": report.rows_written,
        "source_files": ", ".join(report.source_files) or "none found",
        "rows_read": report.rows_read,
        "rows_accepted": report.rows_accepted,
        "rows_rejected": report.rows_rejected,
        "rejects_file": str(report.rejects_path) if report.rejects_path else "none",
        "rejects_by_field": dg.MetadataValue.md(counts_table(report.rejects_by_field)),
        "duplicates_dropped": report.duplicates_dropped,
        "records_in_files": sum(a.records_in_file for a in report.accounting),
        "row_accounting": dg.MetadataValue.md(
            "\n".join(f"- `{a.file}`: {a.summary()}" for a in report.accounting) or "none"
        ),
    }


def _sync_or_import_gamma_table(
    context: dg.AssetExecutionContext,
    polymkt: PolymktResource,
    config: live.IngestConfig,
    table: Table,
    preview_columns: list[str],
) -> dict[str, Any]:
    """Markets or events: a Gamma sync in live mode, else the bootstrap import of the data dir."""
    settings, lake = polymkt.settings(), polymkt.lake()
    if live.is_live(context, config, settings):
        metadata = live.sync_gamma_kind(context, settings, lake, table.name, config)
    else:
        importer = bootstrap.import_markets if table is MARKETS else bootstrap.import_events
        metadata = _import_metadata(importer(settings.data_dir, lake, progress=context.log.info))
    metadata["path"] = dg.MetadataValue.path(str(lake.single_file(table.name)))
    metadata["preview"] = dg.MetadataValue.md(_preview(lake, table, None, preview_columns))
    return metadata


@dg.asset(
    key=MARKETS_KEY,
    group_name="raw",
    kinds={"parquet", "duckdb"},
    description="Every market (canonical markets table) from markets.csv / Gamma JSON.",
    check_specs=[
        dg.AssetCheckSpec(
            "market_id_unique",
            asset=MARKETS_KEY,
            blocking=True,
            description="One row per market id (blocking).",
        ),
        dg.AssetCheckSpec(
            "outcome_prices_in_unit_interval",
            asset=MARKETS_KEY,
            description="Every outcome price lies within [0, 1].",
        ),
    ],
)
def raw_markets(
    context: dg.AssetExecutionContext, polymkt: PolymktResource, config: live.IngestConfig
) -> dg.MaterializeResult:
    lake = polymkt.lake()
    metadata = _sync_or_import_gamma_table(context, polymkt, config, MARKETS, MARKET_PREVIEW)
    with connect() as con:
        checks = quality.markets_checks(con, lake)
    return dg.MaterializeResult(
        metadata=metadata, check_results=check_results(checks, {"market_id_unique"})
    )


@dg.asset(
    key=EVENTS_KEY,
    deps=[MARKETS_KEY],
    group_name="raw",
    kinds={"parquet"},
    description="Events (groups of markets) from events.json/.csv, completed from markets.",
)
def raw_events(
    context: dg.AssetExecutionContext, polymkt: PolymktResource, config: live.IngestConfig
) -> dg.MaterializeResult:
    metadata = _sync_or_import_gamma_table(context, polymkt, config, EVENTS, EVENT_PREVIEW)
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    key=ORDER_FILLED_KEY,
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="raw",
    kinds={"parquet"},
    description="On-chain OrderFilled events, one row per maker/taker order fill, by UTC day.",
    check_specs=[
        dg.AssetCheckSpec(
            "fill_id_unique",
            asset=ORDER_FILLED_KEY,
            blocking=True,
            description="One row per fill id in the written days (blocking).",
        ),
        dg.AssetCheckSpec(
            "amounts_positive",
            asset=ORDER_FILLED_KEY,
            blocking=True,
            description="Maker and taker amounts are positive (blocking).",
        ),
    ],
)
def raw_order_filled(
    context: dg.AssetExecutionContext, polymkt: PolymktResource, config: live.IngestConfig
) -> dg.MaterializeResult:
    settings, lake = polymkt.settings(), polymkt.lake()
    days = window_days(context)
    if live.is_live(context, config, settings):
        return _live_order_filled(context, settings, lake, days, config)
    report = bootstrap.import_order_filled(
        settings.data_dir, lake, start=days[0], end=days[-1], progress=context.log.info
    )
    files = [f for day in days for f in lake.day_files(ORDER_FILLED.name, day)]
    with connect() as con:
        checks = quality.order_filled_checks(con, files, lake)
    rows_in_window = sum(p.rows for p in report.partitions)
    metadata = _import_metadata(report)
    metadata.update(
        {
            "dagster/row_count": rows_in_window,
            "partitions_written": len(report.partitions),
            "rows_outside_window": sum(a.outside_window for a in report.accounting),
            "bytes_written": sum(p.bytes for p in report.partitions),
            "lake_dir": dg.MetadataValue.path(str(lake.table_dir(ORDER_FILLED.name))),
            "preview": dg.MetadataValue.md(_preview(lake, ORDER_FILLED, files[:1], FILL_PREVIEW)),
        }
    )
    return dg.MaterializeResult(
        metadata=describe_days(context, lake, ORDER_FILLED.name, days, metadata),
        check_results=check_results(checks, {"fill_id_unique", "amounts_positive"}),
    )


def _live_order_filled(
    context: dg.AssetExecutionContext,
    settings: Any,
    lake: Lake,
    days: list[date],
    config: live.IngestConfig,
) -> dg.MaterializeResult:
    report, metadata = live.sync_fills(context, settings, lake, days, config)
    files = [f for day in days for f in lake.day_files(ORDER_FILLED.name, day)]
    with connect() as con:
        checks = quality.order_filled_checks(con, files, lake)
    metadata["dagster/row_count"] = rows_in_files(files)
    metadata["days_written"] = ", ".join(d.isoformat() for d in report.days_written) or "none"
    metadata["lake_dir"] = dg.MetadataValue.path(str(lake.table_dir(ORDER_FILLED.name)))
    preview = _preview(lake, ORDER_FILLED, files[-1:], FILL_PREVIEW)
    metadata["preview"] = dg.MetadataValue.md(preview)
    return dg.MaterializeResult(
        metadata=describe_days(context, lake, ORDER_FILLED.name, days, metadata),
        check_results=check_results(checks, {"fill_id_unique", "amounts_positive"}),
    )


@dg.asset(
    key=TRADES_KEY,
    deps=[ORDER_FILLED_KEY, MARKETS_KEY],
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="raw",
    kinds={"parquet"},
    description=(
        "Trades derived from order fills (poly_data convention), sorted by market and time; "
        "is_taker_side marks the one row per match that volume counts."
    ),
    check_specs=[
        dg.AssetCheckSpec(
            "price_in_unit_interval",
            asset=TRADES_KEY,
            blocking=True,
            description="Every trade price lies within [0, 1] (blocking).",
        ),
        dg.AssetCheckSpec(
            "order_fill_id_unique",
            asset=TRADES_KEY,
            blocking=True,
            description="One trade per order fill (blocking).",
        ),
        dg.AssetCheckSpec(
            "row_count_parity_with_order_filled",
            asset=TRADES_KEY,
            blocking=True,
            description="The days' trades and fills have the same row count (blocking).",
        ),
        dg.AssetCheckSpec(
            "markets_known",
            asset=TRADES_KEY,
            description="Warns about trades whose outcome token maps to no known market.",
        ),
    ],
)
def raw_trades(
    context: dg.AssetExecutionContext, polymkt: PolymktResource, config: live.IngestConfig
) -> dg.MaterializeResult:
    settings, lake = polymkt.settings(), polymkt.lake()
    days = window_days(context)
    lookup: dict[str, Any] = {}
    if live.is_live(context, config, settings):
        # Unknown tokens are looked up on Gamma first, so fills map to their markets.
        report, lookup = live.refresh_trades_live(context, settings, lake, days)
    else:
        with connect() as con:
            report = derive_trades(con, lake, days, progress=context.log.info)
    with connect() as con:
        trade_files = [f for d in days for f in lake.day_files(TRADES.name, d)]
        fill_files = [f for d in days for f in lake.day_files(ORDER_FILLED.name, d)]
        checks = quality.trades_checks(con, trade_files, fill_files, lake)
    return dg.MaterializeResult(
        metadata=describe_days(
            context,
            lake,
            TRADES.name,
            days,
            {
                "dagster/row_count": report.rows_written,
                "partitions_written": report.days,
                "unmapped_fills": report.unmapped_fills,
                "bucketed": lake.bucket_count is not None,
                "lake_dir": dg.MetadataValue.path(str(lake.table_dir(TRADES.name))),
                "preview": dg.MetadataValue.md(
                    _preview(lake, TRADES, trade_files[:1], TRADE_PREVIEW)
                ),
                **lookup,
            },
        ),
        check_results=check_results(
            checks,
            {
                "price_in_unit_interval",
                "order_fill_id_unique",
                "row_count_parity_with_order_filled",
            },
        ),
    )


@dg.asset(
    key=CTF_EVENTS_KEY,
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="raw",
    kinds={"parquet"},
    description=(
        "Position events of the Conditional Tokens framework (splits, merges, redemptions, "
        "resolutions, neg-risk conversions) as they happened on chain, by UTC day "
        "(docs/architecture.md §3.1)."
    ),
    check_specs=[
        dg.AssetCheckSpec(
            "ctf_event_id_unique",
            asset=CTF_EVENTS_KEY,
            blocking=True,
            description="One row per event id (transaction hash + log index) in the written "
            "days (blocking).",
        )
    ],
)
def raw_ctf_events(
    context: dg.AssetExecutionContext, polymkt: PolymktResource, config: live.IngestConfig
) -> dg.MaterializeResult:
    settings, lake = polymkt.settings(), polymkt.lake()
    days = window_days(context)
    if live.is_live(context, config, settings):
        report, metadata = live.sync_ctf_events(context, settings, lake, days, config)
        by_event = report.rows_by_event
    else:
        imported = bootstrap.import_ctf_events(
            settings.data_dir, lake, start=days[0], end=days[-1], progress=context.log.info
        )
        metadata = _import_metadata(imported)
        metadata["partitions_written"] = len(imported.partitions)
        by_event = imported.rows_by_event
    files = [f for day in days for f in lake.day_files(CTF_EVENTS.name, day)]
    with connect() as con:
        checks = quality.ctf_events_checks(con, files, lake)
    metadata["dagster/row_count"] = rows_in_files(files)
    metadata["rows_by_event"] = dg.MetadataValue.md(counts_table(by_event, "event", "rows"))
    metadata["lake_dir"] = dg.MetadataValue.path(str(lake.table_dir(CTF_EVENTS.name)))
    metadata["preview"] = dg.MetadataValue.md(_preview(lake, CTF_EVENTS, files[:1], CTF_PREVIEW))
    return dg.MaterializeResult(
        metadata=describe_days(context, lake, CTF_EVENTS.name, days, metadata),
        check_results=check_results(checks, {"ctf_event_id_unique"}),
    )
