"""The sample's universe: events, markets, outcomes, activity and wallets, before any fill.

``build_universe`` draws everything the fills and the Gamma files are derived from: single-
market events and neg-risk election groups (one Yes winner per resolved group), ids in creation
order, chain identifiers, outcomes (resolved, open, and a few closed-but-unresolved markets),
Gamma's UMA fields (``_assign_uma_statuses``), price paths, the expected matches per market and
the wallets. It is small (at most 20,000 markets) and held in memory; the fills are streamed
from it one time slice at a time (``sample.fills``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from polymkt_dagster.lib.sample.config import ROWS_PER_MATCH, SampleConfig
from polymkt_dagster.lib.sample.formats import unix_seconds
from polymkt_dagster.lib.sample.price_paths import price_at, price_paths
from polymkt_dagster.lib.sample.questions import QuestionWriter
from polymkt_dagster.lib.sample.records import Event, Market
from polymkt_dagster.lib.sample.wallets import WalletPool, build_wallets

__all__ = [
    "Universe",
    "build_universe",
]

_MATCHES_PER_SLICE = 40_000  # bounds memory: one time slice is generated at a time
_GROUP_MARKET_SHARE = 1.0 / 3.0


@dataclass
class Universe:
    """Everything the fills and the Gamma files are derived from (``build_universe``)."""

    config: SampleConfig
    t0: int
    t1: int  # inclusive
    events: list[Event]
    markets: list[Market]
    groups: int
    # per-market arrays, index = position in ``markets`` (id order)
    start: np.ndarray
    end: np.ndarray
    trade_end: np.ndarray
    alpha: np.ndarray
    expected_matches: np.ndarray
    resolved: np.ndarray  # the market has an eventual winner (sharp wallets buy it early)
    win_side: np.ndarray
    neg_risk: np.ndarray
    path: np.ndarray  # (n_markets, GRID_POINTS) price of token1 over tau in [0, 1]
    # per-token / wallet lookups
    tokens: pa.Array  # token1, token2 per market (2n), then "0"
    market_ids: pa.Array
    wallets: WalletPool
    n_slices: int
    slice_len: int


def _hex_str(rng: np.random.Generator, nbytes: int) -> str:
    return "0x" + rng.bytes(nbytes).hex()


def _fmt_price(p: float, decimals: int = 3) -> str:
    s = f"{p:.{decimals}f}".rstrip("0").rstrip(".")
    return s if s else "0"


def _token_id(rng: np.random.Generator, seen: set[str]) -> str:
    """A uint256 ERC-1155 position id as a decimal string of 76-78 digits."""
    while True:
        value = int.from_bytes(rng.bytes(32), "big")
        text = str(value)
        if 76 <= len(text) <= 78 and text not in seen:
            seen.add(text)
            return text


_CATEGORY_P = {
    "Politics": 0.22,
    "Crypto": 0.22,
    "Sports": 0.22,
    "Economics": 0.14,
    "Tech": 0.10,
    "Pop Culture": 0.10,
}
_ACTIVITY = {
    "Elections": 1.6,
    "Politics": 1.2,
    "Crypto": 1.2,
    "Sports": 0.8,
    "Economics": 1.0,
    "Tech": 0.7,
    "Pop Culture": 0.6,
}


def _single_duration_days(rng: np.random.Generator, category: str, q_short: bool) -> float:
    if category == "Sports":
        return float(rng.uniform(1, 5)) if q_short else float(rng.uniform(60, 250))
    if category == "Crypto":
        return float(rng.uniform(1, 45))
    if category == "Economics":
        return float(rng.uniform(14, 75))
    if category == "Politics":
        return float(rng.uniform(20, 300))
    if category == "Tech":
        return float(rng.uniform(30, 200))
    return float(rng.uniform(7, 90))


# Gamma's umaResolutionStatuses history of a resolved market: empty for most, lagging for many
# (docs/architecture.md §4)
_RESOLVED_HISTORIES: tuple[tuple[tuple[str, ...], float], ...] = (
    ((), 0.55),
    (("proposed", "resolved"), 0.25),
    (("proposed",), 0.12),
    (("proposed", "disputed", "proposed", "resolved"), 0.08),
)


def _assign_uma_statuses(
    markets: list[Market], events: list[Event], expected: np.ndarray, rng: np.random.Generator
) -> None:
    """Gamma's UMA fields and the on-chain resolution of every closed market.

    Resolved markets get ``umaResolutionStatus`` "resolved", a ConditionResolution payout and
    a history from ``_RESOLVED_HISTORIES``. Among the resolved single markets a few become
    closed at 1/0 prices but only "proposed" or "disputed" (not resolved, no payout on chain),
    one resolves at near-1/0 prices (0.999998 / 0.000002, payout to the higher one) and one
    resolves 50/50 (prices 0.5 / 0.5, payout [1, 1]; a cancelled game when there is one).
    Markets closed without a status (``closed_price``, ``closed_zero``) stand for pre-UMA
    markets. The special cases are picked among the quieter half of the markets (by
    ``expected`` matches), so few fills (and few sharp-wallet buys) sit in them. Uses its own
    rng stream, so the rest of the sample does not change with it.
    """
    histories = [h for h, _ in _RESOLVED_HISTORIES]
    weights = np.array([w for _, w in _RESOLVED_HISTORIES])
    for m in markets:
        if m.kind != "resolved" or m.closed_time is None:
            continue
        m.uma_status = "resolved"
        m.uma_statuses = histories[int(rng.choice(len(histories), p=weights))]
        m.payout = (1, 0) if m.winner == 0 else (0, 1)
        m.resolved_at = m.closed_time - int(rng.integers(60, 1800))
    singles = [
        i for i, m in enumerate(markets) if m.kind == "resolved" and not events[m.event].neg_risk
    ]
    n_proposed = max(2, round(0.01 * len(singles)))
    n_disputed = max(1, round(0.005 * len(singles)))
    singles = sorted(sorted(singles, key=lambda i: expected[i])[: max(1, len(singles) // 2)])
    if len(singles) < n_proposed + n_disputed + 2:
        return
    cancellable = [i for i in singles if "50-50" in markets[i].description]
    fifty = cancellable[int(rng.integers(len(cancellable)))] if cancellable else singles[-1]
    rest = [i for i in singles if i != fifty]
    picks = rng.choice(len(rest), size=n_proposed + n_disputed + 1, replace=False)
    for r, p in enumerate(picks):
        m = markets[rest[int(p)]]
        if r < n_proposed + n_disputed:
            m.kind = "proposed" if r < n_proposed else "disputed"
            m.resolved, m.uma_status, m.payout, m.resolved_at = False, m.kind, None, None
            m.uma_statuses = ("proposed",) if m.kind == "disputed" else ()
        else:  # resolved by UMA in the AMM era's style: near-1/0 prices
            near = ("0.999998", "0.000002")
            m.outcome_prices = near if m.winner == 0 else (near[1], near[0])
    m = markets[fifty]
    m.outcome_prices, m.payout = ("0.5", "0.5"), (1, 1)


def build_universe(config: SampleConfig) -> Universe:
    """The universe of ``config``: its markets, events, price paths, activity and wallets.

    Draws from the rng stream ``[seed, 0]`` (UMA statuses ``[seed, 5]``, wallets
    ``[seed, 3]``) in a fixed order: the same config gives the same universe.
    """
    rng = np.random.default_rng([config.seed, 0])
    namer = QuestionWriter(rng)
    t0, t1 = unix_seconds(config.start), unix_seconds(config.end)
    span = t1 - t0
    n_target = config.n_markets
    n_group_target = round(n_target * _GROUP_MARKET_SHARE)

    events: list[Event] = []
    markets: list[Market] = []
    latest_create = t1 - 2 * 86_400

    # --- election groups -----------------------------------------------------------------
    group_markets = 0
    while group_markets < n_group_target:
        size = int(rng.integers(3, 9))
        created = int(rng.integers(t0, latest_create))
        start = created + int(rng.integers(600, 6 * 3600))
        days = float(rng.uniform(30, 240))
        end = (start + int(days * 86_400)) // 3600 * 3600 + 3600
        title, desc, members, tags = namer.election(end, size)
        ev = Event(
            title=title,
            slug=namer.unique_slug(title),
            description=desc,
            category="Elections",
            tags=tags,
            neg_risk=True,
            created=created - int(rng.integers(60, 3600)),
            start=start,
            end=end,
            markets=[],
        )
        e_idx = len(events)
        events.append(ev)
        for name, question, mdesc in members:
            ev.markets.append(len(markets))
            markets.append(
                Market(
                    question=question,
                    slug=namer.unique_slug(question),
                    description=mdesc,
                    outcomes=("Yes", "No"),
                    group_item_title=name,
                    event=e_idx,
                    created=created,
                    start=start,
                    end=end,
                    yes_bias=1.0 / size,
                )
            )
        group_markets += size

    # --- single-market events ------------------------------------------------------------
    cats = list(_CATEGORY_P)
    probs = np.array([_CATEGORY_P[c] for c in cats])
    while len(markets) < max(n_target, group_markets + 10):
        category = cats[int(rng.choice(len(cats), p=probs))]
        created = int(rng.integers(t0, latest_create))
        start = created + int(rng.integers(600, 6 * 3600))
        short_game = bool(rng.random() < 0.45)
        days = _single_duration_days(rng, category, short_game)
        end = (start + int(days * 86_400)) // 3600 * 3600 + 3600
        question, mdesc, outcomes, tags, prior = namer.single(category, end)
        slug = namer.unique_slug(question)
        ev = Event(
            title=question,
            slug=slug,
            description=mdesc,
            category=category,
            tags=tags,
            neg_risk=False,
            created=created - int(rng.integers(0, 120)),
            start=start,
            end=end,
            markets=[len(markets)],
        )
        events.append(ev)
        markets.append(
            Market(
                question=question,
                slug=slug,
                description=mdesc,
                outcomes=outcomes,
                group_item_title=None,
                event=len(events) - 1,
                created=created,
                start=start,
                end=end,
                yes_bias=prior,
            )
        )

    # --- ids: in creation order -------------------------------------------------------------
    ev_order = sorted(range(len(events)), key=lambda i: (events[i].created, i))
    ev_rank = {e: r for r, e in enumerate(ev_order)}
    events = [events[i] for i in ev_order]
    for m in markets:
        m.event = ev_rank[m.event]
    m_order = sorted(range(len(markets)), key=lambda i: (markets[i].created, markets[i].event, i))
    m_rank = {mi: r for r, mi in enumerate(m_order)}
    markets = [markets[i] for i in m_order]
    for ev in events:
        ev.markets = sorted(m_rank[i] for i in ev.markets)
    next_event_id = 10_000 + int(rng.integers(0, 5_000))
    for ev in events:
        next_event_id += int(rng.integers(1, 40))
        ev.id = str(next_event_id)
    next_market_id = 500_000 + int(rng.integers(0, 20_000))
    for m in markets:
        next_market_id += int(rng.integers(1, 60))
        m.id = str(next_market_id)

    # --- chain identifiers ------------------------------------------------------------------
    seen_tokens: set[str] = set()
    for ev in events:
        if ev.neg_risk:
            prefix = rng.bytes(31).hex()
            ev.neg_risk_market_id = f"0x{prefix}00"
        for j, mi in enumerate(ev.markets):
            m = markets[mi]
            m.condition_id = _hex_str(rng, 32)
            m.question_id = (
                f"0x{ev.neg_risk_market_id[2:-2]}{j:02x}"
                if ev.neg_risk_market_id
                else _hex_str(rng, 32)
            )
            m.token1 = _token_id(rng, seen_tokens)
            m.token2 = _token_id(rng, seen_tokens)

    # --- outcomes and status ---------------------------------------------------------------
    n = len(markets)
    closed_singles: list[int] = []
    for ev in events:
        close_at = ev.end + int(rng.integers(3600, 36 * 3600))
        closed = close_at <= t1
        if ev.neg_risk:
            winner = ev.markets[int(rng.integers(len(ev.markets)))]
            for mi in ev.markets:
                m = markets[mi]
                m.winner = 0 if mi == winner else 1
                if closed:
                    m.kind, m.closed, m.resolved, m.closed_time = "resolved", True, True, close_at
        else:
            m = markets[ev.markets[0]]
            m.winner = 0 if rng.random() < m.yes_bias else 1
            if closed:
                m.kind, m.closed, m.resolved, m.closed_time = "resolved", True, True, close_at
                closed_singles.append(ev.markets[0])
    # a few closed markets that are NOT resolved: fractional last price, and ["0", "0"]
    n_price = min(len(closed_singles), max(3, round(0.012 * len(closed_singles))))
    n_zero = min(len(closed_singles) - n_price, max(2, round(0.006 * len(closed_singles))))
    picks = rng.choice(len(closed_singles), size=n_price + n_zero, replace=False)
    for r, p in enumerate(picks):
        m = markets[closed_singles[int(p)]]
        m.resolved, m.winner = False, -1
        m.kind = "closed_price" if r < n_price else "closed_zero"

    # --- price paths (token1 price over the market's life) ---------------------------------
    path = price_paths(rng, markets, events)

    start = np.array([m.start for m in markets], dtype=np.int64)
    end = np.array([m.end for m in markets], dtype=np.int64)
    trade_end = np.maximum(np.minimum(end, t1), start + 3600)
    tau_end = np.clip((trade_end - start) / (end - start), 0.0, 1.0)

    for i, m in enumerate(markets):
        if m.kind == "resolved":
            m.outcome_prices = ("1", "0") if m.winner == 0 else ("0", "1")
            m.uma_statuses = ("proposed", "resolved")
        elif m.kind == "closed_zero":
            m.outcome_prices = ("0", "0")
        else:
            p = price_at(path[i], float(tau_end[i]))
            decimals = 4 if m.kind == "closed_price" else 3
            lo = 10.0**-decimals
            p = round(min(max(p, lo), 1 - lo), decimals)
            m.outcome_prices = (_fmt_price(p, decimals), _fmt_price(1 - p, decimals))
        m.liquidity = 0.0 if m.closed else round(float(rng.lognormal(math.log(8_000), 1.2)), 5)
        last_touch = m.closed_time if m.closed_time is not None else int(trade_end[i])
        m.updated = min(t1, last_touch + int(rng.integers(60, 86_400)))

    # --- activity: expected matches per market ---------------------------------------------
    total_matches = config.target_fills / ROWS_PER_MATCH
    days = (trade_end - start) / 86_400
    cat = np.array([_ACTIVITY[events[m.event].category] for m in markets])
    weight = rng.lognormal(0.0, 1.0, n) * (days + 1.0) ** 0.4 * cat
    floor = min(3.0, 0.3 * total_matches / n)  # every market gets a few matches on average
    expected = floor + (total_matches - n * floor) * weight / weight.sum()
    alpha = rng.uniform(1.0, 2.0, n)  # time density s**alpha: trading heats up near the end

    resolved = np.array([m.resolved for m in markets])
    win_side = np.array([m.winner if m.resolved else -1 for m in markets], dtype=np.int8)
    neg_risk = np.array([events[m.event].neg_risk for m in markets])
    # after the arrays above, so the fills do not change with the UMA statuses
    _assign_uma_statuses(markets, events, expected, np.random.default_rng([config.seed, 5]))

    # --- wallets: their own rng stream ------------------------------------------------------
    wallets = build_wallets(config)

    tokens = pa.array([t for m in markets for t in (m.token1, m.token2)] + ["0"], type=pa.string())
    market_ids = pa.array([m.id for m in markets], type=pa.string())
    n_slices = max(1, math.ceil(total_matches / _MATCHES_PER_SLICE))
    slice_len = math.ceil((span + 1) / n_slices)

    return Universe(
        config=config,
        t0=t0,
        t1=t1,
        events=events,
        markets=markets,
        groups=sum(1 for ev in events if ev.neg_risk),
        start=start,
        end=end,
        trade_end=trade_end,
        alpha=alpha,
        expected_matches=expected,
        resolved=resolved,
        win_side=win_side,
        neg_risk=neg_risk,
        path=path,
        tokens=tokens,
        market_ids=market_ids,
        wallets=wallets,
        n_slices=n_slices,
        slice_len=slice_len,
    )
