"""Gamma-shaped market and event objects (``markets.json``, ``events.json``) and markets.csv rows.

Gamma's field order, types and string encodings (JSON strings inside JSON for ``outcomes``,
``outcomePrices``, ``clobTokenIds``, ``umaResolutionStatuses``; ISO and Postgres timestamps)
are what the ingest code parses, so they are kept together here. ``volume`` is the exact USDC
volume of the generated matches when ``generate_sample`` writes the files, and the expected
value from ``generate_markets`` (no fills generated).
"""

from __future__ import annotations

import json
import math

import numpy as np

from polymkt_dagster.lib.sample.config import MAKERS_PER_MATCH_P, SampleConfig
from polymkt_dagster.lib.sample.formats import slugify, utc_datetime
from polymkt_dagster.lib.sample.universe import Universe, build_universe

__all__ = [
    "gamma_dicts",
    "generate_markets",
    "markets_csv_rows",
]


def _iso(ts: int) -> str:
    return utc_datetime(ts).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pg_time(ts: int) -> str:
    return utc_datetime(ts).strftime("%Y-%m-%d %H:%M:%S+00")


_TAGS = {
    "Politics": "2",
    "Elections": "144",
    "US Politics": "1101",
    "World": "101970",
    "Crypto": "21",
    "Bitcoin": "235",
    "Ethereum": "39",
    "Sports": "1",
    "NBA": "745",
    "NFL": "450",
    "MLB": "100381",
    "EPL": "306",
    "Economics": "100328",
    "Fed": "100196",
    "Tech": "1401",
    "AI": "439",
    "Pop Culture": "596",
    "Movies": "53",
    "Music": "100203",
}


def _tag(label: str) -> dict[str, str]:
    return {"id": _TAGS[label], "label": label, "slug": slugify(label)}


def _volume_number(v: float) -> float:
    return round(float(v), 6)


def gamma_dicts(
    u: Universe, volumes: np.ndarray
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    markets_out: list[dict[str, object]] = []
    for i, m in enumerate(u.markets):
        ev = u.events[m.event]
        vol = _volume_number(volumes[i])
        event_ref: dict[str, object] = {
            "id": ev.id,
            "ticker": ev.slug,
            "slug": ev.slug,
            "title": ev.title,
            "negRisk": ev.neg_risk,
        }
        if ev.neg_risk_market_id:
            event_ref["negRiskMarketID"] = ev.neg_risk_market_id
        d: dict[str, object] = {
            "id": m.id,
            "question": m.question,
            "conditionId": m.condition_id,
            "slug": m.slug,
            "resolutionSource": "",
            "endDate": _iso(m.end),
            "category": ev.category,
            "liquidity": repr(m.liquidity),
            "startDate": _iso(m.start),
            "description": m.description,
            "outcomes": json.dumps(list(m.outcomes)),
            "outcomePrices": json.dumps(list(m.outcome_prices)),
            "volume": repr(vol),
            "active": True,
            "closed": m.closed,
            "createdAt": _iso(m.created),
            "updatedAt": _iso(m.updated),
        }
        if m.closed_time is not None and m.closed:
            d["closedTime"] = _pg_time(m.closed_time)
        d["archived"] = False
        if m.group_item_title is not None:
            d["groupItemTitle"] = m.group_item_title
        d["questionID"] = m.question_id
        if m.uma_status is not None:
            d["umaResolutionStatus"] = m.uma_status
        d.update(
            {
                "enableOrderBook": True,
                "orderPriceMinTickSize": 0.01,
                "orderMinSize": 5,
                "volumeNum": vol,
                "liquidityNum": m.liquidity,
                "endDateIso": utc_datetime(m.end).strftime("%Y-%m-%d"),
                "startDateIso": utc_datetime(m.start).strftime("%Y-%m-%d"),
                "clobTokenIds": json.dumps([m.token1, m.token2]),
                "acceptingOrders": not m.closed,
                "negRisk": ev.neg_risk,
            }
        )
        if ev.neg_risk_market_id:
            d["negRiskMarketID"] = ev.neg_risk_market_id
        d["umaResolutionStatuses"] = json.dumps(list(m.uma_statuses))
        d["events"] = [event_ref]
        markets_out.append(d)

    events_out: list[dict[str, object]] = []
    for ev in u.events:
        members = [u.markets[i] for i in ev.markets]
        e: dict[str, object] = {
            "id": ev.id,
            "ticker": ev.slug,
            "slug": ev.slug,
            "title": ev.title,
            "description": ev.description,
            "category": ev.category,
            "startDate": _iso(ev.start),
            "creationDate": _iso(ev.created),
            "endDate": _iso(ev.end),
            "active": True,
            "closed": all(m.closed for m in members),
            "archived": False,
            "liquidity": round(sum(m.liquidity for m in members), 5),
            "volume": _volume_number(sum(volumes[i] for i in ev.markets)),
            "createdAt": _iso(ev.created),
            "updatedAt": _iso(max(m.updated for m in members)),
            "enableOrderBook": True,
            "negRisk": ev.neg_risk,
        }
        if ev.neg_risk_market_id:
            e["negRiskMarketID"] = ev.neg_risk_market_id
        e["tags"] = [_tag(label) for label in ev.tags]
        e["markets"] = [{"id": u.markets[i].id} for i in ev.markets]
        events_out.append(e)
    return markets_out, events_out


def markets_csv_rows(u: Universe, volumes: np.ndarray) -> list[list[str]]:
    rows = []
    for i, m in enumerate(u.markets):
        ev = u.events[m.event]
        rows.append(
            [
                _iso(m.created),
                m.id,
                m.question,
                m.outcomes[0],
                m.outcomes[1],
                str(ev.neg_risk),
                m.slug,
                m.token1,
                m.token2,
                m.condition_id,
                repr(_volume_number(volumes[i])),
                ev.slug,
                _pg_time(m.closed_time) if m.closed and m.closed_time is not None else "",
            ]
        )
    return rows


def _expected_volumes(u: Universe) -> np.ndarray:
    """Expected USDC volume per market (used when no fills were generated)."""
    mean_makers = sum((i + 1) * p for i, p in enumerate(MAKERS_PER_MATCH_P))
    mean_shares = 50.0 * math.exp(1.3**2 / 2)
    mean_price = u.path.mean(axis=1) * 0.5 + 0.25
    return u.expected_matches * mean_makers * mean_shares * mean_price


def generate_markets(
    config: SampleConfig,
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """Gamma-shaped market dicts and event dicts of the sample (no fills generated).

    ``volume`` here is the expected value; ``generate_sample`` writes the exact volume of the
    generated fills instead.
    """
    u = build_universe(config)
    return gamma_dicts(u, _expected_volumes(u))
