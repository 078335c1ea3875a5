"""Every wallet's ledger state at the end of a UTC day, so that the positions and the
rollups of a day start from it and read only the newer day files, instead of the whole
history on every 10-minute sync (docs/architecture.md §5).

A state holds, per (wallet, token) group, the per-position totals of ``position_summary``
(shares, average price, realized P&L, buy/sell/event totals, first and last row time) and
each token's last trade price. ``advance`` moves a state forward over a window of fills and
position events: the open positions the window touches enter the ledger as synthetic buys
at their average price (``ledger_input.load_sorted_fills``'s opening), and the window's
totals are added to the state's.

A saved checkpoint is trusted only while its inputs are unchanged: the trades and CTF event
day files up to its day (path, size, modification time) and the market facts its position
events were read through (``position_events.market_facts_digest_sql``). A rewritten older
day or a late market makes the next run fall back to an older checkpoint, or to the whole
history. Checkpoints are a cache: they live outside the mirrored lake (``_cache/``), and the
newest two are kept.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as feather

from polymkt_dagster.lib.core.lake import Lake, write_atomically
from polymkt_dagster.lib.core.schemas import CTF_EVENTS, TRADES
from polymkt_dagster.lib.wallets.ledger_input import (
    drop_fill_keys,
    key_names,
    load_sorted_fills,
)
from polymkt_dagster.lib.wallets.position_events import market_facts_digest_sql
from polymkt_dagster.lib.wallets.position_summary import (
    SUMMARY_TYPES,
    FillArrays,
    group_chunks,
    last_trade_prices,
    summarize_chunk,
)

CACHE_DIR = "_cache/ledger_checkpoints"
LOCK_FILE = ".lock"
KEEP_CHECKPOINTS = 2  # the newest, and one to fall back on when a late fill lands in its day
# Part of every fingerprint: a change to what a state means (the ledger's rules, the
# columns) must invalidate the checkpoints written before it.
STATE_VERSION = "1"
_LOW32 = 0xFFFFFFFF
_ADDED = ("trading_realized", "buys", "sells", "bought_shares", "sold_shares", "bought_usd",
          "sold_usd", "fees", "oversold_shares", "oversold_fills", "oversold_proceeds",
          "event_bought_shares", "event_sold_shares", "event_bought_usd", "event_sold_usd",
          "position_events")  # fmt: skip


@dataclass(frozen=True)
class LedgerState:
    """Every (wallet, token) group's totals at a time, and each token's last trade price.

    ``summary`` has ``position_summary``'s columns, one row per group in ascending gkey
    (wallet id << 32 | token id); ``wallets`` and ``tokens`` hold the names at each id, in
    sorted order; ``marks`` each token's last trade price (NaN when it never traded).
    """

    summary: pa.Table
    wallets: pa.Array
    tokens: pa.Array
    marks: np.ndarray

    def column(self, name: str) -> np.ndarray:
        return self.summary.column(name).to_numpy()

    def ranges(self, rows: int) -> list[tuple[int, int]]:
        """The summary's rows in ranges of ``rows`` (as ``MergedState.ranges``)."""
        return _ranges(self.summary.num_rows, rows)

    def rows(self, first: int, end: int) -> pa.Table:
        return self.summary.slice(first, end - first)

    def opening(self, groups: pa.Table) -> pa.Table:
        """The open positions among ``groups`` (wallet, token_id): wallet, token_id, shares,
        avg_price."""

        def ids(names: pa.ChunkedArray, of: pa.Array) -> np.ndarray:
            return pc.index_in(names, value_set=of).fill_null(-1).to_numpy().astype(np.int64)

        wallet_ids = ids(groups.column("wallet"), self.wallets)
        token_ids = ids(groups.column("token_id"), self.tokens)
        known = (wallet_ids >= 0) & (token_ids >= 0)  # a new wallet or token has no state
        gkey = self.column("gkey")
        keys = (wallet_ids[known] << 32) | token_ids[known]
        at = np.searchsorted(gkey, keys)
        hit = at < len(gkey)
        hit[hit] = gkey[at[hit]] == keys[hit]
        rows = np.unique(at[hit])
        rows = rows[self.column("shares")[rows] > 0]
        return pa.table(
            {
                "wallet": self.wallets.take(pa.array(gkey[rows] >> 32)),
                "token_id": self.tokens.take(pa.array(gkey[rows] & _LOW32)),
                "shares": self.column("shares")[rows],
                "avg_price": self.column("avg_price")[rows],
            }
        )


