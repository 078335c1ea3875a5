"""The trades files, with any opening and position-event rows, read into numeric arrays
grouped by (wallet, token) and ordered by time: the memory- and time-bound part of
reading all wallets' positions, kept apart from what the ledger does with the rows
(``ledger_input.load_sorted_fills`` is the caller).

Reading is bound by moving tens of millions of rows, so it avoids strings per row: the
trades files are read with pyarrow into preallocated arrays, maker and token kept as their
Parquet dictionaries (ids come from hashing the dictionaries, a batch of row groups at a
time), and a counting sort on those ids groups the fills. Opening and event rows (a few
per hundred fills) come first in lake order and are merged into each group's time order
by a linear pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from polymkt_dagster.lib.wallets import ledger_kernels
from polymkt_dagster.lib.wallets.position_events import KIND_EVENT, KIND_FILL, EventRows

if TYPE_CHECKING:
    import pyarrow.dataset as ds


def read_sorted_rows(
    files: list[Path],
    opening: pa.Table,
    since_us: int | None,
    until_us: int | None,
    wallets: pa.Array | None,
    events: EventRows,
) -> tuple[dict[str, np.ndarray], pa.Array, pa.Array]:
    """The opening rows (wallet, token_id, shares, avg_price: buys at ``since_us``), the
    position events' rows and the own fills of ``files`` (of ``wallets`` when given, in
    the time window), sorted by (wallet, token, time, file row).

    Returns the columns (gkey = wallet id << 32 | token id, ts_us, frn, is_buy, kind,
    shares, price, fee, and ``prefix_at``: where each opening row, then each event row,
    landed, -1 when not kept) and the wallets and token ids in sorted order, each at its
    id.
    """
    raw = _read_raw_fills(files, opening, since_us, until_us, wallets, events)
    wallet_names, token_names = raw.assign_ids()
    return _sorted_fills(raw, len(wallet_names), len(token_names)), wallet_names, token_names


_FILL_COLUMNS = ("maker", "token_id", "timestamp", "maker_direction", "token_amount", "price",
                 "fee")  # fmt: skip


# frn is a row of one day file: int32 is ample, and 80 MB less per 20 million fills
_PAYLOAD = np.dtype(
    [("ts", np.int64), ("frn", np.int32), ("shares", np.float64), ("price", np.float64),
     ("fee", np.float64), ("is_buy", np.bool_), ("kind", np.int8)]
)  # fmt: skip


@dataclass
class _Numbering:
    """Strings numbered in the order first seen, a batch of dictionaries at a time: only the
    distinct strings are kept, not every row group's dictionary until the end."""

    values: pa.Array = field(default_factory=lambda: pa.array([], pa.string()))

    def add(self, dictionaries: list[pa.Array]) -> list[np.ndarray]:
        """The number of each entry of each dictionary (new strings take the next ones:
        dictionary_encode numbers by first occurrence, so earlier numbers stand)."""
        if not dictionaries:
            return []
        seen = len(self.values)
        encoded = pc.dictionary_encode(pa.concat_arrays([self.values, *dictionaries]))
        self.values = encoded.dictionary
        ids = encoded.indices.to_numpy()[seen:].astype(np.int32)
        return np.split(ids, np.cumsum([len(d) for d in dictionaries])[:-1])

    def sorted(self) -> tuple[pa.Array, np.ndarray]:
        """The strings in sorted order, and each number's place in it."""
        order = pc.array_sort_indices(self.values).to_numpy()
        rank = np.empty(len(order), dtype=np.int32)
        rank[order] = np.arange(len(order), dtype=np.int32)
        return self.values.take(pa.array(order)), rank


_PENDING_ENTRIES = 1_000_000  # dictionary entries held before they are numbered


