"""Saved backtests: prepare a config, execute it over the lake, read the results back.

Outputs of a run, under the lake's analytics prefix::

    analytics/backtests/<backtest_id>/trades.parquet     one row per position
    analytics/backtests/<backtest_id>/equity.parquet     the daily equity curve
    analytics/backtests/<backtest_id>/decisions.parquet  every group: entered, or why not

Metrics and the run status are kept in the research store for ``polymkt backtest
show|list``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from polymkt_dagster.lib.analytics.bars import PRICES_1H, newest_bar_time
from polymkt_dagster.lib.analytics.election_groups import read_groups
from polymkt_dagster.lib.analytics.price_series import (
    PriceSeries,
    daily_series,
    hourly_windows,
    signal_series,
)
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.schemas import TRADES
from polymkt_dagster.lib.research.backtest import (
    BacktestResult,
    StrategyConfig,
    equity_png,
    run_backtest,
    select_groups,
)
from polymkt_dagster.lib.research.research_store import BacktestRecord, ResearchStore, check_name
from polymkt_dagster.lib.research.signals import favorite_signals, read_favorites, signals_table

BACKTESTS_DIR = "analytics/backtests"


class BacktestRunError(RuntimeError):
    """A backtest cannot run on this lake (what is missing, and what to run first)."""


def backtest_id_for(config: StrategyConfig) -> str:
    """A readable id that is the same for the same config (re-creating is idempotent)."""
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True)
    digest = hashlib.sha1(canonical.encode()).hexdigest()[:8]
    exit_rule = "tpsl" if config.take_profit or config.stop_loss else "hold"
    return f"fav-{config.days_before}d-{exit_rule}-{digest}"


def prepare_backtest(
    store: ResearchStore,
    config: StrategyConfig,
    *,
    backtest_id: str | None = None,
    prompt: str | None = None,
) -> BacktestRecord:
    """Save a config for confirmation; it runs later (``execute_backtest``)."""
    if config.dataset:
        store.require_dataset(config.dataset)
    backtest_id = check_name(backtest_id or backtest_id_for(config), "backtest")
    document = config.model_dump(mode="json")
    existing = store.get_backtest(backtest_id)
    if existing is not None and existing.config == document:
        return existing  # same id, same config: keep its results
    return store.save_backtest(
        BacktestRecord(backtest_id=backtest_id, config=document, prompt=prompt)
    )


def result_dir(lake: Lake, backtest_id: str) -> Path:
    return lake.root / BACKTESTS_DIR / backtest_id


@dataclass
class BacktestOutputs:
    record: BacktestRecord
    result: BacktestResult
    paths: dict[str, Path]
    png: bytes


def _write(con: duckdb.DuckDBPyConnection, lake: Lake, name: str, table: pa.Table) -> Path:
    con.register("backtest_output", table)
    try:
        return lake.write_single(name, con, "SELECT * FROM backtest_output")
    finally:
        con.unregister("backtest_output")


def _decisions(result: BacktestResult) -> pa.Table:
    entered = set(result.trades.column("group_id").to_pylist())
    reasons = {s["group_id"]: s["reason"] for s in result.skipped}
    table = signals_table(result.signals)
    return table.append_column(
        "entered", pa.array([g in entered for g in table.column("group_id").to_pylist()])
    ).append_column(
        "reason",
        pa.array([reasons.get(g) for g in table.column("group_id").to_pylist()], pa.string()),
    )


def compute_backtest(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    config: StrategyConfig,
    dataset_markets: set[str] | None = None,
) -> BacktestResult:
    """Simulate ``config`` over the lake: the groups, their hourly prices, the signals.

    When ``signals/favorites`` holds this horizon and is newer than its inputs, its signals
    are used (the ones the UI shows) and only the favorites' prices are loaded; otherwise
    the signals are computed here from every candidate's prices. ``metrics`` records which.
    """
    groups = read_groups(lake)
    if not groups:
        raise BacktestRunError(
            "analytics/election_groups is empty or not built: run `polymkt pipeline` "
            "(or materialize analytics/election_groups) first"
        )
    if not lake.files(PRICES_1H) and not lake.files(TRADES.name):
        # a lake without a single trade (markets only): nothing is priced, so every group is
        # skipped and the backtest is an empty, valid result rather than a failure
        chosen = select_groups(groups, config, dataset_markets)
        result = run_backtest(config, chosen, PriceSeries.empty([]), data_end=None)
        result.metrics["signals_source"] = "none: the lake holds no trades"
        return result
    if not lake.files(PRICES_1H):
        raise BacktestRunError(
            "analytics/prices_1h has no bars: run `polymkt pipeline` (or materialize "
            "analytics/prices_1h) first"
        )
    chosen = select_groups(groups, config, dataset_markets)
    data_end = newest_bar_time(con, lake)
    signals = read_favorites(lake, config.days_before, {g.group_id for g in chosen})
    source = f"signals/favorites partition {config.days_before}"
    if signals is None:
        series = signal_series(con, lake, chosen, [config.days_before])
        signals = favorite_signals(chosen, series, config.days_before, data_end=data_end)
        source = "computed from analytics/prices_1h and prices_1d"
    # Daily closes mark positions at day ends; take-profit/stop-loss exits, sizing on
    # equity at entry times and unresolved exits need each favorite's hourly closes from
    # its observed price to its end date.
    entered = [s for s in signals if s.status == "ok" and s.favorite_token_id]
    series = daily_series(con, lake, [s.favorite_token_id or "" for s in entered])
    needs_hourly = (
        config.take_profit is not None
        or config.stop_loss is not None
        or config.sizing == "fraction"
        or not config.require_resolved
    )
    if needs_hourly:
        windows: dict[str, tuple[datetime, datetime]] = {}
        for s in entered:
            assert s.favorite_token_id and s.favorite_price_at
            end = max(s.favorite_end_date or s.favorite_price_at, s.favorite_price_at)
            start, stop = windows.get(s.favorite_token_id, (s.favorite_price_at, end))
            windows[s.favorite_token_id] = (min(start, s.favorite_price_at), max(stop, end))
        detail = hourly_windows(
            con, lake, [(token, a, b) for token, (a, b) in windows.items()],
            token_ids=series.token_ids,
        )  # fmt: skip
        series = PriceSeries.merge(series, detail)
    result = run_backtest(config, chosen, series, data_end=data_end, signals=signals)
    result.metrics["signals_source"] = source
    return result


def execute_backtest(
    store: ResearchStore,
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    backtest_id: str,
    *,
    run_id: str | None = None,
) -> BacktestOutputs:
    """Run a saved backtest over the lake and record the outcome in the store."""
    record = store.require_backtest(backtest_id)
    store.record_run(backtest_id, status="running", run_id=run_id)
    try:
        config = StrategyConfig.model_validate(record.config)
        dataset_markets = (
            set(store.require_dataset(config.dataset).market_ids) if config.dataset else None
        )
        result = compute_backtest(con, lake, config, dataset_markets)
        base = f"{BACKTESTS_DIR}/{backtest_id}"
        paths = {
            "trades": _write(con, lake, f"{base}/trades", result.trades),
            "equity": _write(con, lake, f"{base}/equity", result.equity),
            "decisions": _write(con, lake, f"{base}/decisions", _decisions(result)),
        }
        png = equity_png(result.equity, f"{backtest_id}: {config.exit_rule}")
        png_path = result_dir(lake, backtest_id) / "equity.png"
        png_path.write_bytes(png)
        paths["equity_png"] = png_path
    except Exception as exc:  # recorded for `backtest show`, then raised unchanged
        store.record_run(backtest_id, status="failed", run_id=run_id, error=str(exc))
        raise
    store.record_run(backtest_id, status="succeeded", run_id=run_id, metrics=result.metrics)
    return BacktestOutputs(store.require_backtest(backtest_id), result, paths, png)


def show_backtest(
    store: ResearchStore, lake: Lake, backtest_id: str, *, limit: int = 20
) -> dict[str, Any]:
    """Everything ``polymkt backtest show`` prints: config, metrics, trades, equity."""
    record = store.require_backtest(backtest_id)
    document = record.to_json()
    document["description"] = StrategyConfig.model_validate(record.config).describe()
    folder = result_dir(lake, backtest_id)
    trades_path, equity_path = folder / "trades.parquet", folder / "equity.parquet"
    document["trades"] = (
        pq.read_table(trades_path).slice(0, limit).to_pylist() if trades_path.exists() else []
    )
    document["equity"] = pq.read_table(equity_path).to_pylist() if equity_path.exists() else []
    document["files"] = {
        p.name: str(p) for p in sorted(folder.glob("*")) if p.suffix in {".parquet", ".png"}
    }
    return document