def window_groups(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    since: datetime,
    until: datetime | None,
    *,
    token_info: str,
) -> pa.Table:
    """The (wallet, token_id) groups with a ledger row (a fill or a position event) in
    (``since``, ``until``]: the positions a window's ledger must open, and no others, and
    through their wallets the window's active wallets (only a ledger row changes a position
    or realizes P&L). Reads only the window's day files."""
    prefix = "_groups"
    try:
        rows = load_sorted_fills(
            con, lake, since=since, until=until, prefix=prefix, token_info=token_info
        )
        names, tokens = key_names(con, prefix)
    finally:
        drop_fill_keys(con, prefix)
    gkey = np.unique(rows.column("gkey").to_numpy())  # ascending: by wallet, then token
    return pa.table(
        {
            "wallet": names.take(pa.array(gkey >> 32)),
            "token_id": tokens.take(pa.array(gkey & _LOW32)),
        }
    )


def group_wallets(groups: pa.Table) -> list[str]:
    """The wallets of ``window_groups``' groups, each once, in sorted order."""
    return pc.unique(groups.column("wallet")).to_pylist()


@dataclass
class Advance:
    """What ``advance`` read: ledger rows (fills, events, opening rows) and active wallets."""

    ledger_rows: int = 0
    active_wallets: int | None = None  # None: the whole history was read


def advance(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    state: LedgerState | None,
    since: datetime | None,
    until: datetime | None,
    *,
    token_info: str,
    report: Advance | None = None,
    chunk_rows: int = 1_000_000,
) -> LedgerState:
    """``state`` (at ``since``) moved forward over the rows in (``since``, ``until``];
    without a state, every wallet's ledger over the whole history up to ``until``."""
    window = window_state(con, lake, state, since, until, token_info=token_info,
                          report=report, chunk_rows=chunk_rows)  # fmt: skip
    moved = combined(state, window)
    return moved.whole() if isinstance(moved, MergedState) else moved


def combined(state: LedgerState | None, window: LedgerState | None) -> LedgerState | MergedState:
    """``state`` with ``window_state``'s window added: the window alone without a state
    (the whole history), the state alone without a window, else their ``MergedState``."""
    if state is None:
        assert window is not None  # the whole history's ledger, rows or none
        return window
    return state if window is None else MergedState(state, window)


def window_state(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    state: LedgerState | None,
    since: datetime | None,
    until: datetime | None,
    *,
    token_info: str,
    report: Advance | None = None,
    chunk_rows: int = 1_000_000,
) -> LedgerState | None:
    """The ledger of the rows in (``since``, ``until``] that ``MergedState`` adds to
    ``state``, its open positions among the groups they touch opened first; None when no
    row falls in the window. Without a state, every wallet's ledger over the whole history
    up to ``until``."""
    report = report if report is not None else Advance()
    prefix = "_ckpt"
    opening_name = f"{prefix}_opening"
    wallets: list[str] | None = None
    if state is not None:
        if since is None:
            raise ValueError("a ledger state needs the time it holds at (since)")
        groups = window_groups(con, lake, since, until, token_info=token_info)
        wallets = group_wallets(groups)
        report.active_wallets = len(wallets)
        if not wallets:
            return None
        con.register(opening_name, state.opening(groups))
    try:
        fills = load_sorted_fills(
            con, lake, wallets=wallets, until=until, prefix=prefix,
            since=since if state is not None else None,
            opening=opening_name if state is not None else None, token_info=token_info,
        )  # fmt: skip
        names = key_names(con, prefix)
    finally:
        if state is not None:
            con.unregister(opening_name)
        drop_fill_keys(con, prefix)
    report.ledger_rows += fills.num_rows
    arrays = FillArrays.of(fills)
    pieces = [summarize_chunk(fills, arrays, c) for c in group_chunks(arrays.gkey, chunk_rows)]
    return LedgerState(
        pa.concat_tables(pieces), names[0], names[1], last_trade_prices(arrays, len(names[1]))
    )


