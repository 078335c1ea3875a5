"""Normalisation rules shared by every importer: Python checks and their SQL twins.

The SQL expressions take a VARCHAR column (CSV cells are read as text so that nothing is
lost to type inference) and are used inside DuckDB so large files are checked vectorised.
"""

from __future__ import annotations

import re

ADDRESS_RE = re.compile(r"0x[0-9a-f]{40}")
TX_HASH_RE = re.compile(r"0x[0-9a-f]{64}")
TOKEN_ID_RE = re.compile(r"[0-9]{1,80}")  # decimal text up to a token id's length
# An outcome token id: a uint256 in decimal, 71-78 digits (0.8% of real tokens are shorter
# than 76), no leading zero, never in scientific notation.
OUTCOME_TOKEN_PATTERN = "[1-9][0-9]{70,77}"
OUTCOME_TOKEN_RE = re.compile(OUTCOME_TOKEN_PATTERN)
# A raw 6-decimal amount: digits and nothing else (no sign, space, exponent or fraction).
AMOUNT_RE = re.compile(r"[0-9]+")
MAX_BIGINT = 2**63 - 1

# Polymarket started in 2020; anything earlier is a unit or parsing error.
EARLIEST_TIMESTAMP = "2020-01-01"


def normalize_address(value: str | None) -> str | None:
    if value is None:
        return None
    text = value.strip().lower()
    return text if ADDRESS_RE.fullmatch(text) else None


def is_token_id(value: str) -> bool:
    """An outcome token id (``OUTCOME_TOKEN_PATTERN``); the twin of ``sql_token_id``."""
    return bool(OUTCOME_TOKEN_RE.fullmatch(value.strip()))


def is_asset_id(value: str) -> bool:
    """A fill's asset id: ``0`` (USDC) or an outcome token id; twin of ``sql_asset_id``."""
    return value.strip() == "0" or is_token_id(value)


def parse_amount(value: str) -> int | None:
    """A positive raw amount that fits BIGINT, else None; the twin of
    ``sql_positive_bigint``."""
    if not AMOUNT_RE.fullmatch(value):
        return None
    amount = int(value)
    return amount if 0 < amount <= MAX_BIGINT else None


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
    """Decimal token id as text (never through an integer type: they are 71-78 digits)."""
    value = f"trim({column})"
    return f"CASE WHEN regexp_full_match({value}, '{OUTCOME_TOKEN_PATTERN}') THEN {value} END"


def sql_asset_id(column: str) -> str:
    """A fill's asset id: '0' (USDC) or an outcome token id (``sql_token_id``)."""
    value = f"trim({column})"
    return (
        f"CASE WHEN {value} = '0' OR regexp_full_match({value}, '{OUTCOME_TOKEN_PATTERN}') "
        f"THEN {value} END"
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
    """Digits only (no sign, space, exponent or fraction: DuckDB's cast would take and round
    those), positive, within BIGINT."""
    return (
        f"CASE WHEN regexp_full_match({column}, '[0-9]+') "
        f"AND TRY_CAST({column} AS BIGINT) > 0 THEN CAST({column} AS BIGINT) END"
    )


def sql_double(column: str) -> str:
    return f"TRY_CAST(nullif(trim({column}), '') AS DOUBLE)"


def sql_bool(column: str) -> str:
    value = f"lower(trim({column}))"
    return (
        f"CASE WHEN {value} IN ('true', '1', 'yes', 't') THEN true "
        f"WHEN {value} IN ('false', '0', 'no', 'f') THEN false END"
    )
