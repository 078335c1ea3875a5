"""Durable store of saved datasets and backtests: one SQLite file in the data dir.

SQLite (stdlib, WAL journal) rather than DuckDB: the CLI, the Dagster sensor and an asset
may open it at the same time, and DuckDB allows one writing process per file. Rows are
small (filters and configs as JSON, a dataset's market ids, a backtest's metrics).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STORE_FILE_NAME = "research.sqlite"
# Names become Dagster partition keys and file names: keep them plain.
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    name TEXT PRIMARY KEY,
    description TEXT,
    filters TEXT NOT NULL,
    market_ids TEXT NOT NULL,
    prompt TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS backtests (
    backtest_id TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    prompt TEXT,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    last_run_at TEXT,
    run_id TEXT,
    metrics TEXT,
    error TEXT
);
"""


class StoreError(ValueError):
    """A dataset or backtest cannot be saved or found (message shown to the user)."""


def check_name(name: str, kind: str) -> str:
    if not NAME_PATTERN.match(name or ""):
        raise StoreError(
            f"{kind} name {name!r} is not valid: use 1-64 lowercase letters, digits, '-', '_' "
            "or '.', starting with a letter or digit"
        )
    return name


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class DatasetRecord:
    name: str
    filters: dict[str, Any]
    market_ids: list[str]
    description: str | None = None
    prompt: str | None = None
    created_at: str = ""
    updated_at: str = ""

    def to_json(self, *, with_markets: bool = True) -> dict[str, Any]:
        document: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "filters": self.filters,
            "market_count": len(self.market_ids),
            "prompt": self.prompt,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
        if with_markets:
            document["market_ids"] = self.market_ids
        return document


@dataclass
class BacktestRecord:
    backtest_id: str
    config: dict[str, Any]
    status: str = "prepared"  # prepared | running | succeeded | failed
    prompt: str | None = None
    created_at: str = ""
    updated_at: str = ""
    last_run_at: str | None = None
    run_id: str | None = None
    metrics: dict[str, Any] | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "backtest_id": self.backtest_id,
            "status": self.status,
            "config": self.config,
            "prompt": self.prompt,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "last_run_at": self.last_run_at,
            "run_id": self.run_id,
            "metrics": self.metrics,
            "error": self.error,
        }


