"""Position events of the Conditional Tokens framework as rows of the positions ledger.

``ctf_events`` (docs/architecture.md §3.1) holds splits, merges, redemptions and neg-risk
conversions as they happened on chain. The positions ledger (``lib/wallets/ledger.py``) reads
them as buys and sells of outcome tokens, as Polymarket's pnl-subgraph does
(Polymarket/polymarket-subgraph, ``pnl-subgraph/src``):

- ``ConditionalTokensMapping.ts`` / ``NegRiskAdapterMapping.ts`` ``handlePositionSplit``:
  buy ``amount`` of every outcome of the condition at 0.50 (``FIFTY_CENTS``);
  ``handlePositionsMerge``: sell ``amount`` of every outcome at 0.50.
- ``ConditionalTokensMapping.ts`` ``handlePayoutRedemption``: sell the whole held amount of
  every outcome at ``payoutNumerators[i] / payoutDenominator`` (the event has no per-outcome
  amounts); ``NegRiskAdapterMapping.ts`` ``handlePayoutRedemption``: sell ``amounts[i]`` at
  that price. A redemption whose condition has no payout in the lake is skipped, as the
  subgraph skips a zero denominator.
- ``NegRiskAdapterMapping.ts`` ``handlePositionsConverted``: for each question i in the
  index set, sell ``amount`` NO (outcome 1) at that position's own average price; then,
  unless every question was converted, buy ``amount`` YES (outcome 0) of every other
  question at ``computeNegRiskYesPrice(noPrice, noCount, questionCount)`` =
  ``(noPrice x noCount - (noCount - 1)) / (questionCount - noCount)``, noPrice the mean of
  the NO average prices. That price depends on the ledger's state, so the YES rows leave
  here with a NaN price and ``conversion`` set; the ledger fills it in.
- Events whose stakeholder is an exchange (``EXCHANGE_CONTRACTS``) or the NegRiskAdapter
  are not a user's (the subgraph skips the exchange's and the adapter's own splits and
  merges: the user's side comes as the adapter's event).

Within one second (the lake has no log index for fills), events that add shares (splits,
a conversion's YES side) come before that second's fills and events that remove shares
(merges, redemptions, a conversion's NO side) after them, ordered among themselves by log
index: a same-block split-then-sell or buy-then-merge is never a spurious oversell.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from polymkt_dagster.lib.analytics.resolutions import resolutions_sql
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.schemas import CTF_EVENTS, EXCHANGE_CONTRACTS, MARKETS

# What a ledger row is (``kind``): a fill, or a position event that buys or sells ``shares``
# at ``price``, sells every share held at ``price`` (a Conditional Tokens redemption), or
# sells ``shares`` at the position's own average price (the NO side of a conversion).
KIND_FILL = 0
KIND_EVENT = 1
KIND_EVENT_SELL_ALL = 2
KIND_EVENT_SELL_AT_AVG = 3

NEG_RISK_ADAPTER = "0xd91e80cf2e7be2e162c6513ced06f1dd0da35296"
NOT_A_USER = (*EXCHANGE_CONTRACTS, NEG_RISK_ADAPTER)
FIFTY_CENTS = 0.5
# file-row order of an event within its second: before (adds) or after (removes) the fills
ADD_FRN_BASE = -(2**30)
REMOVE_FRN_BASE = 2**30

EVENT_ROW_SCHEMA = pa.schema(
    [
        ("ts", pa.int64()),
        ("frn", pa.int32()),
        ("is_buy", pa.bool_()),
        ("kind", pa.int8()),
        ("shares", pa.float64()),
        ("price", pa.float64()),
        ("conversion", pa.int64()),
    ]
)


@dataclass(frozen=True)
class EventRows:
    """Ledger rows of the position events, in time order: wallet and token as indices into
    their dictionaries, the numeric columns of ``EVENT_ROW_SCHEMA`` as numpy arrays; and,
    per conversion id, its number of converted questions and the market's question count."""

    wallets: pa.Array
    wallet_index: np.ndarray
    tokens: pa.Array
    token_index: np.ndarray
    columns: dict[str, np.ndarray]
    no_count: np.ndarray
    question_count: np.ndarray

    @property
    def num_rows(self) -> int:
        return len(self.wallet_index)

    @classmethod
    def empty(cls) -> EventRows:
        none = np.zeros(0, np.int32)
        columns = {f.name: np.zeros(0, f.type.to_pandas_dtype()) for f in EVENT_ROW_SCHEMA}
        strings = pa.array([], pa.string())
        return cls(strings, none, strings, none, columns, np.zeros(0, np.int64),
                   np.zeros(0, np.int64))  # fmt: skip


