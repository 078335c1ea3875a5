"""Mark-to-market P&L snapshots of watched wallets every 5 minutes.

At each snapshot time t, per wallet: realized P&L of every ledger row at or before t (fills
and CTF position events: merges, redemptions and conversions realize too, by the same
ledger as ``lib/wallets/ledger.py``), unrealized = sum over held positions of shares x (mark -
avg_price) with mark = the payout when the market resolved at or before t (held shares
realize only when redeemed), else the token's last trade price at or before t (none while
the token never traded: such shares add no unrealized P&L or exposure, as in
``compute_positions``); total = realized + unrealized, exposure = sum of shares x mark.

The ledger runs once over the wallets' whole history up to the last snapshot (average cost
is path dependent), or from the day-end checkpoint of the watched positions. Snapshot times
are then answered in DuckDB: many times by a sweep over (held state, price segment) overlaps
and a running sum per wallet (``_swept_sql``), a few position by position (``_pairs_sql``).
Each query covers at most ``PAIRS_PER_QUERY`` open (position, time) pairs: wallets are
grouped and days (or parts of a day) chunked by their open positions (``plan_queries``), so
memory stays bounded whatever the lake.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from polymkt_dagster.lib.core.duck import MemoryLimitError, memory_limit_message, sql_string
from polymkt_dagster.lib.core.lake import PART_FILE, Lake, day_end, write_atomically
from polymkt_dagster.lib.wallets.ledger_input import fills_source_sql
from polymkt_dagster.lib.wallets.ledger_state import drop_ledger_state, register_ledger_state

SNAPSHOT_INTERVAL = timedelta(minutes=5)
SNAPSHOT_COLUMNS = (
    "snapshot_at", "wallet", "realized_pnl", "unrealized_pnl", "total_pnl", "exposure",
    "open_positions",
)  # fmt: skip


def day_grid(day: date, interval: timedelta = SNAPSHOT_INTERVAL) -> list[datetime]:
    """00:00, 00:05, ... 23:55 UTC of ``day``."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    steps = int(timedelta(days=1) / interval)
    return [start + i * interval for i in range(steps)]


@dataclass(frozen=True)
class Checkpoint:
    """Watched positions at a time: wallet, token_id, shares, avg_price, realized_pnl,
    mark_price (what the ledger needs to go on without the older fills)."""

    at: datetime
    positions: pa.Table
    wallets: tuple[str, ...]

    def covers(self, wallets: Sequence[str]) -> bool:
        return set(wallets) <= set(self.wallets)


