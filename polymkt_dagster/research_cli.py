"""`polymkt datasets ...` and `polymkt backtest ...` (registered on the main CLI group).

Read verbs print exactly one JSON document with --json; messages go to stderr. Datasets and
backtests are stored in ``<data dir>/research.sqlite``; when a Dagster instance exists
(DAGSTER_HOME, or ./.dagster_home after `polymkt pipeline`), new ones are registered as
dynamic partitions so the UI can materialize them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError
from rich.table import Table as RichTable

from polymkt_dagster.lib.core.config import Settings
from polymkt_dagster.lib.core.terminal import SafeConsole, escape

err = SafeConsole(stderr=True)
out = SafeConsole(markup=False)  # tables of data: no markup in cells


def _cli() -> Any:
    from polymkt_dagster import cli  # imported late: cli.py imports this module

    return cli


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]


def _lake(settings: Settings) -> Any:
    from polymkt_dagster.lib.core.lake import Lake

    return Lake(settings.lake_dir, bucket_count=settings.bucket_count)


def _store(settings: Settings) -> Any:
    from polymkt_dagster.lib.research.research_store import ResearchStore

    return ResearchStore.in_data_dir(settings.data_dir)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Errors a user can fix become one red line and exit code 2, never a traceback."""
    from polymkt_dagster.lib.analytics.election_groups import OverridesFileError
    from polymkt_dagster.lib.research.backtest_runs import BacktestRunError
    from polymkt_dagster.lib.research.research_store import StoreError

    try:
        yield
    except (StoreError, BacktestRunError, OverridesFileError) as exc:
        _cli().fail(str(exc))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
        )
        _cli().fail(f"invalid options: {problems}")


@contextmanager
def _agent_client(settings: Settings) -> Iterator[Any]:
    """An OpenAI client from dagster-openai's OpenAIResource, or None without a key."""
    if not settings.openai_api_key:
        yield None
        return
    import dagster as dg
    from dagster_openai import OpenAIResource

    resource = OpenAIResource(
        api_key=settings.openai_api_key, base_url=settings.openai_base_url or None
    )
    with (
        dg.build_op_context(resources={"openai": resource}) as context,
        context.resources.openai.get_client(context) as client,
    ):
        yield client


def existing_instance() -> Any:
    """The instance at DAGSTER_HOME, or at ./.dagster_home once `polymkt pipeline` made it."""
    import dagster as dg

    from polymkt_dagster.pipeline import prepare_dagster_home

    home = os.environ.get("DAGSTER_HOME")
    if not home and Path(".dagster_home").is_dir():
        home = ".dagster_home"
    if not home:
        return None
    prepare_dagster_home(Path(home))
    return dg.DagsterInstance.get()


def _register(kind: str, key: str, *, remove: bool = False) -> None:
    instance = existing_instance()
    if instance is None:
        if not remove:
            err.print(
                f"[dim]No Dagster instance (DAGSTER_HOME unset): research_registry_sensor "
                f"adds the {kind} partition {escape(repr(key))} when Dagster runs.[/]"
            )
        return
    if remove:
        if instance.has_dynamic_partition(kind, key):
            instance.delete_dynamic_partition(kind, key)
        return
    if not instance.has_dynamic_partition(kind, key):
        instance.add_dynamic_partitions(kind, [key])
    err.print(f"Registered {kind} partition {escape(repr(key))} in the Dagster instance.")


def _show_interpretation(document: dict[str, Any]) -> None:
    err.print(f"Read by: {escape(document['source'])}")
    for label, key in (("understood", "understood"), ("assumed", "assumptions")):
        for line in document[key]:
            err.print(f"  [green]{label}:[/] {escape(line)}")
    for line in document["not_understood"]:
        err.print(f"  [bold yellow]not understood:[/] {escape(line)}")
    for line in document["warnings"]:
        err.print(f"  [yellow]warning:[/] {escape(line)}")


# ---- datasets -------------------------------------------------------------------------------


