"""CTF position events (docs/architecture.md §3.1): decoding known logs, validation, and the
sync from the local JSON-RPC node and activity subgraph into a real lake, exactly once."""

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from polymkt_dagster.lib.core.duck import connect
from polymkt_dagster.lib.core.http import RetryPolicy
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.schemas import CTF_EVENTS
from polymkt_dagster.lib.ingest.sources.ctf_events import (
    TOPICS,
    CtfColumns,
    CtfRpcSource,
    DecodeError,
    decode_ctf_log,
    encode_ctf_log,
    topic0_of,
)
from polymkt_dagster.lib.ingest.sources.ctf_goldsky import CtfGoldskySource
from polymkt_dagster.lib.ingest.sync import ctf_events_state, sync_ctf_events
from polymkt_dagster.lib.ingest.sync_state import Coverage
from polymkt_local.polymarket_apis import (
    BASE_BLOCK,
    ActivityServer,
    CtfStore,
    FillStore,
    RpcServer,
    burst_fills,
    ctf_event_rows,
)

FAST = RetryPolicy(attempts=5, base_delay_s=0.01, max_delay_s=0.05, timeout_s=2.0)
TOKEN = "21742633143463906290569050155826241533067272736897614950488156847949938836455"
START_S = 1_700_000_000  # 2023-11-14
BLOCKS = 200_000  # ~4.6 days of 2 s blocks

# Published topic0 values (generated go-ethereum bindings of ConditionalTokens and the
# NegRiskAdapter, e.g. "FilterPositionSplit ... binding the contract event 0x2e6bb91f…").
PUBLISHED_TOPICS = {
    ("conditional_tokens", "PositionSplit"):
        "0x2e6bb91f8cbcda0c93623c54d0403a43514fabc40084ec96b6d5379a74786298",
    ("conditional_tokens", "PositionsMerge"):
        "0x6f13ca62553fcc2bcd2372180a43949c1e4cebba603901ede2f4e14f36b282ca",
    ("conditional_tokens", "PayoutRedemption"):
        "0x2682012a4a4f1973119f1c9b90745d1bd91fa2bab387344f044cb3586864d18d",
    ("conditional_tokens", "ConditionResolution"):
        "0xb44d84d3289691f71497564b85d4233648d9dbae8cbdbb4329f301c3a0185894",
    ("neg_risk_adapter", "PositionSplit"):
        "0xbbed930dbfb7907ae2d60ddf78345610214f26419a0128df39b6cc3d9e5df9b0",
    ("neg_risk_adapter", "PositionsMerge"):
        "0xba33ac50d8894676597e6e35dc09cff59854708b642cd069d21eb9c7ca072a04",
    ("neg_risk_adapter", "PositionsConverted"):
        "0xb03d19dddbc72a87e735ff0ea3b57bef133ebe44e1894284916a84044deb367e",
    ("neg_risk_adapter", "PayoutRedemption"):
        "0x9140a6a270ef945260c03894b3c6b3b2695e9d5101feef0ff24fec960cfd3224",
}  # fmt: skip
CT = "0x4d97dcd97ec945f40cf65f87097ace5ea0476045"
NRA = "0xd91e80cf2e7be2e162c6513ced06f1dd0da35296"
USER = "41792a63ad17e7a210c808de4177e64a561eccee"
CONDITION = "95dbea2403eefccc30a0b4f276e0dd94d8030ac0f826aa2702ebd835cd75985c"
TX = "0x" + "92ebcfb0" * 8


def _word(value: int) -> str:
    return f"{value:064x}"


def test_topic0_values_equal_the_published_ones() -> None:
    for (contract, event), published in PUBLISHED_TOPICS.items():
        assert topic0_of(contract, event) == published
    assert len(set(TOPICS)) == 8


def test_decodes_a_hand_written_conditional_tokens_split() -> None:
    # PositionSplit(stakeholder, collateralToken, parentCollectionId, conditionId, partition,
    # amount): data = collateral, offset of the array (0x60), amount, array length, 1, 2.
    log = {
        "address": CT,
        "topics": [PUBLISHED_TOPICS[("conditional_tokens", "PositionSplit")],
                   "0x" + "0" * 24 + USER, "0x" + "0" * 64, "0x" + CONDITION],
        "data": "0x" + "0" * 24 + "2791bca1f2de4661ed88a30c99a7a9449aa84174"
                + _word(0x60) + _word(25_000_000) + _word(2) + _word(1) + _word(2),
        "blockNumber": hex(65_000_123), "logIndex": "0x3b", "transactionHash": TX,
    }  # fmt: skip
    decoded = decode_ctf_log(log)
    assert decoded == {
        "block_number": 65_000_123,
        "log_index": 59,
        "transaction_hash": TX,
        "contract": "conditional_tokens",
        "event": "PositionSplit",
        "stakeholder": "0x" + USER,
        "condition_id": "0x" + CONDITION,
        "collateral_token": "0x2791bca1f2de4661ed88a30c99a7a9449aa84174",
        "parent_collection_id": "0x" + "0" * 64,
        "index_sets": ["1", "2"],
        "amount": 25_000_000,
        "source": "rpc",
    }


