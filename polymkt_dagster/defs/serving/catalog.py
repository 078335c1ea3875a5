"""The DuckDB catalog: views over the lake for DuckDB users and the CLI."""

import dagster as dg

from polymkt_dagster.defs.ingest.assets import (
    CTF_EVENTS_KEY,
    EVENTS_KEY,
    MARKETS_KEY,
    ORDER_FILLED_KEY,
    TRADES_KEY,
)
from polymkt_dagster.defs.shared.resources import PolymktResource
from polymkt_dagster.lib.core.report import counts_table
from polymkt_dagster.lib.serving.catalog import refresh_catalog


@dg.asset(
    key=dg.AssetKey(["serving", "duckdb_catalog"]),
    deps=[MARKETS_KEY, EVENTS_KEY, ORDER_FILLED_KEY, TRADES_KEY, CTF_EVENTS_KEY],
    group_name="serving",
    kinds={"duckdb"},
    pool="duckdb",
    description=(
        "DuckDB file with views markets, events, order_filled, trades, ctf_events over the lake."
    ),
)
def duckdb_catalog(polymkt: PolymktResource) -> dg.MaterializeResult:
    settings = polymkt.settings()
    counts = refresh_catalog(polymkt.lake(), settings.catalog_path)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(settings.catalog_path)),
            "views": dg.MetadataValue.md(counts_table(counts, "view", "rows")),
            "dagster/row_count": sum(counts.values()),
        }
    )
