"""`polymkt pipeline | bootstrap | sample`: the verbs that build a data dir and its lake.

`pipeline` runs the Dagster main job (through cli/runs.py), `bootstrap` imports the dumps
without Dagster (or pulls the S3 lake), `sample` writes a generated dataset.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from polymkt_dagster.cli.common import EXIT_FAILED, err, fail, lake_of, settings_of
from polymkt_dagster.cli.session import WAIT_OPTION, writer_session

if TYPE_CHECKING:
    from polymkt_dagster.cli.runs import StepEvent

DEFAULT_SAMPLE_DIR = Path(__file__).resolve().parents[2] / "data" / "sample"
MAX_SAMPLE_SCALE = 10_000.0  # 100M order fills


@click.command()
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
    with writer_session(settings_of(ctx), "pipeline", wait_s):
        _pipeline(ctx, sample, dagster_home)


def _pipeline(ctx: click.Context, sample: bool | None, dagster_home: Path | None) -> None:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from polymkt_dagster.cli.runs import prepare_dagster_home, run_pipeline
    from polymkt_dagster.lib.sample.bundled import copy_bundled_sample, has_source_files

    settings = settings_of(ctx)
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
        fail(f"pipeline run {result.run_id} failed: {result.error}", EXIT_FAILED)
    err.print(
        f"[green]Done.[/] Run {result.run_id}. See it in the UI: DAGSTER_HOME={home} dagster dev"
    )


@click.command()
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


@click.command()
@click.option("--from-s3", is_flag=True, help="Build the local lake from the S3 lake instead.")
@WAIT_OPTION
@click.pass_context
def bootstrap(ctx: click.Context, from_s3: bool, wait_s: float) -> None:
    """Import the data dir's CSV/JSON dumps into the lake without Dagster (scripts)."""
    with writer_session(settings_of(ctx), "bootstrap", wait_s):
        if from_s3:
            from polymkt_dagster.cli.sync import bootstrap_from_s3

            bootstrap_from_s3(settings_of(ctx))
        else:
            _bootstrap(ctx)


def _bootstrap(ctx: click.Context) -> None:
    from polymkt_dagster.lib.core.duck import connect
    from polymkt_dagster.lib.ingest.bootstrap import (
        SourceFileError,
        import_ctf_events,
        import_events,
        import_markets,
        import_order_filled,
    )
    from polymkt_dagster.lib.ingest.trades import derive_trades
    from polymkt_dagster.lib.serving.catalog import refresh_catalog

    settings = settings_of(ctx)
    lake = lake_of(settings)
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
