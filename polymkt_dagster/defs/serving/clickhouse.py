"""serving/clickhouse: publish rollups, positions, snapshots and alerts to ClickHouse."""

import dagster as dg

from polymkt_dagster.defs.shared.automation import analytics_automation
from polymkt_dagster.defs.shared.resources import ClickHouseResource, PolymktResource
from polymkt_dagster.defs.wallets.assets import (
    ALERTS_KEY,
    MARKET_METRIC_KEYS,
    PNL_SNAPSHOTS_KEY,
    POSITIONS_KEY,
    WALLET_METRIC_KEYS,
)
from polymkt_dagster.lib.core.report import markdown_table
from polymkt_dagster.lib.serving import clickhouse as ch

CLICKHOUSE_KEY = dg.AssetKey(["serving", "clickhouse"])


@dg.asset(
    key=CLICKHOUSE_KEY,
    deps=[
        POSITIONS_KEY,
        PNL_SNAPSHOTS_KEY,
        ALERTS_KEY,
        *WALLET_METRIC_KEYS.values(),
        *MARKET_METRIC_KEYS.values(),
    ],
    group_name="serving",
    kinds={"clickhouse"},
    automation_condition=analytics_automation(),
    description=(
        "Publishes the rollups, positions, P&L snapshots and alerts to ClickHouse "
        "(ReplacingMergeTree tables created by code; only new or changed lake files are "
        "sent, with insert_arrow). Skipped when POLYMKT_CLICKHOUSE_ENABLED=false."
    ),
)
def serving_clickhouse(
    context: dg.AssetExecutionContext, polymkt: PolymktResource, clickhouse: ClickHouseResource
) -> dg.MaterializeResult:
    if not clickhouse.enabled:
        context.log.info("ClickHouse publishing is off (POLYMKT_CLICKHOUSE_ENABLED=false)")
        return dg.MaterializeResult(
            metadata={"enabled": False, "dagster/row_count": 0, "skipped": "disabled"}
        )
    report = ch.publish(
        clickhouse.client(), polymkt.lake(), database=clickhouse.database,
        progress=context.log.info,
    )  # fmt: skip
    import pyarrow as pa

    summary = pa.table(
        {
            "table": [t.table for t in report.tables],
            "rows_published": [t.rows_published for t in report.tables],
            "rows_total": [t.rows_total for t in report.tables],
            "files_sent": [t.files_published for t in report.tables],
            "files_unchanged": [t.files_unchanged for t in report.tables],
            "latest": [t.latest.isoformat() if t.latest else None for t in report.tables],
            "lag_s": [round(t.lag_s) if t.lag_s is not None else None for t in report.tables],
        }
    )
    lags = [t.lag_s for t in report.tables if t.lag_s is not None]
    return dg.MaterializeResult(
        metadata={
            "enabled": True,
            "target": "chdb (embedded)" if clickhouse.dsn.startswith("chdb://") else "server",
            "database": clickhouse.database,
            "dagster/row_count": report.rows_published,
            "rows_published": report.rows_published,
            "rows_total": sum(t.rows_total for t in report.tables),
            "max_lag_s": float(max(lags)) if lags else 0.0,
            "tables": dg.MetadataValue.md(markdown_table(summary, limit=20)),
        }
    )
