"""Positions, suggestions, snapshots, rollups and alerts over the bundled sample's lake."""

# ruff: noqa: F811 - pytest fixtures imported from wallet_helpers are parameters here

from __future__ import annotations

import itertools
import shutil
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import pyarrow.parquet as pq
import pytest

from polymkt_dagster.lib.core.duck import connect
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.schemas import CTF_EVENTS, TRADES
from polymkt_dagster.lib.wallets import alerts as alerts_lib
from polymkt_dagster.lib.wallets.ledger_input import token_info_sql
from polymkt_dagster.lib.wallets.positions import compute_positions
from polymkt_dagster.lib.wallets.rollups import build_rollups, market_table, wallet_table
from polymkt_dagster.lib.wallets.snapshots import SnapshotEngine, day_grid, snapshot_days
from polymkt_dagster.lib.wallets.watchlists import (
    SuggestOptions,
    WatchedWallet,
    Watchlist,
    suggest_wallets,
    watched_set,
)
from polymkt_dagster_tests.wallet_helpers import WALLET as EVENT_WALLET
from polymkt_dagster_tests.wallet_helpers import (  # noqa: F401 - fixtures
    WebhookReceiver,
    build_event_lake,
    sharp_wallets,
    wallet_lake,
    webhook,
)

MID_YEAR = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def _busiest_wallet(lake: Lake, *, without_events: bool = False) -> str:
    """The wallet with the most own fills (``without_events``: of those with no CTF
    position event, whose ledger the fills alone decide)."""
    skip = (
        f"WHERE maker NOT IN (SELECT lower(stakeholder) FROM {lake.scan_sql(CTF_EVENTS)} "
        "WHERE stakeholder IS NOT NULL)"
        if without_events
        else ""
    )
    with connect() as con:
        return con.execute(
            f"SELECT maker FROM {lake.scan_sql(TRADES)} {skip} "
            "GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
        ).fetchone()[0]


def test_sharp_wallets_top_the_suggestion(wallet_lake: Lake) -> None:
    with connect() as con:
        suggestion = suggest_wallets(con, wallet_lake, SuggestOptions(top=10))
    top5 = set(suggestion.column("wallet").to_pylist()[:5])
    assert top5 == sharp_wallets()
    rows = suggestion.to_pylist()
    assert all(r["win_rate"] == 1.0 for r in rows[:5])
    assert all(r["fills"] >= 10 for r in rows)
    pnl = [r["realized_pnl"] for r in rows]
    assert pnl == sorted(pnl, reverse=True)


def test_suggestion_window_and_min_trades(wallet_lake: Lake) -> None:
    with connect() as con:
        strict = suggest_wallets(con, wallet_lake, SuggestOptions(min_trades=25, top=1000))
        windowed = suggest_wallets(
            con, wallet_lake, SuggestOptions(since=datetime(2024, 7, 1, tzinfo=UTC), top=1000)
        )
        whole = suggest_wallets(con, wallet_lake, SuggestOptions(top=1000))
    assert all(r["fills"] >= 25 for r in strict.to_pylist())
    assert strict.num_rows < whole.num_rows
    # a window counts only the fills after its start
    by_wallet = {r["wallet"]: r for r in whole.to_pylist()}
    for row in windowed.to_pylist():
        if row["wallet"] in by_wallet:
            assert row["fills"] <= by_wallet[row["wallet"]]["fills"]


