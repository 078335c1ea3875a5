"""JSON and JSON-lines dumps (markets, events): every record read, or rejected with its line.

A file is one JSON document (a list, ``{"markets": [...]}``/``{"events": [...]}``, or one
object) or JSON lines. JSON lines are split on ``\\n`` only: Gamma descriptions hold raw
U+2028/U+2029, which ``str.splitlines`` would take for line breaks (docs/architecture.md §4).
A line that is not JSON, not UTF-8 or not an object is rejected with its line number and
the reason; the other lines land. A document that starts with ``[`` but does not parse has no
records to recover and fails the import naming the line and column.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polymkt_dagster.lib.ingest.sources.csv_source import SourceFileError

RAW_PREVIEW_CHARS = 4_000


@dataclass
class JsonRecords:
    """The payloads of a file with their line (JSON lines) or position (a document)."""

    path: Path
    records: list[tuple[int, Any]] = field(default_factory=list)
    broken: list[tuple[int, str, str]] = field(default_factory=list)  # line, reason, raw
    lines: int = 0
    blank_lines: int = 0
    document: bool = False  # one JSON document: positions, not lines

    @property
    def records_in_file(self) -> int:
        """Counted apart from the parser: the non-blank lines of JSON lines."""
        if self.document:
            return len(self.records)
        return self.lines - self.blank_lines


def _preview(text: str) -> str:
    return text if len(text) <= RAW_PREVIEW_CHARS else text[:RAW_PREVIEW_CHARS] + "…"


def read_json_records(path: Path, kind: str) -> JsonRecords:
    """Every payload of ``path`` (``kind``: ``markets`` or ``events``, the key of a wrapped
    document); malformed JSON lines are in ``broken``."""
    found = JsonRecords(path)
    data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    try:
        document = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        if data.lstrip().startswith(b"["):
            where = (
                f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
                if isinstance(exc, json.JSONDecodeError)
                else str(exc)
            )
            raise SourceFileError(f"{path}: not valid JSON ({where})") from exc
        return _json_lines(found, data)
    found.document = True
    if isinstance(document, list):
        items = document
    elif isinstance(document, Mapping) and isinstance(document.get(kind), list):
        items = list(document[kind])
    else:
        items = [document]
    found.records = [(position + 1, item) for position, item in enumerate(items)]
    return found


def _json_lines(found: JsonRecords, data: bytes) -> JsonRecords:
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    found.lines = len(lines)
    for index, raw in enumerate(lines):
        line = index + 1
        raw = raw.removesuffix(b"\r")
        if not raw.strip():
            found.blank_lines += 1
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            found.broken.append(
                (line, f"not UTF-8 text ({exc.reason})", _preview(raw.decode("utf-8", "replace")))
            )
            continue
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as exc:
            found.broken.append(
                (line, f"not valid JSON (column {exc.colno}: {exc.msg})", _preview(text))
            )
            continue
        found.records.append((line, payload))
    return found


def raw_record(payload: Any) -> str:
    """A payload as the rejects file shows it."""
    return _preview(json.dumps(payload, ensure_ascii=False))
