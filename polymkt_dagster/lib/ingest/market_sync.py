"""Hourly sync of markets and events from Gamma, and lookups of unknown token ids.

Each sync lists open markets (or events) with the keyset endpoint, asks again by id for the
ones the lake still has as open (or closed with a pending UMA status such as ``proposed``)
but the listing no longer returns (they closed or resolved since), keeps every raw answer
in the audit trail, parses with ``gamma.parse_many`` and merges through
``merge.merge_markets`` / ``merge.merge_events`` (newer ``updatedAt`` wins): the same code
path as the bootstrap. A payload of an unexpected shape is kept in the audit trail and
reported with its reason; the others are merged.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from polymkt_dagster.lib.core.duck import connect
from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.core.schemas import EVENTS, MARKETS, ORDER_FILLED, Table
from polymkt_dagster.lib.ingest.merge import merge_events, merge_markets
from polymkt_dagster.lib.ingest.sources.csv_source import Rejects
from polymkt_dagster.lib.ingest.sources.gamma import FINAL_UMA_STATUSES, parse_many
from polymkt_dagster.lib.ingest.sources.gamma_client import GammaClient, GammaPage
from polymkt_dagster.lib.ingest.sync_state import StateFile, sync_lock
from polymkt_dagster.lib.ingest.trades import create_token_map

Progress = Callable[[str], None]
MARKETS_LOCK = "markets"


@dataclass
class GammaSyncReport:
    kind: str
    pages: int = 0
    items: int = 0
    parsed: int = 0
    rejected: int = 0
    reject_reasons: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    refreshed_by_id: int = 0
    rows_in_table: int = 0
    rows_changed: int = 0
    audit_file: Path | None = None
    rejects_file: Path | None = None
    requests: int = 0
    retries: int = 0


@dataclass
class TokenLookupReport:
    unknown_tokens: int = 0
    markets_found: int = 0
    still_unknown: int = 0
    requests: int = 0


class _Collector:
    """Parsed rows of many pages as Arrow tables (compact), plus rejects and problems."""

    def __init__(self, kind: str, table: Table, report: GammaSyncReport) -> None:
        self.kind = kind
        self.table = table
        self.report = report
        self.parts: list[pa.Table] = []
        self.rejects = Rejects()
        self.ids: set[str] = set()
        with connect() as con:
            self.schema = con.execute(table.typed_empty_select()).to_arrow_table().schema

    def add(self, page: GammaPage) -> list[dict[str, Any]]:
        """Parse one page; returns its good rows."""
        self.report.pages += 1
        if page.items is None:
            self.report.problems.append(page.problem or "unexpected answer")
            return []
        self.report.items += len(page.items)
        parsed = parse_many(page.items, self.kind)
        where = "&".join(f"{k}={v}" for k, v in page.params if k != "limit")[:200]
        for position, reason in parsed.rejects:
            raw = json.dumps(page.items[position], ensure_ascii=False)[:2000]
            self.rejects.add(f"gamma /{self.kind}/keyset?{where}", position + 1, "(record)",
                             reason, raw)  # fmt: skip
        self.report.parsed += len(parsed.rows)
        key = self.table.key[0]
        self.ids.update(str(r[key]) for r in parsed.rows)
        if parsed.rows:
            self.parts.append(pa.Table.from_pylist(parsed.rows, schema=self.schema))
        return parsed.rows

    def relation(self, con: duckdb.DuckDBPyConnection, name: str) -> str:
        data = pa.concat_tables(self.parts) if self.parts else self.schema.empty_table()
        con.register(name, data)
        return f"SELECT * FROM {name}"


def _table_counts(con: duckdb.DuckDBPyConnection, lake: Lake, table: Table) -> str:
    """A fingerprint per row so a merge can report how many rows it changed."""
    return f"SELECT {table.key[0]} AS k, md5(CAST(t AS VARCHAR)) AS h FROM {lake.scan_sql(table)} t"


def sync_gamma(
    lake: Lake,
    client: GammaClient,
    kind: str,
    *,
    full: bool = False,
    rejects_path: Path | None = None,
    progress: Progress | None = None,
) -> GammaSyncReport:
    """Sync ``kind`` ("markets" or "events") from Gamma into the lake."""
    table = MARKETS if kind == "markets" else EVENTS
    report = GammaSyncReport(kind)
    collector = _Collector(kind, table, report)
    for closed in [False, True] if full else [False]:
        for page in client.listing(kind, closed=closed):
            collector.add(page)
            if progress and report.pages % 20 == 0:
                progress(f"{kind}: {report.pages} pages, {report.items:,} items")
    with connect() as con:
        key = table.key[0]
        unsettled = "NOT coalesce(closed, false)"
        if table is MARKETS:
            # Closed while UMA's answer is pending (proposed, disputed): not in the open
            # listing any more, but their status (and so their resolution) will still change.
            final = ", ".join(f"'{s}'" for s in sorted(FINAL_UMA_STATUSES))
            unsettled += (
                " OR (uma_resolution_status IS NOT NULL"
                f" AND lower(uma_resolution_status) NOT IN ({final}))"
            )
        stored_unsettled = {
            str(k)
            for (k,) in con.execute(
                f"SELECT {key} FROM {lake.scan_sql(table)} WHERE {unsettled}"
            ).fetchall()
        }
    missing = sorted(stored_unsettled - collector.ids)
    if missing and not full:
        # Open (or pending on UMA) in the lake, absent from the open listing: they closed
        # since, or their status may have moved. Ask by id.
        before = report.parsed
        for page in client.lookup(kind, "id", missing, closed=True):
            collector.add(page)
        report.refreshed_by_id = report.parsed - before
    report.requests, report.retries = client.stats.requests, client.stats.retries
    audit = client.audit.get(kind)
    report.audit_file = audit.close() if audit else None
    report.rejected = len(collector.rejects)
    report.reject_reasons = dict(Counter(_reason_kind(r[3]) for r in collector.rejects.rows))
    if rejects_path is not None:
        report.rejects_file = collector.rejects.write(rejects_path)
    with sync_lock(lake.root, MARKETS_LOCK), connect() as con:
        con.execute(f"CREATE TEMP TABLE before_merge AS {_table_counts(con, lake, table)}")
        fresh = collector.relation(con, f"fresh_{kind}")
        merge = merge_markets if kind == "markets" else merge_events
        report.rows_in_table = merge(con, lake, fresh)
        changed = con.execute(
            f"SELECT count(*) FROM ({_table_counts(con, lake, table)}) a "
            "LEFT JOIN before_merge b ON a.k = b.k WHERE b.h IS DISTINCT FROM a.h"
        ).fetchone()
        report.rows_changed = int(changed[0]) if changed else 0
    StateFile(lake.root, f"{kind}_gamma").save(
        {
            "source": "gamma",
            "updated_at": datetime.now(UTC).isoformat(),
            "full_listing": full,
            "rows_in_table": report.rows_in_table,
            "rows_changed": report.rows_changed,
            "rejected": report.rejected,
        }
    )
    if progress:
        progress(
            f"{kind}: {report.parsed:,} parsed, {report.rejected} rejected, "
            f"{report.rows_changed:,} new or changed, {report.rows_in_table:,} in the table"
        )
    return report


def _reason_kind(reason: str) -> str:
    """A short label for grouping rejects: the field the reason starts with."""
    return reason.split(" ", 1)[0] if reason else "(unknown)"


def unknown_tokens(con: duckdb.DuckDBPyConnection, lake: Lake, days: Iterable[date]) -> list[str]:
    """Outcome token ids of these days' fills that no market in the lake lists."""
    files = [f for d in days for f in lake.day_files(ORDER_FILLED.name, d)]
    if not files:
        return []
    create_token_map(con, lake)
    rows = con.execute(
        f"""
        SELECT DISTINCT CASE WHEN maker_asset_id = '0' THEN taker_asset_id
                             ELSE maker_asset_id END AS token
        FROM {lake.scan_sql(ORDER_FILLED, files)}
        WHERE token NOT IN (SELECT token_id FROM token_map)
        ORDER BY token
        """
    ).fetchall()
    return [str(t) for (t,) in rows]


