"""The BM25 index in the catalog: DuckDB FTS tables plus sorted postings, patched by hash."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from polymkt_dagster.lib.core.duck import connect, sql_string

if TYPE_CHECKING:
    from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.search.analysis import STOPWORDS, normalise_numbers_sql
from polymkt_dagster.lib.search.common import (
    BM25_INDEX_VERSION,
    FIELD_WEIGHTS,
    FTS_DELTA_SCHEMA,
    FTS_IGNORE,
    FTS_SCHEMA,
    FTS_STEMMER,
    FTS_STOPWORDS,
    FULL_REBUILD_FRACTION,
    INDEXED_FIELDS,
    INDEXED_SOURCES,
    Log,
    _scalar,
    _stage_documents,
    _table_exists,
    _transaction,
)

# ---- BM25 index --------------------------------------------------------------------------


@dataclass
class Bm25Report:
    """What one BM25 index update did."""

    mode: str  # "full", "incremental" or "unchanged"
    documents: int
    new: int
    changed: int
    deleted: int
    terms: int
    seconds: float
    catalog_path: str
    changed_sample: list[tuple[str, str]] = field(default_factory=list)

    @property
    def reindexed(self) -> int:
        return self.new + self.changed


def documents_select(source: str, where: str = "") -> str:
    """``search.documents`` rows from staged documents: display, filter and indexed columns."""
    indexed = ", ".join(
        f"{normalise_numbers_sql(src)} AS {name}" for name, src in INDEXED_SOURCES.items()
    )
    return f"SELECT {_DOCUMENT_COLUMNS}, {indexed} FROM {source} {where}"


_DOCUMENT_COLUMNS = (
    "market_id, question, event_title, slug, category, closed, resolved, volume, end_date, "
    "event_id, content_hash"
)


def _refresh_documents_sql(delta: str | None) -> str:
    """``search.documents`` again, normalising only changed texts: unchanged markets keep
    their indexed columns (the number rewriting is the costly part), every market takes
    its current filter and display columns; changed ones come from ``delta``."""
    kept = ", ".join(f"o.{name}" for name in INDEXED_FIELDS)
    current = ", ".join(f"i.{c.strip()}" for c in _DOCUMENT_COLUMNS.split(","))
    unchanged = (
        f"SELECT {current}, {kept} FROM incoming_documents i "
        f"JOIN search.documents o ON o.market_id = i.market_id "
        f"AND o.content_hash = i.content_hash"
    )
    changed = f" UNION ALL BY NAME SELECT * FROM {delta}" if delta else ""
    return f"CREATE OR REPLACE TABLE search.documents AS {unchanged}{changed} ORDER BY market_id"


def _write_index_settings(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE OR REPLACE TABLE search.bm25_stopwords (sw VARCHAR)")
    con.execute(
        "INSERT INTO search.bm25_stopwords SELECT unnest(?::VARCHAR[])", [sorted(STOPWORDS)]
    )
    con.execute("CREATE OR REPLACE TABLE search.bm25_settings (version VARCHAR)")
    con.execute("INSERT INTO search.bm25_settings VALUES (?)", [BM25_INDEX_VERSION])


def _index_version(con: duckdb.DuckDBPyConnection) -> str | None:
    if not _table_exists(con, "search", "bm25_settings"):
        return None
    return _scalar(con, "SELECT max(version) FROM search.bm25_settings")


def _fts_pragma(table: str) -> str:
    fields = ", ".join(sql_string(f) for f in INDEXED_FIELDS)
    return (
        f"PRAGMA create_fts_index({sql_string(table)}, 'market_id', {fields}, "
        f"stemmer = {sql_string(FTS_STEMMER)}, stopwords = {sql_string(FTS_STOPWORDS)}, "
        f"ignore = {sql_string(FTS_IGNORE)}, strip_accents = 1, lower = 1, overwrite = 1)"
    )


def _weights_sql() -> str:
    rows = ", ".join(
        f"({i}, CAST({FIELD_WEIGHTS[name]} AS DOUBLE))" for i, name in enumerate(INDEXED_FIELDS)
    )
    return f"(SELECT * FROM (VALUES {rows}) AS w(fieldid, weight))"


def _postings_select(where: str = "") -> str:
    """Postings (termid, docid, weighted tf, doc length) from the FTS terms table.

    DOUBLE columns on purpose: a DECIMAL sum (128-bit) made every query 40% slower.
    """
    return f"""
        SELECT t.termid, t.docid, CAST(sum(w.weight) AS DOUBLE) AS tf,
               CAST(any_value(d.len) AS DOUBLE) AS len
        FROM {FTS_SCHEMA}.terms t
        JOIN {FTS_SCHEMA}.docs d USING (docid)
        JOIN {_weights_sql()} w USING (fieldid)
        {where}
        GROUP BY t.termid, t.docid
    """


def update_bm25_index(
    catalog_path: Path,
    lake: Lake,
    *,
    full_rebuild: bool = False,
    lock_timeout_s: float = 60.0,
    log: Log | None = None,
) -> Bm25Report:
    """Bring the BM25 index in the catalog up to date with the lake's markets.

    Incremental by content hash: new and changed markets are indexed by the FTS extension
    on their own (a small delta index, so tokenising, stemming and stop words are exactly
    the extension's), then merged into the main index; deleted and changed markets' old
    postings are removed and document frequencies adjusted. One transaction, so a reader
    sees the old index or the new one.
    """
    started = time.perf_counter()
    say = log or (lambda _msg: None)
    catalog_path.parent.mkdir(parents=True, exist_ok=True)
    with connect(catalog_path, extensions=("fts",), lock_timeout_s=lock_timeout_s) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS search")
        incoming = _stage_documents(con, lake)
        index_ready = (
            all(
                _table_exists(con, s, t)
                for s, t in (
                    ("search", "documents"),
                    ("search", "bm25_postings"),
                    (FTS_SCHEMA, "dict"),
                    (FTS_SCHEMA, "docs"),
                )
            )
            and _index_version(con) == BM25_INDEX_VERSION
        )
        if index_ready:
            con.execute(
                """
                CREATE OR REPLACE TEMP TABLE changed_ids AS
                SELECT i.market_id, (d.market_id IS NULL) AS is_new
                FROM incoming_documents i
                LEFT JOIN search.documents d USING (market_id)
                WHERE d.market_id IS NULL OR d.content_hash <> i.content_hash
                """
            )
            con.execute(
                """
                CREATE OR REPLACE TEMP TABLE deleted_ids AS
                SELECT market_id FROM search.documents
                WHERE market_id NOT IN (SELECT market_id FROM incoming_documents)
                """
            )
            new = int(_scalar(con, "SELECT count(*) FROM changed_ids WHERE is_new"))
            changed = int(_scalar(con, "SELECT count(*) FROM changed_ids WHERE NOT is_new"))
            deleted = int(_scalar(con, "SELECT count(*) FROM deleted_ids"))
        else:
            con.execute(
                "CREATE OR REPLACE TEMP TABLE changed_ids AS "
                "SELECT market_id, true AS is_new FROM incoming_documents"
            )
            con.execute(
                "CREATE OR REPLACE TEMP TABLE deleted_ids AS "
                "SELECT NULL::VARCHAR AS market_id WHERE false"
            )
            new, changed, deleted = incoming, 0, 0
        sample = [
            (str(r[0]), str(r[1]))
            for r in con.execute(
                "SELECT market_id, question FROM incoming_documents "
                "WHERE market_id IN (SELECT market_id FROM changed_ids) ORDER BY market_id LIMIT 5"
            ).fetchall()
        ]
        touched = new + changed + deleted
        current = max(incoming, 1)
        if full_rebuild or not index_ready or touched > FULL_REBUILD_FRACTION * current:
            mode = "full"
            say(f"BM25: full build over {incoming:,} markets")
            _full_bm25_build(con)
        elif touched:
            mode = "incremental"
            say(f"BM25: incremental update ({new} new, {changed} changed, {deleted} deleted)")
            _incremental_bm25_update(con)
        else:
            mode = "unchanged"
            # Filter columns (volume, closed, ...) move without a text change.
            con.execute(_refresh_documents_sql(None))
        _create_lookup_indexes(con)
        terms = int(_scalar(con, f"SELECT count(*) FROM {FTS_SCHEMA}.dict") or 0)
        con.execute("CHECKPOINT")
    return Bm25Report(
        mode=mode,
        documents=incoming,
        new=new,
        changed=changed,
        deleted=deleted,
        terms=terms,
        seconds=time.perf_counter() - started,
        catalog_path=str(catalog_path),
        changed_sample=sample,
    )


def _create_lookup_indexes(con: duckdb.DuckDBPyConnection) -> None:
    """ART indexes for a query's lookups of its terms and of its markets' details: index
    probes instead of scans of the dictionary and the documents (at 200k markets ~0.5 ms
    instead of ~5 ms each, several per query). Rebuilding a table drops its index, so every
    update ends here."""
    con.execute(f"CREATE INDEX IF NOT EXISTS dict_term ON {FTS_SCHEMA}.dict (term)")
    con.execute("CREATE INDEX IF NOT EXISTS documents_market_id ON search.documents (market_id)")


def _full_bm25_build(con: duckdb.DuckDBPyConnection) -> None:
    with _transaction(con):
        _write_index_settings(con)
        con.execute(
            f"CREATE OR REPLACE TABLE search.documents AS {documents_select('incoming_documents')}"
        )
        con.execute(_fts_pragma("search.documents"))
        # Sorted tables let a query's term filter skip most row groups (zone maps): the
        # dictionary by term, the postings by term id. Row order means nothing to FTS.
        con.execute(
            f"CREATE OR REPLACE TABLE {FTS_SCHEMA}.dict AS "
            f"SELECT * FROM {FTS_SCHEMA}.dict ORDER BY term"
        )
        con.execute(
            f"CREATE OR REPLACE TABLE search.bm25_postings AS "
            f"SELECT * FROM ({_postings_select()}) ORDER BY termid, docid"
        )


def _incremental_bm25_update(con: duckdb.DuckDBPyConnection) -> None:
    fts, delta = FTS_SCHEMA, FTS_DELTA_SCHEMA
    # The FTS extension indexes the new and changed markets on their own. This scratch
    # index is built outside the merge transaction: DuckDB cannot commit a transaction
    # that both creates and drops the FTS tables.
    con.execute(
        "CREATE OR REPLACE TABLE search.bm25_delta AS "
        + documents_select(
            "incoming_documents", "WHERE market_id IN (SELECT market_id FROM changed_ids)"
        )
    )
    con.execute(_fts_pragma("search.bm25_delta"))
    with _transaction(con):
        # Old postings of changed and deleted markets go first.
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE removed_docs AS
            SELECT docid FROM {fts}.docs
            WHERE name IN (SELECT market_id FROM changed_ids WHERE NOT is_new)
               OR name IN (SELECT market_id FROM deleted_ids)
            """
        )
        con.execute(
            f"""
            UPDATE {fts}.dict SET df = {fts}.dict.df - r.n
            FROM (SELECT termid, count(*) AS n FROM search.bm25_postings
                  WHERE docid IN (SELECT docid FROM removed_docs) GROUP BY termid) r
            WHERE {fts}.dict.termid = r.termid
            """
        )
        for table in (f"{fts}.terms", "search.bm25_postings", f"{fts}.docs"):
            con.execute(f"DELETE FROM {table} WHERE docid IN (SELECT docid FROM removed_docs)")

        # Merge: unseen terms get fresh term ids, delta doc ids are shifted past ours.
        con.execute(
            f"""
            INSERT INTO {fts}.dict
            SELECT (SELECT coalesce(max(termid), -1) FROM {fts}.dict)
                       + row_number() OVER (ORDER BY dd.term), dd.term, 0
            FROM {delta}.dict dd
            WHERE dd.term NOT IN (SELECT term FROM {fts}.dict)
            """
        )
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE term_map AS
            SELECT dd.termid AS delta_termid, fd.termid, dd.df
            FROM {delta}.dict dd JOIN {fts}.dict fd ON fd.term = dd.term
            """
        )
        con.execute(
            f"UPDATE {fts}.dict SET df = {fts}.dict.df + m.df FROM term_map m "
            f"WHERE {fts}.dict.termid = m.termid"
        )
        con.execute(f"DELETE FROM {fts}.dict WHERE df <= 0")
        base = int(_scalar(con, f"SELECT coalesce(max(docid), -1) + 1 FROM {fts}.docs"))
        con.execute(f"INSERT INTO {fts}.docs SELECT docid + {base}, name, len FROM {delta}.docs")
        con.execute(
            f"""
            INSERT INTO {fts}.terms
            SELECT t.docid + {base}, t.fieldid, m.termid
            FROM {delta}.terms t JOIN term_map m ON m.delta_termid = t.termid
            """
        )
        con.execute(
            f"INSERT INTO search.bm25_postings SELECT * FROM "
            f"({_postings_select(f'WHERE t.docid >= {base}')}) ORDER BY termid, docid"
        )
        con.execute(f"DELETE FROM {fts}.stats")
        con.execute(f"INSERT INTO {fts}.stats SELECT count(*), avg(len) FROM {fts}.docs")
        con.execute(_refresh_documents_sql("search.bm25_delta"))
    con.execute("PRAGMA drop_fts_index('search.bm25_delta')")
    con.execute("DROP TABLE search.bm25_delta")
