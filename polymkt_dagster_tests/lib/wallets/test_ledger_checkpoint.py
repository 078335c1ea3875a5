"""Positions from a day-end ledger checkpoint plus the newer day files equal the positions
from the whole history; a checkpoint whose inputs changed is never used."""

# ruff: noqa: F811 - pytest fixtures imported from wallet_helpers are parameters here

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from polymkt_dagster.lib.core.duck import connect
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.schemas import CTF_EVENTS, MARKETS, TRADES
from polymkt_dagster.lib.wallets.ledger_checkpoint import (
    LedgerState,
    MergedState,
    checkpoint_days,
    input_fingerprint,
    load_checkpoint,
)
from polymkt_dagster.lib.wallets.ledger_input import register_token_info
from polymkt_dagster.lib.wallets.position_reports import oversell_report, wallet_totals
from polymkt_dagster.lib.wallets.position_summary import SUMMARY_TYPES
from polymkt_dagster.lib.wallets.positions import (
    PositionsUpdate,
    compute_positions,
    update_positions,
)
from polymkt_dagster.lib.wallets.rollups import GRAINS, build_rollups, market_table, wallet_table
from polymkt_dagster_tests.wallet_helpers import wallet_lake  # noqa: F401 - fixture

KEYS = ["wallet", "token_id"]
EXACT = ["wallet", "token_id", "market_id", "outcome_index", "status", "buys", "sells",
         "oversold_fills", "position_events", "first_trade_at", "last_trade_at",
         "resolved_at"]  # fmt: skip


@pytest.fixture
def lake(wallet_lake: Lake, tmp_path: Path) -> Lake:
    """A private copy per test: these tests move and rewrite day files."""
    shutil.copytree(wallet_lake.root, tmp_path / "parquet")
    return Lake(tmp_path / "parquet")


@contextmanager
def without_last_days(lake: Lake, count: int) -> Iterator[None]:
    """The lake as it was before its last ``count`` trading days arrived (their trades and
    CTF event files moved aside, then put back)."""
    days = sorted(lake.partition_days(TRADES.name))[-count:]
    aside = lake.root.parent / "aside"
    moved: list[tuple[Path, Path]] = []
    for table in (TRADES.name, CTF_EVENTS.name):
        for day in days:
            for path in lake.day_files(table, day):
                target = aside / path.relative_to(lake.root)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(path, target)
                moved.append((target, path))
    try:
        yield
    finally:
        for target, path in moved:
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(target, path)


def positions(path: Path) -> pa.Table:
    return duckdb.sql(
        f"SELECT * EXCLUDE (as_of) FROM read_parquet('{path}') ORDER BY {', '.join(KEYS)}"
    ).to_arrow_table()


def assert_same_positions(actual: pa.Table, expected: pa.Table) -> None:
    assert actual.num_rows == expected.num_rows > 0
    for name in expected.column_names:
        got, want = actual.column(name), expected.column(name)
        if name in EXACT or not pa.types.is_floating(want.type):
            assert got.cast(want.type).equals(want), name
        else:
            np.testing.assert_allclose(
                got.to_numpy(), want.to_numpy(), rtol=1e-9, atol=1e-9, err_msg=name
            )


def update_and_save(
    con: duckdb.DuckDBPyConnection, lake: Lake, out: Path, chunk_rows: int = 1_000_000
) -> PositionsUpdate:
    """``update_positions`` and then its checkpoint saved, as the positions asset does."""
    result = update_positions(con, lake, out, chunk_rows=chunk_rows)
    result.save_checkpoint(con, lake)
    return result


def full_history(con: duckdb.DuckDBPyConnection, lake: Lake, tmp: Path) -> pa.Table:
    compute_positions(con, lake, output=tmp / "full.parquet")
    return positions(tmp / "full.parquet")


