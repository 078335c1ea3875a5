"""Market search: BM25 (DuckDB FTS), semantic (embeddings + HNSW) and hybrid (RRF).

Where things live and why:

- The catalog (DATA_DIR/polymkt.duckdb), schema ``search``:
    ``documents``            one row per market: the indexed text fields, the filter and
                             display columns, and the ``content_hash`` of the text.
    ``fts_search_documents`` the DuckDB FTS index built by ``PRAGMA create_fts_index``
                             (Porter stemmer, English stop words, digits kept): ``dict``,
                             ``docs``, ``terms``, ``stats``, ``stopwords``, the ``tokenize``
                             and ``match_bm25`` macros. It stays a valid FTS index, so
                             ``match_bm25`` works for anyone querying the catalog by hand.
    ``bm25_postings``        (termid, docid, tf, len) aggregated from ``terms`` and sorted
                             by term: queries read only the postings of their own terms
                             (5-20 ms over 200k markets, where ``match_bm25`` takes 60-150).
    ``embeddings``           (market_id, content_hash, model, vector FLOAT[dim]): the
                             vectors, the costly part, kept in an ordinary table.
    ``embedding_state``      a generation counter bumped by every write to ``embeddings``.
- The vector index file (DATA_DIR/polymkt_search_vectors.duckdb): a copy of the vectors with
  a persisted HNSW index (cosine). It is a cache derived from ``search.embeddings`` and is
  rebuilt from it (never from the API) when missing, stale or unreadable. It is a separate
  file because a database holding an HNSW index cannot be checkpointed by a connection that
  has not loaded ``vss`` (DuckDB raises a FATAL error), and every other catalog writer opens
  the catalog without extensions. HNSW persistence is experimental, so the file is
  checkpointed right after each change and treated as disposable.

Incremental updates compare content hashes: only new or changed markets are re-tokenised
and re-embedded; deleted markets leave every index. A search reads with read-only
connections that wait a little for a writer's lock.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from polymkt_dagster.lib.duck import connect, sql_string
from polymkt_dagster.lib.lake import Lake
from polymkt_dagster.lib.resolutions import resolutions_sql
from polymkt_dagster.lib.schemas import MARKETS

Log = Callable[[str], None]

SEARCH_MODES = ("bm25", "semantic", "hybrid")
DEFAULT_MODE = "hybrid"
DEFAULT_RRF_K = 60
MAX_QUERY_CHARS = 500
MAX_QUERY_TERMS = 64
MAX_LIMIT = 1000

# FTS settings. The default ignore pattern '(\.|[^a-z])+' drops digits, which would make
# "2028" or "100k" unsearchable in titles; this one keeps them (docs/architecture.md §5).
FTS_STEMMER = "porter"
FTS_STOPWORDS = "english"
FTS_IGNORE = r"(\.|[^a-z0-9])+"
FTS_SCHEMA = "fts_search_documents"
FTS_DELTA_SCHEMA = "fts_search_bm25_delta"
# Order matters: a field's position is its fieldid in the FTS tables.
INDEXED_FIELDS = ("question", "event_title", "outcomes_text", "tags_text", "slug", "description")
# Occurrences in the question and event title count more than in the long resolution text:
# a simple BM25F-style weighting of term frequency (the FTS macro counts every field as 1).
FIELD_WEIGHTS: Mapping[str, float] = {
    "question": 3.0,
    "event_title": 2.0,
    "outcomes_text": 1.0,
    "tags_text": 1.0,
    "slug": 1.0,
    "description": 1.0,
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
        index_ready = all(
            _table_exists(con, s, t)
            for s, t in (
                ("search", "documents"),
                ("search", "bm25_postings"),
                (FTS_SCHEMA, "dict"),
                (FTS_SCHEMA, "docs"),
            )
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
            con.execute(
                "CREATE OR REPLACE TABLE search.documents AS SELECT * FROM incoming_documents"
            )
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


def _full_bm25_build(con: duckdb.DuckDBPyConnection) -> None:
    with _transaction(con):
        con.execute("CREATE OR REPLACE TABLE search.documents AS SELECT * FROM incoming_documents")
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
        "CREATE OR REPLACE TABLE search.bm25_delta AS SELECT * FROM incoming_documents "
        "WHERE market_id IN (SELECT market_id FROM changed_ids)"
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
        con.execute("CREATE OR REPLACE TABLE search.documents AS SELECT * FROM incoming_documents")
    con.execute("PRAGMA drop_fts_index('search.bm25_delta')")
    con.execute("DROP TABLE search.bm25_delta")


# ---- embedding providers -----------------------------------------------------------------


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


def _normalise_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    out = matrix / np.where(norms == 0, 1.0, norms)
    out[norms[:, 0] == 0, 0] = 1.0  # an empty text still gets a valid direction
    return out.astype(np.float32)


_HASH_WORD = re.compile(r"[a-z0-9]+")
_HASH_STOPWORDS = frozenset(
    ("a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "if", "in",
     "into", "is", "it", "its", "of", "on", "or", "that", "the", "this", "to", "was", "will",
     "with")
)  # fmt: skip


def _crude_stem(word: str) -> str:
    for suffix in ("ations", "ation", "ings", "ing", "ies", "es", "ed", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


class HashingEmbedder(Embedder):
    """A deterministic offline embedder: a signed hashed bag of crudely stemmed words.

    Texts sharing words get close vectors, which is all tests and benchmarks need to
    exercise the semantic index without a network; it is no substitute for a real model.
    """

    def __init__(self, dim: int = 256, model: str | None = None) -> None:
        self.dim = dim
        self.model = model or f"local-hashing-{dim}"
        self.usage = EmbeddingUsage()
        self._slots: dict[str, tuple[int, float]] = {}

    def _slot(self, word: str) -> tuple[int, float]:
        slot = self._slots.get(word)
        if slot is None:
            digest = zlib.crc32(word.encode())
            slot = (digest % self.dim, 1.0 if (digest >> 20) & 1 else -1.0)
            self._slots[word] = slot
        return slot

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        matrix = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _HASH_WORD.findall(text.lower()):
                if word in _HASH_STOPWORDS:
                    continue
                index, sign = self._slot(_crude_stem(word))
                matrix[row, index] += sign
        self.usage.requests += 1
        self.usage.inputs += len(texts)
        return _normalise_rows(matrix)


def _redact(message: str, secret: str | None) -> str:
    if secret:
        message = message.replace(secret, "***")
    return re.sub(r"sk-[A-Za-z0-9_\-*]{6,}", "sk-***", message)


class OpenAIEmbedder(Embedder):
    """Embeddings from any OpenAI-compatible ``/v1/embeddings`` endpoint.

    Batches by input count and by a character budget, retries 429, 5xx, timeouts and
    connection errors with exponential backoff and full jitter (honouring Retry-After),
    counts requests and tokens. The client's own retries are switched off so the retry
    budget is this class's alone. Error messages never carry the API key.
    """

    def __init__(
        self,
        client: Any,
        model: str,
        *,
        batch_size: int = EMBED_BATCH_SIZE,
        max_retries: int = 5,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 20.0,
        timeout_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._client = client.with_options(max_retries=0, timeout=timeout_s)
        self._api_key: str | None = getattr(client, "api_key", None)
        self.model = model
        self.batch_size = max(1, min(batch_size, 2048))
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.usage = EmbeddingUsage()
        self._sleep = sleep
        self._rng = rng or random.Random()

    def _batches(self, texts: Sequence[str]) -> Iterator[list[str]]:
        batch: list[str] = []
        chars = 0
        for text in texts:
            text = text[:MAX_EMBED_CHARS] or " "
            if batch and (
                len(batch) >= self.batch_size or chars + len(text) > EMBED_BATCH_CHAR_BUDGET
            ):
                yield batch
                batch, chars = [], 0
            batch.append(text)
            chars += len(text)
        if batch:
            yield batch

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows: list[np.ndarray] = []
        for batch in self._batches(texts):
            rows.append(self._embed_batch(batch))
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        return _normalise_rows(np.vstack(rows))

    def _embed_batch(self, batch: list[str]) -> np.ndarray:
        import openai  # imported here so the module loads without the package in a pinch

        attempt = 0
        while True:
            self.usage.requests += 1
            try:
                response = self._client.embeddings.create(
                    model=self.model, input=batch, encoding_format="float"
                )
                break
            except (openai.APIConnectionError, openai.APITimeoutError) as exc:
                failure: Exception = exc
                retry_after = None
            except openai.APIStatusError as exc:
                if exc.status_code not in (408, 409, 429) and exc.status_code < 500:
                    raise EmbeddingError(
                        f"embedding request rejected with HTTP {exc.status_code}: "
                        f"{_redact(str(exc), self._api_key)}"
                    ) from None
                failure = exc
                retry_after = _retry_after_seconds(exc.response)
            if attempt >= self.max_retries:
                raise EmbeddingError(
                    f"embedding request failed after {attempt + 1} attempts: "
                    f"{_redact(str(failure), self._api_key)}"
                ) from None
            backoff = min(self.backoff_max_s, self.backoff_base_s * 2**attempt)
            delay = self._rng.uniform(backoff / 2, backoff)  # jitter spreads retries out
            if retry_after is not None:
                delay = min(self.backoff_max_s, max(delay, retry_after))
            self.usage.retries += 1
            attempt += 1
            self._sleep(delay)
        data = sorted(response.data, key=lambda item: item.index)
        if len(data) != len(batch):
            raise EmbeddingError(f"asked for {len(batch)} embeddings, received {len(data)}")
        self.usage.inputs += len(batch)
        usage = getattr(response, "usage", None)
        if usage is not None:
            self.usage.prompt_tokens += int(getattr(usage, "prompt_tokens", 0) or 0)
            self.usage.total_tokens += int(getattr(usage, "total_tokens", 0) or 0)
        return np.asarray([item.embedding for item in data], dtype=np.float32)


def _retry_after_seconds(response: Any) -> float | None:
    raw = getattr(response, "headers", {}).get("retry-after") if response is not None else None
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def openai_embedder(
    api_key: str | None, base_url: str | None, model: str, **options: Any
) -> OpenAIEmbedder | None:
    """An embedder for the configured provider, or None when no API key is set."""
    if not api_key:
        return None
    import openai

    client = openai.OpenAI(api_key=api_key, base_url=base_url or None)
    return OpenAIEmbedder(client, model, **options)


# ---- embeddings and the vector index -----------------------------------------------------


def vector_index_path(catalog_path: Path) -> Path:
    """The HNSW index file that sits next to the catalog."""
    return catalog_path.with_name(f"{catalog_path.stem}_search_vectors.duckdb")


@dataclass
class VectorIndexReport:
    mode: str  # "full", "incremental", "unchanged" or "empty"
    rows: int
    seconds: float


@dataclass
class EmbeddingReport:
    """What one embeddings update did."""

    model: str
    dim: int | None
    markets: int
    embedded: int
    deleted: int
    unchanged: int
    usage: EmbeddingUsage
    cost_usd: float | None
    embed_seconds: float
    write_seconds: float
    vector_index: VectorIndexReport
    embedded_sample: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _EmbeddingState:
    generation: int
    model: str
    dim: int
    rows: int


def _embedding_state(con: duckdb.DuckDBPyConnection) -> _EmbeddingState | None:
    """Generation, model and size of ``search.embeddings`` in the connection's catalog."""
    if not (
        _table_exists(con, "search", "embedding_state")
        and _table_exists(con, "search", "embeddings")
    ):
        return None
    row = con.execute(
        "SELECT generation, model, dim FROM search.embedding_state LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    rows = int(_scalar(con, "SELECT count(*) FROM search.embeddings"))
    return _EmbeddingState(int(row[0]), str(row[1]), int(row[2]), rows)


def _bump_generation(con: duckdb.DuckDBPyConnection, model: str, dim: int) -> None:
    con.execute(
        "CREATE TABLE IF NOT EXISTS search.embedding_state "
        "(generation BIGINT, model VARCHAR, dim INTEGER, updated_at TIMESTAMPTZ)"
    )
    if _scalar(con, "SELECT count(*) FROM search.embedding_state"):
        con.execute(
            "UPDATE search.embedding_state SET generation = generation + 1, model = ?, dim = ?, "
            "updated_at = now()",
            [model, dim],
        )
    else:
        con.execute("INSERT INTO search.embedding_state VALUES (1, ?, ?, now())", [model, dim])


def _embeddings_dim(con: duckdb.DuckDBPyConnection) -> int | None:
    if not _table_exists(con, "search", "embeddings"):
        return None
    dtype = _scalar(
        con,
        "SELECT data_type FROM duckdb_columns() WHERE schema_name = 'search' "
        "AND table_name = 'embeddings' AND column_name = 'vector'",
    )
    match = re.search(r"\[(\d+)\]$", str(dtype or ""))
    return int(match.group(1)) if match else None


def _write_embeddings(
    con: duckdb.DuckDBPyConnection,
    ids: Sequence[str],
    hashes: Sequence[str],
    vectors: np.ndarray,
    model: str,
) -> None:
    dim = int(vectors.shape[1])
    chunk = pa.table(
        {
            "market_id": pa.array(list(ids), pa.string()),
            "content_hash": pa.array(list(hashes), pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(
                pa.array(vectors.astype(np.float32).ravel(), pa.float32()), dim
            ),
        }
    )
    con.register("embedding_chunk", chunk)
    try:
        with _transaction(con):
            if _embeddings_dim(con) != dim:
                # A new model or dimension: the old vectors are all stale (they are
                # re-embedded in this same run, their model differs) and the type changes.
                con.execute(
                    f"CREATE OR REPLACE TABLE search.embeddings (market_id VARCHAR, "
                    f"content_hash VARCHAR, model VARCHAR, vector FLOAT[{dim}], "
                    f"embedded_at TIMESTAMPTZ)"
                )
            con.execute(
                "DELETE FROM search.embeddings "
                "WHERE market_id IN (SELECT market_id FROM embedding_chunk)"
            )
            con.execute(
                f"INSERT INTO search.embeddings SELECT market_id, content_hash, ?, "
                f"vector::FLOAT[{dim}], now() FROM embedding_chunk",
                [model],
            )
            _bump_generation(con, model, dim)
    finally:
        con.unregister("embedding_chunk")


def update_market_embeddings(
    catalog_path: Path,
    lake: Lake,
    embedder: Embedder,
    *,
    reembed_all: bool = False,
    rebuild_vector_index: bool = False,
    write_chunk_size: int = WRITE_CHUNK_SIZE,
    lock_timeout_s: float = 60.0,
    log: Log | None = None,
) -> EmbeddingReport:
    """Embed new and changed markets, drop deleted ones, then sync the HNSW index.

    A market is re-embedded when its content hash or the model changed; nothing else
    reaches the provider, so a run over unchanged markets sends no request. The catalog
    is written in short transactions between batches of requests (readers are not locked
    out while the network works, and an interrupted run keeps what it paid for).
    """
    say = log or (lambda _msg: None)
    catalog_path.parent.mkdir(parents=True, exist_ok=True)
    model = embedder.model
    with connect(catalog_path, lock_timeout_s=lock_timeout_s) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS search")
        markets = _stage_documents(con, lake)
        state = _embedding_state(con)
        base_generation = state.generation if state else 0
        has_table = _table_exists(con, "search", "embeddings")
        if has_table and not reembed_all:
            pending = con.execute(
                f"""
                SELECT i.market_id, {DOCUMENT_TEXT_SQL} AS text, i.content_hash, i.question
                FROM incoming_documents i
                LEFT JOIN search.embeddings e
                  ON e.market_id = i.market_id AND e.content_hash = i.content_hash
                 AND e.model = ?
                WHERE e.market_id IS NULL
                ORDER BY i.market_id
                """,
                [model],
            ).fetchall()
            deleted = [
                str(r[0])
                for r in con.execute(
                    "SELECT market_id FROM search.embeddings "
                    "WHERE market_id NOT IN (SELECT market_id FROM incoming_documents)"
                ).fetchall()
            ]
        else:
            pending = con.execute(
                f"SELECT market_id, {DOCUMENT_TEXT_SQL}, content_hash, question "
                f"FROM incoming_documents ORDER BY market_id"
            ).fetchall()
            deleted = []
        if deleted and state is not None:
            with _transaction(con):
                con.execute(
                    "DELETE FROM search.embeddings "
                    "WHERE market_id IN (SELECT unnest(?::VARCHAR[]))",
                    [deleted],
                )
                _bump_generation(con, state.model, state.dim)

    say(f"embeddings: {len(pending):,} to embed with {model}, {len(deleted):,} deleted")
    embed_seconds = write_seconds = 0.0
    dim = state.dim if state else None
    for start in range(0, len(pending), write_chunk_size):
        chunk = pending[start : start + write_chunk_size]
        tick = time.perf_counter()
        vectors = embedder.embed([str(r[1]) for r in chunk])
        embed_seconds += time.perf_counter() - tick
        tick = time.perf_counter()
        with connect(catalog_path, lock_timeout_s=lock_timeout_s) as con:
            _write_embeddings(con, [r[0] for r in chunk], [r[2] for r in chunk], vectors, model)
        write_seconds += time.perf_counter() - tick
        dim = int(vectors.shape[1])
        say(f"embeddings: {min(start + write_chunk_size, len(pending)):,}/{len(pending):,} written")

    touched = {str(r[0]) for r in pending} | set(deleted)
    index = sync_vector_index(
        catalog_path,
        touched_ids=touched,
        base_generation=base_generation,
        force_rebuild=rebuild_vector_index or reembed_all,
        lock_timeout_s=lock_timeout_s,
        log=say,
    )
    return EmbeddingReport(
        model=model,
        dim=dim,
        markets=markets,
        embedded=len(pending),
        deleted=len(deleted),
        unchanged=markets - len(pending),
        usage=embedder.usage,
        cost_usd=embedder.usage.cost_usd(model),
        embed_seconds=embed_seconds,
        write_seconds=write_seconds,
        vector_index=index,
        embedded_sample=[(str(r[0]), str(r[3])) for r in pending[:5]],
    )


def _attach(
    con: duckdb.DuckDBPyConnection, path: Path, alias: str, *, lock_timeout_s: float
) -> None:
    """ATTACH another database read-only, waiting while a writer holds its lock."""
    deadline = time.monotonic() + lock_timeout_s
    while True:
        try:
            con.execute(f"ATTACH {sql_string(path)} AS {alias} (READ_ONLY)")
            return
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def _remove_database(path: Path) -> None:
    for candidate in (path, path.with_name(path.name + ".wal")):
        with suppress(FileNotFoundError):
            candidate.unlink()


def sync_vector_index(
    catalog_path: Path,
    *,
    touched_ids: set[str] | None = None,
    base_generation: int | None = None,
    force_rebuild: bool = False,
    lock_timeout_s: float = 60.0,
    log: Log | None = None,
) -> VectorIndexReport:
    """Make the HNSW index file match ``search.embeddings`` in the catalog.

    With the file at ``base_generation`` and ``touched_ids`` known, only those markets are
    deleted and re-inserted (HNSW supports both); otherwise, or once many rows changed
    since the graph was built, the index is rebuilt from the catalog's vectors.
    """
    say = log or (lambda _msg: None)
    started = time.perf_counter()
    path = vector_index_path(catalog_path)
    try:
        return _sync_vector_index(
            catalog_path,
            path,
            touched_ids,
            base_generation,
            force_rebuild,
            lock_timeout_s,
            say,
            started,
        )
    except duckdb.Error as exc:
        if isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower():
            raise
        # The file is a cache: an unreadable one (e.g. a crash during an experimental
        # HNSW write) is discarded and rebuilt from the catalog.
        say(f"vector index unreadable ({type(exc).__name__}); rebuilding it")
        _remove_database(path)
        return _sync_vector_index(
            catalog_path, path, None, None, True, lock_timeout_s, say, started
        )


def _sync_vector_index(
    catalog_path: Path,
    path: Path,
    touched_ids: set[str] | None,
    base_generation: int | None,
    force_rebuild: bool,
    lock_timeout_s: float,
    say: Log,
    started: float,
) -> VectorIndexReport:
    with connect(
        path, extensions=("vss",), lock_timeout_s=lock_timeout_s, memory_limit="4GB"
    ) as con:
        con.execute("SET hnsw_enable_experimental_persistence = true")
        _attach(con, catalog_path, "catalog", lock_timeout_s=lock_timeout_s)
        source = _catalog_embedding_state(con)
        local = _local_index_state(con)
        if source is None or source.rows == 0:
            con.execute("DROP TABLE IF EXISTS vectors")
            con.execute("DROP TABLE IF EXISTS index_state")
            mode, rows = "empty", 0
        elif (
            not force_rebuild
            and local is not None
            and (local.generation, local.model, local.dim)
            == (source.generation, source.model, source.dim)
        ):
            mode, rows = "unchanged", local.rows
        elif (
            not force_rebuild
            and local is not None
            and touched_ids is not None
            and base_generation is not None
            and local.generation == base_generation
            and (local.model, local.dim) == (source.model, source.dim)
            and local.changed_since_build + len(touched_ids)
            <= VECTOR_REBUILD_FRACTION * max(local.rows, 1)
        ):
            mode = "incremental"
            ids = sorted(touched_ids)
            with _transaction(con):
                con.execute(
                    "CREATE OR REPLACE TEMP TABLE touched AS "
                    "SELECT unnest(?::VARCHAR[]) AS market_id",
                    [ids],
                )
                con.execute(
                    "DELETE FROM vectors WHERE market_id IN (SELECT market_id FROM touched)"
                )
                con.execute(
                    "INSERT INTO vectors SELECT market_id, vector FROM catalog.search.embeddings "
                    "WHERE market_id IN (SELECT market_id FROM touched)"
                )
                rows = int(_scalar(con, "SELECT count(*) FROM vectors"))
                con.execute(
                    "UPDATE index_state SET generation = ?, rows = ?, "
                    "changed_since_build = changed_since_build + ?, updated_at = now()",
                    [source.generation, rows, len(ids)],
                )
        else:
            mode = "full"
            say(f"vector index: building HNSW over {source.rows:,} vectors")
            with _transaction(con):
                con.execute("DROP TABLE IF EXISTS vectors")
                con.execute(
                    f"CREATE TABLE vectors AS SELECT market_id, "
                    f"vector::FLOAT[{source.dim}] AS vector "
                    f"FROM catalog.search.embeddings ORDER BY market_id"
                )
                con.execute(
                    f"CREATE INDEX vectors_hnsw ON vectors USING HNSW (vector) "
                    f"WITH ({HNSW_OPTIONS})"
                )
                con.execute("DROP TABLE IF EXISTS index_state")
                con.execute(
                    "CREATE TABLE index_state (generation BIGINT, model VARCHAR, dim INTEGER, "
                    "rows BIGINT, changed_since_build BIGINT, updated_at TIMESTAMPTZ)"
                )
                rows = int(_scalar(con, "SELECT count(*) FROM vectors"))
                con.execute(
                    "INSERT INTO index_state VALUES (?, ?, ?, ?, 0, now())",
                    [source.generation, source.model, source.dim, rows],
                )
        con.execute("DETACH catalog")
        # Persisted HNSW changes are only safe once checkpointed (no WAL replay for them).
        con.execute("CHECKPOINT")
    return VectorIndexReport(mode=mode, rows=rows, seconds=time.perf_counter() - started)


def _catalog_embedding_state(con: duckdb.DuckDBPyConnection) -> _EmbeddingState | None:
    tables = {
        r[0]
        for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = 'catalog' "
            "AND schema_name = 'search'"
        ).fetchall()
    }
    if not {"embeddings", "embedding_state"} <= tables:
        return None
    row = con.execute(
        "SELECT generation, model, dim FROM catalog.search.embedding_state"
    ).fetchone()
    if row is None:
        return None
    rows = int(_scalar(con, "SELECT count(*) FROM catalog.search.embeddings"))
    return _EmbeddingState(int(row[0]), str(row[1]), int(row[2]), rows)


@dataclass(frozen=True)
class _LocalIndexState:
    generation: int
    model: str
    dim: int
    rows: int
    changed_since_build: int


def _local_index_state(
    con: duckdb.DuckDBPyConnection, database: str | None = None
) -> _LocalIndexState | None:
    prefix = f"{database}." if database else ""
    present = _scalar(
        con,
        "SELECT count(*) FROM duckdb_tables() "
        "WHERE database_name = coalesce(?, current_database()) AND schema_name = 'main' "
        "AND table_name IN ('vectors', 'index_state')",
        [database],
    )
    if present != 2:
        return None
    row = con.execute(
        f"SELECT generation, model, dim, rows, changed_since_build FROM {prefix}index_state"
    ).fetchone()
    if row is None:
        return None
    return _LocalIndexState(int(row[0]), str(row[1]), int(row[2]), int(row[3]), int(row[4]))


# ---- rank fusion -------------------------------------------------------------------------


def reciprocal_rank_fusion(
    rankings: Mapping[str, Sequence[str]], k: int = DEFAULT_RRF_K
) -> list[tuple[str, float]]:
    """Fuse ranked id lists: score(id) = sum over lists of 1 / (k + rank), rank from 1.

    Ties are broken by the best single rank, then by id, so the order is deterministic.
    """
    if k < 0:
        raise ValueError("k must be non-negative")
    scores: dict[str, float] = {}
    best_rank: dict[str, int] = {}
    for ranked in rankings.values():
        for rank, item in enumerate(ranked, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
            best_rank[item] = min(best_rank.get(item, rank), rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], best_rank[kv[0]], kv[0]))


