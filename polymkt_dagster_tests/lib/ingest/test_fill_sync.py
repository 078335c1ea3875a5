"""Order fills from the local Goldsky and RPC servers into a real lake: paging, decoding,
resuming, limits, and the exactly-once guarantee."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from polymkt_dagster.lib.core.duck import connect
from polymkt_dagster.lib.core.http import RetryPolicy
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.schemas import ORDER_FILLED
from polymkt_dagster.lib.ingest.sources.goldsky import GoldskySource
from polymkt_dagster.lib.ingest.sources.rpc import (
    V2_ORDER_FILLED,
    DecodeError,
    RpcSource,
    decode_order_filled,
)
from polymkt_dagster.lib.ingest.sync import MemoryGuard, fills_state, sync_order_fills, sync_status
from polymkt_dagster.lib.ingest.sync_state import Coverage
from polymkt_local.polymarket_apis import (
    SAMPLE_DIR,
    FillStore,
    GoldskyServer,
    RpcServer,
    burst_fills,
)

FAST = RetryPolicy(attempts=5, base_delay_s=0.01, max_delay_s=0.05, timeout_s=2.0)
TOKEN = "21742633143463906290569050155826241533067272736897614950488156847949938836455"
DAY = 86_400


def _lake_ids(lake: Lake) -> list[str]:
    with connect() as con:
        rows = con.execute(f"SELECT id FROM {lake.scan_sql(ORDER_FILLED)}").fetchall()
    return [r[0] for r in rows]


def _window(store: FillStore) -> tuple[datetime, datetime]:
    first = datetime.fromtimestamp(int(store.timestamp.min()), UTC)
    return first, datetime.fromtimestamp(int(store.timestamp.max()) + 1, UTC)


@pytest.fixture(scope="module")
def burst_store() -> FillStore:
    """Sample fills of a fortnight plus 2,500 fills in one second (a busy block)."""
    sample = FillStore.from_csv(SAMPLE_DIR / "orderFilled.csv")
    cutoff = int(sample.timestamp.min()) + 14 * DAY
    table = pa.table(
        {
            "timestamp": pa.array(sample.timestamp[sample.timestamp < cutoff]),
            **{
                name: pa.array(values[: int((sample.timestamp < cutoff).sum())])
                for name, values in (
                    ("maker", sample.maker), ("makerAssetId", sample.maker_asset),
                    ("makerAmountFilled", sample.maker_amount), ("taker", sample.taker),
                    ("takerAssetId", sample.taker_asset),
                    ("takerAmountFilled", sample.taker_amount), ("transactionHash", sample.tx),
                )
            },
        }
    )  # fmt: skip
    burst = burst_fills(2_500, int(sample.timestamp.min()) + 3 * DAY, TOKEN)
    return FillStore(pa.concat_tables([table, burst.cast(table.schema)]))


@pytest.fixture
def goldsky(burst_store: FillStore) -> Iterator[GoldskyServer]:
    with GoldskyServer(burst_store) as server:
        yield server


def test_goldsky_pages_by_timestamp_and_id_across_a_busy_second(
    tmp_path: Path, goldsky: GoldskyServer, burst_store: FillStore
) -> None:
    lake = Lake(tmp_path / "lake")
    goldsky.fail_next(429, retry_after="0.1")
    goldsky.fail_next(502)
    goldsky.truncate_next()
    report = sync_order_fills(
        lake, GoldskySource(goldsky.base_url, retry=FAST), *_window(burst_store), batch_rows=700
    )
    ids = _lake_ids(lake)
    assert len(ids) == len(set(ids)) == len(burst_store)
    assert set(ids) == set(burst_store.ids)
    assert report.rows_new == len(burst_store) and report.retries == 3
    assert report.complete and report.batches >= 2


def test_paging_by_timestamp_alone_would_lose_fills(
    goldsky: GoldskyServer, burst_store: FillStore
) -> None:
    """The server really puts a second across a page boundary: the naive pager loses rows."""
    from polymkt_dagster.lib.ingest.sources.goldsky import QUERY_BY_TIME

    source = GoldskySource(goldsky.base_url, retry=FAST)
    seen: set[str] = set()
    cursor, end = _window(burst_store)[0].timestamp(), _window(burst_store)[1].timestamp()
    while True:
        page = source._events(
            QUERY_BY_TIME, {"from": str(int(cursor)), "to": str(int(end)), "first": 1000},
            cursor="naive",
        )  # fmt: skip
        seen.update(e["id"] for e in page)
        if len(page) < 1000:
            break
        cursor = max(int(e["timestamp"]) for e in page) + 1  # timestamp_gt paging
    assert len(seen) < len(burst_store)


def test_duplicates_across_pages_land_once(tmp_path: Path, burst_store: FillStore) -> None:
    with GoldskyServer(burst_store, duplicate_across_pages=True) as server:
        lake = Lake(tmp_path / "lake")
        report = sync_order_fills(
            lake, GoldskySource(server.base_url, retry=FAST), *_window(burst_store)
        )
    ids = _lake_ids(lake)
    assert len(ids) == len(set(ids)) == len(burst_store)
    assert report.duplicates > 0


def test_max_batches_resume_and_rerun_are_exactly_once(
    tmp_path: Path, goldsky: GoldskyServer, burst_store: FillStore
) -> None:
    lake = Lake(tmp_path / "lake")
    window = _window(burst_store)
    first = sync_order_fills(
        lake, GoldskySource(goldsky.base_url, page_size=10), *window, batch_rows=10,
        max_batches=2,
    )  # fmt: skip
    assert first.stopped_reason == "max_batches" and first.batches == 2
    partial = set(_lake_ids(lake))
    assert 0 < len(partial) < len(burst_store)
    state = fills_state(lake, "goldsky").load()
    assert len(state["coverage"]) == 1
    requests_before = len(goldsky.requests)
    second = sync_order_fills(lake, GoldskySource(goldsky.base_url), *window, batch_rows=5000)
    assert second.complete and second.rows_new == len(burst_store) - len(partial)
    # A third run finds everything covered and asks the server for nothing but its head.
    requests_before = len(goldsky.requests)
    third = sync_order_fills(lake, GoldskySource(goldsky.base_url), *window)
    assert third.rows_fetched == 0 and len(goldsky.requests) - requests_before == 1
    ids = _lake_ids(lake)
    assert len(ids) == len(set(ids)) == len(burst_store)
    assert sync_status(lake)["goldsky"]["unit"] == "second"


def test_dry_run_writes_nothing(
    tmp_path: Path, goldsky: GoldskyServer, burst_store: FillStore
) -> None:
    lake = Lake(tmp_path / "lake")
    report = sync_order_fills(lake, GoldskySource(goldsky.base_url), *_window(burst_store),
                              dry_run=True)  # fmt: skip
    assert report.rows_fetched == len(burst_store) and report.rows_new == 0
    assert not lake.files(ORDER_FILLED.name) and not fills_state(lake, "goldsky").load()


def test_memory_guard_stops_cleanly_with_state_saved(
    tmp_path: Path, goldsky: GoldskyServer, burst_store: FillStore
) -> None:
    lake = Lake(tmp_path / "lake")
    window = _window(burst_store)
    # A limit the machine is always above: the guard trips after the first batch.
    report = sync_order_fills(lake, GoldskySource(goldsky.base_url), *window, batch_rows=500,
                              memory_guard=MemoryGuard(limit_percent=0.0))  # fmt: skip
    assert report.stopped_reason == "memory" and report.batches == 1
    coverage = Coverage.from_json(fills_state(lake, "goldsky").load()["coverage"])
    with connect() as con:
        in_lake = con.execute(
            f"SELECT count(*), max(epoch(timestamp)) FROM {lake.scan_sql(ORDER_FILLED)}"
        ).fetchone()
    assert in_lake[0] == report.rows_new > 0
    assert coverage.end is not None and in_lake[1] < coverage.end  # state covers what landed
    assert report.peak_rss_mb < 2048
    resumed = sync_order_fills(lake, GoldskySource(goldsky.base_url), *window)
    assert resumed.complete
    assert sorted(_lake_ids(lake)) == sorted(burst_store.ids)


# ---- RPC -----------------------------------------------------------------------------


def _v2_log(side: int, token: int, maker_amount: int, taker_amount: int) -> dict:
    words = [side, token, maker_amount, taker_amount, 7, 0, 0]
    return {
        "address": "0xe111180000d2663c0091e4f400237545b87b996b",
        "topics": [
            V2_ORDER_FILLED,
            "0x" + "ab" * 32,
            "0x" + "0" * 24 + "11" * 20,
            "0x" + "0" * 24 + "22" * 20,
        ],
        "data": "0x" + "".join(f"{w:064x}" for w in words),
        "blockNumber": hex(100),
        "logIndex": hex(3),
        "transactionHash": "0x" + "cd" * 32,
    }


def test_v2_decoding_maps_side_to_asset_ids() -> None:
    buy = decode_order_filled(_v2_log(0, int(TOKEN), 5_000_000, 10_000_000))
    assert (buy["maker_asset_id"], buy["taker_asset_id"]) == ("0", TOKEN)
    assert buy["maker"] == "0x" + "11" * 20 and buy["taker"] == "0x" + "22" * 20
    assert (buy["fee"], buy["contract_version"], buy["exchange"]) == (7, "v2", "v2_ctf")
    sell = decode_order_filled(_v2_log(1, int(TOKEN), 10_000_000, 5_000_000))
    assert (sell["maker_asset_id"], sell["taker_asset_id"]) == (TOKEN, "0")
    with pytest.raises(DecodeError, match="side is 2"):
        decode_order_filled(_v2_log(2, int(TOKEN), 1, 1))
    short = _v2_log(0, 1, 1, 1) | {"data": "0x" + "00" * 64}
    with pytest.raises(DecodeError, match="expected 224"):
        decode_order_filled(short)


@pytest.fixture(scope="module")
def chain_store() -> FillStore:
    """The sample's last ten days on a chain whose last three days run the V2 contracts."""
    sample = FillStore.from_csv(SAMPLE_DIR / "orderFilled.csv")
    end = int(sample.timestamp.max())
    keep = sample.timestamp >= end - 10 * DAY
    columns = {
        "timestamp": sample.timestamp[keep],
        "maker": [m for m, k in zip(sample.maker, keep, strict=True) if k],
        "makerAssetId": [m for m, k in zip(sample.maker_asset, keep, strict=True) if k],
        "makerAmountFilled": [m for m, k in zip(sample.maker_amount, keep, strict=True) if k],
        "taker": [m for m, k in zip(sample.taker, keep, strict=True) if k],
        "takerAssetId": [m for m, k in zip(sample.taker_asset, keep, strict=True) if k],
        "takerAmountFilled": [m for m, k in zip(sample.taker_amount, keep, strict=True) if k],
        "transactionHash": [m for m, k in zip(sample.tx, keep, strict=True) if k],
    }
    return FillStore(pa.table(columns), v2_from=end - 3 * DAY)


