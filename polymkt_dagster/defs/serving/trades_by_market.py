"""serving/trades_by_market: the market-clustered copy of raw/trades that query_trades reads."""

import dagster as dg

from polymkt_dagster.defs.ingest.assets import TRADES_KEY
from polymkt_dagster.defs.shared.automation import analytics_automation
from polymkt_dagster.defs.shared.resources import PolymktResource
from polymkt_dagster.lib.core import charts
from polymkt_dagster.lib.core.config import Settings
from polymkt_dagster.lib.serving.status import sync_status
from polymkt_dagster.lib.serving.trades_by_market import refresh, serving_dir

TRADES_BY_MARKET_KEY = dg.AssetKey(["serving", "trades_by_market"])


@dg.asset(
    key=TRADES_BY_MARKET_KEY,
    deps=[TRADES_KEY],
    group_name="serving",
    kinds={"arrow"},
    # After every raw/trades update (unless POLYMKT_ANALYTICS_MODE=off): a run after a sync
    # rebuilds only the small delta tier holding the days changed since their year was built
    # (about a second); a year is rebuilt once a day, or sooner when its changes grow large
    # (trades_by_market.refresh decides).
    automation_condition=analytics_automation(),
    description=(
        "raw/trades clustered by market (Arrow IPC, one file per year and market hash "
        "bucket) so `polymkt trades` / query_trades read a market's rows without opening "
        "every day partition. After a sync rebuilds only the delta tier (the days changed "
        "since their year tier was built); a year is rebuilt once a day or when its changes "
        "grow large. Days changed since the last run are read from raw/trades, so answers "
        "never go stale."
    ),
)
def trades_by_market(polymkt: PolymktResource) -> dg.MaterializeResult:
    lake = polymkt.lake()
    report = refresh(lake)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": report.rows_written,
            "years_rebuilt": ", ".join(report.tiers_rebuilt) or "none",
            "years_fresh": report.tiers_fresh,
            "years_removed": ", ".join(report.tiers_removed) or "none",
            "delta_rebuilt": report.delta_rebuilt,
            "delta_days": ", ".join(d.isoformat() for d in report.delta_days) or "none",
            "bytes_written": report.bytes,
            "path": dg.MetadataValue.path(str(serving_dir(lake))),
            "freshness": dg.MetadataValue.md(freshness_markdown(polymkt.settings())),
        }
    )


def freshness_markdown(settings: Settings) -> str:
    """Minutes since each source's last sync against its target, as an inline PNG."""
    sources = sync_status(settings)
    rows = [
        (
            table,
            None if s["lag_s"] is None else round(s["lag_s"] / 60, 1),
            s["target_s"] / 60,
        )
        for table, s in sources.items()
    ]
    return charts.png_markdown(charts.freshness_png(rows), "freshness per source")
