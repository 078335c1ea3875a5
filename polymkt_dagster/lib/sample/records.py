"""The mutable records a sample universe is built from: one ``Market``, one ``Event``.

``build_universe`` creates them, fills in ids, chain identifiers, outcomes and Gamma's status
fields step by step; ``price_paths`` and the Gamma writers read them. They sit apart so the
modules that read them need not import the builder.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Event",
    "Market",
]


@dataclass
class Market:
    """One binary market: its text, life, chain ids, outcome and Gamma status."""

    question: str
    slug: str
    description: str
    outcomes: tuple[str, str]
    group_item_title: str | None
    event: int  # index into Universe.events
    created: int
    start: int
    end: int
    yes_bias: float  # prior probability that outcome 1 wins (also drives the start price)
    id: str = ""
    condition_id: str = ""
    question_id: str = ""
    token1: str = ""
    token2: str = ""
    closed: bool = False
    closed_time: int | None = None
    resolved: bool = False
    # resolved | open | closed_price | closed_zero | proposed | disputed (closed, 1/0 prices,
    # UMA not final: not resolved)
    kind: str = "open"
    winner: int = -1  # 0 = outcome 1 (token1) won, 1 = outcome 2 won, -1 none
    outcome_prices: tuple[str, str] = ("0.5", "0.5")
    uma_status: str | None = None  # Gamma's current (singular) umaResolutionStatus
    uma_statuses: tuple[str, ...] = ()  # Gamma's umaResolutionStatuses history
    payout: tuple[int, int] | None = None  # on-chain ConditionResolution payout numerators
    resolved_at: int | None = None  # ConditionResolution time
    liquidity: float = 0.0
    updated: int = 0


@dataclass
class Event:
    """A single-market event or a neg-risk election group; ``markets`` index the universe."""

    title: str
    slug: str
    description: str
    category: str
    tags: list[str]
    neg_risk: bool
    created: int
    start: int
    end: int
    markets: list[int]
    id: str = ""
    neg_risk_market_id: str | None = None