def _ts(moment: datetime) -> str:
    return f"TIMESTAMPTZ '{moment.isoformat()}'"


def market_resolutions_sql(lake: Lake) -> str:
    """``resolutions.resolutions_sql`` (one row per market: the chain's payouts when the lake
    has its ``ConditionResolution``, else Gamma's decision), over a markets relation that
    has the ``payouts`` column whether or not this lake's markets were written with it."""
    markets = (
        f"(SELECT * FROM {lake.scan_sql(MARKETS)} "
        "UNION ALL BY NAME (SELECT CAST(NULL AS DOUBLE[]) AS payouts WHERE false))"
    )
    return resolutions_sql(lake, markets_relation=markets)


def event_rows_sql(
    lake: Lake,
    files: list,
    *,
    wallets: str | None,
    since: datetime | None,
    until: datetime | None,
    token_info: str,
) -> str:
    """The ledger rows of the users' position events in ``files`` (see the module doc);
    ``wallets`` a relation of (wallet) to keep, or None for every wallet; ``token_info`` a
    relation of (token_id, payout): each outcome's payout, NULL while unresolved
    (``ledger_input.token_info_sql``, from ``lib/analytics/resolutions.py``)."""
    ctf = lake.scan_sql(CTF_EVENTS, files)
    not_a_user = ", ".join(f"'{a}'" for a in NOT_A_USER)
    window = " ".join(
        clause
        for clause in (
            f'AND "timestamp" > {_ts(since)}' if since else "",
            f'AND "timestamp" <= {_ts(until)}' if until else "",
            f"AND lower(stakeholder) IN (SELECT wallet FROM {wallets})" if wallets else "",
        )
        if clause
    )
    return f"""
        -- streamed, not materialized: each branch scans the day files with its own filter,
        -- so memory stays at the small build sides (markets, token info), not the events
        WITH ev AS NOT MATERIALIZED (
            SELECT lower(stakeholder) AS wallet, epoch_us("timestamp") AS ts,
                   CAST(coalesce(log_index, 0) AS BIGINT) AS log_index,
                   contract, event, lower(condition_id) AS condition_id,
                   lower(neg_risk_market_id) AS neg_risk_market_id, index_sets,
                   CAST(amount AS DOUBLE) / 1e6 AS amount, amounts
            FROM {ctf}
            WHERE event IN ('PositionSplit', 'PositionsMerge', 'PayoutRedemption',
                            'PositionsConverted')
              AND stakeholder IS NOT NULL AND lower(stakeholder) NOT IN ({not_a_user})
              {window}
        ),
        {_market_ctes(lake, token_info)},
        per_outcome AS (  -- splits, merges, redemptions: one row per outcome token
            SELECT e.*, o.token_id, o.outcome_index, o.payout
            FROM ev e JOIN outcome_tokens o USING (condition_id)
            WHERE e.event <> 'PositionsConverted'
        ),
        simple AS (
            SELECT wallet, token_id, ts, log_index,
                   event = 'PositionSplit' AS is_buy,
                   CASE WHEN event = 'PayoutRedemption' AND contract = 'conditional_tokens'
                        THEN {KIND_EVENT_SELL_ALL} ELSE {KIND_EVENT} END AS kind,
                   CASE WHEN event = 'PayoutRedemption' AND contract = 'conditional_tokens'
                        THEN 0.0
                        WHEN event = 'PayoutRedemption'
                        THEN CAST(amounts[outcome_index + 1] AS DOUBLE) / 1e6
                        ELSE amount END AS shares,
                   CASE WHEN event = 'PayoutRedemption' THEN payout
                        ELSE {FIFTY_CENTS} END AS price,
                   -1 AS conversion, 0 AS no_count, 0 AS question_count
            FROM per_outcome
            WHERE event <> 'PayoutRedemption' OR payout IS NOT NULL
        ),
        groups AS (  -- the neg-risk markets' questions
            SELECT neg_risk_market_id,
                   greatest(count(*), max(question_index) + 1) AS question_count
            FROM markets WHERE neg_risk_market_id IS NOT NULL GROUP BY ALL
        ),
        conversions AS (
            SELECT e.*, g.question_count, CAST(e.index_sets[1] AS UHUGEINT) AS mask,
                   -- blocks come one a second or slower: (time, log index) orders them
                   row_number() OVER (ORDER BY e.ts, e.log_index, e.wallet) - 1 AS conversion
            FROM ev e JOIN groups g USING (neg_risk_market_id)
            WHERE e.event = 'PositionsConverted' AND len(e.index_sets) > 0
        ),
        conversion_sides AS (
            SELECT c.wallet, c.ts, c.log_index, c.amount, c.conversion,
                   c.question_count, m.token_ids,
                   list_sum(list_transform(range(c.question_count),
                            i -> CAST((c.mask >> CAST(i AS UHUGEINT)) & 1::UHUGEINT AS INTEGER)))
                     AS no_count,
                   ((c.mask >> CAST(m.question_index AS UHUGEINT)) & 1::UHUGEINT) = 1 AS converted
            FROM conversions c
            JOIN markets m ON m.neg_risk_market_id = c.neg_risk_market_id
            WHERE m.question_index < c.question_count AND len(m.token_ids) = 2
        ),
        converted AS (
            SELECT wallet, CASE WHEN converted THEN token_ids[2] ELSE token_ids[1] END
                     AS token_id,
                   ts, log_index, NOT converted AS is_buy,
                   CASE WHEN converted THEN {KIND_EVENT_SELL_AT_AVG} ELSE {KIND_EVENT} END
                     AS kind,
                   amount AS shares,
                   CAST(CASE WHEN converted THEN 0.0 END AS DOUBLE) AS price, conversion,
                   no_count, question_count
            FROM conversion_sides
        ),
        all_rows AS (
            SELECT * FROM simple WHERE shares > 0 OR kind = {KIND_EVENT_SELL_ALL}
            UNION ALL BY NAME
            SELECT * FROM converted WHERE shares > 0
        )
        SELECT wallet, token_id, ts,
               CAST(CASE WHEN is_buy THEN {ADD_FRN_BASE} ELSE {REMOVE_FRN_BASE} END
                    + least(log_index, 1000000) AS INTEGER) AS frn,
               is_buy, CAST(kind AS TINYINT) AS kind, CAST(shares AS DOUBLE) AS shares,
               CASE WHEN kind = {KIND_EVENT} AND conversion >= 0 AND is_buy THEN 'NaN'::DOUBLE
                    ELSE CAST(price AS DOUBLE) END AS price,
               CAST(conversion AS BIGINT) AS conversion_id,
               CAST(no_count AS BIGINT) AS no_count,
               CAST(question_count AS BIGINT) AS question_count
        FROM all_rows
        WHERE token_id IS NOT NULL
    """


