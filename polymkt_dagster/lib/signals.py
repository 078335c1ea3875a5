"""Favorite signals: at N days before a group ends, which candidate is priced highest.

Everything reads one precomputed price series per Yes token (``PriceSeries``), built once
from the hourly bars, so signals for thousands of groups and several horizons cost a few
vectorised look-ups instead of one trades scan per group.

No look-ahead: the price of a token "at" time t is the close of its last hourly bar whose
last fill happened at or before t (``last_trade_at <= t``), i.e. the last trade price at or
before t except that trades of an hour in which t itself falls and that also has later
trades are not seen yet. With hour-aligned times (Polymarket end dates are) this is exactly
the last trade at or before t. Trade times are rounded up to the second and query times
down, so rounding can only make a price later, never earlier.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from polymkt_dagster.lib.analytics import PRICE_BARS_1H, bars_sql, newest_bar_time
from polymkt_dagster.lib.election_groups import Group, read_groups
from polymkt_dagster.lib.lake import Lake
from polymkt_dagster.lib.schemas import Table

FAVORITES = "analytics/signals/favorites"
DAYS_TO_EXPIRY = (1, 3, 7, 14, 30, 60, 90)

_TIME_BITS = 34  # seconds since 1970 up to year 2514; the token code takes the bits above
NO_PRICE = -1


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
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        self.codes = codes[order]
        self.times = times[order]
        self.prices = np.asarray(prices, dtype=np.float64)[order]
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
    def from_bars(
        cls,
        con: duckdb.DuckDBPyConnection,
        lake: Lake,
        token_ids: Sequence[str],
        table: Table = PRICE_BARS_1H,
    ) -> PriceSeries:
        """Load the closes of ``token_ids`` from a bars table in one scan.

        Tokens are mapped to integer codes inside DuckDB, so the 77-digit ids never cross
        into Python per row.
        """
        tokens = sorted({t for t in token_ids if t})
        if not tokens:
            return cls([], np.empty(0), np.empty(0), np.empty(0))
        mapping = pa.table(
            {"token_id": tokens, "code": pa.array(np.arange(len(tokens)), pa.int32())}
        )
        con.register("price_series_tokens", mapping)
        try:
            result = con.execute(
                f"""
                SELECT m.code,
                       CAST(ceil(epoch_us(b.last_trade_at) / 1e6) AS BIGINT) AS t,
                       b.close
                FROM {bars_sql(lake, table)} b
                JOIN price_series_tokens m ON b.token_id = m.token_id
                WHERE b.close IS NOT NULL
                """
            ).to_arrow_table()
        finally:
            con.unregister("price_series_tokens")
        return cls(
            tokens,
            result.column("code").to_numpy(),
            result.column("t").to_numpy(),
            result.column("close").to_numpy(),
        )


@dataclass
class FavoriteSignal:
    """The favorite of one group at one horizon (or why there is none)."""

    group_id: str
    group_title: str
    days_before: int
    group_end_date: datetime | None
    signal_time: datetime | None
    status: str  # ok | skipped
    skip_reason: str | None
    n_candidates: int
    n_priced: int
    favorite_market_id: str | None = None
    favorite_candidate: str | None = None
    favorite_token_id: str | None = None
    favorite_price: float | None = None
    favorite_price_at: datetime | None = None
    favorite_end_date: datetime | None = None
    runner_up_market_id: str | None = None
    runner_up_candidate: str | None = None
    runner_up_price: float | None = None
    margin: float | None = None
    group_resolved: bool = False
    winner_market_id: str | None = None
    winner_candidate: str | None = None
    favorite_won: bool | None = None


SIGNAL_SCHEMA = pa.schema(
    [
        ("group_id", pa.string()),
        ("group_title", pa.string()),
        ("days_before", pa.int32()),
        ("group_end_date", pa.timestamp("us", tz="UTC")),
        ("signal_time", pa.timestamp("us", tz="UTC")),
        ("status", pa.string()),
        ("skip_reason", pa.string()),
        ("n_candidates", pa.int32()),
        ("n_priced", pa.int32()),
        ("favorite_market_id", pa.string()),
        ("favorite_candidate", pa.string()),
        ("favorite_token_id", pa.string()),
        ("favorite_price", pa.float64()),
        ("favorite_price_at", pa.timestamp("us", tz="UTC")),
        ("favorite_end_date", pa.timestamp("us", tz="UTC")),
        ("runner_up_market_id", pa.string()),
        ("runner_up_candidate", pa.string()),
        ("runner_up_price", pa.float64()),
        ("margin", pa.float64()),
        ("group_resolved", pa.bool_()),
        ("winner_market_id", pa.string()),
        ("winner_candidate", pa.string()),
        ("favorite_won", pa.bool_()),
    ]
)
SIGNAL_PREVIEW = [
    "group_title", "favorite_candidate", "favorite_price", "runner_up_candidate", "margin",
    "favorite_won", "skip_reason",
]  # fmt: skip


def favorite_signals(
    groups: Sequence[Group],
    series: PriceSeries,
    days_before: int,
    *,
    data_end: datetime | None = None,
) -> list[FavoriteSignal]:
    """One signal per group at ``group end - days_before`` days (skips carry a reason).

    ``data_end`` (default: the newest price in ``series``) marks where the data stops: a
    signal time after it is skipped instead of being read from stale prices.
    """
    data_end = data_end or series.newest
    ends = [g.end_date for g in groups]
    signal_times = [e - timedelta(days=days_before) if e else None for e in ends]
    # One vectorised as-of look-up for every member of every group.
    member_group = np.array([i for i, g in enumerate(groups) for _ in g.members], dtype=np.int64)
    member_codes = np.array(
        [series.code(m.yes_token_id) for g in groups for m in g.members], dtype=np.int64
    )
    member_times = np.array(
        [
            to_seconds(signal_times[i]) if signal_times[i] else NO_PRICE
            for i, g in enumerate(groups)
            for _ in g.members
        ],
        dtype=np.int64,
    )
    prices, at = series.asof(member_codes, member_times)
    first_member = np.searchsorted(member_group, np.arange(len(groups) + 1))

    signals: list[FavoriteSignal] = []
    for index, group in enumerate(groups):
        lo, hi = int(first_member[index]), int(first_member[index + 1])
        winners = [m for m in group.members if m.won]
        winner = winners[0] if len(winners) == 1 else None
        signal = FavoriteSignal(
            group_id=group.group_id,
            group_title=group.title,
            days_before=days_before,
            group_end_date=ends[index],
            signal_time=signal_times[index],
            status="skipped",
            skip_reason=None,
            n_candidates=len(group.members),
            n_priced=int(np.count_nonzero(~np.isnan(prices[lo:hi]))),
            group_resolved=group.resolved,
            winner_market_id=winner.market_id if winner else None,
            winner_candidate=winner.candidate if winner else None,
        )
        signals.append(signal)
        when = signal_times[index]
        if when is None:
            signal.skip_reason = "the group has no end date"
            continue
        if data_end is not None and when > data_end:
            signal.skip_reason = (
                f"signal time {when:%Y-%m-%d %H:%M} is after the newest price in the data "
                f"({data_end:%Y-%m-%d %H:%M})"
            )
            continue
        if signal.n_priced == 0:
            signal.skip_reason = "no candidate has a Yes trade at or before the signal time"
            continue
        # Highest price first; ties go to the fresher price, then to the lower market id.
        ranked = sorted(
            (i for i in range(lo, hi) if not np.isnan(prices[i])),
            key=lambda i: (-prices[i], -at[i], group.members[i - lo].market_id),
        )
        favorite = group.members[ranked[0] - lo]
        signal.status = "ok"
        signal.favorite_market_id = favorite.market_id
        signal.favorite_candidate = favorite.candidate
        signal.favorite_token_id = favorite.yes_token_id
        signal.favorite_price = float(prices[ranked[0]])
        signal.favorite_price_at = from_seconds(int(at[ranked[0]]))
        signal.favorite_end_date = favorite.end_date or ends[index]
        if len(ranked) > 1:
            runner_up = group.members[ranked[1] - lo]
            signal.runner_up_market_id = runner_up.market_id
            signal.runner_up_candidate = runner_up.candidate
            signal.runner_up_price = float(prices[ranked[1]])
            signal.margin = signal.favorite_price - signal.runner_up_price
        if group.resolved:
            signal.favorite_won = bool(favorite.won)
    return signals


def signals_table(signals: Sequence[FavoriteSignal]) -> pa.Table:
    return pa.Table.from_pylist([asdict(s) for s in signals], schema=SIGNAL_SCHEMA)


def favorites_table_name(days_before: int) -> str:
    """Table name of one horizon's signals in the lake (a single Parquet file)."""
    return f"{FAVORITES}/days_before={days_before}"


