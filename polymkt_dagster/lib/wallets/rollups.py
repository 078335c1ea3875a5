"""Wallet and market metric rollups at 1-minute, 1-hour and 1-day grains.

Per bucket:

- wallet_metrics: volume_usd, trades, buys, sells over the wallet's own fills (maker ==
  wallet), realized_pnl (what its fills and CTF position events realized in the bucket:
  sells, merges, redemptions, conversions, by the positions ledger of ``lib/wallets/ledger.py``
  over its whole history; a resolved market's shares realize when redeemed),
  counterparties (distinct wallets on the other side of its matches, as maker or as
  taker), markets (distinct), last_price (its last fill).
- market_metrics: volume_usd, trades, buys, sells over the matches (taker-side rows only, so
  a match counts once), fills (every row), realized_pnl (all wallets' realized P&L in the
  market), counterparties (distinct wallets), last_price (of the market's first outcome:
  a trade of the second outcome at p counts as 1 - p).

Each grain is computed from the trades directly (distinct counts do not add up across
buckets). A run rewrites whole day partitions, so re-running a day gives the same files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from polymkt_dagster.lib.core.lake import DAY_COLUMN, Lake, PartitionWrite, day_end
from polymkt_dagster.lib.core.schemas import TRADES
from polymkt_dagster.lib.wallets.ledger_checkpoint import (
    group_wallets,
    load_checkpoint,
    window_groups,
)
from polymkt_dagster.lib.wallets.ledger_input import register_token_info
from polymkt_dagster.lib.wallets.ledger_state import drop_ledger_state, register_ledger_state

GRAINS: dict[str, str] = {"1m": "minute", "1h": "hour", "1d": "day"}
WALLET_TABLE = "analytics/wallets/metrics_{grain}"
MARKET_TABLE = "analytics/market_metrics_{grain}"
ROLLUP_ROW_GROUP = 65_536


@dataclass
class RollupReport:
    days: list[date]
    fills_in_ledger: int = 0
    from_checkpoint: date | None = None  # the ledger's start, None for the whole history
    rows: dict[str, int] = field(default_factory=dict)
    writes: dict[str, list[PartitionWrite]] = field(default_factory=dict)


def wallet_table(grain: str) -> str:
    return WALLET_TABLE.format(grain=grain)


def market_table(grain: str) -> str:
    return MARKET_TABLE.format(grain=grain)


def _window(days: Sequence[date]) -> tuple[datetime, datetime]:
    first, last = min(days), max(days)
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    return start, end


def _exact_sum(column: str, where: str | None = None) -> str:
    """A sum that does not depend on the order DuckDB's threads add the rows in.

    A parallel DOUBLE sum can differ in the last bit from run to run, which would make a
    re-run write different rows; a DECIMAL sum is exact. Ten decimals keep every cent of
    amounts that are 6-decimal USDC or average-cost products of them.
    """
    only = f" FILTER (WHERE {where})" if where else ""
    return f"CAST(sum(CAST({column} AS DECIMAL(38, 10))){only} AS DOUBLE)"


def _wallet_sql(window_trades: str, unit: str, start_us: int, end_us: int) -> str:
    return f"""
        WITH own AS (
            SELECT date_trunc('{unit}', "timestamp") AS bucket_start, maker AS wallet,
                   count(*) AS trades,
                   count(*) FILTER (WHERE maker_direction = 'BUY') AS buys,
                   count(*) FILTER (WHERE maker_direction = 'SELL') AS sells,
                   {_exact_sum("usd_amount")} AS volume_usd,
                   count(DISTINCT market_id) AS markets,
                   arg_max(price, ("timestamp", order_fill_id)) AS last_price
            FROM {window_trades} WHERE maker IS NOT NULL GROUP BY ALL
        ),
        sides AS (
            SELECT "timestamp", maker AS wallet, taker AS counterparty FROM {window_trades}
            WHERE NOT coalesce(is_taker_side, false)
            UNION ALL
            SELECT "timestamp", taker AS wallet, maker AS counterparty FROM {window_trades}
            WHERE NOT coalesce(is_taker_side, false)
        ),
        cps AS (
            SELECT date_trunc('{unit}', "timestamp") AS bucket_start, wallet,
                   count(DISTINCT counterparty) AS counterparties
            FROM sides WHERE wallet IS NOT NULL GROUP BY ALL
        ),
        pnl AS (
            SELECT date_trunc('{unit}', make_timestamptz(ts_us)) AS bucket_start, wallet,
                   {_exact_sum("amount")} AS realized_pnl
            FROM _rollup_events WHERE ts_us >= {start_us} AND ts_us < {end_us}
            GROUP BY ALL
        )
        SELECT bucket_start, wallet,
               coalesce(volume_usd, 0.0) AS volume_usd,
               coalesce(trades, 0) AS trades, coalesce(buys, 0) AS buys,
               coalesce(sells, 0) AS sells,
               coalesce(realized_pnl, 0.0) AS realized_pnl,
               coalesce(counterparties, 0) AS counterparties,
               coalesce(markets, 0) AS markets,
               last_price
        FROM own FULL JOIN pnl USING (bucket_start, wallet)
        LEFT JOIN cps USING (bucket_start, wallet)
    """


def _market_sql(window_trades: str, unit: str, start_us: int, end_us: int) -> str:
    return f"""
        WITH rows AS (
            SELECT date_trunc('{unit}', "timestamp") AS bucket_start, market_id,
                   count(*) FILTER (WHERE is_taker_side) AS trades,
                   count(*) FILTER (WHERE is_taker_side AND maker_direction = 'BUY') AS buys,
                   count(*) FILTER (WHERE is_taker_side AND maker_direction = 'SELL') AS sells,
                   coalesce({_exact_sum("usd_amount", "is_taker_side")}, 0.0) AS volume_usd,
                   count(*) AS fills,
                   count(DISTINCT maker) AS counterparties,
                   arg_max(CASE WHEN nonusdc_side = 'token2' THEN 1.0 - price ELSE price END,
                           ("timestamp", order_fill_id)) AS last_price
            FROM {window_trades} WHERE market_id IS NOT NULL GROUP BY ALL
        ),
        pnl AS (
            SELECT date_trunc('{unit}', make_timestamptz(ts_us)) AS bucket_start, market_id,
                   {_exact_sum("amount")} AS realized_pnl
            FROM _rollup_events
            WHERE ts_us >= {start_us} AND ts_us < {end_us} AND market_id IS NOT NULL
            GROUP BY ALL
        )
        SELECT bucket_start, market_id,
               coalesce(volume_usd, 0.0) AS volume_usd,
               coalesce(trades, 0) AS trades, coalesce(buys, 0) AS buys,
               coalesce(sells, 0) AS sells, coalesce(fills, 0) AS fills,
               coalesce(realized_pnl, 0.0) AS realized_pnl,
               coalesce(counterparties, 0) AS counterparties,
               last_price
        FROM rows FULL JOIN pnl USING (bucket_start, market_id)
    """


def build_rollups(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    days: Sequence[date],
    *,
    progress: Callable[[str], None] | None = None,
) -> RollupReport:
    """Rewrite the day partitions of all six rollup tables for ``days``."""
    days = sorted(set(days))
    report = RollupReport(days=list(days))
    if not days:
        return report
    start, end = _window(days)
    start_us, end_us = int(start.timestamp() * 1e6), int(end.timestamp() * 1e6)
    window_files = lake.files(TRADES.name, start=days[0], end=days[-1])
    window_trades = (
        f"(SELECT * FROM {lake.scan_sql(TRADES, window_files)} "
        f"WHERE \"timestamp\" >= TIMESTAMPTZ '{start.isoformat()}' "
        f"AND \"timestamp\" < TIMESTAMPTZ '{end.isoformat()}')"
    )
    # Realized P&L needs each active wallet's whole history (average cost is path
    # dependent): the ledger starts from the newest valid checkpoint before the window, or
    # from the first fill. P&L is realized only by a ledger row (a fill or a position
    # event), so the active wallets are those with a ledger row in the window.
    info = register_token_info(con, lake, "_rollup")
    window_first, window_last = start - timedelta(microseconds=1), end - timedelta(microseconds=1)
    groups = window_groups(con, lake, window_first, window_last, token_info=info)
    active = group_wallets(groups)
    found = load_checkpoint(con, lake, on_or_before=days[0] - timedelta(days=1), token_info=info)
    since: datetime | None = None
    if found is not None:
        report.from_checkpoint, state = found
        since = day_end(report.from_checkpoint)
        if since < window_first:
            # an older checkpoint: the active wallets' ledger also replays the days between
            # it and the window, so their groups of those days are opened too
            groups = window_groups(con, lake, since, window_last, token_info=info)
            groups = groups.filter(pc.is_in(groups.column("wallet"), pa.array(active)))
        con.register("_rollup_opening", state.opening(groups))
    if progress:
        origin = f"the checkpoint of {since.date()}" if since else "the whole history"
        progress(f"rollups: ledger of {len(active):,} wallets from {origin}")
    try:
        report.fills_in_ledger = register_ledger_state(
            con, lake, wallets=active, until=window_last, prefix="_rollup",
            since=since, opening="_rollup_opening" if since else None, token_info=info,
        )  # fmt: skip
    finally:
        if since:
            con.unregister("_rollup_opening")
    try:
        for grain, unit in GRAINS.items():
            for table, sql, order in (
                (wallet_table(grain), _wallet_sql(window_trades, unit, start_us, end_us),
                 "wallet"),
                (market_table(grain), _market_sql(window_trades, unit, start_us, end_us),
                 "market_id"),
            ):  # fmt: skip
                writes = _write_days(con, lake, table, sql, order, days)
                report.writes[table] = writes
                report.rows[table] = sum(w.rows for w in writes)
                if progress:
                    progress(f"rollups: {table} {report.rows[table]:,} rows")
    finally:
        drop_ledger_state(con, "_rollup")
    return report


def _write_days(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    table: str,
    sql: str,
    order: str,
    days: Sequence[date],
) -> list[PartitionWrite]:
    reader = con.execute(
        f"SELECT *, CAST(bucket_start AS DATE) AS {DAY_COLUMN} FROM ({sql}) "
        f"ORDER BY {DAY_COLUMN}, bucket_start, {order}"
    ).to_arrow_reader(122_880)
    writes = lake.write_sorted_days(table, reader, row_group_size=ROLLUP_ROW_GROUP)
    written = {w.day for w in writes}
    for day in days:
        if day not in written:
            lake.remove_day(table, day)  # a day that now has no rows keeps no stale file
    return writes
