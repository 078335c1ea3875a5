"""`polymkt wallet | watchlists | alerts`: wallet tracking from the command line.

Wallets, their positions and P&L, watchlists and the alerts raised for them; read from the
lake and the watchlist store, never through Dagster. Every read verb takes
--json and then prints exactly one JSON document on stdout; messages go to stderr.
"""

from __future__ import annotations

from typing import Any

import click

from polymkt_dagster.cli.common import (
    JSON_OPTION,
    emit_json,
    err,
    fail,
    json_text,
    lake_of,
    print_rows,
    settings_of,
)
from polymkt_dagster.lib.core.config import Settings

# ---- wallet -------------------------------------------------------------------------------


@click.command()
@click.argument("address")
@click.argument("view", type=click.Choice(["positions", "pnl", "trades"]), default="positions")
@click.option("--all", "include_closed", is_flag=True, help="positions: closed ones too.")
@click.option("--limit", type=int, default=50, show_default=True, help="trades: how many.")
@JSON_OPTION
@click.pass_context
def wallet(
    ctx: click.Context, address: str, view: str, include_closed: bool, limit: int, as_json: bool
) -> None:
    """A wallet's positions, P&L or own fills (average-cost accounting)."""
    from polymkt_dagster.lib.core.duck import connect
    from polymkt_dagster.lib.wallets.positions import compute_positions
    from polymkt_dagster.lib.wallets.watchlists import WatchlistError, normalize_address

    settings = settings_of(ctx)
    try:
        address = normalize_address(address, "ADDRESS")
    except WatchlistError as exc:
        fail(str(exc))
    lake = lake_of(settings)
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
                emit_json({"wallet": address, "count": len(rows), "trades": rows})
            else:
                print_rows(rows, ["timestamp", "market_id", "outcome", "side", "price", "shares",
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
            emit_json({"wallet": address, "totals": totals, "markets": markets})
        else:
            print_rows(markets, ["market_id", "realized_pnl", "unrealized_pnl", "total_pnl"],
                   f"{address}: total P&L {totals['total_pnl']:,.2f}")  # fmt: skip
        return
    # a resolved position still held is worth its payout until redeemed: shown with the open
    shown = rows if include_closed else [r for r in rows if r["status"] != "closed"]
    if as_json:
        emit_json({"wallet": address, "totals": totals, "positions": shown})
    else:
        print_rows(shown, ["market_id", "outcome", "status", "shares", "avg_price", "mark_price",
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
        result = action(_store(settings_of(ctx)))
    except WatchlistError as exc:
        fail(str(exc))
    if as_json:
        emit_json(result)
    else:
        err.print(json_text(result), markup=False)


@watchlists.command("list")
@JSON_OPTION
@click.pass_context
def watchlists_list(ctx: click.Context, as_json: bool) -> None:
    """Every watchlist with its wallets and alert rules."""
    from polymkt_dagster.lib.wallets.watchlists import WatchlistError

    try:
        lists = _store(settings_of(ctx)).all()
    except WatchlistError as exc:
        fail(str(exc))
    if as_json:
        emit_json({"watchlists": [w.to_dict() for w in lists]})
        return
    print_rows(
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
@JSON_OPTION
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
@JSON_OPTION
@click.pass_context
def watchlists_add(
    ctx: click.Context, name: str, address: str, label: str | None, as_json: bool
) -> None:
    """Add a wallet to a watchlist."""
    _run_watchlist_command(ctx, as_json, lambda store: store.add(name, address, label).to_dict())


@watchlists.command("remove")
@click.argument("name")
@click.argument("address")
@JSON_OPTION
@click.pass_context
def watchlists_remove(ctx: click.Context, name: str, address: str, as_json: bool) -> None:
    """Remove a wallet from a watchlist."""
    _run_watchlist_command(ctx, as_json, lambda store: store.remove(name, address).to_dict())


@watchlists.command("delete")
@click.argument("name")
@JSON_OPTION
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
@JSON_OPTION
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

    settings = settings_of(ctx)
    try:
        options = SuggestOptions(
            since=parse_when(since), until=parse_when(until), min_trades=min_trades,
            min_win_rate=min_win_rate, top=top,
        )  # fmt: skip
    except QueryError as exc:
        fail(str(exc))
    with connect() as con:
        rows = suggest_wallets(con, lake_of(settings), options).to_pylist()
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
            fail(str(exc))
    if as_json:
        emit_json({"options": options.__dict__, "wallets": rows, "saved": saved})
        return
    print_rows(rows, ["wallet", "realized_pnl", "oversold_proceeds", "win_rate",
                  "positions_realized", "fills"], f"{len(rows)} suggested wallets")  # fmt: skip


# ---- alerts -------------------------------------------------------------------------------


@click.command()
@click.option("--since", default=None, help="Only alerts at or after this time (ISO).")
@click.option("--limit", type=int, default=100, show_default=True)
@JSON_OPTION
@click.pass_context
def alerts(ctx: click.Context, since: str | None, limit: int, as_json: bool) -> None:
    """Alerts raised for watched wallets, newest first."""
    from polymkt_dagster.lib.serving.queries import QueryError, parse_when
    from polymkt_dagster.lib.wallets.alerts import list_alerts

    try:
        when = parse_when(since)
    except QueryError as exc:
        fail(str(exc))
    rows = list_alerts(lake_of(settings_of(ctx)), since=when, limit=limit)
    if as_json:
        emit_json({"since": when, "count": len(rows), "alerts": rows})
        return
    print_rows(rows, ["alerted_at", "wallet", "market_id", "side", "size_usd", "price"],
           f"{len(rows)} alerts")  # fmt: skip
