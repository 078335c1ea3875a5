"""The "buy the favorite" backtest engine: a strategy config, a simulation, metrics.

Conventions (README "Backtests"; docs/architecture.md §5):

- Entry: at ``group end - days_before`` days, the favorite is the candidate with the
  highest Yes price known at that moment (``signals.favorite_signals``: no look-ahead).
  A buyer pays that price plus slippage: ``p * (1 + slippage_bps / 10^4)`` or
  ``p + slippage_ticks * tick_size``. An entry whose fill would be 1 or more is skipped.
- Fees: ``fee_bps`` of the notional of every buy and every sale, paid on top (a stake of
  100 at 100 bps costs 101). Redeeming at resolution is free, as on Polymarket.
- Exit: hold to the favorite's market end date and receive its payout per share (1 if it
  won, 0 if it lost, 0.5 in a 50/50 resolution: ``resolutions.resolutions_sql``);
  or, with ``take_profit`` / ``stop_loss`` (absolute Yes prices), sell at the first price
  point after entry (an hourly close, at its last trade time) at or above the take-profit
  or at or below the stop-loss, minus slippage and fee. A group that never resolved (only
  with ``require_resolved: false``) is sold at its last price on the end date.
- Sizing: a fixed stake per trade, or a fraction of equity (cash plus open positions
  marked at their last price) at the entry time; never more than the cash on hand.
- Equity is marked at every UTC midnight from the last midnight before the first entry to
  the first midnight at or after the last exit: cash after every entry and exit up to that
  midnight, plus shares x the last price before it (the day's close). Returns are per
  calendar day (markets trade every day); Sharpe =
  mean(daily return - risk_free_rate / 365) / sample std (ddof 1) x sqrt(365); max drawdown
  = largest fall of the daily equity below its running peak, as a fraction of the peak.
- exposure = share of the curve's days during which at least one position was open;
  capital_utilisation = mean over days of (open positions' value / equity) at midnight.
"""

from __future__ import annotations

import base64
import heapq
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from polymkt_dagster.lib.analytics.election_groups import Group
from polymkt_dagster.lib.analytics.price_series import PriceSeries, from_seconds, to_seconds
from polymkt_dagster.lib.research.signals import FavoriteSignal, favorite_signals

DAY_S = 86_400
MIN_STAKE = 0.01  # USDC: below this a trade is skipped as "not enough cash"


