"""`polymkt wallet | watchlists | alerts | sql | ask`: wallet tracking and guarded analytics.

Registered on the main group by cli.py (``main.add_command``). Every read verb takes
--json and then prints exactly one JSON document on stdout; messages go to stderr.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click
from rich.table import Table as RichTable

from polymkt_dagster.lib.core.config import Settings
from polymkt_dagster.lib.core.terminal import SafeConsole, escape

err = SafeConsole(stderr=True)


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _emit(document: Any) -> None:
    click.echo(json.dumps(_plain(document), indent=2, default=str))


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    sys.exit(code)


def _lake(settings: Settings):
    from polymkt_dagster.lib.core.lake import Lake

    return Lake(settings.lake_dir, bucket_count=settings.bucket_count)


def _table(rows: list[dict[str, Any]], columns: list[str], title: str) -> None:
    view = RichTable(title=title)
    for column in columns:
        view.add_column(column)
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            cells.append(f"{value:,.4f}" if isinstance(value, float) else str(value))
        view.add_row(*cells)
    SafeConsole(markup=False).print(view)


# ---- wallet -------------------------------------------------------------------------------


@click.command()
@click.argument("address")
@click.argument("view", type=click.Choice(["positions", "pnl", "trades"]), default="positions")
@click.option("--all", "include_closed", is_flag=True, help="positions: closed ones too.")
@click.option("--limit", type=int, default=50, show_default=True, help="trades: how many.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def wallet(
    ctx: click.Context, address: str, view: str, include_closed: bool, limit: int, as_json: bool
) -> None:
    """A wallet's positions, P&L or own fills (average-cost accounting)."""
    from polymkt_dagster.lib.core.duck import connect
    from polymkt_dagster.lib.wallets.positions import compute_positions
    from polymkt_dagster.lib.wallets.watchlists import WatchlistError, normalize_address

    settings = _settings(ctx)
    try:
        address = normalize_address(address, "ADDRESS")
    except WatchlistError as exc:
        _fail(str(exc))
    lake = _lake(settings)
    with connect() as con:
        if view == "trades":
            from polymkt_dagster.lib.core.schemas import TRADES

            rows = (
                con.execute(
                    f'SELECT "timestamp", market_id, outcome, maker_direction AS side, price, '
                    f"token_amount AS shares, usd_amount, fee, order_fill_id "
                    f"FROM {lake.scan_sql(TRADES)} WHERE maker = $w "
                    f'ORDER BY "timestamp" DESC, order_fill_id LIMIT {int(limit)}',
                    {"w": address},
                )
                .to_arrow_table()
                .to_pylist()
            )
            if as_json:
                _emit({"wallet": address, "count": len(rows), "trades": rows})
            else:
                _table(rows, ["timestamp", "market_id", "outcome", "side", "price", "shares",
                              "usd_amount"], f"{address}: {len(rows)} fills")  # fmt: skip
            return
        positions = compute_positions(con, lake, wallets=[address])
    assert positions is not None
    rows = positions.to_pylist()
    totals = {
        key: sum(r[key] or 0.0 for r in rows)
        for key in (
            "realized_pnl",
            "unrealized_pnl",
            "total_pnl",
            "exposure",
            "oversold_shares",
            "oversold_proceeds",
        )
    }
    totals.update(
        {
            "positions": len(rows),
            "open_positions": sum(r["status"] == "open" for r in rows),
            "redeemable_positions": sum(r["status"] == "redeemable" for r in rows),
            "fills": sum(r["buys"] + r["sells"] for r in rows),
        }
    )
    if view == "pnl":
        by_market: dict[str, dict[str, Any]] = {}
        for r in rows:
            m = by_market.setdefault(
                r["market_id"] or "?",
                {"market_id": r["market_id"], "realized_pnl": 0.0, "unrealized_pnl": 0.0,
                 "total_pnl": 0.0},
            )  # fmt: skip
            for key in ("realized_pnl", "unrealized_pnl", "total_pnl"):
                m[key] += r[key] or 0.0
        markets = sorted(by_market.values(), key=lambda m: -m["total_pnl"])
        if as_json:
            _emit({"wallet": address, "totals": totals, "markets": markets})
        else:
            _table(markets, ["market_id", "realized_pnl", "unrealized_pnl", "total_pnl"],
                   f"{address}: total P&L {totals['total_pnl']:,.2f}")  # fmt: skip
        return
    # a resolved position still held is worth its payout until redeemed: shown with the open
    shown = rows if include_closed else [r for r in rows if r["status"] != "closed"]
    if as_json:
        _emit({"wallet": address, "totals": totals, "positions": shown})
    else:
        _table(shown, ["market_id", "outcome", "status", "shares", "avg_price", "mark_price",
                       "unrealized_pnl", "realized_pnl"],
               f"{address}: {len(shown)} positions, P&L {totals['total_pnl']:,.2f}")  # fmt: skip


# ---- watchlists ---------------------------------------------------------------------------