def _market_ctes(lake: Lake, token_info: str) -> str:
    """The ``markets`` (one per condition: token ids, neg-risk market, question index) and
    ``outcome_tokens`` (each condition's tokens and payouts) CTEs the event rows read."""
    return f"""
        markets AS MATERIALIZED (
            SELECT lower(condition_id) AS condition_id, token_ids,
                   lower(neg_risk_market_id) AS neg_risk_market_id,
                   -- the NegRiskAdapter's question id is the market id plus the index
                   TRY_CAST(('0x' || right(question_id, 2)) AS INTEGER) AS question_index
            FROM {lake.scan_sql(MARKETS)}
            WHERE condition_id IS NOT NULL AND len(token_ids) > 0
            QUALIFY row_number() OVER (PARTITION BY lower(condition_id) ORDER BY market_id) = 1
        ),
        outcome_tokens AS MATERIALIZED (  -- each condition's tokens and their payouts
            SELECT o.*, ti.payout
            FROM (
                SELECT condition_id, unnest(token_ids) AS token_id,
                       unnest(generate_series(0, len(token_ids) - 1)) AS outcome_index
                FROM markets
            ) o
            LEFT JOIN {token_info} ti USING (token_id)
        )
    """


def market_facts_digest_sql(lake: Lake, files: list, *, token_info: str) -> str:
    """One row (facts, digest): a digest of every market fact that the position events of
    ``files`` turn into ledger rows through (their conditions' tokens and payouts, their
    neg-risk markets' questions). A ledger state built from those events stays right exactly
    as long as this digest does: a market that appears after its first split, or a payout
    that changes after a redemption, changes it."""
    ctf = lake.scan_sql(CTF_EVENTS, files)
    return f"""
        WITH refs AS (
            SELECT DISTINCT lower(condition_id) AS condition_id,
                   lower(neg_risk_market_id) AS neg_risk_market_id
            FROM {ctf}
            WHERE event IN ('PositionSplit', 'PositionsMerge', 'PayoutRedemption',
                            'PositionsConverted')
        ),
        {_market_ctes(lake, token_info)},
        facts AS (
            SELECT hash(condition_id, token_id, outcome_index, payout) AS h
            FROM outcome_tokens WHERE condition_id IN (SELECT condition_id FROM refs)
            UNION ALL
            SELECT hash(neg_risk_market_id, question_index, token_ids) FROM markets
            WHERE neg_risk_market_id IN (SELECT neg_risk_market_id FROM refs)
        )
        SELECT count(*) AS facts, coalesce(bit_xor(h), 0) AS digest FROM facts
    """


