"""Read-side queries over the lake (used by the CLI and by Python callers)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from polymkt_dagster.lib.core.duck import connect, sql_string
from polymkt_dagster.lib.core.lake import Lake, bucket_of
from polymkt_dagster.lib.core.schemas import TRADES
from polymkt_dagster.lib.serving.trades_by_market import (
    NEWEST_FIRST,
    TRADES_ARROW_SCHEMA,
    read_markets,
)


class QueryError(ValueError):
    """A query's arguments cannot be answered (shown to the user as is)."""


def _as_utc_literal(value: datetime) -> str:
    return f"TIMESTAMPTZ '{value.isoformat()}'"


def query_trades(
    lake: Lake,
    market_ids: Sequence[str],
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> pa.Table:
    """Trades of the given markets in [start, end), newest first (then by order_fill_id).

    Served from the market-clustered copy (``trades_by_market``: its year tiers, and its
    delta tier for days changed since) for every day it holds fresh: a few small record
    batches per market instead of one row group in every day file. Days the copy does not
    hold as they are now (rewritten by a sync since its last refresh, or no copy at all)
    are read from the raw day partitions with DuckDB: only
    the days inside the window, with hash bucketing on only the markets' buckets, and
    row-group statistics on the sorted market_id column skipping the rest of each file.
    """
    markets = sorted({m.strip() for m in market_ids if m and m.strip()})
    if not markets:
        raise QueryError("give at least one market id")
    if start and end and start >= end:
        raise QueryError(f"start {start.isoformat()} is not before end {end.isoformat()}")
    if limit is not None and limit < 1:
        raise QueryError("limit must be at least 1")
    listing = lake.listing(
        TRADES.name, start=start.date() if start else None, end=end.date() if end else None
    )
    served = read_markets(lake, markets, listing, start=start, end=end, limit=limit)
    buckets = None
    if lake.bucket_count:
        buckets = {f"bucket={bucket_of(m, lake.bucket_count)}" for m in markets}
    raw_files = [
        Path(f.path)
        for f in listing
        if f.day in served.raw_days
        and (buckets is None or f.bucket_dir is None or f.bucket_dir in buckets)
    ]
    if served.table is None:
        if not raw_files and listing:  # the copy holds every day, none has these markets
            return TRADES_ARROW_SCHEMA.empty_table()
        return _query_raw(lake, raw_files, markets, start, end, limit, con)
    if not raw_files:
        return served.table
    from_raw = _query_raw(lake, raw_files, markets, start, end, limit, con)
    table = pa.concat_tables([served.table, from_raw.cast(TRADES_ARROW_SCHEMA)])
    table = table.sort_by(NEWEST_FIRST)
    return table.slice(0, limit) if limit else table


def _query_raw(
    lake: Lake,
    files: list[Path],
    markets: list[str],
    start: datetime | None,
    end: datetime | None,
    limit: int | None,
    con: duckdb.DuckDBPyConnection | None,
) -> pa.Table:
    relation = lake.scan_sql(TRADES, files)
    # A literal list (quoted as SQL strings) lets DuckDB prune row groups on the sorted
    # market_id statistics; a semi join over a parameter list does not.
    where = ["market_id IN (" + ", ".join(sql_string(m) for m in markets) + ")"]
    if start:
        where.append(f'"timestamp" >= {_as_utc_literal(start)}')
    if end:
        where.append(f'"timestamp" < {_as_utc_literal(end)}')
    sql = (
        f"SELECT * FROM {relation} WHERE {' AND '.join(where)} "
        'ORDER BY "timestamp" DESC, order_fill_id'
    )
    if limit:
        # the newest `limit` overall are among the newest `limit` of each part
        sql += f" LIMIT {int(limit)}"
    owned = con is None
    con = con or connect()
    try:
        con.execute("SET parquet_metadata_cache = true")
        return con.execute(sql).to_arrow_table()
    finally:
        if owned:
            con.close()


def parse_when(text: str | None) -> datetime | None:
    """CLI time argument: ISO date or datetime (UTC when no zone), or unix seconds."""
    if text is None or text == "":
        return None
    from polymkt_dagster.lib.ingest.sources.gamma import GammaShapeError, parse_timestamp

    try:
        if text.isdigit():
            return parse_timestamp(int(text))
        if len(text) == 10:
            text = f"{text}T00:00:00"
        return parse_timestamp(text)
    except GammaShapeError as exc:
        raise QueryError(f"cannot read {text!r} as a time (use 2024-05-01 or ISO 8601)") from exc


def days_of(start: datetime | None, end: datetime | None) -> tuple[date | None, date | None]:
    return (start.date() if start else None, end.date() if end else None)
