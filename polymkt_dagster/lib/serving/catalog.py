"""The DuckDB catalog file: views over the lake that anyone can open with DuckDB.

Views read the lake through globs, so partitions written after a refresh are visible
without refreshing again; a table with no files yet gets a typed empty view instead of a
glob that would fail. Only the catalog asset writes this file (DuckDB allows one writer).
"""

from __future__ import annotations

from pathlib import Path

from polymkt_dagster.lib.analytics.resolutions import (
    CTF_EVENTS_TABLE,
    RESOLUTIONS,
    ctf_events_glob_relation,
    resolutions_sql,
)
from polymkt_dagster.lib.core.duck import connect, sql_string
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.schemas import MARKETS, RAW_TABLES, Table


def view_sql(lake: Lake, table: Table) -> str:
    single = lake.single_file(table.name)
    if single.exists():
        source = f"read_parquet({sql_string(single.resolve())}, union_by_name = true)"
    elif lake.files(table.name):
        pattern = lake.table_dir(table.name).resolve() / "**" / "*.parquet"
        source = (
            f"read_parquet({sql_string(pattern)}, union_by_name = true, hive_partitioning = false)"
        )
    else:
        return table.typed_empty_select()
    return table.canonical_select(
        f"(SELECT * FROM {source} UNION ALL BY NAME {table.typed_empty_select()})"
    )


def refresh_catalog(lake: Lake, catalog_path: Path) -> dict[str, int]:
    """(Re)create the raw views and ``resolutions``; returns the row count each view sees."""
    catalog_path.parent.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    with connect(catalog_path, lock_timeout_s=30) as con:
        for table in RAW_TABLES.values():
            con.execute(f"CREATE OR REPLACE VIEW {table.name} AS {view_sql(lake, table)}")
            row = con.execute(f"SELECT count(*) FROM {table.name}").fetchone()
            counts[table.name] = int(row[0]) if row else 0
        # One resolution per market (chain first, then Gamma), over the views above.
        ctf = CTF_EVENTS_TABLE if CTF_EVENTS_TABLE in RAW_TABLES else None
        con.execute(
            f"CREATE OR REPLACE VIEW {RESOLUTIONS.name} AS "
            + resolutions_sql(
                lake,
                markets_relation=MARKETS.name,
                ctf_relation=ctf or ctf_events_glob_relation(lake),
            )
        )
        row = con.execute(f"SELECT count(*) FROM {RESOLUTIONS.name}").fetchone()
        counts[RESOLUTIONS.name] = int(row[0]) if row else 0
    return counts
