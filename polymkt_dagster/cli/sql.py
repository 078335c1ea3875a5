"""`polymkt sql | ask`: one guarded, read-only query over the rollup tables, written by hand
or planned from a question in plain English.

Both run through lib/serving/sql_guard.py on DuckDB or, when enabled, ClickHouse. Every
failure of the query (refused, too slow, too big, ClickHouse unreachable) is one line and
exit code 2: the query or the serving settings must change (see cli/common.py).
"""

from __future__ import annotations

import logging
from typing import Any

import click

from polymkt_dagster.cli.common import (
    JSON_OPTION,
    emit_json,
    err,
    fail,
    lake_of,
    print_rows,
    settings_of,
)
from polymkt_dagster.lib.core.config import Settings
from polymkt_dagster.lib.core.terminal import escape


def _engine(settings: Settings) -> tuple[str, Any]:
    if not settings.clickhouse_enabled:
        return "duckdb", None
    from polymkt_dagster.lib.serving.clickhouse import get_client

    # the driver logs its own connection errors to stderr; the one-line error below says it
    logging.getLogger("clickhouse_connect").setLevel(logging.CRITICAL)
    try:
        client = get_client(
            settings.resolved_clickhouse_dsn,
            user=settings.clickhouse_user,
            password=settings.clickhouse_password,
            read_only=True,
        )
    except Exception as exc:  # unreachable server, chdb path in use: one line, no trace
        fail(f"ClickHouse is not available: {_one_line(exc)} (check POLYMKT_CLICKHOUSE_DSN, "
              "or set POLYMKT_CLICKHOUSE_ENABLED=false to query the lake with DuckDB)")  # fmt: skip
    return "clickhouse", client


def _one_line(exc: BaseException) -> str:
    from polymkt_dagster.lib.serving.clickhouse import ClickHouseError

    if isinstance(exc, ClickHouseError):
        return str(exc).splitlines()[0][:300]
    # driver messages may echo a DSN with credentials: keep only the kind of failure
    return type(exc).__name__


def _limits(settings: Settings, max_rows: int, timeout_s: float | None) -> tuple[int, float]:
    from polymkt_dagster.lib.serving.sql_guard import QueryLimitError, validate_max_rows
    from polymkt_dagster.lib.serving.sql_runner import validate_timeout

    # sqlglot warns about the user's SQL on stderr; the guard's one-line verdict says enough
    logging.getLogger("sqlglot").setLevel(logging.ERROR)

    try:
        timeout = validate_timeout(settings.sql_timeout_s if timeout_s is None else timeout_s)
    except QueryLimitError as exc:
        fail(f"{exc} (--timeout or POLYMKT_SQL_TIMEOUT_S)")
    try:
        rows = validate_max_rows(max_rows)
    except QueryLimitError as exc:
        fail(f"{exc} (--max-rows)")
    return rows, timeout


def _run_sql(settings: Settings, sql: str, max_rows: int, timeout_s: float) -> Any:
    from polymkt_dagster.lib.serving.sql_guard import QueryLimitError, SqlRefused
    from polymkt_dagster.lib.serving.sql_runner import QueryFailed, QueryTimeout, run_guarded

    engine, client = _engine(settings)
    try:
        return run_guarded(
            sql, lake=lake_of(settings), engine=engine, clickhouse_client=client,
            max_rows=max_rows, timeout_s=timeout_s, memory_limit=settings.sql_memory_limit,
        )  # fmt: skip
    except SqlRefused as exc:
        fail(f"refused: {exc.reason}")
    except QueryLimitError as exc:
        fail(f"{exc} (POLYMKT_SQL_MEMORY_LIMIT)")
    except (QueryTimeout, QueryFailed) as exc:
        fail(str(exc))
    except Exception as exc:  # an engine or connection error: say what, not a trace
        fail(f"query failed on {engine}: {_one_line(exc)}")


def _print_result(result: Any, as_json: bool, extra: dict[str, Any]) -> None:
    if as_json:
        emit_json({**extra, "sql": result.sql, "engine": result.engine, "notes": result.notes,
               "columns": result.columns, "rows": result.rows,
               "seconds": round(result.seconds, 4)})  # fmt: skip
        return
    for note in result.notes:
        err.print(f"[dim]{escape(note)}[/]")
    err.print(f"[dim]{escape(result.sql)}[/]")
    print_rows(result.rows, result.columns, f"{len(result.rows)} rows ({result.engine})")


_TIMEOUT_HELP = "Seconds before the query is stopped (default: POLYMKT_SQL_TIMEOUT_S, 30)."


@click.command()
@click.argument("query")
@click.option("--max-rows", type=int, default=1000, show_default=True)
@click.option("--timeout", "timeout_s", type=float, default=None, help=_TIMEOUT_HELP)
@JSON_OPTION
@click.pass_context
def sql(
    ctx: click.Context, query: str, max_rows: int, timeout_s: float | None, as_json: bool
) -> None:
    """Run one guarded, read-only SELECT over the rollup tables."""
    settings = settings_of(ctx)
    max_rows, timeout = _limits(settings, max_rows, timeout_s)
    result = _run_sql(settings, query, max_rows, timeout)
    _print_result(result, as_json, {})


@click.command()
@click.argument("question")
@click.option("--max-rows", type=int, default=100, show_default=True)
@click.option("--timeout", "timeout_s", type=float, default=None, help=_TIMEOUT_HELP)
@JSON_OPTION
@click.pass_context
def ask(
    ctx: click.Context, question: str, max_rows: int, timeout_s: float | None, as_json: bool
) -> None:
    """Answer a question in plain English with guarded SQL over the rollups."""
    from polymkt_dagster.lib.serving.ask import AskError, plan_question, plan_to_dict

    settings = settings_of(ctx)
    max_rows, timeout = _limits(settings, max_rows, timeout_s)
    engine, _ = _engine(settings)
    try:
        plan = plan_question(
            question,
            api_key=settings.openai_api_key,
            base_url=settings.openai_base_url,
            model=settings.openai_chat_model,
            dialect="clickhouse" if engine == "clickhouse" else "duckdb",
        )
    except AskError as exc:
        fail(str(exc))
    err.print(f"[dim]SQL ({escape(plan.source)}): {escape(plan.sql)}[/]")
    result = _run_sql(settings, plan.sql, max_rows, timeout)
    _print_result(result, as_json, {"plan": plan_to_dict(plan)})