class StrategyConfig(BaseModel):
    """A favorite strategy: what to buy, when to sell, how much, at what cost."""

    model_config = ConfigDict(extra="forbid")

    days_before: int = Field(
        30, ge=0, le=3650, description="Enter this many days before the group's end date."
    )
    min_price: float = Field(
        0.0, ge=0, le=1, description="Enter only when the favorite's price is at least this."
    )
    max_price: float = Field(
        1.0, ge=0, le=1, description="Enter only when the favorite's price is at most this."
    )
    min_margin: float = Field(
        0.0, ge=0, le=1, description="Minimum lead of the favorite over the runner-up."
    )
    max_price_age_days: float | None = Field(
        None, gt=0, description="Skip when the favorite's last trade is older than this."
    )
    take_profit: float | None = Field(
        None, gt=0, le=1, description="Sell when the Yes price reaches this level (absolute)."
    )
    stop_loss: float | None = Field(
        None, ge=0, lt=1, description="Sell when the Yes price falls to this level (absolute)."
    )
    sizing: Literal["fixed", "fraction"] = Field(
        "fixed", description="fixed: `stake` USDC a trade; fraction: `fraction` of equity."
    )
    stake: float = Field(100.0, gt=0, description="USDC per trade with fixed sizing.")
    fraction: float = Field(
        0.02, gt=0, le=1, description="Share of equity per trade with fraction sizing."
    )
    initial_capital: float = Field(10_000.0, gt=0, description="Starting cash in USDC.")
    fee_bps: float = Field(0.0, ge=0, le=1000, description="Fee on each buy and sale, in bps.")
    slippage_bps: float = Field(0.0, ge=0, le=5000, description="Price slippage in bps.")
    slippage_ticks: int = Field(0, ge=0, le=100, description="Price slippage in ticks.")
    tick_size: float = Field(0.01, gt=0, le=0.1, description="Tick size for slippage_ticks.")
    dataset: str | None = Field(
        None, description="Only groups with a market in this saved dataset."
    )
    group_ids: list[str] | None = Field(None, description="Only these election groups.")
    require_resolved: bool = Field(
        True, description="Only groups whose markets all resolved (payout known)."
    )
    risk_free_rate: float = Field(
        0.0, ge=-0.5, le=1.0, description="Annual risk-free rate subtracted in Sharpe."
    )

    @model_validator(mode="after")
    def _consistent(self) -> StrategyConfig:
        if self.min_price > self.max_price:
            raise ValueError(f"min_price {self.min_price} is above max_price {self.max_price}")
        if self.slippage_bps and self.slippage_ticks:
            raise ValueError("give slippage in bps or in ticks, not both")
        if (
            self.take_profit is not None
            and self.stop_loss is not None
            and self.stop_loss >= self.take_profit
        ):
            raise ValueError(
                f"stop_loss {self.stop_loss} must be below take_profit {self.take_profit}"
            )
        return self

    @property
    def exit_rule(self) -> str:
        parts = []
        if self.take_profit is not None:
            parts.append(f"take profit at {self.take_profit:g}")
        if self.stop_loss is not None:
            parts.append(f"stop loss at {self.stop_loss:g}")
        return ", ".join(parts) + ", else hold to expiry" if parts else "hold to expiry"

    def describe(self) -> str:
        """One readable sentence, shown before a backtest runs."""
        band = ""
        if self.min_price > 0 or self.max_price < 1:
            band = f" priced {self.min_price:g}-{self.max_price:g}"
        if self.min_margin > 0:
            band += f" leading by at least {self.min_margin:g}"
        size = (
            f"{self.stake:g} USDC a trade"
            if self.sizing == "fixed"
            else f"{self.fraction:.1%} of equity a trade"
        )
        slip = (
            f"{self.slippage_ticks} tick(s) of {self.tick_size:g}"
            if self.slippage_ticks
            else f"{self.slippage_bps:g} bps"
        )
        scope = (
            f"dataset {self.dataset!r}"
            if self.dataset
            else f"{len(self.group_ids)} chosen groups"
            if self.group_ids
            else "all election groups"
        )
        return (
            f"Buy the favorite{band} {self.days_before} days before each group's end "
            f"({scope}{', resolved only' if self.require_resolved else ''}); "
            f"{self.exit_rule}; {size} from {self.initial_capital:,.0f} USDC; "
            f"fees {self.fee_bps:g} bps, slippage {slip}."
        )

    # ---- fills -----------------------------------------------------------------------
    def buy_fill(self, price: float) -> float:
        if self.slippage_ticks:
            return price + self.slippage_ticks * self.tick_size
        return price * (1 + self.slippage_bps / 10_000)

    def sell_fill(self, price: float) -> float:
        if self.slippage_ticks:
            return max(price - self.slippage_ticks * self.tick_size, 0.0)
        return max(price * (1 - self.slippage_bps / 10_000), 0.0)

    @property
    def fee_rate(self) -> float:
        return self.fee_bps / 10_000


@dataclass
class _Candidate:
    signal: FavoriteSignal
    code: int
    entry_s: int
    entry_fill: float
    exit_s: int
    exit_reason: str  # resolution | take_profit | stop_loss | unresolved_mark
    exit_observed: float  # the payout (1, 0 or a split such as 0.5) or the observed price
    exit_is_sale: bool


@dataclass
class _Position:
    candidate: _Candidate
    stake: float
    shares: float
    entry_fee: float
    proceeds: float = 0.0
    exit_fee: float = 0.0
    exit_fill: float = 0.0


@dataclass
class BacktestResult:
    config: StrategyConfig
    signals: list[FavoriteSignal]
    trades: pa.Table
    equity: pa.Table
    metrics: dict[str, Any]
    skipped: list[dict[str, str]] = field(default_factory=list)


