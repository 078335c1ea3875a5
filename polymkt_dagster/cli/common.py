"""What every `polymkt` command shares: its settings and lake, JSON output, errors and exit codes.

Kept apart from the command modules so each family (cli/search.py, cli/sync.py, ...) imports
these few helpers and nothing else of the others; it imports neither Dagster nor the lake's
libraries (pyarrow, numpy), so `polymkt search` starts without them.

Exit codes, one convention for every verb:

- ``0`` the command did what was asked;
- ``1`` the command ran and something failed on the way: a Dagster run or a check, a remote
  source (HTTP error, bad credentials), S3, another writer holding the data dir's lock, or an
  unexpected error (one line; the traceback with ``POLYMKT_DEBUG=1``);
- ``2`` the input is wrong and the user can fix it: a usage error, a bad option value or time,
  a bad setting (environment variable), a missing data dir, a bad source file, an unknown
  dataset or backtest, a refused SQL query (click's own usage errors exit 2 as well).

Output: with ``--json`` a read verb prints exactly one JSON document on stdout (dates as ISO
strings, NaN and infinities as ``null``); human output and progress go to stderr.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, is_dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from polymkt_dagster.lib.core.config import Settings
from polymkt_dagster.lib.core.terminal import SafeConsole, escape

if TYPE_CHECKING:
    from rich.table import Table as RichTable

    from polymkt_dagster.lib.core.lake import Lake

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
DEBUG_ENV = "POLYMKT_DEBUG"

err = SafeConsole(stderr=True)  # messages, progress and tables meant for a person
out = SafeConsole(markup=False)  # tables of data on stdout: no markup in cells

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")


def settings_of(ctx: click.Context) -> Settings:
    """The settings the top-level group read (environment, then --data-dir)."""
    return ctx.obj["settings"]


def lake_of(settings: Settings) -> Lake:
    from polymkt_dagster.lib.core.lake import Lake

    return Lake(settings.lake_dir, bucket_count=settings.bucket_count)


def plain(value: Any) -> Any:
    """``value`` as JSON types: dataclasses as objects, dates as ISO strings, paths as
    strings, NaN and infinities as None (JSON has no such numbers)."""
    if is_dataclass(value) and not isinstance(value, type):
        return plain(asdict(value))
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    return value


def json_text(document: Any) -> str:
    # default=str: a value of another type (a Decimal, a UUID from a query) prints as text
    return json.dumps(plain(document), indent=2, default=str, allow_nan=False)


def emit_json(document: Any) -> None:
    """Print one JSON document on stdout."""
    click.echo(json_text(document))


def emit(document: Any, as_json: bool) -> None:
    """The document on stdout with --json, else the same text on stderr for a person."""
    if as_json:
        emit_json(document)
    else:
        err.print(json_text(document), markup=False)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """One red line on stderr and exit: ``EXIT_USAGE`` (the default) for input the user can
    fix, ``EXIT_FAILED`` when the command ran and something failed."""
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    sys.exit(code)


def print_rows(rows: list[dict[str, Any]], columns: list[str], title: str) -> None:
    """Rows of data as a table on stdout: floats with four decimals, cells printed literally."""
    view = rich_table(title, columns)
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            cells.append(f"{value:,.4f}" if isinstance(value, float) else str(value))
        view.add_row(*cells)
    out.print(view)


def rich_table(title: str, columns: list[str]) -> RichTable:
    """An empty Rich table with these columns (rich.table is imported when a table is shown)."""
    from rich.table import Table as RichTable

    view = RichTable(title=title)
    for column in columns:
        view.add_column(column)
    return view
