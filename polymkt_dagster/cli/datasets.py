"""`polymkt datasets list | create | update | show | delete`: saved sets of markets.

A dataset is a set of filters (or a sentence the dataset agent reads) resolved to a market
list; each is a dynamic partition of backtest/datasets (see cli/research_common.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from polymkt_dagster.cli.common import (
    JSON_OPTION,
    emit_json,
    err,
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
            categories, tags = vocabulary(con, lake_of(settings))
        with agent_client(settings) as client:
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
    view = rich_table(
        f"{title}: {total:,} markets" + (" (first shown)" if total > len(rows) else ""),
        ["market_id", "question", "category", "end_date", "volume_usd", "status"],
    )
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
@JSON_OPTION
@click.pass_context
def datasets_list(ctx: click.Context, as_json: bool) -> None:
    """Every saved dataset with its filters and market count."""
    from polymkt_dagster.lib.research.datasets import DatasetFilters

    records = research_store(settings_of(ctx)).list_datasets()
    if as_json:
        emit_json({"datasets": [r.to_json(with_markets=False) for r in records]})
        return
    view = rich_table(f"{len(records)} datasets", ["name", "markets", "filters", "updated"])
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

    settings = settings_of(ctx)
    store, lake = research_store(settings), lake_of(settings)
    with user_errors():
        check_name(name, "dataset")
        filters, interpretation = _filters(settings, options)
        if not create:
            current = store.require_dataset(name)
            filters = merge_filters(current.filters, filters, list(clear))
            description = description if description is not None else current.description
        if interpretation:
            show_interpretation(interpretation)
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
        register_partition("datasets", name)
    if as_json:
        emit_json(document)
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
@JSON_OPTION
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
@JSON_OPTION
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
@JSON_OPTION
@click.pass_context
def datasets_show(ctx: click.Context, name: str, limit: int, as_json: bool) -> None:
    """A dataset's filters and its stored market list."""
    from polymkt_dagster.lib.core.duck import connect
    from polymkt_dagster.lib.research.datasets import DatasetFilters, resolve_markets

    settings = settings_of(ctx)
    with user_errors():
        record = research_store(settings).require_dataset(name)
        with connect() as con:
            # The stored list, with the details of each market from the lake.
            markets = resolve_markets(
                con, lake_of(settings), DatasetFilters(market_ids=record.market_ids or ["-"])
            )
    document = _dataset_document(record, markets, limit)
    document["market_ids"] = record.market_ids
    if as_json:
        emit_json(document)
        return
    described = DatasetFilters.model_validate(record.filters).describe()
    err.print(f"Dataset {escape(repr(name))}: {escape(described)}")
    _print_markets(name, document["markets"], len(record.market_ids))


@datasets.command("delete")
@click.argument("name")
@JSON_OPTION
@click.pass_context
def datasets_delete(ctx: click.Context, name: str, as_json: bool) -> None:
    """Delete a dataset, its market list file and its partition."""
    from polymkt_dagster.lib.research.datasets import dataset_table_name

    settings = settings_of(ctx)
    with user_errors():
        research_store(settings).require_dataset(name)
        research_store(settings).delete_dataset(name)
    path = lake_of(settings).single_file(dataset_table_name(name))
    if path.exists():
        path.unlink()
    register_partition("datasets", name, remove=True)
    if as_json:
        emit_json({"deleted": name})
    else:
        err.print(f"Deleted dataset {escape(repr(name))}.")