@dataclass
class SnapshotEngine:
    """The watched wallets' ledger, registered in ``con``, ready to answer any times."""

    con: duckdb.DuckDBPyConnection
    lake: Lake
    wallets: list[str]
    fills: int = 0

    @classmethod
    def prepare(
        cls,
        con: duckdb.DuckDBPyConnection,
        lake: Lake,
        wallets: Sequence[str],
        until: datetime,
        checkpoint: Checkpoint | None = None,
    ) -> SnapshotEngine:
        """Ledger of ``wallets`` up to ``until``: from the whole history, or from a
        checkpoint (positions at an earlier time) plus the fills after it."""
        engine = cls(con, lake, sorted(set(wallets)))
        since = checkpoint.at if checkpoint is not None else None
        opening = None
        if checkpoint is not None:
            con.register("_snap_opening", checkpoint.positions)
            opening = "_snap_opening"
        try:
            engine.fills = register_ledger_state(
                con, lake, wallets=engine.wallets, until=until, prefix="_snap",
                since=since, opening=opening,
            )  # fmt: skip
            price_base = (
                "SELECT NULL::VARCHAR AS token_id, 0::BIGINT AS ts_us, 0.0 AS price WHERE false"
            )
            if checkpoint is not None:
                since_us = int(checkpoint.at.timestamp() * 1_000_000)
                # realized P&L up to the checkpoint, and its marks, enter at its time
                con.execute(
                    f"INSERT INTO _snap_events SELECT wallet, NULL, token_id, {since_us}, "
                    "realized_pnl, 'opening' FROM _snap_opening"
                )
                price_base = (
                    f"SELECT token_id, {since_us}::BIGINT AS ts_us, any_value(mark_price) "
                    "AS price FROM _snap_opening WHERE mark_price IS NOT NULL GROUP BY token_id"
                )
            con.execute(
                """
                CREATE OR REPLACE TEMP TABLE _snap_cum AS
                SELECT wallet, ts_us, sum(sum(amount)) OVER (
                           PARTITION BY wallet ORDER BY ts_us
                           ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS cum_realized
                FROM _snap_events GROUP BY wallet, ts_us
                """
            )
            # last trade price per token and second (any wallet), for the marks; only the
            # day files after the checkpoint when there is one
            source = fills_source_sql(lake, until, since)
            after = f"AND \"timestamp\" > TIMESTAMPTZ '{since.isoformat()}'" if since else ""
            con.execute(
                f"""
                CREATE OR REPLACE TEMP TABLE _snap_prices AS
                SELECT token_id, epoch_us("timestamp") AS ts_us,
                       arg_max(price, file_row_number) AS price
                FROM {source}
                WHERE token_id IN (SELECT DISTINCT token_id FROM _snap_state)
                  AND "timestamp" <= TIMESTAMPTZ '{until.isoformat()}' {after}
                GROUP BY ALL
                UNION ALL {price_base}
                """
            )
            if checkpoint is not None:
                _add_marks_before(con, lake, checkpoint.at)
        finally:
            if checkpoint is not None:
                con.unregister("_snap_opening")
        return engine

    def checkpoint(self, at: datetime) -> Checkpoint:
        """Every watched position at ``at`` (shares, avg price, realized P&L, mark): the
        starting point of the next day's snapshots."""
        at_us = int(at.timestamp() * 1_000_000)
        positions = self.con.execute(
            f"""
            WITH last_state AS (
                SELECT any_value(wallet) AS wallet, any_value(token_id) AS token_id,
                       arg_max(shares, seq) AS shares, arg_max(avg_price, seq) AS avg_price
                FROM _snap_state WHERE ts_us <= {at_us}
                GROUP BY gkey
            ),
            realized AS (
                SELECT wallet, token_id, sum(amount) AS realized_pnl
                FROM _snap_events WHERE ts_us <= {at_us} GROUP BY ALL
            ),
            marks AS (
                SELECT token_id, arg_max(price, ts_us) AS mark_price
                FROM _snap_prices WHERE ts_us <= {at_us} GROUP BY token_id
            )
            SELECT wallet, token_id, coalesce(l.shares, 0.0) AS shares,
                   coalesce(l.avg_price, 0.0) AS avg_price,
                   coalesce(r.realized_pnl, 0.0) AS realized_pnl,
                   m.mark_price
            FROM last_state l
            FULL JOIN realized r USING (wallet, token_id)
            LEFT JOIN marks m USING (token_id)
            ORDER BY wallet, token_id
            """
        ).to_arrow_table()
        return Checkpoint(at, positions, tuple(self.wallets))

    def open_position_counts(self) -> dict[str, int]:
        """Per watched wallet, how many positions it ever held open: a bound on how many
        are open at any one time, which sizes the snapshot queries (``plan_queries``)."""
        rows = self.con.execute(
            "SELECT wallet, count(DISTINCT token_id) FROM _snap_state WHERE shares > 0 "
            "GROUP BY wallet"
        ).fetchall()
        counts = {str(wallet): int(n) for wallet, n in rows}
        return {wallet: counts.get(wallet, 0) for wallet in self.wallets}

    def at(self, times: Sequence[datetime], wallets: Sequence[str] | None = None) -> pa.Table:
        """Snapshot rows for each of ``wallets`` (default: every watched wallet) at each of
        ``times``, ordered by time and wallet."""
        grid_us = [int(t.timestamp() * 1_000_000) for t in times]
        grid = pa.table({"t_us": pa.array(grid_us, pa.int64())})
        first_us, last_us = min(grid_us), max(grid_us)
        chosen = self.wallets if wallets is None else sorted(set(wallets))
        wallet_table = pa.table({"wallet": pa.array(chosen, pa.string())})
        few = len(times) <= FEW_TIMES
        self.con.register("_snap_grid", grid)
        self.con.register("_snap_wallets", wallet_table)
        try:
            held = _held_sql(first_us, last_us)
            unrealized = _pairs_sql(held) if few else _swept_sql(held, first_us, last_us)
            return self.con.execute(_snapshot_sql(unrealized, few=few)).to_arrow_table()
        finally:
            self.con.unregister("_snap_grid")
            self.con.unregister("_snap_wallets")

    def close(self) -> None:
        drop_ledger_state(self.con, "_snap")
        for table in ("_snap_cum", "_snap_prices"):
            self.con.execute(f"DROP TABLE IF EXISTS {table}")


