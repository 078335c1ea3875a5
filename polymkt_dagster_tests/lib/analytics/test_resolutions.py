"""resolutions_sql: the chain's ConditionResolution first, then Gamma's stored decision."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from polymkt_dagster.lib.analytics.bars import build_market_summary
from polymkt_dagster.lib.analytics.election_groups import build_election_groups, read_groups
from polymkt_dagster.lib.analytics.resolutions import RESOLUTIONS, resolutions_sql
from polymkt_dagster.lib.core.duck import connect, sql_string
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.ingest.bootstrap import import_markets
from polymkt_dagster.lib.serving.catalog import refresh_catalog

CLOSED_AT = "2024-03-01 12:00:00+00"
CHAIN_AT = datetime(2024, 3, 2, 8, 30, tzinfo=UTC)


def _condition(n: int) -> str:
    return "0x" + f"{n:064x}"


def _market(market_id: str, n: int, prices: list[str], **fields: object) -> dict:
    payload: dict = {
        "id": market_id,
        "conditionId": _condition(n),
        "question": f"market {market_id}",
        "outcomes": '["Yes", "No"]',
        "clobTokenIds": json.dumps([str(10**72 + 2 * n), str(10**72 + 2 * n + 1)]),
        "outcomePrices": json.dumps(prices),
        "closed": True,
        "closedTime": CLOSED_AT,
        "endDate": "2024-03-01T00:00:00Z",
    }
    payload.update(fields)
    return payload


MARKETS = [
    _market("1", 1, ["1", "0"], umaResolutionStatus="resolved"),
    _market("2", 2, ["0.999998", "0.000002"], umaResolutionStatus="resolved"),  # 244280-like
    _market("3", 3, ["0.5", "0.5"], umaResolutionStatus="resolved"),
    _market("4", 4, ["1", "0"], umaResolutionStatus="proposed"),
    _market("5", 5, ["0", "1"], umaResolutionStatus="disputed"),
    _market("6", 6, ["0.000002", "0.999998"]),  # pre-UMA, no status
    _market("7", 7, ["0.62", "0.38"]),  # closed at a traded price: closed, unresolved
    _market("8", 8, ["0.4", "0.6"], closed=False),  # open
]


def _lake(tmp_path: Path) -> Lake:
    data = tmp_path / "data"
    data.mkdir()
    (data / "markets.json").write_text(json.dumps(MARKETS))
    lake = Lake(data / "parquet")
    import_markets(data, lake)
    return lake


def _write_ctf_day(lake: Lake, day: str, rows: list[tuple[str, int, list[int]]]) -> None:
    """ConditionResolution rows (condition id, slot count, numerators) in the §3.1 layout."""
    year, month, dd = day.split("-")
    target = lake.root / f"raw/polymarket/ctf_events/year={year}/month={month}/day={dd}"
    target.mkdir(parents=True)
    values = ", ".join(
        f"('0x{'e' * 64}_{i}', TIMESTAMPTZ '{day} 08:30:00+00', 50000000 + {i}, {i}, "
        f"'0x{'e' * 64}', 'conditional_tokens', 'ConditionResolution', '0x{'0' * 40}', "
        f"'{cid}', '0x{'1' * 64}', {slots}, {nums}::BIGINT[], 'rpc')"
        for i, (cid, slots, nums) in enumerate(rows)
    )
    with connect() as con:
        con.execute(
            f"""COPY (SELECT * FROM (VALUES {values}) t(id, "timestamp", block_number,
                      log_index, transaction_hash, contract, event, stakeholder, condition_id,
                      question_id, outcome_slot_count, payout_numerators, source))
                TO {sql_string(target / "part-0.parquet")} (FORMAT parquet)"""
        )


def _resolutions(lake: Lake) -> dict[str, dict]:
    with connect() as con:
        table = con.execute(f"SELECT * FROM ({resolutions_sql(lake)})").arrow().read_all()
    assert table.column_names == RESOLUTIONS.column_names
    rows = table.to_pylist()
    assert len({r["market_id"] for r in rows}) == len(rows)
    return {r["market_id"]: r for r in rows}


def test_gamma_rule_without_any_ctf_events(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    assert not (lake.root / "raw/polymarket/ctf_events").exists()
    res = _resolutions(lake)
    closed_at = datetime(2024, 3, 1, 12, tzinfo=UTC)
    assert res["1"] == {
        "market_id": "1",
        "condition_id": _condition(1),
        "closed": True,
        "resolved": True,
        "payouts": [1.0, 0.0],
        "winning_outcome_index": 0,
        "resolution_source": "gamma",
        "uma_resolution_status": "resolved",
        "resolved_at": closed_at,
    }
    assert (res["2"]["payouts"], res["2"]["winning_outcome_index"]) == ([1.0, 0.0], 0)
    assert (res["3"]["payouts"], res["3"]["winning_outcome_index"]) == ([0.5, 0.5], None)
    assert res["3"]["resolved"] and res["3"]["resolution_source"] == "gamma"
    for pending in ("4", "5"):
        assert not res[pending]["resolved"] and res[pending]["payouts"] is None
        assert res[pending]["resolution_source"] is None and res[pending]["resolved_at"] is None
    assert res["4"]["uma_resolution_status"] == "proposed"
    assert (res["6"]["resolved"], res["6"]["winning_outcome_index"]) == (True, 1)
    assert res["6"]["uma_resolution_status"] is None
    assert res["7"]["closed"] and not res["7"]["resolved"]  # closed but unresolved stays apart
    assert not res["8"]["closed"] and not res["8"]["resolved"]


def test_chain_resolution_wins_over_gamma(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    _write_ctf_day(
        lake,
        "2024-03-02",
        [
            (_condition(1), 2, [0, 1]),  # the chain says No although Gamma's prices say Yes
            (_condition(4).upper().replace("0X", "0x"), 2, [1, 1]),  # proposed on Gamma
            (_condition(7), 3, [1, 0, 0]),  # 3 numerators for a 2-outcome market: unusable
            (_condition(8), 2, [0, 0]),  # zero numerators: not a resolution
            (_condition(99), 2, [1, 0]),  # a condition the lake has no market for
        ],
    )
    res = _resolutions(lake)
    assert len(res) == len(MARKETS)
    assert res["1"]["payouts"] == [0.0, 1.0] and res["1"]["winning_outcome_index"] == 1
    assert res["1"]["resolution_source"] == "chain" and res["1"]["resolved_at"] == CHAIN_AT
    assert res["4"]["resolved"] and res["4"]["payouts"] == [0.5, 0.5]
    assert res["4"]["winning_outcome_index"] is None and res["4"]["resolution_source"] == "chain"
    assert res["4"]["uma_resolution_status"] == "proposed"  # Gamma's status is kept as is
    assert not res["7"]["resolved"] and not res["8"]["resolved"]
    assert res["2"]["resolution_source"] == "gamma"


def test_earliest_condition_resolution_counts(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    _write_ctf_day(lake, "2024-03-02", [(_condition(5), 2, [0, 1])])
    _write_ctf_day(lake, "2024-03-05", [(_condition(5), 2, [1, 0])])
    res = _resolutions(lake)["5"]
    assert (res["winning_outcome_index"], res["resolved_at"]) == (1, CHAIN_AT)


@pytest.mark.parametrize(("resolved", "winner", "payouts"), [(True, 1, [0.0, 1.0]),
                                                            (False, None, None)])  # fmt: skip
def test_lake_written_before_the_payouts_column(
    tmp_path: Path, resolved: bool, winner: int | None, payouts: list | None
) -> None:
    # raw/markets written by an older version has resolved/winning_outcome_index only.
    lake = Lake(tmp_path / "parquet")
    target = lake.root / "raw/polymarket/markets.parquet"
    target.parent.mkdir(parents=True)
    with connect() as con:
        con.execute(
            f"""COPY (SELECT '9' AS market_id, '{_condition(9)}' AS condition_id,
                       ['Yes', 'No'] AS outcomes, ['1', '2'] AS token_ids,
                       [0.0, 1.0] AS outcome_prices, true AS closed,
                       TIMESTAMPTZ '{CLOSED_AT}' AS closed_time, {resolved} AS resolved,
                       CAST({winner if winner is not None else "NULL"} AS INTEGER)
                           AS winning_outcome_index)
                TO {sql_string(target)} (FORMAT parquet)"""
        )
    res = _resolutions(lake)["9"]
    assert (res["resolved"], res["winning_outcome_index"], res["payouts"]) == (
        resolved,
        winner,
        payouts,
    )


def test_groups_summary_and_catalog_read_the_one_definition(tmp_path: Path) -> None:
    lake = _lake(tmp_path)
    _write_ctf_day(lake, "2024-03-02", [(_condition(4), 2, [1, 1])])  # proposed on Gamma
    overrides = tmp_path / "groups.yaml"
    overrides.write_text('groups:\n  - id: g\n    markets: ["1", "3", "4", "5"]\n')
    with connect() as con:
        build_election_groups(con, lake, overrides)
        summary = build_market_summary(con, lake, as_of=CHAIN_AT)
        rows = {
            r["market_id"]: r
            for r in con.execute(f"SELECT * FROM read_parquet({sql_string(summary.path)})")
            .arrow()
            .read_all()
            .to_pylist()
        }
    members = {m.market_id: m for g in read_groups(lake) for m in g.members}
    assert (members["1"].won, members["1"].payout) == (True, 1.0)
    assert (members["3"].won, members["3"].payout) == (False, 0.5)  # Gamma's 50/50
    assert (members["4"].won, members["4"].payout) == (False, 0.5)  # the chain's 50/50
    assert (members["5"].resolved, members["5"].payout) == (False, None)  # disputed
    assert (rows["3"]["status"], rows["3"]["payouts"], rows["3"]["winning_outcome"]) == (
        "resolved",
        [0.5, 0.5],
        None,
    )
    assert (rows["4"]["status"], rows["4"]["resolution_source"]) == ("resolved", "chain")
    assert (rows["5"]["status"], rows["5"]["uma_resolution_status"]) == (
        "closed_unresolved",
        "disputed",
    )
    assert (rows["2"]["winning_outcome"], rows["2"]["resolved_at"]) == (
        "Yes",
        datetime(2024, 3, 1, 12, tzinfo=UTC),
    )
    assert (summary.resolved, summary.closed_unresolved, summary.open) == (5, 2, 1)
    catalog = tmp_path / "catalog.duckdb"
    refresh_catalog(lake, catalog)
    with connect(catalog, read_only=True) as con:
        chain = con.execute(
            "SELECT market_id, payouts FROM resolutions WHERE resolution_source = 'chain'"
        ).fetchall()
    assert chain == [("4", [0.5, 0.5])]
