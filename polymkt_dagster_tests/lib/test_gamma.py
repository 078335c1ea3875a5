import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from polymkt_dagster.lib.gamma import (
    GammaShapeError,
    load_payloads,
    parse_event,
    parse_many,
    parse_market,
    parse_timestamp,
    resolution,
)


def _load(fixtures_dir: Path, name: str) -> dict:
    return json.loads((fixtures_dir / name).read_text())


def test_resolved_negrisk_market(fixtures_dir: Path) -> None:
    market = parse_market(_load(fixtures_dir, "gamma_market_resolved.json"))
    assert market["market_id"] == "842093"
    assert market["resolved"] is True
    assert market["winning_outcome_index"] == 1  # outcomePrices ["0", "1"]
    assert market["outcomes"] == ["Yes", "No"]
    assert market["uma_resolution_status"] == "resolved"  # last of ["proposed","resolved"]
    assert market["neg_risk"] is True
    assert market["neg_risk_market_id"].startswith("0x")
    assert market["group_item_title"] == "No IPO before 2028"
    assert market["closed_time"] == datetime(2026, 6, 12, 20, 41, 49, tzinfo=UTC)
    assert all(76 <= len(t) <= 78 and t.isdigit() for t in market["token_ids"])


def test_closed_with_fractional_price_is_not_resolved(fixtures_dir: Path) -> None:
    market = parse_market(
        _load(fixtures_dir, "gamma_market_closed_with_a_price_not_a_resolution.json")
    )
    assert market["closed"] is True
    assert market["resolved"] is False
    assert market["winning_outcome_index"] is None
    assert 0.99 < market["outcome_prices"][1] < 1.0


def test_zero_zero_prices_are_not_a_resolution() -> None:
    assert resolution(True, [0.0, 0.0]) == (False, None)
    assert resolution(True, [1.0, 0.0]) == (True, 0)
    assert resolution(False, [1.0, 0.0]) == (False, None)  # open market at a 1/0 quote


def test_open_negrisk_candidate(fixtures_dir: Path) -> None:
    market = parse_market(_load(fixtures_dir, "gamma_market_by_id.json"))
    assert market["closed"] is False and market["resolved"] is False
    assert market["neg_risk"] is True
    assert market["group_item_title"]


def test_list_with_embedded_events(fixtures_dir: Path) -> None:
    text = (fixtures_dir / "gamma_markets_list.json").read_text()
    batch = parse_many(load_payloads(text, "markets"), "markets")
    assert len(batch.rows) == 3 and not batch.rejects
    for row in batch.rows:
        assert row["event_id"] and row["event_title"]
        assert len(row["token_ids"]) == 2


def test_bad_payload_is_reported_not_fatal(fixtures_dir: Path) -> None:
    good = _load(fixtures_dir, "gamma_market_by_id.json")
    broken = dict(good, id="9", outcomePrices="[0.5,")  # truncated JSON inside JSON
    batch = parse_many([good, broken, "not an object", {"question": "no id"}], "markets")
    assert [r["market_id"] for r in batch.rows] == [good["id"]]
    reasons = dict(batch.rejects)
    assert "outcomePrices is not valid JSON" in reasons[1]
    assert "expected an object" in reasons[2]
    assert "no id" in reasons[3]


def test_keyset_page_and_jsonl_shapes() -> None:
    page = json.dumps({"markets": [{"id": "1"}, {"id": "2"}], "next_cursor": "abc"})
    assert [p["id"] for p in load_payloads(page, "markets")] == ["1", "2"]
    lines = '{"id": "1"}\n{"id": "2"}\n'
    assert [p["id"] for p in load_payloads(lines, "events")] == ["1", "2"]


def test_timestamp_forms() -> None:
    expected = datetime(2024, 11, 6, 4, 12, tzinfo=UTC)
    for text in ("2024-11-06T04:12:00Z", "2024-11-06 04:12:00+00", "2024-11-06T04:12:00"):
        assert parse_timestamp(text) == expected
    assert parse_timestamp(1730866320) == expected
    assert parse_timestamp(1730866320000) == expected
    with pytest.raises(GammaShapeError):
        parse_timestamp("yesterday")


def test_event_payload() -> None:
    event = parse_event(
        {
            "id": "77",
            "title": "Springfield mayor",
            "negRisk": True,
            "tags": [{"label": "Politics"}],
            "markets": [{"id": "1"}, {"id": "2"}],
        }
    )
    assert event["market_ids"] == ["1", "2"] and event["tags"] == ["Politics"]
    assert event["neg_risk"] is True
