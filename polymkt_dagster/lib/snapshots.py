"""Mark-to-market P&L snapshots of watched wallets every 5 minutes.

At each snapshot time t, per wallet: realized P&L of every fill at or before t (plus the
settlement of markets resolved at or before t), unrealized = sum over open positions of
shares x (mark - avg_price) with mark = the token's last trade price at or before t,
total = realized + unrealized, exposure = sum of shares x mark.

The ledger runs once over the wallets' whole history up to the last snapshot (average cost
is path dependent); snapshot times are then answered with ASOF joins in DuckDB, a day at a
time so memory follows one day's (open position x time) pairs, not the whole window's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import duckdb
import pyarrow as pa

from polymkt_dagster.lib.lake import Lake
from polymkt_dagster.lib.positions import drop_ledger_state, register_ledger_state
from polymkt_dagster.lib.schemas import TRADES

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
    ) -> SnapshotEngine:
        engine = cls(con, lake, sorted(set(wallets)))
        # only partitions up to the last snapshot are opened
        files = lake.files(TRADES.name, end=until.date())
        trades = lake.scan_sql(TRADES, files)
        engine.fills = register_ledger_state(
            con, lake, wallets=engine.wallets, until=until, prefix="_snap"
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
        # last trade price per token and second (any wallet), for the marks
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _snap_prices AS
            SELECT token_id, epoch_us("timestamp") AS ts_us,
                   arg_max(price, order_fill_id) AS price
            FROM {trades}
            WHERE token_id IN (SELECT DISTINCT token_id FROM _snap_state)
              AND "timestamp" <= TIMESTAMPTZ '{until.isoformat()}'
            GROUP BY ALL
            """
        )
        return engine

    def at(self, times: Sequence[datetime]) -> pa.Table:
        """Snapshot rows for every watched wallet at each of ``times``."""
        grid = pa.table(
            {"t_us": pa.array([int(t.timestamp() * 1_000_000) for t in times], pa.int64())}
        )
        wallets = pa.table({"wallet": pa.array(self.wallets, pa.string())})
        self.con.register("_snap_grid", grid)
        self.con.register("_snap_wallets", wallets)
        try:
            return self.con.execute(
                """
                WITH open_pairs AS (
                    SELECT g.t_us, s.wallet, s.token_id, s.shares, s.avg_price
                    FROM _snap_state s
                    JOIN _snap_grid g
                      ON g.t_us >= s.ts_us AND g.t_us < s.next_ts_us
                    WHERE s.shares > 0
                      AND NOT coalesce(s.payout IS NOT NULL AND s.resolved_us <= g.t_us, false)
                ),
                marked AS (
                    SELECT o.t_us, o.wallet, o.shares, o.avg_price,
                           coalesce(p.price, o.avg_price) AS mark
                    FROM open_pairs o
                    ASOF LEFT JOIN _snap_prices p
                      ON p.token_id = o.token_id AND p.ts_us <= o.t_us
                ),
                unrealized AS (
                    SELECT t_us, wallet,
                           sum(shares * (mark - avg_price)) AS unrealized_pnl,
                           sum(shares * mark) AS exposure,
                           count(*) AS open_positions
                    FROM marked GROUP BY ALL
                ),
                base AS (SELECT g.t_us, w.wallet FROM _snap_grid g, _snap_wallets w),
                realized AS (
                    SELECT b.t_us, b.wallet, coalesce(e.cum_realized, 0.0) AS realized_pnl
                    FROM base b
                    ASOF LEFT JOIN _snap_cum e ON e.wallet = b.wallet AND e.ts_us <= b.t_us
                )
                SELECT make_timestamptz(r.t_us) AS snapshot_at, r.wallet,
                       r.realized_pnl,
                       coalesce(u.unrealized_pnl, 0.0) AS unrealized_pnl,
                       r.realized_pnl + coalesce(u.unrealized_pnl, 0.0) AS total_pnl,
                       coalesce(u.exposure, 0.0) AS exposure,
                       coalesce(u.open_positions, 0) AS open_positions
                FROM realized r
                LEFT JOIN unrealized u USING (t_us, wallet)
                ORDER BY snapshot_at, wallet
                """
            ).to_arrow_table()
        finally:
            self.con.unregister("_snap_grid")
            self.con.unregister("_snap_wallets")

    def close(self) -> None:
        drop_ledger_state(self.con, "_snap")
        for table in ("_snap_cum", "_snap_prices"):
            self.con.execute(f"DROP TABLE IF EXISTS {table}")


def snapshot_days(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    wallets: Sequence[str],
    days: Sequence[date],
    *,
    on_day: Callable[[date, pa.Table], None],
) -> int:
    """Compute each day's 288 snapshots and hand them to ``on_day``; returns fills used."""
    if not days or not wallets:
        for day in days:
            on_day(day, pa.Table.from_pylist([], schema=SNAPSHOT_SCHEMA))
        return 0
    last = max(days)
    until = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    until -= timedelta(microseconds=1)
    engine = SnapshotEngine.prepare(con, lake, wallets, until)
    try:
        for day in sorted(days):
            on_day(day, engine.at(day_grid(day)))
    finally:
        engine.close()
    return engine.fills


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