# ---- search ------------------------------------------------------------------------------


@dataclass
class SearchHit:
    market_id: str
    question: str
    event_title: str | None
    category: str | None
    closed: bool | None
    volume: float | None
    end_date: datetime | None
    slug: str | None
    score: float  # the score that orders results in the mode used
    bm25_score: float | None = None
    bm25_rank: int | None = None
    semantic_score: float | None = None  # cosine similarity
    semantic_rank: int | None = None
    rrf_score: float | None = None


@dataclass
class SearchResponse:
    query: str
    mode: str
    mode_used: str
    filters: dict[str, Any]
    hits: list[SearchHit]
    notices: list[str]
    timings_ms: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["count"] = len(self.hits)
        document["results"] = document.pop("hits")
        return document

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), default=_json_default, indent=2)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def validate_query(query: str | None) -> str:
    """The query as it will be searched, or a SearchError saying what is wrong."""
    if query is None:
        raise SearchError('Empty query: type the words to look for, e.g. "fed rate cut".')
    cleaned = " ".join(_CONTROL_CHARS.sub(" ", query).split())
    if not cleaned:
        raise SearchError('Empty query: type the words to look for, e.g. "fed rate cut".')
    if len(cleaned) > MAX_QUERY_CHARS:
        raise SearchError(
            f"Query too long: {len(cleaned)} characters, the limit is {MAX_QUERY_CHARS}. "
            "Use a few distinctive words."
        )
    return cleaned