@dataclass
class _RawFills:
    """Own-fill candidates in lake order (opening rows first, then every row of every file,
    at the file's offset), before ids and sorting. ``wid``/``tid`` hold each row's entry in
    its row group's dictionaries, then its number in ``wallets``/``tokens``, until
    ``assign_ids`` makes them sorted ids; ``keep`` marks the rows that are own fills in the
    window. The columns the ledger reads sit together per row (``payload``): the sort
    gathers a row with one memory access, not six."""

    wid: np.ndarray
    tid: np.ndarray
    keep: np.ndarray
    payload: np.ndarray
    wallets: _Numbering = field(default_factory=_Numbering)
    tokens: _Numbering = field(default_factory=_Numbering)
    # row groups not numbered yet: first row, end row, maker and token dictionaries
    pending: list[tuple[int, int, pa.Array, pa.Array]] = field(default_factory=list)
    pending_entries: int = 0
    prefix: int = 0  # opening and event rows come first, in time order; then the files

    @classmethod
    def allocate(cls, rows: int) -> _RawFills:
        # np.empty, then written: np.zeros' calloc pages fault in 4 KiB at a time
        keep = np.empty(rows, bool)
        keep.fill(False)
        return cls(
            wid=np.empty(rows, np.int32), tid=np.empty(rows, np.int32), keep=keep,
            payload=np.empty(rows, _PAYLOAD),
        )  # fmt: skip

    def column(self, name: str) -> np.ndarray:
        return self.payload[name]

    def add_group(self, lo: int, hi: int, makers: pa.Array, tokens: pa.Array) -> None:
        """Rows [lo, hi) hold entries of these dictionaries."""
        self.pending.append((lo, hi, makers, tokens))
        self.pending_entries += len(makers) + len(tokens)
        if self.pending_entries >= _PENDING_ENTRIES:
            self._number_pending()

    def _number_pending(self) -> None:
        wallet_ids = self.wallets.add([g[2] for g in self.pending])
        token_ids = self.tokens.add([g[3] for g in self.pending])
        for (lo, hi, _, _), w_ids, t_ids in zip(self.pending, wallet_ids, token_ids, strict=True):
            if len(w_ids) and len(t_ids):  # else no row of the group is kept
                self.wid[lo:hi] = w_ids[self.wid[lo:hi]]
                self.tid[lo:hi] = t_ids[self.tid[lo:hi]]
        self.pending, self.pending_entries = [], 0

    def assign_ids(self) -> tuple[pa.Array, pa.Array]:
        """Make ``wid``/``tid`` the ids of the sorted wallets and tokens; returns those."""
        self._number_pending()
        wallets, wallet_rank = self.wallets.sorted()
        tokens, token_rank = self.tokens.sorted()
        # rows that are not kept may hold any number: clip keeps the lookup in range
        if len(wallet_rank):
            np.take(wallet_rank, self.wid, out=self.wid, mode="clip")
        if len(token_rank):
            np.take(token_rank, self.tid, out=self.tid, mode="clip")
        return wallets, tokens


def _dictionary_parts(column: pa.Array) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """(dictionary, index per row, valid per row) of a string column, dictionary or not."""
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    dictionary = column.dictionary.cast(pa.string())
    valid = column.indices.is_valid().to_numpy(zero_copy_only=False)
    idx = column.indices.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int32)
    if dictionary.null_count and len(idx):
        valid &= dictionary.is_valid().to_numpy(zero_copy_only=False)[idx]
    return dictionary, idx, valid


def _take_batch(
    batch: pa.RecordBatch,
    lo: int,
    file_row: int,
    raw: _RawFills,
    wallets: pa.Array | None,
    since_us: int | None,
    until_us: int | None,
) -> tuple[int, int, pa.Array, pa.Array]:
    """One record batch of a trades file into ``raw`` at ``lo``, with ``keep`` set on its
    own fills (maker, token and a positive amount present; in the time window; of
    ``wallets`` when given); returns its rows and dictionaries. A column missing from the
    lake is null: no maker or token, no fill; no direction, a sell (as the SQL ``= 'BUY'``
    was); no price, NaN (the ledger then names the row); no fee, none."""
    rows = batch.num_rows
    hi = lo + rows
    makers, raw.wid[lo:hi], keep = _dictionary_parts(batch.column("maker"))
    tokens, raw.tid[lo:hi], token_valid = _dictionary_parts(batch.column("token_id"))
    keep &= token_valid
    if wallets is not None:
        keep &= pc.is_in(makers, value_set=wallets).to_numpy(zero_copy_only=False)[raw.wid[lo:hi]]
    shares = batch.column("token_amount").cast(pa.float64()).fill_null(0.0).to_numpy()
    keep &= shares > 0
    ts = batch.column("timestamp").cast(pa.timestamp("us", tz="UTC"), safe=False)
    keep &= ts.is_valid().to_numpy(zero_copy_only=False)
    ts_us = ts.cast(pa.int64()).fill_null(0).to_numpy()
    if since_us is not None:
        keep &= ts_us > since_us
    if until_us is not None:
        keep &= ts_us <= until_us
    raw.keep[lo:hi] = keep
    row = raw.payload[lo:hi]
    row["ts"] = ts_us
    row["shares"] = shares
    row["frn"] = np.arange(file_row, file_row + rows, dtype=np.int32)
    is_buy = pc.equal(batch.column("maker_direction").cast(pa.string()), "BUY")
    row["is_buy"] = is_buy.fill_null(False).to_numpy(zero_copy_only=False)
    row["price"] = batch.column("price").cast(pa.float64()).to_numpy(zero_copy_only=False)
    row["fee"] = batch.column("fee").cast(pa.float64()).fill_null(0.0).to_numpy()
    row["kind"] = KIND_FILL
    return lo, hi, makers, tokens


