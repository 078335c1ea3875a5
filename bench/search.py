"""Search benchmark: BM25 and hybrid latency, index build and incremental rebuild, relevance.

Issue targets (over 200,000 generated markets, the built-in local embedder): warm query p50
under 50 ms, the query's embedding included; an incremental rebuild after 1% of the markets
change under 10% of a full build; on the labelled set, hybrid nDCG@10 at least 0.15 above
BM25 and below BM25 on at most 10% of queries.

    python bench/search.py                     # 200,000 markets, local WordLlama model
    python bench/search.py --markets 50000     # a smaller run on a busy machine
    python bench/search.py --quick             # 20,000 markets (smoke run)
    python bench/search.py --embedder hashing  # 128-dim hashing stub instead of the model

Build: markets are generated in DuckDB from templates (elections with negRisk-style
candidates, central banks, crypto prices, sports, tech, culture), deterministic by seed,
with Polymarket-like descriptions, and written to the lake's markets Parquet. The indexes
are built with the project's own ``update_bm25_index`` and ``update_market_embeddings``;
the embedder's compute time is reported on its own line (and as throughput) and kept out of
the index-time ratio, then shown with it.

Measure: one ``MarketSearch`` session (one read-only connection, as a service would hold),
queries drawn from the same vocabularies, BM25 and hybrid interleaved after a warm-up, each
hybrid query embedded by the local model inside the timing. Then 1% of the markets get new
text and both indexes are updated incrementally. Finally the labelled query set
(polymkt_dagster_tests/fixtures/search_relevance.json) is scored per mode over the bundled
sample. Always exits 0.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import _common as c

from polymkt_dagster.lib.core.duck import connect, sql_string
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.schemas import MARKETS
from polymkt_dagster.lib.search import (
    Embedder,
    HashingEmbedder,
    LocalEmbedder,
    MarketSearch,
    evaluate,
    load_labelled_queries,
    relevance_summary,
    update_bm25_index,
    update_market_embeddings,
)

RELEVANCE_SET = (
    Path(__file__).resolve().parent.parent
    / "polymkt_dagster_tests"
    / "fixtures"
    / "search_relevance.json"
)
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data" / "sample"

DEFAULT_MARKETS = 200_000
QUICK_MARKETS = 20_000
TARGET_P50_MS = 50.0
TARGET_INCREMENTAL_RATIO = 0.10
CHANGED_FRACTION = 0.01

# fmt: off (long vocabularies read better packed)
FIRST = [
    "Diego",
    "Marcus",
    "Clara",
    "Olga",
    "Jonas",
    "Omar",
    "Wei",
    "Linda",
    "Aisha",
    "David",
    "Grace",
    "Victor",
    "Irene",
    "Sofia",
    "Henry",
    "Tariq",
    "Michael",
    "Naomi",
    "Karen",
    "Hannah",
    "Yuki",
    "Priya",
    "Felix",
    "Isabel",
    "Samuel",
    "Mei",
    "Rafael",
    "Elena",
    "Pavel",
    "Jane",
    "Amara",
    "Lucas",
    "Rosa",
    "Daniel",
    "Nancy",
    "Tom",
]
LAST = [
    "Mitchell",
    "Patel",
    "Rossi",
    "Thompson",
    "Silva",
    "Lindqvist",
    "Hernandez",
    "Smith",
    "Haddad",
    "Dubois",
    "Moreau",
    "Wright",
    "Davis",
    "Moore",
    "Martinez",
    "Petrov",
    "Rivera",
    "Walker",
    "Allen",
    "Sanchez",
    "Wilson",
    "Baker",
    "Cohen",
    "Novak",
    "Jackson",
    "Ramirez",
    "Green",
    "Scott",
    "Flores",
    "King",
    "Lewis",
    "Nelson",
]
PLACES = [
    "Springfield",
    "Maryland",
    "Detroit",
    "South Dakota",
    "Oregon",
    "Kansas",
    "Omaha",
    "Riverton",
    "Vermont",
    "Portugal",
    "India",
    "Norway",
    "Chile",
    "Colombia",
    "France",
    "Kenya",
    "Italy",
    "Ohio",
    "Texas",
    "Georgia",
    "Arizona",
    "Nevada",
    "Michigan",
    "Florida",
    "Brazil",
    "Germany",
    "Japan",
    "Canada",
    "Mexico",
    "Australia",
]
OFFICES = ["mayoral", "Senate", "gubernatorial", "presidential", "House", "parliamentary"]
BANKS = ["Fed", "ECB", "Bank of England", "Bank of Japan", "Bank of Canada", "RBA"]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
COINS = [
    "Bitcoin",
    "Ethereum",
    "Solana",
    "XRP",
    "Dogecoin",
    "Cardano",
    "Avalanche",
    "Chainlink",
    "Polkadot",
    "Litecoin",
]
TEAMS = [
    "Lakers",
    "Celtics",
    "Warriors",
    "Nuggets",
    "Knicks",
    "Heat",
    "Suns",
    "Bucks",
    "Chiefs",
    "Eagles",
    "Cowboys",
    "Ravens",
    "49ers",
    "Bills",
    "Yankees",
    "Dodgers",
    "Cubs",
    "Mariners",
    "Arsenal",
    "Chelsea",
    "Liverpool",
    "Brighton",
    "Fulham",
]
LEAGUES = ["NBA Finals", "Super Bowl", "World Series", "EPL", "Stanley Cup", "Champions League"]
COMPANIES = [
    "OpenAI",
    "Anthropic",
    "Meta",
    "Apple",
    "Tesla",
    "SpaceX",
    "Amazon",
    "Google",
    "Microsoft",
    "Nvidia",
]
PRODUCTS = [
    "GPT-5",
    "a new Claude model",
    "Llama 4",
    "a foldable iPhone",
    "a robotaxi service",
    "Starship to the Moon",
    "Project Kuiper service",
    "Gemini 3",
    "a gaming studio deal",
    "new AI chips",
]
ARTISTS = [
    "Taylor Swift",
    "Drake",
    "Rihanna",
    "Beyonce",
    "Kendrick Lamar",
    "The Weeknd",
    "Adele",
    "Bad Bunny",
    "Billie Eilish",
    "Dua Lipa",
]
YEARS = ["2024", "2025", "2026", "2027", "2028"]
# fmt: on


def _lit(values: Sequence[str]) -> str:
    return "[" + ", ".join(sql_string(v) for v in values) + "]"


def _pick(values: Sequence[str], salt: int) -> str:
    """SQL: a deterministic choice from ``values`` for row ``i`` (changes with ``rev``)."""
    return f"{_lit(values)}[1 + CAST(hash(i, {salt} + rev) % {len(values)} AS BIGINT)]"


def _num(lo: int, hi: int, salt: int) -> str:
    return f"CAST({lo} + hash(i, {salt} + rev) % {hi - lo + 1} AS BIGINT)"


def markets_sql(count: int, changed_fraction: float) -> str:
    """A SELECT of ``count`` canonical market rows; rows in the changed share get new text."""
    first, last, place = _pick(FIRST, 1), _pick(LAST, 2), _pick(PLACES, 3)
    office, year, month = _pick(OFFICES, 4), _pick(YEARS, 5), _pick(MONTHS, 6)
    day = _num(1, 28, 7)
    candidate = f"{first} || ' ' || {last}"
    changed_per_10k = round(changed_fraction * 10_000)
    return f"""
    WITH base AS (
        SELECT i, CASE WHEN hash(i, 4242) % 10000 < {changed_per_10k} THEN 1000 ELSE 0 END AS rev,
               CAST(hash(i, 99) % 6 AS INTEGER) AS kind
        FROM range({count}) t(i)
    ),
    texts AS (
        SELECT i, rev, kind,
          CASE kind
            WHEN 0 THEN 'Will ' || {candidate} || ' win the ' || {year} || ' ' || {place} || ' '
                        || {office} || ' election?'
            WHEN 1 THEN 'Will the ' || {_pick(BANKS, 8)} || ' cut rates in ' || {month} || ' '
                        || {year} || '?'
            WHEN 2 THEN 'Will ' || {_pick(COINS, 9)} || ' reach $' || {_num(1, 200, 10)}
                        || 'k by ' || {month} || ' ' || {day} || ', ' || {year} || '?'
            WHEN 3 THEN 'Will the ' || {_pick(TEAMS, 11)} || ' win the ' || {year} || ' '
                        || {_pick(LEAGUES, 12)} || '?'
            WHEN 4 THEN 'Will ' || {_pick(COMPANIES, 13)} || ' release ' || {_pick(PRODUCTS, 14)}
                        || ' by ' || {month} || ' ' || {day} || ', ' || {year} || '?'
            ELSE 'Will ' || {_pick(ARTISTS, 15)} || ' release a new album before ' || {month}
                 || ' ' || {day} || ', ' || {year} || '?'
          END AS question,
          CASE kind
            WHEN 0 THEN {place} || ' ' || {office} || ' Election ' || {year}
            WHEN 1 THEN {_pick(BANKS, 8)} || ' decision in ' || {month} || ' ' || {year}
            WHEN 2 THEN 'What price will ' || {_pick(COINS, 9)} || ' hit in ' || {year} || '?'
            WHEN 3 THEN {_pick(LEAGUES, 12)} || ' Champion ' || {year}
            WHEN 4 THEN {_pick(COMPANIES, 13)} || ' releases in ' || {year}
            ELSE {_pick(ARTISTS, 15)} || ' album ' || {year}
          END AS event_title,
          ['Politics', 'Economy', 'Crypto', 'Sports', 'Tech', 'Culture'][kind + 1] AS category,
          {candidate} AS candidate
        FROM base
    )
    SELECT
        CAST(600000 + i AS VARCHAR) AS market_id,
        question,
        lower(regexp_replace(question, '[^A-Za-z0-9]+', '-', 'g')) AS slug,
        'This market will resolve to "Yes" if the following happens: ' || question
          || ' Otherwise, this market will resolve to "No". The primary resolution source '
          || 'will be official information from the relevant authority; a consensus of '
          || 'credible reporting may also be used. Reference ' || md5(CAST(i + rev AS VARCHAR))[:8]
          || '.' AS description,
        category,
        [category, CASE WHEN kind = 0 THEN 'Elections' ELSE 'Markets' END] AS tags,
        event_title,
        kind = 0 AS neg_risk,
        CASE WHEN kind = 0 THEN candidate END AS group_item_title,
        ['Yes', 'No'] AS outcomes,
        TIMESTAMPTZ '2024-01-01 00:00:00+00'
          + to_days(CAST(hash(i, 20) % 1500 AS INTEGER)) AS end_date,
        hash(i, 21) % 3 = 0 AS closed,
        round(exp(CAST(hash(i, 22) % 1500 AS DOUBLE) / 100.0), 2) AS volume,
        TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_seconds(CAST(rev AS BIGINT)) AS updated_at
    FROM texts
    """


def write_markets(lake: Lake, count: int, changed_fraction: float) -> float:
    started = time.perf_counter()
    with connect() as con:
        con.execute(f"CREATE TABLE generated AS {markets_sql(count, changed_fraction)}")
        lake.write_single(
            "markets", con, MARKETS.canonical_select(f"({_with_all_columns('generated')})")
        )
    return time.perf_counter() - started


def _with_all_columns(table: str) -> str:
    return f"SELECT * FROM {table} UNION ALL BY NAME {MARKETS.typed_empty_select()}"


def make_queries(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    makers = [
        lambda: f"{rng.choice(FIRST)} {rng.choice(LAST)} {rng.choice(PLACES)} election",
        lambda: f"{rng.choice(PLACES)} {rng.choice(OFFICES)} election {rng.choice(YEARS)}",
        lambda: f"{rng.choice(BANKS)} rate cut {rng.choice(MONTHS)} {rng.choice(YEARS)}",
        lambda: f"{rng.choice(COINS)} {rng.randint(1, 200)}k",
        lambda: f"will {rng.choice(COINS).lower()} reach a new high",
        lambda: f"{rng.choice(TEAMS)} {rng.choice(LEAGUES)}",
        lambda: f"{rng.choice(COMPANIES)} {rng.choice(PRODUCTS)} release",
        lambda: f"{rng.choice(ARTISTS)} new album",
        lambda: "trump election",
        lambda: "fed rate cut",
    ]
    return [rng.choice(makers)() for _ in range(count)]


def sample_relevance(workdir: Path, embedder: Embedder) -> dict:
    """nDCG@10 per mode of the labelled queries over the bundled sample's markets."""
    import shutil

    from polymkt_dagster.lib.ingest.bootstrap import import_markets

    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("markets.csv", "markets.json"):
        shutil.copyfile(SAMPLE_DIR / name, workdir / name)
    lake = Lake(workdir / "parquet")
    import_markets(workdir, lake)
    catalog = workdir / "polymkt.duckdb"
    update_bm25_index(catalog, lake)
    update_market_embeddings(catalog, lake, embedder)
    with MarketSearch(catalog, embedder=embedder) as session:

        def run(query: str, mode: str) -> list[str]:
            return [h.market_id for h in session.search(query, mode=mode, limit=10).hits]

        return relevance_summary(evaluate(run, load_labelled_queries(RELEVANCE_SET)))


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--markets", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_MARKETS:,} markets")
    parser.add_argument("--queries", type=int, default=200, help="timed queries per mode")
    parser.add_argument(
        "--embedder",
        choices=["local", "hashing"],
        default="local",
        help="local: the built-in WordLlama model (default); hashing: a 128-dim stub",
    )
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    count = args.markets or (QUICK_MARKETS if args.quick else DEFAULT_MARKETS)

    workdir = c.fresh_dir(args.workdir or Path(tempfile.gettempdir()) / "polymkt-bench-search")
    lake = Lake(workdir / "parquet")
    catalog = workdir / "polymkt.duckdb"
    embedder: Embedder = LocalEmbedder() if args.embedder == "local" else HashingEmbedder(128)

    c.banner(f"Search benchmark: {count:,} generated markets, embedder {embedder.model}")
    gen_s = write_markets(lake, count, changed_fraction=0.0)
    print(f"generated and wrote {count:,} markets in {gen_s:.1f} s")

    # ---- full build ------------------------------------------------------------------
    bm25_full = update_bm25_index(catalog, lake, full_rebuild=True)
    emb_full = update_market_embeddings(catalog, lake, embedder)
    emb_full_index_s = emb_full.write_seconds + emb_full.vector_index.seconds
    full_index_s = bm25_full.seconds + emb_full_index_s
    print(
        f"full build: BM25 {bm25_full.seconds:.1f} s ({bm25_full.terms:,} terms), vectors "
        f"written {emb_full.write_seconds:.1f} s, HNSW {emb_full.vector_index.seconds:.1f} s; "
        f"embedder compute {emb_full.embed_seconds:.1f} s (excluded)"
    )

    # ---- queries ---------------------------------------------------------------------
    queries = make_queries(args.queries)
    cold_started = time.perf_counter()
    with MarketSearch(catalog, embedder=embedder) as cold:
        cold.search(queries[0], mode="hybrid")
    cold_ms = (time.perf_counter() - cold_started) * 1000

    latencies: dict[str, list[float]] = {"bm25": [], "hybrid": []}
    served_by_hnsw = True
    empty = 0
    with MarketSearch(catalog, embedder=embedder) as session:
        for query in queries[:10]:  # warm-up: extensions, caches, the HNSW graph in memory
            session.search(query, mode="hybrid")
        for query in queries:
            for mode in ("bm25", "hybrid"):
                tick = time.perf_counter()  # the query's embedding is included
                response = session.search(query, mode=mode, limit=10)
                latencies[mode].append((time.perf_counter() - tick) * 1000)
                served_by_hnsw &= not any("exact scan" in n for n in response.notices)
                empty += not response.hits

    # ---- incremental -----------------------------------------------------------------
    write_markets(lake, count, changed_fraction=CHANGED_FRACTION)
    bm25_inc = update_bm25_index(catalog, lake)
    emb_inc = update_market_embeddings(catalog, lake, embedder)
    inc_index_s = bm25_inc.seconds + emb_inc.write_seconds + emb_inc.vector_index.seconds
    ratio = inc_index_s / full_index_s
    ratio_with_embedding = (inc_index_s + emb_inc.embed_seconds) / (
        full_index_s + emb_full.embed_seconds
    )
    with MarketSearch(catalog, embedder=embedder) as session:
        changed_probe = session.search(queries[0], mode="hybrid").mode_used
    relevance = sample_relevance(workdir / "sample", embedder)

    # ---- report ----------------------------------------------------------------------
    bm25_p50, hybrid_p50 = (statistics.median(latencies[m]) for m in ("bm25", "hybrid"))
    c.banner("Results")
    c.print_table(
        ["measure", "value", "target", "verdict"],
        [
            [
                "BM25 p50 (ms)",
                bm25_p50,
                f"< {TARGET_P50_MS:g}",
                c.verdict(bm25_p50 < TARGET_P50_MS),
            ],
            ["BM25 p95 (ms)", percentile(latencies["bm25"], 0.95), "", ""],
            [
                "hybrid p50 (ms)",
                hybrid_p50,
                f"< {TARGET_P50_MS:g}",
                c.verdict(hybrid_p50 < TARGET_P50_MS),
            ],
            ["hybrid p95 (ms)", percentile(latencies["hybrid"], 0.95), "", ""],
            ["cold first hybrid query, fresh session (ms)", cold_ms, "info", ""],
            ["full build, index time (s)", full_index_s, "", ""],
            ["  of which BM25 (s)", bm25_full.seconds, "", ""],
            ["  of which vectors + HNSW (s)", emb_full_index_s, "", ""],
            ["  embedder compute, excluded (s)", emb_full.embed_seconds, "info", ""],
            [
                "embedding throughput (markets/s)",
                emb_full.embedded / max(emb_full.embed_seconds, 1e-9),
                "info",
                "",
            ],
            [
                f"incremental after {CHANGED_FRACTION:.0%} changed (s)",
                inc_index_s,
                "",
                "",
            ],
            [
                "  BM25 mode / markets re-indexed",
                f"{bm25_inc.mode} / {bm25_inc.reindexed:,}",
                "",
                "",
            ],
            [
                "  embeddings re-embedded / HNSW mode",
                f"{emb_inc.embedded:,} / {emb_inc.vector_index.mode}",
                "",
                "",
            ],
            [
                "incremental / full (index time)",
                f"{ratio:.1%}",
                f"< {TARGET_INCREMENTAL_RATIO:.0%}",
                c.verdict(ratio < TARGET_INCREMENTAL_RATIO),
            ],
            [
                "incremental / full (with embedder compute)",
                f"{ratio_with_embedding:.1%}",
                "info",
                "",
            ],
        ],
    )
    gain = relevance["hybrid"] - relevance["bm25"]
    c.banner("Relevance on the labelled set (nDCG@10, bundled sample, this embedder)")
    c.print_table(
        ["mode", "nDCG@10", "target", "verdict"],
        [
            ["bm25", relevance["bm25"], "", ""],
            ["semantic", relevance["semantic"], "", ""],
            ["hybrid", relevance["hybrid"], "bm25 + 0.15", c.verdict(gain >= 0.15)],
            [
                "best of the two per query (ceiling of any fusion)",
                relevance["best_of_both"],
                "info",
                "",
            ],
            [
                "queries where hybrid < bm25",
                f"{relevance['hybrid_below_bm25_share']:.1%}",
                "<= 10%",
                c.verdict(relevance["hybrid_below_bm25_share"] <= 0.10),
            ],
        ],
    )
    print(
        f"\n{args.queries} timed queries per mode over one read-only session; "
        f"semantic candidates served by HNSW: {'yes' if served_by_hnsw else 'NO (exact scan)'}; "
        f"queries with no result: {empty}; search after the update runs in "
        f"{changed_probe} mode."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
