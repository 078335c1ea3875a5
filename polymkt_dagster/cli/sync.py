"""`polymkt sync …` and `polymkt bootstrap --from-s3`: the live sync from the command line.

    polymkt sync markets [--full]                  Gamma markets + events now
    polymkt sync fills [--start D --end D] …        order fills (+ trades) for a day window
    polymkt sync ctf [--start D --end D] …          CTF position events for a day window
    polymkt sync backfill --start D --end D        the same as a Dagster range run (UI-visible)
    polymkt sync status                            watermarks and gaps per source
    polymkt sync s3                                mirror the lake to S3 now

Every verb takes --json and then prints exactly one JSON document on stdout.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from polymkt_dagster.cli.common import (
    EXIT_FAILED,
    JSON_OPTION,
    emit,
    err,
    fail,
    lake_of,
    settings_of,
)
from polymkt_dagster.cli.session import WAIT_OPTION, writer_session
from polymkt_dagster.lib.core.config import Settings
from polymkt_dagster.lib.ingest.sources.registry import source_names

if TYPE_CHECKING:
    from polymkt_dagster.lib.core.lake import Lake
    from polymkt_dagster.lib.ingest.sources.registry import SourceKind
    from polymkt_dagster.lib.ingest.sync import FillSyncReport
    from polymkt_dagster.lib.ingest.sync_state import StateFile

F = TypeVar("F", bound=Callable[..., Any])


def _day(text: str | None, name: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a day (YYYY-MM-DD)", param_hint=name) from None


def _event_sync_options(sources: tuple[str, ...]) -> Callable[[F], F]:
    """The options every day-window event sync takes (sync fills, sync ctf)."""

    def apply(command: F) -> F:
        for option in reversed(
            [
                click.option(
                    "--start", default=None, help="First day (default: today, or yesterday too)."
                ),
                click.option(
                    "--end", default=None, help="Last day, inclusive (default: --start or today)."
                ),
                click.option("--source", type=click.Choice(list(sources)), default=None),
                click.option("--max-batches", type=int, default=None, help="Stop after N batches."),
                click.option("--batch-rows", type=int, default=50_000, show_default=True),
                click.option("--dry-run", is_flag=True, help="Fetch and count; write nothing."),
                click.option(
                    "--resync", is_flag=True, help="Fetch already synced positions again."
                ),
                JSON_OPTION,
                WAIT_OPTION,
            ]
        ):
            command = option(command)
        return command

    return apply


@click.group()
def sync() -> None:
    """Live sync from Gamma, Goldsky or Polygon RPC (see README: Live sync)."""


@sync.command()
@click.option("--full", is_flag=True, help="List closed markets/events too (a backfill).")
@JSON_OPTION
@WAIT_OPTION
@click.pass_context
def markets(ctx: click.Context, full: bool, as_json: bool, wait_s: float) -> None:
    """Sync markets and events from the Gamma API now."""
    with writer_session(settings_of(ctx), "sync markets", wait_s):
        _markets(ctx, full, as_json)


def _markets(ctx: click.Context, full: bool, as_json: bool) -> None:
    from polymkt_dagster.lib.core.http import SourceError
    from polymkt_dagster.lib.ingest import sync as lib_sync
    from polymkt_dagster.lib.ingest.market_sync import sync_gamma

    settings = settings_of(ctx)
    lake = lake_of(settings)
    reports = {}
    try:
        for kind in ("markets", "events"):
            client = lib_sync.make_gamma_client(settings, lake, (kind,))
            try:
                reports[kind] = sync_gamma(
                    lake,
                    client,
                    kind,
                    full=full,
                    rejects_path=settings.rejects_dir / kind / "gamma.rejects.csv",
                    progress=err.print,
                )
            finally:
                client.close()
    except SourceError as exc:
        fail(str(exc), EXIT_FAILED)
    emit(reports, as_json)


@sync.command()
@_event_sync_options(source_names("order_filled"))
@click.option("--no-trades", is_flag=True, help="Do not derive trades afterwards.")
@click.pass_context
def fills(ctx: click.Context, wait_s: float, **options: Any) -> None:
    """Sync order fills for a window of days, then derive those days' trades."""
    with writer_session(settings_of(ctx), "sync fills", wait_s):
        _fills(ctx, **options)


