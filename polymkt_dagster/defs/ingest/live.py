"""Live-source bodies of the raw assets: Gamma for markets/events, Goldsky or RPC for fills
and CTF position events.

An asset materialization pulls from the live sources when its run says so: run config
``source: live`` first, then the run tag ``polymkt/ingest`` (the sync sensors set ``live``,
``polymkt pipeline`` sets ``csv``), then ``POLYMKT_INGEST_MODE``. Without any of these a run
imports the data dir's files exactly as before and never touches the network.
"""

from typing import Any

import dagster as dg

from polymkt_dagster.lib.core.config import Settings
from polymkt_dagster.lib.core.http import redact_text
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.report import counts_table
from polymkt_dagster.lib.core.schemas import CTF_EVENTS, ORDER_FILLED
from polymkt_dagster.lib.ingest import sync
from polymkt_dagster.lib.ingest.market_sync import GammaSyncReport, sync_gamma

INGEST_TAG = "polymkt/ingest"


class IngestConfig(dg.Config):
    """Run options of the raw assets (all optional)."""

    source: str | None = None  # "live" or "csv"; default from the run tag, then the env
    max_batches: int | None = None  # live fills: stop after this many batches
    dry_run: bool = False  # live fills: fetch and count, write nothing
    resync: bool = False  # live fills: fetch covered positions again (repair)
    full_listing: bool = False  # live markets/events: list closed ones too (backfill)
    fill_source: str | None = None  # goldsky | rpc; default POLYMKT_ORDER_FILLED_SOURCE
    ctf_source: str | None = None  # rpc | goldsky; default POLYMKT_CTF_EVENTS_SOURCE


def is_live(context: dg.AssetExecutionContext, config: IngestConfig, settings: Settings) -> bool:
    choice = (
        config.source
        or context.run.tags.get(INGEST_TAG)
        or ("live" if settings.ingest_mode == "live" else "csv")
    )
    if choice not in ("live", "csv"):
        raise dg.Failure(f"ingest source must be 'live' or 'csv', not {choice!r}")
    return choice == "live"


def _gamma_metadata(report: GammaSyncReport) -> dict[str, Any]:
    return {
        "dagster/row_count": report.rows_in_table,
        "source": "gamma",
        "pages": report.pages,
        "items_received": report.items,
        "rows_parsed": report.parsed,
        "rows_new_or_changed": report.rows_changed,
        "refreshed_by_id": report.refreshed_by_id,
        "rows_rejected": report.rejected,
        "rejects_by_reason": dg.MetadataValue.md(counts_table(report.reject_reasons, "reason")),
        "unexpected_answers": dg.MetadataValue.md(
            "\n".join(f"- {redact_text(p)}" for p in report.problems) or "_none_"
        ),
        "rejects_file": str(report.rejects_file) if report.rejects_file else "none",
        "audit_file": dg.MetadataValue.path(str(report.audit_file or "none")),
        "requests": report.requests,
        "retries": report.retries,
    }


def sync_gamma_kind(
    context: dg.AssetExecutionContext,
    settings: Settings,
    lake: Lake,
    kind: str,
    config: IngestConfig,
) -> dict[str, Any]:
    client = sync.make_gamma_client(settings, lake, (kind,))
    try:
        report = sync_gamma(
            lake,
            client,
            kind,
            full=config.full_listing,
            rejects_path=settings.rejects_dir / kind / "gamma.rejects.csv",
            progress=context.log.info,
        )
    finally:
        client.close()
    if report.problems:
        context.log.warning(f"{kind}: {len(report.problems)} answers had an unexpected shape")
    return _gamma_metadata(report)


def sync_fills(
    context: dg.AssetExecutionContext,
    settings: Settings,
    lake: Lake,
    days: list,
    config: IngestConfig,
) -> tuple[sync.FillSyncReport, dict[str, Any]]:
    source = sync.make_fill_source(settings, config.fill_source)
    return _sync_table(context, settings, lake, days, config, source, ORDER_FILLED.name)


def sync_ctf_events(
    context: dg.AssetExecutionContext,
    settings: Settings,
    lake: Lake,
    days: list,
    config: IngestConfig,
) -> tuple[sync.FillSyncReport, dict[str, Any]]:
    """CTF position events of the days from the configured source, like the fills."""
    source = sync.make_ctf_source(settings, config.ctf_source)
    return _sync_table(context, settings, lake, days, config, source, CTF_EVENTS.name)


def _sync_table(
    context: dg.AssetExecutionContext,
    settings: Settings,
    lake: Lake,
    days: list,
    config: IngestConfig,
    source: Any,
    table: str,
) -> tuple[sync.FillSyncReport, dict[str, Any]]:
    start, end = sync.window_for_days(days)
    run = sync.sync_order_fills if table == ORDER_FILLED.name else sync.sync_ctf_events
    try:
        report = run(
            lake,
            source,
            start,
            end,
            max_batches=config.max_batches,
            dry_run=config.dry_run,
            resync=config.resync,
            rejects_path=settings.rejects_dir / table / f"{source.name}.rejects.csv",
            progress=context.log.info,
        )
    finally:
        source.close()
    if report.gaps:
        context.log.warning(
            f"{source.name}: the window has {len(report.gaps)} unsynced gap(s) before its "
            "synced part; catch up with a range backfill (polymkt sync backfill)"
        )
    metadata: dict[str, Any] = {
        "source": source.name,
        "window": f"{start.isoformat()} … {end.isoformat()}",
        "batches": report.batches,
        "rows_fetched": report.rows_fetched,
        "rows_new": report.rows_new,
        "duplicates_dropped": report.duplicates,
        "rows_rejected": report.rejected,
        "rejects_by_field": dg.MetadataValue.md(counts_table(report.reject_reasons)),
        "rejects_file": str(report.rejects_file) if report.rejects_file else "none",
        "stopped_reason": report.stopped_reason or "complete",
        "dry_run": report.dry_run,
        "synced_until": report.synced_until.isoformat() if report.synced_until else "never",
        "gaps": len(report.gaps),
        "positions": f"{report.start_position} → {report.end_position} ({source.position_unit}s)",
        "requests": report.requests,
        "retries": report.retries,
        "elapsed_s": round(report.elapsed_s, 2),
        "peak_rss_mb": round(report.peak_rss_mb, 1),
    }
    return report, metadata


def refresh_trades_live(
    context: dg.AssetExecutionContext, settings: Settings, lake: Lake, days: list
) -> tuple[Any, dict[str, Any]]:
    client = sync.make_gamma_client(settings, lake)
    try:
        result = sync.refresh_trades(lake, days, gamma=client, progress=context.log.info)
    finally:
        client.close()
    lookup = result.lookup
    metadata = {
        "unknown_tokens_looked_up": lookup.unknown_tokens if lookup else 0,
        "markets_found_by_lookup": lookup.markets_found if lookup else 0,
        "tokens_still_unknown": lookup.still_unknown if lookup else 0,
    }
    return result.derive, metadata
