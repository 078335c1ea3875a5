"""`polymkt`: run the pipeline and read the lake from the command line.

Every read verb takes --json and then prints exactly one JSON document on stdout; human
output and progress go to stderr, so scripts can pipe the JSON.
"""

from __future__ import annotations

import json
import math
import os
import sys
import warnings
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click
from rich.table import Table as RichTable

from polymkt_dagster.cli_session import WAIT_OPTION, writer_session
from polymkt_dagster.lib.core.config import ConfigError, Settings
from polymkt_dagster.lib.core.terminal import SafeConsole, escape
from polymkt_dagster.research_cli import backtest, datasets

err = SafeConsole(stderr=True)
DEFAULT_SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data" / "sample"


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def emit_json(document: Any) -> None:
    click.echo(json.dumps(document, default=_json_default, indent=2))


def fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    sys.exit(code)


# Commands that create the data dir (or need none); every other one reads an existing one.
CREATING_COMMANDS = frozenset({"pipeline", "bootstrap", "sample", "sync"})
DEBUG_ENV = "POLYMKT_DEBUG"


def hoist_data_dir(args: list[str]) -> list[str]:
    """Move ``--data-dir X`` given after the subcommand to the front, where the group reads
    it: `polymkt status --data-dir X` works like `polymkt --data-dir X status`."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        if arg == "--data-dir" and i + 1 < len(args):
            front += args[i : i + 2]
            i += 2
            continue
        if arg.startswith("--data-dir="):
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return front + rest


def user_error_line(exc: BaseException) -> str:
    """One line for an error that escaped a command: what failed and, when known, what to
    change. Secrets are masked; the traceback is there with POLYMKT_DEBUG=1."""
    from polymkt_dagster.lib.core.duck import memory_limit_message
    from polymkt_dagster.lib.core.redact import redact_text

    name = type(exc).__name__
    if "OutOfMemory" in name:
        return memory_limit_message(exc, "the command")
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
        return f"{exc.strerror or name}: {exc.filename}"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    first = lines[0][:300] if lines else "no message"
    return redact_text(f"{name}: {first} (set {DEBUG_ENV}=1 to see the traceback)")


class PolymktGroup(click.Group):
    """The top-level group: ``--data-dir`` anywhere, and no traceback for a user's mistake."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_data_dir(args))

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            fail(user_error_line(exc), code=1)


@click.group(cls=PolymktGroup)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Data directory (default: POLYMKT_DATA_DIR or data/); before or after the command.",
)
@click.pass_context
def main(ctx: click.Context, data_dir: Path | None) -> None:
    """PolyMkt: a Polymarket analytics lake orchestrated by Dagster."""
    from polymkt_dagster.lib.core.duck import configure_scratch, memory_limit_setting

    try:
        settings = Settings.from_env()
        memory_limit_setting()  # a bad POLYMKT_DUCKDB_MEMORY_LIMIT fails here, clearly
    except ConfigError as exc:
        fail(str(exc))
    if data_dir is not None:
        settings = replace(settings, data_dir=data_dir)
    ctx.obj = {"settings": settings}
    with warnings.catch_warnings():  # click 8.2 deprecates protected_args, still fills it
        warnings.simplefilter("ignore", DeprecationWarning)
        rest = [*ctx.protected_args, *ctx.args]
    asking_help = any(a in ("--help", "-h") for a in rest)
    if (
        ctx.invoked_subcommand not in CREATING_COMMANDS
        and not asking_help
        and not settings.data_dir.is_dir()
    ):
        fail(
            f"the data dir {settings.data_dir} does not exist: pass --data-dir (or set "
            "POLYMKT_DATA_DIR) to a data dir that `polymkt pipeline` or `polymkt bootstrap` "
            "has built"
        )
    configure_scratch(settings.data_dir)


main.add_command(datasets)  # polymkt datasets list|create|show|update|delete
main.add_command(backtest)  # polymkt backtest create|run|show|list


@main.command()
@click.option(
    "--sample/--no-sample",
    default=None,
    help="Copy the bundled sample into the data dir first (default: when it has no CSVs).",
)
@click.option(
    "--dagster-home",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Dagster instance directory (default: DAGSTER_HOME or ./.dagster_home).",
)
@WAIT_OPTION
@click.pass_context
def pipeline(
    ctx: click.Context, sample: bool | None, dagster_home: Path | None, wait_s: float
) -> None:
    """Materialize the whole asset graph over the data dir (the main job)."""
    with writer_session(_settings(ctx), "pipeline", wait_s):
        _pipeline(ctx, sample, dagster_home)