TRADE_SCHEMA = pa.schema(
    [
        ("group_id", pa.string()),
        ("group_title", pa.string()),
        ("market_id", pa.string()),
        ("candidate", pa.string()),
        ("token_id", pa.string()),
        ("signal_time", pa.timestamp("us", tz="UTC")),
        ("observed_price", pa.float64()),
        ("observed_price_at", pa.timestamp("us", tz="UTC")),
        ("margin", pa.float64()),
        ("runner_up_candidate", pa.string()),
        ("entry_time", pa.timestamp("us", tz="UTC")),
        ("entry_price", pa.float64()),
        ("shares", pa.float64()),
        ("stake", pa.float64()),
        ("entry_fee", pa.float64()),
        ("exit_time", pa.timestamp("us", tz="UTC")),
        ("exit_reason", pa.string()),
        ("exit_observed_price", pa.float64()),
        ("exit_price", pa.float64()),
        ("proceeds", pa.float64()),
        ("exit_fee", pa.float64()),
        ("pnl", pa.float64()),
        ("return", pa.float64()),
        ("favorite_won", pa.bool_()),
    ]
)
EQUITY_SCHEMA = pa.schema(
    [
        ("day", pa.timestamp("us", tz="UTC")),
        ("equity", pa.float64()),
        ("cash", pa.float64()),
        ("positions_value", pa.float64()),
        ("open_positions", pa.int32()),
        ("daily_return", pa.float64()),
        ("drawdown", pa.float64()),
    ]
)
TRADE_PREVIEW = [
    "group_title", "candidate", "entry_time", "entry_price", "exit_reason", "exit_price", "pnl",
]  # fmt: skip


def select_groups(
    groups: Sequence[Group], config: StrategyConfig, dataset_markets: set[str] | None
) -> list[Group]:
    """Groups in scope: the chosen ids, and groups with a member in the dataset."""
    chosen = list(groups)
    if config.group_ids:
        wanted = set(config.group_ids)
        chosen = [g for g in chosen if g.group_id in wanted]
    if dataset_markets is not None:
        chosen = [g for g in chosen if any(m.market_id in dataset_markets for m in g.members)]
    return chosen


def _skip(skipped: list[dict[str, str]], signal: FavoriteSignal, reason: str) -> None:
    skipped.append({"group_id": signal.group_id, "group_title": signal.group_title,
                    "reason": reason})  # fmt: skip


def _candidates(
    signals: Sequence[FavoriteSignal],
    series: PriceSeries,
    config: StrategyConfig,
    skipped: list[dict[str, str]],
) -> list[_Candidate]:
    """Entries that pass the rules, each with its exit decided from the price path."""
    found: list[_Candidate] = []
    for signal in signals:
        if signal.status != "ok":
            _skip(skipped, signal, signal.skip_reason or "no signal")
            continue
        if config.require_resolved and not signal.group_resolved:
            _skip(skipped, signal, "the group is not resolved (payout unknown)")
            continue
        price = float(signal.favorite_price or 0.0)
        if not config.min_price <= price <= config.max_price:
            _skip(
                skipped,
                signal,
                f"favorite price {price:.4f} is outside [{config.min_price:g}, "
                f"{config.max_price:g}]",
            )
            continue
        if config.min_margin > 0 and (signal.margin is None or signal.margin < config.min_margin):
            _skip(skipped, signal, f"margin below {config.min_margin:g} (or no runner-up)")
            continue
        assert signal.signal_time and signal.favorite_price_at and signal.favorite_end_date
        if config.max_price_age_days is not None and (
            signal.signal_time - signal.favorite_price_at
        ) > timedelta(days=config.max_price_age_days):
            _skip(skipped, signal, f"last price older than {config.max_price_age_days:g} days")
            continue
        fill = config.buy_fill(price)
        if fill >= 1.0:
            _skip(skipped, signal, f"fill price {fill:.4f} with slippage is 1 or more")
            continue
        code = series.code(signal.favorite_token_id)
        entry_s = to_seconds(signal.signal_time)
        end_s = max(to_seconds(signal.favorite_end_date), entry_s)
        exit_s, reason, observed, is_sale = end_s, "resolution", 0.0, False
        hit = None
        if config.take_profit is not None or config.stop_loss is not None:
            times, prices = series.path(code, entry_s, end_s)
            crossed = np.zeros(len(prices), dtype=bool)
            if config.take_profit is not None:
                crossed |= prices >= config.take_profit
            if config.stop_loss is not None:
                crossed |= prices <= config.stop_loss
            hits = np.flatnonzero(crossed)
            if len(hits):
                hit = int(hits[0])
                exit_s, observed, is_sale = int(times[hit]), float(prices[hit]), True
                reason = (
                    "take_profit"
                    if config.take_profit is not None and observed >= config.take_profit
                    else "stop_loss"
                )
        if hit is None:
            if signal.group_resolved:
                payout = signal.favorite_payout
                if payout is None:  # signals written before payouts were recorded
                    payout = 1.0 if signal.favorite_won else 0.0
                observed = payout
            else:
                last, _ = series.asof(np.array([code]), np.array([end_s]))
                reason, observed, is_sale = "unresolved_mark", float(last[0]), True
        found.append(_Candidate(signal, code, entry_s, fill, exit_s, reason, observed, is_sale))
    found.sort(key=lambda c: (c.entry_s, c.signal.group_id))
    return found


