"""serving/trades_by_market: the market-clustered copy of raw/trades that query_trades reads."""

import dagster as dg

from polymkt_dagster.defs.ingest.assets import TRADES_KEY
from polymkt_dagster.defs.resources import PolymktResource
from polymkt_dagster.lib.config import Settings
from polymkt_dagster.lib.trades_by_market import refresh, serving_dir

TRADES_BY_MARKET_KEY = dg.AssetKey(["serving", "trades_by_market"])


def daily_automation() -> dg.AutomationCondition | None:
    """Once a day, unless POLYMKT_ANALYTICS_MODE=off.

    Not after every 10-minute sync: a rebuild rewrites a whole year, and until it runs the
    days synced since are read from raw/trades, which stays correct and costs little.
    """
    if Settings.from_env().analytics_mode != "on":
        return None
    return dg.AutomationCondition.on_cron("30 0 * * *")


@dg.asset(
    key=TRADES_BY_MARKET_KEY,
    deps=[TRADES_KEY],
    group_name="serving",
    kinds={"arrow"},
    automation_condition=daily_automation(),
    description=(
        "raw/trades clustered by market (Arrow IPC, one file per year and market hash "
        "bucket) so `polymkt trades` / query_trades read a market's rows without opening "
        "every day partition. Rebuilds only the years whose day partitions changed; days "
        "changed since the last run are read from raw/trades, so answers never go stale."
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
            "bytes_written": report.bytes,
            "path": dg.MetadataValue.path(str(serving_dir(lake))),
        }
    )
