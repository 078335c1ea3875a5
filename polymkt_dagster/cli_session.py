"""What every writing `polymkt` command shares: the data dir's run lock and the clean-up of
what an interrupted run left behind (lib/core/housekeeping.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import click

from polymkt_dagster.lib.core.config import Settings
from polymkt_dagster.lib.core.housekeeping import (
    DataDirBusyError,
    data_dir_lock,
    remove_stale_temp_files,
)
from polymkt_dagster.lib.core.terminal import SafeConsole, escape

err = SafeConsole(stderr=True)


@contextmanager
def writer_session(settings: Settings, command: str, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the data dir's run lock for a writing command, and clear what interrupted runs
    left behind (temporary files, spill directories) before and after."""
    with ExitStack() as stack:
        try:
            stack.enter_context(data_dir_lock(settings.data_dir, command, wait_s=wait_s))
        except DataDirBusyError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
            sys.exit(1)
        cleaned = remove_stale_temp_files(settings.data_dir)
        if cleaned:
            err.print(
                f"Removed {cleaned.temp_files} temporary file(s) and {cleaned.spill_dirs} "
                "scratch dir(s) left by an interrupted run"
            )
        try:
            yield
        finally:
            remove_stale_temp_files(settings.data_dir)


WAIT_OPTION = click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(min=0, max=7 * 86_400),
    default=0.0,
    show_default=True,
    help="Seconds to wait for another writer's run lock on the data dir (0: refuse at once).",
)
