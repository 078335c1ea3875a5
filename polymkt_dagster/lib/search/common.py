"""Search settings, errors and the market documents shared by the index and the queries."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb

if TYPE_CHECKING:  # the query path never needs the lake (pyarrow) or numpy
    import numpy as np

    from polymkt_dagster.lib.core.lake import Lake

Log = Callable[[str], None]

SEARCH_MODES = ("bm25", "semantic", "hybrid")
DEFAULT_MODE = "hybrid"
MAX_QUERY_CHARS = 500
MAX_QUERY_TERMS = 64
MAX_LIMIT = 1000

# FTS settings. The default ignore pattern '(\.|[^a-z])+' drops digits, which would make
# "2028" or "100k" unsearchable in titles; this one keeps them (docs/architecture.md §5).
FTS_STEMMER = "porter"
# The stop words are DuckDB's English list minus words that carry meaning in market
# questions (analysis.KEPT_STOPWORDS), stored in this catalog table.
FTS_STOPWORDS = "search.bm25_stopwords"
# Bumped when tokenising changes (stop words, number forms): an index built by another
# version is rebuilt in full on the next update.
BM25_INDEX_VERSION = "2-numbers-market-stopwords"
FTS_IGNORE = r"(\.|[^a-z0-9])+"
FTS_SCHEMA = "fts_search_documents"
FTS_DELTA_SCHEMA = "fts_search_bm25_delta"
# Order matters: a field's position is its fieldid in the FTS tables.
# The indexed columns hold the fields with numbers in one form (analysis.normalise_numbers).
INDEXED_FIELDS = (
    "question_terms",
    "event_title_terms",
    "outcomes_terms",
    "tags_terms",
    "slug_terms",
    "description_terms",
)
# Each indexed column and the staged field it is made from.
INDEXED_SOURCES: Mapping[str, str] = dict(
    zip(
        INDEXED_FIELDS,
        ("question", "event_title", "outcomes_text", "tags_text", "slug", "description"),
        strict=True,
    )
)
# Occurrences in the question and event title count more than in the long resolution text:
# a simple BM25F-style weighting of term frequency (the FTS macro counts every field as 1).
FIELD_WEIGHTS: Mapping[str, float] = {
    "question_terms": 3.0,
    "event_title_terms": 2.0,
    "outcomes_terms": 1.0,
    "tags_terms": 1.0,
    "slug_terms": 1.0,
    "description_terms": 1.0,
}
BM25_K1 = 1.2
BM25_B = 0.75
# Above this share of changed markets a full rebuild is cheaper than patching the index.
FULL_REBUILD_FRACTION = 0.25

# Embeddings.
MAX_EMBED_CHARS = 8000  # about 2k tokens, well under the 8k-token input limit
EMBED_BATCH_SIZE = 256  # inputs per request (the API accepts up to 2048)
EMBED_BATCH_CHAR_BUDGET = 600_000  # ~150k tokens, half the 300k-token per-request cap
# Markets embedded between two short catalog writes: each write costs ~0.3 s (commit and
# checkpoint), and an interrupted run loses at most one chunk (~8k inputs, about $0.01).
WRITE_CHUNK_SIZE = 8192
# USD per million input tokens (OpenAI list prices); unknown models report no cost.
EMBEDDING_PRICES_PER_MTOK: Mapping[str, float] = {
    "text-embedding-3-small": 0.02,
    "text-embedding-3-large": 0.13,
    "text-embedding-ada-002": 0.10,
}
# A cosine similarity of 0 or less means "unrelated" for any model: such markets are not
# semantic matches, however few results that leaves.
MAX_COSINE_DISTANCE = 1.0
# ef_construction 64 instead of DuckDB's 128: the build is ~1.6x faster and recall@10 was
# the same in our measurement (30k markets); queries still search with ef_search >= 64.
HNSW_OPTIONS = "metric = 'cosine', M = 16, ef_construction = 64"
VECTOR_REBUILD_FRACTION = 0.2  # of rows changed since the HNSW graph was last built
LOCK_TIMEOUT_S = 10.0
# Search queries touch a few thousand postings or one HNSW walk; on small machines more
# threads cost more in scheduling than they save (200k markets on 2 cores: BM25 p50
# 23 ms with 2 threads, 8 ms with 1).
SEARCH_THREADS = 1


class SearchError(ValueError):
    """A search that cannot run; ``str()`` is a message meant for the user."""


class EmbeddingError(RuntimeError):
    """The embedding provider failed for good (after retries, or a non-retryable answer)."""


# ---- documents ---------------------------------------------------------------------------


def _list_text_sql(column: str) -> str:
    return (
        f"array_to_string(list_filter(coalesce({column}, []::VARCHAR[]), x -> x IS NOT NULL), ', ')"
    )


# The text that is hashed and embedded. document_text() below is its Python twin; a test
# keeps the two identical.
DOCUMENT_TEXT_SQL = (
    "'Question: ' || question || chr(10) || 'Event: ' || event_title || chr(10) || "
    "'Outcomes: ' || outcomes_text || chr(10) || 'Tags: ' || tags_text || chr(10) || "
    "'Slug: ' || slug || chr(10) || 'Description: ' || description"
)


def short_document_text_sql(description_chars: int) -> str:
    """A market's text for mean-pooled static embeddings: no field labels, no slug (a copy
    of the question), outcomes only when not Yes/No, the description's opening only.

    Words shared by every market (labels, resolution boilerplate) pull all the means
    towards one point and blur the question, which carries what the market is about.
    """
    return (
        "concat_ws('. ', question, nullif(event_title, question), "
        "CASE WHEN outcomes_text NOT IN ('Yes, No', '') THEN outcomes_text END, "
        "nullif(tags_text, ''), "
        f"nullif(left(description, {int(description_chars)}), ''))"
    )


def document_text(market: Mapping[str, Any]) -> str:
    """The searchable text of one market (canonical MARKETS column names)."""

    def text(name: str) -> str:
        value = market.get(name)
        return "" if value is None else str(value)

    def joined(name: str) -> str:
        return ", ".join(str(v) for v in (market.get(name) or []) if v is not None)

    return (
        f"Question: {text('question')}\nEvent: {text('event_title')}\n"
        f"Outcomes: {joined('outcomes')}\nTags: {joined('tags')}\n"
        f"Slug: {text('slug')}\nDescription: {text('description')}"
    )


def content_hash(text: str) -> str:
    """SHA-256 of the document text; equal to DuckDB's sha256() of the same string."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _stage_documents(con: duckdb.DuckDBPyConnection, lake: Lake) -> int:
    """Temp table ``incoming_documents``: the lake's markets as search documents."""
    from polymkt_dagster.lib.analytics.resolutions import resolutions_sql
    from polymkt_dagster.lib.core.schemas import MARKETS

    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE incoming_documents AS
        WITH markets AS (
            SELECT * FROM {lake.scan_sql(MARKETS)}
            WHERE market_id IS NOT NULL
            QUALIFY row_number() OVER (
                PARTITION BY market_id ORDER BY updated_at DESC NULLS LAST) = 1
        ),
        fields AS (
            SELECT
                market_id,
                coalesce(question, '') AS question,
                coalesce(event_title, '') AS event_title,
                {_list_text_sql("outcomes")} AS outcomes_text,
                {_list_text_sql("tags")} AS tags_text,
                coalesce(slug, '') AS slug,
                coalesce(description, '') AS description,
                category, markets.closed, coalesce(r.resolved, false) AS resolved, volume,
                end_date, event_id
            FROM markets LEFT JOIN ({resolutions_sql(lake)}) r USING (market_id)
        )
        SELECT *, sha256({DOCUMENT_TEXT_SQL}) AS content_hash FROM fields ORDER BY market_id
        """
    )
    row = con.execute("SELECT count(*) FROM incoming_documents").fetchone()
    return int(row[0]) if row else 0


def _table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?",
        [schema, table],
    ).fetchone()
    return bool(row and row[0])


def _scalar(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> Any:
    row = con.execute(sql, list(params)).fetchone()
    return row[0] if row else None


@contextmanager
def _transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """BEGIN ... COMMIT, rolled back on any error (a failed COMMIT has already ended it)."""
    con.execute("BEGIN")
    try:
        yield
    except BaseException:
        with suppress(duckdb.TransactionException):
            con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


# ---- embedder interface ------------------------------------------------------------------


@dataclass
class EmbeddingUsage:
    """Requests and tokens spent, for the materialization metadata."""

    requests: int = 0
    retries: int = 0
    inputs: int = 0
    prompt_tokens: int = 0
    total_tokens: int = 0

    def cost_usd(self, model: str) -> float | None:
        price = EMBEDDING_PRICES_PER_MTOK.get(model)
        return None if price is None else round(self.total_tokens * price / 1_000_000, 10)


class Embedder:
    """Turns texts into unit vectors; subclasses talk to a provider or compute locally."""

    model: str
    usage: EmbeddingUsage

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text, float32, L2-normalised."""
        raise NotImplementedError
