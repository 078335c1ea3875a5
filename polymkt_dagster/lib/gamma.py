"""Parse Gamma API payloads (markets, events) into the canonical tables.

Gamma nests JSON inside JSON: ``outcomes``, ``outcomePrices``, ``clobTokenIds`` and
``umaResolutionStatuses`` are strings holding JSON arrays. ``closed`` is not "resolved":
a market is resolved only when its prices are an exact 1/0 split (docs/architecture.md §4).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from polymkt_dagster.lib.normalize import is_token_id


class GammaShapeError(ValueError):
    """A payload does not have the shape of a Gamma market or event."""


@dataclass(frozen=True)
class ParsedBatch:
    rows: list[dict[str, Any]]
    rejects: list[tuple[int, str]]  # (position in the input, reason)


def parse_timestamp(value: Any) -> datetime | None:
    """Gamma timestamps: ISO 8601 with ``Z``, ``+00`` or no zone (taken as UTC)."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        seconds = float(value) / 1000 if abs(float(value)) >= 1e11 else float(value)
        return datetime.fromtimestamp(seconds, tz=UTC)
    text = str(value).strip().replace("Z", "+00:00")
    if len(text) >= 3 and text[-3] in "+-" and text[-2:].isdigit() and ":" not in text[-3:]:
        text = text + ":00"  # "+00" -> "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise GammaShapeError(f"unparsable timestamp {value!r}") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _json_list(payload: Mapping[str, Any], field: str) -> list[Any]:
    raw = payload.get(field)
    if raw is None or raw == "":
        return []
    if isinstance(raw, list):
        return raw
    if not isinstance(raw, str):
        raise GammaShapeError(f"{field} is {type(raw).__name__}, expected a JSON string")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise GammaShapeError(f"{field} is not valid JSON: {raw[:80]!r}") from exc
    if not isinstance(value, list):
        raise GammaShapeError(f"{field} holds {type(value).__name__}, expected a list")
    return value


def _number(payload: Mapping[str, Any], *fields: str) -> float | None:
    for field in fields:
        raw = payload.get(field)
        if raw is None or raw == "":
            continue
        try:
            return float(raw)
        except (TypeError, ValueError) as exc:
            raise GammaShapeError(f"{field}={raw!r} is not a number") from exc
    return None


def _bool(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"true", "1", "yes"}:
        return True
    if text in {"false", "0", "no"}:
        return False
    raise GammaShapeError(f"{value!r} is not a boolean")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _tag_labels(raw: Any) -> list[str]:
    if not raw:
        return []
    if isinstance(raw, str):
        return [t.strip() for t in raw.replace(";", ",").split(",") if t.strip()]
    labels = []
    for tag in raw:
        label = tag.get("label") or tag.get("slug") if isinstance(tag, Mapping) else tag
        if label:
            labels.append(str(label))
    return labels


def resolution(closed: bool | None, prices: list[float]) -> tuple[bool, int | None]:
    """(resolved, winning outcome index): only an exact 1/0 split on a closed market."""
    if not closed or len(prices) < 2:
        return False, None
    winners = [i for i, p in enumerate(prices) if p == 1.0]
    if len(winners) == 1 and all(p == 0.0 for i, p in enumerate(prices) if i != winners[0]):
        return True, winners[0]
    return False, None