def test_the_next_days_start_from_the_checkpoint(lake: Lake, tmp_path: Path) -> None:
    out = tmp_path / "positions.parquet"
    days = sorted(lake.partition_days(TRADES.name))
    with connect() as con:
        with without_last_days(lake, 2):
            first = update_and_save(con, lake, out)
        assert first.started_from is None  # nothing saved yet: the whole history
        saved = days[-3] - timedelta(days=1)  # the day before that lake's last day
        assert first.saved == saved
        assert checkpoint_days(lake) == [saved]

        second = update_and_save(con, lake, out)  # two new days arrived
        assert second.started_from == saved
        assert second.saved == days[-1] - timedelta(days=1)
        assert second.ledger_rows < first.ledger_rows
        assert (second.active_wallets or 0) > 0
        assert_same_positions(positions(out), full_history(con, lake, tmp_path))

        again = update_and_save(con, lake, out)  # the next sync of the same day
        assert (again.started_from, again.saved) == (second.saved, None)
        assert again.ledger_rows < second.ledger_rows
        assert_same_positions(positions(out), full_history(con, lake, tmp_path))


def test_the_day_turn_leaves_its_checkpoint_to_save_after_the_positions(
    lake: Lake, tmp_path: Path
) -> None:
    out = tmp_path / "positions.parquet"
    days = sorted(lake.partition_days(TRADES.name))
    with connect() as con:
        with without_last_days(lake, 2):
            update_and_save(con, lake, out)
        # small ranges: the merge of checkpoint and window crosses many range boundaries,
        # with new groups and updated ones on either side of them
        turn = update_positions(con, lake, out, chunk_rows=7)
        assert turn.pending_checkpoint == days[-1] - timedelta(days=1)
        assert checkpoint_days(lake) == [days[-3] - timedelta(days=1)]  # not yet saved
        assert_same_positions(positions(out), full_history(con, lake, tmp_path))
        assert turn.save_checkpoint(con, lake) == turn.saved == days[-1] - timedelta(days=1)
        assert turn.pending_checkpoint is None and turn.save_checkpoint(con, lake) == turn.saved
        assert checkpoint_days(lake) == [days[-3] - timedelta(days=1), turn.saved]

        again = update_and_save(con, lake, out, chunk_rows=5)
        assert (again.started_from, again.saved) == (turn.saved, None)
        assert_same_positions(positions(out), full_history(con, lake, tmp_path))


def test_the_reports_counted_while_writing_equal_sql_over_the_file(
    lake: Lake, tmp_path: Path
) -> None:
    out = tmp_path / "positions.parquet"
    for day in sorted(lake.partition_days(TRADES.name))[:5]:  # sells of shares never seen bought
        for table in (TRADES.name, CTF_EVENTS.name):
            for path in lake.day_files(table, day):
                path.unlink()
    with connect() as con:
        tally = update_positions(con, lake, out, chunk_rows=11).tally  # many pieces
        assert tally is not None
        relation = f"read_parquet('{out}')"
        counts = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE shares < 0), count(DISTINCT wallet), "
            "count(*) FILTER (WHERE status = 'open'), "
            f"count(*) FILTER (WHERE status = 'redeemable') FROM {relation}"
        ).fetchone()
        assert (tally.rows, tally.negative, tally.wallet_count, tally.open_positions,
                tally.redeemable) == counts  # fmt: skip
        assert tally.open_positions > 0 and tally.redeemable > 0
        for limit in (3, 10_000):  # a cut inside the ranking, and every wallet
            want = wallet_totals(con, relation, limit=limit)
            got = tally.wallet_totals(limit=limit)
            assert got.column("wallet").to_pylist() == want.column("wallet").to_pylist()
            for name in want.column_names[1:]:
                np.testing.assert_allclose(
                    got.column(name).to_numpy(zero_copy_only=False).astype(float),
                    want.column(name).to_numpy(zero_copy_only=False).astype(float),
                    rtol=1e-9, atol=1e-6, err_msg=name,
                )  # fmt: skip
        want_oversells = oversell_report(con, relation, worst=4)
    got_oversells = tally.oversell_report(worst=4)
    assert want_oversells.positions_with_oversells > 0
    assert got_oversells.positions_with_oversells == want_oversells.positions_with_oversells
    for name in ("sell_proceeds", "oversold_proceeds", "oversold_shares", "realized_pnl"):
        assert getattr(got_oversells, name) == pytest.approx(getattr(want_oversells, name))
    assert got_oversells.worst.column("wallet").to_pylist() == (
        want_oversells.worst.column("wallet").to_pylist()
    )
    np.testing.assert_allclose(
        got_oversells.worst.column("oversold_share").to_numpy(),
        want_oversells.worst.column("oversold_share").to_numpy(),
        rtol=1e-9,
    )


