"""DuckDB connections configured for the platform.

Extensions are loaded from the pinned ``duckdb-extension-*`` PyPI packages and never
downloaded: a fresh machine without network must behave like a developer laptop.
"""

from __future__ import annotations

import atexit
import importlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

# Bounds DuckDB's own memory so imports of arbitrarily large files spill to disk instead of
# growing the process; the 2 GB RSS target of the ingest leaves room for Python and Arrow.
DEFAULT_MEMORY_LIMIT = "1GB"
MEMORY_LIMIT_ENV = "POLYMKT_DUCKDB_MEMORY_LIMIT"
_MEMORY_LIMIT_RE = re.compile(r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", re.IGNORECASE)
# Per-process scratch lives under the data dir (``<data dir>/.polymkt-tmp``), never in a
# directory shared with every other program on the machine.
TEMP_ROOT = ".polymkt-tmp"
_scratch_root: Path | None = None
_own_spill_dirs: set[Path] = set()


class MemoryLimitError(RuntimeError):
    """A DuckDB step needed more memory than its limit allows: says which setting to raise."""


def memory_limit_setting() -> str:
    """``POLYMKT_DUCKDB_MEMORY_LIMIT`` (e.g. 2GB), or the 1 GB default."""
    raw = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    if not raw:
        return DEFAULT_MEMORY_LIMIT
    if not _MEMORY_LIMIT_RE.match(raw):
        from polymkt_dagster.lib.core.config import ConfigError

        raise ConfigError(f"{MEMORY_LIMIT_ENV}={raw!r} is not a size (use e.g. 2GB or 1500MB)")
    return raw.replace(" ", "")


def memory_limit_message(exc: BaseException, what: str) -> str:
    """The message for a DuckDB out-of-memory failure: what failed and what to raise."""
    return (
        f"{what} ran out of DuckDB memory ({MEMORY_LIMIT_ENV}={memory_limit_setting()}): "
        f"raise {MEMORY_LIMIT_ENV} (e.g. 2GB or 4GB) and re-run. DuckDB said: "
        f"{str(exc).splitlines()[0][:200]}"
    )


def configure_scratch(data_dir: Path | str) -> None:
    """Spill DuckDB's temporary files under ``<data_dir>/.polymkt-tmp`` from now on."""
    global _scratch_root
    _scratch_root = Path(data_dir).resolve() / TEMP_ROOT


def spill_dir(data_dir: Path | str | None = None) -> Path:
    """This process's DuckDB spill directory: ``<data dir>/.polymkt-tmp/duckdb-spill/<pid>``
    (the configured data dir when none is given; a private temporary directory when no data
    dir is known). Removed when the process exits; a killed process's is removed by the
    next writer (``housekeeping.remove_stale_temp_files``)."""
    if data_dir is not None:
        root = Path(data_dir).resolve() / TEMP_ROOT
    elif _scratch_root is not None:
        root = _scratch_root
    else:
        root = Path(tempfile.gettempdir()) / f"polymkt-{os.getuid()}" / TEMP_ROOT
    # One directory per process: DuckDB 1.5 names its spill files the same in every
    # process, so a shared directory lets concurrent imports clobber each other's files.
    path = root / "duckdb-spill" / str(os.getpid())
    if path not in _own_spill_dirs:
        _prune_dead_spill_dirs(path.parent)
    path.mkdir(parents=True, exist_ok=True)
    _own_spill_dirs.add(path)
    return path


def _prune_dead_spill_dirs(parent: Path) -> None:
    """Remove the spill directories of processes that are gone (killed ones never clean)."""
    if not parent.is_dir():
        return
    for entry in os.scandir(parent):
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                os.kill(int(entry.name), 0)
            except ProcessLookupError:
                shutil.rmtree(entry.path, ignore_errors=True)
            except PermissionError:
                pass  # another user's live process


@atexit.register
def _remove_own_spill_dirs() -> None:
    for path in _own_spill_dirs:
        shutil.rmtree(path, ignore_errors=True)


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
    memory_limit: str | None = None,
    temp_dir: Path | None = None,
    extensions: tuple[str, ...] = (),
    lock_timeout_s: float = 0.0,
) -> duckdb.DuckDBPyConnection:
    """Open DuckDB with UTC time, bounded memory, no auto-downloads, optional extensions.

    ``lock_timeout_s`` retries while another process holds the file's write lock, so a
    reader started next to a writing asset waits briefly instead of failing at once.
    ``memory_limit`` defaults to ``POLYMKT_DUCKDB_MEMORY_LIMIT`` (1 GB); spill files go to
    ``spill_dir()``, under the data dir.
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
    con.execute(f"SET memory_limit = '{memory_limit or memory_limit_setting()}'")
    spill = temp_dir or spill_dir()
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
