"""The ledger's per-row state kept in DuckDB temp tables (``register_ledger_state``), for
the readers that need P&L at many times rather than one end state: the 5-minute wallet
snapshots (``snapshots.py``) and the daily rollups (``rollups.py``). Same rows and
numbers as ``positions.compute_positions``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import duckdb
import numpy as np
import pyarrow as pa

from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.wallets.ledger import ledger_table
from polymkt_dagster.lib.wallets.ledger_input import (
    attach_keys,
    load_sorted_fills,
    register_token_info,
)
from polymkt_dagster.lib.wallets.position_events import KIND_FILL


def register_ledger_state(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    *,
    wallets: Sequence[str] | None,
    until: datetime | None,
    prefix: str,
    since: datetime | None = None,
    opening: str | None = None,
    token_info: str | None = None,
) -> int:
    """Run the ledger and keep its per-row state in temp tables ``{prefix}_state`` and
    ``{prefix}_events``; returns the number of ledger rows (fills and position events; see
    ``load_sorted_fills`` for ``since``/``opening``: a checkpoint instead of the whole
    history).

    ``_state``: gkey, wallet, token_id, market_id, ts_us, next_ts_us (the group's next row,
    max int64 after its last), shares, avg_price (after the row), realized, seq, payout,
    resolved_us (``token_info``: the relation of ``register_token_info`` when the caller has
    it already). ``_events``: every realized P&L amount with its time, one per row (fills,
    merges, redemptions, conversions: the same numbers as ``compute_positions``; a resolved
    market's shares realize only when redeemed, until then they are marked at the payout).
    """
    info = token_info or register_token_info(con, lake, prefix)
    loaded = load_sorted_fills(
        con, lake, wallets=wallets, until=until, prefix=prefix, since=since,
        opening=opening, token_info=info,
    )  # fmt: skip
    fills, ledger = ledger_table(loaded)
    ts = fills.column("ts_us").to_numpy()
    next_ts = np.empty_like(ts)
    if len(ts):
        next_ts[:-1] = ts[1:]
    next_ts[ledger.group_end] = np.iinfo(np.int64).max
    kind = fills.column("kind").to_numpy()
    state = attach_keys(
        con,
        pa.table(
            {
                "gkey": fills.column("gkey"),
                "ts_us": ts,
                "next_ts_us": next_ts,
                "shares": ledger.shares_after,
                "avg_price": ledger.avg_after,
                "realized": ledger.realized,
                "is_fill": kind == KIND_FILL,
                "seq": np.arange(len(ts), dtype=np.int64),  # ledger order, ties included
            }
        ),
        prefix,
    )
    arrow_name = f"{prefix}_state_arrow"
    con.register(arrow_name, state)
    try:
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE {prefix}_state AS
            SELECT k.*, ti.market_id, ti.payout, epoch_us(ti.resolved_at) AS resolved_us
            FROM {arrow_name} k
            LEFT JOIN {info} ti ON ti.token_id = k.token_id
            """
        )
    finally:
        con.unregister(arrow_name)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {prefix}_events AS
        SELECT wallet, market_id, token_id, ts_us, realized AS amount,
               CASE WHEN is_fill THEN 'fill' ELSE 'position_event' END AS kind
        FROM {prefix}_state
        """
    )
    return fills.num_rows


def drop_ledger_state(con: duckdb.DuckDBPyConnection, prefix: str) -> None:
    for suffix in ("state", "events", "w", "t", "info"):
        con.execute(f"DROP TABLE IF EXISTS {prefix}_{suffix}")
