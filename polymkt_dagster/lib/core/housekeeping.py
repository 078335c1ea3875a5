"""One writer per data dir, and nothing left behind by a crash.

``data_dir_lock`` is the run lock every writing command takes (`polymkt pipeline`,
`bootstrap`, `sync markets|fills|backfill`): an exclusive ``flock`` on
``<data dir>/.polymkt.lock`` that names its holder in the file, so a second writer waits or
refuses with a message saying who holds which file. The OS drops the lock when the holder
dies, so a ``kill -9`` never leaves it stuck.

A killed writer can leave temporary files (``.part-0.parquet.<pid>-<hex>.tmp`` beside a
partition, DuckDB spill files): ``remove_stale_temp_files`` deletes those whose process is
gone, and runs when a writer starts and when it exits. Readers never see them: every lake
file is written under a hidden temporary name and renamed into place (``lake.write_atomically``).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import psutil

from polymkt_dagster.lib.core.duck import TEMP_ROOT

LOCK_FILE = ".polymkt.lock"
LOCK_POLL_S = 0.2  # how often a waiting writer tries the lock again
LEGACY_SPILL_DIR = ".duckdb_tmp"
# write_atomically's temporary names: ".<file>.<pid>-<hex>.tmp" (and ".<file>.<hex>.tmp"
# from versions that did not record the writer's pid)
_TEMP_NAME = re.compile(r"^\..+\.(?:(?P<pid>\d+)-)?[0-9a-f]{32}\.tmp$")
# scratch directories of a serving build (lib/serving/trades_by_market.py)
_SCRATCH_DIR = re.compile(r"^\.build-.+-(?P<pid>\d+)-[0-9a-f]{32}$")
# a temporary file without a pid is only taken for stale once nobody touched it for this long
LEGACY_TEMP_AGE_S = 600.0


class DataDirBusyError(RuntimeError):
    """Another polymkt process holds the data dir's run lock."""


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        return psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def process_started_at(pid: int | None = None) -> float:
    """The process's start time (epoch seconds): with the pid, names one process for good."""
    return psutil.Process(pid or os.getpid()).create_time()


def process_is_running(pid: int, started_at: float | None) -> bool:
    """Whether the process ``pid`` that started at ``started_at`` still runs (pids recycle)."""
    if not pid_alive(pid):
        return False
    if started_at is None:
        return True
    try:
        return abs(psutil.Process(pid).create_time() - started_at) < 1.0
    except psutil.Error:
        return False


def _holder(path: Path) -> str:
    try:
        document = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return "another polymkt process"
    if not isinstance(document, dict) or "pid" not in document:
        return "another polymkt process"
    return (
        f"`polymkt {document.get('command', '?')}` (pid {document['pid']} on "
        f"{document.get('host', '?')}, since {document.get('since', '?')})"
    )


def lock_exclusively(handle: IO[Any], deadline: float) -> bool:
    """Take an exclusive ``flock`` on an open file, retrying until ``deadline`` (monotonic
    seconds); False when another process still holds it then. The OS drops the lock when
    its holder dies, so a killed process never leaves it stuck."""
    while True:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(LOCK_POLL_S)


@contextmanager
def data_dir_lock(data_dir: Path, command: str, *, wait_s: float = 0.0) -> Iterator[Path]:
    """Hold ``<data_dir>/.polymkt.lock`` for a writing command, waiting up to ``wait_s``.

    Raises ``DataDirBusyError`` naming the lock file and its holder when it stays taken.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_FILE
    deadline = time.monotonic() + max(0.0, wait_s)
    with path.open("a+", encoding="utf-8") as handle:
        if not lock_exclusively(handle, deadline):
            waited = f" for {wait_s:g}s" if wait_s > 0 else ""
            raise DataDirBusyError(
                f"the data dir {data_dir} is in use{waited}: {_holder(path)} holds "
                f"its run lock {path}. Wait for it to finish (or pass --wait SECONDS), "
                "then re-run"
            )
        handle.seek(0)
        handle.truncate()
        holder = {
            "pid": os.getpid(),
            "command": command,
            "host": socket.gethostname(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        handle.write(json.dumps(holder))
        handle.flush()
        try:
            yield path
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@dataclass
class CleanupReport:
    temp_files: int = 0
    spill_dirs: int = 0
    bytes: int = 0

    def __bool__(self) -> bool:
        return bool(self.temp_files or self.spill_dirs)


def _is_stale_temp(entry: os.DirEntry[str], now: float) -> bool:
    match = _TEMP_NAME.match(entry.name)
    if match is None:
        return False
    pid = match.group("pid")
    if pid is not None:
        return int(pid) != os.getpid() and not pid_alive(int(pid))
    try:
        return now - entry.stat().st_mtime > LEGACY_TEMP_AGE_S
    except OSError:
        return False


def remove_stale_temp_files(data_dir: Path) -> CleanupReport:
    """Delete temporary files and spill directories whose writing process is gone.

    Safe next to a running writer: a file is stale only when the pid in its name is dead
    (or, for a name without a pid, when nobody has written it for ten minutes).
    """
    report = CleanupReport()
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        return report
    now = time.time()
    stack = [data_dir]
    while stack:
        directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                scratch = _SCRATCH_DIR.match(entry.name)
                if scratch is not None:
                    if not pid_alive(int(scratch.group("pid"))):
                        shutil.rmtree(entry.path, ignore_errors=True)
                        report.spill_dirs += 1
                elif entry.name not in (TEMP_ROOT, LEGACY_SPILL_DIR):
                    stack.append(Path(entry.path))
            elif _is_stale_temp(entry, now):
                try:
                    report.bytes += entry.stat().st_size
                    os.unlink(entry.path)
                    report.temp_files += 1
                except OSError:
                    pass
    spill_root = data_dir / TEMP_ROOT / "duckdb-spill"
    if spill_root.is_dir():
        for entry in os.scandir(spill_root):
            if entry.name.isdigit() and not pid_alive(int(entry.name)):
                shutil.rmtree(entry.path, ignore_errors=True)
                report.spill_dirs += 1
    legacy = data_dir / LEGACY_SPILL_DIR
    if legacy.is_dir():
        # spill files of versions that shared one directory: stale once untouched a while
        for entry in os.scandir(legacy):
            try:
                if entry.is_file() and now - entry.stat().st_mtime > LEGACY_TEMP_AGE_S:
                    os.unlink(entry.path)
                    report.temp_files += 1
            except OSError:
                pass
    return report
