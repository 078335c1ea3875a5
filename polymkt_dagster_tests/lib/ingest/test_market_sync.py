"""Markets and events from the local Gamma keyset server into a real lake."""

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from polymkt_dagster.lib.core.duck import connect
from polymkt_dagster.lib.core.http import RetryPolicy
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.schemas import EVENTS, MARKETS, TRADES
from polymkt_dagster.lib.ingest.bootstrap import import_order_filled
from polymkt_dagster.lib.ingest.market_sync import sync_gamma
from polymkt_dagster.lib.ingest.merge import merge_order_fills
from polymkt_dagster.lib.ingest.sources.fill_source import FillColumns
from polymkt_dagster.lib.ingest.sources.gamma_client import (
    AuditTrail,
    GammaClient,
    read_audit_trail,
)
from polymkt_dagster.lib.ingest.sync import refresh_trades
from polymkt_local.polymarket_apis import GammaServer, sample_gamma

FAST = RetryPolicy(attempts=4, base_delay_s=0.01, max_delay_s=0.05, timeout_s=2.0)


@pytest.fixture
def gamma() -> Iterator[GammaServer]:
    markets, events = sample_gamma()
    with GammaServer(markets, events, duplicate_across_pages=True) as server:
        yield server


def _client(server: GammaServer, lake: Lake, *kinds: str) -> GammaClient:
    return GammaClient(
        server.base_url, retry=FAST, audit={k: AuditTrail(lake.root, k) for k in kinds}
    )


def _query(con_sql: str) -> list[tuple]:
    with connect() as con:
        return con.execute(con_sql).fetchall()


def test_full_listing_pages_with_after_cursor_and_keeps_the_audit_trail(
    tmp_path: Path, gamma: GammaServer
) -> None:
    lake = Lake(tmp_path / "lake")
    gamma.fail_next(429, retry_after="0.05")
    report = sync_gamma(lake, _client(gamma, lake, "markets"), "markets", full=True)
    total = len(gamma.data["markets"])
    assert report.rows_in_table == total and report.rows_changed == total
    assert report.pages > total // 100  # at most 100 a page
    queries = [dict(parse_qsl(urlsplit(path).query)) for path, _ in gamma.requests]
    assert all(q.get("limit") == "100" for q in queries if q)
    assert any("after_cursor" in q for q in queries)
    assert not any("cursor" in q for q in queries)
    # One JSON line per answer, the answer kept whole.
    records = read_audit_trail(report.audit_file)  # "\n" only: answers hold raw U+2028
    assert len(records) == report.pages  # the 429 was retried: an answer, not data
    first = records[0]
    assert first["request"]["path"] == "/markets/keyset" and "markets" in first["response"]
    assert report.audit_file.relative_to(lake.root).parts[:4] == (
        "raw", "polymarket", "gamma_api", "markets"
    )  # fmt: skip
    state = json.loads((lake.root / "_state" / "markets_gamma.json").read_text())
    assert state["rows_in_table"] == total and state["updated_at"]  # read by polymkt status
    # Duplicates across pages were served and merged away.
    rows = _query(f"SELECT count(*), count(DISTINCT market_id) FROM {lake.scan_sql(MARKETS)}")
    assert rows[0][0] == rows[0][1] == total


def test_cursor_parameter_is_ignored_by_the_server(gamma: GammaServer) -> None:
    import httpx

    first = httpx.get(f"{gamma.base_url}/markets/keyset", params={"limit": 2}).json()
    again = httpx.get(
        f"{gamma.base_url}/markets/keyset", params={"limit": 2, "cursor": first["next_cursor"]}
    ).json()
    assert [m["id"] for m in again["markets"]] == [m["id"] for m in first["markets"]]