def _pipeline(ctx: click.Context, sample: bool | None, dagster_home: Path | None) -> None:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from polymkt_dagster.lib.sample.bundled import copy_bundled_sample, has_source_files
    from polymkt_dagster.pipeline import StepEvent, prepare_dagster_home, run_pipeline

    settings = _settings(ctx)
    if sample or (sample is None and not has_source_files(settings.data_dir)):
        copied = copy_bundled_sample(DEFAULT_SAMPLE_DIR, settings.data_dir)
        err.print(f"Using the bundled sample: copied {len(copied)} files into {settings.data_dir}")
    home = prepare_dagster_home(dagster_home)
    err.print(f"Dagster instance: {home}")

    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err
    ) as progress:
        tasks: dict[str, Any] = {}

        def on_event(event: StepEvent) -> None:
            if event.step not in tasks:
                tasks[event.step] = progress.add_task(event.step, total=1)
            task = tasks[event.step]
            if event.kind == "log":
                progress.update(task, description=f"{event.step}: {event.message[:90]}")
            elif event.kind == "succeeded":
                progress.update(task, completed=1, description=f"[green]✓[/] {event.step}")
            elif event.kind == "failed":
                progress.update(task, completed=1, description=f"[red]✗[/] {event.step}")

        result = run_pipeline(settings, dagster_home=home, on_event=on_event)

    if result.partition_range:
        err.print(f"Daily partitions {result.partition_range[0]} … {result.partition_range[1]}")
    err.print(f"Materialized {len(result.materialized)} assets: {', '.join(result.materialized)}")
    if result.skipped_assets:
        err.print(f"Not part of this run (own partitions): {', '.join(result.skipped_assets)}")
    if result.orphaned_runs:
        err.print(
            f"Marked {len(result.orphaned_runs)} run(s) of a killed polymkt process failed: "
            f"{', '.join(result.orphaned_runs)}"
        )
    if result.failed_checks:
        err.print(f"[yellow]Checks that did not pass:[/] {', '.join(result.failed_checks)}")
    if not result.success:
        fail(f"pipeline run {result.run_id} failed: {result.error}", code=1)
    err.print(
        f"[green]Done.[/] Run {result.run_id}. See it in the UI: DAGSTER_HOME={home} dagster dev"
    )


MAX_SAMPLE_SCALE = 10_000.0  # 100M order fills