def _fills(ctx: click.Context, no_trades: bool, as_json: bool, **options: Any) -> None:
    from polymkt_dagster.lib.core.http import SourceError
    from polymkt_dagster.lib.ingest import sync as lib_sync
    from polymkt_dagster.lib.ingest.sync_state import SyncBusyError

    report, settings, lake = _sync_event_window(
        ctx, "order_filled", lib_sync.fills_state, **options
    )
    document: dict[str, Any] = {"fills": report}
    if not no_trades and not options["dry_run"] and report.days_written:
        gamma = lib_sync.make_gamma_client(settings, lake)
        try:
            trades = lib_sync.refresh_trades(
                lake, report.days_written, gamma=gamma, progress=err.print
            )
        except (SourceError, SyncBusyError) as exc:
            fail(str(exc), EXIT_FAILED)
        finally:
            gamma.close()
        document["trades"] = {
            "rows_written": trades.derive.rows_written,
            "days": trades.derive.days,
            "unmapped_fills": trades.derive.unmapped_fills,
            "lookup": trades.lookup,
        }
    emit(document, as_json)


@sync.command()
@_event_sync_options(source_names("ctf_events"))
@click.pass_context
def ctf(ctx: click.Context, wait_s: float, **options: Any) -> None:
    """Sync CTF position events (splits, merges, redemptions, resolutions, conversions)."""
    with writer_session(settings_of(ctx), "sync ctf", wait_s):
        _ctf(ctx, **options)


def _ctf(ctx: click.Context, as_json: bool, **options: Any) -> None:
    from polymkt_dagster.lib.ingest import sync as lib_sync

    report, _, _ = _sync_event_window(ctx, "ctf_events", lib_sync.ctf_events_state, **options)
    emit({"ctf_events": report}, as_json)


def _sync_event_window(
    ctx: click.Context,
    kind: SourceKind,
    state_of: Callable[[Lake, str], StateFile],
    start: str | None,
    end: str | None,
    source: str | None,
    max_batches: int | None,
    batch_rows: int,
    dry_run: bool,
    resync: bool,
) -> tuple[FillSyncReport, Settings, Lake]:
    """Sync one raw event table (``kind``: order_filled or ctf_events) over the day window of
    the options, from the named or configured source; its rejects go to the data dir."""
    from polymkt_dagster.lib.core.http import SourceError
    from polymkt_dagster.lib.core.schemas import RAW_TABLES
    from polymkt_dagster.lib.ingest import sync as lib_sync
    from polymkt_dagster.lib.ingest.sources.registry import configured_name, make_source
    from polymkt_dagster.lib.ingest.sync_state import SyncBusyError

    settings = settings_of(ctx)
    lake = lake_of(settings)
    first, last = _sync_days(
        start, end, lambda: state_of(lake, source or configured_name(settings, kind))
    )
    event_source = make_source(settings, kind, source)
    try:
        report = lib_sync.sync_events(
            lake,
            event_source,
            *lib_sync.window_for_days([first, last]),
            table=RAW_TABLES[kind],
            max_batches=max_batches,
            dry_run=dry_run,
            resync=resync,
            batch_rows=batch_rows,
            rejects_path=settings.rejects_dir / kind / f"{event_source.name}.rejects.csv",
            progress=err.print,
        )
    except (SourceError, SyncBusyError) as exc:
        fail(str(exc), EXIT_FAILED)
    finally:
        event_source.close()
    return report, settings, lake


def _sync_days(
    start: str | None, end: str | None, state_file: Callable[[], StateFile]
) -> tuple[date, date]:
    """The day window of a sync command: the given days, or (no --start) today, plus the
    days since the source's watermark when it is known offline."""
    first, last = _day(start, "--start"), _day(end, "--end")
    if first is None:
        from polymkt_dagster.lib.ingest import sync as lib_sync

        hint = _synced_until_hint(state_file().load())
        days = lib_sync.days_to_sync(datetime.now(UTC), hint)
        first, last = days[0], days[-1]
    last = last or first
    if last < first:
        raise click.BadParameter("--end is before --start", param_hint="--end")
    return first, last


def _synced_until_hint(state: dict[str, Any]) -> datetime | None:
    """The subgraph's watermark is a unix time; a block watermark is not known offline."""
    coverage = state.get("coverage") or []
    if coverage and state.get("position_unit") == "second":
        return datetime.fromtimestamp(coverage[-1][1], UTC)
    return None


