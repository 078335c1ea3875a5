"""P&L snapshots in bounded memory: chunked by wallet group and by time, same answers."""

# ruff: noqa: F811 - pytest fixtures imported from wallet_helpers are parameters here

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import duckdb
import pytest

from polymkt_dagster.lib.core.duck import MemoryLimitError, connect
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.schemas import TRADES
from polymkt_dagster.lib.wallets.snapshots import (
    TICKS_PER_DAY,
    SnapshotEngine,
    bounded_query,
    day_end,
    day_grid,
    plan_queries,
    snapshot_days,
)
from polymkt_dagster_tests.wallet_helpers import wallet_lake  # noqa: F401 - fixture


def busiest_wallets(con: duckdb.DuckDBPyConnection, lake: Lake, count: int) -> list[str]:
    """The ``count`` wallets with the most fills as maker."""
    rows = con.execute(
        f"SELECT maker FROM {lake.scan_sql(TRADES)} GROUP BY 1 ORDER BY count(*) DESC LIMIT ?",
        [count],
    ).fetchall()
    return [row[0] for row in rows]


def test_plan_keeps_every_query_within_the_pair_budget() -> None:
    counts = {f"w{i:02d}": n for i, n in enumerate([0, 3, 500, 40, 7000, 12, 1])}
    plan = plan_queries(counts, pairs=288 * 600)
    assert sorted(w for group, _ in plan.groups for w in group) == sorted(counts)
    for group, ticks in plan.groups:
        load = sum(counts[w] for w in group)
        # a query joins at most load x ticks open pairs: within budget unless one wallet
        # alone holds more positions than one snapshot time allows
        assert load * ticks <= 288 * 600 or (len(group) == 1 and ticks == 1)
    assert len(plan.groups) >= 3  # the 7000-position wallet alone, the rest packed
    assert plan.days_per_query == 1
    lone = plan_queries({"a": 10, "b": 0})
    assert lone.groups == [(["a", "b"], 31 * TICKS_PER_DAY)] and lone.days_per_query == 31
    assert plan_queries({}).groups == []


def test_tiny_budget_gives_the_same_snapshots(wallet_lake: Lake) -> None:
    with connect() as con:
        wallets = busiest_wallets(con, wallet_lake, 6)
        days = [date(2024, 7, 30), date(2024, 7, 31)]
        got: dict[str, list[dict]] = {"roomy": [], "tiny": []}
        snapshot_days(
            con, wallet_lake, wallets, days, use_checkpoints=False,
            on_day=lambda d, t: got["roomy"].extend(t.to_pylist()),
        )  # fmt: skip
        tiny = snapshot_days(
            con, wallet_lake, wallets, days, use_checkpoints=False, pairs_per_query=2000,
            on_day=lambda d, t: got["tiny"].extend(t.to_pylist()),
        )  # fmt: skip
    assert tiny.queries_per_chunk > len(wallets)  # split by wallet and within each day
    assert len(got["roomy"]) == 2 * 288 * len(wallets)
    assert len(got["tiny"]) == len(got["roomy"])
    for tiny_row, roomy_row in zip(got["tiny"], got["roomy"], strict=True):
        # same rows in the same order; sums may differ in the last bits (summation order)
        exact = ("snapshot_at", "wallet", "open_positions")
        assert [tiny_row[k] for k in exact] == [roomy_row[k] for k in exact]
        numbers = [k for k in roomy_row if k not in exact]
        assert [tiny_row[k] for k in numbers] == pytest.approx(
            [roomy_row[k] for k in numbers], rel=1e-9, abs=1e-6
        )
    assert any(r["open_positions"] for r in got["roomy"])


def test_a_query_over_the_memory_limit_names_the_setting(wallet_lake: Lake) -> None:
    with connect() as con:
        wallets = busiest_wallets(con, wallet_lake, 20)
        engine = SnapshotEngine.prepare(con, wallet_lake, wallets, day_end(date(2024, 8, 31)))
        # just above what the prepared ledger already holds, far below what a month of marks
        # for 20 busy wallets needs (DuckDB refuses a limit below the memory in use)
        in_use = con.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchone()[0]
        con.execute(f"SET memory_limit = '{int(in_use) + 2**18}B'")
        con.execute("SET max_temp_directory_size = '0B'")  # no spilling out of it either
        with pytest.raises(MemoryLimitError) as caught:
            month = [t for d in range(1, 32) for t in day_grid(date(2024, 8, d))]
            bounded_query(engine.at, month, wallets)
    assert "POLYMKT_DUCKDB_MEMORY_LIMIT" in str(caught.value)
    assert "raise" in str(caught.value) and "20 wallet(s)" in str(caught.value)


def test_the_sweep_over_many_times_equals_position_by_position(wallet_lake: Lake) -> None:
    """Many times are answered by a sweep over (state, price) overlaps, a few position by
    position at each time: both agree at every time, across trades and resolutions."""
    with connect() as con:
        wallets = busiest_wallets(con, wallet_lake, 8)
        start = datetime(2024, 1, 1, tzinfo=UTC)
        times = [start + timedelta(hours=6 * i) for i in range(4 * 366)]
        engine = SnapshotEngine.prepare(con, wallet_lake, wallets, times[-1])
        try:
            swept = engine.at(times).to_pylist()
            checked = times[::37] + times[-3:]
            one_by_one = [row for t in checked for row in engine.at([t]).to_pylist()]
        finally:
            engine.close()
    by_key = {(r["snapshot_at"], r["wallet"]): r for r in swept}
    assert len(by_key) == len(times) * len(wallets)
    assert sum(r["open_positions"] for r in one_by_one) > 0
    assert len({r["exposure"] for r in one_by_one}) > len(wallets)  # the marks moved
    for expected in one_by_one:
        got = by_key[(expected["snapshot_at"], expected["wallet"])]
        assert got["open_positions"] == expected["open_positions"]
        for name in ("realized_pnl", "unrealized_pnl", "total_pnl", "exposure"):
            assert got[name] == pytest.approx(expected[name], rel=1e-9, abs=1e-6), name
