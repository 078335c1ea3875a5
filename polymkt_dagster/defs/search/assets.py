"""Search assets: the BM25 index and the market embeddings (thin wiring over lib/search).

Both follow ``raw/markets`` (eager automation: refreshed after each markets sync) and are
incremental by content hash, so a re-run over unchanged markets is cheap and sends no
embedding request. Both write the DuckDB catalog, hence the ``duckdb`` pool.
"""

from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
from dagster_openai import OpenAIResource
from pydantic import Field

from polymkt_dagster.defs.ingest.assets import MARKETS_KEY
from polymkt_dagster.defs.shared.resources import (
    OPENAI_API_KEY_ENV,
    PolymktResource,
    semantic_search_enabled,
)
from polymkt_dagster.lib.core.report import markdown_table
from polymkt_dagster.lib.search import (
    LOCAL_EMBEDDING_MODEL,
    Bm25Report,
    EmbeddingReport,
    LocalEmbedder,
    OpenAIEmbedder,
    update_bm25_index,
    update_market_embeddings,
    vector_index_path,
)

BM25_KEY = dg.AssetKey(["search", "bm25_index"])
EMBEDDINGS_KEY = dg.AssetKey(["search", "market_embeddings"])


def _preview(rows: list[tuple[str, str]], total: int) -> dg.MetadataValue:
    if not rows:
        return dg.MetadataValue.md("_no market changed_")
    table = pa.table({"market_id": [r[0] for r in rows], "question": [r[1] for r in rows]})
    more = f"\n\n_{len(rows)} of {total:,} changed markets_" if total > len(rows) else ""
    return dg.MetadataValue.md(markdown_table(table) + more)


class Bm25IndexConfig(dg.Config):
    full_rebuild: bool = Field(
        default=False, description="Rebuild the whole index instead of patching changes."
    )


@dg.asset(
    key=BM25_KEY,
    deps=[MARKETS_KEY],
    group_name="search",
    kinds={"duckdb"},
    pool="duckdb",
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "BM25 full-text index (DuckDB FTS, Porter stemmer, English stop words, digits kept) "
        "over question, event title, outcomes, tags, slug and description. Incremental by "
        'content hash. Query with `polymkt search "QUERY" --mode bm25`.'
    ),
)
def bm25_index(
    context: dg.AssetExecutionContext, config: Bm25IndexConfig, polymkt: PolymktResource
) -> dg.MaterializeResult:
    settings = polymkt.settings()
    report = update_bm25_index(
        settings.catalog_path,
        polymkt.lake(),
        full_rebuild=config.full_rebuild,
        log=context.log.info,
    )
    return dg.MaterializeResult(metadata=bm25_metadata(report))


def bm25_metadata(report: Bm25Report) -> dict[str, Any]:
    return {
        "dagster/row_count": report.documents,
        "build_mode": report.mode,
        "markets_indexed": report.documents,
        "markets_new": report.new,
        "markets_changed": report.changed,
        "markets_deleted": report.deleted,
        "terms": report.terms,
        "seconds": round(report.seconds, 3),
        "catalog": dg.MetadataValue.path(report.catalog_path),
        "preview": _preview(report.changed_sample, report.reindexed),
    }


class MarketEmbeddingsConfig(dg.Config):
    batch_size: int = Field(default=256, description="Inputs per embeddings request (max 2048).")
    reembed_all: bool = Field(
        default=False, description="Embed every market again (costs tokens) instead of changes."
    )
    rebuild_vector_index: bool = Field(
        default=False, description="Rebuild the HNSW index file from stored vectors (no API)."
    )


@dg.asset(
    key=EMBEDDINGS_KEY,
    deps=[MARKETS_KEY],
    group_name="search",
    kinds={"duckdb", "openai"},
    pool="duckdb",
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "Embeddings of each market's text with a content hash, plus an HNSW index (cosine) "
        "for semantic and hybrid search. Only new or changed markets are embedded. Without "
        "POLYMKT_OPENAI_API_KEY the built-in local model (WordLlama, offline) embeds them; "
        "with it, POLYMKT_OPENAI_EMBEDDING_MODEL (default text-embedding-3-small) on any "
        "OpenAI-compatible server. A change of model re-embeds every market."
    ),
)
def market_embeddings(
    context: dg.AssetExecutionContext,
    config: MarketEmbeddingsConfig,
    polymkt: PolymktResource,
    openai: OpenAIResource,
) -> dg.MaterializeResult:
    settings = polymkt.settings()
    if not semantic_search_enabled(openai):
        context.log.info(
            f"{OPENAI_API_KEY_ENV} is not set: embedding with the built-in local model "
            f"{LOCAL_EMBEDDING_MODEL}."
        )
        report = update_market_embeddings(
            settings.catalog_path,
            polymkt.lake(),
            LocalEmbedder(),
            reembed_all=config.reembed_all,
            rebuild_vector_index=config.rebuild_vector_index,
            log=context.log.info,
        )
        return dg.MaterializeResult(metadata=embeddings_metadata(report, settings.catalog_path))
    with openai.get_client(context) as client:
        embedder = OpenAIEmbedder(
            client, settings.openai_embedding_model, batch_size=config.batch_size
        )
        report = update_market_embeddings(
            settings.catalog_path,
            polymkt.lake(),
            embedder,
            reembed_all=config.reembed_all,
            rebuild_vector_index=config.rebuild_vector_index,
            log=context.log.info,
        )
    return dg.MaterializeResult(metadata=embeddings_metadata(report, settings.catalog_path))


def embeddings_metadata(report: EmbeddingReport, catalog_path: Path) -> dict[str, Any]:
    usage = report.usage
    return {
        "dagster/row_count": report.markets,  # every market has a current vector now
        "semantic_search": "enabled",
        "model": report.model,
        "dimensions": report.dim or 0,
        "markets_indexed": report.markets,
        "markets_embedded": report.embedded,
        "markets_unchanged": report.unchanged,
        "markets_deleted": report.deleted,
        "requests": usage.requests,
        "retries": usage.retries,
        "prompt_tokens": usage.prompt_tokens,
        "total_tokens": usage.total_tokens,
        "cost_usd": dg.MetadataValue.float(report.cost_usd)
        if report.cost_usd is not None
        else "unknown price for this model",
        "embed_seconds": round(report.embed_seconds, 3),
        "vector_index": report.vector_index.mode,
        "vector_index_rows": report.vector_index.rows,
        "vector_index_seconds": round(report.vector_index.seconds, 3),
        "vector_index_path": dg.MetadataValue.path(str(vector_index_path(catalog_path))),
        "preview": _preview(report.embedded_sample, report.embedded),
    }