def test_positions_match_a_fill_by_fill_reference(wallet_lake: Lake) -> None:
    """The busiest wallet's positions against the obvious per-fill implementation."""
    wallet = _busiest_wallet(wallet_lake, without_events=True)
    with connect() as con:
        positions = compute_positions(con, wallet_lake, wallets=[wallet])
        fills = con.execute(
            f"SELECT token_id, maker_direction, token_amount, price, coalesce(fee, 0) AS fee "
            f"FROM (SELECT *, file_row_number FROM read_parquet("
            f"'{wallet_lake.table_dir('trades')}/**/*.parquet', file_row_number = true)) "
            f'WHERE maker = $w ORDER BY "timestamp", file_row_number',
            {"w": wallet},
        ).fetchall()
        tokens = {
            r[0]: r
            for r in con.execute(
                f"SELECT token_id, payout, resolved_at FROM ({token_info_sql(wallet_lake)})"
            ).fetchall()
        }
    # shares, avg, realized, oversold shares, oversold proceeds
    state: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0, 0.0])
    for token, side, q, p, fee in fills:
        s = state[token]
        if side == "BUY":
            s[1] = (s[0] * s[1] + q * p + fee) / (s[0] + q)
            s[0] += q
        else:
            tracked = min(q, s[0])
            s[2] += tracked * (p - s[1]) - fee * tracked / q
            s[3] += q - tracked
            s[4] += (q - tracked) * p - fee * (q - tracked) / q
            s[0] -= tracked
    # the sample's busy wallets all split or merge, so the busiest one without position
    # events is a small trader (their ledgers are checked by the hand-computed event tests)
    assert positions.num_rows == len(state) >= 3
    for row in positions.to_pylist():
        shares, avg, realized, oversold, proceeds = state[row["token_id"]]
        payout = tokens[row["token_id"]][1]
        assert row["shares"] == pytest.approx(shares, abs=1e-6)
        if payout is not None:  # resolved, never redeemed: marked at the payout
            assert row["status"] == ("redeemable" if shares > 1e-9 else "closed")
            assert row["mark_price"] == payout
            assert row["settlement_pnl"] == pytest.approx(shares * (payout - avg), abs=1e-6)
        if shares > 0:
            assert row["unrealized_pnl"] == pytest.approx(
                shares * (row["mark_price"] - avg), abs=1e-6
            )
        assert row["shares"] >= 0
        assert row["realized_pnl"] == pytest.approx(realized, abs=1e-6)
        assert row["oversold_shares"] == pytest.approx(oversold, abs=1e-6)
        assert row["oversold_proceeds"] == pytest.approx(proceeds, abs=1e-6)


def test_snapshot_agrees_with_positions_as_of_the_same_time(wallet_lake: Lake) -> None:
    wallets = [*sorted(sharp_wallets())[:3], _busiest_wallet(wallet_lake)]
    with connect() as con:
        engine = SnapshotEngine.prepare(con, wallet_lake, wallets, datetime(2025, 1, 1, tzinfo=UTC))
        try:
            snap = {r["wallet"]: r for r in engine.at([MID_YEAR]).to_pylist()}
        finally:
            engine.close()
        for wallet in wallets:
            positions = compute_positions(con, wallet_lake, wallets=[wallet], as_of=MID_YEAR)
            rows = positions.to_pylist()
            assert snap[wallet]["realized_pnl"] == pytest.approx(
                sum(r["realized_pnl"] for r in rows), abs=1e-6
            )
            assert snap[wallet]["unrealized_pnl"] == pytest.approx(
                sum(r["unrealized_pnl"] or 0 for r in rows), abs=1e-6
            )
            assert snap[wallet]["exposure"] == pytest.approx(
                sum(r["exposure"] or 0 for r in rows), abs=1e-6
            )
            assert snap[wallet]["total_pnl"] == pytest.approx(
                snap[wallet]["realized_pnl"] + snap[wallet]["unrealized_pnl"]
            )


def test_snapshot_days_write_every_five_minutes(wallet_lake: Lake) -> None:
    wallets = sorted(sharp_wallets())
    days = [date(2024, 6, 1), date(2024, 6, 2)]
    seen: dict[date, int] = {}
    with connect() as con:
        first = snapshot_days(
            con, wallet_lake, wallets, days, on_day=lambda d, t: seen.__setitem__(d, t.num_rows)
        )
    assert seen == {d: 288 * len(wallets) for d in days}
    assert not first.from_checkpoint  # nothing saved before June 1
    grid = day_grid(days[0])
    assert grid[1] - grid[0] == timedelta(minutes=5) and len(grid) == 288