def test_recorded_payloads_land_with_their_meaning(tmp_path: Path, gamma: GammaServer) -> None:
    lake = Lake(tmp_path / "lake")
    sync_gamma(lake, _client(gamma, lake), "markets", full=True)
    rows = {
        r[0]: r[1:]
        for r in _query(
            "SELECT market_id, closed, resolved, winning_outcome_index, uma_resolution_status, "
            f"neg_risk, outcome_prices FROM {lake.scan_sql(MARKETS)} "
            "WHERE market_id IN ('842093', '40', '2063134')"
        )
    }
    assert rows["842093"][:5] == (True, True, 1, "resolved", True)
    # Market 40 (before UMA, no status) closed at [4.4e-8, 0.99999996]: the old "exact 1/0
    # only" rule left it unresolved; the pre-UMA rule (near-1/0) resolves it to "No".
    assert rows["40"][:4] == (True, True, 1, None)
    assert rows["2063134"][0] is False and rows["2063134"][4] is True


def test_unexpected_shapes_are_kept_and_reported_without_stopping_the_rest(
    tmp_path: Path, gamma: GammaServer
) -> None:
    lake = Lake(tmp_path / "lake")
    broken = dict(gamma.data["markets"][0], id="999001", outcomePrices="[0.5,")
    broken_open = dict(broken, closed=False)
    gamma.replace_market(broken_open)
    report = sync_gamma(lake, _client(gamma, lake, "markets"), "markets",
                        rejects_path=tmp_path / "rejects.csv")  # fmt: skip
    assert report.rejected == 1 and report.reject_reasons == {"outcomePrices": 1}
    assert "999001" not in {r[0] for r in _query(f"SELECT market_id FROM {lake.scan_sql(MARKETS)}")}
    open_markets = sum(1 for m in gamma.data["markets"] if not m.get("closed"))
    assert report.rows_in_table == open_markets - 1  # every other open market landed
    assert "outcomePrices is not valid JSON" in (tmp_path / "rejects.csv").read_text()
    assert "999001" in report.audit_file.read_text()  # the raw payload is kept
    # An answer without the expected list is kept in the audit trail and reported.
    gamma.odd_pages["events"] = {"data": {"events": []}, "message": "maintenance"}
    events = sync_gamma(lake, _client(gamma, lake, "events"), "events")
    assert events.problems and "has no 'events' list" in events.problems[0]
    assert "maintenance" in events.audit_file.read_text()


def test_newer_updated_at_wins_and_closed_markets_are_refreshed_by_id(
    tmp_path: Path, gamma: GammaServer
) -> None:
    lake = Lake(tmp_path / "lake")
    sync_gamma(lake, _client(gamma, lake), "markets")  # open markets only
    market = next(m for m in gamma.data["markets"] if not m["closed"] and "umaResolutionStatuses"
                  in m and m["id"] not in ("2063134", "703258", "665374"))  # fmt: skip
    stale = dict(market, question="stale copy", updatedAt="2020-01-01T00:00:00Z")
    gamma.replace_market(stale)
    sync_gamma(lake, _client(gamma, lake), "markets")
    question = _query(f"SELECT question FROM {lake.scan_sql(MARKETS)} "
                      f"WHERE market_id = '{market['id']}'")[0][0]  # fmt: skip
    assert question == market["question"]  # the older payload did not win
    resolved = dict(market, closed=True, outcomePrices='["1", "0"]',
                    updatedAt="2030-01-01T00:00:00Z")  # fmt: skip
    gamma.replace_market(resolved)  # it leaves the open listing
    report = sync_gamma(lake, _client(gamma, lake), "markets")
    assert report.refreshed_by_id >= 1
    assert any("id=" in path and "closed=true" in path for path, _ in gamma.requests)
    row = _query(f"SELECT closed, resolved, winning_outcome_index FROM {lake.scan_sql(MARKETS)} "
                 f"WHERE market_id = '{market['id']}'")[0]  # fmt: skip
    assert row == (True, True, 0)


