"""`polymkt`: the one entry of the command line (the console script and `python -m
polymkt_dagster.cli`).

The top-level group reads the settings (environment, then ``--data-dir`` anywhere on the
line), checks the data dir, and turns an unexpected error into one line (exit codes: see
cli/common.py). Every sub-command is registered once, in ``COMMANDS`` below, by the module
that holds it; a module is imported only when its command runs (or for ``--help``), so
`polymkt search` never loads Dagster, the sync clients or the research code.
"""

from __future__ import annotations

import importlib
import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from polymkt_dagster.cli.common import DEBUG_ENV, EXIT_FAILED, fail, settings_of
from polymkt_dagster.lib.core.config import ConfigError, Settings

# name -> "module:attribute" of the command, one line per verb or group of verbs
COMMANDS: dict[str, str] = {
    "pipeline": "polymkt_dagster.cli.build:pipeline",
    "sample": "polymkt_dagster.cli.build:sample",
    "bootstrap": "polymkt_dagster.cli.build:bootstrap",
    "status": "polymkt_dagster.cli.lake_reads:status",
    "trades": "polymkt_dagster.cli.lake_reads:trades",
    "search": "polymkt_dagster.cli.search:search",
    "sync": "polymkt_dagster.cli.sync:sync",
    "wallet": "polymkt_dagster.cli.wallets:wallet",
    "watchlists": "polymkt_dagster.cli.wallets:watchlists",
    "alerts": "polymkt_dagster.cli.wallets:alerts",
    "sql": "polymkt_dagster.cli.sql:sql",
    "ask": "polymkt_dagster.cli.sql:ask",
    "datasets": "polymkt_dagster.cli.datasets:datasets",
    "backtest": "polymkt_dagster.cli.backtest:backtest",
}

# Commands that create the data dir (or need none); every other one reads an existing one.
CREATING_COMMANDS = frozenset({"pipeline", "bootstrap", "sample", "sync"})


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
    """The top-level group: commands loaded from ``COMMANDS`` when used, ``--data-dir``
    anywhere, and no traceback for a user's mistake."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        command = getattr(importlib.import_module(module_name), attribute)
        assert isinstance(command, click.Command), target
        return command

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
            fail(user_error_line(exc), EXIT_FAILED)


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
        and not settings_of(ctx).data_dir.is_dir()
    ):
        fail(
            f"the data dir {settings.data_dir} does not exist: pass --data-dir (or set "
            "POLYMKT_DATA_DIR) to a data dir that `polymkt pipeline` or `polymkt bootstrap` "
            "has built"
        )
    configure_scratch(settings.data_dir)
