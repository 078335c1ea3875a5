"""The analytics layer: price bars per outcome token and a summary per market.

Conventions (README "Analytics layer"):

- A bar covers ``[bucket_start, bucket_start + interval)`` in UTC. open/high/low/close come
  from every fill row of the token in the bucket (each row is a real execution at that
  price on that token; the rows of one match share a price, so duplicates cannot move
  OHLC). ``close`` is the price of the last fill, ties on the second broken by
  ``order_fill_id`` so a rebuild gives the same bars.
- volume, VWAP and ``trade_count`` count only ``is_taker_side`` rows: one row per match,
  so nothing is counted twice (docs/architecture.md §5). A bar whose token only traded on the
  maker side of matches has OHLC but ``vwap`` NULL and zero volume.
- ``first_trade_at`` / ``last_trade_at`` are the times of the first and last fill in the
  bar: the as-of price series used by signals and backtests takes ``close`` as known at
  ``last_trade_at``, never earlier.
- Daily bars are rolled up from the hourly bars of the same day (same numbers as building
  them from trades, one pass over the trades instead of two).
- ``token_key`` is a 63-bit integer from the MD5 of ``token_id`` (``token_key_sql``): price
  series readers select their tokens by it and never read the 77-digit id strings, which
  are most of a bars file's decoding cost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import duckdb

from polymkt_dagster.lib.analytics.resolutions import resolutions_sql
from polymkt_dagster.lib.core.duck import sql_string
from polymkt_dagster.lib.core.lake import DAY_COLUMN, Lake, PartitionWrite
from polymkt_dagster.lib.core.schemas import MARKETS, TRADES, Table
from polymkt_dagster.lib.ingest.quality import CheckOutcome

Progress = Callable[[str], None]

PRICES_1H = "analytics/prices_1h"
PRICES_1D = "analytics/prices_1d"
MARKET_SUMMARY = "analytics/market_summary"

_BAR_COLUMNS: tuple[tuple[str, str], ...] = (
    ("bucket_start", "TIMESTAMPTZ"),
    ("market_id", "VARCHAR"),
    ("token_id", "VARCHAR"),
    ("token_key", "BIGINT"),
    ("outcome", "VARCHAR"),
    ("open", "DOUBLE"),
    ("high", "DOUBLE"),
    ("low", "DOUBLE"),
    ("close", "DOUBLE"),
    ("vwap", "DOUBLE"),
    ("volume_usd", "DOUBLE"),
    ("volume_shares", "DOUBLE"),
    ("trade_count", "BIGINT"),
    ("fill_count", "BIGINT"),
    ("first_trade_at", "TIMESTAMPTZ"),
    ("last_trade_at", "TIMESTAMPTZ"),
)
PRICE_BARS_1H = Table(PRICES_1H, _BAR_COLUMNS, key=("token_id", "bucket_start"))
PRICE_BARS_1D = Table(PRICES_1D, _BAR_COLUMNS, key=("token_id", "bucket_start"))
MARKET_SUMMARY_TABLE = Table(
    MARKET_SUMMARY,
    (
        ("market_id", "VARCHAR"),
        ("question", "VARCHAR"),
        ("event_id", "VARCHAR"),
        ("event_title", "VARCHAR"),
        ("category", "VARCHAR"),
        ("neg_risk", "BOOLEAN"),
        ("outcomes", "VARCHAR[]"),
        ("token_ids", "VARCHAR[]"),
        ("first_trade_at", "TIMESTAMPTZ"),
        ("last_trade_at", "TIMESTAMPTZ"),
        ("volume_usd", "DOUBLE"),
        ("trades", "BIGINT"),
        ("fills", "BIGINT"),
        ("last_prices", "DOUBLE[]"),
        ("last_price", "DOUBLE"),
        ("end_date", "TIMESTAMPTZ"),
        ("as_of", "TIMESTAMPTZ"),
        ("days_to_expiry", "DOUBLE"),
        ("closed", "BOOLEAN"),
        ("resolved", "BOOLEAN"),
        ("winning_outcome_index", "INTEGER"),
        ("winning_outcome", "VARCHAR"),
        ("payouts", "DOUBLE[]"),
        ("resolution_source", "VARCHAR"),
        ("uma_resolution_status", "VARCHAR"),
        ("resolved_at", "TIMESTAMPTZ"),
        ("status", "VARCHAR"),
    ),
    key=("market_id",),
)

BAR_PREVIEW = ["bucket_start", "market_id", "outcome", "open", "close", "vwap", "volume_usd"]
SUMMARY_PREVIEW = ["market_id", "question", "volume_usd", "trades", "last_price", "status"]


@dataclass(frozen=True)
class BarsReport:
    """What one build of a bars table wrote."""

    table: str
    days_requested: int
    partitions: list[PartitionWrite]
    days_emptied: int  # requested days without trades whose old partition was removed

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.partitions)

    @property
    def bytes(self) -> int:
        return sum(p.bytes for p in self.partitions)


def token_key_sql(column: str) -> str:
    """The integer key of a token id (stable: MD5, the same in every DuckDB version)."""
    return f"CAST(md5_number({column}) % 9223372036854775807 AS BIGINT)"


def _hourly_sql(source: str) -> str:
    # Ties on the same second are broken by order_fill_id so rebuilds are byte-stable.
    order_key = '("timestamp", order_fill_id)'
    return f"""
        SELECT
            CAST(date_trunc('hour', "timestamp") AS DATE) AS {DAY_COLUMN},
            date_trunc('hour', "timestamp") AS bucket_start,
            market_id,
            token_id,
            {token_key_sql("token_id")} AS token_key,
            any_value(outcome) AS outcome,
            arg_min(price, {order_key}) AS open,
            max(price) AS high,
            min(price) AS low,
            arg_max(price, {order_key}) AS close,
            sum(usd_amount) FILTER (WHERE is_taker_side)
                / nullif(sum(token_amount) FILTER (WHERE is_taker_side), 0) AS vwap,
            coalesce(sum(usd_amount) FILTER (WHERE is_taker_side), 0) AS volume_usd,
            coalesce(sum(token_amount) FILTER (WHERE is_taker_side), 0) AS volume_shares,
            count(*) FILTER (WHERE is_taker_side) AS trade_count,
            count(*) AS fill_count,
            min("timestamp") AS first_trade_at,
            max("timestamp") AS last_trade_at
        FROM {source}
        WHERE token_id IS NOT NULL AND price IS NOT NULL
        GROUP BY ALL
    """


def _daily_from_hourly_sql(source: str) -> str:
    return f"""
        SELECT
            CAST(bucket_start AS DATE) AS {DAY_COLUMN},
            date_trunc('day', bucket_start) AS bucket_start,
            market_id,
            token_id,
            any_value(token_key) AS token_key,
            any_value(outcome) AS outcome,
            arg_min(open, first_trade_at) AS open,
            max(high) AS high,
            min(low) AS low,
            arg_max(close, last_trade_at) AS close,
            sum(volume_usd) / nullif(sum(volume_shares), 0) AS vwap,
            sum(volume_usd) AS volume_usd,
            sum(volume_shares) AS volume_shares,
            sum(trade_count) AS trade_count,
            sum(fill_count) AS fill_count,
            min(first_trade_at) AS first_trade_at,
            max(last_trade_at) AS last_trade_at
        FROM {source}
        GROUP BY ALL
    """


# Source Parquet bytes (or days) per query: bars are per day, so a long range is built in
# chunks of days and DuckDB's memory stays bounded whatever the range.
CHUNK_BYTES = 128 * 1024 * 1024
CHUNK_DAYS = 31


def _day_chunks(lake: Lake, source: str, days: Sequence[date]) -> Iterator[list[date]]:
    sizes: dict[date, int] = {}
    if days:  # one listing: each file's size comes with it, no stat per file here
        for f in lake.listing(source, start=min(days), end=max(days)):
            sizes[f.day] = sizes.get(f.day, 0) + f.size
    chunk: list[date] = []
    size = 0
    for day in days:
        day_bytes = sizes.get(day, 0)
        if chunk and (size + day_bytes > CHUNK_BYTES or len(chunk) >= CHUNK_DAYS):
            yield chunk
            chunk, size = [], 0
        chunk.append(day)
        size += day_bytes
    if chunk:
        yield chunk


def _build_bars(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    source: Table,
    target: Table,
    select_sql: Callable[[str], str],
    days: Sequence[date],
    progress: Progress | None,
) -> BarsReport:
    columns = ", ".join(target.column_names)

    def report(write: PartitionWrite) -> None:
        if progress:
            progress(f"{target.name} {write.day}: {write.rows:,} bars")

    writes: list[PartitionWrite] = []
    for chunk in _day_chunks(lake, source.name, days):
        files = [f for day in chunk for f in lake.day_files(source.name, day)]
        if not files:
            continue
        sql = (
            f"SELECT {DAY_COLUMN}, {columns} FROM ({select_sql(lake.scan_sql(source, files))}) "
            f"ORDER BY {DAY_COLUMN}, market_id, token_id, bucket_start"
        )
        reader = con.execute(sql).fetch_record_batch(65_536)
        writes += lake.write_sorted_days(target.name, reader, on_partition=report)
    written = {w.day for w in writes}
    emptied = 0
    for day in days:
        # A day that lost all its trades must not keep bars from an older build.
        if day not in written and lake.day_files(target.name, day):
            lake.remove_day(target.name, day)
            emptied += 1
    return BarsReport(target.name, len(days), writes, emptied)


def build_hourly_bars(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    days: Sequence[date],
    *,
    progress: Progress | None = None,
) -> BarsReport:
    """Rebuild ``analytics/prices_1h`` for ``days`` from ``raw/trades`` (one pass)."""
    return _build_bars(con, lake, TRADES, PRICE_BARS_1H, _hourly_sql, days, progress)


def build_daily_bars(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    days: Sequence[date],
    *,
    progress: Progress | None = None,
) -> BarsReport:
    """Rebuild ``analytics/prices_1d`` for ``days`` by rolling up the hourly bars."""
    return _build_bars(
        con, lake, PRICE_BARS_1H, PRICE_BARS_1D, _daily_from_hourly_sql, days, progress
    )


def bars_sql(lake: Lake, table: Table, days: Iterable[date] | None = None) -> str:
    """A relation over a bars table (all days, or only ``days``)."""
    if days is None:
        return lake.scan_sql(table, lake.files(table.name))
    return lake.scan_sql(table, [f for day in days for f in lake.day_files(table.name, day)])


@dataclass(frozen=True)
class SummaryReport:
    path: Path
    markets: int
    traded_markets: int
    resolved: int
    closed_unresolved: int
    open: int
    volume_usd: float


def build_market_summary(
    con: duckdb.DuckDBPyConnection, lake: Lake, *, as_of: datetime
) -> SummaryReport:
    """Rebuild ``analytics/market_summary`` from ``raw/markets`` and the daily bars.

    ``days_to_expiry`` is signed: (end_date - as_of) in days, negative once a market has
    ended; ``as_of`` is stored on every row so the number can be reproduced.
    """
    bars = bars_sql(lake, PRICE_BARS_1D)
    markets = lake.scan_sql(MARKETS)
    as_of_sql = f"TIMESTAMPTZ '{as_of.isoformat()}'"
    sql = f"""
        WITH markets AS (SELECT * FROM {markets}),
        resolutions AS ({resolutions_sql(lake)}),
        bars AS (SELECT * FROM {bars}),
        per_market AS (
            SELECT market_id,
                   min(first_trade_at) AS first_trade_at,
                   max(last_trade_at) AS last_trade_at,
                   sum(volume_usd) AS volume_usd,
                   sum(trade_count) AS trades,
                   sum(fill_count) AS fills
            FROM bars GROUP BY market_id
        ),
        last_by_token AS (
            SELECT token_id, arg_max(close, last_trade_at) AS last_price
            FROM bars GROUP BY token_id
        ),
        tokens AS (
            SELECT market_id, unnest(token_ids) AS token_id,
                   generate_subscripts(token_ids, 1) AS idx
            FROM markets
        ),
        prices AS (
            SELECT t.market_id, list(l.last_price ORDER BY t.idx) AS last_prices
            FROM tokens t LEFT JOIN last_by_token l USING (token_id)
            GROUP BY t.market_id
        )
        SELECT
            m.market_id, m.question, m.event_id, m.event_title, m.category, m.neg_risk,
            m.outcomes, m.token_ids,
            p.first_trade_at, p.last_trade_at,
            coalesce(p.volume_usd, 0) AS volume_usd,
            coalesce(p.trades, 0) AS trades,
            coalesce(p.fills, 0) AS fills,
            pr.last_prices,
            pr.last_prices[1] AS last_price,
            m.end_date,
            {as_of_sql} AS as_of,
            epoch(m.end_date - {as_of_sql}) / 86400.0 AS days_to_expiry,
            m.closed, coalesce(r.resolved, false) AS resolved, r.winning_outcome_index,
            m.outcomes[r.winning_outcome_index + 1] AS winning_outcome,
            r.payouts, r.resolution_source, r.uma_resolution_status, r.resolved_at,
            CASE WHEN r.resolved THEN 'resolved'
                 WHEN m.closed THEN 'closed_unresolved'
                 ELSE 'open' END AS status
        FROM markets m
        LEFT JOIN resolutions r USING (market_id)
        LEFT JOIN per_market p USING (market_id)
        LEFT JOIN prices pr USING (market_id)
        ORDER BY m.market_id
    """
    path = lake.write_single(MARKET_SUMMARY, con, MARKET_SUMMARY_TABLE.canonical_select(f"({sql})"))
    row = con.execute(
        f"""SELECT count(*), count(*) FILTER (WHERE trades > 0),
                   count(*) FILTER (WHERE status = 'resolved'),
                   count(*) FILTER (WHERE status = 'closed_unresolved'),
                   count(*) FILTER (WHERE status = 'open'),
                   coalesce(sum(volume_usd), 0)
            FROM read_parquet({sql_string(path)})"""
    ).fetchone()
    assert row is not None
    return SummaryReport(path, *(int(v) for v in row[:5]), float(row[5]))


def bars_checks(
    con: duckdb.DuckDBPyConnection, lake: Lake, table: Table, days: Sequence[date]
) -> list[CheckOutcome]:
    """OHLC sane, and volume equal to the taker-side USDC of the trades (or hourly bars)."""
    bars = bars_sql(lake, table, days)
    row = con.execute(
        f"""SELECT count(*) FILTER (WHERE NOT (low <= open AND open <= high AND low <= close
                                         AND close <= high AND low >= 0 AND high <= 1)),
                   coalesce(sum(volume_usd), 0)
            FROM {bars}"""
    ).fetchone()
    bad_ohlc, bar_volume = (int(row[0]), float(row[1])) if row else (0, 0.0)
    if table is PRICE_BARS_1H:
        source_name = "taker-side trades"
        files = [f for day in days for f in lake.day_files(TRADES.name, day)]
        source_sql = (
            f"SELECT coalesce(sum(usd_amount) FILTER (WHERE is_taker_side AND token_id IS NOT "
            f"NULL AND price IS NOT NULL), 0) FROM {lake.scan_sql(TRADES, files)}"
        )
    else:
        source_name = "hourly bars"
        source_sql = (
            f"SELECT coalesce(sum(volume_usd), 0) FROM {bars_sql(lake, PRICE_BARS_1H, days)}"
        )
    source_row = con.execute(source_sql).fetchone()
    source_volume = float(source_row[0]) if source_row else 0.0
    tolerance = 1e-6 * max(1.0, abs(source_volume))
    return [
        CheckOutcome(
            "ohlc_consistent",
            bad_ohlc == 0,
            f"{bad_ohlc} bars where low <= open, close <= high within [0, 1] does not hold",
            {"bad_bars": bad_ohlc},
        ),
        CheckOutcome(
            "volume_matches_source",
            abs(bar_volume - source_volume) <= tolerance,
            f"bar volume {bar_volume:,.2f} USDC vs {source_volume:,.2f} from the {source_name}",
            {"bar_volume_usd": bar_volume, "source_volume_usd": source_volume},
        ),
    ]


def newest_bar_time(con: duckdb.DuckDBPyConnection, lake: Lake) -> datetime | None:
    """The last trade time covered by the hourly bars: where the price data stops."""
    days = lake.partition_days(PRICES_1H)
    if not days:
        return None
    # Bars are day-partitioned by their hour, so the newest one is in the last day.
    row = con.execute(
        f"SELECT max(last_trade_at) FROM {bars_sql(lake, PRICE_BARS_1H, days[-1:])}"
    ).fetchone()
    return row[0] if row else None
