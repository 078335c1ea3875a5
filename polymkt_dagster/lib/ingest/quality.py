"""Data-quality checks over the raw layer; plain results the Dagster checks report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.schemas import CTF_EVENTS, MARKETS, ORDER_FILLED, TRADES


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    description: str
    metadata: dict[str, int | float | str] = field(default_factory=dict)


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0] or 0) if row else 0


def markets_checks(con: duckdb.DuckDBPyConnection, lake: Lake) -> list[CheckOutcome]:
    rel = lake.scan_sql(MARKETS)
    dupes = _scalar(con, f"SELECT count(*) - count(DISTINCT market_id) FROM {rel}")
    missing = _scalar(con, f"SELECT count(*) FROM {rel} WHERE market_id IS NULL")
    bad_prices = _scalar(
        con,
        f"SELECT count(*) FROM {rel} WHERE list_bool_or(list_transform(outcome_prices, "
        "p -> p < 0 OR p > 1))",
    )
    return [
        CheckOutcome(
            "market_id_unique",
            dupes == 0 and missing == 0,
            f"{dupes} duplicate and {missing} missing market ids",
            {"duplicates": dupes, "missing": missing},
        ),
        CheckOutcome(
            "outcome_prices_in_unit_interval",
            bad_prices == 0,
            f"{bad_prices} markets with an outcome price outside [0, 1]",
            {"markets_out_of_range": bad_prices},
        ),
    ]


def order_filled_checks(
    con: duckdb.DuckDBPyConnection, files: Sequence[Path], lake: Lake
) -> list[CheckOutcome]:
    rel = lake.scan_sql(ORDER_FILLED, files)
    dupes = _scalar(con, f"SELECT count(*) - count(DISTINCT id) FROM {rel}")
    non_positive = _scalar(
        con,
        f"SELECT count(*) FROM {rel} WHERE NOT (maker_amount_filled > 0 "
        "AND taker_amount_filled > 0)",
    )
    return [
        CheckOutcome(
            "fill_id_unique", dupes == 0, f"{dupes} duplicate fill ids", {"duplicates": dupes}
        ),
        CheckOutcome(
            "amounts_positive",
            non_positive == 0,
            f"{non_positive} fills with a non-positive amount",
            {"non_positive": non_positive},
        ),
    ]


def ctf_events_checks(
    con: duckdb.DuckDBPyConnection, files: Sequence[Path], lake: Lake
) -> list[CheckOutcome]:
    """ids unique per partition (id = tx hash + log index: a repeat is a merge bug)."""
    rel = lake.scan_sql(CTF_EVENTS, files)
    dupes = _scalar(con, f"SELECT count(*) - count(DISTINCT id) FROM {rel}")
    return [
        CheckOutcome(
            "ctf_event_id_unique",
            dupes == 0,
            f"{dupes} duplicate CTF event ids",
            {"duplicates": dupes},
        )
    ]


def trades_checks(
    con: duckdb.DuckDBPyConnection,
    trade_files: Sequence[Path],
    fill_files: Sequence[Path],
    lake: Lake,
) -> list[CheckOutcome]:
    trades = lake.scan_sql(TRADES, trade_files)
    fills = lake.scan_sql(ORDER_FILLED, fill_files)
    markets = lake.scan_sql(MARKETS)
    out_of_range = _scalar(
        con, f"SELECT count(*) FROM {trades} WHERE price IS NULL OR price < 0 OR price > 1"
    )
    dupes = _scalar(con, f"SELECT count(*) - count(DISTINCT order_fill_id) FROM {trades}")
    orphans = _scalar(
        con,
        f"SELECT count(*) FROM {trades} t WHERE t.market_id IS NULL OR NOT EXISTS "
        f"(SELECT 1 FROM {markets} m WHERE m.market_id = t.market_id)",
    )
    trade_rows = _scalar(con, f"SELECT count(*) FROM {trades}")
    fill_rows = _scalar(con, f"SELECT count(*) FROM {fills}")
    return [
        CheckOutcome(
            "price_in_unit_interval",
            out_of_range == 0,
            f"{out_of_range} trades with a price outside [0, 1]",
            {"out_of_range": out_of_range},
        ),
        CheckOutcome(
            "order_fill_id_unique", dupes == 0, f"{dupes} duplicate trades", {"duplicates": dupes}
        ),
        CheckOutcome(
            "row_count_parity_with_order_filled",
            trade_rows == fill_rows,
            f"{trade_rows} trades for {fill_rows} order fills",
            {"trades": trade_rows, "order_fills": fill_rows},
        ),
        CheckOutcome(
            "markets_known",
            orphans == 0,
            f"{orphans} trades reference no known market (orphans)",
            {"orphans": orphans, "trades": trade_rows},
        ),
    ]
