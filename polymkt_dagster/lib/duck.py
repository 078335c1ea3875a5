"""DuckDB connections configured for the platform.

Extensions are loaded from the pinned ``duckdb-extension-*`` PyPI packages and never
downloaded: a fresh machine without network must behave like a developer laptop.
"""

from __future__ import annotations

import importlib
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

# Bounds DuckDB's own memory so imports of arbitrarily large files spill to disk instead of
# growing the process; the 2 GB RSS target of the ingest leaves room for Python and Arrow.
DEFAULT_MEMORY_LIMIT = "1GB"


class ExtensionUnavailableError(RuntimeError):
    """A DuckDB extension package matching the installed duckdb version is missing."""


def extension_path(name: str) -> Path:
    """Path of the extension binary shipped by the ``duckdb-extension-<name>`` package."""
    module_name = f"duckdb_extension_{name}"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ExtensionUnavailableError(
            f"DuckDB extension {name!r} needs the package duckdb-extension-{name}=="
            f"{duckdb.__version__}; install the project's dependencies (pip install -e .)"
        ) from exc
    base = Path(module.__file__ or "").parent / "extensions" / f"v{duckdb.__version__}"
    binary = base / f"{name}.duckdb_extension"
    if not binary.exists():
        raise ExtensionUnavailableError(
            f"duckdb-extension-{name} does not ship a build for duckdb {duckdb.__version__} "
            f"(looked for {binary}); pin both packages to the same version"
        )
    return binary


def load_extension(con: duckdb.DuckDBPyConnection, name: str) -> None:
    con.execute(f"LOAD '{extension_path(name)}'")


def connect(
    database: str | Path = ":memory:",
    *,
    read_only: bool = False,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
    temp_dir: Path | None = None,
    extensions: tuple[str, ...] = (),
    lock_timeout_s: float = 0.0,
) -> duckdb.DuckDBPyConnection:
    """Open DuckDB with UTC time, bounded memory, no auto-downloads, optional extensions.

    ``lock_timeout_s`` retries while another process holds the file's write lock, so a
    reader started next to a writing asset waits briefly instead of failing at once.
    """
    deadline = time.monotonic() + lock_timeout_s
    while True:
        try:
            con = duckdb.connect(
                str(database),
                read_only=read_only,
                config={
                    "autoinstall_known_extensions": False,
                    "autoload_known_extensions": False,
                },
            )
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() >= deadline:
                raise
            time.sleep(0.2)
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET memory_limit = '{memory_limit}'")
    # One spill directory per process: DuckDB 1.5 names its spill files the same in every
    # process, so a shared directory lets concurrent imports clobber each other's files.
    spill = temp_dir or Path(tempfile.gettempdir()) / "polymkt-duckdb-spill" / str(os.getpid())
    spill.mkdir(parents=True, exist_ok=True)
    con.execute(f"SET temp_directory = '{spill}'")
    con.execute("SET enable_progress_bar = false")
    for name in extensions:
        load_extension(con, name)
    return con


@contextmanager
def connection(
    database: str | Path = ":memory:", **kwargs: object
) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(database, **kwargs)  # type: ignore[arg-type]
    try:
        yield con
    finally:
        con.close()


def sql_string(value: str | Path) -> str:
    """Quote a value as a SQL string literal (paths, file names)."""
    return "'" + str(value).replace("'", "''") + "'"