class MergedState:
    """``state`` plus the totals of a window whose ledger opened the state's open positions
    among the groups it touches as synthetic buys (``window_state``), built a range of rows
    at a time (``ranges``, ``rows``) or whole (``whole``).

    Such an opening row is a position event to the ledger: its shares and cost are taken
    back out of the window's event totals before they are added, and a group whose only
    row in the window is its opening is left as it was.

    Its ranges let a run write every position from a memory-mapped checkpoint without a
    second copy of the whole state: on this host each GB of fresh memory costs seconds of
    page faults (docs/architecture.md §5).
    """

    def __init__(self, state: LedgerState, window: LedgerState) -> None:
        self.wallets, wallet_rank, window_wallet = _union(state.wallets, window.wallets)
        self.tokens, token_rank, window_token = _union(state.tokens, window.tokens)
        self._base = {name: state.column(name) for name in SUMMARY_TYPES}
        self._base["gkey"] = _rekey(self._base["gkey"], wallet_rank, token_rank)
        old_keys = self._base["gkey"]
        keys = _rekey(window.column("gkey"), window_wallet, window_token)
        at = np.searchsorted(old_keys, keys)
        found = at < len(old_keys)
        found[found] = old_keys[at[found]] == keys[found]
        self._new = {name: window.column(name) for name in SUMMARY_TYPES} | {"gkey": keys}
        # Both key lists ascend (ids follow the sorted names): a new group goes in before
        # the first old key above it, so the places of insertion and update ascend too.
        self._added = np.flatnonzero(~found)
        self._insert_at = at[self._added]
        self._found = np.flatnonzero(found)
        self._found_at = at[self._found]
        marks = np.full(len(self.tokens), np.nan)
        marks[token_rank] = state.marks
        traded = ~np.isnan(window.marks)
        marks[window_token[traded]] = window.marks[traded]
        self.marks = marks

    def ranges(self, rows: int) -> list[tuple[int, int]]:
        """The state's rows in ranges of ``rows``: ``rows(first, end)`` of each, in order,
        is the whole merged summary."""
        return _ranges(len(self._base["gkey"]), rows)

    def whole(self) -> LedgerState:
        return LedgerState(
            self.rows(0, len(self._base["gkey"])), self.wallets, self.tokens, self.marks
        )

    def rows(self, first: int, end: int) -> pa.Table:
        """The state's rows [first, end) merged with the window's, and the new groups that
        go in before row ``end`` (all the remaining ones in the last range)."""
        last = end == len(self._base["gkey"])
        lo, hi = np.searchsorted(self._insert_at, [first, end])
        hi = len(self._insert_at) if last else hi
        insert_at = self._insert_at[lo:hi] - first
        added = self._added[lo:hi]
        new = self._new
        columns = {
            name: np.insert(self._base[name][first:end], insert_at, new[name][added])
            for name in SUMMARY_TYPES
        }
        f_lo, f_hi = np.searchsorted(self._found_at, [first, end])
        i = self._found[f_lo:f_hi]
        row = self._found_at[f_lo:f_hi] - first
        j = row + np.searchsorted(insert_at, row, "right")  # each old row moves down
        rows = new["buys"][i] + new["sells"][i] + new["position_events"][i]
        open_shares = np.maximum(columns["shares"][j], 0.0)
        opened = open_shares > 0
        moved = ~opened | (rows > 1)  # an opened group with no row but its opening is as it was
        i, j, open_shares, opened = i[moved], j[moved], open_shares[moved], opened[moved]
        opening_cost = open_shares * columns["avg_price"][j]
        for name in _ADDED:
            more = new[name][i]
            if name == "event_bought_shares":
                more = more - open_shares
            elif name == "event_bought_usd":
                more = more - opening_cost
            elif name == "position_events":
                more = more - opened
            columns[name][j] += more
        # A closed position is not opened (a buy of no shares has no price), so the window's
        # ledger met it with no average; until it buys again, its average is still the old one.
        bought = opened | (new["buys"][i] > 0) | (new["event_bought_shares"][i] > 0)
        columns["avg_price"][j] = np.where(bought, new["avg_price"][i], columns["avg_price"][j])
        for name in ("shares", "last_ts_us"):
            columns[name][j] = new[name][i]
        columns["last_fill_price"][j] = np.where(
            np.isnan(new["last_fill_price"][i]), columns["last_fill_price"][j],
            new["last_fill_price"][i],
        )  # fmt: skip
        return pa.table(columns)


def _ranges(size: int, rows: int) -> list[tuple[int, int]]:
    return [(first, min(first + rows, size)) for first in range(0, max(size, 1), rows)]


def _union(names: pa.Array, more: pa.Array) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """The sorted union of two sorted name lists, and where each name of either now is.

    Ids are places in sorted order, so renumbering keeps the order of the old ids: rows
    sorted by the old keys stay sorted by the new ones.
    """
    union = pc.unique(pa.concat_arrays([names, more]))
    union = union.take(pc.sort_indices(union))
    return (
        union,
        pc.index_in(names, value_set=union).to_numpy().astype(np.int64),
        pc.index_in(more, value_set=union).to_numpy().astype(np.int64),
    )


def _rekey(gkey: np.ndarray, wallet_ids: np.ndarray, token_ids: np.ndarray) -> np.ndarray:
    if _identity(wallet_ids) and _identity(token_ids):
        return gkey
    return (wallet_ids[gkey >> 32] << 32) | token_ids[gkey & _LOW32]


def _identity(ids: np.ndarray) -> bool:
    return bool(np.array_equal(ids, np.arange(len(ids))))


# ---- saved checkpoints ----------------------------------------------------------------


def checkpoint_dir(lake: Lake, day: date) -> Path:
    return lake.root / CACHE_DIR / f"day={day.isoformat()}"


