"""search/bm25_index and search/market_embeddings materialized with real DuckDB files on
tmp paths, embeddings through the local OpenAI-compatible server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster_openai import OpenAIResource

from polymkt_dagster.defs.search.assets import (
    BM25_KEY,
    EMBEDDINGS_KEY,
    bm25_index,
    market_embeddings,
)
from polymkt_dagster.defs.shared.resources import (
    SEMANTIC_SEARCH_DISABLED_KEY,
    PolymktResource,
    openai_resource_from_env,
    resources,
)
from polymkt_dagster.lib import search as s
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster_tests.lib.search.test_search import MARKETS_FIXTURE, write_markets
from polymkt_local.openai_compat import (
    OpenAICompatServer,
)

MARKETS_KEY = dg.AssetKey(["raw", "markets"])


def _metadata(result: dg.ExecuteInProcessResult) -> dict[dg.AssetKey, dict[str, Any]]:
    out: dict[dg.AssetKey, dict[str, Any]] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        out[materialization.asset_key] = {
            k: getattr(v, "value", v) for k, v in materialization.metadata.items()
        }
    return out


def _run(data_dir: Path, openai: OpenAIResource) -> dict[dg.AssetKey, dict[str, Any]]:
    result = dg.materialize(
        [bm25_index, market_embeddings],
        resources={"polymkt": PolymktResource(data_dir=str(data_dir)), "openai": openai},
    )
    assert result.success
    return _metadata(result)


def test_assets_build_incrementally_and_report_usage(
    tmp_path: Path, openai_server: OpenAICompatServer
) -> None:
    lake = Lake(tmp_path / "parquet")
    write_markets(lake, MARKETS_FIXTURE)
    resource = OpenAIResource(api_key="sk-test", base_url=openai_server.base_url)

    first = _run(tmp_path, resource)
    bm25, embeddings = first[BM25_KEY], first[EMBEDDINGS_KEY]
    assert bm25["dagster/row_count"] == len(MARKETS_FIXTURE)
    assert (bm25["build_mode"], bm25["markets_new"]) == ("full", len(MARKETS_FIXTURE))
    assert "| market_id | question |" in bm25["preview"]
    assert embeddings["dagster/row_count"] == len(MARKETS_FIXTURE)
    assert embeddings["markets_embedded"] == len(MARKETS_FIXTURE)
    assert embeddings["requests"] == openai_server.embedding_requests == 1
    assert embeddings["total_tokens"] > 0 and embeddings["cost_usd"] > 0
    assert embeddings["model"] == "text-embedding-3-small"
    assert embeddings["vector_index"] == "full"

    # Nothing changed: no embedding request, the BM25 index is left as it is.
    openai_server.reset_counts()
    second = _run(tmp_path, resource)
    assert openai_server.requests == []
    assert second[EMBEDDINGS_KEY]["requests"] == 0
    assert second[EMBEDDINGS_KEY]["markets_embedded"] == 0
    assert second[BM25_KEY]["build_mode"] == "unchanged"

    # One question edited, one market gone: exactly that is re-embedded and re-indexed.
    edited = [dict(m) for m in MARKETS_FIXTURE if m["market_id"] != "128"]
    edited[0]["question"] = "Will Donald Trump win a third presidential term?"
    write_markets(lake, edited)
    openai_server.reset_counts()
    third = _run(tmp_path, resource)
    assert openai_server.embedded_inputs == 1
    assert (
        third[EMBEDDINGS_KEY]["markets_embedded"],
        third[EMBEDDINGS_KEY]["markets_deleted"],
    ) == (
        1,
        1,
    )
    assert third[EMBEDDINGS_KEY]["vector_index"] == "incremental"
    assert (third[BM25_KEY]["build_mode"], third[BM25_KEY]["markets_changed"]) == ("incremental", 1)
    assert third[BM25_KEY]["markets_deleted"] == 1

    catalog = tmp_path / "polymkt.duckdb"
    embedder = s.openai_embedder("sk-test", openai_server.base_url, "text-embedding-3-small")
    response = s.search("third term", catalog_path=catalog, mode="hybrid", embedder=embedder)
    assert response.mode_used == "hybrid" and response.hits[0].market_id == "101"


def test_without_a_key_the_local_model_embeds_offline_and_a_key_rebuilds_the_vectors(
    tmp_path: Path, openai_server: OpenAICompatServer
) -> None:
    write_markets(Lake(tmp_path / "parquet"), MARKETS_FIXTURE)
    metadata = _run(tmp_path, openai_resource_from_env({}))
    local = metadata[EMBEDDINGS_KEY]
    assert (local["model"], local["dimensions"]) == (s.LOCAL_EMBEDDING_MODEL, 256)
    assert local["markets_embedded"] == len(MARKETS_FIXTURE) and local["vector_index"] == "full"
    assert metadata[BM25_KEY]["dagster/row_count"] == len(MARKETS_FIXTURE)
    assert openai_server.requests == []  # no network: the model ships in the wheel
    catalog = tmp_path / "polymkt.duckdb"
    response = s.search(
        "fed rate cut", catalog_path=catalog, mode="hybrid", embedder=s.LocalEmbedder()
    )
    assert response.mode_used == "hybrid" and response.hits[0].market_id == "106"

    # Configuring a provider replaces the model: every vector is rebuilt with its dimension.
    remote = _run(tmp_path, OpenAIResource(api_key="sk-test", base_url=openai_server.base_url))
    switched = remote[EMBEDDINGS_KEY]
    assert switched["model"] == "text-embedding-3-small"
    assert switched["dimensions"] == openai_server.dim != 256
    assert switched["markets_embedded"] == len(MARKETS_FIXTURE)
    assert switched["vector_index"] == "full"
    back = _run(tmp_path, openai_resource_from_env({}))[EMBEDDINGS_KEY]
    assert (back["model"], back["markets_embedded"]) == (
        s.LOCAL_EMBEDDING_MODEL,
        len(MARKETS_FIXTURE),
    )


def test_asset_wiring() -> None:
    for asset in (bm25_index, market_embeddings):
        spec = next(iter(asset.specs))
        assert {dep.asset_key for dep in spec.deps} == {MARKETS_KEY}
        assert asset.op.pool == "duckdb"
        assert spec.automation_condition is not None
        assert spec.group_name == "search"
    assert bm25_index.key == BM25_KEY and market_embeddings.key == EMBEDDINGS_KEY
    assert market_embeddings.required_resource_keys >= {"polymkt", "openai"}


def test_openai_resource_comes_from_the_environment() -> None:
    off = openai_resource_from_env({})
    assert off.api_key == SEMANTIC_SEARCH_DISABLED_KEY
    on = openai_resource_from_env(
        {"POLYMKT_OPENAI_API_KEY": "sk-x", "POLYMKT_OPENAI_BASE_URL": "http://127.0.0.1:1/v1"}
    )
    # Secrets stay environment references (never values in the definitions or the UI).
    assert isinstance(on.api_key, dg.EnvVar) and on.api_key.env_var_name == "POLYMKT_OPENAI_API_KEY"
    assert isinstance(on.base_url, dg.EnvVar)
    assert "openai" in resources().resources


@pytest.mark.parametrize("key", [BM25_KEY, EMBEDDINGS_KEY])
def test_the_code_location_loads_the_search_assets(key: dg.AssetKey) -> None:
    from polymkt_dagster.definitions import defs

    assert key in defs.resolve_asset_graph().get_all_asset_keys()
    assert "openai" in (defs.resources or {})