def parse_market(payload: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(payload, Mapping):
        raise GammaShapeError(f"market payload is {type(payload).__name__}, expected an object")
    market_id = _text(payload.get("id"))
    if not market_id:
        raise GammaShapeError("market has no id")
    outcomes = [str(o) for o in _json_list(payload, "outcomes")]
    token_ids = [str(t) for t in _json_list(payload, "clobTokenIds")]
    for token in token_ids:
        if not is_token_id(token):
            raise GammaShapeError(f"clobTokenIds holds {token!r}, not a decimal token id")
    raw_prices = _json_list(payload, "outcomePrices")
    try:
        prices = [float(p) for p in raw_prices]
    except (TypeError, ValueError) as exc:
        raise GammaShapeError("outcomePrices holds a non-number") from exc
    statuses = [str(s) for s in _json_list(payload, "umaResolutionStatuses")]
    closed = _bool(payload.get("closed"))
    resolved, winner = resolution(closed, prices)
    events = payload.get("events") or []
    event = events[0] if events and isinstance(events[0], Mapping) else {}
    neg_risk = _bool(payload.get("negRisk"))
    if neg_risk is None:
        neg_risk = _bool(event.get("negRisk"))
    return {
        "market_id": market_id,
        "condition_id": (_text(payload.get("conditionId")) or "").lower() or None,
        "question_id": (_text(payload.get("questionID")) or "").lower() or None,
        "question": _text(payload.get("question")),
        "slug": _text(payload.get("slug")),
        "description": _text(payload.get("description")),
        "category": _text(payload.get("category")) or _text(event.get("category")),
        "tags": _tag_labels(payload.get("tags")) or _tag_labels(event.get("tags")),
        "event_id": _text(event.get("id")),
        "event_slug": _text(event.get("slug")),
        "event_title": _text(event.get("title")),
        "neg_risk": bool(neg_risk) if neg_risk is not None else False,
        "neg_risk_market_id": (
            _text(payload.get("negRiskMarketID")) or _text(event.get("negRiskMarketID"))
        ),
        "group_item_title": _text(payload.get("groupItemTitle")),
        "outcomes": outcomes,
        "token_ids": token_ids,
        "outcome_prices": prices,
        "created_at": parse_timestamp(payload.get("createdAt")),
        "start_date": parse_timestamp(payload.get("startDate")),
        "end_date": parse_timestamp(payload.get("endDate")),
        "closed": closed,
        "closed_time": parse_timestamp(payload.get("closedTime")),
        "volume": _number(payload, "volumeNum", "volume"),
        "liquidity": _number(payload, "liquidityNum", "liquidity"),
        "uma_resolution_status": statuses[-1] if statuses else None,
        "resolved": resolved,
        "winning_outcome_index": winner,
        "updated_at": parse_timestamp(payload.get("updatedAt")),
    }


def parse_event(payload: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(payload, Mapping):
        raise GammaShapeError(f"event payload is {type(payload).__name__}, expected an object")
    event_id = _text(payload.get("id"))
    if not event_id:
        raise GammaShapeError("event has no id")
    markets = payload.get("markets") or []
    return {
        "event_id": event_id,
        "slug": _text(payload.get("slug")),
        "ticker": _text(payload.get("ticker")),
        "title": _text(payload.get("title")),
        "description": _text(payload.get("description")),
        "category": _text(payload.get("category")),
        "tags": _tag_labels(payload.get("tags")),
        "neg_risk": bool(_bool(payload.get("negRisk"))),
        "neg_risk_market_id": _text(payload.get("negRiskMarketID")),
        "start_date": parse_timestamp(payload.get("startDate")),
        "end_date": parse_timestamp(payload.get("endDate")),
        "closed": _bool(payload.get("closed")),
        "volume": _number(payload, "volume"),
        "liquidity": _number(payload, "liquidity"),
        "market_ids": [
            str(m["id"]) for m in markets if isinstance(m, Mapping) and m.get("id") is not None
        ],
    }


def parse_many(payloads: Iterable[Any], kind: str) -> ParsedBatch:
    """Parse every payload; a malformed one is reported with its reason, never fatal."""
    parse = parse_market if kind == "markets" else parse_event
    rows: list[dict[str, Any]] = []
    rejects: list[tuple[int, str]] = []
    for position, payload in enumerate(payloads):
        try:
            rows.append(parse(payload))
        except GammaShapeError as exc:
            rejects.append((position, str(exc)))
    return ParsedBatch(rows, rejects)


def load_payloads(text: str, kind: str) -> list[Any]:
    """Accept a JSON array, ``{"markets": [...]}`` / ``{"events": [...]}``, one object or JSONL."""
    stripped = text.strip()
    if not stripped:
        return []
    try:
        document = json.loads(stripped)
    except json.JSONDecodeError:
        # "\n" only: descriptions hold raw U+2028/U+2029, which splitlines() breaks on
        return [json.loads(line) for line in stripped.split("\n") if line.strip()]
    if isinstance(document, list):
        return document
    if isinstance(document, Mapping) and isinstance(document.get(kind), list):
        return list(document[kind])
    return [document]
