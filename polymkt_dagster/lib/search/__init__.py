"""Market search: BM25 (DuckDB FTS), semantic (embeddings + HNSW) and hybrid (score fusion).

Where things live and why:

- The catalog (DATA_DIR/polymkt.duckdb), schema ``search``:
    ``documents``            one row per market: the indexed text fields (``*_terms``,
                             numbers in one form), the filter and display columns, and
                             the ``content_hash`` of the text.
    ``bm25_stopwords``       the stop words (DuckDB's English list minus market words);
    ``bm25_settings``        the index version (another version is rebuilt in full).
    ``fts_search_documents`` the DuckDB FTS index built by ``PRAGMA create_fts_index``
                             (Porter stemmer, those stop words, digits kept): ``dict``,
                             ``docs``, ``terms``, ``stats``, ``stopwords``, the ``tokenize``
                             and ``match_bm25`` macros. It stays a valid FTS index, so
                             ``match_bm25`` works for anyone querying the catalog by hand.
    ``bm25_postings``        (termid, docid, tf, len) aggregated from ``terms`` and sorted
                             by term: queries read only the postings of their own terms
                             (5-20 ms over 200k markets, where ``match_bm25`` takes 60-150).
    ``embeddings``           (market_id, content_hash, model, vector FLOAT[dim]): the
                             vectors of one model (the built-in local one unless an
                             OpenAI-compatible provider is configured), in a plain table.
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

The package is split along its seams: ``common`` (settings, errors, documents, the embedder
interface), ``analysis`` (number forms, stop words), ``bm25`` (the full-text index),
``embedders`` (local model, OpenAI-compatible client, hashing stub), ``vectors`` (stored
embeddings and the HNSW file), ``fusion`` (hybrid scoring), ``engine`` (query analysis,
rankers), ``command`` (the CLI verb) and ``relevance`` (nDCG@10 on a labelled set). Names
are imported from their module on first use, so ``polymkt search --mode bm25`` loads DuckDB
only, and ``openai`` loads only with a key.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "BM25_B": "common",
    "BM25_INDEX_VERSION": "common",
    "BM25_K1": "common",
    "DEFAULT_MODE": "common",
    "DOCUMENT_TEXT_SQL": "common",
    "EMBEDDING_PRICES_PER_MTOK": "common",
    "EMBED_BATCH_CHAR_BUDGET": "common",
    "EMBED_BATCH_SIZE": "common",
    "Embedder": "common",
    "EmbeddingError": "common",
    "EmbeddingUsage": "common",
    "FIELD_WEIGHTS": "common",
    "FTS_DELTA_SCHEMA": "common",
    "FTS_IGNORE": "common",
    "FTS_SCHEMA": "common",
    "FTS_STEMMER": "common",
    "FTS_STOPWORDS": "common",
    "FULL_REBUILD_FRACTION": "common",
    "HNSW_OPTIONS": "common",
    "INDEXED_FIELDS": "common",
    "INDEXED_SOURCES": "common",
    "LOCK_TIMEOUT_S": "common",
    "Log": "common",
    "MAX_COSINE_DISTANCE": "common",
    "MAX_EMBED_CHARS": "common",
    "MAX_LIMIT": "common",
    "MAX_QUERY_CHARS": "common",
    "MAX_QUERY_TERMS": "common",
    "SEARCH_MODES": "common",
    "SEARCH_THREADS": "common",
    "SearchError": "common",
    "VECTOR_REBUILD_FRACTION": "common",
    "WRITE_CHUNK_SIZE": "common",
    "_list_text_sql": "common",
    "_scalar": "common",
    "_stage_documents": "common",
    "_table_exists": "common",
    "_transaction": "common",
    "content_hash": "common",
    "document_text": "common",
    "short_document_text_sql": "common",
    "Bm25Report": "bm25",
    "_fts_pragma": "bm25",
    "_full_bm25_build": "bm25",
    "_incremental_bm25_update": "bm25",
    "_index_version": "bm25",
    "_postings_select": "bm25",
    "_weights_sql": "bm25",
    "_write_index_settings": "bm25",
    "documents_select": "bm25",
    "update_bm25_index": "bm25",
    "HashingEmbedder": "embedders",
    "LOCAL_EMBEDDING_MODEL": "embedders",
    "LOCAL_MAX_TOKENS": "embedders",
    "LocalEmbedder": "embedders",
    "LocalModelError": "embedders",
    "OpenAIEmbedder": "embedders",
    "_HASH_STOPWORDS": "embedders",
    "_HASH_WORD": "embedders",
    "_LOCAL_MODEL": "embedders",
    "_WORDLLAMA_TOKENIZER": "embedders",
    "_WORDLLAMA_WEIGHTS": "embedders",
    "_crude_stem": "embedders",
    "_load_local_model": "embedders",
    "_normalise_rows": "embedders",
    "_redact": "embedders",
    "_retry_after_seconds": "embedders",
    "configured_embedder": "embedders",
    "openai_embedder": "embedders",
    "EmbeddingReport": "vectors",
    "VectorIndexReport": "vectors",
    "_EmbeddingState": "vectors",
    "_LocalIndexState": "vectors",
    "_attach": "vectors",
    "_bump_generation": "vectors",
    "_catalog_embedding_state": "vectors",
    "_embedding_state": "vectors",
    "_embeddings_dim": "vectors",
    "_local_index_state": "vectors",
    "_remove_database": "vectors",
    "_sync_vector_index": "vectors",
    "_write_embeddings": "vectors",
    "sync_vector_index": "vectors",
    "update_market_embeddings": "vectors",
    "vector_index_path": "vectors",
    "Bm25Candidate": "fusion",
    "DEFAULT_FUSION": "fusion",
    "DEFAULT_RRF_K": "fusion",
    "FusionSettings": "fusion",
    "reciprocal_rank_fusion": "fusion",
    "score_fusion": "fusion",
    "KEPT_STOPWORDS": "analysis",
    "NUMBER_RULES": "analysis",
    "STOPWORDS": "analysis",
    "_COMPILED": "analysis",
    "_DUCKDB_ENGLISH_STOPWORDS": "analysis",
    "_UNITS": "analysis",
    "_WORD": "analysis",
    "_number_rules": "analysis",
    "meaningful_words": "analysis",
    "normalise_numbers": "analysis",
    "normalise_numbers_sql": "analysis",
    "EXPANSION_MAX_EXTRA_CHARS": "engine",
    "EXPANSION_MAX_TERMS": "engine",
    "EXPANSION_MIN_CHARS": "engine",
    "EXPANSION_WEIGHT": "engine",
    "FUZZY_MIN_CHARS": "engine",
    "FUZZY_MIN_SIMILARITY": "engine",
    "MarketSearch": "engine",
    "QueryAnalysis": "engine",
    "SearchHit": "response",
    "SearchResponse": "response",
    "_CONTROL_CHARS": "engine",
    "_Filters": "engine",
    "_PHRASE_SQL": "engine",
    "_PHRASE_WORD": "engine",
    "_json_default": "response",
    "_ms": "engine",
    "_nothing_to_search": "engine",
    "search": "engine",
    "validate_query": "engine",
    "CommandOutput": "command",
    "render_text": "command",
    "run_search_command": "command",
    "LabelledQuery": "relevance",
    "ModeRelevance": "relevance",
    "RELEVANCE_K": "relevance",
    "evaluate": "relevance",
    "load_labelled_queries": "relevance",
    "ndcg_at_k": "relevance",
    "relevance_summary": "relevance",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