def _held_sql(first_us: int, last_us: int) -> str:
    """The watched wallets' held states alive during the grid (the range join below meets
    only these: over every state of the whole history it took minutes at 20M trades)."""
    return f"""
        -- from the grid's start only: what a state was worth before it never shows
        SELECT s.wallet, s.token_id, s.shares, s.avg_price,
               greatest(s.ts_us, {first_us}) AS ts_us, s.next_ts_us,
               -- a resolved market's shares are worth the payout from its resolution on
               CASE WHEN s.payout IS NOT NULL THEN s.resolved_us END AS settle_us, s.payout
        FROM _snap_state s
        WHERE s.shares > 0
          AND s.wallet IN (SELECT wallet FROM _snap_wallets)
          AND s.next_ts_us > {first_us} AND s.ts_us <= {last_us}
    """


def _pairs_sql(held: str) -> str:
    """Unrealized P&L, exposure and open positions per (time, wallet), position by
    position at each time: for a few times."""
    return f"""
        held AS (
            SELECT g.t_us, h.wallet, h.token_id, h.shares, h.avg_price,
                   coalesce(h.settle_us <= g.t_us, false) AS resolved, h.payout
            FROM ({held}) h JOIN _snap_grid g ON g.t_us >= h.ts_us AND g.t_us < h.next_ts_us
        ),
        needed AS (SELECT DISTINCT token_id, t_us FROM held WHERE NOT resolved),
        marks AS (
            SELECT p.token_id, g.t_us, arg_max(p.price, p.ts_us) AS price
            FROM _snap_prices p JOIN _snap_grid g ON p.ts_us <= g.t_us
            WHERE p.token_id IN (SELECT token_id FROM needed) GROUP BY ALL
        ),
        marked AS (
            -- a token that never traded (shares from a split) has no mark, as in
            -- compute_positions: it adds nothing to unrealized P&L or exposure
            SELECT o.t_us, o.wallet, o.shares, o.avg_price,
                   CASE WHEN o.resolved THEN o.payout ELSE m.price END AS mark
            FROM held o LEFT JOIN marks m USING (token_id, t_us)
        ),
        unrealized AS (
            SELECT t_us, wallet,
                   coalesce(sum(shares * (mark - avg_price)), 0.0) AS unrealized_pnl,
                   coalesce(sum(shares * mark), 0.0) AS exposure,
                   count(*) AS open_positions
            FROM marked GROUP BY ALL
        )
    """


def _swept_sql(held: str, first_us: int, last_us: int) -> str:
    """The same per (time, wallet) for many times, by a sweep: a held state's value
    changes only when its token trades or its market resolves, so each (state, price)
    overlap adds its value where it starts and takes it back where it ends, and a running
    sum per wallet is read at each time. Work follows the states and the trades of the
    grid's span, not states x times (86k open positions x 288 marks a day of 10 busy
    wallets: 25M pairs, 8 s a day; by the sweep a fraction of that)."""
    end_us = last_us + 1
    return f"""
        held AS ({held}),
        segments AS (
            -- each held token's prices over the grid: the last one at or before its start
            -- (the states start there at the earliest) and those inside it
            SELECT token_id, ts_us AS p0,
                   coalesce(lead(ts_us) OVER (PARTITION BY token_id ORDER BY ts_us),
                            {end_us}) AS p1,
                   price
            FROM (
                SELECT token_id, max(ts_us) AS ts_us, arg_max(price, ts_us) AS price
                FROM _snap_prices
                WHERE ts_us <= {first_us}
                  AND token_id IN (SELECT token_id FROM held)
                GROUP BY token_id
                UNION ALL
                SELECT token_id, ts_us, price FROM _snap_prices
                WHERE ts_us > {first_us} AND ts_us < {end_us}
                  AND token_id IN (SELECT token_id FROM held)
            )
        ),
        valued AS (
            -- traded before resolution: marked at the price of the moment
            SELECT h.wallet, greatest(h.ts_us, g.p0) AS t0,
                   least(h.next_ts_us, g.p1, coalesce(h.settle_us, {end_us})) AS t1,
                   h.shares * g.price AS exposure,
                   h.shares * (g.price - h.avg_price) AS unrealized
            FROM held h JOIN segments g
              ON g.token_id = h.token_id AND g.p0 < h.next_ts_us AND g.p1 > h.ts_us
            UNION ALL
            -- resolved: at the payout until redeemed
            SELECT wallet, greatest(ts_us, settle_us), next_ts_us, shares * payout,
                   shares * (payout - avg_price)
            FROM held WHERE settle_us < next_ts_us
        ),
        changes AS (
            SELECT wallet, t0 AS ts_us, exposure, unrealized, 0 AS opened
            FROM valued WHERE t0 < t1
            UNION ALL
            SELECT wallet, t1, -exposure, -unrealized, 0 FROM valued WHERE t0 < t1
            UNION ALL
            SELECT wallet, ts_us, 0.0, 0.0, 1 FROM held
            UNION ALL
            SELECT wallet, next_ts_us, 0.0, 0.0, -1 FROM held
        ),
        running AS (
            SELECT wallet, ts_us,
                   sum(sum(exposure)) OVER w AS exposure,
                   sum(sum(unrealized)) OVER w AS unrealized_pnl,
                   (sum(sum(opened)) OVER w)::BIGINT AS open_positions
            FROM changes GROUP BY wallet, ts_us
            WINDOW w AS (PARTITION BY wallet ORDER BY ts_us
                         ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
        ),
        unrealized AS (
            -- with nothing held the sums are exactly zero, not what is left of adding and
            -- taking back the same values
            SELECT b.t_us, b.wallet,
                   CASE WHEN r.open_positions > 0 THEN r.unrealized_pnl ELSE 0.0 END
                     AS unrealized_pnl,
                   CASE WHEN r.open_positions > 0 THEN r.exposure ELSE 0.0 END AS exposure,
                   coalesce(r.open_positions, 0) AS open_positions
            FROM base b ASOF LEFT JOIN running r ON r.wallet = b.wallet AND r.ts_us <= b.t_us
        )
    """


