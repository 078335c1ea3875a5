"""One definition of a market's resolution: the chain first, then Gamma.

- **Chain.** A ``ConditionResolution`` row of the market's ``condition_id`` in ``ctf_events``
  (docs/architecture.md §3.1) is the truth: payouts = numerators / sum(numerators), resolved
  at the block time, ``resolution_source = 'chain'``. A row whose numerator count differs
  from the market's outcome count, or whose numerators sum to 0, cannot be mapped and is
  ignored (Gamma decides).
- **Gamma.** Otherwise the decision stored in raw/polymarket/markets by the Gamma parser
  (``gamma.gamma_resolution``): resolved only when closed and the current UMA status is
  ``resolved`` (or, before UMA, closed at near-1/0 prices), with the payout vector from the
  outcome prices; ``resolution_source = 'gamma'``, resolved at ``closed_time`` (else
  ``end_date``). Lakes written before the ``payouts`` column read a resolved market's payout
  vector as 1 for ``winning_outcome_index`` and 0 elsewhere.

Unresolved markets have NULL payouts, ``winning_outcome_index``, ``resolution_source`` and
``resolved_at``; ``closed`` tells closed-but-unresolved from open. ``winning_outcome_index`` is
the outcome whose payout is 1, NULL for a split payout (50/50).
"""

from __future__ import annotations

from pathlib import Path

from polymkt_dagster.lib.core.duck import sql_string
from polymkt_dagster.lib.core.lake import RAW_PREFIX, Lake
from polymkt_dagster.lib.core.schemas import MARKETS, RAW_TABLES, Table

RESOLUTIONS = Table(
    "resolutions",
    (
        ("market_id", "VARCHAR"),
        ("condition_id", "VARCHAR"),
        ("closed", "BOOLEAN"),
        ("resolved", "BOOLEAN"),
        ("payouts", "DOUBLE[]"),  # one per outcome, in `outcomes`/`token_ids` order
        ("winning_outcome_index", "INTEGER"),  # 0-based; NULL for a split payout
        ("resolution_source", "VARCHAR"),  # 'chain' | 'gamma' | NULL
        ("uma_resolution_status", "VARCHAR"),  # Gamma's current umaResolutionStatus
        ("resolved_at", "TIMESTAMPTZ"),
    ),
    key=("market_id",),
)

CTF_EVENTS_TABLE = "ctf_events"
CONDITION_RESOLUTION = "ConditionResolution"

# The ctf_events columns the chain rule reads (the full contract: docs/architecture.md §3.1).
_CTF_RESOLUTION_COLUMNS = Table(
    CTF_EVENTS_TABLE,
    (
        ("id", "VARCHAR"),
        ("timestamp", "TIMESTAMPTZ"),
        ("event", "VARCHAR"),
        ("condition_id", "VARCHAR"),
        ("outcome_slot_count", "INTEGER"),
        ("payout_numerators", "BIGINT[]"),
    ),
    key=("id",),
)


def ctf_event_files(lake: Lake) -> list[Path]:
    """The ctf_events day files; none (not an error) while the table has never been written."""
    if CTF_EVENTS_TABLE in RAW_TABLES:
        return lake.files(CTF_EVENTS_TABLE)
    base = lake.root / RAW_PREFIX / CTF_EVENTS_TABLE
    if not base.is_dir():
        return []
    # hidden names are files still being written (renamed into place when complete)
    found = base.glob("year=*/month=*/day=*/**/*.parquet")
    return sorted(p for p in found if not p.name.startswith("."))


def ctf_events_glob_relation(lake: Lake) -> str:
    """The ctf_events columns read through a glob (for catalog views that must see partitions
    written after they were created); a typed empty relation while there are no files."""
    if not ctf_event_files(lake):
        return f"({_CTF_RESOLUTION_COLUMNS.typed_empty_select()})"
    base = (lake.root / RAW_PREFIX / CTF_EVENTS_TABLE).resolve()
    pattern = sql_string(base / "**" / "*.parquet")
    empty = _CTF_RESOLUTION_COLUMNS.typed_empty_select()
    return (
        "("
        + _CTF_RESOLUTION_COLUMNS.canonical_select(
            f"(SELECT * FROM read_parquet({pattern}, union_by_name = true, "
            f"hive_partitioning = false) UNION ALL BY NAME {empty})"
        )
        + ")"
    )


