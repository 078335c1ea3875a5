"""Favorite signals: at N days before a group ends, which candidate is priced highest.

Everything reads one price series per Yes token (``price_series.signal_series``), loaded
once from the analytics bars, so signals for thousands of groups and several horizons cost
a few vectorised as-of look-ups instead of one trades scan per group. The price "at" a
signal time is known at or before it, never later (see ``price_series`` for the rule).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from polymkt_dagster.lib.analytics.bars import PRICE_BARS_1H, newest_bar_time
from polymkt_dagster.lib.analytics.election_groups import ELECTION_GROUPS, Group, read_groups
from polymkt_dagster.lib.analytics.price_series import (
    NO_PRICE,
    PriceSeries,
    from_seconds,
    signal_series,
    to_seconds,
)
from polymkt_dagster.lib.core.lake import Lake

FAVORITES = "analytics/signals/favorites"
DAYS_TO_EXPIRY = (1, 3, 7, 14, 30, 60, 90)


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
    # what one share of the favorite pays at resolution (0.5 each in a 50/50 resolution)
    favorite_payout: float | None = None


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
        ("favorite_payout", pa.float64()),
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
    group_seconds = [to_seconds(t) if t else NO_PRICE for t in signal_times]
    member_times = np.repeat(
        np.array(group_seconds, dtype=np.int64), [len(g.members) for g in groups]
    )
    prices, at = series.asof(member_codes, member_times)
    first_member = np.searchsorted(member_group, np.arange(len(groups) + 1))
    priced = np.concatenate([[0], np.cumsum(~np.isnan(prices))])
    # Plain floats from here: the per-group ranking below is Python, numpy scalars are slow.
    price_list, at_list = prices.tolist(), at.tolist()

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
            n_priced=int(priced[hi] - priced[lo]),
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
            (i for i in range(lo, hi) if price_list[i] == price_list[i]),  # not NaN
            key=lambda i: (-price_list[i], -at_list[i], group.members[i - lo].market_id),
        )
        favorite = group.members[ranked[0] - lo]
        signal.status = "ok"
        signal.favorite_market_id = favorite.market_id
        signal.favorite_candidate = favorite.candidate
        signal.favorite_token_id = favorite.yes_token_id
        signal.favorite_price = price_list[ranked[0]]
        signal.favorite_price_at = from_seconds(at_list[ranked[0]])
        signal.favorite_end_date = favorite.end_date or ends[index]
        if len(ranked) > 1:
            runner_up = group.members[ranked[1] - lo]
            signal.runner_up_market_id = runner_up.market_id
            signal.runner_up_candidate = runner_up.candidate
            signal.runner_up_price = price_list[ranked[1]]
            signal.margin = signal.favorite_price - signal.runner_up_price
        if group.resolved:
            signal.favorite_won = bool(favorite.won)
            signal.favorite_payout = favorite.payout
    return signals


def signals_table(signals: Sequence[FavoriteSignal]) -> pa.Table:
    # vars() rather than asdict(): the fields are flat, and asdict deep-copies each value.
    return pa.Table.from_pylist([vars(s) for s in signals], schema=SIGNAL_SCHEMA)


def read_favorites(
    lake: Lake, days_before: int, group_ids: set[str] | None = None
) -> list[FavoriteSignal] | None:
    """The signals/favorites output for one horizon, if it is newer than its inputs.

    None when the file is missing or older than the election groups or any hourly bars
    file (a rebuild since): the caller computes the signals itself then.
    """
    path = lake.single_file(favorites_table_name(days_before))
    groups_path = lake.single_file(ELECTION_GROUPS)
    if not path.exists() or not groups_path.exists():
        return None
    built = path.stat().st_mtime_ns
    # The listing carries each bars file's mtime: no second stat per file.
    if groups_path.stat().st_mtime_ns > built or any(
        f.mtime_ns > built for f in lake.listing(PRICE_BARS_1H.name)
    ):
        return None
    rows = pq.read_table(path).to_pylist()
    return [
        FavoriteSignal(**row) for row in rows if group_ids is None or row["group_id"] in group_ids
    ]


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
    series = signal_series(con, lake, groups, horizons)
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