def _snapshot_sql(unrealized: str, *, few: bool) -> str:
    """A snapshot row per (time, watched wallet): realized P&L of every ledger row at or
    before the time, and ``unrealized``'s CTEs (ending in ``unrealized``)."""
    realized = (
        "SELECT b.t_us, b.wallet, coalesce(sum(e.amount), 0.0) AS realized_pnl "
        "FROM base b LEFT JOIN _snap_events e "
        "ON e.wallet = b.wallet AND e.ts_us <= b.t_us GROUP BY ALL"
        if few
        else "SELECT b.t_us, b.wallet, coalesce(e.cum_realized, 0.0) AS realized_pnl "
        "FROM base b ASOF LEFT JOIN _snap_cum e ON e.wallet = b.wallet AND e.ts_us <= b.t_us"
    )
    return f"""
        WITH base AS (SELECT g.t_us, w.wallet FROM _snap_grid g, _snap_wallets w),
        {unrealized},
        realized AS ({realized})
        SELECT make_timestamptz(r.t_us) AS snapshot_at, r.wallet, r.realized_pnl,
               coalesce(u.unrealized_pnl, 0.0) AS unrealized_pnl,
               r.realized_pnl + coalesce(u.unrealized_pnl, 0.0) AS total_pnl,
               coalesce(u.exposure, 0.0) AS exposure,
               coalesce(u.open_positions, 0) AS open_positions
        FROM realized r
        LEFT JOIN unrealized u USING (t_us, wallet)
        ORDER BY snapshot_at, wallet
    """


# How far back (days before a checkpoint) the marks of tokens the checkpoint does not
# price are looked for, step by step: most traded recently, the last step is the history.
MARK_LOOKBACK_DAYS: tuple[int | None, ...] = (1, 7, 31, 366, None)


def _add_marks_before(con: duckdb.DuckDBPyConnection, lake: Lake, since: datetime) -> None:
    """Add to ``_snap_prices`` (at ``since``) the last trade price at or before ``since`` of
    each ledger token without one. A checkpoint prices only the tokens its wallets held;
    a position opened after it by a split or a conversion (no own fill) may be in a token
    that last traded before it, which the whole history would mark at that trade."""
    since_us = int(since.timestamp() * 1_000_000)
    missing_sql = (
        "SELECT DISTINCT token_id FROM _snap_state WHERE token_id NOT IN "
        f"(SELECT token_id FROM _snap_prices WHERE ts_us <= {since_us})"
    )
    upper = since
    for days in MARK_LOOKBACK_DAYS:
        missing = con.execute(missing_sql).fetchall()
        if not missing:
            return
        lower = since - timedelta(days=days) if days is not None else None
        tokens = ", ".join(sql_string(str(token)) for (token,) in missing)
        after = f"AND \"timestamp\" > TIMESTAMPTZ '{lower.isoformat()}'" if lower else ""
        con.execute(
            f"""
            INSERT INTO _snap_prices
            SELECT token_id, {since_us}, price
            FROM {fills_source_sql(lake, upper, lower)}
            WHERE token_id IN ({tokens})
              AND "timestamp" <= TIMESTAMPTZ '{upper.isoformat()}' {after}
            QUALIFY row_number() OVER (
                PARTITION BY token_id ORDER BY "timestamp" DESC, file_row_number DESC) = 1
            """
        )
        upper = lower if lower is not None else upper


