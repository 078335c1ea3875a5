"""As-of price series per outcome token, loaded from the analytics bars.

No look-ahead: the price of a token "at" time t is the close of its last bar whose last
fill happened at or before t (``last_trade_at <= t``). From the hourly bars that is the
last trade price at or before t, except that trades of the hour in which t falls are not
seen when that hour also traded after t; with hour-aligned times (Polymarket end dates
are) it is exactly the last trade at or before t. Trade times are rounded up to the second
and query times down, so rounding can only make a price known later, never earlier.

Loading is what costs (tens of millions of hourly bars). With ``analytics/price_index``
(``build_price_index``: every token's hourly and daily closes in one file sorted by token)
a reader takes its tokens' contiguous, already sorted rows in one read; the index's footer
names the hourly files it was built from, and days changed since are read from their bars
(``PriceIndex``). Without the index, readers load only what their look-ups can see:

- ``signal_series``: every candidate's daily closes, plus hourly closes only for the
  (token, day) pairs where a signal time falls strictly inside that day's trading (first
  trade <= t < last trade). Same answers as the full hourly series at those times.
- ``daily_series`` and ``hourly_windows`` for backtests: daily closes for marks at day
  ends, hourly closes between entry and end only when exits or sizing need them.

Tokens are matched by the bars' integer ``token_key``, so the 77-digit ids are neither read
from the files nor cross into Python per row; sorting happens in numpy.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from polymkt_dagster.lib.analytics.bars import (
    PRICE_BARS_1D,
    PRICE_BARS_1H,
    PRICES_1H,
    token_key_sql,
)
from polymkt_dagster.lib.analytics.election_groups import Group
from polymkt_dagster.lib.core.duck import sql_string
from polymkt_dagster.lib.core.lake import PARQUET_OPTIONS, Lake, PartitionFile, write_atomically
from polymkt_dagster.lib.core.schemas import Table

NO_PRICE = -1
DAY_S = 86_400
_TIME_BITS = 34  # seconds since 1970 up to year 2514; the token code takes the bits above
_MICROS_PER_DAY = 86_400_000_000


def to_seconds(moment: datetime) -> int:
    """Whole UTC seconds, rounded down (a query time may only move earlier)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return math.floor(moment.timestamp())


def from_seconds(seconds: int) -> datetime:
    return datetime.fromtimestamp(int(seconds), UTC)


