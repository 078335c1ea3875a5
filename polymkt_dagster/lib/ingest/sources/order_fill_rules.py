"""The canonical rules for a row of poly_data's orderFilled.csv, as DuckDB SQL.

``order_fill_rows_sql`` is the definition of a valid row and of its normalised values
(or its reject field and reason); ``canonical_rules`` adds the fill ids. The streaming
import (``order_fill_csv``) sends here the rows its compiled fast path
(``order_fill_fast_path``) does not take; the fast path only takes rows for which these
rules provably give the same result. Kept apart so the one definition of a valid row can
be read (and tested) without the machinery of the import.
"""

from __future__ import annotations

import uuid

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from polymkt_dagster.lib.ingest import normalize as n
from polymkt_dagster.lib.ingest.fill_ids import fill_ids
from polymkt_dagster.lib.ingest.sources.csv_source import reject_expressions
from polymkt_dagster.lib.ingest.sources.order_fill_buffers import primitive_array

MAX_PRICE = 1.000001  # the canonical check: implied price above this is rejected
# The content a fill id digests (``fill_ids``), canonical names.
FILL_CONTENT_COLUMNS = (
    "maker",
    "taker",
    "maker_asset_id",
    "taker_asset_id",
    "maker_amount_filled",
    "taker_amount_filled",
)


def order_fill_rows_sql(relation: str, header: list[str]) -> str:
    """The canonical rules: fill columns but the id, plus ``reject_field``/``reject_reason``.

    ``relation`` yields ``record_no`` and the CSV cells as text under their header names.
    This is the definition of a valid row and of its normalised values; the streaming
    import's fast path only takes rows for which it provably gives the same result.
    ``canonical_rules`` runs it and adds the fill ids.
    """
    field_case, reason_case, raw_line = reject_expressions(_order_fill_checks(), header)
    return f"""
        WITH norm AS (
            SELECT
                record_no,
                {n.sql_timestamp('"timestamp"')} AS ts,
                {n.sql_address("maker")} AS maker,
                {n.sql_address("taker")} AS taker,
                {n.sql_asset_id('"makerAssetId"')} AS maker_asset_id,
                {n.sql_asset_id('"takerAssetId"')} AS taker_asset_id,
                {n.sql_positive_bigint('"makerAmountFilled"')} AS maker_amount_filled,
                {n.sql_positive_bigint('"takerAmountFilled"')} AS taker_amount_filled,
                {n.sql_tx_hash('"transactionHash"')} AS transaction_hash,
                "timestamp" AS raw_timestamp, maker AS raw_maker, taker AS raw_taker,
                "makerAssetId" AS raw_maker_asset_id, "takerAssetId" AS raw_taker_asset_id,
                "makerAmountFilled" AS raw_maker_amount,
                "takerAmountFilled" AS raw_taker_amount,
                "transactionHash" AS raw_tx,
                {raw_line} AS raw_line
            FROM {relation}
        ),
        checked AS (
            SELECT *,
                CASE WHEN maker_asset_id = '0'
                     THEN maker_amount_filled / taker_amount_filled
                     ELSE taker_amount_filled / maker_amount_filled END AS implied_price
            FROM norm
        )
        SELECT
            record_no,
            ts AS "timestamp",
            CAST(NULL AS BIGINT) AS block_number,
            CAST(NULL AS INTEGER) AS log_index,
            transaction_hash,
            CAST(NULL AS VARCHAR) AS order_hash,
            maker, taker, maker_asset_id, taker_asset_id,
            maker_amount_filled, taker_amount_filled,
            CAST(NULL AS BIGINT) AS fee,
            CAST(NULL AS VARCHAR) AS exchange,
            'v1' AS contract_version,
            'csv' AS source,
            {field_case} AS reject_field,
            {reason_case} AS reject_reason,
            CASE WHEN {field_case} IS NOT NULL THEN raw_line END AS raw_line
        FROM checked
    """


def canonical_rules(con: duckdb.DuckDBPyConnection, relation: str, header: list[str]) -> pa.Table:
    """``order_fill_rows_sql`` over ``relation`` with the fill ids of its accepted rows.

    Without an order hash in the CSV, a fill's id is its transaction plus a digest of its
    content (``fill_ids``): stable across re-imports, so re-imports deduplicate.
    """
    checked = con.execute(order_fill_rows_sql(relation, header)).to_arrow_table()
    ids = fill_ids(*(checked.column(name) for name in ("transaction_hash", *FILL_CONTENT_COLUMNS)))
    ids = pc.if_else(pc.is_null(checked.column("reject_field")), ids, None)
    return checked.add_column(1, "id", ids)


def _order_fill_checks() -> list[tuple[str, str, str]]:
    """(field, failing condition, reason) in the order they are reported."""
    return [
        (
            "timestamp",
            "ts IS NULL",
            "format('unparsable timestamp \"{}\"', coalesce(raw_timestamp, ''))",
        ),
        (
            "timestamp",
            f"NOT {n.sql_timestamp_in_range('ts')}",
            "format('timestamp {} is outside the plausible range', ts)",
        ),
        ("maker", "maker IS NULL", "format('invalid address \"{}\"', coalesce(raw_maker, ''))"),
        ("taker", "taker IS NULL", "format('invalid address \"{}\"', coalesce(raw_taker, ''))"),
        (
            "makerAssetId",
            "maker_asset_id IS NULL",
            'format(\'invalid asset id "{}": expected 0 (USDC) or a token id of 71-78 digits '
            "without a leading zero', coalesce(raw_maker_asset_id, ''))",
        ),
        (
            "takerAssetId",
            "taker_asset_id IS NULL",
            'format(\'invalid asset id "{}": expected 0 (USDC) or a token id of 71-78 digits '
            "without a leading zero', coalesce(raw_taker_asset_id, ''))",
        ),
        (
            "makerAmountFilled",
            "maker_amount_filled IS NULL",
            'format(\'amount "{}" is not a positive integer of digits only (no sign, space, '
            "exponent or fraction) within BIGINT', coalesce(raw_maker_amount, ''))",
        ),
        (
            "takerAmountFilled",
            "taker_amount_filled IS NULL",
            'format(\'amount "{}" is not a positive integer of digits only (no sign, space, '
            "exponent or fraction) within BIGINT', coalesce(raw_taker_amount, ''))",
        ),
        (
            "transactionHash",
            "transaction_hash IS NULL",
            "format('invalid transaction hash \"{}\"', coalesce(raw_tx, ''))",
        ),
        (
            "price",
            f"implied_price > {MAX_PRICE}",
            "format('implied price {} (USDC per share) is outside [0, 1]', "
            "round(implied_price, 6))",
        ),
    ]


def canonical_rules_for_rows(
    con: duckdb.DuckDBPyConnection, rows: pa.RecordBatch, record_no: np.ndarray, header: list[str]
) -> pa.Table:
    """Apply ``order_fill_rows_sql`` to rows the fast checks did not take."""
    raw = pa.Table.from_batches([rows]).select(header)
    raw = raw.add_column(0, "record_no", primitive_array(record_no.astype(np.int64), pa.int64()))
    view = f"slow_fills_{uuid.uuid4().hex[:8]}"
    con.register(view, raw)
    try:
        return canonical_rules(con, view, header)
    finally:
        con.unregister(view)
