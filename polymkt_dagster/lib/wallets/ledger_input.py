"""What the ledger reads from the lake: ``load_sorted_fills`` gathers a run's rows (own
fills, the users' CTF position events with conversion prices resolved, an optional
opening state) as compact numeric columns, with the wallet and token ids kept in DuckDB
temp tables (``attach_keys`` maps ids back to strings); the SQL of the token facts
(``token_info_sql``: market, outcome, payout) and of the trades files
(``fills_source_sql``). The array work of reading and sorting is in ``fill_reader.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from polymkt_dagster.lib.core.duck import sql_string
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.schemas import MARKETS, TRADES
from polymkt_dagster.lib.wallets.fill_reader import read_sorted_rows
from polymkt_dagster.lib.wallets.ledger import run_ledger
from polymkt_dagster.lib.wallets.position_events import (
    KIND_EVENT,
    KIND_EVENT_SELL_AT_AVG,
    EventRows,
    load_event_rows,
    market_resolutions_sql,
)


def token_info_sql(lake: Lake) -> str:
    """Per token: market_id, outcome_index, outcome, resolved, payout, resolved_at.

    The one resolution definition of ``lib/analytics/resolutions.py``: the chain's payouts
    (``ConditionResolution`` numerators / their sum, at that block's time) when the lake
    has them, else Gamma's decision (at ``closed_time``, else ``end_date``); a 50/50
    resolution pays 0.5 per outcome.
    """
    return f"""
        SELECT token_id, market_id, CAST(outcome_index AS INTEGER) AS outcome_index, outcome,
               coalesce(r.resolved, false) AS resolved,
               CAST(r.payouts[outcome_index + 1] AS DOUBLE) AS payout,
               CASE WHEN r.resolved THEN r.resolved_at END AS resolved_at
        FROM (
            SELECT
                unnest(token_ids) AS token_id,
                unnest(generate_series(0, len(token_ids) - 1)) AS outcome_index,
                unnest(CASE WHEN len(outcomes) = len(token_ids) THEN outcomes
                            ELSE list_transform(token_ids, x -> NULL::VARCHAR) END) AS outcome,
                market_id
            FROM {lake.scan_sql(MARKETS)}
            WHERE len(token_ids) > 0
        ) t
        LEFT JOIN ({market_resolutions_sql(lake)}) r USING (market_id)
        QUALIFY row_number() OVER (PARTITION BY token_id ORDER BY market_id) = 1
    """


def register_token_info(con: duckdb.DuckDBPyConnection, lake: Lake, prefix: str) -> str:
    """``token_info_sql`` as the temp table ``{prefix}_info`` (one pass over the markets and
    the chain's resolutions for a whole ledger run); returns its name."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {prefix}_info AS {token_info_sql(lake)}")
    return f"{prefix}_info"


def fills_source_sql(
    lake: Lake, until: datetime | None = None, since: datetime | None = None
) -> str:
    """The trades files up to ``until``'s day with ``file_row_number`` (the in-file order).

    Day files are sorted by (market, time, fill id), so for one token and second the row
    number orders fills by fill id: a free, deterministic tie-break within a second.
    """
    files = lake.files(
        TRADES.name, start=since.date() if since else None, end=until.date() if until else None
    )
    empty = f"SELECT {', '.join(f'CAST(NULL AS {t}) AS {c}' for c, t in TRADES.columns)}"
    empty += ", CAST(NULL AS BIGINT) AS file_row_number WHERE false"
    if not files:
        return f"({empty})"
    file_list = "[" + ", ".join(sql_string(f) for f in files) + "]"
    scan = (
        f"read_parquet({file_list}, union_by_name = true, hive_partitioning = false, "
        "file_row_number = true)"
    )
    if all(set(TRADES.column_names) <= set(pq.read_schema(f).names) for f in (files[0], files[-1])):
        # every column present at both ends of the lake: the plain scan keeps DuckDB's
        # projection pushdown and parallelism (the typed union below is for older lakes)
        return scan
    return f"(SELECT * FROM {scan} UNION ALL BY NAME {empty})"


def _opening_fills(
    con: duckdb.DuckDBPyConnection, opening: str | None, since_us: int | None
) -> pa.Table:
    """The open positions of ``opening`` (wallet, token_id, shares, avg_price)."""
    if opening is None or since_us is None:
        return pa.table({"wallet": pa.array([], pa.string())})
    return con.execute(
        f"SELECT wallet, token_id, shares, avg_price FROM {opening} "
        "WHERE shares > 0 AND wallet IS NOT NULL AND token_id IS NOT NULL"
    ).to_arrow_table()


def load_sorted_fills(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    *,
    wallets: Sequence[str] | None = None,
    until: datetime | None = None,
    prefix: str = "_fills",
    since: datetime | None = None,
    opening: str | None = None,
    token_info: str | None = None,
) -> pa.Table:
    """Own fills and position events sorted by (wallet, token, time, in-file order) as
    compact numeric columns.

    A wallet is credited with the fills where it is the maker (maker, token and a positive
    amount present). With ``since``, only fills after it are read (only the day files from
    its day on), and ``opening`` (a relation of wallet, token_id, shares, avg_price) opens
    each position as a synthetic buy of its shares at its average price at ``since``: from
    an empty position that reproduces the state exactly, so a checkpoint plus the newer
    fills give the same ledger as the whole history.

    The users' position events of ``ctf_events`` (``lib/wallets/position_events.py``) join them as
    ledger rows of their ``kind``, conversions' YES prices resolved
    (``_resolve_conversion_prices``); ``token_info`` is ``token_info_sql``'s relation when
    the caller has it already (redemptions read its payouts).

    Columns: gkey (wallet id << 32 | token id), ts_us, is_buy, kind, shares, price, fee,
    frn (the row's place in its day file: with the second, it orders a token's trades). Wallets and
    tokens are numbered in sorted order, kept in temp tables ``{prefix}_w(wallet, wid)``
    and ``{prefix}_t(token_id, tid)`` (``attach_keys`` maps back).

    The files are read with an Arrow dataset scanner straight into preallocated arrays,
    keeping the Parquet dictionaries of maker and token: ids come from hashing the
    dictionaries, not tens of millions of addresses and 77-digit token ids, and rows are
    ordered by a counting sort on the ids (``fill_reader.py``).
    """
    if opening is not None and since is None:
        raise ValueError("an opening state needs the time it holds at (since)")
    since_us = _epoch_us(since) if since is not None else None
    until_us = _epoch_us(until) if until is not None else None
    watched = pa.array(sorted(set(wallets)), pa.string()) if wallets is not None else None
    files = lake.files(
        TRADES.name, start=since.date() if since else None, end=until.date() if until else None
    )
    events = load_event_rows(
        con, lake, wallets=wallets, since=since, until=until,
        token_info=token_info or f"({token_info_sql(lake)})",
    )  # fmt: skip
    opening_rows = _opening_fills(con, opening, since_us)
    columns, wallet_names, token_names = read_sorted_rows(
        files, opening_rows, since_us, until_us, watched, events
    )
    first_event = opening_rows.num_rows
    register_keys(con, prefix, wallet_names, token_names)
    if len(events.no_count):
        _resolve_conversion_prices(columns, columns["prefix_at"][first_event:], events)
    return pa.table({name: columns[name] for name in _FILL_TABLE_COLUMNS})


def _resolve_conversion_prices(
    columns: dict[str, np.ndarray], event_at: np.ndarray, events: EventRows
) -> None:
    """Set the price of each conversion's YES buys (NaN until now), in place.

    ``computeNegRiskYesPrice`` needs the average price of each converted NO position at
    the conversion (pnl-subgraph ``NegRiskAdapterMapping.ts``). NO positions never depend
    on a conversion's YES buys (a conversion only buys YES), so an exact pass of the
    ledger over just the (wallet, NO token) groups that take part in conversions gives
    those prices, before the main pass runs with every price known.
    """
    conversion = events.columns["conversion"]
    kind = events.columns["kind"]
    no_rows = np.flatnonzero((conversion >= 0) & (kind == KIND_EVENT_SELL_AT_AVG))
    yes_rows = np.flatnonzero((conversion >= 0) & (kind == KIND_EVENT))
    gkey = columns["gkey"]
    no_at = event_at[no_rows]
    keys = np.unique(gkey[no_at])
    lo = np.searchsorted(gkey, keys, "left")
    hi = np.searchsorted(gkey, keys, "right")
    lengths = hi - lo
    # the rows of those groups, in order: each group's range [lo, hi) laid end to end
    rows = np.arange(int(lengths.sum()), dtype=np.int64)
    rows += np.repeat(lo - (np.cumsum(lengths) - lengths), lengths)
    ledger = run_ledger(
        gkey[rows], columns["is_buy"][rows], columns["shares"][rows], columns["price"][rows],
        columns["fee"][rows], kind=columns["kind"][rows],
    )  # fmt: skip
    no_avg = ledger.avg_before[np.searchsorted(rows, no_at)]  # rows ascend
    conversions = len(events.no_count)
    no_sum = np.bincount(conversion[no_rows], weights=no_avg, minlength=conversions)
    k = events.no_count.astype(np.float64)
    n = events.question_count.astype(np.float64)
    # integer division in the subgraph (6-decimal BigInts); exact division here. Averages
    # of questions the lake does not map count as 0, as the subgraph's new positions do.
    no_price = np.divide(no_sum, k, out=np.zeros(conversions), where=k > 0)
    yes_price = np.divide(no_price * k - (k - 1.0), n - k, out=np.zeros(conversions), where=n > k)
    columns["price"][event_at[yes_rows]] = yes_price[conversion[yes_rows]]


_FILL_TABLE_COLUMNS = ("gkey", "ts_us", "is_buy", "kind", "shares", "price", "fee", "frn")
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch_us(moment: datetime) -> int:
    """Exact microseconds since the epoch (a naive time is UTC, as DuckDB reads it here)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _UNIX_EPOCH) // timedelta(microseconds=1)


def register_keys(
    con: duckdb.DuckDBPyConnection, prefix: str, wallets: pa.Array, tokens: pa.Array
) -> None:
    """The id dictionaries as temp tables ``{prefix}_w`` and ``{prefix}_t`` (SQL joins by
    token id, and ``attach_keys``, read them)."""
    for suffix, name, values in (("w", "wallet", wallets), ("t", "token_id", tokens)):
        key = "wid" if suffix == "w" else "tid"
        arrow_name = f"{prefix}_{suffix}_arrow"
        con.register(
            arrow_name, pa.table({name: values, key: np.arange(len(values), dtype=np.int64)})
        )
        try:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {prefix}_{suffix} AS SELECT * FROM {arrow_name}"
            )
        finally:
            con.unregister(arrow_name)


def attach_keys(con: duckdb.DuckDBPyConnection, table: pa.Table, prefix: str) -> pa.Table:
    """Add ``wallet`` and ``token_id`` to a table with gkey (ids decoded, strings taken).

    Ids are dense row numbers, so decoding is two array ``take``s: far cheaper than joining
    millions of groups back to the dictionaries in SQL.
    """
    gkey = table.column("gkey").to_numpy()
    wallets, tokens = key_names(con, prefix)
    wallet = wallets.take(pa.array(gkey >> 32))
    token = tokens.take(pa.array(gkey & 0xFFFFFFFF))
    return table.append_column("wallet", wallet).append_column("token_id", token)


def key_names(con: duckdb.DuckDBPyConnection, prefix: str) -> tuple[pa.Array, pa.Array]:
    """The wallets and token ids of ``{prefix}_w``/``{prefix}_t``, each indexed by its id."""
    wallets = con.execute(f"SELECT wallet FROM {prefix}_w ORDER BY wid").to_arrow_table()
    tokens = con.execute(f"SELECT token_id FROM {prefix}_t ORDER BY tid").to_arrow_table()
    return wallets.column(0).combine_chunks(), tokens.column(0).combine_chunks()


def drop_fill_keys(con: duckdb.DuckDBPyConnection, prefix: str = "_fills") -> None:
    con.execute(f"DROP TABLE IF EXISTS {prefix}_w")
    con.execute(f"DROP TABLE IF EXISTS {prefix}_t")
