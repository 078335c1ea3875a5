"""The market-clustered trades copy: query_trades answers exactly as a plain scan would.

Every comparison is against a plain DuckDB query over a glob of the raw trade files, on a
private copy of the sample lake, before and after day partitions are rewritten, added or
removed, and before and after the delta tier takes the changed days.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import polymkt_dagster.lib.serving.trades_by_market as tbm
from polymkt_dagster.lib.core.duck import connect
from polymkt_dagster.lib.core.lake import DAY_COLUMN, Lake
from polymkt_dagster.lib.core.schemas import TRADES
from polymkt_dagster.lib.ingest.trades import TRADES_ROW_GROUP
from polymkt_dagster.lib.serving.queries import query_trades
from polymkt_dagster.lib.serving.trades_by_market import (
    DELTA_TIER,
    TRADES_ARROW_SCHEMA,
    read_markets,
    refresh,
    serving_dir,
    tier_key,
    tier_path,
)


def _private_copy(lake: Lake, target: Path) -> Lake:
    shutil.copytree(lake.root, target)
    return Lake(target, bucket_count=lake.bucket_count)


@pytest.fixture
def lake(sample_lake: Lake, tmp_path: Path) -> Lake:
    return _private_copy(sample_lake, tmp_path / "parquet")


@pytest.fixture
def bucketed_lake(bucketed_sample_lake: Lake, tmp_path: Path) -> Lake:
    return _private_copy(bucketed_sample_lake, tmp_path / "bucketed")


def _plain(
    lake: Lake,
    markets: list[str],
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int | None = None,
) -> pa.Table:
    """The reference: every raw trade file, no pruning, no copy."""
    where = ["market_id IN (SELECT unnest($markets))"]
    if start:
        where.append('"timestamp" >= $start')
    if end:
        where.append('"timestamp" < $end')
    sql = (
        f"SELECT * FROM read_parquet('{lake.table_dir(TRADES.name)}/**/*.parquet', "
        f"hive_partitioning = false) WHERE {' AND '.join(where)} "
        'ORDER BY "timestamp" DESC, order_fill_id'
    ) + (f" LIMIT {limit}" if limit else "")
    params: dict[str, object] = {"markets": markets}
    if start:
        params["start"] = start
    if end:
        params["end"] = end
    with connect() as con:
        return con.execute(sql, params).to_arrow_table().cast(TRADES_ARROW_SCHEMA)


def _markets_by_volume(lake: Lake) -> list[str]:
    with connect() as con:
        return [
            r[0]
            for r in con.execute(
                f"SELECT market_id FROM {lake.scan_sql(TRADES)} WHERE market_id IS NOT NULL "
                "GROUP BY 1 ORDER BY count(*) DESC, 1"
            ).fetchall()
        ]


def _assert_same_answers(lake: Lake, markets: list[str], *, copy_only: bool = False) -> None:
    """query_trades equals the plain scan; with copy_only, without one raw read.

    copy_only hands query_trades a closed DuckDB connection: reading any day from the raw
    partitions would fail on it, so passing proves the copy's tiers answered everything.
    """
    closed = connect()
    closed.close()
    busiest = markets[0]
    times = _plain(lake, [busiest]).column("timestamp").to_pylist()
    middle = times[len(times) // 2]
    cases: list[tuple[list[str], dict[str, object]]] = [
        ([busiest], {}),
        (markets[:1] + markets[-3:], {}),
        (markets[:60], {}),
        (markets[:60], {"limit": 25}),
        ([busiest], {"start": middle}),
        ([busiest], {"end": middle}),
        (markets[:30], {"start": middle - timedelta(days=20), "end": middle}),
        (["no-such-market"], {}),
    ]
    for ids, kwargs in cases:
        con = closed if copy_only else None
        got = query_trades(lake, ids, con=con, **kwargs)  # type: ignore[arg-type]
        want = _plain(lake, ids, **kwargs)  # type: ignore[arg-type]
        assert got.schema == want.schema
        assert got.equals(want), (ids[:3], kwargs, got.num_rows, want.num_rows)


def _rewrite_day_keeping_every_other_trade(lake: Lake, day_files: list[Path]) -> int:
    """Replace one day partition through the lake's own partition writer; rows kept."""
    table = pa.concat_tables(pq.read_table(p) for p in day_files)
    kept = table.filter(pc.equal(pc.bit_wise_and(pa.array(range(table.num_rows)), 1), 0))
    day = kept.column("timestamp")[0].as_py().date()
    kept = kept.sort_by([("market_id", "ascending"), ("timestamp", "ascending")])
    kept = kept.append_column(DAY_COLUMN, pa.array([day] * kept.num_rows, pa.date32()))
    lake.write_sorted_days(
        TRADES.name,
        pa.RecordBatchReader.from_batches(kept.schema, kept.to_batches()),
        row_group_size=TRADES_ROW_GROUP,
    )
    return kept.num_rows


