"""Fusing BM25 and semantic rankings so that hybrid never does worse than its parts.

Plain reciprocal rank fusion treats rank 1 of a list that matched one weak word like rank 1
of a list that matched the whole query, so a market matching one common word could climb
over an exact match. ``score_fusion`` uses the scores instead: BM25 relative to the best
BM25 score of the query and scaled by the share of the query's idf the market matched;
cosine similarity above a floor, relative to the best similarity; a weighted sum of the
two; and a bonus for markets matching every query term or the query as a phrase, which
keeps BM25's sure answers on top. The settings were tuned on the labelled queries in
``polymkt_dagster_tests/fixtures/search_relevance.json``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

DEFAULT_RRF_K = 60


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


@dataclass(frozen=True)
class FusionSettings:
    """How hybrid weighs its two rankings (defaults tuned on the labelled query set)."""

    bm25_weight: float = 0.8
    semantic_weight: float = 0.2
    # Cosine similarity under which a market found only by the embeddings is not a match:
    # static word vectors give unrelated short texts 0.0-0.3.
    semantic_floor: float = 0.35
    # Added for a market matching every term of a query of two or more terms.
    all_terms_bonus: float = 0.15
    # Added for a market whose question or event title holds the query words in order.
    phrase_bonus: float = 0.3


DEFAULT_FUSION = FusionSettings()


@dataclass(frozen=True)
class Bm25Candidate:
    market_id: str
    score: float
    matched_terms: int
    matched_idf: float = 0.0  # sum of the idf of the query terms it matched


def score_fusion(
    bm25: Sequence[Bm25Candidate],
    semantic: Sequence[tuple[str, float]],
    *,
    query_terms: int,
    query_idf: float = 0.0,
    phrase_matches: frozenset[str] = frozenset(),
    settings: FusionSettings = DEFAULT_FUSION,
) -> list[tuple[str, float]]:
    """Fused (market_id, score) pairs, best first; ties go to the better BM25 rank, then id."""
    best_bm25 = max((c.score for c in bm25), default=0.0)
    best_cos = max((cos for _, cos in semantic), default=0.0)
    floor = settings.semantic_floor
    scores: dict[str, float] = {}
    bm25_rank: dict[str, int] = {}
    for rank, candidate in enumerate(bm25, start=1):
        bm25_rank[candidate.market_id] = rank
        relative = candidate.score / best_bm25 if best_bm25 > 0 else 0.0
        # The share of the query's idf the market matched: a market that matched only a
        # common word of the query is a weak match even when it tops the BM25 list.
        coverage = min(1.0, candidate.matched_idf / query_idf) if query_idf > 0 else 1.0
        value = settings.bm25_weight * coverage * (0.5 + 0.5 * relative)
        if query_terms >= 2 and candidate.matched_terms >= query_terms:
            value += settings.all_terms_bonus
        if candidate.market_id in phrase_matches:
            value += settings.phrase_bonus
        scores[candidate.market_id] = value
    if best_cos > floor:
        for market_id, cos in semantic:
            if cos <= floor:
                continue
            scores[market_id] = scores.get(market_id, 0.0) + settings.semantic_weight * (
                (cos - floor) / (best_cos - floor)
            )
    unranked = len(bm25) + 1
    return sorted(scores.items(), key=lambda kv: (-kv[1], bm25_rank.get(kv[0], unranked), kv[0]))