def load_event_rows(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    *,
    wallets: list[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    token_info: str,
) -> EventRows:
    """The users' position events up to ``until`` (after ``since``) as ledger rows in time
    order; empty when the lake has no ``ctf_events`` (``token_info``: see
    ``event_rows_sql``). Read batch by batch, wallet and token dictionary-encoded as they
    come: millions of rows never hold their 42- and 77-character strings at once."""
    files = lake.files(
        CTF_EVENTS.name, start=since.date() if since else None, end=until.date() if until else None
    )
    if not files:
        return EventRows.empty()
    relation = None
    if wallets is not None:
        con.register("_event_wallets", pa.table({"wallet": pa.array(sorted(set(wallets)))}))
        relation = "_event_wallets"
    pieces: dict[str, list] = {name: [] for name in (*_NUMERIC, "wallet", "token_id")}
    try:
        sql = event_rows_sql(
            lake, files, wallets=relation, since=since, until=until, token_info=token_info
        )
        for batch in con.execute(sql).to_arrow_reader(_BATCH_ROWS):
            for name in _NUMERIC:
                pieces[name].append(batch.column(name).to_numpy(zero_copy_only=False))
            for name in ("wallet", "token_id"):
                pieces[name].append(pc.dictionary_encode(batch.column(name)))
    finally:
        if relation is not None:
            con.unregister(relation)
    if not pieces["ts"]:
        return EventRows.empty()
    columns = {name: np.concatenate(pieces.pop(name)) for name in _NUMERIC}
    order = np.lexsort((columns["frn"], columns["ts"]))  # time order, numbers only
    columns = {name: values[order] for name, values in columns.items()}
    strings = {}
    for name in ("wallet", "token_id"):
        # one dictionary for all batches; the rows' indices follow the time order
        unified = pa.chunked_array(pieces.pop(name)).unify_dictionaries()
        dictionary = unified.chunk(0).dictionary
        index = np.concatenate([c.indices.to_numpy(zero_copy_only=False) for c in unified.chunks])
        strings[name] = (dictionary, index.astype(np.int32)[order])
    conversion = columns.pop("conversion_id")
    conversions = int(conversion.max()) + 1 if len(conversion) else 0
    no_count = np.zeros(max(conversions, 0), np.int64)
    question_count = np.zeros(max(conversions, 0), np.int64)
    of_conversion = conversion >= 0
    if of_conversion.any():
        ids = conversion[of_conversion]
        no_count[ids] = columns.pop("no_count")[of_conversion]
        question_count[ids] = columns.pop("question_count")[of_conversion]
    columns["conversion"] = conversion
    columns = {f.name: columns[f.name] for f in EVENT_ROW_SCHEMA if f.name in columns}
    return EventRows(*strings["wallet"], *strings["token_id"], columns, no_count, question_count)


_NUMERIC = ("ts", "frn", "is_buy", "kind", "shares", "price", "conversion_id", "no_count",
            "question_count")  # fmt: skip
_BATCH_ROWS = 262_144