class ResearchStore:
    """Datasets and backtests in ``<data dir>/research.sqlite``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.executescript(_SCHEMA)

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> ResearchStore:
        return cls(Path(data_dir) / STORE_FILE_NAME)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=30)
        con.row_factory = sqlite3.Row
        try:
            con.execute("PRAGMA journal_mode=WAL")
            with con:  # one transaction, committed on success
                yield con
        finally:
            con.close()

    # ---- datasets --------------------------------------------------------------------
    def list_datasets(self) -> list[DatasetRecord]:
        with self._connect() as con:
            rows = con.execute("SELECT * FROM datasets ORDER BY name").fetchall()
        return [self._dataset(r) for r in rows]

    def get_dataset(self, name: str) -> DatasetRecord | None:
        with self._connect() as con:
            row = con.execute("SELECT * FROM datasets WHERE name = ?", (name,)).fetchone()
        return self._dataset(row) if row else None

    def require_dataset(self, name: str) -> DatasetRecord:
        record = self.get_dataset(name)
        if record is None:
            known = ", ".join(d.name for d in self.list_datasets()) or "none yet"
            raise StoreError(f"no dataset named {name!r} (saved datasets: {known})")
        return record

    def save_dataset(self, record: DatasetRecord, *, create: bool) -> DatasetRecord:
        check_name(record.name, "dataset")
        now = _now()
        with self._connect() as con:
            exists = con.execute(
                "SELECT created_at FROM datasets WHERE name = ?", (record.name,)
            ).fetchone()
            if create and exists:
                raise StoreError(
                    f"dataset {record.name!r} already exists; use `polymkt datasets update`"
                )
            if not create and not exists:
                raise StoreError(f"no dataset named {record.name!r} to update")
            record.created_at = exists["created_at"] if exists else now
            record.updated_at = now
            con.execute(
                "INSERT OR REPLACE INTO datasets VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    record.name,
                    record.description,
                    json.dumps(record.filters, default=str),
                    json.dumps(record.market_ids),
                    record.prompt,
                    record.created_at,
                    record.updated_at,
                ),
            )
        return record

    def delete_dataset(self, name: str) -> bool:
        with self._connect() as con:
            return con.execute("DELETE FROM datasets WHERE name = ?", (name,)).rowcount > 0

    @staticmethod
    def _dataset(row: sqlite3.Row) -> DatasetRecord:
        return DatasetRecord(
            name=row["name"],
            description=row["description"],
            filters=json.loads(row["filters"]),
            market_ids=json.loads(row["market_ids"]),
            prompt=row["prompt"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    # ---- backtests -------------------------------------------------------------------
    def list_backtests(self) -> list[BacktestRecord]:
        with self._connect() as con:
            rows = con.execute("SELECT * FROM backtests ORDER BY created_at, backtest_id")
            return [self._backtest(r) for r in rows.fetchall()]

    def get_backtest(self, backtest_id: str) -> BacktestRecord | None:
        with self._connect() as con:
            row = con.execute(
                "SELECT * FROM backtests WHERE backtest_id = ?", (backtest_id,)
            ).fetchone()
        return self._backtest(row) if row else None

    def require_backtest(self, backtest_id: str) -> BacktestRecord:
        record = self.get_backtest(backtest_id)
        if record is None:
            known = ", ".join(b.backtest_id for b in self.list_backtests()) or "none yet"
            raise StoreError(f"no backtest {backtest_id!r} (saved backtests: {known})")
        return record

    def save_backtest(self, record: BacktestRecord) -> BacktestRecord:
        """Insert or replace (a re-prepared config resets the run status)."""
        check_name(record.backtest_id, "backtest")
        now = _now()
        with self._connect() as con:
            exists = con.execute(
                "SELECT created_at FROM backtests WHERE backtest_id = ?", (record.backtest_id,)
            ).fetchone()
            record.created_at = exists["created_at"] if exists else now
            record.updated_at = now
            con.execute(
                "INSERT OR REPLACE INTO backtests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.backtest_id,
                    json.dumps(record.config, default=str),
                    record.prompt,
                    record.status,
                    record.created_at,
                    record.updated_at,
                    record.last_run_at,
                    record.run_id,
                    json.dumps(record.metrics, default=str) if record.metrics else None,
                    record.error,
                ),
            )
        return record

    def record_run(
        self,
        backtest_id: str,
        *,
        status: str,
        run_id: str | None = None,
        metrics: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        now = _now()
        with self._connect() as con:
            con.execute(
                """UPDATE backtests SET status = ?, updated_at = ?, last_run_at = ?,
                   run_id = coalesce(?, run_id), metrics = coalesce(?, metrics), error = ?
                   WHERE backtest_id = ?""",
                (
                    status,
                    now,
                    now,
                    run_id,
                    json.dumps(metrics, default=str) if metrics else None,
                    error,
                    backtest_id,
                ),
            )

    def delete_backtest(self, backtest_id: str) -> bool:
        with self._connect() as con:
            return (
                con.execute("DELETE FROM backtests WHERE backtest_id = ?", (backtest_id,)).rowcount
                > 0
            )

    @staticmethod
    def _backtest(row: sqlite3.Row) -> BacktestRecord:
        return BacktestRecord(
            backtest_id=row["backtest_id"],
            config=json.loads(row["config"]),
            status=row["status"],
            prompt=row["prompt"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            last_run_at=row["last_run_at"],
            run_id=row["run_id"],
            metrics=json.loads(row["metrics"]) if row["metrics"] else None,
            error=row["error"],
        )
