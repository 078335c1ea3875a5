"""Bootstrap import of ``ctfEvents.csv`` (docs/architecture.md §3.1) into ``ctf_events``.

Header::

    timestamp,block_number,log_index,transaction_hash,contract,event,stakeholder,
    condition_id,neg_risk_market_id,question_id,collateral_token,parent_collection_id,
    index_sets,amount,amounts,payout,outcome_slot_count,payout_numerators

Timestamps are unix seconds (or milliseconds) or ISO 8601; list cells hold their values
separated by ``|``; an empty cell is NULL. ``timestamp``, ``log_index``, ``transaction_hash``,
``event`` and ``stakeholder`` are required columns, the others may be absent. Every row goes
through the same rules as the chain's and the subgraph's rows (``ctf_events.problem``); a bad
row is kept in the rejects file with its file, line, field and reason and never stops the
rows around it. Accepted rows are merged by id into their day partitions
(``merge.merge_ctf_events``), so importing twice, or over a live sync, adds nothing twice.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from polymkt_dagster.lib.core.duck import connect
from polymkt_dagster.lib.core.lake import Lake, PartitionWrite
from polymkt_dagster.lib.ingest.merge import merge_ctf_events
from polymkt_dagster.lib.ingest.sources.csv_source import Rejects, read_header
from polymkt_dagster.lib.ingest.sources.ctf_events import CtfColumns, rows_by_event

CTF_EVENTS_CSV = "ctfEvents.csv"
CSV_COLUMNS = (
    "timestamp", "block_number", "log_index", "transaction_hash", "contract", "event",
    "stakeholder", "condition_id", "neg_risk_market_id", "question_id", "collateral_token",
    "parent_collection_id", "index_sets", "amount", "amounts", "payout", "outcome_slot_count",
    "payout_numerators",
)  # fmt: skip
REQUIRED_COLUMNS = ("timestamp", "log_index", "transaction_hash", "event", "stakeholder")
_TEXT = ("transaction_hash", "contract", "stakeholder", "condition_id", "neg_risk_market_id",
         "question_id", "collateral_token", "parent_collection_id")  # fmt: skip
_INTS = ("block_number", "log_index", "amount", "payout", "outcome_slot_count")
_INT_LISTS = ("amounts", "payout_numerators")
_CHUNK_ROWS = 100_000


class CellError(ValueError):
    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field_name
        self.reason = reason


@dataclass
class CtfImport:
    rows_read: int = 0
    rows_accepted: int = 0
    rows_outside_window: int = 0
    rows_by_event: dict[str, int] = field(default_factory=dict)
    partitions: list[PartitionWrite] = field(default_factory=list)


def _int(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise CellError(name, f"{name} {text!r} is not an integer") from None


def _timestamp(text: str) -> int:
    if text.isdigit():
        value = int(text)
        return value // 1000 if value >= 10**11 else value
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CellError("timestamp", f"unparsable timestamp {text!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def parse_row(cells: dict[str, str]) -> dict[str, Any]:
    """Canonical fields of one CSV record (validated afterwards by ``ctf_events.problem``)."""
    row: dict[str, Any] = {"source": "csv"}
    for name, raw in cells.items():
        text = raw.strip()
        if text == "":
            row[name] = None
        elif name == "timestamp":
            row[name] = _timestamp(text)
        elif name == "event":
            row[name] = text
        elif name in _TEXT:
            row[name] = text.lower()
        elif name in _INTS:
            row[name] = _int(name, text)
        elif name in _INT_LISTS:
            row[name] = [_int(name, part.strip()) for part in text.split("|")]
        elif name == "index_sets":
            row[name] = [part.strip() for part in text.split("|")]
    return row


def _records(path: Path, header: list[str], rejects: Rejects) -> Iterator[tuple[int, dict, str]]:
    """(line, cells by canonical column, raw line) of each structurally sound row."""
    wanted = {i: name for i, name in enumerate(header) if name in CSV_COLUMNS}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        line = reader.line_num
        for cells in reader:
            first_line, line = line + 1, reader.line_num
            if not cells or cells == [""]:
                continue
            raw = ",".join(cells)
            if len(cells) != len(header):
                reason = f"wrong column count: expected {len(header)} columns, found {len(cells)}"
                rejects.add(str(path), first_line, "(row)", reason, raw)
                continue
            yield first_line, {name: cells[i] for i, name in wanted.items()}, raw


def import_ctf_csv(
    path: Path,
    lake: Lake,
    rejects: Rejects,
    *,
    start: date | None = None,
    end: date | None = None,
    progress: Callable[[str], None] | None = None,
) -> CtfImport:
    """Validate ``path`` row by row and merge the good rows of days [start, end] into the lake."""
    result = CtfImport()
    header = read_header(path, REQUIRED_COLUMNS)
    low = datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp() if start else None
    high = datetime(end.year, end.month, end.day, tzinfo=UTC).timestamp() + 86_400 if end else None
    tables: list[pa.Table] = []
    columns = CtfColumns()
    try:
        for line, cells, raw in _records(path, header, rejects):
            result.rows_read += 1
            try:
                row = parse_row(cells)
            except CellError as exc:
                rejects.add(str(path), line, exc.field, exc.reason, raw)
                continue
            ts = row.get("timestamp")
            if isinstance(ts, int) and (
                (low is not None and ts < low) or (high is not None and ts >= high)
            ):
                result.rows_outside_window += 1
                continue
            if not columns.add(f"{path}:{line}", **row):
                reject = columns.rejects.pop()
                rejects.add(str(path), line, reject.field, reject.reason, raw)
                continue
            if len(columns) >= _CHUNK_ROWS:
                tables.append(columns.to_table())
                columns = CtfColumns()
                if progress:
                    progress(f"ctf_events: {result.rows_read:,} rows of {path.name} read")
    except UnicodeDecodeError as exc:
        rejects.add(str(path), 0, "(file)", f"not UTF-8 text past this point ({exc.reason})", "")
    except csv.Error as exc:
        rejects.add(str(path), 0, "(file)", f"unreadable CSV past this point ({exc})", "")
    tables.append(columns.to_table())
    fresh = pa.concat_tables(tables)
    result.rows_accepted = fresh.num_rows
    result.rows_by_event = rows_by_event(fresh)
    if fresh.num_rows:
        with connect() as con:
            con.register("fresh_ctf_events", fresh)
            result.partitions = merge_ctf_events(
                con, lake, "SELECT * FROM fresh_ctf_events", progress=progress
            )
    return result
