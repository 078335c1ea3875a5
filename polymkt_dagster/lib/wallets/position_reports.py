"""Reports over a positions table (``positions.compute_positions``' output, any relation
DuckDB reads): per-wallet totals and the oversell share, the data-gap measure the
``wallet_positions`` asset reports. Plain SQL over finished positions, apart from the
ledger that made them.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa


def wallet_totals(con: duckdb.DuckDBPyConnection, positions: str, limit: int = 20) -> pa.Table:
    """Per wallet (best realized P&L first: what the pnl-subgraph counts, no oversold
    proceeds): realized, unrealized, total P&L, exposure, oversells, counts.

    ``positions`` is a relation: a registered table name or a read_parquet(...) call.
    """
    return con.execute(
        f"""
        SELECT wallet,
               sum(realized_pnl) AS realized_pnl,
               sum(unrealized_pnl) AS unrealized_pnl,
               sum(total_pnl) AS total_pnl,
               sum(exposure) AS exposure,
               count(*) FILTER (WHERE status = 'open') AS open_positions,
               count(*) AS positions,
               sum(buys + sells) AS fills,
               sum(bought_usd + sold_usd) AS volume_usd,
               sum(oversold_shares) AS oversold_shares,
               sum(oversold_proceeds) AS oversold_proceeds
        FROM {positions} GROUP BY wallet
        ORDER BY realized_pnl DESC, wallet LIMIT {int(limit)}
        """
    ).to_arrow_table()


@dataclass(frozen=True)
class OversellReport:
    """How much of the sells the ledger could not match with shares held (data gaps):
    ``share`` = oversold proceeds / all sell proceeds (fills, merges, redemptions,
    conversions); ``worst`` the wallets with the most oversold proceeds."""

    sell_proceeds: float
    oversold_proceeds: float
    oversold_shares: float
    positions_with_oversells: int
    realized_pnl: float
    worst: pa.Table

    @property
    def share(self) -> float:
        return self.oversold_proceeds / self.sell_proceeds if self.sell_proceeds > 0 else 0.0


def oversell_report(
    con: duckdb.DuckDBPyConnection, positions: str, worst: int = 10
) -> OversellReport:
    """The oversells of a positions relation (see ``OversellReport``)."""
    row = con.execute(
        f"""
        SELECT coalesce(sum(sold_usd + event_sold_usd), 0), coalesce(sum(oversold_proceeds), 0),
               coalesce(sum(oversold_shares), 0),
               count(*) FILTER (WHERE oversold_shares > 0), coalesce(sum(realized_pnl), 0)
        FROM {positions}
        """
    ).fetchone()
    assert row is not None
    table = con.execute(
        f"""
        SELECT wallet, sum(oversold_proceeds) AS oversold_proceeds,
               sum(sold_usd + event_sold_usd) AS sell_proceeds,
               sum(oversold_proceeds) / nullif(sum(sold_usd + event_sold_usd), 0)
                 AS oversold_share,
               sum(realized_pnl) AS realized_pnl
        FROM {positions} GROUP BY wallet HAVING sum(oversold_proceeds) > 0
        ORDER BY oversold_proceeds DESC, wallet LIMIT {int(worst)}
        """
    ).to_arrow_table()
    return OversellReport(
        float(row[0]), float(row[1]), float(row[2]), int(row[3]), float(row[4]), table
    )