def _filter_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--query", default=None, help="Words that must all appear in the text."),
        click.option("--category", "categories", multiple=True, help="Category (repeat)."),
        click.option("--tag", "tags", multiple=True, help="Tag (repeat)."),
        click.option("--ends-after", default=None, help="End date on or after (ISO 8601)."),
        click.option("--ends-before", default=None, help="End date on or before (ISO 8601)."),
        click.option("--min-volume", type=float, default=None, help="USDC volume at least."),
        click.option("--max-volume", type=float, default=None, help="USDC volume at most."),
        click.option("--closed/--open", "closed", default=None, help="Closed or open markets."),
        click.option("--resolved/--unresolved", default=None, help="Resolved or not."),
        click.option("--neg-risk/--no-neg-risk", default=None, help="negRisk markets or not."),
        click.option("--market", "market_ids", multiple=True, help="Market id (repeat)."),
        click.option("--from-text", default=None, help="Describe the markets in words."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _filters(settings: Settings, options: dict[str, Any]) -> tuple[Any, dict[str, Any] | None]:
    """Filters from the options; --from-text goes through the dataset agent first and the
    explicit options override what it read."""
    from polymkt_dagster.lib.core.duck import connect
    from polymkt_dagster.lib.research.agents import interpret_dataset
    from polymkt_dagster.lib.research.datasets import DatasetFilters, vocabulary

    explicit = {
        key: (list(value) if isinstance(value, tuple) else value)
        for key, value in options.items()
        if key != "from_text" and value not in (None, ())
    }
    interpretation = None
    values: dict[str, Any] = {}
    if options.get("from_text"):
        with connect() as con:
            categories, tags = vocabulary(con, _lake(settings))
        with _agent_client(settings) as client:
            interpretation = interpret_dataset(
                options["from_text"], client=client, model=settings.openai_chat_model,
                categories=categories, tags=tags,
            )  # fmt: skip
        values = interpretation.value.model_dump(exclude_none=True)
    values.update(explicit)
    return DatasetFilters.model_validate(values), (
        interpretation.to_json() if interpretation else None
    )


def _dataset_document(record: Any, markets: Any, limit: int) -> dict[str, Any]:
    document = record.to_json(with_markets=False)
    document["markets"] = markets.slice(0, limit).to_pylist()
    return document


def _print_markets(title: str, rows: list[dict[str, Any]], total: int) -> None:
    view = RichTable(
        title=f"{title}: {total:,} markets" + (" (first shown)" if total > len(rows) else "")
    )
    for column in ("market_id", "question", "category", "end_date", "volume_usd", "status"):
        view.add_column(column)
    for row in rows:
        view.add_row(
            str(row["market_id"]),
            str(row["question"])[:60],
            str(row["category"] or ""),
            str(row["end_date"])[:10],
            f"{row['volume_usd'] or 0:,.0f}",
            str(row["status"]),
        )
    out.print(view)


@click.group()
def datasets() -> None:
    """Saved sets of markets (filters), each a dynamic partition of backtest/datasets."""


@datasets.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def datasets_list(ctx: click.Context, as_json: bool) -> None:
    """Every saved dataset with its filters and market count."""
    from polymkt_dagster.lib.research.datasets import DatasetFilters

    records = _store(_settings(ctx)).list_datasets()
    if as_json:
        _cli().emit_json({"datasets": [r.to_json(with_markets=False) for r in records]})
        return
    view = RichTable(title=f"{len(records)} datasets")
    for column in ("name", "markets", "filters", "updated"):
        view.add_column(column)
    for r in records:
        view.add_row(
            r.name,
            f"{len(r.market_ids):,}",
            DatasetFilters.model_validate(r.filters).describe(),
            r.updated_at,
        )
    out.print(view)


def _save_dataset_command(
    ctx: click.Context, name: str, *, create: bool, options: dict[str, Any], clear: tuple[str, ...],
    description: str | None, dry_run: bool, as_json: bool, limit: int,
) -> None:  # fmt: skip
    from polymkt_dagster.lib.core.duck import connect
    from polymkt_dagster.lib.research.datasets import merge_filters, resolve_markets, save_dataset
    from polymkt_dagster.lib.research.research_store import check_name

    settings = _settings(ctx)
    store, lake = _store(settings), _lake(settings)
    with _user_errors():
        check_name(name, "dataset")
        filters, interpretation = _filters(settings, options)
        if not create:
            current = store.require_dataset(name)
            filters = merge_filters(current.filters, filters, list(clear))
            description = description if description is not None else current.description
        if interpretation:
            _show_interpretation(interpretation)
        with connect() as con:
            if dry_run:
                markets = resolve_markets(con, lake, filters)
                document = {"name": name, "dry_run": True, "filters": filters.to_json(),
                            "market_count": markets.num_rows,
                            "markets": markets.slice(0, limit).to_pylist()}  # fmt: skip
            else:
                record, markets = save_dataset(
                    store, con, lake, name, filters, create=create, description=description,
                    prompt=options.get("from_text"),
                )  # fmt: skip
                document = _dataset_document(record, markets, limit)
    if interpretation:
        document["interpretation"] = interpretation
    if not dry_run and create:
        _register("datasets", name)
    if as_json:
        _cli().emit_json(document)
        return
    verb = "Would select" if dry_run else ("Created" if create else "Updated")
    err.print(f"{verb} dataset {escape(repr(name))}: {escape(filters.describe())}")
    _print_markets(name, document["markets"], markets.num_rows)


@datasets.command("create")
@click.argument("name")
@_filter_options
@click.option("--description", default=None, help="A note kept with the dataset.")
@click.option("--dry-run", is_flag=True, help="Show the markets without saving.")
@click.option("--limit", type=int, default=20, show_default=True, help="Markets shown.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def datasets_create(
    ctx: click.Context, name: str, description: str | None, dry_run: bool, limit: int,
    as_json: bool, **options: Any,
) -> None:  # fmt: skip
    """Save a dataset from filters and/or a sentence (--from-text)."""
    _save_dataset_command(
        ctx, name, create=True, options=options, clear=(), description=description,
        dry_run=dry_run, as_json=as_json, limit=limit,
    )  # fmt: skip


@datasets.command("update")
@click.argument("name")
@_filter_options
@click.option("--clear", multiple=True, help="Remove this filter (repeat).")
@click.option("--description", default=None, help="A note kept with the dataset.")
@click.option("--limit", type=int, default=20, show_default=True, help="Markets shown.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def datasets_update(
    ctx: click.Context, name: str, clear: tuple[str, ...], description: str | None, limit: int,
    as_json: bool, **options: Any,
) -> None:  # fmt: skip
    """Change a dataset's filters (given ones replace, --clear removes) and re-resolve it."""
    _save_dataset_command(
        ctx, name, create=False, options=options, clear=clear, description=description,
        dry_run=False, as_json=as_json, limit=limit,
    )  # fmt: skip


@datasets.command("show")
@click.argument("name")
@click.option("--limit", type=int, default=20, show_default=True, help="Markets shown.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def datasets_show(ctx: click.Context, name: str, limit: int, as_json: bool) -> None:
    """A dataset's filters and its stored market list."""
    from polymkt_dagster.lib.core.duck import connect
    from polymkt_dagster.lib.research.datasets import DatasetFilters, resolve_markets

    settings = _settings(ctx)
    with _user_errors():
        record = _store(settings).require_dataset(name)
        with connect() as con:
            # The stored list, with the details of each market from the lake.
            markets = resolve_markets(
                con, _lake(settings), DatasetFilters(market_ids=record.market_ids or ["-"])
            )
    document = _dataset_document(record, markets, limit)
    document["market_ids"] = record.market_ids
    if as_json:
        _cli().emit_json(document)
        return
    described = DatasetFilters.model_validate(record.filters).describe()
    err.print(f"Dataset {escape(repr(name))}: {escape(described)}")
    _print_markets(name, document["markets"], len(record.market_ids))


@datasets.command("delete")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def datasets_delete(ctx: click.Context, name: str, as_json: bool) -> None:
    """Delete a dataset, its market list file and its partition."""
    from polymkt_dagster.lib.research.datasets import dataset_table_name

    settings = _settings(ctx)
    with _user_errors():
        _store(settings).require_dataset(name)
        _store(settings).delete_dataset(name)
    path = _lake(settings).single_file(dataset_table_name(name))
    if path.exists():
        path.unlink()
    _register("datasets", name, remove=True)
    if as_json:
        _cli().emit_json({"deleted": name})
    else:
        err.print(f"Deleted dataset {escape(repr(name))}.")


# ---- backtests ------------------------------------------------------------------------------


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


def _metrics_view(metrics: dict[str, Any]) -> RichTable:
    from polymkt_dagster.lib.research.backtest import METRIC_LABELS, format_metric

    view = RichTable(title="metrics")
    view.add_column("metric")
    view.add_column("value", justify="right")
    for key, label in METRIC_LABELS.items():
        view.add_row(label, format_metric(key, metrics.get(key)))
    return view


@click.group()
def backtest() -> None:
    """Favorite backtests: create (prepare, shown for confirmation), run, show, list."""


@backtest.command("create")
@_strategy_options
@click.option("--id", "backtest_id", default=None, help="Backtest id (default: from the config).")
@click.option("--run", "run_now", is_flag=True, help="Run it right away (no confirmation).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def backtest_create(
    ctx: click.Context, backtest_id: str | None, run_now: bool, as_json: bool, **options: Any,
) -> None:  # fmt: skip
    """Prepare a backtest from options and/or a sentence; prints the config to confirm."""
    from polymkt_dagster.lib.research.agents import interpret_backtest
    from polymkt_dagster.lib.research.backtest import StrategyConfig
    from polymkt_dagster.lib.research.backtest_runs import prepare_backtest

    settings = _settings(ctx)
    store = _store(settings)
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
    with _user_errors():
        values: dict[str, Any] = {}
        if text:
            with _agent_client(settings) as client:
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
    _register("backtests", record.backtest_id)
    if run_now:
        _run_backtest(ctx, record.backtest_id, as_json=as_json, prepared=document)
        return
    if as_json:
        _cli().emit_json(document)
        return
    if interpretation:
        _show_interpretation(document["interpretation"])
    err.print(f"[bold]Prepared backtest {record.backtest_id}[/]")
    err.print(f"  {escape(config.describe())}")
    err.print(escape(json.dumps(config.model_dump(mode="json", exclude_none=True), indent=2)))
    err.print(f"Run it with: [bold]polymkt backtest run {record.backtest_id}[/]")


def _run_backtest(
    ctx: click.Context, backtest_id: str, *, as_json: bool, prepared: dict[str, Any] | None = None
) -> None:
    import dagster as dg

    from polymkt_dagster.pipeline import prepare_dagster_home
    from polymkt_dagster.research_runs import materialize_backtest

    settings = _settings(ctx)
    store = _store(settings)
    with _user_errors():
        store.require_backtest(backtest_id)
    instance = existing_instance()
    if instance is None:
        prepare_dagster_home(None)
        instance = dg.DagsterInstance.get()
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
        _cli().fail(f"backtest {backtest_id} failed: {message}", code=1)
        return
    document = _show_document(settings, backtest_id, limit=20)
    document["dagster_run_id"] = run_id
    if prepared is not None:
        document["prepared"] = prepared
    if as_json:
        _cli().emit_json(document)
        return
    _print_backtest(document)


def _show_document(settings: Settings, backtest_id: str, limit: int) -> dict[str, Any]:
    from polymkt_dagster.lib.research.backtest_runs import show_backtest
    from polymkt_dagster.lib.research.research_store import StoreError

    try:
        return show_backtest(_store(settings), _lake(settings), backtest_id, limit=limit)
    except StoreError as exc:
        _cli().fail(str(exc))
        raise


def _print_backtest(document: dict[str, Any]) -> None:
    err.print(
        f"[bold]{escape(document['backtest_id'])}[/] ({escape(document['status'])}): "
        f"{escape(document['description'])}"
    )
    if document.get("error"):
        err.print(f"[red]error:[/] {escape(document['error'])}")
    metrics = document.get("metrics")
    if metrics:
        out.print(_metrics_view(metrics))
        if metrics.get("sanity_warning"):
            err.print(f"[yellow]warning:[/] {escape(metrics['sanity_warning'])}")
    if document["trades"]:
        view = RichTable(title="trades (first shown)")
        for column in ("candidate", "entry", "price", "exit", "reason", "pnl"):
            view.add_column(column)
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
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def backtest_run(ctx: click.Context, backtest_id: str, as_json: bool) -> None:
    """Execute a prepared backtest through Dagster (it then shows in the UI)."""
    _run_backtest(ctx, backtest_id, as_json=as_json)


@backtest.command("show")
@click.argument("backtest_id")
@click.option("--limit", type=int, default=20, show_default=True, help="Trades shown.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def backtest_show(ctx: click.Context, backtest_id: str, limit: int, as_json: bool) -> None:
    """Config, metrics, trades and equity curve of a backtest."""
    document = _show_document(_settings(ctx), backtest_id, limit)
    if as_json:
        _cli().emit_json(document)
    else:
        _print_backtest(document)


@backtest.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def backtest_list(ctx: click.Context, as_json: bool) -> None:
    """Every saved backtest with its status and headline metrics."""
    from polymkt_dagster.lib.research.backtest import StrategyConfig, format_metric

    records = _store(_settings(ctx)).list_backtests()
    if as_json:
        _cli().emit_json({"backtests": [r.to_json() for r in records]})
        return
    view = RichTable(title=f"{len(records)} backtests")
    for column in ("id", "status", "strategy", "trades", "total return", "sharpe", "last run"):
        view.add_column(column)
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