class PriceSeries:
    """As-of price look-ups for a set of tokens, sorted by (token, time) in numpy arrays."""

    def __init__(
        self, token_ids: Sequence[str], codes: np.ndarray, times: np.ndarray, prices: np.ndarray
    ) -> None:
        self.token_ids = list(token_ids)
        self._code_of = {token: code for code, token in enumerate(self.token_ids)}
        codes = np.asarray(codes, dtype=np.int64)
        times = np.asarray(times, dtype=np.int64)
        if len(times) and times.min() < 0:
            raise ValueError("price times before 1970 are not supported")
        keys = (codes << _TIME_BITS) | times
        prices = np.asarray(prices, dtype=np.float64)
        if len(keys) > 1 and not np.all(keys[1:] >= keys[:-1]):
            order = np.argsort(keys, kind="stable")
            keys, prices = keys[order], prices[order]
            codes, times = keys >> _TIME_BITS, keys & ((1 << _TIME_BITS) - 1)
        self._keys = keys
        self.codes = codes
        self.times = times
        self.prices = prices
        self.offsets = np.searchsorted(self.codes, np.arange(len(self.token_ids) + 1))

    def __len__(self) -> int:
        return len(self.times)

    @property
    def newest(self) -> datetime | None:
        return from_seconds(int(self.times.max())) if len(self.times) else None

    def code(self, token_id: str | None) -> int:
        if token_id is None:
            return NO_PRICE
        return self._code_of.get(token_id, NO_PRICE)

    def asof(self, codes: np.ndarray, seconds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Last price at or before each time, and its time; NaN / -1 where there is none."""
        codes = np.asarray(codes, dtype=np.int64)
        seconds = np.asarray(seconds, dtype=np.int64)
        prices = np.full(len(codes), np.nan)
        at = np.full(len(codes), NO_PRICE, dtype=np.int64)
        known = (codes >= 0) & (seconds >= 0)
        if not len(self._keys) or not known.any():
            return prices, at
        query = (codes[known] << _TIME_BITS) | seconds[known]
        pos = np.searchsorted(self._keys, query, side="right") - 1
        hit = (pos >= 0) & (self.codes[np.maximum(pos, 0)] == codes[known])
        index = np.flatnonzero(known)[hit]
        prices[index] = self.prices[pos[hit]]
        at[index] = self.times[pos[hit]]
        return prices, at

    def path(self, code: int, after: int, until: int) -> tuple[np.ndarray, np.ndarray]:
        """The token's points with after < time <= until."""
        if code < 0:
            return np.empty(0, dtype=np.int64), np.empty(0)
        lo, hi = int(self.offsets[code]), int(self.offsets[code + 1])
        times = self.times[lo:hi]
        start = lo + int(np.searchsorted(times, after, side="right"))
        end = lo + int(np.searchsorted(times, until, side="right"))
        return self.times[start:end], self.prices[start:end]

    @classmethod
    def empty(cls, token_ids: Sequence[str]) -> PriceSeries:
        return cls(token_ids, np.empty(0), np.empty(0), np.empty(0))

    @classmethod
    def from_points(cls, points: Mapping[str, Iterable[tuple[datetime, float]]]) -> PriceSeries:
        """Build from explicit (time, price) points per token (tests, small studies)."""
        tokens = list(points)
        codes: list[int] = []
        times: list[int] = []
        prices: list[float] = []
        for code, token in enumerate(tokens):
            for moment, price in points[token]:
                codes.append(code)
                times.append(math.ceil(moment.timestamp()))
                prices.append(float(price))
        return cls(tokens, np.array(codes), np.array(times), np.array(prices))

    @classmethod
    def merge(cls, first: PriceSeries, second: PriceSeries) -> PriceSeries:
        """The points of both series (same tokens, in any order); a point in both changes
        no answer."""
        second_codes = second.codes
        if first.token_ids != second.token_ids:
            if set(first.token_ids) != set(second.token_ids):
                raise ValueError("merging price series of different tokens")
            recode = np.array([first.code(t) for t in second.token_ids], dtype=np.int64)
            second_codes = recode[second.codes]
        return cls(
            first.token_ids,
            np.concatenate([first.codes, second_codes]),
            np.concatenate([first.times, second.times]),
            np.concatenate([first.prices, second.prices]),
        )

    @classmethod
    def from_bars(
        cls,
        con: duckdb.DuckDBPyConnection,
        lake: Lake,
        token_ids: Sequence[str],
        table: Table = PRICE_BARS_1H,
    ) -> PriceSeries:
        """Every close of ``token_ids`` in a bars table (one scan of all its files)."""
        tokens = _tokens(token_ids)
        rows = _query(con, tokens, _relation(con, lake, table, lake.files(table.name)))
        return _series(tokens, rows)


def _tokens(token_ids: Iterable[str | None]) -> list[str]:
    return sorted({t for t in token_ids if t})


# ---- reading bars -----------------------------------------------------------------------

_HAS_COLUMN: dict[tuple[str, int, str], bool] = {}  # (file, mtime_ns, column) -> present


def _all_have_column(con: duckdb.DuckDBPyConnection, files: Sequence[Path], name: str) -> bool:
    """Whether every file has the column (footers read once per file version)."""
    keys = {f: (str(f), f.stat().st_mtime_ns, name) for f in files}
    unknown = [f for f, key in keys.items() if key not in _HAS_COLUMN]
    if unknown:
        listing = "[" + ", ".join(sql_string(f) for f in unknown) + "]"
        having = {
            row[0]
            for row in con.execute(
                f"SELECT DISTINCT file_name FROM parquet_schema({listing}) WHERE name = $name",
                {"name": name},
            ).fetchall()
        }
        for f in unknown:
            _HAS_COLUMN[keys[f]] = str(f) in having
    return all(_HAS_COLUMN[key] for key in keys.values())


def _relation(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    table: Table,
    files: Sequence[Path],
    *,
    extra_columns: str = "",
) -> str | None:
    """The narrow columns a series needs, from ``files``; bars written before token_key
    existed get it computed from their id."""
    if not files:
        return None
    key = "token_key"
    if not _all_have_column(con, files, "token_key"):
        key = f"coalesce(token_key, {token_key_sql('token_id')})"
    return (
        f"(SELECT {key} AS token_key, bucket_start, first_trade_at, last_trade_at, close"
        f"{extra_columns} FROM {lake.scan_sql(table, files)})"
    )


@dataclass
class _Rows:
    """Bars as numpy arrays: token code, UTC day number, first/last trade second, close."""

    codes: np.ndarray
    days: np.ndarray
    first: np.ndarray
    last: np.ndarray
    closes: np.ndarray

    @classmethod
    def concat(cls, parts: Sequence[_Rows]) -> _Rows:
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__annotations__))