def test_rpc_sync_decodes_v1_and_v2_with_adaptive_ranges(
    tmp_path: Path, chain_store: FillStore
) -> None:
    with RpcServer(chain_store, max_block_range=3_000) as server:
        server.fail_next(503)
        server.stall_next(1, 2.5)
        source = RpcSource(server.base_url, confirmations=0, initial_span=20_000, retry=FAST)
        lake = Lake(tmp_path / "lake")
        report = sync_order_fills(lake, source, *_window(chain_store), batch_rows=2_000)
        assert server.refused_ranges > 0 and source.range_splits > 0
        assert report.retries == 2
    with connect() as con:
        rows = con.execute(
            f"SELECT contract_version, count(*), count(DISTINCT id), min(block_number), "
            f"count(*) FILTER (WHERE exchange IS NULL OR log_index IS NULL) "
            f"FROM {lake.scan_sql(ORDER_FILLED)} GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert [r[0] for r in rows] == ["v1", "v2"] and all(r[1] == r[2] and r[4] == 0 for r in rows)
    assert sum(r[1] for r in rows) == len(chain_store)
    assert set(_lake_ids(lake)) == set(chain_store.ids)
    assert fills_state(lake, "rpc").load()["position_unit"] == "block"


def test_rpc_confirmations_hold_back_recent_blocks(tmp_path: Path, chain_store: FillStore) -> None:
    last_block = int(chain_store.block.max())
    with RpcServer(chain_store, latest_block=last_block + 50) as server:
        lake = Lake(tmp_path / "lake")
        start, end = _window(chain_store)
        held = sync_order_fills(lake, RpcSource(server.base_url, confirmations=100), start,
                                end + timedelta(days=1))  # fmt: skip
        newest = {chain_store.ids[i] for i in range(len(chain_store))
                  if chain_store.block[i] > last_block + 50 - 100}  # fmt: skip
        assert newest and not newest & set(_lake_ids(lake))
        assert held.end_position == last_block + 50 - 100 + 1
        server.latest_block = last_block + 200  # the chain moves on
        sync_order_fills(lake, RpcSource(server.base_url, confirmations=100), start,
                         end + timedelta(days=1))  # fmt: skip
    assert sorted(_lake_ids(lake)) == sorted(chain_store.ids)


def test_goldsky_and_rpc_rows_of_one_fill_deduplicate(
    tmp_path: Path, chain_store: FillStore
) -> None:
    lake = Lake(tmp_path / "lake")
    window = _window(chain_store)
    with GoldskyServer(chain_store) as goldsky, RpcServer(chain_store) as rpc:
        sync_order_fills(lake, GoldskySource(goldsky.base_url), *window)
        report = sync_order_fills(lake, RpcSource(rpc.base_url, confirmations=0), *window)
    assert report.rows_fetched == len(chain_store) and report.rows_new == 0
    ids = _lake_ids(lake)
    assert len(ids) == len(set(ids)) == len(chain_store)


def test_a_malformed_log_is_rejected_and_the_rest_land(
    tmp_path: Path, chain_store: FillStore
) -> None:
    with RpcServer(chain_store) as server:
        block = int(chain_store.block[5])
        broken = chain_store.log(5) | {"data": "0x1234", "logIndex": hex(999)}
        server.extra_logs[block] = [broken]
        lake = Lake(tmp_path / "lake")
        report = sync_order_fills(lake, RpcSource(server.base_url, confirmations=0),
                                  *_window(chain_store),
                                  rejects_path=tmp_path / "rejects.csv")  # fmt: skip
    assert report.rejected == 1 and report.reject_reasons == {"(log)": 1}
    assert "expected 160" in (tmp_path / "rejects.csv").read_text()
    assert set(_lake_ids(lake)) == set(chain_store.ids)


def test_window_coverage_reports_gaps(tmp_path: Path, chain_store: FillStore) -> None:
    lake = Lake(tmp_path / "lake")
    start, end = _window(chain_store)
    middle = start + (end - start) / 2
    with GoldskyServer(chain_store) as server:
        sync_order_fills(lake, GoldskySource(server.base_url), middle, end)  # the recent half
        later = sync_order_fills(lake, GoldskySource(server.base_url), start, end)
    # The older half was fetched by the second run; nothing remains uncovered.
    assert later.gaps == [] and later.rows_new > 0
    coverage = Coverage.from_json(fills_state(lake, "goldsky").load()["coverage"])
    assert coverage.intervals == [(int(start.timestamp()), coverage.end)]


def test_days_to_sync_adds_yesterday_after_midnight_or_when_behind() -> None:
    from polymkt_dagster.lib.ingest.sync import days_to_sync

    noon = datetime(2026, 5, 10, 12, 0, tzinfo=UTC)
    synced = noon - timedelta(minutes=10)
    assert days_to_sync(noon, synced) == [noon.date()]
    assert days_to_sync(noon, None) == [noon.date()]
    after_midnight = datetime(2026, 5, 10, 0, 20, tzinfo=UTC)
    assert days_to_sync(after_midnight, after_midnight) == [
        after_midnight.date() - timedelta(days=1), after_midnight.date()
    ]  # fmt: skip
    behind = datetime(2026, 5, 9, 23, 0, tzinfo=UTC)
    assert days_to_sync(noon, behind)[0] == behind.date()


def test_coverage_merges_intervals_and_finds_gaps() -> None:
    coverage = Coverage()
    coverage.add(10, 20)
    coverage.add(30, 40)
    coverage.add(20, 25)  # touches the first: merged
    assert coverage.intervals == [(10, 25), (30, 40)]
    assert coverage.first_uncovered(12) == 25 and coverage.first_uncovered(27) == 27
    assert coverage.next_covered_start(25) == 30 and coverage.next_covered_start(35) is None
    assert coverage.gaps(0, 50) == [(0, 10), (25, 30), (40, 50)]
    assert Coverage.from_json(coverage.to_json()).intervals == coverage.intervals