def lookup_unknown_tokens(
    lake: Lake,
    client: GammaClient,
    days: Iterable[date],
    *,
    progress: Progress | None = None,
) -> TokenLookupReport:
    """Ask Gamma for the markets of tokens the lake does not know, open ones first."""
    report = TokenLookupReport()
    days = list(days)
    with connect() as con:
        wanted = set(unknown_tokens(con, lake, days))
    report.unknown_tokens = len(wanted)
    if not wanted:
        return report
    holder = GammaSyncReport("markets")
    collector = _Collector("markets", MARKETS, holder)
    remaining = set(wanted)
    for closed in (False, True):
        if not remaining:
            break
        for page in client.lookup("markets", "clob_token_ids", remaining, closed=closed):
            for row in collector.add(page):
                remaining.difference_update(row["token_ids"])
    report.requests = client.stats.requests
    report.markets_found = holder.parsed
    if holder.parsed:
        with sync_lock(lake.root, MARKETS_LOCK), connect() as con:
            merge_markets(con, lake, collector.relation(con, "looked_up_markets"))
    report.still_unknown = len(remaining)
    if progress:
        progress(
            f"token lookup: {report.unknown_tokens} unknown, {report.markets_found} markets "
            f"found, {report.still_unknown} still unknown"
        )
    return report