def test_decodes_hand_written_neg_risk_redemption_and_conversion() -> None:
    # NegRiskAdapter PayoutRedemption(redeemer, conditionId, amounts, payout): 11 USDC of NO.
    redemption = {
        "address": NRA,
        "topics": [PUBLISHED_TOPICS[("neg_risk_adapter", "PayoutRedemption")],
                   "0x" + "0" * 24 + USER, "0x" + CONDITION],
        "data": "0x" + _word(0x40) + _word(11_000_000) + _word(2) + _word(0) + _word(11_000_000),
        "blockNumber": "0x10", "logIndex": "0x0", "transactionHash": TX,
    }  # fmt: skip
    decoded = decode_ctf_log(redemption)
    assert decoded["event"] == "PayoutRedemption" and decoded["contract"] == "neg_risk_adapter"
    assert decoded["amounts"] == [0, 11_000_000] and decoded["payout"] == 11_000_000
    assert decoded["condition_id"] == "0x" + CONDITION and decoded["stakeholder"] == "0x" + USER
    market = "ab" * 31 + "00"
    conversion = {
        "address": NRA,
        "topics": [PUBLISHED_TOPICS[("neg_risk_adapter", "PositionsConverted")],
                   "0x" + "0" * 24 + USER, "0x" + market, "0x" + _word(0b101)],
        "data": "0x" + _word(7_000_000),
        "blockNumber": "0x10", "logIndex": "0x1", "transactionHash": TX,
    }  # fmt: skip
    decoded = decode_ctf_log(conversion)
    assert decoded["neg_risk_market_id"] == "0x" + market and decoded["index_sets"] == ["5"]
    assert decoded["amount"] == 7_000_000 and "condition_id" not in decoded


def test_every_event_kind_round_trips_through_the_abi() -> None:
    rows = ctf_event_rows(16, first_block=BASE_BLOCK, last_block=BASE_BLOCK + 100)
    for row in rows:
        decoded = decode_ctf_log(encode_ctf_log(row))
        for name, value in row.items():
            assert decoded.get(name) == value, (row["event"], name)


def test_malformed_logs_and_overflowing_values_are_rejected_with_a_reason() -> None:
    good = encode_ctf_log(ctf_event_rows(1, first_block=BASE_BLOCK, last_block=BASE_BLOCK)[0])
    with pytest.raises(DecodeError, match="indexed arguments"):
        decode_ctf_log({**good, "topics": good["topics"][:2]})
    with pytest.raises(DecodeError, match="not a CTF position event"):
        decode_ctf_log({**good, "address": NRA})  # a ConditionalTokens topic from the adapter
    with pytest.raises(DecodeError, match="undecodable"):
        decode_ctf_log({**good, "data": good["data"][:-64]})
    columns = CtfColumns()
    base = decode_ctf_log(good) | {"timestamp": START_S}
    assert columns.add("ok", **base)
    assert not columns.add("big", **(base | {"log_index": 9, "amount": 2**70}))
    assert not columns.add("no condition", **(base | {"log_index": 10, "condition_id": None}))
    assert [(r.where, r.field) for r in columns.rejects] == [
        ("big", "amount"),
        ("no condition", "condition_id"),
    ]
    assert "BIGINT" in columns.rejects[0].reason
    table = columns.to_table()
    assert table.num_rows == 1 and table["id"][0].as_py() == f"{base['transaction_hash']}_500"


# ---------------------------------------------------------------------------------------
# Sync from the local node and subgraph
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ctf_store() -> CtfStore:
    clock = FillStore(burst_fills(3, START_S, TOKEN))  # the 2 s block grid from START_S
    rows = ctf_event_rows(400, first_block=BASE_BLOCK + 10, last_block=BASE_BLOCK + BLOCKS)
    return CtfStore(rows, clock.block_timestamp)


@pytest.fixture
def rpc(ctf_store: CtfStore) -> Iterator[RpcServer]:
    clock = FillStore(burst_fills(3, START_S, TOKEN))
    server = RpcServer(
        clock, ctf=ctf_store, max_block_range=40_000, latest_block=BASE_BLOCK + BLOCKS + 100
    )
    with server:
        yield server


def _window(store: CtfStore) -> tuple[datetime, datetime]:
    return (
        datetime.fromtimestamp(int(store.timestamp.min()), UTC),
        datetime.fromtimestamp(int(store.timestamp.max()) + 1, UTC),
    )