@dataclass(frozen=True)
class _Filters:
    category: str | None
    closed: bool | None
    min_volume: float | None

    def sql(self, alias: str = "d") -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if self.category is not None:
            clauses.append(f"lower({alias}.category) = lower(?)")
            params.append(self.category)
        if self.closed is not None:
            clauses.append(f"{alias}.closed IS NOT DISTINCT FROM ?")
            params.append(self.closed)
        if self.min_volume is not None:
            clauses.append(f"coalesce({alias}.volume, 0) >= ?")
            params.append(self.min_volume)
        return (" AND ".join(clauses) or "true"), params

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.category, self.closed, self.min_volume))


class MarketSearch:
    """A search session over the catalog (read-only); reuse it for many queries.

    ``embedder`` embeds queries for semantic and hybrid modes; without one (and without a
    ``query_vector`` per call) those modes report that semantic search is off.

    While a session is open its read-only connection holds a shared lock, so no writer can
    change the catalog underneath it: what it learns about the indexes once stays true.
    """

    def __init__(
        self,
        catalog_path: Path,
        *,
        embedder: Embedder | None = None,
        lock_timeout_s: float = LOCK_TIMEOUT_S,
        threads: int = SEARCH_THREADS,
    ) -> None:
        self.catalog_path = Path(catalog_path)
        self.embedder = embedder
        self.lock_timeout_s = lock_timeout_s
        self.threads = threads
        self._con: duckdb.DuckDBPyConnection | None = None
        self._state: _EmbeddingState | None = None
        self._state_loaded = False
        self._hnsw_current: bool | None = None

    # -- connection ------------------------------------------------------------------
    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is not None:
            return self._con
        if not self.catalog_path.exists():
            raise SearchError(
                f"No search index yet: {self.catalog_path} does not exist. Build it with "
                "`polymkt pipeline` or materialize search/bm25_index."
            )
        try:
            con = connect(
                self.catalog_path,
                read_only=True,
                extensions=("fts", "vss"),
                lock_timeout_s=self.lock_timeout_s,
            )
        except duckdb.IOException as exc:
            raise SearchError(
                f"The catalog {self.catalog_path} is busy (a pipeline step is writing it); "
                "try again in a moment."
            ) from exc
        if not (
            _table_exists(con, "search", "documents")
            and _table_exists(con, "search", "bm25_postings")
            and _table_exists(con, FTS_SCHEMA, "dict")
        ):
            con.close()
            raise SearchError(
                "No search index yet in the catalog. Build it with `polymkt pipeline` or "
                "materialize search/bm25_index."
            )
        con.execute(f"SET threads = {int(self.threads)}")
        self._con = con
        return con

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
            self._state_loaded = False
            self._hnsw_current = None

    def __enter__(self) -> MarketSearch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- query analysis --------------------------------------------------------------
    def query_terms(self, query: str) -> list[str]:
        """The stemmed, stop-word-free terms of a query, as the index tokenises them."""
        con = self._connection()
        row = con.execute(
            f"""
            SELECT list(DISTINCT stem(tok, '{FTS_STEMMER}') ORDER BY stem(tok, '{FTS_STEMMER}'))
            FROM (SELECT unnest({FTS_SCHEMA}.tokenize(?)) AS tok)
            WHERE tok <> '' AND tok NOT IN (SELECT sw FROM {FTS_SCHEMA}.stopwords)
            """,
            [query],
        ).fetchone()
        terms = [t for t in (row[0] if row and row[0] else []) if t]
        if not terms:
            raise SearchError(
                f"Nothing to search for in {query!r}: it has only common English words "
                "(stop words) or punctuation. Add a distinctive word, e.g. a name or a topic."
            )
        return terms[:MAX_QUERY_TERMS]

    # -- rankers ---------------------------------------------------------------------
    def bm25_ranking(
        self, terms: Sequence[str], n: int, filters: _Filters
    ) -> list[tuple[str, float]]:
        con = self._connection()
        score = (
            f"sum(q.idf * p.tf * ({BM25_K1} + 1) / "
            f"(p.tf + {BM25_K1} * (1 - {BM25_B} + {BM25_B} * p.len / q.avgdl)))"
        )
        # Same idf as the FTS macro (log base 10 there too, so scores compare).
        qterms = f"""
            SELECT d.termid,
                   log(((s.num_docs - d.df + 0.5) / (d.df + 0.5)) + 1) AS idf, s.avgdl
            FROM {FTS_SCHEMA}.dict d, {FTS_SCHEMA}.stats s
            WHERE d.term IN (SELECT unnest(?::VARCHAR[]))
        """
        if not filters.active:
            sql = f"""
                WITH q AS ({qterms}),
                top AS (
                    SELECT p.docid, {score} AS score
                    FROM search.bm25_postings p JOIN q USING (termid)
                    GROUP BY p.docid ORDER BY score DESC, p.docid LIMIT {int(n)}
                )
                SELECT docs.name, top.score FROM top JOIN {FTS_SCHEMA}.docs docs USING (docid)
                ORDER BY top.score DESC, docs.name
            """
            params: list[Any] = [list(terms)]
        else:
            where, fparams = filters.sql("d")
            sql = f"""
                WITH q AS ({qterms}),
                scored AS (
                    SELECT p.docid, {score} AS score
                    FROM search.bm25_postings p JOIN q USING (termid) GROUP BY p.docid
                )
                SELECT docs.name, scored.score
                FROM scored
                JOIN {FTS_SCHEMA}.docs docs USING (docid)
                JOIN search.documents d ON d.market_id = docs.name
                WHERE {where}
                ORDER BY scored.score DESC, docs.name LIMIT {int(n)}
            """
            params = [list(terms), *fparams]
        return [(str(r[0]), float(r[1])) for r in con.execute(sql, params).fetchall()]

    def _embedding_state(self) -> _EmbeddingState | None:
        if not self._state_loaded:
            self._state = _embedding_state(self._connection())
            self._state_loaded = True
        return self._state

    def _vector_index_current(self, state: _EmbeddingState) -> bool:
        """Attach the HNSW file if it matches the catalog's embeddings generation."""
        if self._hnsw_current is not None:
            return self._hnsw_current
        con = self._connection()
        path = vector_index_path(self.catalog_path)
        self._hnsw_current = False
        if not path.exists():
            return False
        try:
            _attach(con, path, "vec", lock_timeout_s=min(self.lock_timeout_s, 2.0))
            local = _local_index_state(con, "vec")
        except duckdb.Error:
            return False  # a busy or damaged cache: the exact scan still answers
        self._hnsw_current = local is not None and (
            local.generation,
            local.model,
            local.dim,
        ) == (state.generation, state.model, state.dim)
        return self._hnsw_current

    def semantic_ranking(
        self, vector: Sequence[float], n: int, filters: _Filters, state: _EmbeddingState
    ) -> tuple[list[tuple[str, float]], bool]:
        """Top ``n`` markets by cosine similarity, and whether the HNSW index served them."""
        con = self._connection()
        dim = state.dim
        if len(vector) != dim:
            raise SearchError(
                f"The query embedding has {len(vector)} dimensions but the index has {dim}; "
                "re-materialize search/market_embeddings with the current model."
            )
        qvec = [float(x) for x in vector]
        where, fparams = filters.sql("d")
        if self._vector_index_current(state):
            # Over-fetch only when a filter may drop candidates.
            candidates = max(4 * n, 100) if filters.active else n
            con.execute(f"SET hnsw_ef_search = {max(64, candidates)}")
            hits = con.execute(
                f"SELECT market_id, array_cosine_distance(vector, ?::FLOAT[{dim}]) AS distance "
                f"FROM vec.vectors ORDER BY distance LIMIT {candidates}",
                [qvec],
            ).fetchall()
            ranked = [
                (str(h[0]), 1.0 - float(h[1])) for h in hits if float(h[1]) < MAX_COSINE_DISTANCE
            ]
            if filters.active:
                kept = {
                    str(r[0])
                    for r in con.execute(
                        f"SELECT market_id FROM search.documents d "
                        f"WHERE market_id IN (SELECT unnest(?::VARCHAR[])) AND {where}",
                        [[m for m, _ in ranked], *fparams],
                    ).fetchall()
                }
                ranked = [(m, sim) for m, sim in ranked if m in kept]
            # Enough survivors, or no filter could have removed more: the approximate
            # answer stands. Otherwise fall through to an exact scan of the filtered rows.
            exhausted = len(hits) < candidates or float(hits[-1][1]) >= MAX_COSINE_DISTANCE
            if len(ranked) >= n or (not filters.active and exhausted):
                return ranked[:n], True
        rows = con.execute(
            f"""
            SELECT e.market_id, array_cosine_distance(e.vector, ?::FLOAT[{dim}]) AS distance
            FROM search.embeddings e JOIN search.documents d USING (market_id)
            WHERE {where} AND distance < {MAX_COSINE_DISTANCE}
            ORDER BY distance, e.market_id LIMIT {int(n)}
            """,
            [qvec, *fparams],
        ).fetchall()
        return [(str(r[0]), 1.0 - float(r[1])) for r in rows], False

    # -- the entry point ---------------------------------------------------------------
    def search(
        self,
        query: str,
        *,
        mode: str = DEFAULT_MODE,
        category: str | None = None,
        closed: bool | None = None,
        min_volume: float | None = None,
        limit: int = 10,
        rrf_k: int = DEFAULT_RRF_K,
        query_vector: Sequence[float] | None = None,
    ) -> SearchResponse:
        """Search markets by words. Raises SearchError with a user-facing message."""
        started = time.perf_counter()
        timings: dict[str, float] = {}
        if mode not in SEARCH_MODES:
            raise SearchError(f"Unknown mode {mode!r}: use one of {', '.join(SEARCH_MODES)}.")
        if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise SearchError(f"--limit must be between 1 and {MAX_LIMIT}.")
        if min_volume is not None and (not math.isfinite(min_volume) or min_volume < 0):
            raise SearchError("--min-volume must be a non-negative number.")
        if rrf_k < 0:
            raise SearchError("The RRF k must be non-negative.")
        cleaned = validate_query(query)
        category = category.strip() if category and category.strip() else None
        filters = _Filters(category, closed, min_volume)
        filters_doc = {"category": category, "closed": closed, "min_volume": min_volume}
        notices: list[str] = []

        terms = self.query_terms(cleaned)
        candidates = limit if mode == "bm25" else max(5 * limit, 50)

        # Is semantic search possible? Say why not, precisely.
        state: _EmbeddingState | None = None
        vector: Sequence[float] | None = query_vector
        semantic_off: str | None = None
        if mode != "bm25":
            state = self._embedding_state()
            if state is None or state.rows == 0:
                semantic_off = (
                    "Semantic search is not available: no market embeddings have been built "
                    "(materialize search/market_embeddings with POLYMKT_OPENAI_API_KEY set)."
                )
            elif vector is None and self.embedder is None:
                semantic_off = (
                    "Semantic search is off: no embedding provider is configured (set "
                    "POLYMKT_OPENAI_API_KEY, and POLYMKT_OPENAI_BASE_URL for an "
                    "OpenAI-compatible server)."
                )
            elif (
                vector is None and self.embedder is not None and self.embedder.model != state.model
            ):
                semantic_off = (
                    f"Semantic search is off: the index was built with {state.model!r} but the "
                    f"configured model is {self.embedder.model!r}; re-materialize "
                    "search/market_embeddings."
                )
            elif vector is None and self.embedder is not None:
                tick = time.perf_counter()
                try:
                    vector = self.embedder.embed([cleaned])[0].tolist()
                except EmbeddingError as exc:
                    semantic_off = f"Semantic search failed: {exc}."
                timings["embed_query"] = _ms(tick)
        if semantic_off is not None:
            if mode == "semantic":
                raise SearchError(semantic_off)
            notices.append(semantic_off + " Showing BM25 results instead.")
        mode_used = "bm25" if semantic_off is not None else mode

        bm25: list[tuple[str, float]] = []
        semantic: list[tuple[str, float]] = []
        if mode_used in ("bm25", "hybrid"):
            tick = time.perf_counter()
            bm25 = self.bm25_ranking(terms, candidates if mode_used == "hybrid" else limit, filters)
            timings["bm25"] = _ms(tick)
        if mode_used in ("semantic", "hybrid"):
            assert state is not None and vector is not None
            tick = time.perf_counter()
            semantic, used_hnsw = self.semantic_ranking(vector, candidates, filters, state)
            timings["semantic"] = _ms(tick)
            if not used_hnsw:
                notices.append(
                    "Vector index not current; semantic results came from an exact scan."
                )

        bm25_by_id = {mid: (rank, s) for rank, (mid, s) in enumerate(bm25, start=1)}
        sem_by_id = {mid: (rank, s) for rank, (mid, s) in enumerate(semantic, start=1)}
        if mode_used == "hybrid":
            fused = reciprocal_rank_fusion(
                {"bm25": [m for m, _ in bm25], "semantic": [m for m, _ in semantic]}, k=rrf_k
            )[:limit]
        elif mode_used == "semantic":
            fused = semantic[:limit]
        else:
            fused = bm25[:limit]

        tick = time.perf_counter()
        details = self._details([m for m, _ in fused])
        timings["details"] = _ms(tick)
        hits: list[SearchHit] = []
        for market_id, score in fused:
            info = details.get(market_id)
            if info is None:
                continue
            b = bm25_by_id.get(market_id)
            s = sem_by_id.get(market_id)
            hits.append(
                SearchHit(
                    **info,
                    score=score,
                    bm25_score=b[1] if b else None,
                    bm25_rank=b[0] if b else None,
                    semantic_score=s[1] if s else None,
                    semantic_rank=s[0] if s else None,
                    rrf_score=score if mode_used == "hybrid" else None,
                )
            )
        if not hits:
            notices.append(
                "No market matches the query" + (" and filters." if filters.active else ".")
            )
        timings["total"] = _ms(started)
        return SearchResponse(
            query=cleaned,
            mode=mode,
            mode_used=mode_used,
            filters=filters_doc,
            hits=hits,
            notices=notices,
            timings_ms=timings,
        )

    def _details(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        rows = (
            self._connection()
            .execute(
                """
            SELECT market_id, question, nullif(event_title, ''), category, closed, volume,
                   end_date, nullif(slug, '')
            FROM search.documents WHERE market_id IN (SELECT unnest(?::VARCHAR[]))
            """,
                [list(ids)],
            )
            .fetchall()
        )
        keys = (
            "market_id",
            "question",
            "event_title",
            "category",
            "closed",
            "volume",
            "end_date",
            "slug",
        )
        return {str(r[0]): dict(zip(keys, r, strict=True)) for r in rows}


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)