def test_copy_answers_exactly_as_a_plain_scan(lake: Lake) -> None:
    markets = _markets_by_volume(lake)
    report = refresh(lake)
    assert report.rows_written == sum(pq.read_metadata(p).num_rows for p in lake.files(TRADES.name))
    listing = lake.listing(TRADES.name)
    served = read_markets(lake, markets[:5], listing)
    assert served.table is not None and served.table.num_rows > 0
    assert served.raw_days == set()  # everything from the copy
    _assert_same_answers(lake, markets, copy_only=True)
    again = refresh(lake)
    assert again.tiers_rebuilt == [] and not again.delta_rebuilt  # nothing changed


def test_rewritten_and_removed_days_are_read_from_raw_until_refreshed(lake: Lake) -> None:
    markets = _markets_by_volume(lake)
    refresh(lake)
    busiest = markets[0]
    days = sorted({t.date() for t in _plain(lake, [busiest]).column("timestamp").to_pylist()})
    rewritten, removed = days[len(days) // 2], days[-1]
    before = query_trades(lake, [busiest]).num_rows

    kept = _rewrite_day_keeping_every_other_trade(lake, lake.day_files(TRADES.name, rewritten))
    lake.remove_day(TRADES.name, removed)
    assert kept > 0

    served = read_markets(lake, [busiest], lake.listing(TRADES.name))
    assert served.raw_days == {rewritten}  # the removed day has no raw files left to read
    after = query_trades(lake, [busiest])
    assert after.num_rows < before
    assert removed not in {t.date() for t in after.column("timestamp").to_pylist()}
    _assert_same_answers(lake, markets)

    # a refresh puts only the rewritten day in the delta tier; the year tier stays
    report = refresh(lake)
    assert report.tiers_rebuilt == [] and report.delta_rebuilt
    assert report.delta_days == [rewritten]
    assert report.rows_written == kept
    served = read_markets(lake, [busiest], lake.listing(TRADES.name))
    assert served.raw_days == set() and served.delta_days == {rewritten}
    _assert_same_answers(lake, markets, copy_only=True)
    assert not refresh(lake).delta_rebuilt  # up to date: nothing rebuilt

    # the daily fold rebuilds the year from raw and empties the delta
    folded = refresh(lake, fold_after=timedelta(0))
    assert folded.tiers_rebuilt == sorted({tier_key(rewritten), tier_key(removed)})
    assert folded.delta_days == [] and not tier_path(lake, DELTA_TIER, 0).parent.exists()
    served = read_markets(lake, [busiest], lake.listing(TRADES.name))
    assert served.raw_days == set() and served.delta_days == set()
    _assert_same_answers(lake, markets, copy_only=True)


def test_a_day_rewritten_again_after_the_delta_is_read_from_raw(lake: Lake) -> None:
    markets = _markets_by_volume(lake)
    refresh(lake)
    days = lake.partition_days(TRADES.name)
    today, yesterday = days[-1], days[-2]
    _rewrite_day_keeping_every_other_trade(lake, lake.day_files(TRADES.name, yesterday))
    _rewrite_day_keeping_every_other_trade(lake, lake.day_files(TRADES.name, today))
    assert refresh(lake).delta_days == [yesterday, today]
    # the next sync rewrites today again: yesterday still from the delta, today from raw
    _rewrite_day_keeping_every_other_trade(lake, lake.day_files(TRADES.name, today))
    served = read_markets(lake, markets[:100], lake.listing(TRADES.name))
    assert served.raw_days == {today} and served.delta_days == {yesterday}
    _assert_same_answers(lake, markets)
    report = refresh(lake)
    assert report.delta_rebuilt and report.tiers_rebuilt == []
    _assert_same_answers(lake, markets, copy_only=True)

    # a day removed from the lake leaves the delta at the next refresh, without a fold
    lake.remove_day(TRADES.name, yesterday)
    _assert_same_answers(lake, markets, copy_only=True)
    report = refresh(lake)
    assert report.delta_days == [today] and report.tiers_rebuilt == []
    _assert_same_answers(lake, markets, copy_only=True)
    lake.remove_day(TRADES.name, today)
    report = refresh(lake)
    assert report.delta_days == [] and report.tiers_rebuilt == []
    assert not tier_path(lake, DELTA_TIER, 0).parent.exists()
    _assert_same_answers(lake, markets, copy_only=True)


def test_a_year_with_many_changed_days_is_folded(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    markets = _markets_by_volume(lake)
    refresh(lake)
    monkeypatch.setattr(tbm, "FOLD_DAYS", 2)
    days = lake.partition_days(TRADES.name)
    for day in days[-2:]:
        _rewrite_day_keeping_every_other_trade(lake, lake.day_files(TRADES.name, day))
    assert refresh(lake).delta_days == days[-2:]  # two days: still the delta
    _rewrite_day_keeping_every_other_trade(lake, lake.day_files(TRADES.name, days[5]))
    report = refresh(lake)  # three: past FOLD_DAYS, the year is rebuilt
    assert report.tiers_rebuilt == [tier_key(days[5])] and report.delta_days == []
    _assert_same_answers(lake, markets, copy_only=True)


def test_a_day_newer_than_the_copy_is_read_from_raw(lake: Lake) -> None:
    markets = _markets_by_volume(lake)
    last = lake.partition_days(TRADES.name)[-1]
    source = lake.day_files(TRADES.name, last)
    moved = [p.read_bytes() for p in source]
    lake.remove_day(TRADES.name, last)
    refresh(lake)
    for path, content in zip(source, moved, strict=True):  # the day arrives after the refresh
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    assert last in read_markets(lake, markets[:40], lake.listing(TRADES.name)).raw_days
    _assert_same_answers(lake, markets)
    report = refresh(lake)  # the new day goes to the delta tier
    assert report.delta_days == [last] and report.tiers_rebuilt == []
    assert read_markets(lake, markets[:40], lake.listing(TRADES.name)).raw_days == set()
    _assert_same_answers(lake, markets, copy_only=True)


def test_bucketed_lake_and_no_copy_agree(bucketed_lake: Lake) -> None:
    markets = _markets_by_volume(bucketed_lake)
    _assert_same_answers(bucketed_lake, markets)  # no copy yet: the raw path
    refresh(bucketed_lake)
    assert serving_dir(bucketed_lake).is_dir()
    _assert_same_answers(bucketed_lake, markets)
    day = bucketed_lake.partition_days(TRADES.name)[3]
    one_bucket = bucketed_lake.day_files(TRADES.name, day)[:1]
    _rewrite_day_keeping_every_other_trade(bucketed_lake, one_bucket)
    # rewriting any one bucket of a day makes that whole day stale in the copy
    served = read_markets(bucketed_lake, markets[:50], bucketed_lake.listing(TRADES.name))
    assert day in served.raw_days
    _assert_same_answers(bucketed_lake, markets)
    report = refresh(bucketed_lake)  # the whole day (every bucket file) goes to the delta
    assert report.delta_days == [day] and report.tiers_rebuilt == []
    served = read_markets(bucketed_lake, markets[:50], bucketed_lake.listing(TRADES.name))
    assert served.raw_days == set() and day in served.delta_days
    _assert_same_answers(bucketed_lake, markets, copy_only=True)


def test_listing_sees_new_and_replaced_files(lake: Lake) -> None:
    first = lake.listing(TRADES.name)
    day = first[0].day
    path = Path(first[0].path)
    later = datetime(2031, 1, 2, tzinfo=UTC).date()
    extra = lake.day_dir(TRADES.name, later) / "part-0.parquet"
    extra.parent.mkdir(parents=True)
    shutil.copyfile(path, extra)
    replacement = path.with_name(".replacement.tmp")
    shutil.copyfile(path, replacement)
    replacement.replace(path)

    second = lake.listing(TRADES.name)
    assert [f.day for f in second] == [f.day for f in first] + [later]
    assert second[0].day == day and second[0].identity != first[0].identity
    assert lake.files(TRADES.name, start=later) == [extra]