@sync.command()
@click.option("--start", required=True, help="First day (YYYY-MM-DD).")
@click.option("--end", required=True, help="Last day, inclusive.")
@click.option("--dagster-home", type=click.Path(path_type=Path, file_okay=False), default=None)
@JSON_OPTION
@WAIT_OPTION
@click.pass_context
def backfill(
    ctx: click.Context,
    start: str,
    end: str,
    dagster_home: Path | None,
    as_json: bool,
    wait_s: float,
) -> None:
    """Catch up a gap: one Dagster run of raw/order_filled + raw/trades + raw/ctf_events over
    the day range."""
    first, last = _day(start, "--start"), _day(end, "--end")
    assert first is not None and last is not None
    if last < first:
        raise click.BadParameter("--end is before --start", param_hint="--end")
    with writer_session(settings_of(ctx), "sync backfill", wait_s):
        _backfill(ctx, first, last, dagster_home, as_json)


def _backfill(
    ctx: click.Context, first: date, last: date, dagster_home: Path | None, as_json: bool
) -> None:
    from polymkt_dagster.cli.runs import prepare_dagster_home, run_backfill

    home = prepare_dagster_home(dagster_home)
    result = run_backfill(settings_of(ctx), first, last)
    document: dict[str, Any] = {"run_id": result.run_id, "success": result.success,
                                "dagster_home": home, "days": [first, last]}  # fmt: skip
    if result.orphaned_runs:
        document["orphaned_runs_marked_failed"] = result.orphaned_runs
    if result.error is not None:
        document["error"] = result.error
    emit(document, as_json)
    if not result.success:
        raise SystemExit(EXIT_FAILED)


@sync.command()
@JSON_OPTION
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Synced position intervals of each fill source (from the lake's state files)."""
    from polymkt_dagster.lib.ingest.sync import sync_status

    settings = settings_of(ctx)
    if not settings.data_dir.is_dir():
        fail(f"the data dir {settings.data_dir} does not exist: pass --data-dir (or set "
             "POLYMKT_DATA_DIR) to the data dir the sync writes to")  # fmt: skip
    emit(sync_status(lake_of(settings)), as_json)


def s3_client(settings: Settings) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings.s3_secret_access_key,
    )


@sync.command(name="s3")
@JSON_OPTION
@click.pass_context
def s3_mirror(ctx: click.Context, as_json: bool) -> None:
    """Mirror the lake to s3://POLYMKT_S3_BUCKET/POLYMKT_S3_PREFIX now (verified)."""
    from polymkt_dagster.lib.serving.s3_lake import S3LakeError, ensure_bucket, mirror_lake

    settings = settings_of(ctx)
    secrets = [settings.s3_access_key_id, settings.s3_secret_access_key]
    client = s3_client(settings)
    try:
        ensure_bucket(client, settings.s3_bucket, secrets=secrets)
        report = mirror_lake(client, settings.lake_dir, settings.s3_bucket, settings.s3_prefix,
                             secrets=secrets, progress=err.print)  # fmt: skip
    except S3LakeError as exc:
        fail(str(exc), EXIT_FAILED)
    emit({"uploaded": len(report.uploaded), "verified": report.verified,
           "unchanged": report.skipped, "deleted": len(report.deleted),
           "bytes_uploaded": report.bytes_uploaded}, as_json)  # fmt: skip


def bootstrap_from_s3(settings: Settings) -> None:
    """`polymkt bootstrap --from-s3`: pull the S3 lake into the local lake, then the catalog."""
    from polymkt_dagster.lib.serving.catalog import refresh_catalog
    from polymkt_dagster.lib.serving.s3_lake import S3LakeError, pull_lake

    secrets = [settings.s3_access_key_id, settings.s3_secret_access_key]
    try:
        report = pull_lake(s3_client(settings), settings.s3_bucket, settings.s3_prefix,
                           settings.lake_dir, secrets=secrets, progress=err.print)  # fmt: skip
    except S3LakeError as exc:
        fail(str(exc), EXIT_FAILED)
    refresh_catalog(lake_of(settings), settings.catalog_path)
    err.print(
        f"Pulled {len(report.downloaded)} files ({report.bytes_downloaded:,} bytes, verified), "
        f"{report.skipped} already current, from s3://{settings.s3_bucket}/{settings.s3_prefix}"
    )
