"""Deterministic, realistic Polymarket sample data in poly_data's CSV layout.

``generate_sample`` writes six files into a directory:

- ``markets.csv``: poly_data's market table (token ids as 76-78 digit decimal strings);
- ``markets.json`` / ``events.json``: Gamma-shaped market and event objects for the same
  markets (JSON strings inside JSON for ``outcomes``, ``outcomePrices``, ``clobTokenIds``,
  ``umaResolutionStatuses``);
- ``orderFilled.csv``: raw V1 exchange ``OrderFilled`` rows (one per maker order plus one for
  the taker order, whose ``taker`` is the exchange contract), amounts raw with 6 decimals,
  about 10% of the addresses in mixed case;
- ``trades.csv``: poly_data's processed trades, one row per ``orderFilled`` row;
- ``ctfEvents.csv``: Conditional Tokens position events (splits, merges, neg-risk conversions,
  redemptions, ConditionResolution payouts) that make every wallet's sells covered by what it
  holds (``sample_ctf``; docs/architecture.md §3.1).

The data has single-market events and negRisk "election groups" (one Yes winner per resolved
group), price paths that drift to the outcome (Brownian bridges in logit space, softmax across
the candidates of a group), closed-but-not-resolved markets, open markets with fractional
prices, a pool of noise wallets and five "sharp" wallets that buy the eventual winner early.
Gamma's UMA fields are realistic: the singular ``umaResolutionStatus`` ("resolved"; a few
closed 1/0 markets only "proposed"/"disputed"), an often empty ``umaResolutionStatuses``
history, one near-1/0 and one 50/50 resolution.

Everything is derived from ``numpy.random.default_rng`` streams seeded from ``config.seed``, so
the same config gives the same bytes. Fills are generated per time slice (vectorised numpy,
bounded memory) and streamed, so scales of tens of millions of fills are fine.

Scale: ``scale=1`` gives about ``FILLS_PER_SCALE`` (10,000) order fills, ~400 markets and ~600
noise wallets. Fills grow linearly with scale; markets grow with ``sqrt(scale)`` (capped at
20,000) so large scales have many fills per market. ``scale=2000`` is ~20 million fills.

Volumes: ``generate_sample`` sets each market's Gamma ``volume`` to the exact USDC volume of
its generated matches counted once (taker-side rows only, docs/architecture.md §5);
``generate_markets`` alone has no fills and reports the expected value instead.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from polymkt_dagster.lib.sample.ctf import CTF_EVENTS_CSV_COLUMNS, CtfMarket, CtfPlanner

__all__ = [
    "CTF_EVENTS_CSV_COLUMNS",
    "CTF_EXCHANGE",
    "FILLS_PER_SCALE",
    "MARKETS_CSV_COLUMNS",
    "NEG_RISK_EXCHANGE",
    "ORDER_FILLED_COLUMNS",
    "ORDER_FILLED_SCHEMA",
    "TRADES_COLUMNS",
    "TRADES_SCHEMA",
    "SampleConfig",
    "SampleSummary",
    "count_order_fills",
    "generate_ctf_events",
    "generate_markets",
    "generate_sample",
    "iter_order_fill_batches",
    "iter_trade_batches",
]

# ---------------------------------------------------------------------------------------------
# Public constants
# ---------------------------------------------------------------------------------------------

#: Order fills (orderFilled rows) generated per unit of ``SampleConfig.scale``.
FILLS_PER_SCALE = 10_000

#: V1 exchange contracts: the ``taker`` of every taker-order row.
CTF_EXCHANGE = "0x4bfb41d5b3570defd03c39a9a4d8de6bd8b8982e"
NEG_RISK_EXCHANGE = "0xc5d563a36ae78145c45a50134d48a1215220f80a"

MARKETS_CSV_COLUMNS: tuple[str, ...] = (
    "createdAt",
    "id",
    "question",
    "answer1",
    "answer2",
    "neg_risk",
    "market_slug",
    "token1",
    "token2",
    "condition_id",
    "volume",
    "ticker",
    "closedTime",
)
ORDER_FILLED_COLUMNS: tuple[str, ...] = (
    "timestamp",
    "maker",
    "makerAssetId",
    "makerAmountFilled",
    "taker",
    "takerAssetId",
    "takerAmountFilled",
    "transactionHash",
)
TRADES_COLUMNS: tuple[str, ...] = (
    "timestamp",
    "market_id",
    "maker",
    "taker",
    "nonusdc_side",
    "maker_direction",
    "taker_direction",
    "price",
    "usd_amount",
    "token_amount",
    "transactionHash",
)
ORDER_FILLED_SCHEMA = pa.schema(
    [
        ("timestamp", pa.int64()),
        ("maker", pa.string()),
        ("makerAssetId", pa.string()),
        ("makerAmountFilled", pa.int64()),
        ("taker", pa.string()),
        ("takerAssetId", pa.string()),
        ("takerAmountFilled", pa.int64()),
        ("transactionHash", pa.string()),
    ]
)
TRADES_SCHEMA = pa.schema(
    [
        ("timestamp", pa.timestamp("s")),
        ("market_id", pa.string()),
        ("maker", pa.string()),
        ("taker", pa.string()),
        ("nonusdc_side", pa.string()),
        ("maker_direction", pa.string()),
        ("taker_direction", pa.string()),
        ("price", pa.float64()),
        ("usd_amount", pa.float64()),
        ("token_amount", pa.float64()),
        ("transactionHash", pa.string()),
    ]
)

# ---------------------------------------------------------------------------------------------
# Tunables
# ---------------------------------------------------------------------------------------------

_GRID = 65  # price-path grid points per market (piecewise linear in between)
_MAKERS_P = (0.5, 0.3, 0.2)  # P(1, 2, 3 maker orders per match)
_ROWS_PER_MATCH = 1.0 + sum((i + 1) * p for i, p in enumerate(_MAKERS_P))
_MATCHES_PER_SLICE = 40_000  # bounds memory: one time slice is generated at a time
_SHARP_COUNT = 5
_SHARP_MATCH_P = 0.08  # P(a match in an early window of a resolved market is a sharp buy)
_SHARP_WINDOW = 0.6  # sharp wallets buy in the first 60% of a market's life
_MIXED_CASE_P = 0.10
_SAMPLER_SIZE = 1 << 20  # resolution of the wallet-activity samplers
_GROUP_MARKET_SHARE = 1.0 / 3.0
_MAX_MARKETS = 20_000
_MIN_MARKETS = 60

_DEFAULT_START = datetime(2024, 1, 1, tzinfo=UTC)
_DEFAULT_END = datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC)


# ---------------------------------------------------------------------------------------------
# Config and summary
# ---------------------------------------------------------------------------------------------


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
        if _unix(self.end) - _unix(self.start) < 7 * 86_400:
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


@dataclass(frozen=True)
class SampleSummary:
    """Counts and paths of what ``generate_sample`` wrote."""

    out_dir: Path
    markets: int
    events: int
    election_groups: int
    order_fills: int
    trades: int
    matches: int
    ctf_events: int
    wallets: int
    sharp_wallets: list[str]
    markets_csv: Path
    markets_json: Path
    events_json: Path
    order_filled_csv: Path
    trades_csv: Path
    ctf_events_csv: Path


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _unix(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp())


def _dt(ts: int) -> datetime:
    return datetime.fromtimestamp(int(ts), UTC)


def _iso(ts: int) -> str:
    return _dt(ts).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pg_time(ts: int) -> str:
    return _dt(ts).strftime("%Y-%m-%d %H:%M:%S+00")


def _hex_rows(raw: np.ndarray) -> np.ndarray:
    """(n, k) uint8 bytes -> (n, 2 + 2k) uint8 ASCII ``0x...`` lowercase hex."""
    n, k = raw.shape
    out = np.empty((n, 2 + 2 * k), dtype=np.uint8)
    out[:, 0] = ord("0")
    out[:, 1] = ord("x")
    out[:, 2::2] = _HEX[raw >> 4]
    out[:, 3::2] = _HEX[raw & 15]
    return out


def _hex_str(rng: np.random.Generator, nbytes: int) -> str:
    return "0x" + rng.bytes(nbytes).hex()


def _slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower().replace("'", "").replace(".", ""))
    return slug.strip("-")


def _fmt_price(p: float, decimals: int = 3) -> str:
    s = f"{p:.{decimals}f}".rstrip("0").rstrip(".")
    return s if s else "0"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _brownian_bridges(rng: np.random.Generator, n: int) -> np.ndarray:
    """n standard Brownian bridges on the [0, 1] grid, shape (n, _GRID)."""
    steps = rng.normal(0.0, math.sqrt(1.0 / (_GRID - 1)), size=(n, _GRID - 1))
    w = np.zeros((n, _GRID))
    np.cumsum(steps, axis=1, out=w[:, 1:])
    tau = np.linspace(0.0, 1.0, _GRID)
    return w - tau[None, :] * w[:, -1:]


def _token_id(rng: np.random.Generator, seen: set[str]) -> str:
    """A uint256 ERC-1155 position id as a decimal string of 76-78 digits."""
    while True:
        value = int.from_bytes(rng.bytes(32), "big")
        text = str(value)
        if 76 <= len(text) <= 78 and text not in seen:
            seen.add(text)
            return text


# ---------------------------------------------------------------------------------------------
# Vocabulary for questions, events and tags
# ---------------------------------------------------------------------------------------------

# fmt: off
_FIRST = (
    "James", "Maria", "Robert", "Linda", "Michael", "Susan", "David", "Karen", "Daniel", "Nancy",
    "Carlos", "Elena", "Ahmed", "Priya", "Wei", "Olga", "Jane", "Tom", "Grace", "Samuel", "Aisha",
    "Lucas", "Sofia", "Ethan", "Hannah", "Omar", "Isabel", "Victor", "Naomi", "Felix", "Rosa",
    "Henry", "Clara", "Diego", "Irene", "Marcus", "Leah", "Pavel", "Yuki", "Tariq", "Amara",
    "Jonas", "Mei", "Rafael",
)
_LAST = (
    "Doe", "Smith", "Johnson", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez", "Hernandez",
    "Lopez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee",
    "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson",
    "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores",
    "Green", "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell", "Carter",
    "Roberts", "Kowalski", "Novak", "Okafor", "Mensah", "Tanaka", "Schmidt", "Rossi", "Dubois",
    "Silva", "Kim", "Patel", "Cohen", "Larsen", "Haddad", "Petrov", "Moreau", "Lindqvist",
)
_CITIES = (
    "Springfield", "Riverton", "Lakeside", "Fairview", "Greenville", "Madison", "Franklin",
    "Georgetown", "Salem", "Bristol", "Ashland", "Milton", "Dover", "Hudson", "Kingston",
    "Newport", "Oxford", "Burlington", "Austin", "Denver", "Seattle", "Boston", "Chicago",
    "Phoenix", "Portland", "Atlanta", "Nashville", "Detroit", "Miami", "Houston", "San Diego",
    "Dallas", "Baltimore", "Cleveland", "Pittsburgh", "Tampa", "Omaha", "Tucson", "Albuquerque",
    "Fresno",
)
_STATES = (
    "Alabama", "Alaska", "Arizona", "Arkansas", "California", "Colorado", "Connecticut",
    "Delaware", "Florida", "Georgia", "Hawaii", "Idaho", "Illinois", "Indiana", "Iowa", "Kansas",
    "Kentucky", "Louisiana", "Maine", "Maryland", "Massachusetts", "Michigan", "Minnesota",
    "Mississippi", "Missouri", "Montana", "Nebraska", "Nevada", "New Hampshire", "New Jersey",
    "New Mexico", "New York", "North Carolina", "North Dakota", "Ohio", "Oklahoma", "Oregon",
    "Pennsylvania", "Rhode Island", "South Carolina", "South Dakota", "Tennessee", "Texas", "Utah",
    "Vermont", "Virginia", "Washington", "West Virginia", "Wisconsin", "Wyoming",
)
_COUNTRIES = (
    "France", "Germany", "Brazil", "Mexico", "India", "Japan", "Canada", "Australia", "Poland",
    "Chile", "Argentina", "Kenya", "Nigeria", "South Korea", "Indonesia", "Turkey", "Portugal",
    "Spain", "Italy", "Netherlands", "Sweden", "Norway", "Romania", "Peru", "Colombia",
    "Philippines", "Ghana", "Ireland", "Austria", "Czechia",
)
_PARTIES = ("Democratic", "Republican")
_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)
_TEAMS = {
    "NBA": (
        "Lakers", "Celtics", "Warriors", "Bucks", "Nuggets", "Heat", "Knicks", "76ers", "Suns",
        "Mavericks", "Thunder", "Timberwolves", "Cavaliers", "Clippers", "Kings", "Pacers",
    ),
    "NFL": (
        "Chiefs", "Eagles", "49ers", "Bills", "Ravens", "Cowboys", "Lions", "Packers", "Dolphins",
        "Bengals", "Jets", "Steelers", "Texans", "Rams", "Vikings", "Broncos",
    ),
    "MLB": (
        "Yankees", "Dodgers", "Braves", "Astros", "Orioles", "Phillies", "Rangers", "Mets", "Cubs",
        "Red Sox", "Padres", "Mariners", "Guardians", "Twins", "Brewers", "Giants",
    ),
    "EPL": (
        "Arsenal", "Liverpool", "Chelsea", "Tottenham", "Newcastle", "Aston Villa", "Everton",
        "Brighton", "West Ham", "Fulham", "Brentford", "Wolves", "Crystal Palace", "Bournemouth",
    ),
}
_LEAGUE_FINAL = {"NBA": "NBA Finals", "NFL": "Super Bowl", "MLB": "World Series", "EPL": "EPL"}
_TOTALS = {"NBA": (205, 240), "NFL": (38, 52), "MLB": (7, 10), "EPL": (2, 4)}
_COINS = (
    ("BTC", "Bitcoin", 30_000, 110_000, 1000),
    ("ETH", "Ethereum", 1_500, 5_000, 100),
    ("SOL", "Solana", 60, 300, 10),
    ("XRP", "XRP", 0.3, 2.5, 0.1),
    ("DOGE", "Dogecoin", 0.05, 0.5, 0.01),
)
_TECH = (
    ("OpenAI", "release GPT-5"),
    ("Apple", "announce a foldable iPhone"),
    ("Google", "release Gemini 2"),
    ("Tesla", "launch a robotaxi service"),
    ("SpaceX", "land Starship on the Moon"),
    ("Nvidia", "become the world's largest company"),
    ("Meta", "release Llama 4"),
    ("Anthropic", "release a new Claude model"),
    ("Microsoft", "acquire a major gaming studio"),
    ("Amazon", "launch Project Kuiper service"),
)
_MOVIES = (
    "Dune: Part Two", "Inside Out 2", "Deadpool & Wolverine", "Wicked", "Moana 2", "Gladiator II",
    "Joker: Folie a Deux", "Furiosa", "Twisters", "Beetlejuice Beetlejuice", "Kung Fu Panda 4",
    "Venom 3",
)
_ARTISTS = (
    "Taylor Swift", "Beyonce", "Drake", "Rihanna", "Kendrick Lamar", "Adele", "Bad Bunny",
    "Billie Eilish", "The Weeknd", "Dua Lipa", "Frank Ocean", "Lady Gaga",
)
# fmt: on

_TAGS = {
    "Politics": "2",
    "Elections": "144",
    "US Politics": "1101",
    "World": "101970",
    "Crypto": "21",
    "Bitcoin": "235",
    "Ethereum": "39",
    "Sports": "1",
    "NBA": "745",
    "NFL": "450",
    "MLB": "100381",
    "EPL": "306",
    "Economics": "100328",
    "Fed": "100196",
    "Tech": "1401",
    "AI": "439",
    "Pop Culture": "596",
    "Movies": "53",
    "Music": "100203",
}


def _tag(label: str) -> dict[str, str]:
    return {"id": _TAGS[label], "label": label, "slug": _slugify(label)}


# ---------------------------------------------------------------------------------------------
# Universe: events and markets (small: at most _MAX_MARKETS markets)
# ---------------------------------------------------------------------------------------------


@dataclass
class _Market:
    question: str
    slug: str
    description: str
    outcomes: tuple[str, str]
    group_item_title: str | None
    event: int  # index into _Universe.events
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
class _Event:
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


@dataclass
class _Universe:
    config: SampleConfig
    t0: int
    t1: int  # inclusive
    events: list[_Event]
    markets: list[_Market]
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
    path: np.ndarray  # (n_markets, _GRID) price of token1 over tau in [0, 1]
    # per-token / wallet lookups
    tokens: pa.Array  # token1, token2 per market (2n), then "0"
    market_ids: pa.Array
    addresses: np.ndarray  # (2 * n_addr,) S42: lowercase rows, then mixed-case rows
    n_addr: int
    n_noise: int
    sharp_wallets: list[str]
    maker_table: np.ndarray  # inverse-CDF lookup tables: uniform int -> noise wallet index
    taker_table: np.ndarray
    converters: np.ndarray  # the busiest market makers: they make the neg-risk conversions
    n_slices: int
    slice_len: int


class _Namer:
    """Builds unique, realistic questions and event titles."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.questions: set[str] = set()
        self.titles: set[str] = set()
        self.slugs: set[str] = set()

    def pick(self, seq: Sequence[str]) -> str:
        return seq[int(self.rng.integers(len(seq)))]

    def person(self) -> str:
        return f"{self.pick(_FIRST)} {self.pick(_LAST)}"

    def unique_slug(self, text: str) -> str:
        base = _slugify(text)
        slug, k = base, 2
        while slug in self.slugs:
            slug, k = f"{base}-{k}", k + 1
        self.slugs.add(slug)
        return slug

    # ---- election groups -------------------------------------------------------------------

    def election(
        self, end: int, size: int
    ) -> tuple[str, str, list[tuple[str, str, str]], list[str]]:
        """(title, description, [(candidate, question, description)], tags)."""
        day = _dt(end)
        y = day.year
        date = f"{_MONTHS[day.month - 1]} {day.day}, {y}"
        for attempt in range(200):
            kind = int(self.rng.integers(7))
            if kind == 0:
                place = self.pick(_CITIES)
                title = f"{place} Mayoral Election {y}"
                race = f"the {y} {place} mayoral election"
                q = "Will {name} win " + race + "?"
                tags = ["Politics", "Elections", "US Politics"]
            elif kind == 1:
                place = self.pick(_STATES)
                title = f"{place} Governor Election {y}"
                race = f"the {y} {place} gubernatorial election"
                q = "Will {name} win " + race + "?"
                tags = ["Politics", "Elections", "US Politics"]
            elif kind == 2:
                place = self.pick(_STATES)
                title = f"{place} Senate Election {y}"
                race = f"the {y} {place} Senate race"
                q = "Will {name} win " + race + "?"
                tags = ["Politics", "Elections", "US Politics"]
            elif kind == 3:
                place = self.pick(_COUNTRIES)
                title = f"{place} Presidential Election {y}"
                race = f"the {y} {place} presidential election"
                q = "Will {name} win " + race + "?"
                tags = ["Politics", "Elections", "World"]
            elif kind == 4:
                place = self.pick(_COUNTRIES)
                title = f"Next Prime Minister of {place} after the {y} election?"
                race = f"the {y} {place} general election"
                q = (
                    "Will {name} be the next Prime Minister of "
                    + place
                    + f" after the {y} election?"
                )
                tags = ["Politics", "Elections", "World"]
            elif kind == 5:
                place = self.pick(_STATES)
                party = self.pick(_PARTIES)
                title = f"{place} {party} Gubernatorial Primary {y}"
                race = f"the {y} {place} {party} gubernatorial primary"
                q = "Will {name} win " + race + "?"
                tags = ["Politics", "Elections", "US Politics"]
            else:
                place = self.pick(_STATES)
                district = _ordinal(int(self.rng.integers(1, 30)))
                title = f"{place} {district} Congressional District Election {y}"
                race = f"the {y} election in {place}'s {district} congressional district"
                q = "Will {name} win " + race + "?"
                tags = ["Politics", "Elections", "US Politics"]
            if attempt >= 150:
                title = f"{title} (Special Election {attempt})"
            if title in self.titles:
                continue
            self.titles.add(title)
            names: list[str] = []
            while len(names) < size:
                name = self.person()
                if name not in names:
                    names.append(name)
            members = []
            for name in names:
                question = q.format(name=name)
                self.questions.add(question)
                desc = (
                    f"{race[0].upper()}{race[1:]} is scheduled to be decided by {date}. "
                    f'This market will resolve to "Yes" if {name} wins {race}. '
                    'Otherwise, this market will resolve to "No". The primary resolution '
                    "source will be official results from the relevant election authority; "
                    "a consensus of credible reporting may also be used."
                )
                members.append((name, question, desc))
            event_desc = (
                f"This event covers {race}, expected to be decided by {date}. Each market "
                "resolves Yes for the candidate who wins and No for every other candidate."
            )
            return title, event_desc, members, tags
        raise RuntimeError("could not find a unique election title")  # pragma: no cover

    # ---- single markets ----------------------------------------------------------------

    def single(self, category: str, end: int) -> tuple[str, str, tuple[str, str], list[str], float]:
        """(question, description, outcomes, tags, prior that outcome 1 wins)."""
        for attempt in range(200):
            q, desc, outcomes, tags, prior = self._single_once(category, end)
            if attempt >= 150:
                q = f"{q[:-1]} (#{attempt})?" if q.endswith("?") else f"{q} (#{attempt})"
            if q not in self.questions:
                self.questions.add(q)
                return q, desc, outcomes, tags, prior
        raise RuntimeError("could not find a unique question")  # pragma: no cover

    def _single_once(
        self, category: str, end: int
    ) -> tuple[str, str, tuple[str, str], list[str], float]:
        rng = self.rng
        day = _dt(end)
        y = day.year
        mon = _MONTHS[day.month - 1]
        short = f"{mon[:3]} {day.day}"
        full = f"{mon} {day.day}, {y}"
        yes_no = ("Yes", "No")
        std = (
            'This market will resolve to "Yes" if {cond}. Otherwise, this market will resolve '
            'to "No". The resolution source will be {src}.'
        )
        if category == "Politics":
            k = int(rng.integers(6))
            person = self.person()
            if k == 0:
                state = self.pick(_STATES)
                q = f"Will {person} announce a run for {state} governor by {full}?"
                cond = f"{person} publicly announces a campaign for governor of {state} by {full}"
                src, tags = "official campaign statements and credible reporting", ["US Politics"]
            elif k == 1:
                q = f"Will the U.S. government shut down before {full}?"
                cond = f"a lapse in U.S. federal appropriations begins before {full}"
                src, tags = "the U.S. Office of Management and Budget", ["US Politics"]
            elif k == 2:
                country = self.pick(_COUNTRIES)
                q = f"Will {country} call a snap election before {mon} {y}?"
                cond = (
                    f"a snap national election is officially called in {country} before {mon} {y}"
                )
                src, tags = "official government announcements", ["World"]
            elif k == 3:
                country = self.pick(_COUNTRIES)
                q = f"Will {person} resign as {country}'s finance minister by {full}?"
                cond = (
                    f"{person} announces a resignation as finance minister of {country} by {full}"
                )
                src, tags = "official government announcements", ["World"]
            elif k == 4:
                n = int(rng.integers(45, 60))
                q = f"Will the Senate confirm {person} with {n} or more votes by {full}?"
                cond = f"the U.S. Senate confirms {person} with at least {n} votes by {full}"
                src, tags = "the U.S. Senate roll call record", ["US Politics"]
            else:
                pct = int(rng.integers(38, 52))
                q = f"Will the President's approval rating be above {pct}% on {full}?"
                cond = f"the RealClearPolitics approval average is above {pct}% on {full}"
                src, tags = "RealClearPolitics", ["US Politics"]
            return q, std.format(cond=cond, src=src), yes_no, ["Politics", *tags], 0.35
        if category == "Crypto":
            sym, name, lo, hi, step = _COINS[int(rng.integers(len(_COINS)))]
            level = round(float(rng.uniform(lo, hi)) / step) * step
            if level >= 1000:
                lv = f"${level / 1000:g}k" if level % 1000 == 0 else f"${level:,.0f}"
            else:
                lv = f"${level:g}"
            k = int(rng.integers(4))
            if k == 0:
                q = f"Will {sym} close above {lv} on {short}?"
                cond = (
                    f"the {sym}/USDT Binance 1-minute candle for 12:00 ET on {full} "
                    f"closes above {lv}"
                )
            elif k == 1:
                q = f"Will {name} hit {lv} by {full}?"
                cond = (
                    f"any Binance {sym}/USDT 1-minute candle has a high of {lv} or more by {full}"
                )
            elif k == 2:
                q = f"{name} above {lv} on {mon} {day.day}?"
                cond = f"the {sym}/USDT close at 12:00 ET on {full} is above {lv}"
            else:
                q = f"Will {name} dip to {lv} in {mon} {y}?"
                cond = (
                    f"any Binance {sym}/USDT 1-minute candle in {mon} {y} has a low of {lv} or less"
                )
            extra = ["Bitcoin"] if sym == "BTC" else (["Ethereum"] if sym == "ETH" else [])
            desc = std.format(cond=cond, src="Binance")
            return q, desc, yes_no, ["Crypto", *extra], 0.4
        if category == "Economics":
            k = int(rng.integers(5))
            if k == 0:
                q = f"Fed rate cut in {mon} {y}?"
                cond = f"the FOMC lowers the federal funds target range at its {mon} {y} meeting"
                src, tags = "the Federal Reserve", ["Fed"]
            elif k == 1:
                x = round(float(rng.uniform(2.0, 4.0)), 1)
                q = f"Will US CPI inflation be above {x}% in {mon} {y}?"
                cond = f"the year-over-year CPI for {mon} {y} reported by the BLS is above {x}%"
                src, tags = "the U.S. Bureau of Labor Statistics", []
            elif k == 2:
                x = round(float(rng.uniform(3.5, 4.6)), 1)
                q = f"Will the US unemployment rate be {x}% or higher in {mon} {y}?"
                cond = f"the BLS unemployment rate for {mon} {y} is {x}% or higher"
                src, tags = "the U.S. Bureau of Labor Statistics", []
            elif k == 3:
                q = f"Will the ECB cut rates in {mon} {y}?"
                cond = f"the European Central Bank lowers its deposit rate in {mon} {y}"
                src, tags = "the European Central Bank", ["Fed"]
            else:
                quarter = (day.month - 1) // 3 + 1
                x = round(float(rng.uniform(0.5, 3.5)), 1)
                q = f"Will US GDP growth in Q{quarter} {y} be above {x}%?"
                cond = (
                    "the advance estimate of annualised US real GDP growth for "
                    f"Q{quarter} {y} is above {x}%"
                )
                src, tags = "the U.S. Bureau of Economic Analysis", []
            return q, std.format(cond=cond, src=src), yes_no, ["Economics", *tags], 0.4
        if category == "Sports":
            league = ("NBA", "NFL", "MLB", "EPL")[int(rng.integers(4))]
            teams = _TEAMS[league]
            i, j = rng.choice(len(teams), size=2, replace=False)
            a, b = teams[int(i)], teams[int(j)]
            k = int(rng.integers(3))
            if k == 0:
                q = f"Will the {a} win the {y} {_LEAGUE_FINAL[league]}?"
                desc = std.format(
                    cond=f"the {a} win the {y} {_LEAGUE_FINAL[league]}",
                    src=f"the official {league} website",
                )
                return q, desc, yes_no, ["Sports", league], 0.15
            if k == 1:
                q = f"{league}: {a} vs. {b} ({short}, {y})"
                desc = (
                    f"This market refers to the {league} game between the {a} and the {b} "
                    f"scheduled for {full}. It resolves to the winning team; if the game is "
                    "cancelled or ends in a draw it resolves 50-50."
                )
                return q, desc, (a, b), ["Sports", league], 0.5
            lo, hi = _TOTALS[league]
            line = int(rng.integers(lo, hi)) + 0.5
            q = f"{league}: {a} vs. {b} O/U {line} ({short}, {y})"
            desc = (
                f"This market refers to the {league} game between the {a} and the {b} on "
                f'{full}. It resolves to "Over" if the combined final score is greater than '
                f'{line}, otherwise "Under".'
            )
            return q, desc, ("Over", "Under"), ["Sports", league], 0.5
        if category == "Tech":
            company, act = _TECH[int(rng.integers(len(_TECH)))]
            q = f"Will {company} {act} by {full}?"
            desc = std.format(cond=f"{company} officially does so by {full}", src=f"{company}")
            return q, desc, yes_no, ["Tech", "AI"], 0.3
        # Pop Culture
        if rng.random() < 0.5:
            movie = self.pick(_MOVIES)
            n = int(rng.integers(4, 30)) * 5
            q = f"Will '{movie}' gross over ${n}M on its opening weekend ({y})?"
            desc = std.format(
                cond=f"'{movie}' earns more than ${n} million in its domestic opening weekend",
                src="Box Office Mojo",
            )
            return q, desc, yes_no, ["Pop Culture", "Movies"], 0.45
        artist = self.pick(_ARTISTS)
        q = f"Will {artist} release a new album before {full}?"
        desc = std.format(cond=f"{artist} releases a new studio album before {full}", src="Spotify")
        return q, desc, yes_no, ["Pop Culture", "Music"], 0.3


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
    markets: list[_Market], events: list[_Event], expected: np.ndarray, rng: np.random.Generator
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


