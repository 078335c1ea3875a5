"""Normalisation rules shared by every importer: Python checks and their SQL twins.

The SQL expressions take a VARCHAR column (CSV cells are read as text so that nothing is
lost to type inference) and are used inside DuckDB so large files are checked vectorised.
"""

from __future__ import annotations

import re

ADDRESS_RE = re.compile(r"0x[0-9a-f]{40}")
TX_HASH_RE = re.compile(r"0x[0-9a-f]{64}")
TOKEN_ID_RE = re.compile(r"[0-9]{1,80}")

# Polymarket started in 2020; anything earlier is a unit or parsing error.
EARLIEST_TIMESTAMP = "2020-01-01"


def normalize_address(value: str | None) -> str | None:
    if value is None:
        return None
    text = value.strip().lower()
    return text if ADDRESS_RE.fullmatch(text) else None


def is_token_id(value: str) -> bool:
    return bool(TOKEN_ID_RE.fullmatch(value))


def sql_trimmed(column: str) -> str:
    return f"nullif(trim({column}), '')"


def sql_address(column: str) -> str:
    """Lower-cased address or NULL when the text is not 0x + 40 hex digits."""
    value = f"lower(trim({column}))"
    return f"CASE WHEN regexp_full_match({value}, '0x[0-9a-f]{{40}}') THEN {value} END"


def sql_tx_hash(column: str) -> str:
    value = f"lower(trim({column}))"
    return f"CASE WHEN regexp_full_match({value}, '0x[0-9a-f]{{64}}') THEN {value} END"


def sql_token_id(column: str) -> str:
    """Decimal token id as text (never through an integer type: real ones have 71-78 digits)."""
    value = f"trim({column})"
    return (
        f"CASE WHEN regexp_full_match({value}, '[0-9]{{1,80}}') "
        f"THEN CASE WHEN ltrim({value}, '0') = '' THEN '0' ELSE ltrim({value}, '0') END END"
    )


def sql_timestamp(column: str) -> str:
    """UTC TIMESTAMPTZ from unix seconds, unix milliseconds or ISO 8601 text; else NULL.

    Numbers of 1e11 and up are milliseconds; from 1e13 (the year 2286 in milliseconds) they
    are no date at all and give NULL, since ``to_timestamp`` raises past its range instead.
    """
    value = f"trim({column})"
    number = f"TRY_CAST({value} AS DOUBLE)"
    return (
        f"CASE WHEN regexp_full_match({value}, '[0-9]+(\\.[0-9]+)?') THEN "
        f"CASE WHEN {number} >= 1e13 THEN NULL "
        f"WHEN {number} >= 1e11 THEN to_timestamp({number} / 1000) "
        f"ELSE to_timestamp({number}) END "
        f"ELSE TRY_CAST(regexp_replace({value}, '([+-][0-9]{{2}})$', '\\1:00') AS TIMESTAMPTZ) END"
    )


def sql_timestamp_in_range(expr: str) -> str:
    return f"({expr} >= TIMESTAMPTZ '{EARLIEST_TIMESTAMP}' AND {expr} < now() + INTERVAL 2 DAY)"


def sql_positive_bigint(column: str) -> str:
    return (
        f"CASE WHEN TRY_CAST(trim({column}) AS BIGINT) > 0 THEN CAST(trim({column}) AS BIGINT) END"
    )


def sql_double(column: str) -> str:
    return f"TRY_CAST(nullif(trim({column}), '') AS DOUBLE)"


def sql_bool(column: str) -> str:
    value = f"lower(trim({column}))"
    return (
        f"CASE WHEN {value} IN ('true', '1', 'yes', 't') THEN true "
        f"WHEN {value} IN ('false', '0', 'no', 'f') THEN false END"
    )
