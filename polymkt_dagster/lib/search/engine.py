"""The query engine: query analysis, BM25 and semantic rankers, fusion, filters."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb

from polymkt_dagster.lib.duck import connect
from polymkt_dagster.lib.search.common import (
    BM25_B,
    BM25_K1,
    DEFAULT_MODE,
    DEFAULT_RRF_K,
    FTS_SCHEMA,
    FTS_STEMMER,
    LOCK_TIMEOUT_S,
    MAX_COSINE_DISTANCE,
    MAX_LIMIT,
    MAX_QUERY_CHARS,
    MAX_QUERY_TERMS,
    SEARCH_MODES,
    SEARCH_THREADS,
    EmbeddingError,
    SearchError,
    _table_exists,
)
from polymkt_dagster.lib.search.embedders import (
    Embedder,
)
from polymkt_dagster.lib.search.vectors import (
    _attach,
    _embedding_state,
    _EmbeddingState,
    _local_index_state,
    vector_index_path,
)

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
