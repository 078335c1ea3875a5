"""Canonical tables (docs/architecture.md §3) and the poly_data CSV layouts they are imported from.

Column types are DuckDB types; ids and token ids are strings because token ids are 71-78
digit integers that overflow every native integer type.
"""

from __future__ import annotations

from dataclasses import dataclass

# Exchange contracts whose address appears as `taker` on the taker-order row of each match.
EXCHANGE_CONTRACTS: dict[str, str] = {
    "0x4bfb41d5b3570defd03c39a9a4d8de6bd8b8982e": "v1_ctf",
    "0xc5d563a36ae78145c45a50134d48a1215220f80a": "v1_neg_risk",
    "0xe111180000d2663c0091e4f400237545b87b996b": "v2_ctf",
    "0xe2222d279d744050d28e00520010520000310f59": "v2_neg_risk",
}

USDC_ASSET_ID = "0"
AMOUNT_SCALE = 1_000_000  # USDC and outcome shares both carry 6 decimals on chain


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...]

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]

    def typed_empty_select(self) -> str:
        """A zero-row SELECT with every canonical column, for views over an empty lake."""
        cols = ", ".join(f"CAST(NULL AS {ctype}) AS {name}" for name, ctype in self.columns)
        return f"SELECT {cols} WHERE false"

    def canonical_select(self, source: str) -> str:
        """Project `source` onto the canonical columns in canonical order and types.

        `source` must already carry every column (see lake.scan_sql, which unions in the
        typed empty relation so columns missing from older partitions read as NULL).
        """
        cols = ", ".join(f"CAST({name} AS {ctype}) AS {name}" for name, ctype in self.columns)
        return f"SELECT {cols} FROM {source}"


MARKETS = Table(
    "markets",
    (
        ("market_id", "VARCHAR"),
        ("condition_id", "VARCHAR"),
        ("question_id", "VARCHAR"),
        ("question", "VARCHAR"),
        ("slug", "VARCHAR"),
        ("description", "VARCHAR"),
        ("category", "VARCHAR"),
        ("tags", "VARCHAR[]"),
        ("event_id", "VARCHAR"),
        ("event_slug", "VARCHAR"),
        ("event_title", "VARCHAR"),
        ("neg_risk", "BOOLEAN"),
        ("neg_risk_market_id", "VARCHAR"),
        ("group_item_title", "VARCHAR"),
        ("outcomes", "VARCHAR[]"),
        ("token_ids", "VARCHAR[]"),
        ("outcome_prices", "DOUBLE[]"),
        ("created_at", "TIMESTAMPTZ"),
        ("start_date", "TIMESTAMPTZ"),
        ("end_date", "TIMESTAMPTZ"),
        ("closed", "BOOLEAN"),
        ("closed_time", "TIMESTAMPTZ"),
        ("volume", "DOUBLE"),
        ("liquidity", "DOUBLE"),
        ("uma_resolution_status", "VARCHAR"),
        ("resolved", "BOOLEAN"),
        ("winning_outcome_index", "INTEGER"),
        ("payouts", "DOUBLE[]"),  # Gamma payouts when resolved (analytics/resolutions.py)
        ("resolution_source", "VARCHAR"),  # 'gamma' when resolved, else NULL
        ("updated_at", "TIMESTAMPTZ"),
    ),
    key=("market_id",),
)

EVENTS = Table(
    "events",
    (
        ("event_id", "VARCHAR"),
        ("slug", "VARCHAR"),
        ("ticker", "VARCHAR"),
        ("title", "VARCHAR"),
        ("description", "VARCHAR"),
        ("category", "VARCHAR"),
        ("tags", "VARCHAR[]"),
        ("neg_risk", "BOOLEAN"),
        ("neg_risk_market_id", "VARCHAR"),
        ("start_date", "TIMESTAMPTZ"),
        ("end_date", "TIMESTAMPTZ"),
        ("closed", "BOOLEAN"),
        ("volume", "DOUBLE"),
        ("liquidity", "DOUBLE"),
        ("market_ids", "VARCHAR[]"),
    ),
    key=("event_id",),
)

