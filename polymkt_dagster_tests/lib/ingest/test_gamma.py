import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from polymkt_dagster.lib.ingest.sources.gamma import (
    GammaShapeError,
    gamma_resolution,
    load_payloads,
    parse_event,
    parse_many,
    parse_market,
    parse_timestamp,
)


def _load(fixtures_dir: Path, name: str) -> dict:
    return json.loads((fixtures_dir / name).read_text())


def test_resolved_negrisk_market(fixtures_dir: Path) -> None:
    market = parse_market(_load(fixtures_dir, "gamma_market_resolved.json"))
    assert market["market_id"] == "842093"
    assert market["resolved"] is True
    assert market["winning_outcome_index"] == 1  # outcomePrices ["0", "1"]
    assert market["outcomes"] == ["Yes", "No"]
    assert market["uma_resolution_status"] == "resolved"  # the singular umaResolutionStatus
    assert market["payouts"] == [0.0, 1.0]
    assert market["resolution_source"] == "gamma"
    assert market["neg_risk"] is True
    assert market["neg_risk_market_id"].startswith("0x")
    assert market["group_item_title"] == "No IPO before 2028"
    assert market["closed_time"] == datetime(2026, 6, 12, 20, 41, 49, tzinfo=UTC)
    assert all(71 <= len(t) <= 78 and t.isdigit() for t in market["token_ids"])


def test_legacy_amm_market_settled_near_one_zero_is_resolved(fixtures_dir: Path) -> None:
    # Market 40 (Trump 2020, Yes/No) is from before UMA: no status at all, closed at
    # [4.4e-8, 0.99999996]. The old "exact 1/0 only" rule left it unresolved; the legacy rule
    # (closed at near-1/0 prices) resolves it to "No", which is how it settled.
    market = parse_market(
        _load(fixtures_dir, "gamma_market_closed_with_a_price_not_a_resolution.json")
    )
    assert market["closed"] is True
    assert market["uma_resolution_status"] is None
    assert market["resolved"] is True
    assert market["winning_outcome_index"] == 1
    assert market["payouts"] == [0.0, 1.0]
    assert 0.99 < market["outcome_prices"][1] < 1.0  # the stored prices stay as Gamma gave them


def _gamma_market(**fields: object) -> dict:
    payload: dict = {
        "id": "244280",
        "conditionId": "0x" + "ab" * 32,
        "outcomes": '["Yes", "No"]',
        "clobTokenIds": json.dumps(["1" * 71, "2" * 78]),
        "closed": True,
        "closedTime": "2022-03-01 12:00:00+00",
    }
    payload.update(fields)
    return payload


@pytest.mark.parametrize(
    ("fields", "resolved", "winner", "payouts", "status"),
    [
        # AMM-era settlement at near-1/0, UMA resolved: the outcome priced highest wins
        (
            {"outcomePrices": '["0.999998", "0.000002"]', "umaResolutionStatus": "resolved"},
            True, 0, [1.0, 0.0], "resolved",
        ),
        # 50/50 resolution: each outcome settles at 0.5, no single winner
        (
            {"outcomePrices": '["0.5", "0.5"]', "umaResolutionStatus": "resolved"},
            True, None, [0.5, 0.5], "resolved",
        ),
        # proposed / disputed are not final, even at 1/0 prices
        (
            {"outcomePrices": '["1", "0"]', "umaResolutionStatus": "proposed"},
            False, None, None, "proposed",
        ),
        (
            {"outcomePrices": '["0", "1"]', "umaResolutionStatus": "disputed"},
            False, None, None, "disputed",
        ),
        # the singular status is current; the history lags ("proposed" only) or is empty
        (
            {
                "outcomePrices": '["0", "1"]',
                "umaResolutionStatus": "resolved",
                "umaResolutionStatuses": '["proposed"]',
            },
            True, 1, [0.0, 1.0], "resolved",
        ),
        (
            {
                "outcomePrices": '["1", "0"]',
                "umaResolutionStatus": "disputed",
                "umaResolutionStatuses": '["proposed", "resolved"]',
            },
            False, None, None, "disputed",
        ),
        # no status at all (pre-UMA): near-1/0 resolves, 0.5/0.5 (an untraded market) does not
        ({"outcomePrices": '["0.000002", "0.999998"]'}, True, 1, [0.0, 1.0], None),
        ({"outcomePrices": '["0.5", "0.5"]'}, False, None, None, None),
        # a traded price at the smallest tick is not a settlement
        (
            {"outcomePrices": '["0.9999", "0.0001"]', "umaResolutionStatus": "resolved"},
            False, None, None, "resolved",
        ),
        (
            {"outcomePrices": '["0", "0"]', "umaResolutionStatus": "resolved"},
            False, None, None, "resolved",
        ),
        # open markets are never resolved
        (
            {"closed": False, "outcomePrices": '["1", "0"]', "umaResolutionStatus": "resolved"},
            False, None, None, "resolved",
        ),
    ],
)  # fmt: skip
def test_gamma_resolution_rule(
    fields: dict, resolved: bool, winner: int | None, payouts: list | None, status: str | None
) -> None:
    market = parse_market(_gamma_market(**fields))
    assert market["uma_resolution_status"] == status
    assert market["resolved"] is resolved
    assert market["winning_outcome_index"] == winner
    assert market["payouts"] == payouts
    assert market["resolution_source"] == ("gamma" if resolved else None)


def test_history_is_used_only_without_the_singular_status() -> None:
    market = parse_market(
        _gamma_market(outcomePrices='["1", "0"]', umaResolutionStatuses='["proposed"]')
    )
    assert market["uma_resolution_status"] == "proposed"
    assert market["resolved"] is False


def test_three_way_split_resolution() -> None:
    verdict = gamma_resolution(True, "resolved", [1 / 3, 1 / 3, 1 / 3])
    assert verdict.resolved and verdict.winning_outcome_index is None
    assert verdict.payouts == pytest.approx([1 / 3] * 3)


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
