"""Parse Gamma API payloads (markets, events) into the canonical tables.

Gamma nests JSON inside JSON: ``outcomes``, ``outcomePrices``, ``clobTokenIds`` and
``umaResolutionStatuses`` are strings holding JSON arrays. ``closed`` is not "resolved"
(docs/architecture.md §4); ``gamma_resolution`` is Gamma's side of the one resolution rule
whose chain side is in ``lib/analytics/resolutions.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from polymkt_dagster.lib.ingest.normalize import is_token_id


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


# A payout read from prices must be this close to 1, 0 or 1/n. Below the smallest CLOB tick
# (0.0001), so no traded price qualifies, while the AMM era's settled 0.999998 / 0.000002
# (market 244280) does.
PAYOUT_PRICE_TOLERANCE = 1e-5
# UMA statuses after which the outcome prices are the payout. `proposed` and `disputed` (and
# any status Gamma may add) are pending: such a market can already show 1/0 prices.
FINAL_UMA_STATUSES = frozenset({"resolved"})


@dataclass(frozen=True)
class GammaResolution:
    resolved: bool
    payouts: list[float] | None  # one per outcome, summing to 1; None when unresolved
    winning_outcome_index: int | None  # the outcome paying 1; None for a split or unresolved

    @classmethod
    def unresolved(cls) -> GammaResolution:
        return cls(False, None, None)


def _near(value: float, target: float) -> bool:
    return abs(value - target) <= PAYOUT_PRICE_TOLERANCE


def payouts_from_prices(prices: list[float], *, allow_split: bool) -> list[float] | None:
    """The payout vector the settled prices show, or None when they show none.

    Near-1/0 prices pay 1 to the outcome priced highest; with ``allow_split`` prices all
    near 1/n pay 1/n each (a 50/50 resolution). ``["0", "0"]`` and fractional prices: None.
    """
    if len(prices) < 2:
        return None
    top = max(range(len(prices)), key=lambda i: prices[i])
    if _near(prices[top], 1.0) and all(_near(p, 0.0) for i, p in enumerate(prices) if i != top):
        return [1.0 if i == top else 0.0 for i in range(len(prices))]
    share = 1.0 / len(prices)
    if allow_split and all(_near(p, share) for p in prices):
        return [share] * len(prices)
    return None


def gamma_resolution(
    closed: bool | None, uma_status: str | None, prices: list[float]
) -> GammaResolution:
    """Gamma's verdict on a market (the chain's ConditionResolution overrides it).

    - Open markets are unresolved, whatever their prices.
    - With a UMA status: resolved only when it is final (``resolved``), paying what the
      prices show (near-1/0 or an even split such as 50/50). ``proposed``/``disputed``: not
      resolved, even at 1/0.
    - Without any status (markets from before UMA, poly_data's markets.csv): resolved only at
      near-1/0 prices. An even split is not taken, because an untraded market also sits at
      0.5/0.5.
    """
    if not closed:
        return GammaResolution.unresolved()
    status = (uma_status or "").strip().lower()
    if status and status not in FINAL_UMA_STATUSES:
        return GammaResolution.unresolved()
    payouts = payouts_from_prices(prices, allow_split=bool(status))
    if payouts is None:
        return GammaResolution.unresolved()
    winner = payouts.index(1.0) if 1.0 in payouts else None
    return GammaResolution(True, payouts, winner)


def current_uma_status(payload: Mapping[str, Any]) -> str | None:
    """Gamma's current status: the singular ``umaResolutionStatus``.

    The ``umaResolutionStatuses`` history is empty for most markets and lags for many; its
    last element is used only when the singular field is absent (a lagging history can only
    say less than the truth: ``proposed`` for a market now ``resolved``, never the reverse).
    """
    status = _text(payload.get("umaResolutionStatus"))
    if status:
        return status.lower()
    history = [str(s).strip().lower() for s in _json_list(payload, "umaResolutionStatuses")]
    history = [s for s in history if s]
    return history[-1] if history else None


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
    status = current_uma_status(payload)
    closed = _bool(payload.get("closed"))
    verdict = gamma_resolution(closed, status, prices)
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
        "uma_resolution_status": status,
        "resolved": verdict.resolved,
        "winning_outcome_index": verdict.winning_outcome_index,
        "payouts": verdict.payouts,
        "resolution_source": "gamma" if verdict.resolved else None,
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
