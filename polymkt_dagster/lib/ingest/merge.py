"""Merging new rows into the raw tables: the one code path for bootstrap and live sync.

Order fills and CTF position events merge into their day partitions (union with what is
there, one row per id), markets and events into their single files (one row per id, newest
``updated_at`` first). Nothing already in the lake is lost and nothing is duplicated,
however often the same rows arrive.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import duckdb

from polymkt_dagster.lib.core.lake import DAY_COLUMN, Lake, PartitionWrite
from polymkt_dagster.lib.core.schemas import CTF_EVENTS, EVENTS, MARKETS, ORDER_FILLED, Table

STREAM_BATCH_ROWS = 122_880


def _days_and_duplicates(con: duckdb.DuckDBPyConnection, relation: str) -> tuple[list[date], int]:
    """Distinct UTC days of the ``timestamp`` column, ascending, and how many rows repeat an id.

    One pass over the relation for both (it may be an expensive SELECT).
    """
    row = con.execute(
        f'SELECT list(DISTINCT CAST("timestamp" AS DATE) ORDER BY CAST("timestamp" AS DATE)), '
        f"count(*) - count(DISTINCT id) FROM ({relation})"
    ).fetchone()
    if not row or row[0] is None:
        return [], 0
    return list(row[0]), int(row[1])


def stored_row_wins_sql(table: Table, fresh: str, stored: str | None) -> str:
    """Canonical columns of ``table`` from the relations ``fresh`` and ``stored``, one row per
    id: an id present in ``stored`` keeps its stored row."""
    columns = ", ".join(f'"{c}"' for c in table.column_names)
    rows = f"SELECT {columns}, 0 AS priority FROM {fresh}"
    if stored is not None:
        rows += f" UNION ALL SELECT {columns}, 1 AS priority FROM {stored}"
    return (
        f"SELECT {columns} FROM ({rows}) "
        "QUALIFY row_number() OVER (PARTITION BY id ORDER BY priority DESC) = 1"
    )


def stored_fill_wins_sql(fresh: str, stored: str | None) -> str:
    """``stored_row_wins_sql`` for the order fills."""
    return stored_row_wins_sql(ORDER_FILLED, fresh, stored)


# Row order inside a day partition, after the day itself.
_DAY_ORDER: dict[str, str] = {
    ORDER_FILLED.name: '"timestamp", transaction_hash, id',
    CTF_EVENTS.name: '"timestamp", block_number, log_index, id',
}


def merge_day_rows(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    table: Table,
    fresh: str,
    *,
    progress: Callable[[str], None] | None = None,
) -> list[PartitionWrite]:
    """Merge the canonical rows of ``fresh`` (a SELECT) into ``table``'s day partitions.

    For the raw event tables keyed by ``id`` with a ``timestamp`` (order_filled,
    ctf_events). Only the days present in ``fresh`` are rewritten, each atomically, with
    the union of its old and new rows; an id already present keeps its stored row. When
    those days hold nothing yet and the fresh ids are unique, there is nothing to
    deduplicate and the rows are only sorted.
    """
    columns = ", ".join(f'"{c}"' for c in table.column_names)
    days, repeated = _days_and_duplicates(con, fresh)
    if not days:
        return []
    existing = [f for day in days for f in lake.day_files(table.name, day)]
    day_key = f'CAST("timestamp" AS DATE) AS {DAY_COLUMN}'
    order = f"ORDER BY {DAY_COLUMN}, {_DAY_ORDER.get(table.name, 'id')}"
    if not existing and not repeated:
        merged = f"SELECT {columns}, {day_key} FROM ({fresh}) {order}"
    else:
        stored = lake.scan_sql(table, existing) if existing else None
        union = stored_row_wins_sql(table, f"({fresh})", stored)
        merged = f"SELECT {columns}, {day_key} FROM ({union}) {order}"
    writes: list[PartitionWrite] = []

    def on_partition(write: PartitionWrite) -> None:
        writes.append(write)
        if progress and (len(writes) % 50 == 0 or len(writes) == len(days)):
            progress(f"{table.name}: {len(writes)}/{len(days)} day partitions written")

    lake.write_sorted_days(
        table.name,
        con.execute(merged).fetch_record_batch(rows_per_batch=STREAM_BATCH_ROWS),
        on_partition=on_partition,
    )
    return writes


def merge_order_fills(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    fresh: str,
    *,
    progress: Callable[[str], None] | None = None,
) -> list[PartitionWrite]:
    """Merge the canonical fills of ``fresh`` (a SELECT) into their day partitions."""
    return merge_day_rows(con, lake, ORDER_FILLED, fresh, progress=progress)


def merge_ctf_events(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    fresh: str,
    *,
    progress: Callable[[str], None] | None = None,
) -> list[PartitionWrite]:
    """Merge canonical CTF position events (docs/architecture.md §3.1) by id, like the fills."""
    return merge_day_rows(con, lake, CTF_EVENTS, fresh, progress=progress)


def _merge_single(
    con: duckdb.DuckDBPyConnection, lake: Lake, table: Table, fresh: str, order: str
) -> int:
    columns = ", ".join(table.column_names)
    key = table.key[0]
    final = (
        f"SELECT {columns} FROM ("
        f"SELECT {columns}, 0 AS priority FROM ({fresh}) "
        f"UNION ALL SELECT {columns}, 1 AS priority FROM {lake.scan_sql(table)}) "
        f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY {order}) = 1"
    )
    staging = f"merged_{table.name}"
    con.execute(f"CREATE OR REPLACE TEMP TABLE {staging} AS {final}")
    lake.write_single(table.name, con, f"SELECT * FROM {staging} ORDER BY {key}")
    row = con.execute(f"SELECT count(*) FROM {staging}").fetchone()
    return int(row[0]) if row else 0


def merge_markets(con: duckdb.DuckDBPyConnection, lake: Lake, fresh: str) -> int:
    """Merge canonical market rows; per market the newest ``updated_at`` wins (fresh on a tie).

    Returns the number of markets in the table afterwards.
    """
    return _merge_single(con, lake, MARKETS, fresh, "updated_at DESC NULLS LAST, priority")


def merge_events(con: duckdb.DuckDBPyConnection, lake: Lake, fresh: str) -> int:
    """Merge canonical event rows; the fresh row of an event replaces the stored one."""
    return _merge_single(con, lake, EVENTS, fresh, "priority")
