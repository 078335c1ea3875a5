"""Derive trades from order fills with poly_data's convention (docs/architecture.md §4).

The non-"0" asset id is the outcome token; it maps to a market and to token1/token2 by the
market's clobTokenIds order. maker_direction is BUY exactly when the maker pays USDC
(maker_asset_id == "0"); price = USDC / shares; raw 6-decimal amounts are divided by 1e6
here, once. The row whose taker is an exchange contract is the taker order of the match
(is_taker_side): volume counts those rows only, so a match is never counted twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

import duckdb

from polymkt_dagster.lib.core.lake import (
    BUCKET_COLUMN,
    DAY_COLUMN,
    Lake,
    PartitionWrite,
    bucket_sql,
)
from polymkt_dagster.lib.core.schemas import (
    AMOUNT_SCALE,
    EXCHANGE_CONTRACTS,
    MARKETS,
    ORDER_FILLED,
    TRADES,
)

# Smaller row groups than the fills: min/max of the sorted market_id per group is what lets
# a single-market query skip most of a day file.
TRADES_ROW_GROUP = 16_384
EXCHANGES_SQL = "[" + ", ".join(f"'{a}'" for a in EXCHANGE_CONTRACTS) + "]"


@dataclass
class DeriveReport:
    days: int = 0
    rows_written: int = 0
    unmapped_fills: int = 0
    partitions: list[PartitionWrite] = field(default_factory=list)


def create_token_map(con: duckdb.DuckDBPyConnection, lake: Lake) -> int:
    """Temp table token_map(token_id, market_id, condition_id, outcome, side)."""
    markets = lake.scan_sql(MARKETS)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE token_map AS
        SELECT token_id, market_id, condition_id, outcome, side FROM (
            SELECT
                unnest(token_ids) AS token_id,
                unnest(generate_series(1, len(token_ids))) AS position,
                unnest(CASE WHEN len(outcomes) = len(token_ids) THEN outcomes
                            ELSE list_transform(token_ids, x -> NULL::VARCHAR) END) AS outcome,
                market_id, condition_id
            FROM {markets}
            WHERE len(token_ids) > 0
        ) t, LATERAL (SELECT 'token' || position AS side)
        QUALIFY row_number() OVER (PARTITION BY token_id ORDER BY market_id) = 1
        """
    )
    row = con.execute("SELECT count(*) FROM token_map").fetchone()
    return int(row[0]) if row else 0


def trades_select(fills_relation: str) -> str:
    """SELECT producing canonical trades from a relation of canonical order fills."""
    return f"""
        SELECT
            f."timestamp",
            m.market_id,
            m.condition_id,
            f.token_id,
            m.outcome,
            m.side AS nonusdc_side,
            f.maker,
            f.taker,
            CASE WHEN f.maker_pays_usdc THEN 'BUY' ELSE 'SELL' END AS maker_direction,
            CASE WHEN f.maker_pays_usdc THEN 'SELL' ELSE 'BUY' END AS taker_direction,
            f.usdc / f.shares AS price,
            f.usdc / {AMOUNT_SCALE} AS usd_amount,
            f.shares / {AMOUNT_SCALE} AS token_amount,
            f.fee / {AMOUNT_SCALE} AS fee,
            f.transaction_hash,
            f.id AS order_fill_id,
            list_contains({EXCHANGES_SQL}, f.taker) AS is_taker_side
        FROM (
            SELECT *,
                maker_asset_id = '0' AS maker_pays_usdc,
                CASE WHEN maker_asset_id = '0' THEN taker_asset_id
                     ELSE maker_asset_id END AS token_id,
                CAST(CASE WHEN maker_asset_id = '0' THEN maker_amount_filled
                          ELSE taker_amount_filled END AS DOUBLE) AS usdc,
                CAST(CASE WHEN maker_asset_id = '0' THEN taker_amount_filled
                          ELSE maker_amount_filled END AS DOUBLE) AS shares
            FROM {fills_relation}
        ) f
        LEFT JOIN token_map m ON m.token_id = f.token_id
    """


def derive_trades(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    days: list[date],
    *,
    progress: Callable[[str], None] | None = None,
) -> DeriveReport:
    """Rewrite the trades partition of each day from that day's order fills.

    Fills whose token is unknown keep a NULL market and are counted, never dropped.
    """
    report = DeriveReport()
    create_token_map(con, lake)
    with_fills = [d for d in days if lake.day_files(ORDER_FILLED.name, d)]
    for day in days:
        if day not in with_fills:
            lake.remove_day(TRADES.name, day)
    if not with_fills:
        return report
    fills = [f for d in with_fills for f in lake.day_files(ORDER_FILLED.name, d)]
    columns = ", ".join(f't."{c}"' for c in TRADES.column_names)
    bucket = (
        f", {bucket_sql('t.market_id', lake.bucket_count)} AS {BUCKET_COLUMN}"
        if lake.bucket_count
        else ""
    )
    order = f"{DAY_COLUMN}" + (f", {BUCKET_COLUMN}" if lake.bucket_count else "")
    sql = (
        f'SELECT {columns}, CAST(t."timestamp" AS DATE) AS {DAY_COLUMN}{bucket} '
        f"FROM ({trades_select(lake.scan_sql(ORDER_FILLED, fills))}) t "
        f'ORDER BY {order}, t.market_id, t."timestamp", t.order_fill_id'
    )

    def on_partition(write: PartitionWrite) -> None:
        report.partitions.append(write)
        report.rows_written += write.rows
        report.days += 1
        if progress and (report.days % 50 == 0 or report.days == len(with_fills)):
            progress(f"trades: {report.days}/{len(with_fills)} day partitions derived")

    lake.write_sorted_days(
        TRADES.name,
        con.execute(sql).fetch_record_batch(rows_per_batch=122_880),
        row_group_size=TRADES_ROW_GROUP,
        on_partition=on_partition,
    )
    row = con.execute(
        f"SELECT count(*) FROM ({trades_select(lake.scan_sql(ORDER_FILLED, fills))}) "
        "WHERE market_id IS NULL"
    ).fetchone()
    report.unmapped_fills = int(row[0]) if row else 0
    return report
