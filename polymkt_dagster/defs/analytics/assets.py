"""Analytics assets: price bars, market summary, election groups (thin wiring over lib/)."""

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from polymkt_dagster.defs.ingest.assets import (
    EVENTS_KEY,
    MARKETS_KEY,
    TRADES_KEY,
)
from polymkt_dagster.defs.shared.automation import analytics_automation
from polymkt_dagster.defs.shared.checks import check_results
from polymkt_dagster.defs.shared.partition_metadata import describe_days
from polymkt_dagster.defs.shared.partitions import daily_partitions, window_days
from polymkt_dagster.defs.shared.resources import PolymktResource
from polymkt_dagster.lib.analytics import bars as analytics
from polymkt_dagster.lib.analytics import election_groups, price_series
from polymkt_dagster.lib.core import charts
from polymkt_dagster.lib.core.duck import connect, sql_string
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.report import counts_table, markdown_table
from polymkt_dagster.lib.core.schemas import Table

PRICES_1H_KEY = dg.AssetKey(["analytics", "prices_1h"])
PRICES_1D_KEY = dg.AssetKey(["analytics", "prices_1d"])
MARKET_SUMMARY_KEY = dg.AssetKey(["analytics", "market_summary"])
PRICE_INDEX_KEY = dg.AssetKey(["analytics", "price_index"])
ELECTION_GROUPS_KEY = dg.AssetKey(["analytics", "election_groups"])


def _bars_preview(lake: Lake, table: Table, files: list[Path]) -> str:
    with connect() as con:
        sample = con.execute(
            f"SELECT * FROM {lake.scan_sql(table, files[:1])} ORDER BY volume_usd DESC LIMIT 10"
        ).to_arrow_table()
    return markdown_table(sample, analytics.BAR_PREVIEW)


def _materialize_bars(
    context: dg.AssetExecutionContext,
    polymkt: PolymktResource,
    build: Callable[..., analytics.BarsReport],
    table: Table,
) -> dg.MaterializeResult:
    """Rebuild the window's day partitions of a bars table, check them, describe them."""
    lake = polymkt.lake()
    days = window_days(context)
    with connect() as con:
        # No line per day: a year's backfill would bury the run's log under 365 of them;
        # each day's figures are on its partition instead.
        report = build(con, lake, days)
        checks = analytics.bars_checks(con, lake, table, days)
    files = [f for p in report.partitions for f in p.files]
    metadata = {
        "dagster/row_count": report.rows,
        "partitions_written": len(report.partitions),
        "days_without_trades": report.days_requested - len(report.partitions),
        "bytes_written": report.bytes,
        "lake_dir": dg.MetadataValue.path(str(lake.table_dir(table.name))),
        "preview": dg.MetadataValue.md(_bars_preview(lake, table, files)),
    }
    return dg.MaterializeResult(
        metadata=describe_days(context, lake, table.name, days, metadata),
        check_results=check_results(checks, {"ohlc_consistent", "volume_matches_source"}),
    )


def _bar_checks(key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            "ohlc_consistent",
            asset=key,
            blocking=True,
            description="low <= open, close <= high in every bar (blocking).",
        ),
        dg.AssetCheckSpec(
            "volume_matches_source",
            asset=key,
            blocking=True,
            description="Bar volume equals the taker-side USDC of the trades, to 1e-6 (blocking).",
        ),
    ]


@dg.asset(
    key=PRICES_1H_KEY,
    deps=[TRADES_KEY],
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    automation_condition=analytics_automation(),
    group_name="analytics",
    kinds={"parquet", "duckdb"},
    description=(
        "Hourly bars per outcome token: OHLC and last price from every fill; VWAP, USDC "
        "volume and trade count from taker-side rows only (each match once)."
    ),
    check_specs=_bar_checks(PRICES_1H_KEY),
)
def prices_1h(context: dg.AssetExecutionContext, polymkt: PolymktResource) -> dg.MaterializeResult:
    return _materialize_bars(context, polymkt, analytics.build_hourly_bars, analytics.PRICE_BARS_1H)


@dg.asset(
    key=PRICES_1D_KEY,
    deps=[PRICES_1H_KEY],
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    automation_condition=analytics_automation(),
    group_name="analytics",
    kinds={"parquet", "duckdb"},
    description="Daily bars per outcome token, rolled up from the hourly bars of the day.",
    check_specs=_bar_checks(PRICES_1D_KEY),
)
def prices_1d(context: dg.AssetExecutionContext, polymkt: PolymktResource) -> dg.MaterializeResult:
    return _materialize_bars(context, polymkt, analytics.build_daily_bars, analytics.PRICE_BARS_1D)


@dg.asset(
    key=PRICE_INDEX_KEY,
    deps=[dg.AssetDep(PRICES_1H_KEY, partition_mapping=dg.AllPartitionMapping())],
    automation_condition=analytics_automation(),
    group_name="analytics",
    kinds={"parquet", "duckdb"},
    description=(
        "As-of index of every token's closes (hourly, and the last close of each day) in one "
        "file sorted by token, for signals and backtests. Readers ignore the rows of any day "
        "whose hourly bars changed since the build and read those bars directly."
    ),
)
def price_index(polymkt: PolymktResource) -> dg.MaterializeResult:
    lake = polymkt.lake()
    with connect() as con:
        report = price_series.build_price_index(con, lake)
    newest = report.newest_trade_at
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": report.hourly_rows + report.daily_rows,
            "hourly_closes": report.hourly_rows,
            "daily_closes": report.daily_rows,
            "tokens": report.tokens,
            "days_indexed": report.days,
            "source_files": report.source_files,
            "bytes": report.bytes,
            "newest_trade_at": newest.isoformat() if newest else "no bars",
            "path": dg.MetadataValue.path(str(report.path)),
        }
    )


