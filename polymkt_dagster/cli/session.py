"""What every writing `polymkt` command shares: the data dir's run lock and the clean-up of
what an interrupted run left behind (lib/core/housekeeping.py).

Separate from cli/common.py because only the writing verbs (pipeline, bootstrap, sync) need
it; the lock's libraries are imported when a session starts, not when the CLI starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import click

from polymkt_dagster.cli.common import EXIT_FAILED, err, fail
from polymkt_dagster.lib.core.config import Settings


@contextmanager
def writer_session(settings: Settings, command: str, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the data dir's run lock for a writing command, and clear what interrupted runs
    left behind (temporary files, spill directories) before and after."""
    from polymkt_dagster.lib.core.housekeeping import (
        DataDirBusyError,
        data_dir_lock,
        remove_stale_temp_files,
    )

    with ExitStack() as stack:
        try:
            stack.enter_context(data_dir_lock(settings.data_dir, command, wait_s=wait_s))
        except DataDirBusyError as exc:
            fail(str(exc), EXIT_FAILED)
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
