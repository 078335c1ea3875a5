"""What to generate (``SampleConfig``) and how the sample's size follows from its scale.

Scale: ``scale=1`` gives about ``FILLS_PER_SCALE`` (10,000) order fills, ~400 markets and ~600
noise wallets. Fills grow linearly with scale; markets grow with ``sqrt(scale)`` (capped at
20,000) so large scales have many fills per market. ``scale=2000`` is ~20 million fills.
``MAKERS_PER_MATCH_P`` is here because both the market activity (matches per market) and the
fills (maker orders per match) derive from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from polymkt_dagster.lib.sample.formats import unix_seconds

__all__ = [
    "FILLS_PER_SCALE",
    "MAKERS_PER_MATCH_P",
    "ROWS_PER_MATCH",
    "SampleConfig",
]

#: Order fills (orderFilled rows) generated per unit of ``SampleConfig.scale``.
FILLS_PER_SCALE = 10_000

MAKERS_PER_MATCH_P = (0.5, 0.3, 0.2)  # P(1, 2, 3 maker orders per match)
ROWS_PER_MATCH = 1.0 + sum((i + 1) * p for i, p in enumerate(MAKERS_PER_MATCH_P))
_MAX_MARKETS = 20_000
_MIN_MARKETS = 60

_DEFAULT_START = datetime(2024, 1, 1, tzinfo=UTC)
_DEFAULT_END = datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC)


@dataclass(frozen=True)
class SampleConfig:
    """What to generate. Same config, same bytes."""

    scale: float = 1.0
    seed: int = 7
    start: datetime = _DEFAULT_START
    end: datetime = _DEFAULT_END

    def __post_init__(self) -> None:
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise ValueError(f"scale must be a positive number, got {self.scale!r}")
        if self.seed < 0:
            raise ValueError("seed must be >= 0")
        if unix_seconds(self.end) - unix_seconds(self.start) < 7 * 86_400:
            raise ValueError("the window from start to end must span at least 7 days")

    @property
    def target_fills(self) -> int:
        """Expected number of orderFilled rows (the actual count is within a few percent)."""
        return round(self.scale * FILLS_PER_SCALE)

    @property
    def n_markets(self) -> int:
        return int(min(_MAX_MARKETS, max(_MIN_MARKETS, round(400 * math.sqrt(self.scale)))))

    @property
    def n_noise_wallets(self) -> int:
        return int(min(500_000, max(150, round(600 * math.sqrt(self.scale)))))
