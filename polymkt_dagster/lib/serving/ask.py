"""`polymkt ask`: a question in plain English -> guarded SQL over the rollups -> rows.

With an OpenAI key (``POLYMKT_OPENAI_API_KEY``; any OpenAI-compatible server through
``POLYMKT_OPENAI_BASE_URL``) the chat model ``POLYMKT_OPENAI_CHAT_MODEL`` writes one SELECT
over the allowlisted tables, given their columns. Whatever it writes goes through the SQL
guard before it runs; a refused query is sent back once with the guard's reason so the
model can correct it. Without a key a small rule-based parser answers the common questions
(top wallets by P&L or volume, top markets by volume, over today/this week/this month/all
time), as docs/architecture.md asks of every agent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from polymkt_dagster.lib.serving.sql_guard import Allowlist, SqlRefused, guard_sql

SYSTEM_PROMPT = """You write one {dialect} SELECT query that answers the user's question about
Polymarket wallets and markets. Use only these tables and columns:
{schema}
Rules: a single SELECT (CTEs, joins, window functions allowed), no other statements, no
table functions, no system tables, no recursive CTEs, no functions that generate rows or
arrays (range, generate_series, unnest), only common aggregate, window, date and string
functions, LIMIT as a plain number; volumes are in USDC; realized_pnl is in USDC;
bucket_start is a UTC timestamp; "this week" means the last 7 days before {now}. Answer
with the SQL only, in a ```sql code block."""

_SQL_BLOCK = re.compile(r"```(?:sql)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)


class AskError(RuntimeError):
    """The question could not be turned into an allowed query (message says why)."""


@dataclass
class AskPlan:
    question: str
    sql: str
    source: str  # openai | rules
    attempts: int = 1
    refusals: list[str] = field(default_factory=list)


def extract_sql(text: str) -> str:
    match = _SQL_BLOCK.search(text or "")
    return (match.group(1) if match else text or "").strip().rstrip(";").strip()


def ask_openai(
    question: str,
    *,
    api_key: str,
    base_url: str | None,
    model: str,
    dialect: str = "duckdb",
    now: datetime | None = None,
    max_rows: int = 1000,
    timeout_s: float = 30.0,
) -> AskPlan:
    """Ask the chat model for SQL; guard it; one retry with the refusal reason."""
    import openai

    client = openai.OpenAI(api_key=api_key, base_url=base_url or None, timeout=timeout_s,
                           max_retries=2)  # fmt: skip
    now = now or datetime.now(UTC)
    messages: list[dict[str, str]] = [
        {
            "role": "system",
            "content": SYSTEM_PROMPT.format(
                dialect="ClickHouse" if dialect == "clickhouse" else "DuckDB",
                schema=Allowlist.rollups().describe(),
                now=now.isoformat(timespec="seconds"),
            ),
        },
        {"role": "user", "content": question},
    ]
    plan = AskPlan(question, "", "openai", attempts=0)
    for _ in range(2):
        plan.attempts += 1
        try:
            response = client.chat.completions.create(
                model=model,
                messages=messages,
                temperature=0,  # type: ignore[arg-type]
            )
        except openai.APIStatusError as exc:
            raise AskError(f"the model server answered HTTP {exc.status_code}") from None
        except openai.APIError as exc:
            raise AskError(f"cannot reach the model server ({type(exc).__name__})") from None
        text = response.choices[0].message.content or ""
        sql = extract_sql(text)
        try:
            plan.sql = guard_sql(sql, dialect=dialect, max_rows=max_rows).sql
            return plan
        except SqlRefused as refused:
            plan.refusals.append(refused.reason)
            messages += [
                {"role": "assistant", "content": text},
                {
                    "role": "user",
                    "content": f"That query was refused: {refused.reason}. Write a corrected "
                    "query that follows the rules.",
                },
            ]
    raise AskError("the model's SQL was refused by the guard: " + "; ".join(plan.refusals))


_PERIODS = (
    (re.compile(r"\btoday\b|\b24 ?h"), timedelta(days=1)),
    (re.compile(r"\bthis week\b|\blast week\b|\b7 ?d|\bweek\b"), timedelta(days=7)),
    (re.compile(r"\bthis month\b|\blast month\b|\b30 ?d|\bmonth\b"), timedelta(days=30)),
)


def ask_rules(
    question: str, *, now: datetime | None = None, top: int = 10, dialect: str = "duckdb"
) -> AskPlan:
    """A rule-based answer for the common questions (no model needed)."""
    q = question.lower()
    now = now or datetime.now(UTC)
    since = None
    for pattern, span in _PERIODS:
        if pattern.search(q):
            since = now - span
            break
    number = re.search(r"\btop (\d{1,3})\b", q)
    limit = int(number.group(1)) if number else top
    window = f"WHERE bucket_start >= TIMESTAMPTZ '{since.isoformat()}'" if since else ""
    if "market" in q and ("volume" in q or "busiest" in q or "traded" in q or "most" in q):
        sql = (
            "SELECT market_id, sum(volume_usd) AS volume_usd, sum(trades) AS trades "
            f"FROM market_metrics_1d {window} GROUP BY market_id "
            f"ORDER BY volume_usd DESC LIMIT {limit}"
        )
    elif "wallet" in q or "trader" in q or "sharp" in q:
        measure = "volume_usd" if "volume" in q or "active" in q else "realized_pnl"
        sql = (
            "SELECT wallet, sum(realized_pnl) AS realized_pnl, sum(volume_usd) AS volume_usd, "
            f"sum(trades) AS trades FROM wallet_metrics_1d {window} GROUP BY wallet "
            f"ORDER BY {measure} DESC LIMIT {limit}"
        )
    else:
        raise AskError(
            "without an OpenAI key only questions about top wallets (by P&L or volume) and "
            "top markets (by volume) are understood; set POLYMKT_OPENAI_API_KEY or use "
            "`polymkt sql`"
        )
    if dialect != "duckdb":
        import sqlglot

        sql = sqlglot.transpile(sql, read="duckdb", write=dialect)[0]
    return AskPlan(question, guard_sql(sql, dialect=dialect).sql, "rules")


def plan_question(
    question: str,
    *,
    api_key: str | None,
    base_url: str | None,
    model: str,
    dialect: str = "duckdb",
    now: datetime | None = None,
) -> AskPlan:
    if api_key:
        return ask_openai(
            question, api_key=api_key, base_url=base_url, model=model, dialect=dialect, now=now
        )
    return ask_rules(question, now=now, dialect=dialect)


def plan_to_dict(plan: AskPlan) -> dict[str, Any]:
    return {
        "question": plan.question,
        "sql": plan.sql,
        "source": plan.source,
        "attempts": plan.attempts,
        "refusals": plan.refusals,
    }