def search(
    query: str,
    *,
    catalog_path: Path,
    mode: str = DEFAULT_MODE,
    category: str | None = None,
    closed: bool | None = None,
    min_volume: float | None = None,
    limit: int = 10,
    embedder: Embedder | None = None,
    query_vector: Sequence[float] | None = None,
    rrf_k: int = DEFAULT_RRF_K,
    lock_timeout_s: float = LOCK_TIMEOUT_S,
) -> SearchResponse:
    """One search (opens the catalog read-only, searches, closes). See MarketSearch."""
    with MarketSearch(catalog_path, embedder=embedder, lock_timeout_s=lock_timeout_s) as session:
        return session.search(
            query,
            mode=mode,
            category=category,
            closed=closed,
            min_volume=min_volume,
            limit=limit,
            rrf_k=rrf_k,
            query_vector=query_vector,
        )


# ---- command line ------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandOutput:
    """What the `polymkt search` verb prints: stdout, stderr and an exit code."""

    exit_code: int
    stdout: str
    stderr: str


def run_search_command(
    catalog_path: Path,
    query: str,
    *,
    mode: str,
    category: str | None,
    closed: bool | None,
    min_volume: float | None,
    limit: int,
    as_json: bool,
    api_key: str | None,
    base_url: str | None,
    embedding_model: str,
) -> CommandOutput:
    """The whole `polymkt search` verb, so the CLI only parses options and prints.

    With ``as_json`` stdout is exactly one JSON document, an error document included.
    """
    embedder = (
        openai_embedder(api_key, base_url, embedding_model, max_retries=2, timeout_s=20.0)
        if mode != "bm25"
        else None
    )
    try:
        response = search(
            query,
            catalog_path=catalog_path,
            mode=mode,
            category=category,
            closed=closed,
            min_volume=min_volume,
            limit=limit,
            embedder=embedder,
        )
    except SearchError as exc:
        if as_json:
            document = {"query": query, "mode": mode, "error": str(exc), "results": []}
            return CommandOutput(2, json.dumps(document, indent=2), "")
        return CommandOutput(2, "", f"error: {exc}")
    notices = "\n".join(f"note: {n}" for n in response.notices)
    if as_json:
        return CommandOutput(0, response.to_json(), "")
    return CommandOutput(0, render_text(response), notices)


def render_text(response: SearchResponse) -> str:
    """A plain table for terminals (scores of every method that ranked the market)."""
    lines = [
        f"{len(response.hits)} markets for {response.query!r} ({response.mode_used})",
    ]
    for rank, hit in enumerate(response.hits, start=1):
        scores = []
        if hit.rrf_score is not None:
            scores.append(f"rrf {hit.rrf_score:.4f}")
        if hit.bm25_score is not None:
            scores.append(f"bm25 {hit.bm25_score:.3f} (#{hit.bm25_rank})")
        if hit.semantic_score is not None:
            scores.append(f"cos {hit.semantic_score:.3f} (#{hit.semantic_rank})")
        volume = f"${hit.volume:,.0f}" if hit.volume is not None else "-"
        end = hit.end_date.date().isoformat() if hit.end_date else "-"
        state = "closed" if hit.closed else "open"
        lines.append(f"{rank:>3}. [{hit.market_id}] {hit.question}")
        event = f"event: {hit.event_title} | " if hit.event_title else ""
        lines.append(f"     {event}vol {volume} | ends {end} | {state} | {', '.join(scores)}")
    return "\n".join(lines)