@dataclass
class FavoritesReport:
    """One horizon's signals as written to the lake."""

    days_before: int
    path: Path
    table: pa.Table
    groups: int
    ok: int
    skipped: int
    favorites_resolved: int
    favorites_won: int
    avg_favorite_price: float | None
    look_ahead_rows: int  # favorite price time after the signal time: must stay 0

    @property
    def favorite_win_rate(self) -> float | None:
        return self.favorites_won / self.favorites_resolved if self.favorites_resolved else None


def build_favorites(
    con: duckdb.DuckDBPyConnection, lake: Lake, horizons: Sequence[int]
) -> list[FavoritesReport]:
    """Signals of every election group at each horizon, from one price-series load."""
    groups = read_groups(lake)
    series = PriceSeries.from_bars(con, lake, [m.yes_token_id for g in groups for m in g.members])
    data_end = newest_bar_time(con, lake)
    reports = []
    for days_before in horizons:
        signals = favorite_signals(groups, series, days_before, data_end=data_end)
        table = signals_table(signals)
        con.register("favorite_signals", table)
        try:
            path = lake.write_single(
                favorites_table_name(days_before), con, "SELECT * FROM favorite_signals"
            )
        finally:
            con.unregister("favorite_signals")
        ok = [s for s in signals if s.status == "ok"]
        resolved = [s for s in ok if s.favorite_won is not None]
        reports.append(
            FavoritesReport(
                days_before=days_before,
                path=path,
                table=table,
                groups=len(signals),
                ok=len(ok),
                skipped=len(signals) - len(ok),
                favorites_resolved=len(resolved),
                favorites_won=sum(1 for s in resolved if s.favorite_won),
                avg_favorite_price=(
                    sum(s.favorite_price or 0.0 for s in ok) / len(ok) if ok else None
                ),
                look_ahead_rows=sum(
                    1
                    for s in ok
                    if s.favorite_price_at and s.signal_time and s.favorite_price_at > s.signal_time
                ),
            )
        )
    return reports
