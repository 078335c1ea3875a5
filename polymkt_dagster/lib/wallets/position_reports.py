"""Reports over a positions table (``positions.compute_positions``' output, any relation
DuckDB reads): per-wallet totals and the oversell share, the data-gap measure the
``wallet_positions`` asset reports. Plain SQL over finished positions, apart from the
ledger that made them; ``PositionsTally`` gives the same answers from the rows as they are
written, which is how the asset gets them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


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


_WALLET_SUMS = (
    "realized_pnl", "unrealized_pnl", "total_pnl", "exposure", "oversold_shares",
    "oversold_proceeds",
)  # fmt: skip


class PositionsTally:
    """``wallet_totals``, ``oversell_report`` and the row counts of a positions table,
    summed piece by piece as its rows are written (``add``): the writer already holds
    every row, and reading a large file back costs seconds of a run the automation
    waits for. Pieces carry the wallet as a dictionary array over one shared dictionary
    (``update_positions``' rows); the answers equal the SQL reports over the file."""

    def __init__(self, wallets: pa.Array) -> None:
        self.wallets = wallets
        size = len(wallets)
        self._sums = {name: np.zeros(size) for name in _WALLET_SUMS}
        self._sell_proceeds = np.zeros(size)
        self._fills = np.zeros(size)
        self._volume = np.zeros(size)
        self._positions = np.zeros(size, dtype=np.int64)
        self._open = np.zeros(size, dtype=np.int64)
        self._marked = np.zeros(size, dtype=np.int64)  # positions with a known mark
        self.rows = 0
        self.negative = 0
        self.open_positions = 0
        self.redeemable = 0
        self.positions_with_oversells = 0

    def add(self, rows: pa.Table) -> None:
        """Count one piece of positions rows."""
        wallet = rows.column("wallet").combine_chunks()
        if not wallet.dictionary.equals(self.wallets):
            raise ValueError("a piece's wallets are not the tally's dictionary")
        index = wallet.indices.to_numpy()
        size = len(self.wallets)

        @cache  # several sums read the same column
        def values(name: str) -> np.ndarray:
            column = rows.column(name).combine_chunks()
            return column.to_numpy(zero_copy_only=False).astype(np.float64)

        def per_wallet(weights: np.ndarray | None = None) -> np.ndarray:
            return np.bincount(index, weights=weights, minlength=size)

        for name in _WALLET_SUMS:
            self._sums[name] += per_wallet(np.nan_to_num(values(name)))
        self._sell_proceeds += per_wallet(values("sold_usd") + values("event_sold_usd"))
        self._fills += per_wallet(values("buys") + values("sells"))
        self._volume += per_wallet(values("bought_usd") + values("sold_usd"))
        self._marked += per_wallet(~np.isnan(values("unrealized_pnl"))).astype(np.int64)
        status = rows.column("status").combine_chunks()
        status_names = status.dictionary.to_pylist()
        codes = status.indices.to_numpy()

        def has_status(name: str) -> np.ndarray:
            if name not in status_names:
                return np.zeros(len(codes), dtype=bool)
            return codes == status_names.index(name)

        is_open = has_status("open")
        self._positions += per_wallet().astype(np.int64)
        self._open += per_wallet(is_open).astype(np.int64)
        self.rows += rows.num_rows
        self.negative += int(np.count_nonzero(values("shares") < 0))
        self.open_positions += int(np.count_nonzero(is_open))
        self.redeemable += int(np.count_nonzero(has_status("redeemable")))
        self.positions_with_oversells += int(np.count_nonzero(values("oversold_shares") > 0))

    @property
    def wallet_count(self) -> int:
        return int(np.count_nonzero(self._positions))

    def _ranked(self, key: np.ndarray, among: np.ndarray, limit: int) -> np.ndarray:
        """Wallet indices among ``among`` by ``key`` descending then address, at most
        ``limit``: the order of SQL's ``ORDER BY key DESC, wallet LIMIT limit``."""
        candidates = np.flatnonzero(among)
        if len(candidates) > limit:
            cut = np.partition(key[candidates], len(candidates) - limit)[len(candidates) - limit]
            above = candidates[key[candidates] > cut]
            tied = candidates[key[candidates] == cut]  # many when most wallets sum to 0
            by_name = pc.sort_indices(self.wallets.take(pa.array(tied)).cast(pa.string()))
            tied = tied[by_name.to_numpy()[: limit - len(above)]]
            candidates = np.concatenate([above, tied])
        names = self.wallets.take(pa.array(candidates, pa.int64())).to_pylist()
        order = sorted(range(len(candidates)), key=lambda i: (-key[candidates[i]], names[i]))
        return candidates[order]

    def wallet_totals(self, limit: int = 20) -> pa.Table:
        """``wallet_totals`` of the rows added."""
        top = self._ranked(self._sums["realized_pnl"], self._positions > 0, limit)

        def marked(values: np.ndarray) -> pa.Array:  # SQL's sum over NULL marks only is NULL
            return pa.array(values[top], mask=self._marked[top] == 0)

        return pa.table(
            {
                "wallet": self.wallets.take(pa.array(top, pa.int64())).cast(pa.string()),
                "realized_pnl": self._sums["realized_pnl"][top],
                "unrealized_pnl": marked(self._sums["unrealized_pnl"]),
                "total_pnl": marked(self._sums["total_pnl"]),
                "exposure": marked(self._sums["exposure"]),
                "open_positions": self._open[top],
                "positions": self._positions[top],
                "fills": self._fills[top].astype(np.int64),
                "volume_usd": self._volume[top],
                "oversold_shares": self._sums["oversold_shares"][top],
                "oversold_proceeds": self._sums["oversold_proceeds"][top],
            }
        )

    def oversell_report(self, worst: int = 10) -> OversellReport:
        """``oversell_report`` of the rows added."""
        proceeds = self._sums["oversold_proceeds"]
        top = self._ranked(proceeds, proceeds > 0, worst)
        sells = self._sell_proceeds[top]
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(sells != 0, proceeds[top] / sells, np.nan)
        table = pa.table(
            {
                "wallet": self.wallets.take(pa.array(top, pa.int64())).cast(pa.string()),
                "oversold_proceeds": proceeds[top],
                "sell_proceeds": sells,
                "oversold_share": pa.array(share, from_pandas=True),
                "realized_pnl": self._sums["realized_pnl"][top],
            }
        )
        return OversellReport(
            float(self._sell_proceeds.sum()),
            float(proceeds.sum()),
            float(self._sums["oversold_shares"].sum()),
            self.positions_with_oversells,
            float(self._sums["realized_pnl"].sum()),
            table,
        )