@dg.asset(
    key=MARKET_SUMMARY_KEY,
    deps=[MARKETS_KEY, PRICES_1D_KEY],
    automation_condition=analytics_automation(),
    group_name="analytics",
    kinds={"parquet", "duckdb"},
    description=(
        "One row per market: first/last trade, taker-side USDC volume, trades, last price "
        "per outcome, signed days to expiry, and resolution (resolved / closed_unresolved / "
        "open kept apart)."
    ),
)
def market_summary(polymkt: PolymktResource) -> dg.MaterializeResult:
    lake = polymkt.lake()
    with connect() as con:
        report = analytics.build_market_summary(con, lake, as_of=datetime.now(UTC))
        preview = con.execute(
            f"SELECT * FROM read_parquet({sql_string(report.path)}) "
            "ORDER BY volume_usd DESC LIMIT 10"
        ).to_arrow_table()
        chart = _top_market_chart(con, lake, preview)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": report.markets,
            "traded_markets": report.traded_markets,
            "volume_usd": dg.MetadataValue.float(round(report.volume_usd, 2)),
            "status": dg.MetadataValue.md(
                counts_table(
                    {
                        "resolved": report.resolved,
                        "closed_unresolved": report.closed_unresolved,
                        "open": report.open,
                    },
                    "status",
                    "markets",
                )
            ),
            "path": dg.MetadataValue.path(str(report.path)),
            "preview": dg.MetadataValue.md(markdown_table(preview, analytics.SUMMARY_PREVIEW)),
            "top_market_price_and_volume": dg.MetadataValue.md(chart),
        }
    )


def _top_market_chart(con: Any, lake: Lake, preview: Any) -> str:
    """Daily close and volume of the busiest outcome of the market with the most volume."""
    if preview.num_rows == 0 or not lake.files(analytics.PRICE_BARS_1D.name):
        return "_no daily bars yet_"
    market_id, question = preview.column("market_id")[0].as_py(), preview.column("question")[0]
    rows = con.execute(
        f"WITH bars AS (SELECT * FROM {lake.scan_sql(analytics.PRICE_BARS_1D)} "
        "WHERE market_id = $market), "
        "busiest AS (SELECT token_id FROM bars GROUP BY token_id "
        "ORDER BY sum(volume_usd) DESC LIMIT 1) "
        "SELECT bucket_start, close, volume_usd, outcome FROM bars "
        "WHERE token_id = (SELECT token_id FROM busiest) ORDER BY bucket_start",
        {"market": market_id},
    ).fetchall()
    if not rows:
        return "_no daily bars for the top market_"
    title = f"{str(question.as_py() or market_id)[:80]} ({rows[0][3]}), market {market_id}"
    png = charts.price_volume_png(
        [r[0] for r in rows], [r[1] for r in rows], [r[2] or 0.0 for r in rows], title
    )
    return charts.png_markdown(png, "price and volume")


class ElectionGroupsConfig(dg.Config):
    overrides_file: str | None = Field(
        default=None,
        description="YAML file of user groups (default: <data dir>/election_groups.yaml).",
    )


@dg.asset(
    key=ELECTION_GROUPS_KEY,
    deps=[MARKETS_KEY, EVENTS_KEY],
    automation_condition=analytics_automation(),
    group_name="analytics",
    kinds={"parquet"},
    description=(
        "Election groups: negRisk markets by negRiskMarketID, other multi-market events by "
        "event; one row per candidate with its Yes token, end date and whether it won. "
        "User groups from election_groups.yaml add to or override them."
    ),
    check_specs=[
        dg.AssetCheckSpec(
            "one_winner_per_resolved_group",
            asset=ELECTION_GROUPS_KEY,
            description="Warns about resolved election groups without exactly one winner.",
        )
    ],
)
def election_groups_asset(
    context: dg.AssetExecutionContext, config: ElectionGroupsConfig, polymkt: PolymktResource
) -> dg.MaterializeResult:
    settings, lake = polymkt.settings(), polymkt.lake()
    overrides = Path(
        config.overrides_file or settings.data_dir / election_groups.OVERRIDES_FILE_NAME
    )
    with connect() as con:
        report = election_groups.build_election_groups(con, lake, overrides)
    for problem in report.problems:
        context.log.warning(problem)
    groups = election_groups.read_groups(lake)
    table = election_groups.groups_table(groups)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": report.members,
            "groups": report.groups,
            "resolved_groups": report.resolved_groups,
            "groups_by_source": dg.MetadataValue.md(
                counts_table(report.by_source, "source", "groups")
            ),
            "markets_without_yes_outcome": report.skipped_markets_without_yes,
            "overrides_file": str(report.overrides_file or f"{overrides} (not present)"),
            "override_problems": dg.MetadataValue.md(
                "\n".join(f"- {p}" for p in report.problems) or "_none_"
            ),
            "path": dg.MetadataValue.path(str(report.path)),
            "preview": dg.MetadataValue.md(
                markdown_table(table, election_groups.GROUP_PREVIEW, limit=15)
            ),
        },
        check_results=check_results(election_groups.groups_checks(groups), set()),
    )