CHECKPOINT_TABLE = "analytics/wallets/position_checkpoints"
DAYS_PER_QUERY = 31
FEW_TIMES = 8
# Open (position, snapshot time) pairs one query may join. Memory follows this number, not
# the number of open positions or days: ~1M pairs is ~150 MB of DuckDB state (78-digit token
# ids), well inside the 1 GB default, whatever the lake (no market resolved, no end date).
PAIRS_PER_QUERY = 1_000_000
TICKS_PER_DAY = len(day_grid(date(2024, 1, 1)))


@dataclass(frozen=True)
class QueryPlan:
    """Wallet groups and, per group, how many snapshot times one query answers."""

    groups: list[tuple[list[str], int]]  # (wallets, times per query)

    @property
    def days_per_query(self) -> int:
        fewest = min((ticks for _, ticks in self.groups), default=TICKS_PER_DAY)
        return max(1, min(DAYS_PER_QUERY, fewest // TICKS_PER_DAY))


def plan_queries(open_counts: dict[str, int], pairs: int = PAIRS_PER_QUERY) -> QueryPlan:
    """Pack wallets into groups whose open positions times a day's snapshot times stay
    within ``pairs``; a group answers as many times per query as the bound allows (up to
    31 days), a wallet with more positions than a day fits gets a part of a day per query."""
    per_group = max(1, pairs // TICKS_PER_DAY)
    groups: list[tuple[list[str], int]] = []
    current: list[str] = []
    load = 0
    for wallet in sorted(open_counts):
        count = open_counts[wallet]
        if current and load + count > per_group:
            groups.append((current, load))
            current, load = [], 0
        current.append(wallet)
        load += count
    if current:
        groups.append((current, load))
    limit = DAYS_PER_QUERY * TICKS_PER_DAY
    return QueryPlan([(w, max(1, min(limit, pairs // max(1, n)))) for w, n in groups])


def write_checkpoint(lake: Lake, day: date, checkpoint: Checkpoint) -> Path:
    """Replace the day's checkpoint file (atomic rename); the watched wallets it covers go
    into the file's metadata, since wallets without positions have no rows."""
    target = lake.day_dir(CHECKPOINT_TABLE, day) / PART_FILE
    table = checkpoint.positions.replace_schema_metadata(
        {"wallets": json.dumps(list(checkpoint.wallets)), "at": checkpoint.at.isoformat()}
    )
    write_atomically(target, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
    return target


def read_checkpoint(lake: Lake, day: date) -> Checkpoint | None:
    path = lake.day_dir(CHECKPOINT_TABLE, day) / PART_FILE
    if not path.exists():
        return None
    table = pq.read_table(path)
    meta = table.schema.metadata or {}
    try:
        wallets = tuple(json.loads(meta[b"wallets"]))
        at = datetime.fromisoformat(meta[b"at"].decode())
    except (KeyError, ValueError):
        return None  # not one of ours, or damaged: recompute from the history instead
    return Checkpoint(at, table.replace_schema_metadata(None), wallets)


def snapshot_days(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    wallets: Sequence[str],
    days: Sequence[date],
    *,
    on_day: Callable[[date, pa.Table], None],
    use_checkpoints: bool = True,
    pairs_per_query: int = PAIRS_PER_QUERY,
) -> SnapshotRun:
    """Compute each day's 288 snapshots and hand them to ``on_day``.

    With checkpoints, the ledger starts from the positions saved at the end of the day
    before the window (when they cover every watched wallet) and reads only newer day
    files; each computed day saves its own end-of-day checkpoint for the next run. So the
    sync's re-runs of today cost today's fills, not the wallets' whole history. The
    window's last day saves a checkpoint (the one the next day's run needs), and a run
    that had to read the whole history also saves the day before the window (the one the
    same window's next run needs).
    """
    run = SnapshotRun()
    if not days or not wallets:
        for day in days:
            on_day(day, pa.Table.from_pylist([], schema=SNAPSHOT_SCHEMA))
        return run
    days = sorted(days)
    checkpoint = read_checkpoint(lake, days[0] - timedelta(days=1)) if use_checkpoints else None
    if checkpoint is not None and not checkpoint.covers(wallets):
        checkpoint = None
    run.from_checkpoint = checkpoint is not None
    engine = SnapshotEngine.prepare(con, lake, wallets, day_end(days[-1]), checkpoint)
    run.fills = engine.fills
    try:
        if use_checkpoints and checkpoint is None:
            # The whole history was read: keep its state at the window's start, so the
            # sync's next re-run of the same day (every 10 minutes) reads that day only.
            before = days[0] - timedelta(days=1)
            write_checkpoint(lake, before, engine.checkpoint(day_end(before)))
        # bounded queries (plan_queries): up to a month of 5-minute marks for a group of
        # wallets, handed out a day at a time
        plan = plan_queries(engine.open_position_counts(), pairs_per_query)
        run.queries_per_chunk = sum(
            -(-TICKS_PER_DAY * plan.days_per_query // ticks) for _, ticks in plan.groups
        )
        step = plan.days_per_query
        for first in range(0, len(days), step):
            chunk = days[first : first + step]
            times = [t for day in chunk for t in day_grid(day)]
            pieces = [
                bounded_query(engine.at, times[i : i + ticks], group)
                for group, ticks in plan.groups
                for i in range(0, len(times), ticks)
            ]
            table = pa.concat_tables(pieces) if len(pieces) > 1 else pieces[0]
            if len(pieces) > 1:
                table = table.sort_by([("snapshot_at", "ascending"), ("wallet", "ascending")])
            per_day = len(table) // len(chunk)  # every day has 288 marks x the wallets
            for i, day in enumerate(chunk):
                on_day(day, table.slice(i * per_day, per_day))
        if use_checkpoints:
            # the next run (the sync's, for the following day) starts from here; a re-run
            # of an older range without its checkpoint reads the whole history instead
            write_checkpoint(lake, days[-1], engine.checkpoint(day_end(days[-1])))
    finally:
        engine.close()
    return run


@dataclass
class SnapshotRun:
    fills: int = 0
    from_checkpoint: bool = False
    queries_per_chunk: int = 0


def bounded_query(
    at: Callable[..., pa.Table], times: list[datetime], wallets: list[str]
) -> pa.Table:
    """``at(times, wallets)``; DuckDB running out of memory says which setting to raise."""
    try:
        return at(times, wallets)
    except duckdb.OutOfMemoryException as exc:
        raise MemoryLimitError(
            memory_limit_message(exc, f"P&L snapshots of {len(wallets)} wallet(s)")
        ) from exc


SNAPSHOT_SCHEMA = pa.schema(
    [
        ("snapshot_at", pa.timestamp("us", tz="UTC")),
        ("wallet", pa.string()),
        ("realized_pnl", pa.float64()),
        ("unrealized_pnl", pa.float64()),
        ("total_pnl", pa.float64()),
        ("exposure", pa.float64()),
        ("open_positions", pa.int64()),
    ]
)


def pnl_series(
    con: duckdb.DuckDBPyConnection, files: Sequence[Path], *, top: int = 5
) -> dict[str, tuple[list[datetime], list[float]]]:
    """Total P&L over time (the last snapshot of each hour) of the ``top`` wallets with the
    largest P&L, in either direction, at their last snapshot; for the UI's chart."""
    if not files:
        return {}
    source = "read_parquet([" + ", ".join(sql_string(f) for f in files) + "])"
    rows = con.execute(
        f"""
        WITH hourly AS (
            SELECT wallet, date_trunc('hour', snapshot_at) AS hour,
                   arg_max(total_pnl, snapshot_at) AS total_pnl
            FROM {source} GROUP BY ALL
        ),
        ranked AS (
            SELECT wallet FROM hourly
            GROUP BY wallet ORDER BY abs(arg_max(total_pnl, hour)) DESC, wallet LIMIT ?
        )
        SELECT wallet, hour, total_pnl FROM hourly SEMI JOIN ranked USING (wallet)
        ORDER BY wallet, hour
        """,
        [top],
    ).fetchall()
    series: dict[str, tuple[list[datetime], list[float]]] = {}
    for wallet, hour, total in rows:
        times, totals = series.setdefault(wallet, ([], []))
        times.append(hour)
        totals.append(total)
    return series