ORDER_FILLED = Table(
    "order_filled",
    (
        ("id", "VARCHAR"),
        ("timestamp", "TIMESTAMPTZ"),
        ("block_number", "BIGINT"),
        ("log_index", "INTEGER"),
        ("transaction_hash", "VARCHAR"),
        ("order_hash", "VARCHAR"),
        ("maker", "VARCHAR"),
        ("taker", "VARCHAR"),
        ("maker_asset_id", "VARCHAR"),
        ("taker_asset_id", "VARCHAR"),
        ("maker_amount_filled", "BIGINT"),
        ("taker_amount_filled", "BIGINT"),
        ("fee", "BIGINT"),
        ("exchange", "VARCHAR"),
        ("contract_version", "VARCHAR"),
        ("source", "VARCHAR"),
    ),
    key=("id",),
)

TRADES = Table(
    "trades",
    (
        ("timestamp", "TIMESTAMPTZ"),
        ("market_id", "VARCHAR"),
        ("condition_id", "VARCHAR"),
        ("token_id", "VARCHAR"),
        ("outcome", "VARCHAR"),
        ("nonusdc_side", "VARCHAR"),
        ("maker", "VARCHAR"),
        ("taker", "VARCHAR"),
        ("maker_direction", "VARCHAR"),
        ("taker_direction", "VARCHAR"),
        ("price", "DOUBLE"),
        ("usd_amount", "DOUBLE"),
        ("token_amount", "DOUBLE"),
        ("fee", "DOUBLE"),
        ("transaction_hash", "VARCHAR"),
        ("order_fill_id", "VARCHAR"),
        ("is_taker_side", "BOOLEAN"),
    ),
    key=("order_fill_id",),
)

# Position events of the Conditional Tokens framework, as they happened on chain
# (docs/architecture.md §3.1). Key: "<transaction_hash>_<log_index>".
CTF_EVENTS = Table(
    "ctf_events",
    (
        ("id", "VARCHAR"),
        ("timestamp", "TIMESTAMPTZ"),
        ("block_number", "BIGINT"),
        ("log_index", "INTEGER"),
        ("transaction_hash", "VARCHAR"),
        ("contract", "VARCHAR"),
        ("event", "VARCHAR"),
        ("stakeholder", "VARCHAR"),
        ("condition_id", "VARCHAR"),
        ("neg_risk_market_id", "VARCHAR"),
        ("question_id", "VARCHAR"),
        ("collateral_token", "VARCHAR"),
        ("parent_collection_id", "VARCHAR"),
        ("index_sets", "VARCHAR[]"),
        ("amount", "BIGINT"),
        ("amounts", "BIGINT[]"),
        ("payout", "BIGINT"),
        ("outcome_slot_count", "INTEGER"),
        ("payout_numerators", "BIGINT[]"),
        ("source", "VARCHAR"),
    ),
    key=("id",),
)

# Contracts whose position events fill ctf_events (Polygon), by the `contract` value.
CTF_CONTRACTS: dict[str, str] = {
    "0x4d97dcd97ec945f40cf65f87097ace5ea0476045": "conditional_tokens",
    "0xd91e80cf2e7be2e162c6513ced06f1dd0da35296": "neg_risk_adapter",
}

RAW_TABLES: dict[str, Table] = {
    t.name: t for t in (MARKETS, EVENTS, ORDER_FILLED, TRADES, CTF_EVENTS)
}

# poly_data's CSV headers, exactly as its scripts write them.
POLY_DATA_MARKETS_COLUMNS = (
    "createdAt", "id", "question", "answer1", "answer2", "neg_risk", "market_slug",
    "token1", "token2", "condition_id", "volume", "ticker", "closedTime",
)  # fmt: skip
POLY_DATA_ORDER_FILLED_COLUMNS = (
    "timestamp", "maker", "makerAssetId", "makerAmountFilled",
    "taker", "takerAssetId", "takerAmountFilled", "transactionHash",
)  # fmt: skip
POLY_DATA_TRADES_COLUMNS = (
    "timestamp", "market_id", "maker", "taker", "nonusdc_side", "maker_direction",
    "taker_direction", "price", "usd_amount", "token_amount", "transactionHash",
)  # fmt: skip
