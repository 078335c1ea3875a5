"""Wallet positions and P&L by weighted-average cost (docs/architecture.md §5): one row per
(wallet, outcome token) with shares, average price, realized and unrealized P&L, oversells
and status, from every fill and CTF position event up to a time (``compute_positions``).

A position is ``open`` while it holds shares of an unresolved market, marked at the
token's last trade price at or before the time asked for (any wallet's fill); ``redeemable``
when its market has resolved and shares remain (as on chain, they are not realized until
redeemed: marked at the payout, unrealized); ``closed`` when it holds nothing.

The pieces: the ledger's rules and vectorised form (``ledger.py``, its compiled loops in
``ledger_kernels.py``), reading its rows from the lake (``ledger_input.py``,
``fill_reader.py``), per-position totals (``position_summary.py``); reports over a
positions table are in ``position_reports.py``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from polymkt_dagster.lib.core.lake import Lake, day_end, write_atomically
from polymkt_dagster.lib.core.schemas import TRADES
from polymkt_dagster.lib.wallets.ledger_checkpoint import (
    Advance,
    LedgerState,
    advance,
    combined,
    input_fingerprint,
    load_checkpoint,
    save_checkpoint,
    window_state,
)
from polymkt_dagster.lib.wallets.ledger_input import (
    drop_fill_keys,
    fills_source_sql,
    key_names,
    load_sorted_fills,
    register_keys,
    register_token_info,
)
from polymkt_dagster.lib.wallets.position_reports import PositionsTally
from polymkt_dagster.lib.wallets.position_summary import (
    FillArrays,
    group_chunks,
    last_trade_prices,
    summarize_chunk,
)

POSITION_COLUMNS = (
    "wallet", "market_id", "token_id", "outcome_index", "outcome", "status", "shares",
    "avg_price", "cost_basis", "mark_price", "exposure", "realized_pnl", "unrealized_pnl",
    "total_pnl", "settlement_pnl", "payout", "buys", "sells", "bought_shares", "sold_shares",
    "bought_usd", "sold_usd", "fees", "oversold_shares", "oversold_fills", "oversold_proceeds",
    "position_events", "event_bought_shares", "event_sold_shares", "event_bought_usd",
    "event_sold_usd", "first_trade_at", "last_trade_at", "resolved_at", "as_of",
)  # fmt: skip


def _token_table(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    as_of: datetime | None,
    prefix: str,
    marks: np.ndarray | None = None,
) -> pa.Table:
    """Per token id (dense, in tid order): market, outcome, payout, resolution time, mark
    (``marks`` by tid when known, else the last trade price from the lake). Reads the
    token facts from ``{prefix}_info`` (``register_token_info``)."""
    if marks is not None:
        info = con.execute(
            f"""
            SELECT t.tid, ti.market_id, ti.outcome_index, ti.outcome, ti.payout,
                   epoch_us(ti.resolved_at) AS resolved_us
            FROM {prefix}_t t LEFT JOIN {prefix}_info ti USING (token_id)
            ORDER BY t.tid
            """
        ).to_arrow_table()
        return info.append_column("mark_price", pa.array(marks, from_pandas=True))
    until_clause = f"AND \"timestamp\" <= TIMESTAMPTZ '{as_of.isoformat()}'" if as_of else ""
    return con.execute(
        f"""
        WITH marks AS (
            -- last trade by (second, in-file order); an integer key beats a struct here
            SELECT token_id,
                   arg_max(price, (epoch_us("timestamp") // 1000000) * 10000000
                                  + file_row_number) AS mark_price
            FROM {fills_source_sql(lake, as_of)}
            WHERE token_id IN (SELECT token_id FROM {prefix}_t) {until_clause}
            GROUP BY token_id
        )
        SELECT t.tid, ti.market_id, ti.outcome_index, ti.outcome, ti.payout,
               epoch_us(ti.resolved_at) AS resolved_us, m.mark_price
        FROM {prefix}_t t
        LEFT JOIN {prefix}_info ti USING (token_id)
        LEFT JOIN marks m USING (token_id)
        ORDER BY t.tid
        """
    ).to_arrow_table()


def _position_rows(
    summary: pa.Table,
    tokens: pa.Table,
    wallets: pa.Array,
    token_ids: pa.Array,
    as_of: datetime | None,
) -> pa.Table:
    """Positions from per-group totals and per-token facts, in numpy (no SQL join of
    millions of string rows, which costs far more than these array takes)."""
    gkey = summary.column("gkey").to_numpy()
    tid = pa.array(gkey & 0xFFFFFFFF)

    def token(name: str) -> pa.Array:
        return tokens.column(name).combine_chunks().take(tid)

    def floats(array: pa.Array) -> np.ndarray:
        return array.to_numpy(zero_copy_only=False).astype(np.float64)

    payout = floats(token("payout").fill_null(np.nan))
    resolved_us = token("resolved_us")
    cutoff = int(as_of.timestamp() * 1_000_000) if as_of else None
    resolved = ~np.isnan(payout)
    if cutoff is not None:
        due = resolved_us.fill_null(np.iinfo(np.int64).min).to_numpy()
        resolved &= due <= cutoff
    last_trade = floats(token("mark_price").fill_null(np.nan))
    # a resolved market's shares are worth their payout until redeemed (pnl-subgraph:
    # only the redemption realizes them); open ones are marked at the last trade
    mark = np.where(resolved, payout, last_trade)
    shares = summary.column("shares").to_numpy()
    avg = summary.column("avg_price").to_numpy()
    realized = summary.column("trading_realized").to_numpy()
    unrealized = shares * (mark - avg)
    held = shares > 0
    # status and the two big string columns as dictionary arrays over ids we already have:
    # nothing to hash when Parquet writes them (they read back as plain strings)
    status_code = np.where(held, np.where(resolved, 2, 1), 0).astype(np.int8)
    status = pa.DictionaryArray.from_arrays(
        pa.array(status_code), pa.array(["closed", "open", "redeemable"])
    )
    as_of_us = cutoff if cutoff is not None else int(datetime.now(UTC).timestamp() * 1e6)
    utc = pa.timestamp("us", tz="UTC")

    def ts(values: np.ndarray | pa.Array | pa.ChunkedArray) -> pa.Array:
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if isinstance(values, np.ndarray):
            values = pa.array(values, pa.int64())  # zero-copy from numpy
        return values.cast(pa.int64()).cast(utc)

    columns: dict[str, pa.Array | np.ndarray] = {
        "wallet": pa.DictionaryArray.from_arrays(pa.array((gkey >> 32).astype(np.int32)), wallets),
        "market_id": token("market_id"),
        "token_id": pa.DictionaryArray.from_arrays(tid.cast(pa.int32()), token_ids),
        "outcome_index": token("outcome_index"),
        "outcome": token("outcome"),
        "status": status,
        "shares": shares,
        "avg_price": avg,
        "cost_basis": shares * avg,
        "mark_price": pa.array(mark, from_pandas=True),
        "exposure": pa.array(np.where(held, shares * mark, 0.0), from_pandas=True),
        "realized_pnl": realized,
        "unrealized_pnl": pa.array(np.where(held, unrealized, 0.0), from_pandas=True),
        "total_pnl": pa.array(realized + np.where(held, unrealized, 0.0), from_pandas=True),
        "settlement_pnl": np.where(resolved & held, unrealized, 0.0),
        "payout": pa.array(np.where(resolved, payout, np.nan), from_pandas=True),
    }
    for name in (
        "buys", "sells", "bought_shares", "sold_shares", "bought_usd", "sold_usd", "fees",
        "oversold_shares", "oversold_fills", "oversold_proceeds", "position_events",
        "event_bought_shares", "event_sold_shares", "event_bought_usd", "event_sold_usd",
    ):  # fmt: skip
        columns[name] = summary.column(name)
    columns["first_trade_at"] = ts(summary.column("first_ts_us"))
    columns["last_trade_at"] = ts(summary.column("last_ts_us"))
    columns["resolved_at"] = ts(resolved_us)
    columns["as_of"] = ts(np.full(len(gkey), as_of_us, dtype=np.int64))
    return pa.table(columns)


def compute_positions(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    *,
    wallets: Sequence[str] | None = None,
    as_of: datetime | None = None,
    output: Path | None = None,
    chunk_rows: int = 1_000_000,
) -> pa.Table | None:
    """Positions of every wallet (or ``wallets``) and token from all fills up to ``as_of``.

    Returned as a table sorted by wallet, or with ``output`` written to that Parquet file
    (atomically, in chunks so memory stays bounded) and None returned. The ledger reads
    the fills and the users' CTF position events up to ``as_of``. Shares of markets
    resolved by ``as_of`` (resolution time at or before it; any resolved market when
    ``as_of`` is None) are marked at their payout until redeemed (status ``redeemable``);
    open positions at the token's last trade price at or before ``as_of`` (NULL when it
    never traded).
    """
    prefix = "_pos"
    try:
        info = register_token_info(con, lake, prefix)
        fills = load_sorted_fills(
            con, lake, wallets=wallets, until=as_of, prefix=prefix, token_info=info
        )
        arrays = FillArrays.of(fills)
        wallet_array, token_array = key_names(con, prefix)
        marks = None
        if not wallets:
            # with every wallet, the fills are every trade: their last prices are the marks
            marks = last_trade_prices(arrays, len(token_array))
        tokens = _token_table(con, lake, as_of, prefix, marks=marks)
    finally:
        drop_fill_keys(con, prefix)
        con.execute(f"DROP TABLE IF EXISTS {prefix}_info")
    chunks = group_chunks(arrays.gkey, chunk_rows)

    def piece(chunk: tuple[int, int, int]) -> pa.Table:
        summary = summarize_chunk(fills, arrays, chunk)
        return _position_rows(summary, tokens, wallet_array, token_array, as_of)

    def pieces() -> Iterator[pa.Table]:
        return _one_ahead(partial(piece, chunk) for chunk in chunks)

    if output is None:
        table = pa.concat_tables(list(pieces()))
        for name in ("wallet", "token_id", "status"):
            index = table.schema.get_field_index(name)
            table = table.set_column(index, name, table.column(name).cast(pa.string()))
        return table.sort_by([("wallet", "ascending"), ("market_id", "ascending"),
                              ("outcome_index", "ascending")])  # fmt: skip

    _write_positions(output, pieces(), chunk_rows)
    return None


def _one_ahead(tasks: Iterator[Callable[[], pa.Table]]) -> Iterator[pa.Table]:
    """The tasks' results in order, the next one computed while this one is consumed: the
    ledger and row building (numba and numpy, mostly without the GIL) run on one core while
    the other writes."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        ahead: deque[Future[pa.Table]] = deque()
        for task in tasks:
            ahead.append(pool.submit(task))
            if len(ahead) > 1:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()