def _fill_dataset(files: list[Path]) -> tuple[ds.Dataset, int]:
    """The trades files as one dataset of the columns the ledger reads (maker, token and
    direction as their Parquet dictionaries; a column some files lack is null there), and
    their total rows."""
    # imported here: pyarrow.dataset brings pandas, 0.2 s for every process that loads the
    # definitions, most of which never read fills
    import pyarrow.dataset as ds

    metas = [pq.ParquetFile(f) for f in files]
    rows = sum(m.metadata.num_rows for m in metas)
    types: dict[str, pa.DataType] = {}
    for meta in metas:
        for column in meta.schema_arrow:
            types.setdefault(column.name, column.type)
    del metas
    defaults = {"timestamp": pa.timestamp("us", tz="UTC"), "maker_direction": pa.string()}
    fields = []
    for name in _FILL_COLUMNS:
        if name in _DICTIONARY_COLUMNS:
            fields.append(pa.field(name, pa.dictionary(pa.int32(), pa.string())))
        else:
            fields.append(pa.field(name, types.get(name, defaults.get(name, pa.float64()))))
    file_format = ds.ParquetFileFormat(
        read_options=ds.ParquetReadOptions(dictionary_columns=set(_DICTIONARY_COLUMNS))
    )
    return ds.dataset([str(f) for f in files], schema=pa.schema(fields), format=file_format), rows


_DICTIONARY_COLUMNS = ("maker", "token_id", "maker_direction")


def _read_raw_fills(
    files: list[Path],
    opening: pa.Table,
    since_us: int | None,
    until_us: int | None,
    wallets: pa.Array | None,
    events: EventRows | None = None,
) -> _RawFills:
    """The opening rows (as buys at ``since``), the position events' ledger rows (in time
    order), then every row of ``files`` in lake order.

    Arrow's scanner decodes the files on its own threads, in order, while this thread
    copies each decoded batch into the preallocated arrays."""
    dataset, rows = _fill_dataset(files) if files else (None, 0)
    first = opening.num_rows
    event_rows = events.num_rows if events is not None else 0
    raw = _RawFills.allocate(first + event_rows + rows)
    if event_rows:
        assert events is not None
        lo, hi = first, first + event_rows
        raw.wid[lo:hi] = events.wallet_index
        raw.tid[lo:hi] = events.token_index
        raw.keep[lo:hi] = True
        row = raw.payload[lo:hi]
        for name in ("ts", "frn", "is_buy", "kind", "shares", "price"):
            row[name] = events.columns[name]
        row["fee"] = 0.0
        raw.add_group(lo, hi, events.wallets, events.tokens)
    if first:
        makers, raw.wid[:first], _ = _dictionary_parts(opening.column("wallet").combine_chunks())
        tokens, raw.tid[:first], _ = _dictionary_parts(opening.column("token_id").combine_chunks())
        raw.keep[:first] = True
        row = raw.payload[:first]
        row["ts"] = since_us
        row["frn"] = -1  # before any fill of that time
        row["is_buy"] = True
        row["shares"] = opening.column("shares").to_numpy()
        row["price"] = opening.column("avg_price").to_numpy()
        row["fee"] = 0.0
        # an event, not a trade: it moves no mark, and the position counters (buys, bought
        # shares) stay those of real fills, so a checkpoint's totals can be added to them
        row["kind"] = KIND_EVENT
        raw.add_group(0, first, makers, tokens)
    raw.prefix = first + event_rows
    if dataset is None:
        return raw
    lo, path, file_row = raw.prefix, None, 0
    scanner = dataset.scanner(use_threads=True, batch_readahead=4, fragment_readahead=2)
    for tagged in scanner.scan_batches():
        batch = tagged.record_batch
        if tagged.fragment.path != path:
            path, file_row = tagged.fragment.path, 0
        if batch.num_rows:
            raw.add_group(*_take_batch(batch, lo, file_row, raw, wallets, since_us, until_us))
        lo += batch.num_rows
        file_row += batch.num_rows
    return raw