def test_checkpointed_days_equal_the_whole_history(wallet_lake: Lake) -> None:
    """Day D from day D-1's checkpoint gives the same snapshots as from the full history."""
    wallets = [*sorted(sharp_wallets()), _busiest_wallet(wallet_lake)]
    got: dict[str, list[dict]] = {}
    with connect() as con:
        snapshot_days(con, wallet_lake, wallets, [date(2024, 8, 30)], on_day=lambda d, t: None)
        warm = snapshot_days(
            con, wallet_lake, wallets, [date(2024, 8, 31), date(2024, 9, 1)],
            on_day=lambda d, t: got.setdefault("warm", []).extend(t.to_pylist()),
        )  # fmt: skip
        cold = snapshot_days(
            con, wallet_lake, wallets, [date(2024, 8, 31), date(2024, 9, 1)],
            on_day=lambda d, t: got.setdefault("cold", []).extend(t.to_pylist()),
            use_checkpoints=False,
        )  # fmt: skip
        # a checkpoint that does not cover a newly watched wallet is not used
        other = snapshot_days(
            con, wallet_lake, [*wallets, "0x" + "9" * 40], [date(2024, 8, 31)],
            on_day=lambda d, t: None,
        )  # fmt: skip
    assert warm.from_checkpoint and not cold.from_checkpoint and not other.from_checkpoint
    assert warm.fills < cold.fills
    assert len(got["warm"]) == len(got["cold"]) == 2 * 288 * len(wallets)
    for a, b in zip(got["warm"], got["cold"], strict=True):
        assert (a["snapshot_at"], a["wallet"]) == (b["snapshot_at"], b["wallet"])
        for key in ("realized_pnl", "unrealized_pnl", "exposure"):
            assert a[key] == pytest.approx(b[key], abs=1e-6)
        assert a["open_positions"] == b["open_positions"]


def test_a_day_run_again_starts_from_the_checkpoint_its_first_run_left(
    wallet_lake: Lake,
) -> None:
    """The sync re-runs today's snapshots every 10 minutes: only the first reads the
    whole history, and the re-run gives the same snapshots from far fewer fills."""
    wallets = sorted(sharp_wallets())
    day = [date(2024, 7, 15)]
    got: dict[str, list[dict]] = {}
    with connect() as con:
        first = snapshot_days(
            con, wallet_lake, wallets, day,
            on_day=lambda d, t: got.setdefault("first", []).extend(t.to_pylist()),
        )  # fmt: skip
        again = snapshot_days(
            con, wallet_lake, wallets, day,
            on_day=lambda d, t: got.setdefault("again", []).extend(t.to_pylist()),
        )  # fmt: skip
    assert not first.from_checkpoint and again.from_checkpoint
    assert again.fills < first.fills
    assert len(got["first"]) == len(got["again"]) == 288 * len(wallets)
    for a, b in zip(got["first"], got["again"], strict=True):
        assert (a["snapshot_at"], a["wallet"]) == (b["snapshot_at"], b["wallet"])
        for key in ("realized_pnl", "unrealized_pnl", "exposure"):
            assert a[key] == pytest.approx(b[key], abs=1e-6)
        assert a["open_positions"] == b["open_positions"]


def _read(lake: Lake, table: str) -> list[dict]:
    return [row for f in lake.files(table) for row in pq.read_table(f).to_pylist()]


def test_rollups_count_matches_once_and_are_idempotent(wallet_lake: Lake) -> None:
    days = [date(2024, 6, 1) + timedelta(days=i) for i in range(5)]
    with connect() as con:
        build_rollups(con, wallet_lake, days)
        first = {g: _read(wallet_lake, market_table(g)) for g in ("1m", "1h", "1d")}
        wallets_1d = _read(wallet_lake, wallet_table("1d"))
        build_rollups(con, wallet_lake, days)
        again = {g: _read(wallet_lake, market_table(g)) for g in ("1m", "1h", "1d")}
        expected = con.execute(
            f"SELECT sum(usd_amount) FILTER (WHERE is_taker_side), "
            f"count(*) FILTER (WHERE is_taker_side), count(*), count(DISTINCT maker) "
            f"FROM {wallet_lake.scan_sql(TRADES)} "
            f"WHERE \"timestamp\" >= '2024-06-01' AND \"timestamp\" < '2024-06-06'"
        ).fetchone()
    assert first == again  # same rows after a re-run: partitions replaced, not appended
    for grain in ("1m", "1h", "1d"):
        assert sum(r["volume_usd"] for r in first[grain]) == pytest.approx(expected[0])
        assert sum(r["trades"] for r in first[grain]) == expected[1]
        assert sum(r["fills"] for r in first[grain]) == expected[2]
    assert sum(r["trades"] for r in wallets_1d) == expected[2]  # every row is some maker's fill
    assert len({r["wallet"] for r in wallets_1d if r["trades"]}) == expected[3]
    # realized P&L is the same money whichever way it is rolled up
    assert sum(r["realized_pnl"] for r in wallets_1d) == pytest.approx(
        sum(r["realized_pnl"] for r in first["1d"]), abs=1e-6
    )
    assert all(0 <= (r["last_price"] or 0) <= 1 for r in first["1m"])


