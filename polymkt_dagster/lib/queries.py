"""Read-side queries over the lake (used by the CLI and by Python callers)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

import duckdb
import pyarrow as pa

from polymkt_dagster.lib.duck import connect, sql_string
from polymkt_dagster.lib.lake import Lake, bucket_of
from polymkt_dagster.lib.schemas import TRADES


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
    """Trades of the given markets in [start, end), newest first.

    Only the day partitions inside the window are opened, and with hash bucketing on only
    the markets' buckets; inside a file, row-group statistics on the sorted market_id
    column skip the rest.
    """
    markets = sorted({m.strip() for m in market_ids if m and m.strip()})
    if not markets:
        raise QueryError("give at least one market id")
    if start and end and start >= end:
        raise QueryError(f"start {start.isoformat()} is not before end {end.isoformat()}")
    if limit is not None and limit < 1:
        raise QueryError("limit must be at least 1")
    buckets = None
    if lake.bucket_count:
        buckets = sorted({bucket_of(m, lake.bucket_count) for m in markets})
    files = lake.files(
        TRADES.name,
        start=start.date() if start else None,
        end=end.date() if end else None,
        buckets=buckets,
    )
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
    from polymkt_dagster.lib.gamma import GammaShapeError, parse_timestamp

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