def _sorted_fills(raw: _RawFills, wallet_count: int, token_count: int) -> dict[str, np.ndarray]:
    """The kept rows by (wallet, token, time, file row), as load_sorted_fills' columns, and
    ``prefix_at``: where each opening or event row (raw row < ``raw.prefix``) landed (-1
    when not kept).

    Rows are in lake order (the opening and event rows in time order, then the day files
    in turn, each sorted by market and time), so a stable order by (wallet, token) alone
    is by time within each group except that the prefix rows come first: a linear merge
    puts them in place. That order is checked while gathering, and a full sort is the
    fallback.
    """
    kept = int(np.count_nonzero(raw.keep))
    columns = tuple(raw.column(name) for name in _PAYLOAD_ORDER)
    group_order = ledger_kernels.compiled_group_order
    gather = ledger_kernels.compiled_gather
    merge_prefix = ledger_kernels.compiled_merge_prefix
    if group_order is not None and gather is not None:
        # fresh memory is slow to fault in, so the sort's scratch arrays become the
        # gathered ts and frn columns (same types), and row numbers are int32 when they fit
        order = np.empty(kept, dtype=np.int32 if len(raw.keep) < 2**31 else np.int64)
        gkey = np.empty(kept, dtype=np.int64)
        ts_out = np.empty(kept, dtype=np.int64)
        frn_out = np.empty(kept, dtype=np.int32)
        by_token = ts_out if order.dtype == np.int64 else ts_out.view(np.int32)[:kept]
        group_order(
            raw.wid, raw.tid, raw.keep, wallet_count, token_count, order, gkey, by_token, frn_out
        )
        del by_token
        if raw.prefix and merge_prefix is not None:
            merge_prefix(order, gkey, columns[0], columns[1], raw.prefix)
        out = (ts_out, frn_out, *(np.empty(kept, dtype=c.dtype) for c in columns[2:]))
        if gather(order, gkey, columns, out):
            result = dict(zip(("gkey", *_SORTED_COLUMNS), (gkey, *out), strict=True))
            result["prefix_at"] = _prefix_positions(order, raw.prefix)
            return result
        del order, gkey, out
    rows = np.flatnonzero(raw.keep)
    ts, frn = raw.column("ts")[rows], raw.column("frn")[rows]
    order = rows[np.lexsort((frn, ts, raw.tid[rows], raw.wid[rows]))]
    del rows, ts, frn
    gkey = (raw.wid[order].astype(np.int64) << 32) | raw.tid[order]
    return (
        {"gkey": gkey}
        | {name: column[order] for name, column in zip(_SORTED_COLUMNS, columns, strict=True)}
        | {"prefix_at": _prefix_positions(order, raw.prefix)}
    )


def _prefix_positions(order: np.ndarray, prefix: int) -> np.ndarray:
    """For each raw row below ``prefix``, its place in ``order`` (-1 when not there)."""
    at = np.full(prefix, -1, dtype=np.int64)
    if prefix:
        places = np.flatnonzero(order < prefix)
        at[order[places]] = places
    return at


_PAYLOAD_ORDER = ("ts", "frn", "is_buy", "kind", "shares", "price", "fee")
_SORTED_COLUMNS = ("ts_us", "frn", "is_buy", "kind", "shares", "price", "fee")