def chain_resolutions_sql(lake: Lake, ctf_relation: str | None = None) -> str:
    """One ConditionResolution per condition (the earliest): condition_id, numerators, time."""
    source = ctf_relation or lake.scan_sql(_CTF_RESOLUTION_COLUMNS, ctf_event_files(lake))
    return f"""
        SELECT lower(condition_id) AS condition_id, payout_numerators,
               timestamp AS resolved_at
        FROM {source}
        WHERE event = '{CONDITION_RESOLUTION}' AND condition_id IS NOT NULL
          AND len(payout_numerators) > 0 AND list_sum(payout_numerators) > 0
        QUALIFY row_number() OVER (
            PARTITION BY lower(condition_id) ORDER BY timestamp, id) = 1
    """


def resolutions_sql(
    lake: Lake, *, markets_relation: str | None = None, ctf_relation: str | None = None
) -> str:
    """One row per market with the columns of ``RESOLUTIONS`` (a SELECT usable as a subquery).

    ``markets_relation`` / ``ctf_relation`` replace the lake scans (the catalog passes its
    views); by default the lake's current files are read.
    """
    markets = markets_relation or lake.scan_sql(MARKETS)
    chain = chain_resolutions_sql(lake, ctf_relation)
    return f"""
        WITH m AS (
            SELECT market_id, lower(condition_id) AS condition_id, closed,
                   uma_resolution_status,
                   greatest(len(token_ids), len(outcomes), len(outcome_prices))
                       AS outcome_count,
                   CASE
                       WHEN payouts IS NOT NULL AND len(payouts) > 0 THEN payouts
                       -- lakes written before the payouts column: one-hot from the winner
                       WHEN coalesce(resolved, false) AND winning_outcome_index IS NOT NULL
                       THEN list_transform(
                           generate_series(0, greatest(len(token_ids), len(outcomes),
                                                       len(outcome_prices), 2) - 1),
                           i -> CASE WHEN i = winning_outcome_index THEN 1.0 ELSE 0.0 END)
                   END AS gamma_payouts,
                   coalesce(closed_time, end_date) AS gamma_resolved_at
            FROM {markets}
            WHERE market_id IS NOT NULL
            QUALIFY row_number() OVER (
                PARTITION BY market_id ORDER BY updated_at DESC NULLS LAST) = 1
        ),
        chain AS ({chain}),
        decided AS (
            SELECT m.*,
                   c.condition_id IS NOT NULL
                       AND (m.outcome_count = 0
                            OR len(c.payout_numerators) = m.outcome_count) AS by_chain,
                   c.payout_numerators, c.resolved_at AS chain_resolved_at
            FROM m LEFT JOIN chain c ON c.condition_id = m.condition_id
        ),
        payouts AS (
            SELECT *,
                   CASE
                       WHEN by_chain THEN list_transform(
                           payout_numerators,
                           x -> CAST(x AS DOUBLE) / list_sum(payout_numerators))
                       ELSE gamma_payouts
                   END AS payouts
            FROM decided
        )
        SELECT CAST(market_id AS VARCHAR) AS market_id,
               CAST(condition_id AS VARCHAR) AS condition_id,
               CAST(closed AS BOOLEAN) AS closed,
               payouts IS NOT NULL AS resolved,
               CAST(payouts AS DOUBLE[]) AS payouts,
               CAST(CASE WHEN list_contains(payouts, 1.0)
                         THEN list_position(payouts, 1.0) - 1 END AS INTEGER)
                   AS winning_outcome_index,
               CAST(CASE WHEN by_chain THEN 'chain'
                         WHEN payouts IS NOT NULL THEN 'gamma' END AS VARCHAR)
                   AS resolution_source,
               CAST(uma_resolution_status AS VARCHAR) AS uma_resolution_status,
               CAST(CASE WHEN by_chain THEN chain_resolved_at
                         WHEN payouts IS NOT NULL THEN gamma_resolved_at END AS TIMESTAMPTZ)
                   AS resolved_at
        FROM payouts
    """
