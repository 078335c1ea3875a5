"""What a search returns: its hits with every ranker's score, and its JSON form."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any


@dataclass
class SearchHit:
    market_id: str
    question: str
    event_title: str | None
    category: str | None
    closed: bool | None
    volume: float | None
    end_date: datetime | None
    slug: str | None
    score: float  # the score that orders results in the mode used
    bm25_score: float | None = None
    bm25_rank: int | None = None
    semantic_score: float | None = None  # cosine similarity
    semantic_rank: int | None = None
    fused_score: float | None = None  # hybrid only


@dataclass
class SearchResponse:
    query: str
    mode: str
    mode_used: str
    filters: dict[str, Any]
    hits: list[SearchHit]
    notices: list[str]
    timings_ms: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["count"] = len(self.hits)
        document["results"] = document.pop("hits")
        return document

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), default=_json_default, indent=2)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
