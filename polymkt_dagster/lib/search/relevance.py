"""Relevance of search modes on a labelled query set: nDCG@10 per query and per mode.

The set is a JSON document ``{"queries": [{"query", "kind", "relevant": {market_id:
grade}}]}`` with grades 2 (the market asked for) and 1 (a market of the family asked about).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polymkt_dagster.lib.search.common import SearchError

RELEVANCE_K = 10


@dataclass(frozen=True)
class LabelledQuery:
    query: str
    kind: str
    relevant: Mapping[str, int]


def load_labelled_queries(path: Path) -> list[LabelledQuery]:
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    return [
        LabelledQuery(
            str(q["query"]), str(q["kind"]), {str(k): int(v) for k, v in q["relevant"].items()}
        )
        for q in document["queries"]
    ]


def ndcg_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = RELEVANCE_K) -> float:
    """Normalised discounted cumulative gain of ``ranked`` (gain 2^grade - 1)."""

    def dcg(grades: Sequence[int]) -> float:
        return sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(grades[:k]))

    ideal = dcg(sorted(relevant.values(), reverse=True))
    return dcg([relevant.get(m, 0) for m in ranked]) / ideal if ideal > 0 else 0.0


@dataclass
class ModeRelevance:
    mode: str
    per_query: dict[str, float]

    @property
    def mean(self) -> float:
        return sum(self.per_query.values()) / max(len(self.per_query), 1)


def evaluate(
    run_query: Callable[[str, str], Sequence[str]],
    queries: Sequence[LabelledQuery],
    modes: Sequence[str] = ("bm25", "semantic", "hybrid"),
) -> dict[str, ModeRelevance]:
    """nDCG@10 of each mode; ``run_query(query, mode)`` returns ranked market ids.

    A query a mode refuses (SearchError, e.g. BM25 given only Chinese) scores 0.
    """
    out: dict[str, ModeRelevance] = {}
    for mode in modes:
        scores: dict[str, float] = {}
        for labelled in queries:
            try:
                ranked = run_query(labelled.query, mode)
            except SearchError:
                ranked = []
            scores[labelled.query] = ndcg_at_k(ranked, labelled.relevant)
        out[mode] = ModeRelevance(mode, scores)
    return out


def relevance_summary(results: Mapping[str, ModeRelevance]) -> dict[str, Any]:
    """Means per mode, how often hybrid scores below BM25 (the "never hurts" check), and
    the mean of each query's better side (the ceiling of any fusion)."""
    summary: dict[str, Any] = {mode: round(r.mean, 3) for mode, r in results.items()}
    if "bm25" in results and "hybrid" in results:
        bm25, hybrid = results["bm25"].per_query, results["hybrid"].per_query
        worse = [q for q in hybrid if hybrid[q] < bm25[q] - 1e-9]
        summary["hybrid_below_bm25"] = worse
        summary["hybrid_below_bm25_share"] = round(len(worse) / max(len(hybrid), 1), 3)
    if "bm25" in results and "semantic" in results:
        # The better side of each query: what a perfect fusion of the two rankings could
        # reach, so a fusion's gain over BM25 is read against the gain there is to have.
        bm25, semantic = results["bm25"].per_query, results["semantic"].per_query
        best = [max(bm25[q], semantic[q]) for q in bm25]
        summary["best_of_both"] = round(sum(best) / max(len(best), 1), 3)
    return summary