@main.command()
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option(
    "--scale",
    type=float,
    default=1.0,
    show_default=True,
    help="1.0 ≈ 10,000 order fills; grows linearly.",
)
@click.option("--seed", type=int, default=7, show_default=True)
def sample(out: Path, scale: float, seed: int) -> None:
    """Generate a deterministic sample in the poly_data CSV layout."""
    from rich.progress import Progress

    from polymkt_dagster.lib.sample.config import SampleConfig
    from polymkt_dagster.lib.sample.generate import generate_sample

    if not (math.isfinite(scale) and 0 < scale <= MAX_SAMPLE_SCALE):
        fail(f"--scale must be a number above 0 and at most {MAX_SAMPLE_SCALE:g}, not {scale!r}")
    if seed < 0:
        fail(f"--seed must be 0 or more, not {seed}")
    with Progress(console=err) as progress:
        task = progress.add_task("order fills", total=None)

        def report(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        summary = generate_sample(out, SampleConfig(scale=scale, seed=seed), progress=report)
    err.print(
        f"Wrote {summary.markets:,} markets, {summary.order_fills:,} order fills, "
        f"{summary.trades:,} trades and {summary.ctf_events:,} CTF position events to {out}"
    )


@main.command()
@click.option("--from-s3", is_flag=True, help="Build the local lake from the S3 lake instead.")
@WAIT_OPTION
@click.pass_context
def bootstrap(ctx: click.Context, from_s3: bool, wait_s: float) -> None:
    """Import the data dir's CSV/JSON dumps into the lake without Dagster (scripts)."""
    with writer_session(_settings(ctx), "bootstrap", wait_s):
        _bootstrap(ctx, from_s3)


def _bootstrap(ctx: click.Context, from_s3: bool) -> None:
    if from_s3:
        from polymkt_dagster.sync_cli import bootstrap_from_s3

        return bootstrap_from_s3(_settings(ctx))
    from polymkt_dagster.lib.core.duck import connect
    from polymkt_dagster.lib.core.lake import Lake
    from polymkt_dagster.lib.ingest.bootstrap import (
        SourceFileError,
        import_ctf_events,
        import_events,
        import_markets,
        import_order_filled,
    )
    from polymkt_dagster.lib.ingest.trades import derive_trades
    from polymkt_dagster.lib.serving.catalog import refresh_catalog

    settings = _settings(ctx)
    lake = Lake(settings.lake_dir, bucket_count=settings.bucket_count)
    log = err.print
    try:
        for report in (
            import_markets(settings.data_dir, lake, progress=log),
            import_events(settings.data_dir, lake, progress=log),
            fills := import_order_filled(settings.data_dir, lake, progress=log),
            import_ctf_events(settings.data_dir, lake, progress=log),
        ):
            err.print(
                f"{report.table}: {report.rows_accepted:,} accepted, "
                f"{report.rows_rejected:,} rejected"
                + (f" (see {report.rejects_path})" if report.rejects_path else ""),
                markup=False,
            )
            for accounting in report.accounting:
                err.print(f"  {accounting.file}: {accounting.summary()}", markup=False)
    except SourceFileError as exc:
        fail(str(exc))
    with connect() as con:
        trades = derive_trades(con, lake, [p.day for p in fills.partitions], progress=log)
    err.print(f"trades: {trades.rows_written:,} rows, {trades.unmapped_fills:,} unmapped fills")
    refresh_catalog(lake, settings.catalog_path)


@main.command()
@click.option("--market", "markets", multiple=True, required=True, help="Market id (repeat).")
@click.option("--start", default=None, help="From this time (ISO 8601, UTC by default).")
@click.option("--end", default=None, help="Before this time.")
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
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
    from polymkt_dagster.lib.core.lake import Lake
    from polymkt_dagster.lib.serving.queries import QueryError, parse_when, query_trades

    settings = _settings(ctx)
    lake = Lake(settings.lake_dir, bucket_count=settings.bucket_count)
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
    view = RichTable(title=f"{len(rows)} trades")
    for column in ("timestamp", "market_id", "outcome", "maker_direction", "price", "usd_amount"):
        view.add_column(column)
    for row in rows:
        view.add_row(
            str(row["timestamp"]),
            str(row["market_id"]),
            str(row["outcome"]),
            str(row["maker_direction"]),
            f"{row['price']:.4f}",
            f"{row['usd_amount']:,.2f}",
        )
    SafeConsole(markup=False).print(view)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Modes, last sync and lag per source, lake contents and size, ClickHouse/S3 health."""
    from polymkt_dagster.lib.serving.status import runtime_status

    settings = _settings(ctx)
    document = runtime_status(settings)
    if as_json:
        emit_json(document)
        return
    view = RichTable(title=f"PolyMkt lake at {settings.lake_dir}")
    for column in ("table", "files", "bytes", "days"):
        view.add_column(column)
    for name, info in document["tables"].items():
        view.add_row(name, str(info["files"]), f"{info['bytes']:,}", str(info.get("days", "")))
    SafeConsole(markup=False).print(view)
    SafeConsole().print(
        f"ingest mode: {settings.ingest_mode}, analytics mode: {settings.analytics_mode}"
    )
    for source, info in document["sync"].items():
        lag = "" if info["lag_s"] is None else f", lag {info['lag_s']:,.0f} s"
        state = "fresh" if info["fresh"] else "STALE"
        SafeConsole().print(
            f"{source}: last sync {info['last_sync']}{lag} "
            f"(target {info['target_s']:,.0f} s: {state})"
        )
    SafeConsole().print(
        f"lake size: {document['lake_bytes']:,} bytes; clickhouse: {document['clickhouse']}; "
        f"s3: {document['s3']}"
    )


@main.command()
@click.argument("query")
@click.option("--mode", type=click.Choice(["bm25", "semantic", "hybrid"]), default="hybrid")
@click.option("--category", default=None, help="Only this category (any case).")
@click.option("--closed/--open", "closed", default=None, help="Only closed / only open markets.")
@click.option("--min-volume", type=float, default=None, help="Only markets with this volume.")
@click.option("--limit", type=int, default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def search(ctx: click.Context, query: str, as_json: bool, **options: Any) -> None:
    """Find markets by words: BM25, semantic or hybrid (score fusion); hybrid is the default."""
    from polymkt_dagster.lib.search import run_search_command

    settings = _settings(ctx)
    out = run_search_command(
        settings.catalog_path,
        query,
        as_json=as_json,
        api_key=settings.openai_api_key,
        base_url=settings.openai_base_url,
        embedding_model=settings.openai_embedding_model,
        **options,
    )
    if out.stdout:
        click.echo(out.stdout)
    if out.stderr:
        click.echo(out.stderr, err=True)
    ctx.exit(out.exit_code)


# wallet tracking and guarded analytics verbs live in their own module
from polymkt_dagster.cli_wallets import COMMANDS as WALLET_COMMANDS  # noqa: E402

for _command in WALLET_COMMANDS:
    main.add_command(_command)


# live sync verbs (polymkt sync markets|fills|backfill|status|s3) live in their own module
from polymkt_dagster.sync_cli import sync as sync_group  # noqa: E402

main.add_command(sync_group)


if __name__ == "__main__":
    main()
