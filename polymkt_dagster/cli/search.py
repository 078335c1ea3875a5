"""`polymkt search`: find markets by words (BM25, semantic or hybrid) in the catalog.

Its own module so the verb loads only the search code: no Dagster, no OpenAI client unless
the query needs embeddings from a provider, no pandas or pyarrow.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from polymkt_dagster.cli.common import JSON_OPTION, settings_of


@click.command()
@click.argument("query")
@click.option("--mode", type=click.Choice(["bm25", "semantic", "hybrid"]), default="hybrid")
@click.option("--category", default=None, help="Only this category (any case).")
@click.option("--closed/--open", "closed", default=None, help="Only closed / only open markets.")
@click.option("--min-volume", type=float, default=None, help="Only markets with this volume.")
@click.option("--limit", type=int, default=10, show_default=True)
@JSON_OPTION
@click.pass_context
def search(ctx: click.Context, query: str, as_json: bool, **options: Any) -> None:
    """Find markets by words: BM25, semantic or hybrid (score fusion); hybrid is the default."""
    from polymkt_dagster.lib.search import run_search_command

    settings = settings_of(ctx)
    with duckdb_without_pandas():
        result = run_search_command(
            settings.catalog_path,
            query,
            as_json=as_json,
            api_key=settings.openai_api_key,
            base_url=settings.openai_base_url,
            embedding_model=settings.openai_embedding_model,
            **options,
        )
    if result.stdout:
        click.echo(result.stdout)
    if result.stderr:
        click.echo(result.stderr, err=True)
    ctx.exit(result.exit_code)


@contextmanager
def duckdb_without_pandas() -> Iterator[None]:
    """DuckDB's Python client imports pandas (and with it pyarrow: 0.5-0.9 s, most of a
    search's start-up) before it binds the first query parameter, only to recognise pandas
    values among the parameters (duckdb/duckdb#18658). Search binds plain strings and numbers
    and reads plain rows, so while it runs pandas is reported absent, as in an install
    without pandas, which DuckDB supports. A process that already loaded pandas keeps it."""
    if "pandas" in sys.modules:
        yield
        return
    sys.modules["pandas"] = None  # type: ignore[assignment]  # `import pandas` raises
    try:
        yield
    finally:
        if sys.modules.get("pandas", False) is None:
            del sys.modules["pandas"]