def _write_positions(output: Path, pieces: Iterator[pa.Table], chunk_rows: int) -> None:
    """The position rows to ``output`` (atomically), a piece at a time."""

    def write(tmp: Path) -> None:
        writer: pq.ParquetWriter | None = None
        try:
            for rows in pieces:
                if writer is None:
                    writer = pq.ParquetWriter(tmp, rows.schema, **_POSITIONS_PARQUET)
                writer.write_table(rows, row_group_size=chunk_rows)
        finally:
            if writer is not None:
                writer.close()

    write_atomically(output, write)


@dataclass(frozen=True)
class PendingCheckpoint:
    """The checkpoint a day's turn leaves to save: the state at the end of ``day``, or the
    older state (and its time) it is advanced from when saved; ``fingerprint`` was taken
    before any of their files were read."""

    day: date
    fingerprint: str
    state: LedgerState | None = None
    base: tuple[LedgerState, datetime] | None = None


@dataclass
class PositionsUpdate:
    """How ``update_positions`` got there: the checkpoint it started from (None: the whole
    history), the ledger rows it read, the day-end checkpoint it leaves to save, and the
    reports over the rows it wrote (``tally``)."""

    started_from: date | None = None
    ledger_rows: int = 0
    active_wallets: int | None = None
    pending: PendingCheckpoint | None = None
    saved: date | None = None
    tally: PositionsTally | None = None

    @property
    def pending_checkpoint(self) -> date | None:
        """The day of the checkpoint ``save_checkpoint`` writes, if this run has one."""
        return self.pending.day if self.pending else None

    def save_checkpoint(self, con: duckdb.DuckDBPyConnection, lake: Lake) -> date | None:
        """Save the day-end checkpoint this run leaves (at the day's turn), once; its day."""
        pending = self.pending
        if pending is None:
            return self.saved
        state = pending.state
        if state is None:
            assert pending.base is not None
            base, at = pending.base
            prefix = "_save"
            info = register_token_info(con, lake, prefix)
            try:
                state = advance(con, lake, base, at, day_end(pending.day), token_info=info)
            finally:
                con.execute(f"DROP TABLE IF EXISTS {prefix}_info")
        save_checkpoint(lake, pending.day, state, pending.fingerprint)
        self.pending, self.saved = None, pending.day  # the states' memory goes with it
        return self.saved