def _simulate(
    candidates: list[_Candidate],
    series: PriceSeries,
    config: StrategyConfig,
    skipped: list[dict[str, str]],
) -> tuple[list[_Position], list[tuple[int, float]]]:
    """Walk entries and exits in time order; returns positions and (time, cash delta)."""
    cash = config.initial_capital
    positions: list[_Position] = []
    cash_events: list[tuple[int, float]] = []
    pending: list[tuple[int, int]] = []  # (exit time, position index)
    open_now: set[int] = set()

    def close_until(moment: int) -> None:
        nonlocal cash
        # Exits at the same second as an entry come first: their cash is free again.
        while pending and pending[0][0] <= moment:
            exit_s, index = heapq.heappop(pending)
            position = positions[index]
            candidate = position.candidate
            if candidate.exit_is_sale:
                position.exit_fill = config.sell_fill(candidate.exit_observed)
                position.proceeds = position.shares * position.exit_fill
                position.exit_fee = position.proceeds * config.fee_rate
            else:
                position.exit_fill = candidate.exit_observed
                position.proceeds = position.shares * candidate.exit_observed
            delta = position.proceeds - position.exit_fee
            cash += delta
            cash_events.append((exit_s, delta))
            open_now.discard(index)

    for candidate in candidates:
        close_until(candidate.entry_s)
        if config.sizing == "fixed":
            stake = config.stake
        else:
            marks = 0.0
            if open_now:
                held = [positions[i] for i in open_now]
                prices, _ = series.asof(
                    np.array([p.candidate.code for p in held]),
                    np.full(len(held), candidate.entry_s),
                )
                marks = float(np.nansum(np.array([p.shares for p in held]) * prices))
            stake = config.fraction * (cash + marks)
        stake = min(stake, cash / (1 + config.fee_rate))
        if stake < MIN_STAKE:
            _skip(skipped, candidate.signal, "not enough cash for the stake")
            continue
        position = _Position(
            candidate=candidate,
            stake=stake,
            shares=stake / candidate.entry_fill,
            entry_fee=stake * config.fee_rate,
        )
        cost = stake + position.entry_fee
        cash -= cost
        cash_events.append((candidate.entry_s, -cost))
        positions.append(position)
        open_now.add(len(positions) - 1)
        heapq.heappush(pending, (candidate.exit_s, len(positions) - 1))
    close_until(2**62)
    return positions, cash_events


