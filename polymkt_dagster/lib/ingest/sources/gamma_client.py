"""Gamma API client: keyset listings of markets and events, lookups by token id or id.

The offset listing was sunset on 2026-05-01 (and capped pages at 100): lists use
``/markets/keyset`` (at most 100 a page) and ``/events/keyset`` (500), following
``after_cursor=<next_cursor>`` until an answer has no ``next_cursor``. The keyset endpoints
ignore ``cursor=`` (they return page 1 again), so a repeated cursor is an error, never a
loop. ``/markets/keyset`` lists only open markets unless ``closed`` is given, which is why a
full listing asks for both, and why lookups ask open markets first, then closed ones.

Every raw answer is kept verbatim as one JSON line in the audit trail
(``raw/polymarket/gamma_api/{markets,events}/YYYY/MM/DD/``) before it is parsed.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from polymkt_dagster.lib.core.http import HttpClient, RequestStats, RetryPolicy, SourceError

PAGE_LIMITS = {"markets": 100, "events": 500}
LOOKUP_CHUNK = 40  # ids or token ids per lookup request
ADVICE = (
    "Check POLYMKT_GAMMA_API_URL and re-run; markets and events are merged idempotently, "
    "so a re-run repeats no work that matters"
)
AUDIT_DIR = "raw/polymarket/gamma_api"


@dataclass
class GammaPage:
    """One answer: its items when it has the expected shape, else why not."""

    kind: str
    params: list[tuple[str, str]]
    document: Any
    items: list[Any] | None
    next_cursor: str | None
    problem: str | None = None


class AuditTrail:
    """Raw Gamma answers as JSON lines, one file per sync and kind.

    Lines are appended to a hidden ``.partial`` file that is renamed when the sync ends, so
    the mirror never uploads a file that is still growing, and a killed sync leaves what it
    fetched for inspection.
    """

    def __init__(self, lake_root: Path, kind: str, started: datetime | None = None) -> None:
        started = started or datetime.now(UTC)
        folder = Path(lake_root) / AUDIT_DIR / kind / started.strftime("%Y/%m/%d")
        name = f"{started.strftime('%H%M%S')}-{uuid.uuid4().hex[:8]}.jsonl"
        self.path = folder / name
        self._partial = folder / f".{name}.partial"
        self._handle: TextIO | None = None
        self.lines = 0

    def write(self, request: dict[str, Any], document: Any, raw_text: str) -> None:
        if self._handle is None:
            self._partial.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self._partial.open("a", encoding="utf-8")
        record = {
            "fetched_at": datetime.now(UTC).isoformat(),
            "request": request,
            # The parsed answer when it parsed, else the text exactly as received.
            "response": document if document is not None else raw_text,
        }
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.lines += 1

    def close(self) -> Path | None:
        if self._handle is None:
            return None
        self._handle.close()
        self._handle = None
        os.replace(self._partial, self.path)
        return self.path


def read_audit_trail(path: Path) -> list[dict[str, Any]]:
    """The records of an audit trail file. Split on ``\n`` only: answers hold raw
    U+2028/U+2029 (``ensure_ascii=False``), which ``str.splitlines`` takes for line breaks."""
    return [
        json.loads(line) for line in path.read_bytes().decode("utf-8").split("\n") if line.strip()
    ]


class GammaClient:
    def __init__(
        self,
        base_url: str,
        *,
        retry: RetryPolicy | None = None,
        audit: dict[str, AuditTrail] | None = None,
    ) -> None:
        self.http = HttpClient(base_url, source="gamma", advice=ADVICE, retry=retry)
        self.audit = audit or {}

    @property
    def stats(self) -> RequestStats:
        return self.http.stats

    def close(self) -> None:
        self.http.close()

    def pages(self, kind: str, filters: Sequence[tuple[str, str]] = ()) -> Iterator[GammaPage]:
        """Every page of ``/{kind}/keyset`` with these filters, following next_cursor."""
        if kind not in PAGE_LIMITS:
            raise ValueError(f"kind must be markets or events, not {kind!r}")
        seen: set[str] = set()
        cursor: str | None = None
        while True:
            params = [*filters, ("limit", str(PAGE_LIMITS[kind]))]
            if cursor:
                params.append(("after_cursor", cursor))
            where = f"/{kind}/keyset after_cursor={cursor or '(first page)'}"
            document, text = self.http.get_json(f"/{kind}/keyset", params, cursor=where)
            if kind in self.audit:
                self.audit[kind].write(
                    {"path": f"/{kind}/keyset", "params": params}, document, text
                )
            items = document.get(kind) if isinstance(document, dict) else None
            if not isinstance(items, list):
                yield GammaPage(
                    kind,
                    params,
                    document,
                    None,
                    None,
                    f"answer to {where} has no {kind!r} list "
                    f"(got {type(document).__name__}); kept in the audit trail",
                )
                return
            next_cursor = document.get("next_cursor") or None
            yield GammaPage(kind, params, document, items, next_cursor)
            if not next_cursor or not items:
                return
            if next_cursor in seen:
                raise SourceError(
                    "gamma",
                    f"/{kind}/keyset returned a cursor it had already returned",
                    cursor=where,
                    advice="the server is not honouring after_cursor; report it upstream",
                )
            seen.add(next_cursor)
            cursor = next_cursor

    def listing(self, kind: str, *, closed: bool | None) -> Iterator[GammaPage]:
        filters = [] if closed is None else [("closed", "true" if closed else "false")]
        return self.pages(kind, filters)

    def lookup(
        self, kind: str, field: str, values: Iterable[str], *, closed: bool | None
    ) -> Iterator[GammaPage]:
        """Pages answering ``field=value`` filters, at most LOOKUP_CHUNK values a request."""
        ordered = sorted(set(values))
        for i in range(0, len(ordered), LOOKUP_CHUNK):
            filters = [(field, v) for v in ordered[i : i + LOOKUP_CHUNK]]
            if closed is not None:
                filters.append(("closed", "true" if closed else "false"))
            yield from self.pages(kind, filters)
