"""`polymkt backtest create | run | show | list`: favorite backtests from the command line.

`create` prepares a backtest (from options and/or a sentence) and shows its config; `run`
executes it as a Dagster run (cli/runs.py), so it shows in the UI with its metrics.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from polymkt_dagster.cli.common import (
    EXIT_FAILED,
    JSON_OPTION,
    emit_json,
    err,
    fail,
    lake_of,
    out,
    rich_table,
    settings_of,
)
from polymkt_dagster.cli.research_common import (
    agent_client,
    register_partition,
    research_store,
    show_interpretation,
    user_errors,
)
from polymkt_dagster.lib.core.config import Settings
from polymkt_dagster.lib.core.terminal import escape

_STRATEGY_OPTIONS: list[tuple[str, str, type, str]] = [
    ("--days-before", "days_before", int, "Enter N days before the group's end."),
    ("--min-price", "min_price", float, "Only favorites priced at least this."),
    ("--max-price", "max_price", float, "Only favorites priced at most this."),
    ("--min-margin", "min_margin", float, "Minimum lead over the runner-up."),
    ("--max-price-age-days", "max_price_age_days", float, "Skip stale last prices."),
    ("--take-profit", "take_profit", float, "Sell at this Yes price or above."),
    ("--stop-loss", "stop_loss", float, "Sell at this Yes price or below."),
    ("--stake", "stake", float, "USDC per trade (fixed sizing)."),
    ("--fraction", "fraction", float, "Fraction of equity per trade (fraction sizing)."),
    ("--capital", "initial_capital", float, "Starting USDC."),
    ("--fee-bps", "fee_bps", float, "Fee on each buy and sale, bps."),
    ("--slippage-bps", "slippage_bps", float, "Slippage in bps."),
    ("--slippage-ticks", "slippage_ticks", int, "Slippage in ticks."),
    ("--tick-size", "tick_size", float, "Tick size for --slippage-ticks."),
    ("--dataset", "dataset", str, "Only groups with a market in this dataset."),
    ("--risk-free-rate", "risk_free_rate", float, "Annual risk-free rate for Sharpe."),
]


def _strategy_options(command: Callable[..., Any]) -> Callable[..., Any]:
    extra = [
        click.option("--group", "group_ids", multiple=True, help="Only this group (repeat)."),
        click.option(
            "--include-unresolved",
            is_flag=True,
            default=None,
            help="Also enter groups that never resolved (sold at their last price).",
        ),
        click.option("--from-text", default=None, help="Describe the strategy in words."),
    ]
    for flag, dest, kind, text in reversed(_STRATEGY_OPTIONS):
        command = click.option(flag, dest, type=kind, default=None, help=text)(command)
    for option in reversed(extra):
        command = option(command)
    return command


def _print_metrics(metrics: dict[str, Any]) -> None:
    from polymkt_dagster.lib.research.backtest import METRIC_LABELS, format_metric

    view = rich_table("metrics", ["metric"])
    view.add_column("value", justify="right")
    for key, label in METRIC_LABELS.items():
        view.add_row(label, format_metric(key, metrics.get(key)))
    out.print(view)


@click.group()
def backtest() -> None:
    """Favorite backtests: create (prepare, shown for confirmation), run, show, list."""


@backtest.command("create")
@_strategy_options
@click.option("--id", "backtest_id", default=None, help="Backtest id (default: from the config).")
@click.option("--run", "run_now", is_flag=True, help="Run it right away (no confirmation).")
@JSON_OPTION
@click.pass_context
def backtest_create(
    ctx: click.Context, backtest_id: str | None, run_now: bool, as_json: bool, **options: Any,
) -> None:  # fmt: skip
    """Prepare a backtest from options and/or a sentence; prints the config to confirm."""
    from polymkt_dagster.lib.research.agents import interpret_backtest
    from polymkt_dagster.lib.research.backtest import StrategyConfig
    from polymkt_dagster.lib.research.backtest_runs import prepare_backtest

    settings = settings_of(ctx)
    store = research_store(settings)
    text = options.pop("from_text")
    include_unresolved = options.pop("include_unresolved")
    explicit = {
        key: (list(value) if isinstance(value, tuple) else value)
        for key, value in options.items()
        if value not in (None, ())
    }
    if "fraction" in explicit:
        explicit["sizing"] = "fraction"
    elif "stake" in explicit:
        explicit["sizing"] = "fixed"
    if include_unresolved:
        explicit["require_resolved"] = False
    interpretation = None
    with user_errors():
        values: dict[str, Any] = {}
        if text:
            with agent_client(settings) as client:
                interpretation = interpret_backtest(
                    text, client=client, model=settings.openai_chat_model,
                    datasets=[d.name for d in store.list_datasets()],
                )  # fmt: skip
            values = interpretation.value.model_dump(exclude_defaults=True)
        values.update(explicit)
        config = StrategyConfig.model_validate(values)
        record = prepare_backtest(store, config, backtest_id=backtest_id, prompt=text)
    document = record.to_json()
    document["description"] = config.describe()
    if interpretation:
        document["interpretation"] = interpretation.to_json()
    register_partition("backtests", record.backtest_id)
    if run_now:
        _run_backtest(ctx, record.backtest_id, as_json=as_json, prepared=document)
        return
    if as_json:
        emit_json(document)
        return
    if interpretation:
        show_interpretation(document["interpretation"])
    err.print(f"[bold]Prepared backtest {record.backtest_id}[/]")
    err.print(f"  {escape(config.describe())}")
    err.print(escape(json.dumps(config.model_dump(mode="json", exclude_none=True), indent=2)))
    err.print(f"Run it with: [bold]polymkt backtest run {record.backtest_id}[/]")


def _run_backtest(
    ctx: click.Context, backtest_id: str, *, as_json: bool, prepared: dict[str, Any] | None = None
) -> None:
    from polymkt_dagster.cli.dagster_home import instance_for_runs
    from polymkt_dagster.cli.runs import materialize_backtest

    settings = settings_of(ctx)
    store = research_store(settings)
    with user_errors():
        store.require_backtest(backtest_id)
    instance = instance_for_runs()
    err.print(
        f"Running backtest {escape(backtest_id)} (Dagster instance "
        f"{escape(instance.root_directory)}) …"
    )
    try:
        result = materialize_backtest(settings, backtest_id, instance)
        run_id = result.run_id
    except Exception as exc:
        record = store.get_backtest(backtest_id)
        message = (record.error if record and record.error else None) or str(exc)
        fail(f"backtest {backtest_id} failed: {message}", EXIT_FAILED)
    document = _show_document(settings, backtest_id, limit=20)
    document["dagster_run_id"] = run_id
    if prepared is not None:
        document["prepared"] = prepared
    if as_json:
        emit_json(document)
        return
    _print_backtest(document)


def _show_document(settings: Settings, backtest_id: str, limit: int) -> dict[str, Any]:
    from polymkt_dagster.lib.research.backtest_runs import show_backtest
    from polymkt_dagster.lib.research.research_store import StoreError

    try:
        return show_backtest(research_store(settings), lake_of(settings), backtest_id, limit=limit)
    except StoreError as exc:
        fail(str(exc))


def _print_backtest(document: dict[str, Any]) -> None:
    err.print(
        f"[bold]{escape(document['backtest_id'])}[/] ({escape(document['status'])}): "
        f"{escape(document['description'])}"
    )
    if document.get("error"):
        err.print(f"[red]error:[/] {escape(document['error'])}")
    metrics = document.get("metrics")
    if metrics:
        _print_metrics(metrics)
        if metrics.get("sanity_warning"):
            err.print(f"[yellow]warning:[/] {escape(metrics['sanity_warning'])}")
    if document["trades"]:
        columns = ["candidate", "entry", "price", "exit", "reason", "pnl"]
        view = rich_table("trades (first shown)", columns)
        for t in document["trades"]:
            view.add_row(
                str(t["candidate"])[:30], str(t["entry_time"])[:16], f"{t['entry_price']:.3f}",
                str(t["exit_time"])[:16], t["exit_reason"], f"{t['pnl']:,.2f}",
            )  # fmt: skip
        out.print(view)
    if document["equity"]:
        first, last = document["equity"][0], document["equity"][-1]
        err.print(
            f"Equity {first['equity']:,.2f} on {str(first['day'])[:10]} -> {last['equity']:,.2f} "
            f"on {str(last['day'])[:10]} ({len(document['equity'])} daily points)"
        )
    for name, path in document.get("files", {}).items():
        err.print(f"  {name}: {path}")


@backtest.command("run")
@click.argument("backtest_id")
@JSON_OPTION
@click.pass_context
def backtest_run(ctx: click.Context, backtest_id: str, as_json: bool) -> None:
    """Execute a prepared backtest through Dagster (it then shows in the UI)."""
    _run_backtest(ctx, backtest_id, as_json=as_json)


@backtest.command("show")
@click.argument("backtest_id")
@click.option("--limit", type=int, default=20, show_default=True, help="Trades shown.")
@JSON_OPTION
@click.pass_context
def backtest_show(ctx: click.Context, backtest_id: str, limit: int, as_json: bool) -> None:
    """Config, metrics, trades and equity curve of a backtest."""
    document = _show_document(settings_of(ctx), backtest_id, limit)
    if as_json:
        emit_json(document)
    else:
        _print_backtest(document)


@backtest.command("list")
@JSON_OPTION
@click.pass_context
def backtest_list(ctx: click.Context, as_json: bool) -> None:
    """Every saved backtest with its status and headline metrics."""
    from polymkt_dagster.lib.research.backtest import StrategyConfig, format_metric

    records = research_store(settings_of(ctx)).list_backtests()
    if as_json:
        emit_json({"backtests": [r.to_json() for r in records]})
        return
    columns = ["id", "status", "strategy", "trades", "total return", "sharpe", "last run"]
    view = rich_table(f"{len(records)} backtests", columns)
    for r in records:
        metrics = r.metrics or {}
        view.add_row(
            r.backtest_id, r.status, StrategyConfig.model_validate(r.config).describe()[:70],
            str(metrics.get("trades", "")),
            format_metric("total_return", metrics.get("total_return")) if metrics else "",
            format_metric("sharpe", metrics.get("sharpe")) if metrics else "",
            r.last_run_at or "",
        )  # fmt: skip
    out.print(view)