def _query(
    con: duckdb.DuckDBPyConnection,
    tokens: list[str],
    relation: str | None,
    *,
    windows: pa.Table | None = None,
    join: str = "b.token_key = w.token_key",
) -> _Rows:
    """Bars of ``relation`` whose token is wanted (or matching ``windows`` by ``join``)."""
    if not tokens or relation is None:
        empty = np.empty(0, dtype=np.int64)
        return _Rows(empty, empty, empty, empty, np.empty(0))
    mapping = pa.table({"token_id": tokens, "code": pa.array(np.arange(len(tokens)), pa.int32())})
    con.register("price_series_tokens", mapping)
    if windows is None:
        wanted = f"SELECT code, {token_key_sql('token_id')} AS token_key FROM price_series_tokens"
    else:
        con.register("price_series_windows", windows)
        wanted = f"""
            SELECT m.code, {token_key_sql("m.token_id")} AS token_key, x.day, x.start_ts,
                   x.end_ts
            FROM price_series_windows x JOIN price_series_tokens m USING (token_id)
        """
    try:
        # epoch_us(...) // day: the day number without a per-row time-zone conversion.
        table = con.execute(
            f"""
            WITH w AS ({wanted})
            SELECT w.code, epoch_us(b.bucket_start) // {_MICROS_PER_DAY} AS day,
                   b.first_trade_at, b.last_trade_at, b.close
            FROM {relation} b JOIN w ON {join}
            WHERE b.close IS NOT NULL AND b.last_trade_at IS NOT NULL
            """
        ).to_arrow_table()
    finally:
        con.unregister("price_series_tokens")
        if windows is not None:
            con.unregister("price_series_windows")

    def seconds(column: str) -> np.ndarray:
        micros = table.column(column).cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        filled = pc.fill_null(micros, 0).to_numpy()
        return -(-filled // 1_000_000)  # rounded up: never known earlier

    return _Rows(
        table.column("code").to_numpy().astype(np.int64),
        table.column("day").to_numpy().astype(np.int64),
        seconds("first_trade_at"),
        seconds("last_trade_at"),
        table.column("close").to_numpy(),
    )


def _series(tokens: list[str], *parts: _Rows) -> PriceSeries:
    rows = _Rows.concat(parts)
    return PriceSeries(tokens, rows.codes, rows.last, rows.closes)


def _fresh_daily_files(lake: Lake) -> tuple[list[Path], list[Path]]:
    """(daily files of the days whose daily bars were built after their hourly bars,
    hourly files of the other days): one listing of each table, each file stat-ed once."""
    hourly: dict[date, list[PartitionFile]] = {}
    for f in lake.listing(PRICE_BARS_1H.name):
        hourly.setdefault(f.day, []).append(f)
    daily: dict[date, list[PartitionFile]] = {}
    for f in lake.listing(PRICE_BARS_1D.name):
        daily.setdefault(f.day, []).append(f)
    fresh: list[Path] = []
    stale: list[Path] = []
    for day, hourly_files in hourly.items():
        newest_hourly = max(f.mtime_ns for f in hourly_files)
        daily_files = daily.get(day, [])
        if daily_files and min(f.mtime_ns for f in daily_files) >= newest_hourly:
            fresh += [Path(f.path) for f in daily_files]
        else:
            stale += [Path(f.path) for f in hourly_files]
    return fresh, stale


def _daily_rows(con: duckdb.DuckDBPyConnection, lake: Lake, tokens: list[str]) -> _Rows:
    """One row per token and day from prices_1d; a day whose daily bars are missing or
    older than its hourly bars is read from its hourly bars (finer rows, same answers)."""
    fresh_daily, stale_hourly = _fresh_daily_files(lake)
    return _Rows.concat(
        [
            _query(con, tokens, _relation(con, lake, PRICE_BARS_1D, fresh_daily)),
            _query(con, tokens, _relation(con, lake, PRICE_BARS_1H, stale_hourly)),
        ]
    )


def daily_series(
    con: duckdb.DuckDBPyConnection, lake: Lake, token_ids: Sequence[str]
) -> PriceSeries:
    """Each token's close at the last trade of every day: exact as-of prices at any time
    that is not inside a day's trading (day ends, or before a day's first trade)."""
    index = PriceIndex.open(lake)
    if index is not None:
        return index.series(con, token_ids, INDEX_DAILY)
    tokens = _tokens(token_ids)
    return _series(tokens, _daily_rows(con, lake, tokens))


def hourly_windows(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    windows: Sequence[tuple[str, datetime, datetime]],
    *,
    token_ids: Sequence[str] | None = None,
    same_day: bool = False,
) -> PriceSeries:
    """Hourly closes of each (token, start, end) window, both ends included.

    ``same_day`` windows lie within one UTC day: they are matched on (token, day), so many
    windows per token cost one pass over those days' bars. Other windows: one per token.
    """
    tokens = _tokens(token_ids or [w[0] for w in windows])
    if not windows:
        return PriceSeries.empty(tokens)
    if same_day:
        days = sorted({w[1].astimezone(UTC).date() for w in windows})
        files = [f for day in days for f in lake.day_files(PRICE_BARS_1H.name, day)]
        join = "b.token_key = w.token_key AND epoch_us(b.bucket_start) // {d} = w.day"
    else:
        first = min(w[1] for w in windows).astimezone(UTC).date()
        last = max(w[2] for w in windows).astimezone(UTC).date()
        files = lake.files(PRICE_BARS_1H.name, start=first, end=last)
        join = "b.token_key = w.token_key"
    table = pa.table(
        {
            "token_id": [w[0] for w in windows],
            "day": pa.array([to_seconds(w[1]) // DAY_S for w in windows], pa.int64()),
            "start_ts": pa.array([w[1] for w in windows], pa.timestamp("us", tz="UTC")),
            "end_ts": pa.array([w[2] for w in windows], pa.timestamp("us", tz="UTC")),
        }
    )
    rows = _query(
        con,
        tokens,
        _relation(con, lake, PRICE_BARS_1H, files),
        windows=table,
        join=(
            join.format(d=_MICROS_PER_DAY) + " AND b.last_trade_at BETWEEN w.start_ts AND w.end_ts"
        ),
    )
    return _series(tokens, rows)


def signal_series(
    con: duckdb.DuckDBPyConnection, lake: Lake, groups: Sequence[Group], horizons: Sequence[int]
) -> PriceSeries:
    """Enough of every candidate's prices to answer "the last price at each signal time".

    Daily closes answer every signal time that is not inside its day's trading; for the
    (token, day) pairs where it is (first trade <= t < last trade), the hourly closes of
    that day up to t are added. Same answers as the full hourly series at those times.
    With the as-of index (``analytics/price_index``) the full hourly series is one read of
    the candidates' sorted run of rows, cheaper than either.
    """
    index = PriceIndex.open(lake)
    if index is not None:
        return index.series(con, [m.yes_token_id for g in groups for m in g.members], INDEX_HOURLY)
    tokens = sorted({m.yes_token_id for g in groups for m in g.members if m.yes_token_id})
    daily = _daily_rows(con, lake, tokens)
    code_of = {token: code for code, token in enumerate(tokens)}
    # (code, day) -> its daily row, to see which signal times fall inside a day's trading.
    row_keys = daily.codes * 1_000_000 + daily.days
    order = np.argsort(row_keys)
    sorted_keys = row_keys[order]
    wanted: dict[tuple[str, int], int] = {}  # (token, day) -> latest signal second in it
    for group in groups:
        if group.end_date is None:
            continue
        end = to_seconds(group.end_date)
        for days_before in horizons:
            moment = end - days_before * DAY_S
            day = moment // DAY_S
            for member in group.members:
                key = (member.yes_token_id, day)
                wanted[key] = max(wanted.get(key, moment), moment)
    windows: list[tuple[str, datetime, datetime]] = []
    if wanted and len(sorted_keys):
        keys = list(wanted)
        query = np.array([code_of[t] * 1_000_000 + day for t, day in keys], dtype=np.int64)
        ends = np.fromiter(wanted.values(), dtype=np.int64, count=len(keys))
        pos = np.minimum(np.searchsorted(sorted_keys, query), len(sorted_keys) - 1)
        rows = order[pos]
        inside = (
            (sorted_keys[pos] == query) & (daily.first[rows] <= ends) & (ends < daily.last[rows])
        )
        windows = [
            (keys[i][0], from_seconds(keys[i][1] * DAY_S), from_seconds(int(ends[i])))
            for i in np.flatnonzero(inside)
        ]
    detail = hourly_windows(con, lake, windows, token_ids=tokens, same_day=True)
    return PriceSeries.merge(_series(tokens, daily), detail)


# ---- the as-of index (analytics/price_index) ---------------------------------------------
#
# One Parquet file holding every token's closes: the hourly closes ("1h", one row per
# hourly bar) and the daily closes ("1d", the last hourly close of each UTC day, what
# prices_1d's close is), each row keyed by ``key = ordinal << 34 | second`` where
# ``ordinal`` numbers the tokens (Yes tokens first, what signals and backtests ask for) and
# ``second`` is the last trade's time rounded up. Rows are sorted by (grain, key): a
# reader's tokens are one contiguous run whose keys are ``PriceSeries`` keys already, so
# loading is one read of two columns, with no per-row mapping or sorting. The "tokens" rows
# are the directory: token id and ordinal. The file's footer records the hourly files
# (name, mtime, size, inode) it was built from: a day whose hourly files changed since
# (re-materialized, added or removed) is "dirty", its index rows are ignored and its hourly
# bars read directly, so a stale index never changes an answer, only what it costs.

PRICE_INDEX = "analytics/price_index"
INDEX_HOURLY = "1h"
INDEX_DAILY = "1d"
_DIRECTORY = "tokens"
_INDEX_KV_KEY = "polymkt_price_index"
_INDEX_VERSION = 1

FileStamp = tuple[str, int, int, int]  # file name in its day dir, mtime_ns, size, inode


def bar_file_stamps(lake: Lake, table: str = PRICES_1H) -> dict[date, list[FileStamp]]:
    """Every day's Parquet files of a bars table with what identifies their version
    (``Lake.listing``: one walk over cached directory entries, each file stat-ed)."""
    stamps: dict[date, list[FileStamp]] = {}
    day_dirs: dict[date, str] = {}
    for f in lake.listing(table):
        if f.day not in day_dirs:
            day_dirs[f.day] = str(lake.day_dir(table, f.day))
        relative = os.path.relpath(f.path, day_dirs[f.day])
        stamps.setdefault(f.day, []).append((relative, f.mtime_ns, f.size, f.inode))
    return {day: sorted(found) for day, found in stamps.items()}


def _stamp_files(lake: Lake, stamps: Mapping[date, Sequence[FileStamp]]) -> list[Path]:
    return [
        lake.day_dir(PRICES_1H, day) / name for day in sorted(stamps) for name, *_ in stamps[day]
    ]


@dataclass(frozen=True)
class PriceIndexReport:
    path: Path
    hourly_rows: int
    daily_rows: int
    tokens: int
    days: int
    source_files: int
    bytes: int
    newest_trade_at: datetime | None


def build_price_index(con: duckdb.DuckDBPyConnection, lake: Lake) -> PriceIndexReport:
    """Rebuild ``analytics/price_index`` from every hourly bars file (one file, atomic)."""
    # Stamped before reading: a file rewritten meanwhile has a newer stamp than the one
    # recorded, so readers treat its day as dirty instead of trusting the index for it.
    stamps = bar_file_stamps(lake)
    target = lake.single_file(PRICE_INDEX)
    manifest = json.dumps(
        {
            "version": _INDEX_VERSION,
            "source": PRICES_1H,
            "days": {day.isoformat(): [list(s) for s in files] for day, files in stamps.items()},
        },
        separators=(",", ":"),
    )
    select = (
        "SELECT NULL::VARCHAR AS grain, NULL::BIGINT AS key, NULL::DOUBLE AS close, "
        "NULL::TIMESTAMPTZ AS last_trade_at, NULL::VARCHAR AS token_id WHERE false"
    )
    files = _stamp_files(lake, stamps)
    relation = _relation(con, lake, PRICE_BARS_1H, files, extra_columns=", token_id, outcome")
    if relation is not None:
        # The directory first (one row per token, small), then each grain from its own scan
        # of the bars: no wide intermediate is kept, only the final sort, which spills to
        # disk under DuckDB's memory limit.
        valid = "close IS NOT NULL AND last_trade_at IS NOT NULL AND token_key IS NOT NULL"
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE price_index_tokens AS
            SELECT token_key, token_id,
                   row_number() OVER (ORDER BY is_other, token_id) - 1 AS ordinal
            FROM (
                SELECT token_key, any_value(token_id) AS token_id,
                       NOT bool_or(lower(trim(outcome)) = 'yes') AS is_other
                FROM {relation} WHERE {valid} GROUP BY token_key
            )
            """
        )
        narrow = _relation(con, lake, PRICE_BARS_1H, files)
        bars = (
            f"(SELECT * FROM {narrow} WHERE {valid}) b JOIN price_index_tokens t USING (token_key)"
        )
        select = f"""
            SELECT '{INDEX_HOURLY}' AS grain, {_index_key_sql("b.last_trade_at")} AS key,
                   b.close, b.last_trade_at, NULL AS token_id
            FROM {bars}
            UNION ALL
            SELECT '{INDEX_DAILY}', {_index_key_sql("max(b.last_trade_at)")},
                   arg_max(b.close, b.last_trade_at), max(b.last_trade_at), NULL
            FROM {bars}
            GROUP BY t.ordinal, epoch_us(b.bucket_start) // {_MICROS_PER_DAY}
            UNION ALL
            SELECT '{_DIRECTORY}', ordinal << {_TIME_BITS}, NULL, NULL, token_id
            FROM price_index_tokens
            ORDER BY grain, key, last_trade_at
        """
    kv = manifest.replace("'", "''")
    try:
        write_atomically(
            target,
            lambda tmp: con.execute(
                f"COPY ({select}) TO {sql_string(tmp)} "
                f"({PARQUET_OPTIONS}, KV_METADATA {{{_INDEX_KV_KEY}: '{kv}'}})"
            ),
        )
    finally:
        con.execute("DROP TABLE IF EXISTS price_index_tokens")
    counts = dict(
        con.execute(
            f"SELECT grain, count(*) FROM read_parquet({sql_string(target)}) GROUP BY grain"
        ).fetchall()
    )
    newest = con.execute(
        f"SELECT max(last_trade_at) FROM read_parquet({sql_string(target)}) "
        f"WHERE grain = '{INDEX_DAILY}'"
    ).fetchone()
    return PriceIndexReport(
        path=target,
        hourly_rows=int(counts.get(INDEX_HOURLY, 0)),
        daily_rows=int(counts.get(INDEX_DAILY, 0)),
        tokens=int(counts.get(_DIRECTORY, 0)),
        days=len(stamps),
        source_files=sum(len(files) for files in stamps.values()),
        bytes=target.stat().st_size,
        newest_trade_at=newest[0] if newest else None,
    )


def _index_key_sql(last_trade_at: str) -> str:
    """A row's key: its token's number, then its last trade's second rounded up."""
    return f"(t.ordinal << {_TIME_BITS}) | ((epoch_us({last_trade_at}) + 999999) // 1000000)"


class PriceIndex:
    """The as-of index as readers see it: its file plus the days it cannot answer for."""

    def __init__(self, lake: Lake, path: Path, dirty_days: list[date]) -> None:
        self.lake = lake
        self.path = path
        self.dirty_days = dirty_days  # hourly files changed, added or removed since the build

    @classmethod
    def open(cls, lake: Lake) -> PriceIndex | None:
        """The index, or None when it was never built (or is unreadable / another version)."""
        path = lake.single_file(PRICE_INDEX)
        try:
            kv = pq.read_metadata(path).metadata or {}
            manifest = json.loads(kv[_INDEX_KV_KEY.encode()])
        except (FileNotFoundError, KeyError, ValueError, OSError, pa.ArrowException):
            return None
        if manifest.get("version") != _INDEX_VERSION:
            return None
        built = {
            date.fromisoformat(day): [tuple(s) for s in files]
            for day, files in manifest["days"].items()
        }
        now = bar_file_stamps(lake)
        dirty = sorted(day for day in built.keys() | now.keys() if built.get(day) != now.get(day))
        return cls(lake, path, dirty)

    def series(
        self, con: duckdb.DuckDBPyConnection, token_ids: Iterable[str | None], grain: str
    ) -> PriceSeries:
        """Every ``grain`` close of the tokens (dirty days from their hourly bars).

        The series' codes are the index's ordinals (tokens it has never seen go after
        them), and it reads the run from the lowest to the highest wanted ordinal: other
        tokens' rows inside that run come along and change no answer for these tokens
        (only ``newest``, which then covers them too: signal callers pass ``data_end``).
        """
        wanted = _tokens(token_ids)
        directory = con.execute(
            f"SELECT token_id FROM read_parquet({sql_string(self.path)}) "
            f"WHERE grain = '{_DIRECTORY}' ORDER BY key"
        ).fetchnumpy()["token_id"]
        tokens = [str(t) for t in directory]
        ordinal = {token: i for i, token in enumerate(tokens)}
        tokens += [t for t in wanted if t not in ordinal]
        indexed = [ordinal[t] for t in wanted if t in ordinal]
        if not indexed:
            keys, closes = np.empty(0, dtype=np.int64), np.empty(0)
        else:
            dirty_day = f"epoch_us(last_trade_at) // {_MICROS_PER_DAY}"
            table = con.execute(
                f"""
                SELECT key, close{", " + dirty_day + " AS day" if self.dirty_days else ""}
                FROM read_parquet({sql_string(self.path)})
                WHERE grain = $grain AND key BETWEEN $lo AND $hi
                """,
                {
                    "grain": grain,
                    "lo": min(indexed) << _TIME_BITS,
                    "hi": ((max(indexed) + 1) << _TIME_BITS) - 1,
                },
            ).to_arrow_table()
            keys, closes = table.column("key").to_numpy(), table.column("close").to_numpy()
            if self.dirty_days:
                dirty = np.array([(d - _EPOCH).days for d in self.dirty_days], dtype=np.int64)
                keep = ~np.isin(table.column("day").to_numpy(), dirty)
                keys, closes = keys[keep], closes[keep]
        series = PriceSeries(tokens, keys >> _TIME_BITS, keys & ((1 << _TIME_BITS) - 1), closes)
        if not self.dirty_days:
            return series
        files = [f for day in self.dirty_days for f in self.lake.day_files(PRICES_1H, day)]
        relation = _relation(con, self.lake, PRICE_BARS_1H, files)
        return PriceSeries.merge(series, _series(tokens, _query(con, tokens, relation)))


_EPOCH = date(1970, 1, 1)