def _lake_rows(lake: Lake) -> list[tuple]:
    with connect() as con:
        return con.execute(
            f"SELECT id, event, contract, source FROM {lake.scan_sql(CTF_EVENTS)}"
        ).fetchall()


def test_rpc_sync_is_exactly_once_across_faults_restarts_and_overlaps(
    tmp_path: Path, rpc: RpcServer, ctf_store: CtfStore
) -> None:
    lake = Lake(tmp_path / "lake")
    start, end = _window(ctf_store)
    rpc.fail_next(429, retry_after="0.05")
    rpc.fail_next(503)
    source = CtfRpcSource(rpc.base_url, retry=FAST, initial_span=80_000, max_span=80_000)
    first = sync_ctf_events(lake, source, start, end, max_batches=1, batch_rows=50)
    assert first.stopped_reason == "max_batches" and 0 < first.rows_new < len(ctf_store)
    assert source.range_splits >= 1  # the node refused 80k blocks; the range was halved
    # A restart resumes at the watermark; a resync of the whole window adds nothing twice.
    second = sync_ctf_events(lake, CtfRpcSource(rpc.base_url, retry=FAST), start, end)
    assert second.complete and second.rows_new == len(ctf_store) - first.rows_new
    again = sync_ctf_events(lake, CtfRpcSource(rpc.base_url, retry=FAST), start, end, resync=True)
    assert again.rows_fetched == len(ctf_store) and again.rows_new == 0
    assert again.duplicates == len(ctf_store)
    rows = _lake_rows(lake)
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)) and set(ids) == ctf_store.expected_ids()
    assert {r[1] for r in rows} == {
        "PositionSplit", "PositionsMerge", "PayoutRedemption", "ConditionResolution",
        "PositionsConverted",
    }  # fmt: skip
    assert {r[3] for r in rows} == {"rpc"}
    assert sum(second.rows_by_event.values()) == second.rows_fetched
    assert rpc.failed_requests >= 2
    coverage = Coverage.from_json(ctf_events_state(lake, "rpc").load()["coverage"])
    assert coverage.end is not None
    days = lake.partition_days(CTF_EVENTS.name)
    assert len(days) >= 4  # day partitions by block time


def test_rpc_sync_keeps_good_events_and_rejects_an_overflowing_one(
    tmp_path: Path, rpc: RpcServer, ctf_store: CtfStore
) -> None:
    row = dict(ctf_store.rows[0], log_index=900, amount=2**64)  # a split of 2^64 shares
    block = int(row["block_number"])
    rpc.extra_logs[block] = [encode_ctf_log(row)]
    lake = Lake(tmp_path / "lake")
    report = sync_ctf_events(
        lake,
        CtfRpcSource(rpc.base_url, retry=FAST),
        *_window(ctf_store),
        rejects_path=tmp_path / "rejects.csv",
    )
    assert report.rejected == 1 and report.reject_reasons == {"amount": 1}
    assert len(_lake_rows(lake)) == len(ctf_store)
    text = (tmp_path / "rejects.csv").read_text()
    assert f"rpc block {block} log 900" in text and "BIGINT" in text


def test_activity_subgraph_sync_and_overlap_with_the_chain(
    tmp_path: Path, rpc: RpcServer, ctf_store: CtfStore
) -> None:
    lake = Lake(tmp_path / "lake")
    window = _window(ctf_store)
    with ActivityServer(ctf_store) as activity:
        # one merge with a negative amount: rejected once, though later batches read it again
        second, broken = activity.entities["merges"][13]  # a merge two batches read
        activity.entities["merges"][13] = (second, {**broken, "amount": "-5"})
        activity.fail_next(500)
        source = CtfGoldskySource(activity.base_url, retry=FAST, page_size=7)
        report = sync_ctf_events(lake, source, *window, batch_rows=40)
    broken_id = broken["id"].split("_")[0] + "_" + str(int(broken["id"].split("_")[1], 16))
    kept = {i for i, r in zip(ctf_store.ids, ctf_store.rows, strict=True)
            if r["event"] != "ConditionResolution" and i != broken_id}  # fmt: skip
    rows = _lake_rows(lake)
    assert report.complete and report.rejected == 1 and report.reject_reasons == {"amount": 1}
    assert sorted(r[0] for r in rows) == sorted(kept)  # ids rebuilt with decimal log indexes
    assert {r[3] for r in rows} == {"goldsky"} and {r[2] for r in rows} == {None}
    # The chain then adds what the subgraph lacks; rows both saw stay one row each.
    sync_ctf_events(lake, CtfRpcSource(rpc.base_url, retry=FAST), *window)
    rows = _lake_rows(lake)
    assert len(rows) == len({r[0] for r in rows}) == len(ctf_store)