def _store(settings: Settings):
    from polymkt_dagster.lib.wallets.watchlists import WatchlistStore

    return WatchlistStore.for_data_dir(settings.data_dir, settings.resolved_watchlists_file)


@click.group()
def watchlists() -> None:
    """Watchlists: static ones (YAML) and CLI-managed ones (SQLite in the data dir)."""


def _run_watchlist_command(ctx: click.Context, as_json: bool, action: Any) -> None:
    from polymkt_dagster.lib.wallets.watchlists import WatchlistError

    try:
        result = action(_store(_settings(ctx)))
    except WatchlistError as exc:
        _fail(str(exc))
    if as_json:
        _emit(result)
    else:
        err.print(json.dumps(_plain(result), indent=2))


@watchlists.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def watchlists_list(ctx: click.Context, as_json: bool) -> None:
    """Every watchlist with its wallets and alert rules."""
    from polymkt_dagster.lib.wallets.watchlists import WatchlistError

    try:
        lists = _store(_settings(ctx)).all()
    except WatchlistError as exc:
        _fail(str(exc))
    if as_json:
        _emit({"watchlists": [w.to_dict() for w in lists]})
        return
    _table(
        [{"name": w.name, "source": w.source, "wallets": len(w.wallets),
          "alert_min_usd": w.alert_min_usd, "cooldown_minutes": w.cooldown_minutes}
         for w in lists],
        ["name", "source", "wallets", "alert_min_usd", "cooldown_minutes"],
        f"{len(lists)} watchlists",
    )  # fmt: skip


