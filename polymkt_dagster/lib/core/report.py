"""Small helpers that turn results into text a person reads in the Dagster UI."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

# Columns holding USDC (shown to the cent); other floats are prices or shares (4 decimals).
_USDC_WORDS = ("usd", "pnl", "volume", "exposure", "cost", "equity", "cash", "fee", "notional")


def rounded(column: str, value: float) -> str:
    """A float as its meaning needs: USDC to cents, prices and shares to 4 decimals."""
    if any(word in column.lower() for word in _USDC_WORDS):
        return f"{value:,.2f}"
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _cell(value: Any, width: int = 48, column: str = "") -> str:
    if isinstance(value, float):
        text = rounded(column, value)
    else:
        text = "" if value is None else str(value)
    # The UI renders Markdown with HTML: "<id>" would be swallowed as a tag.
    text = text.replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")
    return text if len(text) <= width else text[: width - 1] + "…"


def markdown_table(table: pa.Table, columns: Sequence[str] | None = None, limit: int = 10) -> str:
    """First ``limit`` rows as a markdown table (long cells shortened)."""
    names = [c for c in (columns or table.column_names) if c in table.column_names]
    if not names:
        return "_no columns_"
    rows = table.select(names).slice(0, limit).to_pylist()
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(_cell(row[n], column=n) for n in names) + " |" for row in rows]
    if table.num_rows > limit:
        lines.append(f"\n_{limit} of {table.num_rows:,} rows_")
    if not rows:
        lines.append("\n_no rows_")
    return "\n".join(lines)


def counts_table(counts: dict[str, int], key: str = "field", value: str = "rows") -> str:
    if not counts:
        return "_none_"
    lines = [f"| {key} | {value} |", "|---|---|"]
    lines += [f"| {k} | {v:,} |" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])]
    return "\n".join(lines)
