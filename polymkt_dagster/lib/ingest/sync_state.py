"""Durable sync state in the lake: what each source has delivered, and one writer at a time.

A source's progress is a set of covered half-open intervals of *positions* (unix seconds for
the subgraph, block numbers for the chain): every event whose position lies in a covered
interval is in the lake. The state file is rewritten atomically after each batch has been
merged into the lake, never before, so a crash at any point either replays a batch (the merge
deduplicates on the fill id) or loses nothing. Intervals rather than one watermark let a
range backfill fill a gap in the past without pretending the time in between was synced.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polymkt_dagster.lib.core.housekeeping import lock_exclusively
from polymkt_dagster.lib.core.lake import write_atomically

STATE_DIR = "_state"


class SyncBusyError(RuntimeError):
    """Another process holds the sync lock of this source."""


@dataclass
class Coverage:
    """Sorted, disjoint, half-open intervals [start, end) of synced positions."""

    intervals: list[tuple[int, int]] = field(default_factory=list)

    def add(self, start: int, end: int) -> None:
        if end <= start:
            return
        merged: list[tuple[int, int]] = []
        for a, b in sorted([*self.intervals, (start, end)]):
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        self.intervals = merged

    def first_uncovered(self, position: int) -> int:
        """The smallest position >= ``position`` that no interval covers."""
        for a, b in self.intervals:
            if a <= position < b:
                return b
        return position

    def next_covered_start(self, position: int) -> int | None:
        """Start of the first interval beginning after ``position`` (where a fetch may stop)."""
        for a, _ in self.intervals:
            if a > position:
                return a
        return None

    def gaps(self, start: int, end: int) -> list[tuple[int, int]]:
        """Uncovered parts of [start, end)."""
        holes: list[tuple[int, int]] = []
        cursor = start
        for a, b in self.intervals:
            if b <= cursor:
                continue
            if a >= end:
                break
            if a > cursor:
                holes.append((cursor, min(a, end)))
            cursor = max(cursor, b)
        if cursor < end:
            holes.append((cursor, end))
        return holes

    @property
    def end(self) -> int | None:
        return self.intervals[-1][1] if self.intervals else None

    def to_json(self) -> list[list[int]]:
        return [[a, b] for a, b in self.intervals]

    @classmethod
    def from_json(cls, raw: Any) -> Coverage:
        coverage = cls()
        for a, b in raw or []:
            coverage.add(int(a), int(b))
        return coverage


def state_dir(lake_root: Path) -> Path:
    return Path(lake_root) / STATE_DIR


class StateFile:
    """A JSON document under ``<lake>/_state/<name>.json``, replaced atomically."""

    def __init__(self, lake_root: Path, name: str) -> None:
        self.path = state_dir(lake_root) / f"{name}.json"

    def load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"sync state {self.path} is not valid JSON ({exc}); move it away to start the "
                "source over from the window you sync next"
            ) from exc
        return document if isinstance(document, dict) else {}

    def save(self, document: dict[str, Any]) -> None:
        def write(tmp: Path) -> None:
            with tmp.open("w", encoding="utf-8") as handle:
                json.dump(document, handle, indent=1, sort_keys=True, default=str)
                handle.flush()
                os.fsync(handle.fileno())  # the rename must never expose an empty file

        write_atomically(self.path, write)


@contextmanager
def sync_lock(lake_root: Path, name: str, *, timeout_s: float = 60.0) -> Iterator[None]:
    """Exclusive lock for a read-modify-write of lake files (fills of a source, markets).

    Two runs merging into the same day partition at once would each rewrite it from what
    they read, and the later rename would drop the other's rows; the lock serialises them.
    The OS releases it when the process dies, so a killed sync never leaves it stuck.
    """
    path = state_dir(lake_root) / f".{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    with path.open("a+") as handle:
        if not lock_exclusively(handle, deadline):
            raise SyncBusyError(
                f"another process has held the {name} sync lock ({path}) for "
                f"{timeout_s:g}s; wait for it to finish, then re-run"
            )
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
