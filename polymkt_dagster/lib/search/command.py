"""The `polymkt search` verb: embedder choice, error documents and the terminal table."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from polymkt_dagster.lib.search.common import SearchError
from polymkt_dagster.lib.search.engine import search
from polymkt_dagster.lib.search.response import SearchResponse

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
    embedder = None
    if mode != "bm25":
        # Imported only here: BM25 needs neither numpy nor the model's libraries, nor openai.
        from polymkt_dagster.lib.search.embedders import configured_embedder

        embedder = configured_embedder(
            api_key, base_url, embedding_model, max_retries=2, timeout_s=20.0
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
        if hit.fused_score is not None:
            scores.append(f"fused {hit.fused_score:.3f}")
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