def update_positions(
    con: duckdb.DuckDBPyConnection, lake: Lake, output: Path, *, chunk_rows: int = 1_000_000
) -> PositionsUpdate:
    """Every wallet's positions now (``compute_positions`` with no wallets and no time),
    written to ``output``, from the newest valid ledger checkpoint plus the newer day files.

    The state at the end of the day before the lake's last trading day is kept as a
    checkpoint, so the 10-minute syncs of a day each read that day's rows only. At the
    day's turn the run reads the rows since the older checkpoint and leaves the new one in
    ``pending``: the caller saves it (``PositionsUpdate.save_checkpoint``) once the
    positions are out, since computing and writing a large lake's state takes longer than
    everything else the run does (``ledger_checkpoint``).
    """
    update = PositionsUpdate()
    prefix = "_pos"
    info = register_token_info(con, lake, prefix)
    try:
        days = {file.day for file in lake.listing(TRADES.name)}
        state: LedgerState | None = None
        at: datetime | None = None
        steps = Advance()
        if days:
            target = max(days) - timedelta(days=1)
            found = load_checkpoint(con, lake, on_or_before=target, token_info=info)
            if found is not None:
                update.started_from, state = found
                at = day_end(update.started_from)
            if update.started_from != target:
                # fingerprinted before the files are read: a sync that rewrites one of them
                # meanwhile leaves a checkpoint the next run refuses, never a wrong one
                fingerprint = input_fingerprint(con, lake, target, token_info=info)
                if state is not None and at is not None:
                    update.pending = PendingCheckpoint(target, fingerprint, base=(state, at))
                else:  # the whole history up to the checkpoint's day, then the newer days
                    state = advance(con, lake, None, None, day_end(target), token_info=info,
                                    report=steps, chunk_rows=chunk_rows)  # fmt: skip
                    update.pending = PendingCheckpoint(target, fingerprint, state=state)
                    at = day_end(target)
        window = window_state(con, lake, state, at, None, token_info=info, report=steps,
                              chunk_rows=chunk_rows)  # fmt: skip
        update.ledger_rows, update.active_wallets = steps.ledger_rows, steps.active_wallets
        # merged a range at a time as the rows are written: no second whole state
        now = combined(state, window)
        register_keys(con, prefix, now.wallets, now.tokens)
        tokens = _token_table(con, lake, None, prefix, marks=now.marks)
    finally:
        drop_fill_keys(con, prefix)
        con.execute(f"DROP TABLE IF EXISTS {prefix}_info")

    tally = update.tally = PositionsTally(now.wallets)

    def piece(first: int, end: int) -> pa.Table:
        rows = _position_rows(now.rows(first, end), tokens, now.wallets, now.tokens, None)
        tally.add(rows)  # one piece at a time: _one_ahead has a single worker
        return rows

    pieces = _one_ahead(partial(piece, *span) for span in now.ranges(chunk_rows))
    _write_positions(output, pieces, chunk_rows)
    return update


# Wallet and token id are written as the Parquet dictionaries of the ids we hold (nothing
# to hash, a fraction of the bytes of 77-digit strings); the dictionary page limit is
# raised so a large token dictionary never falls back to plain strings. Statistics only
# where a reader prunes by them (the file is sorted by wallet). lz4 keeps the write of
# millions of rows quick: the file is rewritten whole on every run.
_POSITIONS_PARQUET: dict[str, object] = {
    "compression": "lz4",
    "use_dictionary": ["wallet", "token_id", "market_id", "outcome", "status"],
    "dictionary_pagesize_limit": 1 << 30,
    "write_statistics": ["wallet"],
}