def input_fingerprint(
    con: duckdb.DuckDBPyConnection, lake: Lake, day: date, *, token_info: str
) -> str:
    """What a state at the end of ``day`` was computed from: the day files of trades and CTF
    events up to it, and the market facts their position events read."""
    digest = hashlib.sha256(STATE_VERSION.encode())
    for table in (TRADES.name, CTF_EVENTS.name):
        for file in lake.listing(table, end=day):
            relative = str(Path(file.path).relative_to(lake.root))
            digest.update(f"{relative}|{file.size}|{file.mtime_ns}\n".encode())
    events = lake.files(CTF_EVENTS.name, end=day)
    if events:
        facts = con.execute(market_facts_digest_sql(lake, events, token_info=token_info))
        digest.update(repr(facts.fetchone()).encode())
    return digest.hexdigest()


@contextmanager
def _checkpoints_locked(lake: Lake, mode: int) -> Iterator[None]:
    """Hold the checkpoints' lock: exclusive to save, shared to load. A positions run saves
    after its materialization is out (``PositionsUpdate.save_checkpoint``), so the next
    sync's run may start meanwhile: it waits for the save and starts from it."""
    base = lake.root / CACHE_DIR
    base.mkdir(parents=True, exist_ok=True)
    with (base / LOCK_FILE).open("a") as handle:
        fcntl.flock(handle.fileno(), mode)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def save_checkpoint(lake: Lake, day: date, state: LedgerState, fingerprint: str) -> None:
    """Write the state at the end of ``day``: three Arrow files tied by one write id (the
    summary last, so a crash between them leaves a checkpoint that ``load`` refuses)."""
    directory = checkpoint_dir(lake, day)
    write_id = uuid.uuid4().hex
    meta = {"write_id": write_id}
    parts = {
        "wallets.arrow": pa.table({"wallet": state.wallets}),
        "tokens.arrow": pa.table({"token_id": state.tokens, "mark_price": state.marks}),
        "summary.arrow": state.summary.combine_chunks(),
    }
    with _checkpoints_locked(lake, fcntl.LOCK_EX):
        for name, table in parts.items():
            metadata = meta | ({"fingerprint": fingerprint} if name == "summary.arrow" else {})
            table = table.replace_schema_metadata(metadata)
            write_atomically(
                directory / name,
                # Uncompressed, one chunk per column: a load memory-maps the file and each
                # column is one array in the page cache, no copy and no decompression. The
                # day's rollups open a few wallets' positions and touch a few pages of a
                # 1.6 GB state (20M fills); decompressing all of it took them 9 s beside a
                # positions run.
                lambda tmp, t=table: feather.write_feather(
                    t, tmp, compression="uncompressed", chunksize=max(t.num_rows, 1)
                ),
            )
        for old in checkpoint_days(lake)[:-KEEP_CHECKPOINTS]:
            shutil.rmtree(checkpoint_dir(lake, old), ignore_errors=True)


def checkpoint_days(lake: Lake) -> list[date]:
    base = lake.root / CACHE_DIR
    if not base.exists():
        return []
    days = []
    for entry in base.iterdir():
        if entry.name.startswith("day="):
            try:
                days.append(date.fromisoformat(entry.name[4:]))
            except ValueError:
                continue
    return sorted(days)


def load_checkpoint(
    con: duckdb.DuckDBPyConnection, lake: Lake, *, on_or_before: date, token_info: str
) -> tuple[date, LedgerState] | None:
    """The newest checkpoint at or before ``on_or_before`` whose inputs are unchanged."""
    if not checkpoint_days(lake):
        return None
    with _checkpoints_locked(lake, fcntl.LOCK_SH):
        return _load_newest(con, lake, on_or_before, token_info)


def _load_newest(
    con: duckdb.DuckDBPyConnection, lake: Lake, on_or_before: date, token_info: str
) -> tuple[date, LedgerState] | None:
    for day in reversed([d for d in checkpoint_days(lake) if d <= on_or_before]):
        directory = checkpoint_dir(lake, day)
        try:
            tables = {
                name: feather.read_table(directory / f"{name}.arrow", memory_map=True)
                for name in ("summary", "wallets", "tokens")
            }
        except (OSError, pa.ArrowInvalid):
            continue  # incomplete or damaged: an older one, or the whole history
        meta = {name: t.schema.metadata or {} for name, t in tables.items()}
        ids = {m.get(b"write_id") for m in meta.values()}
        if len(ids) != 1 or None in ids:
            continue
        fingerprint = meta["summary"].get(b"fingerprint", b"").decode()
        if fingerprint != input_fingerprint(con, lake, day, token_info=token_info):
            continue
        tokens = tables["tokens"]
        state = LedgerState(
            tables["summary"].replace_schema_metadata(None),
            tables["wallets"].column("wallet").combine_chunks(),
            tokens.column("token_id").combine_chunks(),
            tokens.column("mark_price").to_numpy(),
        )
        return day, state
    return None