def _trades_table(positions: Sequence[_Position]) -> pa.Table:
    records = []
    for p in positions:
        c, s = p.candidate, p.candidate.signal
        cost = p.stake + p.entry_fee
        pnl = p.proceeds - p.exit_fee - cost
        records.append(
            {
                "group_id": s.group_id,
                "group_title": s.group_title,
                "market_id": s.favorite_market_id,
                "candidate": s.favorite_candidate,
                "token_id": s.favorite_token_id,
                "signal_time": s.signal_time,
                "observed_price": s.favorite_price,
                "observed_price_at": s.favorite_price_at,
                "margin": s.margin,
                "runner_up_candidate": s.runner_up_candidate,
                "entry_time": from_seconds(c.entry_s),
                "entry_price": c.entry_fill,
                "shares": p.shares,
                "stake": p.stake,
                "entry_fee": p.entry_fee,
                "exit_time": from_seconds(c.exit_s),
                "exit_reason": c.exit_reason,
                "exit_observed_price": c.exit_observed,
                "exit_price": p.exit_fill,
                "proceeds": p.proceeds,
                "exit_fee": p.exit_fee,
                "pnl": pnl,
                "return": pnl / cost,
                "favorite_won": s.favorite_won,
            }
        )
    return pa.Table.from_pylist(records, schema=TRADE_SCHEMA)


@dataclass
class _Curve:
    days: np.ndarray  # int seconds at UTC midnights
    equity: np.ndarray
    cash: np.ndarray
    positions_value: np.ndarray
    open_positions: np.ndarray
    exposed: np.ndarray  # day k (k >= 1): a position was open during (D[k-1], D[k]]