def _build_universe(config: SampleConfig) -> _Universe:
    rng = np.random.default_rng([config.seed, 0])
    namer = _Namer(rng)
    t0, t1 = _unix(config.start), _unix(config.end)
    span = t1 - t0
    n_target = config.n_markets
    n_group_target = round(n_target * _GROUP_MARKET_SHARE)

    events: list[_Event] = []
    markets: list[_Market] = []
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
        ev = _Event(
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
                _Market(
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
        ev = _Event(
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
            _Market(
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
    path = np.empty((n, _GRID))
    tau = np.linspace(0.0, 1.0, _GRID)
    singles = [i for i, m in enumerate(markets) if not events[m.event].neg_risk]
    if singles:
        s = np.array(singles)
        k = len(s)
        bias = np.array([markets[i].yes_bias for i in singles])
        win = np.array([markets[i].winner for i in singles])
        kinds = [markets[i].kind for i in singles]
        informed = np.where(win == 0, 0.7, np.where(win == 1, -0.7, 0.0))
        x0 = np.log(bias / (1 - bias)) + rng.normal(0.0, 1.1, k) + informed
        xt = np.where(win == 0, 5.0, -5.0)
        last = np.clip(rng.normal(0.0, 2.5, k), -5.3, 5.3)  # closed_price: the stale last price
        for j, kind in enumerate(kinds):
            if kind in ("closed_price", "closed_zero"):
                xt[j] = last[j]
        shape = rng.uniform(1.5, 5.0, k)
        sigma = rng.uniform(0.4, 1.2, k)
        x = (
            x0[:, None]
            + (xt - x0)[:, None] * tau[None, :] ** shape[:, None]
            + sigma[:, None] * _brownian_bridges(rng, k)
        )
        path[s] = _sigmoid(x)
    for ev in events:
        if not ev.neg_risk:
            continue
        idx = np.array(ev.markets)
        k = len(idx)
        win = np.array([markets[i].winner for i in ev.markets])
        z0 = rng.normal(0.0, 1.4, k) + np.where(win == 0, 0.8, 0.0)
        zt = np.where(win == 0, 6.0, 0.0)
        shape = float(rng.uniform(1.5, 4.0))
        sigma = rng.uniform(0.5, 1.0, k)
        z = z0[:, None] + (zt - z0)[:, None] * tau[None, :] ** shape
        z = z + sigma[:, None] * _brownian_bridges(rng, k)
        z = z - z.max(axis=0, keepdims=True)
        ez = np.exp(z)
        path[idx] = ez / ez.sum(axis=0, keepdims=True)

    start = np.array([m.start for m in markets], dtype=np.int64)
    end = np.array([m.end for m in markets], dtype=np.int64)
    trade_end = np.maximum(np.minimum(end, t1), start + 3600)
    tau_end = np.clip((trade_end - start) / (end - start), 0.0, 1.0)

    def price_at(i: int, t: float) -> float:
        return float(np.interp(t, tau, path[i]))

    for i, m in enumerate(markets):
        if m.kind == "resolved":
            m.outcome_prices = ("1", "0") if m.winner == 0 else ("0", "1")
            m.uma_statuses = ("proposed", "resolved")
        elif m.kind == "closed_zero":
            m.outcome_prices = ("0", "0")
        else:
            p = price_at(i, float(tau_end[i]))
            decimals = 4 if m.kind == "closed_price" else 3
            lo = 10.0**-decimals
            p = round(min(max(p, lo), 1 - lo), decimals)
            m.outcome_prices = (_fmt_price(p, decimals), _fmt_price(1 - p, decimals))
        m.liquidity = 0.0 if m.closed else round(float(rng.lognormal(math.log(8_000), 1.2)), 5)
        last_touch = m.closed_time if m.closed_time is not None else int(trade_end[i])
        m.updated = min(t1, last_touch + int(rng.integers(60, 86_400)))

    # --- activity: expected matches per market ---------------------------------------------
    total_matches = config.target_fills / _ROWS_PER_MATCH
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

    # --- wallets -----------------------------------------------------------------------------
    n_noise = config.n_noise_wallets
    w_rng = np.random.default_rng([config.seed, 3])
    n_addr = n_noise + _SHARP_COUNT + 2
    raw = w_rng.integers(0, 256, size=(n_addr, 20), dtype=np.uint8)
    lower = _hex_rows(raw)
    for row, plain in enumerate((CTF_EXCHANGE, NEG_RISK_EXCHANGE), start=n_noise + _SHARP_COUNT):
        lower[row] = np.frombuffer(plain.encode(), dtype=np.uint8)
    # mixed case: EIP-55-like random upper-casing of the hex letters (not a real checksum)
    is_letter = lower >= ord("a")
    is_letter[:, :2] = False
    flip = is_letter & (w_rng.random(lower.shape) < 0.5)
    mixed = np.where(flip, lower - 32, lower).astype(np.uint8)
    addresses = np.ascontiguousarray(np.concatenate([lower, mixed])).view("S42").ravel()
    sharp_wallets = [lower[n_noise + i].tobytes().decode() for i in range(_SHARP_COUNT)]
    # takers: Zipf-like activity; makers: a few market makers carry most of the book
    ranks = np.arange(1, n_noise + 1, dtype=np.float64)
    taker_w = w_rng.permutation(1.0 / (ranks + 5.0) ** 1.05)
    maker_w = w_rng.permutation(1.0 / (ranks + 1.0) ** 1.4)
    quantiles = (np.arange(_SAMPLER_SIZE) + 0.5) / _SAMPLER_SIZE
    taker_table = np.minimum(
        np.searchsorted(np.cumsum(taker_w) / taker_w.sum(), quantiles), n_noise - 1
    ).astype(np.int32)
    maker_table = np.minimum(
        np.searchsorted(np.cumsum(maker_w) / maker_w.sum(), quantiles), n_noise - 1
    ).astype(np.int32)

    tokens = pa.array([t for m in markets for t in (m.token1, m.token2)] + ["0"], type=pa.string())
    market_ids = pa.array([m.id for m in markets], type=pa.string())
    n_slices = max(1, math.ceil(total_matches / _MATCHES_PER_SLICE))
    slice_len = math.ceil((span + 1) / n_slices)

    return _Universe(
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
        addresses=addresses,
        n_addr=n_addr,
        n_noise=n_noise,
        sharp_wallets=sharp_wallets,
        maker_table=maker_table,
        taker_table=taker_table,
        converters=np.argsort(-maker_w, kind="stable")[:20],
        n_slices=n_slices,
        slice_len=slice_len,
    )


# ---------------------------------------------------------------------------------------------
# Fills: one time slice at a time
# ---------------------------------------------------------------------------------------------


@dataclass
class _Slice:
    fills: pa.RecordBatch | None  # ORDER_FILLED_SCHEMA (unless for_csv)
    trades: pa.RecordBatch | None  # TRADES_SCHEMA (unless for_csv)
    matches: int
    market_volume: np.ndarray  # raw micro-USDC per market, taker-side rows only
    # own-fill balance changes (time, wallet index, token index, signed raw shares) or None
    positions: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None


def _slice_counts(u: _Universe, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Matches per market in slice k, makers per match, and the slice's CDF bounds."""
    rng = np.random.default_rng([u.config.seed, 1, k])
    lo_t = u.t0 + k * u.slice_len
    hi_t = min(u.t1, lo_t + u.slice_len - 1)
    a = np.maximum(u.start, lo_t)
    b = np.minimum(u.trade_end, hi_t)
    active = b >= a
    length = (u.trade_end - u.start + 1).astype(np.float64)
    sa = np.clip((a - u.start) / length, 0.0, 1.0)
    sb = np.clip((b + 1 - u.start) / length, 0.0, 1.0)
    fa = sa**u.alpha
    fb = sb**u.alpha
    lam = np.where(active, u.expected_matches * (fb - fa), 0.0)
    counts = rng.poisson(lam)
    n = int(counts.sum())
    makers = rng.choice(len(_MAKERS_P), size=n, p=_MAKERS_P).astype(np.int64) + 1
    return counts, makers, fa, fb


def _slice_rows(u: _Universe, k: int) -> int:
    counts, makers, _, _ = _slice_counts(u, k)
    return int(counts.sum() + makers.sum())


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """Non-negative ints -> (n, width) uint8 ASCII, zero-padded on the left."""
    out = np.empty((len(values), width), dtype=np.uint8)
    v = values.astype(np.int64, copy=True)
    for j in range(width - 1, -1, -1):
        v, r = np.divmod(v, 10)
        out[:, j] = r + 48
    return out


def _datetime_text(ts: np.ndarray) -> np.ndarray:
    """Unix seconds -> (n,) S19 ``YYYY-MM-DD HH:MM:SS`` (UTC), vectorised civil-from-days."""
    days, secs = np.divmod(ts.astype(np.int64), 86_400)
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2)
    out = np.empty((len(ts), 19), dtype=np.uint8)
    out[:, 0:4] = _digits(year, 4)
    out[:, 5:7] = _digits(month, 2)
    out[:, 8:10] = _digits(day, 2)
    out[:, 11:13] = _digits(secs // 3600, 2)
    out[:, 14:16] = _digits(secs // 60 % 60, 2)
    out[:, 17:19] = _digits(secs % 60, 2)
    out[:, 4] = out[:, 7] = ord("-")
    out[:, 10] = ord(" ")
    out[:, 13] = out[:, 16] = ord(":")
    return out.view("S19").ravel()


def _strings(fixed: np.ndarray) -> pa.Array:
    """(n,) fixed-width bytes (``S<w>``) -> pyarrow string array, one copy-free wrap."""
    n = len(fixed)
    width = fixed.dtype.itemsize
    offsets = np.arange(n + 1, dtype=np.int32) * np.int32(width)
    data = np.ascontiguousarray(fixed)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


_DIRECTIONS = pa.array(["SELL", "BUY"], type=pa.string())
_SIDES = pa.array(["token1", "token2"], type=pa.string())


def _generate_slice(
    u: _Universe,
    k: int,
    *,
    fills: bool = True,
    trades: bool = True,
    for_csv: bool = False,
    positions: bool = False,
) -> _Slice:
    """The rows of time slice k.

    ``for_csv`` builds batches that are cheaper to write as CSV and give the same text:
    dictionary-encoded string columns and the trades' timestamp pre-rendered as text.
    ``positions`` also returns each row's balance change for its ``maker`` (the wallet a fill
    row belongs to, docs/architecture.md §4).
    """
    counts, n_makers, fa, fb = _slice_counts(u, k)
    rng = np.random.default_rng([u.config.seed, 2, k])
    n = int(counts.sum())
    n_m = len(u.markets)
    if n == 0:
        none = np.zeros(0, np.int64)
        return _Slice(
            fills=pa.RecordBatch.from_pylist([], schema=ORDER_FILLED_SCHEMA) if fills else None,
            trades=pa.RecordBatch.from_pylist([], schema=TRADES_SCHEMA) if trades else None,
            matches=0,
            market_volume=np.zeros(n_m),
            positions=(none, none, none, none) if positions else None,
        )

    # --- matches: market, time, price ---------------------------------------------------------
    mkt = np.repeat(np.arange(n_m), counts)
    lo_t = u.t0 + k * u.slice_len
    hi_t = min(u.t1, lo_t + u.slice_len - 1)
    v = fa[mkt] + rng.random(n) * (fb[mkt] - fa[mkt])
    s = v ** (1.0 / u.alpha[mkt])
    length = u.trade_end[mkt] - u.start[mkt] + 1
    t = u.start[mkt] + np.floor(s * length).astype(np.int64)
    t = np.clip(t, np.maximum(u.start[mkt], lo_t), np.minimum(u.trade_end[mkt], hi_t))
    order = np.argsort(t, kind="stable")
    mkt, t, n_makers = mkt[order], t[order], n_makers[order]

    tau = (t - u.start[mkt]) / (u.end[mkt] - u.start[mkt])
    x = np.clip(tau, 0.0, 1.0) * (_GRID - 1)
    i0 = np.minimum(x.astype(np.int64), _GRID - 2)
    f = x - i0
    p1 = u.path[mkt, i0] * (1.0 - f) + u.path[mkt, i0 + 1] * f

    # sharp wallets: buy the eventual winner early in resolved markets, as takers
    sharp = (rng.random(n) < _SHARP_MATCH_P) & u.resolved[mkt] & (tau < _SHARP_WINDOW)
    side = np.where(sharp, u.win_side[mkt], rng.random(n) < 0.4).astype(np.int64)
    taker_buys = sharp | (rng.random(n) < 0.52)
    p_tok = np.where(side == 0, p1, 1.0 - p1)
    taker = np.where(
        sharp,
        u.n_noise + rng.integers(0, _SHARP_COUNT, n),
        u.taker_table[rng.integers(0, _SAMPLER_SIZE, n)],
    )
    mid_cents = p_tok * 100.0 + rng.normal(0.0, 0.6, n)

    # --- maker orders: the taker sweeps 1-3 price levels ------------------------------------
    n_mk = int(n_makers.sum())
    mk_match = np.repeat(np.arange(n), n_makers)
    first_mk = np.cumsum(n_makers) - n_makers
    level = np.arange(n_mk) - first_mk[mk_match]
    sweep = np.where(taker_buys[mk_match], level, -level)
    cents = np.clip(np.rint(mid_cents[mk_match] + sweep), 1, 99).astype(np.int64)
    size_mu = np.where(sharp[mk_match], math.log(30_000.0), math.log(5_000.0))
    shares_c = np.clip(np.rint(np.exp(rng.normal(size_mu, 1.3))), 100, 20_000_000).astype(
        np.int64
    )  # hundredths of a share
    mk_shares = shares_c * 10_000
    mk_usdc = shares_c * cents * 100
    maker = u.maker_table[rng.integers(0, _SAMPLER_SIZE, n_mk)].astype(np.int64)
    maker = np.where(maker == taker[mk_match], (maker + 1) % u.n_noise, maker)
    tk_shares = np.add.reduceat(mk_shares, first_mk)
    tk_usdc = np.add.reduceat(mk_usdc, first_mk)

    # --- rows: the maker rows of a match, then its taker row ----------------------------------
    rows_per = n_makers + 1
    n_rows = n + n_mk
    first_row = np.cumsum(rows_per) - rows_per
    mk_pos = first_row[mk_match] + level
    tk_pos = first_row + n_makers
    row_match = np.repeat(np.arange(n), rows_per)

    maker_addr = np.empty(n_rows, dtype=np.int64)
    taker_addr = np.empty(n_rows, dtype=np.int64)
    shares = np.empty(n_rows, dtype=np.int64)
    usdc = np.empty(n_rows, dtype=np.int64)
    maker_buys = np.empty(n_rows, dtype=bool)
    maker_addr[mk_pos] = maker
    taker_addr[mk_pos] = taker[mk_match]
    maker_addr[tk_pos] = taker
    taker_addr[tk_pos] = u.n_noise + _SHARP_COUNT + u.neg_risk[mkt]  # the exchange
    shares[mk_pos] = mk_shares
    usdc[mk_pos] = mk_usdc
    shares[tk_pos] = tk_shares
    usdc[tk_pos] = tk_usdc
    maker_buys[mk_pos] = ~taker_buys[mk_match]
    maker_buys[tk_pos] = taker_buys

    r_mkt = mkt[row_match]
    r_side = side[row_match]
    tx = _hex_rows(rng.integers(0, 256, size=(n, 32), dtype=np.uint8)).view("S66").ravel()
    tx_rows = _strings(tx[row_match])
    mixed_maker = rng.random(n_rows) < _MIXED_CASE_P
    mixed_taker = rng.random(n_rows) < _MIXED_CASE_P

    def lookup(dictionary: pa.Array, index: np.ndarray) -> pa.Array:
        # CSV: dictionary-encoded (no copy; the CSV text is the same); else plain strings
        if for_csv:
            return pa.DictionaryArray.from_arrays(pa.array(index.astype(np.int32)), dictionary)
        return dictionary.take(pa.array(index))

    fills_batch = trades_batch = None
    if fills:
        token = 2 * r_mkt + r_side
        usdc_id = 2 * n_m
        maker_asset = np.where(maker_buys, usdc_id, token)
        taker_asset = np.where(maker_buys, token, usdc_id)
        fills_batch = pa.RecordBatch.from_arrays(
            [
                pa.array(t[row_match]),
                _strings(u.addresses[maker_addr + u.n_addr * mixed_maker]),
                lookup(u.tokens, maker_asset),
                pa.array(np.where(maker_buys, usdc, shares)),
                _strings(u.addresses[taker_addr + u.n_addr * mixed_taker]),
                lookup(u.tokens, taker_asset),
                pa.array(np.where(maker_buys, shares, usdc)),
                tx_rows,
            ],
            names=list(ORDER_FILLED_COLUMNS),
        )
    if trades:
        usd_amount = usdc / 1e6
        token_amount = shares / 1e6
        if for_csv:
            ts_col = _strings(_datetime_text(t)[row_match])
        else:
            ts_col = pa.array(t[row_match]).cast(pa.timestamp("s"))
        trades_batch = pa.RecordBatch.from_arrays(
            [
                ts_col,
                lookup(u.market_ids, r_mkt),
                _strings(u.addresses[maker_addr]),
                _strings(u.addresses[taker_addr]),
                lookup(_SIDES, r_side),
                lookup(_DIRECTIONS, maker_buys.view(np.int8)),
                lookup(_DIRECTIONS, (~maker_buys).view(np.int8)),
                pa.array(usd_amount / token_amount),
                pa.array(usd_amount),
                pa.array(token_amount),
                tx_rows,
            ],
            names=list(TRADES_COLUMNS),
        )
    # raw micro-USDC: exact in float64 up to 9e15 (9 billion USDC per market)
    volume = np.bincount(mkt, weights=tk_usdc, minlength=n_m)
    changes = None
    if positions:
        changes = (
            t[row_match],
            maker_addr,
            2 * r_mkt + r_side,
            np.where(maker_buys, shares, -shares),
        )
    return _Slice(
        fills=fills_batch,
        trades=trades_batch,
        matches=n,
        market_volume=volume,
        positions=changes,
    )


def _iter_slices(u: _Universe, *, fills: bool = True, trades: bool = True) -> Iterator[_Slice]:
    for k in range(u.n_slices):
        yield _generate_slice(u, k, fills=fills, trades=trades)


def _rebatch(batches: Iterator[pa.RecordBatch], chunk_rows: int) -> Iterator[pa.RecordBatch]:
    """Re-cut a stream of batches into batches of exactly chunk_rows rows (last one shorter)."""
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be >= 1")
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        held += batch.num_rows
        if held < chunk_rows:
            continue
        merged = pa.concat_batches(pending)
        offset = 0
        while merged.num_rows - offset >= chunk_rows:
            yield merged.slice(offset, chunk_rows)
            offset += chunk_rows
        rest = merged.slice(offset)
        pending = [rest] if rest.num_rows else []
        held = rest.num_rows
    if held:
        yield pa.concat_batches(pending)


def iter_order_fill_batches(
    config: SampleConfig, chunk_rows: int = 1_000_000
) -> Iterator[pa.RecordBatch]:
    """Stream the sample's orderFilled rows (timestamp order) in batches of ``chunk_rows``.

    Columns as poly_data's orderFilled.csv (``ORDER_FILLED_SCHEMA``): strings, except
    ``timestamp`` (int64 unix seconds) and the two amounts (int64, 6 decimals). The rows do
    not depend on ``chunk_rows``; memory stays bounded by ``chunk_rows`` plus one time slice.
    """
    u = _build_universe(config)
    slices = _iter_slices(u, trades=False)
    yield from _rebatch((s.fills for s in slices if s.fills is not None), chunk_rows)


def iter_trade_batches(
    config: SampleConfig, chunk_rows: int = 1_000_000
) -> Iterator[pa.RecordBatch]:
    """Like ``iter_order_fill_batches`` but poly_data's processed trades (``TRADES_SCHEMA``),
    one row per orderFilled row in the same order; ``timestamp`` is ``timestamp[s]`` (UTC)."""
    u = _build_universe(config)
    slices = _iter_slices(u, fills=False)
    yield from _rebatch((s.trades for s in slices if s.trades is not None), chunk_rows)


def _ctf_planner(u: _Universe) -> CtfPlanner:
    markets = [
        CtfMarket(
            condition_id=m.condition_id,
            question_id=m.question_id,
            neg_risk_market_id=u.events[m.event].neg_risk_market_id,
            created=m.created,
            trade_start=int(u.start[i]),
            trade_end=int(u.trade_end[i]),
            resolved_at=m.resolved_at,
            payout=m.payout,
        )
        for i, m in enumerate(u.markets)
    ]
    groups = [ev.markets for ev in u.events if ev.neg_risk]  # market ids ascend: question order
    wallets = [a.decode() for a in u.addresses[: u.n_noise + _SHARP_COUNT]]
    return CtfPlanner(
        markets, groups, wallets, seed=u.config.seed, t_end=u.t1, converters=u.converters
    )


def generate_ctf_events(config: SampleConfig) -> pa.Table:
    """The sample's Conditional Tokens position events (``ctfEvents.csv``'s rows and columns,
    ``CTF_EVENTS_CSV_COLUMNS``), without writing the fills; see ``sample_ctf``."""
    u = _build_universe(config)
    planner = _ctf_planner(u)
    for k in range(u.n_slices):
        sl = _generate_slice(u, k, fills=False, trades=False, positions=True)
        assert sl.positions is not None
        planner.add_fills(*sl.positions)
    return planner.finish()


def count_order_fills(config: SampleConfig) -> int:
    """The exact number of orderFilled rows ``config`` produces, without generating them."""
    u = _build_universe(config)
    return sum(_slice_rows(u, k) for k in range(u.n_slices))


# ---------------------------------------------------------------------------------------------
# Gamma-shaped dicts and markets.csv rows
# ---------------------------------------------------------------------------------------------


def _volume_number(v: float) -> float:
    return round(float(v), 6)


def _gamma_dicts(
    u: _Universe, volumes: np.ndarray
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    markets_out: list[dict[str, object]] = []
    for i, m in enumerate(u.markets):
        ev = u.events[m.event]
        vol = _volume_number(volumes[i])
        event_ref: dict[str, object] = {
            "id": ev.id,
            "ticker": ev.slug,
            "slug": ev.slug,
            "title": ev.title,
            "negRisk": ev.neg_risk,
        }
        if ev.neg_risk_market_id:
            event_ref["negRiskMarketID"] = ev.neg_risk_market_id
        d: dict[str, object] = {
            "id": m.id,
            "question": m.question,
            "conditionId": m.condition_id,
            "slug": m.slug,
            "resolutionSource": "",
            "endDate": _iso(m.end),
            "category": ev.category,
            "liquidity": repr(m.liquidity),
            "startDate": _iso(m.start),
            "description": m.description,
            "outcomes": json.dumps(list(m.outcomes)),
            "outcomePrices": json.dumps(list(m.outcome_prices)),
            "volume": repr(vol),
            "active": True,
            "closed": m.closed,
            "createdAt": _iso(m.created),
            "updatedAt": _iso(m.updated),
        }
        if m.closed_time is not None and m.closed:
            d["closedTime"] = _pg_time(m.closed_time)
        d["archived"] = False
        if m.group_item_title is not None:
            d["groupItemTitle"] = m.group_item_title
        d["questionID"] = m.question_id
        if m.uma_status is not None:
            d["umaResolutionStatus"] = m.uma_status
        d.update(
            {
                "enableOrderBook": True,
                "orderPriceMinTickSize": 0.01,
                "orderMinSize": 5,
                "volumeNum": vol,
                "liquidityNum": m.liquidity,
                "endDateIso": _dt(m.end).strftime("%Y-%m-%d"),
                "startDateIso": _dt(m.start).strftime("%Y-%m-%d"),
                "clobTokenIds": json.dumps([m.token1, m.token2]),
                "acceptingOrders": not m.closed,
                "negRisk": ev.neg_risk,
            }
        )
        if ev.neg_risk_market_id:
            d["negRiskMarketID"] = ev.neg_risk_market_id
        d["umaResolutionStatuses"] = json.dumps(list(m.uma_statuses))
        d["events"] = [event_ref]
        markets_out.append(d)

    events_out: list[dict[str, object]] = []
    for ev in u.events:
        members = [u.markets[i] for i in ev.markets]
        e: dict[str, object] = {
            "id": ev.id,
            "ticker": ev.slug,
            "slug": ev.slug,
            "title": ev.title,
            "description": ev.description,
            "category": ev.category,
            "startDate": _iso(ev.start),
            "creationDate": _iso(ev.created),
            "endDate": _iso(ev.end),
            "active": True,
            "closed": all(m.closed for m in members),
            "archived": False,
            "liquidity": round(sum(m.liquidity for m in members), 5),
            "volume": _volume_number(sum(volumes[i] for i in ev.markets)),
            "createdAt": _iso(ev.created),
            "updatedAt": _iso(max(m.updated for m in members)),
            "enableOrderBook": True,
            "negRisk": ev.neg_risk,
        }
        if ev.neg_risk_market_id:
            e["negRiskMarketID"] = ev.neg_risk_market_id
        e["tags"] = [_tag(label) for label in ev.tags]
        e["markets"] = [{"id": u.markets[i].id} for i in ev.markets]
        events_out.append(e)
    return markets_out, events_out


def _markets_csv_rows(u: _Universe, volumes: np.ndarray) -> list[list[str]]:
    rows = []
    for i, m in enumerate(u.markets):
        ev = u.events[m.event]
        rows.append(
            [
                _iso(m.created),
                m.id,
                m.question,
                m.outcomes[0],
                m.outcomes[1],
                str(ev.neg_risk),
                m.slug,
                m.token1,
                m.token2,
                m.condition_id,
                repr(_volume_number(volumes[i])),
                ev.slug,
                _pg_time(m.closed_time) if m.closed and m.closed_time is not None else "",
            ]
        )
    return rows


def _expected_volumes(u: _Universe) -> np.ndarray:
    """Expected USDC volume per market (used when no fills were generated)."""
    mean_makers = sum((i + 1) * p for i, p in enumerate(_MAKERS_P))
    mean_shares = 50.0 * math.exp(1.3**2 / 2)
    mean_price = u.path.mean(axis=1) * 0.5 + 0.25
    return u.expected_matches * mean_makers * mean_shares * mean_price


def generate_markets(
    config: SampleConfig,
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """Gamma-shaped market dicts and event dicts of the sample (no fills generated).

    ``volume`` here is the expected value; ``generate_sample`` writes the exact volume of the
    generated fills instead.
    """
    u = _build_universe(config)
    return _gamma_dicts(u, _expected_volumes(u))


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def _csv_header(columns: Sequence[str]) -> bytes:
    return (",".join(columns) + "\n").encode()


def generate_sample(
    out_dir: Path,
    config: SampleConfig = SampleConfig(),
    progress: Callable[[int, int], None] | None = None,
    *,
    ctf_events: bool = True,
) -> SampleSummary:
    """Write markets.csv, markets.json, events.json, orderFilled.csv, trades.csv and
    ctfEvents.csv.

    The position events number about one per fill (the generated wallets spread their trading
    over many markets, and each wallet that sells in a market needs its own inventory there);
    ``ctf_events=False`` skips them (no ctfEvents.csv; the other files are the same bytes), as
    benchmarks of the fill import at millions of fills do.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    u = _build_universe(config)
    total = sum(_slice_rows(u, k) for k in range(u.n_slices))
    paths = {
        "markets_csv": out_dir / "markets.csv",
        "markets_json": out_dir / "markets.json",
        "events_json": out_dir / "events.json",
        "order_filled_csv": out_dir / "orderFilled.csv",
        "trades_csv": out_dir / "trades.csv",
        "ctf_events_csv": out_dir / "ctfEvents.csv",
    }
    planner = _ctf_planner(u) if ctf_events else None
    opts = pacsv.WriteOptions(include_header=False, quoting_style="none", batch_size=8192)
    volume_raw = np.zeros(len(u.markets))
    generated = written = matches = 0
    with (
        pa.OSFile(str(paths["order_filled_csv"]), "wb") as fills_f,
        pa.OSFile(str(paths["trades_csv"]), "wb") as trades_f,
        ThreadPoolExecutor(max_workers=1) as fills_pool,
        ThreadPoolExecutor(max_workers=1) as trades_pool,
    ):
        fills_f.write(_csv_header(ORDER_FILLED_COLUMNS))
        trades_f.write(_csv_header(TRADES_COLUMNS))

        def write(f: pa.NativeFile, batch: pa.RecordBatch) -> None:
            pacsv.write_csv(batch, f, write_options=opts)

        # pipeline: slice k+1 is generated while slice k is written by two writer threads;
        # at most one slice is in flight, so memory stays bounded
        in_flight: list[Future[None]] = []
        for k in range(u.n_slices):
            sl = _generate_slice(u, k, for_csv=True, positions=planner is not None)
            if planner is not None and sl.positions is not None:
                planner.add_fills(*sl.positions)
            for fut in in_flight:
                fut.result()
            in_flight = []
            if written != generated:
                written = generated
                if progress is not None:
                    progress(written, total)
            volume_raw += sl.market_volume
            matches += sl.matches
            if sl.fills is not None and sl.trades is not None and sl.fills.num_rows:
                in_flight = [
                    fills_pool.submit(write, fills_f, sl.fills),
                    trades_pool.submit(write, trades_f, sl.trades),
                ]
                generated += sl.fills.num_rows
        for fut in in_flight:
            fut.result()
    written = generated
    if progress is not None:
        progress(written, total)

    n_ctf_events = 0
    if planner is not None:
        table = planner.finish()
        n_ctf_events = table.num_rows
        with pa.OSFile(str(paths["ctf_events_csv"]), "wb") as f:
            f.write(_csv_header(CTF_EVENTS_CSV_COLUMNS))
            pacsv.write_csv(table, f, write_options=opts)

    volumes = volume_raw / 1e6
    with paths["markets_csv"].open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(MARKETS_CSV_COLUMNS)
        writer.writerows(_markets_csv_rows(u, volumes))
    markets_out, events_out = _gamma_dicts(u, volumes)
    paths["markets_json"].write_text(json.dumps(markets_out, ensure_ascii=False) + "\n", "utf-8")
    paths["events_json"].write_text(json.dumps(events_out, ensure_ascii=False) + "\n", "utf-8")

    return SampleSummary(
        out_dir=out_dir,
        markets=len(u.markets),
        events=len(u.events),
        election_groups=u.groups,
        order_fills=written,
        trades=written,
        matches=matches,
        ctf_events=n_ctf_events,
        wallets=u.n_noise + _SHARP_COUNT,
        sharp_wallets=list(u.sharp_wallets),
        **paths,
    )