def test_a_rewritten_day_falls_back_to_an_older_checkpoint(lake: Lake, tmp_path: Path) -> None:
    out = tmp_path / "positions.parquet"
    days = sorted(lake.partition_days(TRADES.name))
    with connect() as con:
        with without_last_days(lake, 1):
            update_and_save(con, lake, out)  # saves days[-3]
        update_and_save(con, lake, out)  # saves days[-2]
        assert checkpoint_days(lake) == [days[-3], days[-2]]

        # a late fill rewrites day[-2]: its checkpoint no longer holds, days[-3]'s still does
        day_file = lake.day_files(TRADES.name, days[-2])[0]
        table = pq.read_table(day_file)
        late = table.slice(0, 1)
        late = late.set_column(
            late.schema.get_field_index("order_fill_id"), "order_fill_id",
            pa.array(["late-fill"], late.schema.field("order_fill_id").type),
        )  # fmt: skip
        pq.write_table(pa.concat_tables([table, late]), day_file)
        update = update_and_save(con, lake, out)
        assert update.started_from == days[-3]
        assert update.saved == days[-2]
        assert_same_positions(positions(out), full_history(con, lake, tmp_path))


def test_a_damaged_or_stale_checkpoint_is_never_used(lake: Lake, tmp_path: Path) -> None:
    out = tmp_path / "positions.parquet"
    days = sorted(lake.partition_days(TRADES.name))
    with connect() as con:
        update_and_save(con, lake, out)
        info = register_token_info(con, lake, "_t")
        assert load_checkpoint(con, lake, on_or_before=days[-2], token_info=info) is not None
        summary = lake.root / "_cache/ledger_checkpoints" / f"day={days[-2]}" / "summary.arrow"
        summary.write_bytes(summary.read_bytes()[:100])  # a crash mid-write, say
        assert load_checkpoint(con, lake, on_or_before=days[-2], token_info=info) is None
        update = update_and_save(con, lake, out)
        assert update.started_from is None
        assert_same_positions(positions(out), full_history(con, lake, tmp_path))
        os.utime(lake.day_files(CTF_EVENTS.name, days[0])[0])  # the oldest day touched
        assert load_checkpoint(con, lake, on_or_before=days[-2], token_info=info) is None


def test_the_fingerprint_follows_the_markets_the_events_read(lake: Lake) -> None:
    days = sorted(lake.partition_days(TRADES.name))
    markets_file = lake.single_file(MARKETS.name)
    markets = pq.read_table(markets_file)
    with connect() as con:
        info = register_token_info(con, lake, "_t")
        before = input_fingerprint(con, lake, days[-1], token_info=info)

        def fingerprint_of(table: pa.Table) -> str:
            pq.write_table(table, markets_file)
            info = register_token_info(con, lake, "_t")
            return input_fingerprint(con, lake, days[-1], token_info=info)

        # a market that no position event reads (new markets arrive every hour) leaves the
        # checkpoints valid; one whose events the ledger read does not
        new_market = markets.slice(0, 1)
        for name, value in (("market_id", "new-market"), ("condition_id", "0xnew"),
                            ("token_ids", ["1", "2"])):  # fmt: skip
            index = new_market.schema.get_field_index(name)
            field = new_market.schema.field(name)
            new_market = new_market.set_column(index, field, pa.array([value], field.type))
        assert fingerprint_of(pa.concat_tables([markets, new_market])) == before
        assert fingerprint_of(markets.slice(1)) != before
        assert before != input_fingerprint(con, lake, days[-1] - timedelta(days=1), token_info=info)