def _equity_curve(
    positions: Sequence[_Position],
    cash_events: Sequence[tuple[int, float]],
    series: PriceSeries,
    initial_capital: float,
) -> _Curve:
    entries = np.array([p.candidate.entry_s for p in positions], dtype=np.int64)
    exits = np.array([p.candidate.exit_s for p in positions], dtype=np.int64)
    first_day = (int(entries.min()) - 1) // DAY_S * DAY_S  # last midnight before the entry
    last_day = -(-int(exits.max()) // DAY_S) * DAY_S  # first midnight at or after the exit
    last_day = max(last_day, first_day + DAY_S)
    days = np.arange(first_day, last_day + 1, DAY_S, dtype=np.int64)

    event_times = np.array([t for t, _ in cash_events], dtype=np.int64)
    order = np.argsort(event_times, kind="stable")
    event_times = event_times[order]
    running = initial_capital + np.cumsum(np.array([d for _, d in cash_events])[order])
    seen = np.searchsorted(event_times, days, side="right")
    cash = np.where(seen > 0, running[np.maximum(seen - 1, 0)], initial_capital)

    # Marks: position i is open at midnight D when entry <= D < exit.
    open_from = np.searchsorted(days, entries, side="left")
    open_to = np.searchsorted(days, exits, side="left")
    counts = np.maximum(open_to - open_from, 0)
    held_day = np.concatenate(
        [np.arange(a, b) for a, b in zip(open_from, open_to, strict=True)] or [np.empty(0)]
    ).astype(np.int64)
    held_pos = np.repeat(np.arange(len(positions)), counts)
    codes = np.array([p.candidate.code for p in positions], dtype=np.int64)
    shares = np.array([p.shares for p in positions])
    # The last price before midnight: the day's close, the same from daily or hourly bars.
    marks, _ = series.asof(codes[held_pos], days[held_day] - 1)
    values = np.zeros(len(days))
    np.add.at(values, held_day, shares[held_pos] * np.nan_to_num(marks))
    open_count = np.zeros(len(days), dtype=np.int64)
    np.add.at(open_count, held_day, 1)

    # Exposure: day k counts when entry < D[k] and exit > D[k-1].
    exposed_from = np.searchsorted(days, entries, side="right")
    exposed_to = np.searchsorted(days, exits, side="left")  # inclusive
    marker = np.zeros(len(days) + 1, dtype=np.int64)
    np.add.at(marker, np.minimum(exposed_from, len(days)), 1)
    np.add.at(marker, np.minimum(exposed_to + 1, len(days)), -1)
    exposed = np.cumsum(marker[:-1]) > 0
    exposed[0] = False
    return _Curve(days, cash + values, cash, values, open_count, exposed)


def compute_metrics(
    curve: _Curve | None, trades: pa.Table, config: StrategyConfig, groups_considered: int
) -> dict[str, Any]:
    """Every metric of the README's conventions, as plain floats/ints (None = undefined)."""
    n_trades = trades.num_rows
    pnl = np.array(trades.column("pnl").to_pylist(), dtype=float) if n_trades else np.empty(0)
    returns_per_trade = (
        np.array(trades.column("return").to_pylist(), dtype=float) if n_trades else np.empty(0)
    )
    entry_prices = (
        np.array(trades.column("observed_price").to_pylist(), dtype=float)
        if n_trades
        else np.empty(0)
    )
    fees = (
        float(np.sum(trades.column("entry_fee").to_numpy() + trades.column("exit_fee").to_numpy()))
        if n_trades
        else 0.0
    )
    metrics: dict[str, Any] = {
        "initial_capital": config.initial_capital,
        "final_equity": config.initial_capital,
        "total_return": 0.0,
        "pnl": 0.0,
        "trades": n_trades,
        "wins": int(np.count_nonzero(pnl > 0)),
        "win_rate": float(np.mean(pnl > 0)) if n_trades else None,
        "avg_return_per_trade": float(np.mean(returns_per_trade)) if n_trades else None,
        "avg_entry_price": float(np.mean(entry_prices)) if n_trades else None,
        "sharpe": None,
        "sharpe_convention": "daily returns, mean/std(ddof=1) x sqrt(365), risk-free "
        f"{config.risk_free_rate:g}/yr",
        "max_drawdown": 0.0,
        "exposure": 0.0,
        "capital_utilisation": 0.0,
        "fees_paid": fees,
        "days": 0,
        "start": None,
        "end": None,
        "groups_considered": groups_considered,
        "sanity_warning": None,
    }
    if curve is None or not n_trades:
        return metrics
    equity = curve.equity
    with np.errstate(divide="ignore", invalid="ignore"):
        daily = equity[1:] / equity[:-1] - 1.0
        peaks = np.maximum.accumulate(equity)
        drawdowns = np.where(peaks > 0, 1.0 - equity / peaks, 0.0)
        utilisation = np.where(equity[1:] > 0, curve.positions_value[1:] / equity[1:], 0.0)
    excess = daily - config.risk_free_rate / 365.0
    sharpe = None
    if len(excess) >= 2 and np.all(np.isfinite(excess)):
        spread = float(np.std(excess, ddof=1))
        if spread > 0:
            sharpe = float(np.mean(excess) / spread * math.sqrt(365.0))
    final = float(equity[-1])
    metrics.update(
        {
            "final_equity": final,
            "total_return": final / config.initial_capital - 1.0,
            "pnl": float(np.sum(pnl)),
            "sharpe": sharpe,
            "max_drawdown": float(np.max(drawdowns)),
            "exposure": float(np.mean(curve.exposed[1:])),
            "capital_utilisation": float(np.mean(utilisation)),
            "days": len(daily),
            "start": from_seconds(int(curve.days[0])),
            "end": from_seconds(int(curve.days[-1])),
        }
    )
    # docs/architecture.md §5: far beyond these, suspect look-ahead or double-counted fills.
    staked = float(np.sum(trades.column("stake").to_numpy()))
    edge = metrics["win_rate"] - metrics["avg_entry_price"]
    if edge > 0.15 or metrics["pnl"] / staked > 0.20:
        metrics["sanity_warning"] = (
            f"win rate {metrics['win_rate']:.1%} vs average entry price "
            f"{metrics['avg_entry_price']:.1%}, return per dollar staked "
            f"{metrics['pnl'] / staked:.1%} over {n_trades} trades: far above what favorites "
            "usually earn; check for look-ahead, double-counted fills, stale prices "
            "(max_price_age_days) or a sample too small to mean anything"
        )
    return metrics


def _equity_table(curve: _Curve | None) -> pa.Table:
    if curve is None:
        return EQUITY_SCHEMA.empty_table()
    with np.errstate(divide="ignore", invalid="ignore"):
        daily = np.concatenate([[np.nan], curve.equity[1:] / curve.equity[:-1] - 1.0])
        peaks = np.maximum.accumulate(curve.equity)
        drawdown = np.where(peaks > 0, 1.0 - curve.equity / peaks, 0.0)
    return pa.table(
        {
            "day": pa.array([from_seconds(int(d)) for d in curve.days], EQUITY_SCHEMA[0].type),
            "equity": curve.equity,
            "cash": curve.cash,
            "positions_value": curve.positions_value,
            "open_positions": pa.array(curve.open_positions, pa.int32()),
            "daily_return": pa.array(daily, pa.float64(), mask=np.isnan(daily)),
            "drawdown": drawdown,
        },
        schema=EQUITY_SCHEMA,
    )


def run_backtest(
    config: StrategyConfig,
    groups: Sequence[Group],
    series: PriceSeries,
    *,
    dataset_markets: set[str] | None = None,
    data_end: datetime | None = None,
    signals: Sequence[FavoriteSignal] | None = None,
) -> BacktestResult:
    """Simulate ``config`` over the groups in scope and compute every metric.

    ``signals`` (the precomputed favorites at ``config.days_before``, any superset of the
    groups in scope) saves computing them; then ``series`` only needs the favorites' tokens.
    """
    chosen = select_groups(groups, config, dataset_markets)
    if signals is None:
        signals = favorite_signals(chosen, series, config.days_before, data_end=data_end)
    else:
        in_scope = {g.group_id for g in chosen}
        signals = [s for s in signals if s.group_id in in_scope]
    skipped: list[dict[str, str]] = []
    candidates = _candidates(signals, series, config, skipped)
    positions, cash_events = _simulate(candidates, series, config, skipped)
    trades = _trades_table(positions)
    curve = (
        _equity_curve(positions, cash_events, series, config.initial_capital) if positions else None
    )
    metrics = compute_metrics(curve, trades, config, groups_considered=len(chosen))
    metrics["groups_skipped"] = len(skipped)
    return BacktestResult(config, list(signals), trades, _equity_table(curve), metrics, skipped)


METRIC_LABELS: dict[str, str] = {
    "total_return": "Total return",
    "pnl": "P&L (USDC)",
    "final_equity": "Final equity (USDC)",
    "trades": "Trades",
    "win_rate": "Win rate",
    "avg_return_per_trade": "Average return per trade",
    "avg_entry_price": "Average entry price (before slippage)",
    "sharpe": "Sharpe (daily, x sqrt(365))",
    "max_drawdown": "Max drawdown",
    "exposure": "Exposure (days with a position open)",
    "capital_utilisation": "Capital utilisation (mean open value / equity)",
    "fees_paid": "Fees paid (USDC)",
    "days": "Days on the equity curve",
    "groups_considered": "Groups considered",
    "groups_skipped": "Groups skipped",
}
_PERCENT = {"total_return", "win_rate", "avg_return_per_trade", "max_drawdown", "exposure",
            "capital_utilisation"}  # fmt: skip


def format_metric(name: str, value: Any) -> str:
    if value is None:
        return "n/a"
    if name in _PERCENT:
        return f"{value:.2%}"
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 10 else f"{value:,.2f}"
    return str(value)


def metrics_markdown(metrics: dict[str, Any]) -> str:
    lines = ["| metric | value |", "|---|---|"]
    lines += [
        f"| {label} | {format_metric(key, metrics.get(key))} |"
        for key, label in METRIC_LABELS.items()
    ]
    if metrics.get("sanity_warning"):
        lines.append(f"\n**Warning:** {metrics['sanity_warning']}")
    return "\n".join(lines)


def equity_png(equity: pa.Table, title: str) -> bytes:
    """A 900x450 px PNG of the equity curve over its drawdown, readable at the UI's size
    (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = equity.column("day").to_pylist()
    values = equity.column("equity").to_numpy()
    drawdown = equity.column("drawdown").to_numpy()
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(9, 4.5), dpi=100, sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    top.plot(days, values, color="#1f77b4", linewidth=1.4)
    top.set_title(title, fontsize=9)
    top.set_ylabel("equity (USDC)", fontsize=8)
    top.grid(alpha=0.3)
    bottom.fill_between(days, -drawdown * 100, 0, color="#d62728", alpha=0.5)
    bottom.set_ylabel("drawdown %", fontsize=8)
    bottom.grid(alpha=0.3)
    for axis in (top, bottom):
        axis.tick_params(labelsize=7)
    figure.autofmt_xdate()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def equity_markdown(png: bytes) -> str:
    return f"![equity curve](data:image/png;base64,{base64.b64encode(png).decode()})"
