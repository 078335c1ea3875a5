"""The query engine: query analysis, BM25 and semantic rankers, fusion, filters."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from polymkt_dagster.lib.core.duck import connect
from polymkt_dagster.lib.search.analysis import meaningful_words, normalise_numbers
from polymkt_dagster.lib.search.common import (
    BM25_B,
    BM25_K1,
    DEFAULT_MODE,
    FTS_SCHEMA,
    FTS_STEMMER,
    LOCK_TIMEOUT_S,
    MAX_COSINE_DISTANCE,
    MAX_LIMIT,
    MAX_QUERY_CHARS,
    MAX_QUERY_TERMS,
    SEARCH_MODES,
    SEARCH_THREADS,
    Embedder,
    EmbeddingError,
    SearchError,
    _scalar,
    _table_exists,
)
from polymkt_dagster.lib.search.fusion import (
    DEFAULT_FUSION,
    Bm25Candidate,
    FusionSettings,
    score_fusion,
)
from polymkt_dagster.lib.search.response import SearchHit, SearchResponse
from polymkt_dagster.lib.search.vectors import (
    _attach,
    _embedding_state,
    _EmbeddingState,
    _local_index_state,
    vector_index_path,
)

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


# A query word missing from the index is corrected when it has at least this many letters
# and an index term is one or two edits away and this similar (Jaro-Winkler): "etherium" ->
# "ethereum", "solona" -> "solana"; short words ("price" -> "prime") are left alone.
FUZZY_MIN_CHARS = 6
FUZZY_MIN_SIMILARITY = 0.85
# Prefix expansion of query terms (see MarketSearch.prefix_expansions).
EXPANSION_MIN_CHARS = 5
EXPANSION_MAX_EXTRA_CHARS = 4
EXPANSION_MAX_TERMS = 3
EXPANSION_WEIGHT = 0.8
_PHRASE_WORD = re.compile(r"[a-z0-9]+")
# A field as space-separated lower-case words with a space at each end, for phrase tests.
_PHRASE_SQL = "(' ' || trim(regexp_replace({}, '[^a-z0-9]+', ' ', 'g')) || ' ')"


def _nothing_to_search(query: str) -> str:
    return (
        f"Nothing to search for in {query!r}: it has only common English words "
        "(stop words) or punctuation. Add a distinctive word, e.g. a name or a topic."
    )


@dataclass(frozen=True)
class QueryAnalysis:
    terms: list[str]  # index terms (stems) to look up; empty when BM25 cannot use the query
    corrections: dict[str, str]  # query word -> the index terms searched in its place


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
        self.last_query_idf = 0.0  # of the last bm25_candidates query

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
    def analyse(self, query: str) -> QueryAnalysis:
        """The query's index terms, with misspelled words replaced by their closest terms.

        Numbers are first put in the index's form ("100k" -> "100000"), then tokenised,
        stop words dropped and stemmed exactly as the index did. A term the index has never
        seen is looked up: a compound written as one word ("shutdown" -> "shut" + "down"),
        else the most similar index term by Jaro-Winkler similarity ("etherium" ->
        "ethereum"). Empty ``terms`` means BM25 cannot use the query (e.g. another script).
        """
        con = self._connection()
        rows = con.execute(
            f"""
            SELECT tok, stem(tok, '{FTS_STEMMER}') AS term
            FROM (SELECT unnest({FTS_SCHEMA}.tokenize(?)) AS tok)
            WHERE tok <> '' AND tok NOT IN (SELECT sw FROM {FTS_SCHEMA}.stopwords)
            """,
            [normalise_numbers(query)],
        ).fetchall()
        words: dict[str, str] = {}
        for token, term in rows:
            if term and term not in words.values():
                words[str(token)] = str(term)
        known = self._known_terms(list(words.values()))
        terms: list[str] = []
        corrections: dict[str, str] = {}
        for token, term in words.items():
            if term in known or len(token) < FUZZY_MIN_CHARS or token.isdigit():
                terms.append(term)
                continue
            replacement = self._split_compound(token) or self._closest_terms(token, term)
            if replacement:
                corrections[token] = " ".join(replacement)
                terms.extend(replacement)
            else:
                terms.append(term)
        unique = list(dict.fromkeys(terms))[:MAX_QUERY_TERMS]
        return QueryAnalysis(terms=unique, corrections=corrections)

    def _split_compound(self, token: str) -> list[str] | None:
        """Two index terms that write ``token`` when joined ("shutdown": shut, down)."""
        splits = [(token[:i], token[i:]) for i in range(3, len(token) - 2)]
        if not splits:
            return None
        stemmed = (
            self._connection()
            .execute(
                f"""
            SELECT s[1], s[2], stem(s[1], '{FTS_STEMMER}'), stem(s[2], '{FTS_STEMMER}'),
                   s[1] IN (SELECT sw FROM {FTS_SCHEMA}.stopwords)
            FROM (SELECT unnest(?::VARCHAR[][]) AS s)
            """,
                [[list(p) for p in splits]],
            )
            .fetchall()
        )
        known = self._known_terms([str(t) for row in stemmed for t in row[2:4]])
        joined = [
            (abs(len(left) - len(right)), str(left_term), str(right_term))
            for left, right, left_term, right_term, left_is_stopword in stemmed
            if left_term in known and right_term in known and not left_is_stopword
        ]
        if not joined:
            return None
        _, left_term, right_term = min(joined, key=lambda j: j[0])
        return [left_term, right_term]

    def _known_terms(self, terms: Sequence[str]) -> set[str]:
        """The ``terms`` the index holds (an index probe per term, not a dictionary scan)."""
        if not terms:
            return set()
        rows = (
            self._connection()
            .execute(
                f"SELECT term FROM {FTS_SCHEMA}.dict WHERE term IN ({_placeholders(terms)})",
                list(terms),
            )
            .fetchall()
        )
        return {str(r[0]) for r in rows}

    def _closest_terms(self, token: str, term: str) -> list[str] | None:
        """The index term nearest ``term``: one edit away (two for words of 8+ letters),
        ties to the most Jaro-Winkler-similar, then the most common.

        The filters run in the order written: the Jaro-Winkler floor first rejects almost
        every term at a fraction of the edit distance's cost (20 ms instead of 270 ms over
        200k terms)."""
        edits = 1 if len(token) < 8 else 2
        row = (
            self._connection()
            .execute(
                f"""
            SELECT term FROM {FTS_SCHEMA}.dict
            WHERE length(term) BETWEEN ? AND ?
              AND jaro_winkler_similarity(term, ?) >= {FUZZY_MIN_SIMILARITY}
              AND damerau_levenshtein(term, ?) <= {edits}
              AND NOT regexp_matches(term, '^[0-9]+$')
            ORDER BY damerau_levenshtein(term, ?), jaro_winkler_similarity(term, ?) DESC,
                     df DESC, term
            LIMIT 1
            """,
                [len(term) - edits, len(term) + edits, term, term, term, term],
            )
            .fetchone()
        )
        return [str(row[0])] if row else None

    def terms_idf(self, terms: Sequence[str]) -> dict[str, float]:
        """BM25 idf of each term; a term the index lacks gets the idf of an unseen term."""
        con = self._connection()
        rows = con.execute(
            f"""
            SELECT d.term, log(((s.num_docs - d.df + 0.5) / (d.df + 0.5)) + 1)
            FROM {FTS_SCHEMA}.dict d, {FTS_SCHEMA}.stats s
            WHERE d.term IN ({_placeholders(terms)})
            """,
            list(terms),
        ).fetchall()
        found = {str(r[0]): float(r[1]) for r in rows}
        unseen = float(
            _scalar(con, f"SELECT log(((num_docs + 0.5) / 0.5) + 1) FROM {FTS_SCHEMA}.stats") or 1.0
        )
        return {t: found.get(t, unseen) for t in terms}

    def query_terms(self, query: str) -> list[str]:
        """The stemmed, stop-word-free terms of a query, as the index tokenises them."""
        terms = self.analyse(query).terms
        if not terms:
            raise SearchError(_nothing_to_search(query))
        return sorted(terms)

    # -- rankers ---------------------------------------------------------------------
    def bm25_ranking(
        self, terms: Sequence[str], n: int, filters: _Filters
    ) -> list[tuple[str, float]]:
        return [(c.market_id, c.score) for c in self.bm25_candidates(terms, n, filters)]

    def bm25_candidates(
        self,
        terms: Sequence[str],
        n: int,
        filters: _Filters,
        expansions: Mapping[str, Sequence[str]] | None = None,
    ) -> list[Bm25Candidate]:
        """Top ``n`` markets by BM25, with how many of the query terms each one matched.

        ``expansions`` maps a query term to longer index terms it is a prefix of
        ("presid" -> "presidenti"): a market matching one of them matches that query term,
        at EXPANSION_WEIGHT of the score.
        """
        con = self._connection()
        words, groups, weights = list(terms), list(terms), [1.0] * len(terms)
        for term, extra in (expansions or {}).items():
            words += extra
            groups += [term] * len(extra)
            weights += [EXPANSION_WEIGHT] * len(extra)
        part = (
            f"q.weight * q.idf * p.tf * ({BM25_K1} + 1) / "
            f"(p.tf + {BM25_K1} * (1 - {BM25_B} + {BM25_B} * p.len / q.avgdl))"
        )
        # Same idf as the FTS macro (log base 10 there too, so scores compare). A market
        # scores each query term once: by its best-scoring word of that term's group.
        grouped = f"""
            q AS (
                SELECT d.termid, w.grp, w.weight,
                       log(((s.num_docs - d.df + 0.5) / (d.df + 0.5)) + 1) AS idf, s.avgdl
                FROM (SELECT unnest(?::VARCHAR[]) AS term, unnest(?::VARCHAR[]) AS grp,
                             unnest(?::DOUBLE[]) AS weight) w
                JOIN (SELECT termid, term, df FROM {FTS_SCHEMA}.dict
                      WHERE term IN ({_placeholders(words)})) d USING (term),
                     {FTS_SCHEMA}.stats s
            ),
            per_term AS (
                SELECT p.docid, q.grp, max({part}) AS part, max(q.idf) AS idf
                FROM search.bm25_postings p JOIN q USING (termid)
                GROUP BY p.docid, q.grp
            )"""
        aggregate = "sum(part) AS score, count(*) AS matched, sum(idf) AS matched_idf"
        # The query's total idf (fusion scales BM25 by the share a market matched): known
        # terms' own idf, an unseen term's idf for each term the index lacks.
        query_stats = f"""
            (SELECT sum(i) FROM (SELECT max(idf) AS i FROM q WHERE weight = 1 GROUP BY grp)),
            (SELECT count(DISTINCT grp) FROM q WHERE weight = 1),
            (SELECT log(((num_docs + 0.5) / 0.5) + 1) FROM {FTS_SCHEMA}.stats)"""
        params: list[Any] = [words, groups, weights, *words]
        if not filters.active:
            sql = f"""
                WITH {grouped},
                top AS (
                    SELECT docid, {aggregate} FROM per_term
                    GROUP BY docid ORDER BY score DESC, docid LIMIT {int(n)}
                )
                SELECT docs.name, top.score, top.matched, top.matched_idf, {query_stats}
                FROM top JOIN {FTS_SCHEMA}.docs docs USING (docid)
                ORDER BY top.score DESC, docs.name
            """
        else:
            where, fparams = filters.sql("d")
            sql = f"""
                WITH {grouped},
                scored AS (SELECT docid, {aggregate} FROM per_term GROUP BY docid)
                SELECT docs.name, scored.score, scored.matched, scored.matched_idf, {query_stats}
                FROM scored
                JOIN {FTS_SCHEMA}.docs docs USING (docid)
                JOIN search.documents d ON d.market_id = docs.name
                WHERE {where}
                ORDER BY scored.score DESC, docs.name LIMIT {int(n)}
            """
            params += fparams
        rows = con.execute(sql, params).fetchall()
        candidates = [Bm25Candidate(str(r[0]), float(r[1]), int(r[2]), float(r[3])) for r in rows]
        if rows:
            known_idf, known_terms, unseen_idf = (float(x or 0) for x in rows[0][4:7])
            self.last_query_idf = known_idf + (len(terms) - known_terms) * unseen_idf
        else:
            self.last_query_idf = 0.0
        return candidates

    def prefix_expansions(self, terms: Sequence[str]) -> dict[str, list[str]]:
        """Index terms that extend a query term of 5+ letters by up to 4 letters, the most
        common first ("presid" -> "presidenti": Porter leaves "presidency" and
        "presidential" apart)."""
        long_terms = [t for t in terms if len(t) >= EXPANSION_MIN_CHARS and not t.isdigit()]
        if not long_terms:
            return {}
        # One range probe of the term-sorted dictionary per query term (a join on
        # starts_with would scan every term).
        ranges = " UNION ALL ".join(
            f"SELECT ? AS t, term, df FROM {FTS_SCHEMA}.dict "
            f"WHERE term > ? AND term < ? AND length(term) <= ?"
            for _ in long_terms
        )
        params: list[Any] = []
        for term in long_terms:
            params += [term, term, _prefix_end(term), len(term) + EXPANSION_MAX_EXTRA_CHARS]
        rows = (
            self._connection()
            .execute(
                f"""
            SELECT t, list(term ORDER BY df DESC, term)[:{EXPANSION_MAX_TERMS}]
            FROM ({ranges}) GROUP BY t
            """,
                params,
            )
            .fetchall()
        )
        return {str(r[0]): [str(x) for x in r[1]] for r in rows}

    def phrase_matches(self, query: str, ids: Sequence[str]) -> frozenset[str]:
        """Markets among ``ids`` whose question or event title holds the query's words in order
        (stop words included, numbers in index form)."""
        phrase = " ".join(_PHRASE_WORD.findall(normalise_numbers(query)))
        if not ids or len(phrase.split()) < 2:
            return frozenset()
        rows = (
            self._connection()
            .execute(
                f"""
            SELECT market_id FROM search.documents
            WHERE market_id IN ({_placeholders(ids)})
              AND (contains({_PHRASE_SQL.format("question_terms")}, ?)
                   OR contains({_PHRASE_SQL.format("event_title_terms")}, ?))
            """,
                [*ids, f" {phrase} ", f" {phrase} "],
            )
            .fetchall()
        )
        return frozenset(str(r[0]) for r in rows)

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
            if filters.active and ranked:
                kept = {
                    str(r[0])
                    for r in con.execute(
                        f"SELECT market_id FROM search.documents d "
                        f"WHERE market_id IN ({_placeholders(ranked)}) AND {where}",
                        [*(m for m, _ in ranked), *fparams],
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
        fusion: FusionSettings = DEFAULT_FUSION,
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
        cleaned = validate_query(query)
        if not meaningful_words(cleaned):
            raise SearchError(_nothing_to_search(cleaned))
        category = category.strip() if category and category.strip() else None
        filters = _Filters(category, closed, min_volume)
        filters_doc = {"category": category, "closed": closed, "min_volume": min_volume}
        notices: list[str] = []

        # Only BM25 needs index terms: semantic modes accept any text in any script.
        tick = time.perf_counter()
        analysis = self.analyse(cleaned)
        timings["analyse"] = _ms(tick)
        if analysis.corrections:
            notices.append(
                "Also searched for "
                + ", ".join(f"{new!r} (for {old!r})" for old, new in analysis.corrections.items())
                + "."
            )
        if not analysis.terms and mode == "bm25":
            raise SearchError(
                f"BM25 cannot search {cleaned!r}: none of its words is in Latin letters or "
                "digits. Use --mode semantic or hybrid, which understand other languages."
            )
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
                    "(materialize search/market_embeddings)."
                )
            elif vector is None and self.embedder is None:
                semantic_off = (
                    "Semantic search is off: no embedding model is configured (the built-in "
                    "local model, or POLYMKT_OPENAI_API_KEY for an OpenAI-compatible server)."
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
            if mode == "semantic" or not analysis.terms:
                raise SearchError(semantic_off)
            notices.append(semantic_off + " Showing BM25 results instead.")
        mode_used = "bm25" if semantic_off is not None else mode
        if mode_used == "hybrid" and not analysis.terms:
            notices.append(
                "No word of the query is in the BM25 index's alphabet; results are semantic only."
            )

        bm25: list[Bm25Candidate] = []
        semantic: list[tuple[str, float]] = []
        if mode_used in ("bm25", "hybrid") and analysis.terms:
            tick = time.perf_counter()
            expansions = self.prefix_expansions(analysis.terms)
            bm25 = self.bm25_candidates(analysis.terms, candidates, filters, expansions)
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

        bm25_by_id = {c.market_id: (rank, c.score) for rank, c in enumerate(bm25, start=1)}
        sem_by_id = {mid: (rank, s) for rank, (mid, s) in enumerate(semantic, start=1)}
        if mode_used == "hybrid" and bm25:
            tick = time.perf_counter()
            # A phrase match implies every term matched: only those markets are checked.
            complete = [c.market_id for c in bm25 if c.matched_terms >= len(analysis.terms)]
            phrases = self.phrase_matches(cleaned, complete)
            fused = score_fusion(
                bm25,
                semantic,
                query_terms=len(analysis.terms),
                query_idf=self.last_query_idf,
                phrase_matches=phrases,
                settings=fusion,
            )[:limit]
            timings["fusion"] = _ms(tick)
        elif mode_used in ("semantic", "hybrid"):
            fused = semantic[:limit]
        else:
            fused = [(c.market_id, c.score) for c in bm25[:limit]]

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
                    fused_score=score if mode_used == "hybrid" else None,
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
                f"""
            SELECT market_id, question, nullif(event_title, ''), category, closed, volume,
                   end_date, nullif(slug, '')
            FROM search.documents WHERE market_id IN ({_placeholders(ids)})
            """,
                list(ids),
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


def _placeholders(values: Sequence[object]) -> str:
    """``?, ?, ?`` for ``values``: DuckDB probes an ART index for an IN list of parameters,
    where ``IN (SELECT unnest(?))`` scans the whole table (5 ms vs 0.5 ms at 200k markets)."""
    return ", ".join("?" for _ in values)


def _prefix_end(prefix: str) -> str:
    """The first string after every string that starts with ``prefix``."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


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
    fusion: FusionSettings = DEFAULT_FUSION,
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
            fusion=fusion,
            query_vector=query_vector,
        )