def test_alerts_threshold_cooldown_and_rerun(wallet_lake: Lake) -> None:
    wallets = sorted(sharp_wallets())
    days = wallet_lake.partition_days("trades")
    loose = watched_set([Watchlist("w", tuple(WatchedWallet(a) for a in wallets), 50.0, 0.0)])
    strict = watched_set(
        [Watchlist("w", tuple(WatchedWallet(a) for a in wallets), 50.0, 60 * 24 * 30)]
    )
    with connect() as con:
        everything = alerts_lib.build_alerts(con, wallet_lake, loose, days)
        cooled = alerts_lib.build_alerts(con, wallet_lake, strict, days)
        rows = alerts_lib.list_alerts(wallet_lake)
        # recomputing a later range reads the cooldown state from the earlier partitions
        tail = alerts_lib.build_alerts(con, wallet_lake, strict, days[len(days) // 2 :])
        rows_after = alerts_lib.list_alerts(wallet_lake)
    assert everything.alerts == everything.candidates > 10 and everything.suppressed == 0
    assert cooled.candidates == everything.candidates
    assert cooled.alerts + cooled.suppressed == cooled.candidates and cooled.suppressed > 0
    assert len(rows) == cooled.alerts
    assert {r["alert_id"] for r in rows_after} == {r["alert_id"] for r in rows}
    assert tail.alerts <= cooled.alerts
    by_pair: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    for row in rows:
        assert row["size_usd"] >= 50.0 and row["wallet"] in wallets
        by_pair[(row["wallet"], row["market_id"])].append(row["alerted_at"])
    for times in by_pair.values():
        times.sort()
        assert all(b - a >= timedelta(days=30) for a, b in itertools.pairwise(times))
    since = rows[len(rows) // 2]["alerted_at"]
    assert all(r["alerted_at"] >= since for r in alerts_lib.list_alerts(wallet_lake, since=since))


def test_webhook_delivery_retries_and_sends_once(
    wallet_lake: Lake, webhook: WebhookReceiver, tmp_path
) -> None:
    wallets = sorted(sharp_wallets())
    watched = watched_set([Watchlist("w", tuple(WatchedWallet(a) for a in wallets), 50.0, 0.0)])
    with connect() as con:
        report = alerts_lib.build_alerts(con, wallet_lake, watched, [date(2024, 3, 1)])
    if report.table is None or report.table.num_rows == 0:
        with connect() as con:
            report = alerts_lib.build_alerts(
                con, wallet_lake, watched, wallet_lake.partition_days("trades")
            )
    alerts = report.table.slice(0, 3)
    log = alerts_lib.DeliveryLog(tmp_path / "delivery.sqlite")
    sleeps: list[float] = []
    webhook.fail_next(500, 503)  # the first alert succeeds on its third try
    first = alerts_lib.deliver_alerts(alerts, webhook.url, log, sleep=sleeps.append)
    assert first.delivered == 3 and first.failed == 0
    assert first.attempts == 5 and sleeps == [0.5, 1.0]
    assert [b["alert_id"] for b in webhook.received] == alerts.column("alert_id").to_pylist()
    assert webhook.received[0]["type"] == "wallet_trade" and webhook.received[0]["size_usd"] > 0
    assert "secret-token" not in first.target and "key=" not in first.target

    second = alerts_lib.deliver_alerts(alerts, webhook.url, log, sleep=sleeps.append)
    assert second.already_delivered == 3 and second.attempts == 0

    more = report.table.slice(3, 1) if report.table.num_rows > 3 else report.table.slice(0, 0)
    if more.num_rows:
        webhook.fail_next(400)  # refused by the receiver: no retry, reported, retried later
        refused = alerts_lib.deliver_alerts(more, webhook.url, log, sleep=sleeps.append)
        assert refused.failed == 1 and refused.attempts == 1
        assert "HTTP 400" in refused.errors[0] and "secret-token" not in refused.errors[0]
        retried = alerts_lib.deliver_alerts(more, webhook.url, log, sleep=sleeps.append)
        assert retried.delivered == 1


def test_webhook_down_is_reported_not_raised(wallet_lake: Lake, tmp_path) -> None:
    import pyarrow as pa

    table = pa.Table.from_pylist(
        [{name: None for name in alerts_lib.ALERT_SCHEMA.names} | {"alert_id": "a1"}],
        schema=alerts_lib.ALERT_SCHEMA,
    )
    log = alerts_lib.DeliveryLog(tmp_path / "delivery.sqlite")
    # a closed port on loopback: connection refused every time
    report = alerts_lib.deliver_alerts(
        table, "http://127.0.0.1:9/hook", log, max_attempts=3, sleep=lambda s: None,
        timeout_s=1.0,
    )  # fmt: skip
    assert report.failed == 1 and report.attempts == 3 and "ConnectError" in report.errors[0]


@pytest.mark.parametrize("with_events", [False, True])
def test_compiled_and_numpy_positions_agree(
    wallet_lake: Lake, monkeypatch: pytest.MonkeyPatch, tmp_path, with_events: bool
) -> None:
    """The compiled summary pass and the numpy ledger path give the same positions file
    (the sample's lake; the hand-made lake with CTF position events)."""
    from polymkt_dagster.lib.wallets import ledger_kernels

    lake = build_event_lake(tmp_path / "parquet") if with_events else wallet_lake
    with connect() as con:
        compute_positions(con, lake, output=tmp_path / "compiled.parquet")
        monkeypatch.setattr(ledger_kernels, "compiled_summary", None)
        monkeypatch.setattr(ledger_kernels, "compiled_ledger", None)
        monkeypatch.setattr(ledger_kernels, "compiled_last_trade", None)
        monkeypatch.setattr(ledger_kernels, "compiled_group_order", None)  # the full sort instead
        compute_positions(con, lake, output=tmp_path / "numpy.parquet")
    compiled = pq.read_table(tmp_path / "compiled.parquet").to_pylist()
    plain = pq.read_table(tmp_path / "numpy.parquet").to_pylist()
    assert len(compiled) == len(plain) > (6 if with_events else 1000)
    for a, b in zip(compiled, plain, strict=True):
        for key, value in a.items():
            if isinstance(value, float) and key != "as_of":
                assert value == pytest.approx(b[key], rel=1e-9, abs=1e-6, nan_ok=True), key
            elif key != "as_of":
                assert value == b[key], key


def test_positions_do_not_depend_on_the_row_order_of_day_files(wallet_lake: Lake, tmp_path) -> None:
    """Day files are written sorted by market and time, which the loader's counting sort
    relies on. A file whose seconds run backwards within each token (rows of one second
    keep their order, so every tie-break by file row is the same) must give the same
    positions, through the full sort that the order check falls back to."""
    import numpy as np
    import pyarrow as pa

    reordered = Lake(tmp_path / "reordered")
    shutil.copytree(wallet_lake.root, reordered.root)
    busiest = max(reordered.files(TRADES.name), key=lambda f: pq.read_metadata(f).num_rows)
    table = pq.read_table(busiest)
    seconds = table.column("timestamp").cast(pa.int64()).to_numpy() // 1_000_000
    keys = table.append_column("_s", pa.array(seconds)).append_column(
        "_i", pa.array(np.arange(table.num_rows))
    )
    order = keys.sort_by([("token_id", "ascending"), ("_s", "descending"), ("_i", "ascending")])
    rows = order.column("_i").to_numpy()
    backwards = (
        order.column("token_id").to_numpy(zero_copy_only=False)[1:]
        == order.column("token_id").to_numpy(zero_copy_only=False)[:-1]
    ) & (seconds[rows][1:] < seconds[rows][:-1])
    assert backwards.any()  # a token's fills now run back in time in file order
    pq.write_table(table.take(order.column("_i")), busiest)
    with connect() as con:
        expected = compute_positions(con, wallet_lake).drop_columns(["as_of"])
        got = compute_positions(con, reordered).drop_columns(["as_of"])
    assert got.num_rows == expected.num_rows > 1000
    assert got.equals(expected)


def test_a_day_file_without_the_fee_column_counts_no_fee(wallet_lake: Lake, tmp_path) -> None:
    """Older partitions may lack newer columns: the loader reads them as null (no fee)."""
    import pyarrow as pa

    lakes = {}
    for name in ("no_fee_column", "zero_fees"):
        lake = Lake(tmp_path / name)
        shutil.copytree(wallet_lake.root, lake.root)
        busiest = max(lake.files(TRADES.name), key=lambda f: pq.read_metadata(f).num_rows)
        table = pq.read_table(busiest)
        index = table.schema.get_field_index("fee")
        if name == "no_fee_column":
            table = table.remove_column(index)
        else:
            table = table.set_column(index, "fee", pa.array([0.0] * table.num_rows))
        pq.write_table(table, busiest)
        lakes[name] = lake
    with connect() as con:
        without = compute_positions(con, lakes["no_fee_column"]).drop_columns(["as_of"])
        zero = compute_positions(con, lakes["zero_fees"]).drop_columns(["as_of"])
    assert without.num_rows > 1000 and without.equals(zero)


def test_numbering_dictionaries_in_many_rounds_gives_the_same_positions(
    wallet_lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wallets and tokens are numbered a batch of row groups at a time (memory); numbering
    after every row group must give the same ids, hence the same positions."""
    from polymkt_dagster.lib.wallets import fill_reader as p

    with connect() as con:
        once = compute_positions(con, wallet_lake).drop_columns(["as_of"])
        monkeypatch.setattr(p, "_PENDING_ENTRIES", 1)
        every_group = compute_positions(con, wallet_lake).drop_columns(["as_of"])
    assert once.num_rows > 1000 and every_group.equals(once)


def test_snapshots_and_rollups_read_the_position_events(tmp_path) -> None:
    """The hand-made lake of test_positions_ledger.test_lake_ledger_by_hand: snapshots,
    checkpoints and rollups count the same realized P&L as the positions (80 in all: 20
    on day 2 from the binary market's sell, 85 - 25 = 60 on day 5 from the redemption),
    and the unredeemed NO of the binary market is marked at its payout once resolved."""
    lake = build_event_lake(tmp_path / "parquet")
    days = [date(2024, 5, d) for d in range(1, 6)]
    after_conversion = datetime(2024, 5, 3, 13, tzinfo=UTC)
    end = datetime(2024, 5, 6, tzinfo=UTC)
    with connect() as con:
        engine = SnapshotEngine.prepare(con, lake, [EVENT_WALLET], end)
        try:
            snaps = engine.at([after_conversion, end]).to_pylist()
        finally:
            engine.close()
        positions = {
            at: compute_positions(con, lake, wallets=[EVENT_WALLET], as_of=at).to_pylist()
            for at in (after_conversion, end)
        }
        build_rollups(con, lake, days)
        got: dict[str, list[dict]] = {}
        for day in days:  # day by day, each from the day before's checkpoint
            snapshot_days(
                con,
                lake,
                [EVENT_WALLET],
                [day],
                on_day=lambda d, t: got.setdefault("warm", []).extend(t.to_pylist()),
            )
        snapshot_days(
            con,
            lake,
            [EVENT_WALLET],
            days,
            use_checkpoints=False,
            on_day=lambda d, t: got.setdefault("cold", []).extend(t.to_pylist()),
        )
    for snap, at, realized, unrealized in (
        (snaps[0], after_conversion, 20.0, 0.0),  # held YES2/NO2/NO-binary never traded
        (snaps[1], end, 80.0, 35.0),
    ):
        assert snap["realized_pnl"] == pytest.approx(realized)
        assert snap["unrealized_pnl"] == pytest.approx(unrealized)
        assert sum(r["realized_pnl"] for r in positions[at]) == pytest.approx(realized)
        # a never-traded token has no mark: no exposure in either (not carried at cost)
        assert snap["exposure"] == pytest.approx(sum(r["exposure"] or 0 for r in positions[at]))
    assert snaps[1]["exposure"] == pytest.approx(70.0) and snaps[1]["open_positions"] == 1
    per_day = {
        r["bucket_start"].date(): r["realized_pnl"]
        for r in _read(lake, wallet_table("1d"))
        if r["wallet"] == EVENT_WALLET
    }
    assert per_day[date(2024, 5, 2)] == pytest.approx(20.0)
    assert per_day[date(2024, 5, 5)] == pytest.approx(60.0)
    assert sum(per_day.values()) == pytest.approx(80.0)
    markets_1d = _read(lake, market_table("1d"))
    assert sum(r["realized_pnl"] for r in markets_1d) == pytest.approx(80.0)
    assert len(got["warm"]) == len(got["cold"]) == 5 * 288
    for a, b in zip(got["warm"], got["cold"], strict=True):
        for key in ("realized_pnl", "unrealized_pnl", "exposure"):
            assert a[key] == pytest.approx(b[key], abs=1e-6)
    assert got["warm"][-1]["realized_pnl"] == pytest.approx(80.0)