@watchlists.command("create")
@click.argument("name")
@click.argument("addresses", nargs=-1)
@click.option("--alert-min-usd", type=float, default=1000.0, show_default=True)
@click.option("--cooldown-minutes", type=float, default=60.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def watchlists_create(
    ctx: click.Context,
    name: str,
    addresses: tuple[str, ...],
    alert_min_usd: float,
    cooldown_minutes: float,
    as_json: bool,
) -> None:
    """Create a watchlist (optionally with wallets)."""
    _run_watchlist_command(
        ctx,
        as_json,
        lambda store: store.create(
            name,
            alert_min_usd=alert_min_usd,
            cooldown_minutes=cooldown_minutes,
            wallets=[(a, None) for a in addresses],
        ).to_dict(),
    )


@watchlists.command("add")
@click.argument("name")
@click.argument("address")
@click.option("--label", default=None)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def watchlists_add(
    ctx: click.Context, name: str, address: str, label: str | None, as_json: bool
) -> None:
    """Add a wallet to a watchlist."""
    _run_watchlist_command(ctx, as_json, lambda store: store.add(name, address, label).to_dict())


@watchlists.command("remove")
@click.argument("name")
@click.argument("address")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def watchlists_remove(ctx: click.Context, name: str, address: str, as_json: bool) -> None:
    """Remove a wallet from a watchlist."""
    _run_watchlist_command(ctx, as_json, lambda store: store.remove(name, address).to_dict())


@watchlists.command("delete")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def watchlists_delete(ctx: click.Context, name: str, as_json: bool) -> None:
    """Delete a CLI-managed watchlist."""

    def action(store: Any) -> dict[str, Any]:
        store.delete(name)
        return {"deleted": name}

    _run_watchlist_command(ctx, as_json, action)


@watchlists.command("suggest")
@click.option("--since", default=None, help="Window start (ISO date/time); default: all.")
@click.option("--until", default=None, help="Window end; default: everything in the lake.")
@click.option("--min-trades", type=int, default=10, show_default=True)
@click.option("--min-win-rate", type=float, default=0.0, show_default=True)
@click.option("--top", type=int, default=20, show_default=True)
@click.option("--save", "save_as", default=None, help="Also save the list under this name.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def watchlists_suggest(
    ctx: click.Context,
    since: str | None,
    until: str | None,
    min_trades: int,
    min_win_rate: float,
    top: int,
    save_as: str | None,
    as_json: bool,
) -> None:
    """The most profitable wallets over a window (realized P&L without oversold proceeds,
    win rate)."""
    from polymkt_dagster.lib.core.duck import connect
    from polymkt_dagster.lib.serving.queries import QueryError, parse_when
    from polymkt_dagster.lib.wallets.watchlists import (
        SuggestOptions,
        WatchlistError,
        suggest_wallets,
    )

    settings = _settings(ctx)
    try:
        options = SuggestOptions(
            since=parse_when(since), until=parse_when(until), min_trades=min_trades,
            min_win_rate=min_win_rate, top=top,
        )  # fmt: skip
    except QueryError as exc:
        _fail(str(exc))
    with connect() as con:
        rows = suggest_wallets(con, _lake(settings), options).to_pylist()
    saved = None
    if save_as:
        try:
            saved = (
                _store(settings)
                .create(save_as, wallets=[(r["wallet"], f"suggested #{i + 1}")
                                          for i, r in enumerate(rows)])
                .to_dict()
            )  # fmt: skip
        except WatchlistError as exc:
            _fail(str(exc))
    if as_json:
        _emit({"options": options.__dict__, "wallets": rows, "saved": saved})
        return
    _table(rows, ["wallet", "realized_pnl", "oversold_proceeds", "win_rate",
                  "positions_realized", "fills"], f"{len(rows)} suggested wallets")  # fmt: skip


# ---- alerts -------------------------------------------------------------------------------


@click.command()
@click.option("--since", default=None, help="Only alerts at or after this time (ISO).")
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def alerts(ctx: click.Context, since: str | None, limit: int, as_json: bool) -> None:
    """Alerts raised for watched wallets, newest first."""
    from polymkt_dagster.lib.serving.queries import QueryError, parse_when
    from polymkt_dagster.lib.wallets.alerts import list_alerts

    try:
        when = parse_when(since)
    except QueryError as exc:
        _fail(str(exc))
    rows = list_alerts(_lake(_settings(ctx)), since=when, limit=limit)
    if as_json:
        _emit({"since": when, "count": len(rows), "alerts": rows})
        return
    _table(rows, ["alerted_at", "wallet", "market_id", "side", "size_usd", "price"],
           f"{len(rows)} alerts")  # fmt: skip


# ---- sql / ask ----------------------------------------------------------------------------


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
        _fail(f"ClickHouse is not available: {_one_line(exc)} (check POLYMKT_CLICKHOUSE_DSN, "
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
        _fail(f"{exc} (--timeout or POLYMKT_SQL_TIMEOUT_S)")
    try:
        rows = validate_max_rows(max_rows)
    except QueryLimitError as exc:
        _fail(f"{exc} (--max-rows)")
    return rows, timeout


def _run_sql(settings: Settings, sql: str, max_rows: int, timeout_s: float) -> Any:
    from polymkt_dagster.lib.serving.sql_guard import QueryLimitError, SqlRefused
    from polymkt_dagster.lib.serving.sql_runner import QueryFailed, QueryTimeout, run_guarded

    engine, client = _engine(settings)
    try:
        return run_guarded(
            sql, lake=_lake(settings), engine=engine, clickhouse_client=client,
            max_rows=max_rows, timeout_s=timeout_s, memory_limit=settings.sql_memory_limit,
        )  # fmt: skip
    except SqlRefused as exc:
        _fail(f"refused: {exc.reason}")
    except QueryLimitError as exc:
        _fail(f"{exc} (POLYMKT_SQL_MEMORY_LIMIT)")
    except (QueryTimeout, QueryFailed) as exc:
        _fail(str(exc))
    except Exception as exc:  # an engine or connection error: say what, not a trace
        _fail(f"query failed on {engine}: {_one_line(exc)}")


def _print_result(result: Any, as_json: bool, extra: dict[str, Any]) -> None:
    if as_json:
        _emit({**extra, "sql": result.sql, "engine": result.engine, "notes": result.notes,
               "columns": result.columns, "rows": result.rows,
               "seconds": round(result.seconds, 4)})  # fmt: skip
        return
    for note in result.notes:
        err.print(f"[dim]{escape(note)}[/]")
    err.print(f"[dim]{escape(result.sql)}[/]")
    _table(result.rows, result.columns, f"{len(result.rows)} rows ({result.engine})")


_TIMEOUT_HELP = "Seconds before the query is stopped (default: POLYMKT_SQL_TIMEOUT_S, 30)."


@click.command()
@click.argument("query")
@click.option("--max-rows", type=int, default=1000, show_default=True)
@click.option("--timeout", "timeout_s", type=float, default=None, help=_TIMEOUT_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def sql(
    ctx: click.Context, query: str, max_rows: int, timeout_s: float | None, as_json: bool
) -> None:
    """Run one guarded, read-only SELECT over the rollup tables."""
    settings = _settings(ctx)
    max_rows, timeout = _limits(settings, max_rows, timeout_s)
    result = _run_sql(settings, query, max_rows, timeout)
    _print_result(result, as_json, {})


@click.command()
@click.argument("question")
@click.option("--max-rows", type=int, default=100, show_default=True)
@click.option("--timeout", "timeout_s", type=float, default=None, help=_TIMEOUT_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def ask(
    ctx: click.Context, question: str, max_rows: int, timeout_s: float | None, as_json: bool
) -> None:
    """Answer a question in plain English with guarded SQL over the rollups."""
    from polymkt_dagster.lib.serving.ask import AskError, plan_question, plan_to_dict

    settings = _settings(ctx)
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
        _fail(str(exc))
    err.print(f"[dim]SQL ({escape(plan.source)}): {escape(plan.sql)}[/]")
    result = _run_sql(settings, plan.sql, max_rows, timeout)
    _print_result(result, as_json, {"plan": plan_to_dict(plan)})


COMMANDS = [wallet, watchlists, alerts, sql, ask]