def test_rollups_from_the_checkpoint_equal_those_from_the_history(
    lake: Lake, tmp_path: Path
) -> None:
    last = max(lake.partition_days(TRADES.name))
    tables = [wallet_table(g) for g in GRAINS] + [market_table(g) for g in GRAINS]

    def rollups() -> dict[str, pa.Table]:
        return {
            t: duckdb.sql(
                f"SELECT * FROM read_parquet({[str(f) for f in lake.day_files(t, last)]}) "
                "ORDER BY ALL"
            ).to_arrow_table()
            for t in tables
        }

    with connect() as con:
        with without_last_days(lake, 1):
            update_and_save(con, lake, tmp_path / "positions.parquet")
        report = build_rollups(con, lake, [last])
        assert report.from_checkpoint == last - timedelta(days=2)  # saved without the last day
        from_checkpoint = rollups()
        shutil.rmtree(lake.root / "_cache")
        history = build_rollups(con, lake, [last])
        assert history.from_checkpoint is None
        assert history.fills_in_ledger > report.fills_in_ledger
        expected = rollups()
    for table in tables:
        got, want = from_checkpoint[table], expected[table]
        assert got.num_rows == want.num_rows > 0, table
        assert got.column_names == want.column_names
        for name in want.column_names:
            if pa.types.is_floating(want.schema.field(name).type):
                np.testing.assert_allclose(
                    got.column(name).to_numpy(zero_copy_only=False),
                    want.column(name).to_numpy(zero_copy_only=False),
                    rtol=1e-9, atol=1e-6, err_msg=f"{table}.{name}",
                )  # fmt: skip
            else:
                assert got.column(name).equals(want.column(name)), f"{table}.{name}"


def _state(
    groups: list[tuple[str, str, float]], wallets: list[str], tokens: list[str], opened: int = -1
) -> LedgerState:
    """A ledger state of bought positions (wallet, token, shares) over sorted names; the
    group at ``opened`` was opened from a checkpoint's 2 shares (a window's state)."""
    keys = [(wallets.index(w) << 32) | tokens.index(t) for w, t, _ in groups]
    columns = {name: np.zeros(len(groups), dtype=kind.to_pandas_dtype())
               for name, kind in SUMMARY_TYPES.items()}  # fmt: skip
    columns["gkey"] = np.array(keys, dtype=np.int64)
    columns["shares"] = np.array([s for _, _, s in groups])
    columns["bought_shares"] = columns["shares"].copy()
    columns["buys"] = np.ones(len(groups), dtype=np.int64)
    columns["avg_price"] = np.full(len(groups), 0.5)
    if opened >= 0:
        columns["position_events"][opened] = 1
        columns["event_bought_shares"][opened] = 2.0
        columns["event_bought_usd"][opened] = 1.0
        columns["bought_shares"][opened] -= 2.0
    return LedgerState(pa.table(columns), pa.array(wallets), pa.array(tokens),
                       np.full(len(tokens), 0.5))  # fmt: skip


@pytest.mark.parametrize("rows", [1, 2, 3, 100])
def test_a_merge_in_ranges_equals_the_whole_merge(rows: int) -> None:
    state = _state([("b", "t1", 1.0), ("b", "t2", 2.0), ("d", "t1", 3.0)],
                   ["b", "d"], ["t1", "t2"])  # fmt: skip
    # new groups before the first old one, between old ones and after the last, and an
    # update of an old one (its opening row plus one buy)
    window = _state([("a", "t1", 5.0), ("b", "t2", 4.0), ("c", "t3", 6.0), ("e", "t3", 7.0)],
                    ["a", "b", "c", "e"], ["t1", "t2", "t3"], opened=1)  # fmt: skip
    merged = MergedState(state, window)
    whole = merged.whole().summary
    pieces = pa.concat_tables(merged.rows(a, b) for a, b in merged.ranges(rows))
    assert pieces.equals(whole)
    names = merged.wallets.to_pylist()
    tokens = merged.tokens.to_pylist()
    keys = [(names[k >> 32], tokens[k & 0xFFFFFFFF]) for k in whole.column("gkey").to_pylist()]
    assert keys == [("a", "t1"), ("b", "t1"), ("b", "t2"), ("c", "t3"), ("d", "t1"), ("e", "t3")]
    assert whole.column("shares").to_pylist() == [5.0, 1.0, 4.0, 6.0, 3.0, 7.0]
    assert whole.column("buys").to_pylist() == [1, 1, 2, 1, 1, 1]
    # the opening is no event of b/t2's: its 2 shares were already counted as bought
    assert whole.column("position_events").to_pylist() == [0] * 6
    assert whole.column("bought_shares").to_pylist() == [5.0, 1.0, 4.0, 6.0, 3.0, 7.0]