def test_markets_pending_on_uma_are_refreshed_until_final(
    tmp_path: Path, gamma: GammaServer
) -> None:
    lake = Lake(tmp_path / "lake")
    sync_gamma(lake, _client(gamma, lake), "markets")  # open markets only
    market = next(m for m in gamma.data["markets"] if not m["closed"])
    proposed = dict(
        market,
        closed=True,
        outcomePrices='["0", "1"]',
        umaResolutionStatus="proposed",
        umaResolutionStatuses='["proposed"]',
        updatedAt="2030-01-01T00:00:00Z",
    )
    gamma.replace_market(proposed)
    sync_gamma(lake, _client(gamma, lake), "markets")
    sql = (
        "SELECT closed, uma_resolution_status, resolved, winning_outcome_index, payouts, "
        f"resolution_source FROM {lake.scan_sql(MARKETS)} WHERE market_id = '{market['id']}'"
    )
    assert _query(sql)[0] == (True, "proposed", False, None, None, None)  # 1/0, not final
    # Closed and out of the open listing, but pending: the next plain sync asks for it again.
    final = dict(proposed, umaResolutionStatus="resolved", updatedAt="2030-01-02T00:00:00Z")
    gamma.replace_market(final)
    report = sync_gamma(lake, _client(gamma, lake), "markets")
    assert report.refreshed_by_id == 1
    assert _query(sql)[0] == (True, "resolved", True, 1, [0.0, 1.0], "gamma")
    # Final: no longer asked for by id.
    assert sync_gamma(lake, _client(gamma, lake), "markets").refreshed_by_id == 0


def test_events_sync(tmp_path: Path, gamma: GammaServer) -> None:
    lake = Lake(tmp_path / "lake")
    report = sync_gamma(lake, _client(gamma, lake), "events", full=True)
    assert report.rows_in_table == len(gamma.data["events"])
    assert all("limit=500" in path for path, _ in gamma.requests if path.startswith("/events"))
    rows = _query(f"SELECT count(*) FILTER (WHERE neg_risk), count(*) FILTER (WHERE "
                  f"len(market_ids) > 1) FROM {lake.scan_sql(EVENTS)}")  # fmt: skip
    assert rows[0][0] > 0 and rows[0][1] > 0


def test_unknown_tokens_are_looked_up_forty_at_a_time(
    tmp_path: Path, gamma: GammaServer, sample_dir: Path
) -> None:
    lake = Lake(tmp_path / "lake")
    days = [date(2024, 6, d) for d in range(1, 31)]
    import_order_filled(sample_dir, lake, start=days[0], end=days[-1])
    mystery = "9" * 77
    columns = FillColumns()
    columns.add("test", id="0x" + "ee" * 32 + "_x", timestamp=1717243200, block_number=None,
                log_index=None, transaction_hash="0x" + "ee" * 32, order_hash="0x" + "ff" * 32,
                maker="0x" + "12" * 20, taker="0x" + "34" * 20, maker_asset_id="0",
                taker_asset_id=mystery, maker_amount_filled=1_000_000,
                taker_amount_filled=2_000_000, fee=0, exchange=None, contract_version="v1",
                source="rpc")  # fmt: skip
    with connect() as con:
        con.register("extra", columns.to_table())
        merge_order_fills(con, lake, "SELECT * FROM extra")
    result = refresh_trades(lake, days, gamma=_client(gamma, lake))
    lookup = result.lookup
    assert lookup is not None and lookup.unknown_tokens > 40
    assert lookup.still_unknown == 1 and lookup.markets_found > 0
    token_requests = [parse_qsl(urlsplit(p).query) for p, _ in gamma.requests
                      if "clob_token_ids" in p]  # fmt: skip
    assert token_requests and all(
        sum(1 for k, _ in q if k == "clob_token_ids") <= 40 for q in token_requests
    )
    assert result.derive.unmapped_fills == 1  # kept with a NULL market, counted, not dropped
    rows = _query(f"SELECT count(*) FILTER (WHERE market_id IS NULL), count(*) "
                  f"FROM {lake.scan_sql(TRADES)}")  # fmt: skip
    assert rows[0][0] == 1 and rows[0][1] > 100
