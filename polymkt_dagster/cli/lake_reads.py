"""`polymkt status | trades`: what the lake holds, and the trades of some markets.

Read verbs over the lake files; neither needs Dagster.
"""

from __future__ import annotations

import click

from polymkt_dagster.cli.common import (
    JSON_OPTION,
    emit_json,
    fail,
    lake_of,
    out,
    rich_table,
    settings_of,
)
from polymkt_dagster.lib.core.terminal import SafeConsole


@click.command()
@click.option("--market", "markets", multiple=True, required=True, help="Market id (repeat).")
@click.option("--start", default=None, help="From this time (ISO 8601, UTC by default).")
@click.option("--end", default=None, help="Before this time.")
@click.option("--limit", type=int, default=100, show_default=True)
@JSON_OPTION
@click.pass_context
def trades(
    ctx: click.Context,
    markets: tuple[str, ...],
    start: str | None,
    end: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Trades of one or many markets in a time window, newest first."""
    from polymkt_dagster.lib.serving.queries import QueryError, parse_when, query_trades

    lake = lake_of(settings_of(ctx))
    try:
        table = query_trades(
            lake, list(markets), start=parse_when(start), end=parse_when(end), limit=limit
        )
    except QueryError as exc:
        fail(str(exc))
    rows = table.to_pylist()
    if as_json:
        emit_json({"markets": list(markets), "count": len(rows), "trades": rows})
        return
    columns = ["timestamp", "market_id", "outcome", "maker_direction", "price", "usd_amount"]
    view = rich_table(f"{len(rows)} trades", columns)
    for row in rows:
        view.add_row(
            str(row["timestamp"]),
            str(row["market_id"]),
            str(row["outcome"]),
            str(row["maker_direction"]),
            f"{row['price']:.4f}",
            f"{row['usd_amount']:,.2f}",
        )
    out.print(view)


@click.command()
@JSON_OPTION
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Modes, last sync and lag per source, lake contents and size, ClickHouse/S3 health."""
    from polymkt_dagster.lib.serving.status import runtime_status

    settings = settings_of(ctx)
    document = runtime_status(settings)
    if as_json:
        emit_json(document)
        return
    view = rich_table(f"PolyMkt lake at {settings.lake_dir}", ["table", "files", "bytes", "days"])
    for name, info in document["tables"].items():
        view.add_row(name, str(info["files"]), f"{info['bytes']:,}", str(info.get("days", "")))
    out.print(view)
    console = SafeConsole()
    console.print(f"ingest mode: {settings.ingest_mode}, analytics mode: {settings.analytics_mode}")
    for source, info in document["sync"].items():
        lag = "" if info["lag_s"] is None else f", lag {info['lag_s']:,.0f} s"
        state = "fresh" if info["fresh"] else "STALE"
        console.print(
            f"{source}: last sync {info['last_sync']}{lag} "
            f"(target {info['target_s']:,.0f} s: {state})"
        )
    console.print(
        f"lake size: {document['lake_bytes']:,} bytes; clickhouse: {document['clickhouse']}; "
        f"s3: {document['s3']}"
    )
