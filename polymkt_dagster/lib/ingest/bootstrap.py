"""Import poly_data CSV dumps (and Gamma-shaped JSON) into the raw layer of the lake.

Sources in the data dir:
    markets.csv      poly_data layout        ┐ merged by market id (JSON fields win,
    markets.json     Gamma-shaped markets    ┘ the CSV fills what JSON lacks)
    events.json / events.csv                 optional; else derived from the markets
    orderFilled.csv  poly_data layout        → raw/polymarket/order_filled (daily)
    trades.csv       poly_data layout        → used only when orderFilled.csv is absent
    ctfEvents.csv    §3.1 layout             → raw/polymarket/ctf_events (daily; ctf_csv)

Order fills are merged into their day partitions (union with what is there, deduplicated
on the fill id), so importing the same file twice, or a file overlapping a live sync,
never duplicates a row; each partition is replaced atomically. orderFilled.csv is read
once, streamed day by day (``order_fill_csv``), with memory bounded whatever its size.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from polymkt_dagster.lib.core.duck import connect, spill_dir, sql_string
from polymkt_dagster.lib.core.lake import Lake, PartitionWrite
from polymkt_dagster.lib.core.schemas import (
    EVENTS,
    MARKETS,
    ORDER_FILLED,
    POLY_DATA_MARKETS_COLUMNS,
    POLY_DATA_ORDER_FILLED_COLUMNS,
    Table,
)
from polymkt_dagster.lib.ingest import normalize as n
from polymkt_dagster.lib.ingest.merge import merge_events, merge_markets
from polymkt_dagster.lib.ingest.sources.csv_source import (
    Rejects,
    RowAccounting,
    SourceFileError,
    read_records,
    records_table,
    reject_expressions,
    scan_csv,
)
from polymkt_dagster.lib.ingest.sources.gamma import GammaShapeError, parse_event, parse_market
from polymkt_dagster.lib.ingest.sources.json_source import raw_record, read_json_records

Progress = Callable[[str], None]

MARKETS_CSV = "markets.csv"
MARKETS_JSON = ("markets.json", "markets.jsonl")
EVENTS_JSON = ("events.json", "events.jsonl")
EVENTS_CSV = "events.csv"
ORDER_FILLED_CSV = "orderFilled.csv"
TRADES_CSV = "trades.csv"


@dataclass
class ImportReport:
    """What one import read, accepted, rejected and wrote; shown as asset metadata."""

    table: str
    source_files: list[str] = field(default_factory=list)
    rows_read: int = 0
    rows_accepted: int = 0
    rows_rejected: int = 0
    duplicates_dropped: int = 0
    rows_written: int = 0
    rejects_path: Path | None = None
    rejects_by_field: dict[str, int] = field(default_factory=dict)
    partitions: list[PartitionWrite] = field(default_factory=list)
    output_path: Path | None = None
    # wall seconds per stage of a streaming import (overlapping: threads)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    # per source file: its records = accepted + rejected + duplicates (checked, see
    # csv_source.RowAccounting)
    accounting: list[RowAccounting] = field(default_factory=list)
    rows_by_event: dict[str, int] = field(default_factory=dict)  # ctf_events only

    def absorb_rejects(self, rejects: Rejects, target: Path) -> None:
        self.rows_rejected = len(rejects)
        self.rejects_by_field = rejects.by_field()
        self.rejects_path = rejects.write(target)


def rejects_file(data_dir: Path, table: str, source: Path) -> Path:
    return data_dir / "rejects" / table / f"{source.name}.rejects.csv"


def _first_existing(data_dir: Path, names: Sequence[str]) -> Path | None:
    for name in names:
        if (data_dir / name).is_file():
            return data_dir / name
    return None


# ---------------------------------------------------------------------------------------
# Order fills
# ---------------------------------------------------------------------------------------


def import_order_filled(
    data_dir: Path,
    lake: Lake,
    *,
    start: date | None = None,
    end: date | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Merge orderFilled.csv into the order_filled day partitions within [start, end]."""
    report = ImportReport(table=ORDER_FILLED.name)
    source = data_dir / ORDER_FILLED_CSV
    if not source.is_file():
        return report
    report.source_files.append(str(source))
    # Imported here: its compiled kernels load on import (~0.5 s), which only this needs.
    from polymkt_dagster.lib.ingest.sources.order_fill_csv import import_fill_csv

    rejects = Rejects()
    with _import_connection(data_dir) as con:
        scan = scan_csv(con, source, POLY_DATA_ORDER_FILLED_COLUMNS)
        imported = import_fill_csv(
            con,
            scan,
            lake,
            rejects,
            start=start,
            end=end,
            spill_dir=spill_dir(data_dir),
            progress=progress,
        )
    report.absorb_rejects(rejects, rejects_file(data_dir, ORDER_FILLED.name, source))
    report.rows_read = imported.rows_read
    report.rows_accepted = imported.rows_accepted
    report.duplicates_dropped = imported.duplicates_dropped
    if imported.accounting:
        report.accounting.append(imported.accounting)
    report.stage_seconds = imported.stage_seconds
    report.partitions = [imported.partitions[day] for day in sorted(imported.partitions)]
    report.rows_written = sum(p.rows for p in report.partitions)
    return report


def import_ctf_events(
    data_dir: Path,
    lake: Lake,
    *,
    start: date | None = None,
    end: date | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Merge ctfEvents.csv (docs/architecture.md §3.1) into the ctf_events day partitions."""
    from polymkt_dagster.lib.ingest.sources.ctf_csv import CTF_EVENTS_CSV, import_ctf_csv

    report = ImportReport(table="ctf_events")
    source = data_dir / CTF_EVENTS_CSV
    if not source.is_file():
        return report
    report.source_files.append(str(source))
    rejects = Rejects()
    imported = import_ctf_csv(source, lake, rejects, start=start, end=end, progress=progress)
    report.absorb_rejects(rejects, rejects_file(data_dir, "ctf_events", source))
    report.rows_read = imported.rows_read + sum(1 for r in rejects.rows if r[2] == "(row)")
    report.rows_accepted = imported.rows_accepted
    report.partitions = imported.partitions
    report.rows_written = sum(p.rows for p in imported.partitions)
    report.rows_by_event = imported.rows_by_event
    return report


# ---------------------------------------------------------------------------------------
# Markets and events
# ---------------------------------------------------------------------------------------


def _arrow_table(
    rows: list[dict[str, Any]], table: Table, con: duckdb.DuckDBPyConnection
) -> pa.Table:
    """Rows as an Arrow table with the canonical DuckDB types (via a typed empty select)."""
    schema = con.execute(table.typed_empty_select()).arrow().schema
    return pa.Table.from_pylist(rows, schema=schema)


# The canonical values two rows of one market id are compared on (conflict or duplicate).
_MARKET_CSV_CONTENT = (
    "condition_id", "question", "slug", "event_slug", "neg_risk", "outcomes", "token1",
    "token2", "created_at", "closed_time", "volume",
)  # fmt: skip


def _stage_markets_csv(
    con: duckdb.DuckDBPyConnection, path: Path, rejects: Rejects
) -> RowAccounting:
    """Stage markets.csv as ``staged_markets_csv``; rejects recorded; the row accounting.

    A market id repeated with the same content is a duplicate; with different content, a
    conflict: the later row (a dump is appended to) is kept and each earlier one is rejected
    with a reason naming both lines and the fields that differ.
    """
    records = read_records(path, POLY_DATA_MARKETS_COLUMNS)
    records.add_broken_to(rejects)
    con.register("markets_csv_records", records_table(records))
    checks = [
        ("id", "market_id IS NULL", "'market id is empty'"),
        (
            "condition_id",
            "condition_id IS NULL AND nullif(trim(raw_condition_id), '') IS NOT NULL",
            "format('invalid condition id \"{}\"', raw_condition_id)",
        ),
        (
            "token1",
            "token1 IS NULL AND nullif(trim(raw_token1), '') IS NOT NULL",
            "format('invalid token id \"{}\"', raw_token1)",
        ),
        (
            "token2",
            "token2 IS NULL AND nullif(trim(raw_token2), '') IS NOT NULL",
            "format('invalid token id \"{}\"', raw_token2)",
        ),
        (
            "createdAt",
            "created_at IS NULL AND nullif(trim(raw_created), '') IS NOT NULL",
            "format('unparsable timestamp \"{}\"', raw_created)",
        ),
        (
            "closedTime",
            "closed_time IS NULL AND nullif(trim(raw_closed), '') IS NOT NULL",
            "format('unparsable timestamp \"{}\"', raw_closed)",
        ),
        (
            "volume",
            "volume IS NULL AND nullif(trim(raw_volume), '') IS NOT NULL",
            "format('volume \"{}\" is not a number', raw_volume)",
        ),
    ]
    field_case, reason_case, _ = reject_expressions(checks, records.header)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE staged_markets_csv AS
        WITH norm AS (
            SELECT
                record_no, line_no,
                {n.sql_trimmed("id")} AS market_id,
                {n.sql_tx_hash("condition_id")} AS condition_id,
                {n.sql_token_id("token1")} AS token1,
                {n.sql_token_id("token2")} AS token2,
                {n.sql_timestamp('"createdAt"')} AS created_at,
                {n.sql_timestamp('"closedTime"')} AS closed_time,
                {n.sql_double("volume")} AS volume,
                condition_id AS raw_condition_id, token1 AS raw_token1, token2 AS raw_token2,
                "createdAt" AS raw_created, "closedTime" AS raw_closed, volume AS raw_volume,
                {n.sql_trimmed("question")} AS question,
                {n.sql_trimmed("market_slug")} AS slug,
                {n.sql_trimmed("ticker")} AS event_slug,
                {n.sql_bool("neg_risk")} AS neg_risk,
                list_filter([{n.sql_trimmed("answer1")}, {n.sql_trimmed("answer2")}],
                            x -> x IS NOT NULL) AS outcomes,
                raw_text AS raw_line
            FROM markets_csv_records
        )
        SELECT *, {field_case} AS reject_field, {reason_case} AS reject_reason FROM norm
        """
    )
    for line, field_name, reason, raw in con.execute(
        "SELECT line_no, reject_field, reject_reason, raw_line FROM staged_markets_csv "
        "WHERE reject_field IS NOT NULL ORDER BY line_no"
    ).fetchall():
        rejects.add(str(path), int(line), field_name, reason, raw)
    duplicates, conflicts = _repeated_market_ids(con, path, rejects)
    staged = _count(con, "SELECT count(*) FROM staged_markets_csv")
    invalid = _count(con, "SELECT count(*) FROM staged_markets_csv WHERE reject_field IS NOT NULL")
    return RowAccounting(
        file=str(path),
        records_in_file=records.records_in_file,
        rows_read=staged + len(records.broken),
        accepted=staged - invalid - duplicates - conflicts,
        rejected=len(records.broken) + invalid + conflicts,
        duplicates=duplicates,
    ).check()


def _repeated_market_ids(
    con: duckdb.DuckDBPyConnection, path: Path, rejects: Rejects
) -> tuple[int, int]:
    """Duplicates and conflicts among the valid rows of a repeated market id (see
    ``_stage_markets_csv``); conflicts are rejected. Returns (duplicates, conflicts)."""
    content = ", ".join(_MARKET_CSV_CONTENT)
    rows = con.execute(
        f"""
        SELECT market_id, line_no, raw_line, {content} FROM staged_markets_csv
        WHERE reject_field IS NULL AND market_id IN (
            SELECT market_id FROM staged_markets_csv WHERE reject_field IS NULL
            GROUP BY market_id HAVING count(*) > 1)
        ORDER BY market_id, record_no
        """
    ).fetchall()
    by_id: dict[str, list[tuple]] = {}
    for row in rows:
        by_id.setdefault(row[0], []).append(row)
    duplicates = conflicts = 0
    for market_id, repeats in by_id.items():
        kept = repeats[-1]
        for earlier in repeats[:-1]:
            differing = [
                name
                for name, a, b in zip(_MARKET_CSV_CONTENT, earlier[3:], kept[3:], strict=True)
                if a != b
            ]
            if not differing:
                duplicates += 1
                continue
            conflicts += 1
            rejects.add(
                str(path),
                int(earlier[1]),
                "id",
                f"market id {market_id} appears again on line {kept[1]} with a different "
                f"{', '.join(differing)}: the later row (line {kept[1]}) is kept, this one "
                f"(line {earlier[1]}) is rejected",
                earlier[2],
            )
    return duplicates, conflicts


def _markets_from_csv_sql() -> str:
    """Canonical rows from the staged poly_data CSV (later rows win on a repeated id).

    The CSV has neither prices nor a UMA status, so its rows are never resolved by Gamma's
    rule (the chain, or a Gamma row of the same market, resolves them). Its ``neg_risk`` is
    ``negRiskAugmented or negRiskOther``, not Gamma's ``negRisk``: it is kept only for markets
    no Gamma payload describes (a Gamma row wins the merge, see ``_prefer_first``).
    """
    return """
        SELECT
            market_id, condition_id, NULL AS question_id, question, slug,
            NULL AS description, NULL AS category, CAST([] AS VARCHAR[]) AS tags,
            NULL AS event_id, event_slug, NULL AS event_title,
            coalesce(neg_risk, false) AS neg_risk, NULL AS neg_risk_market_id,
            NULL AS group_item_title, outcomes,
            list_filter([token1, token2], x -> x IS NOT NULL) AS token_ids,
            CAST([] AS DOUBLE[]) AS outcome_prices,
            created_at, NULL AS start_date, NULL AS end_date,
            closed_time IS NOT NULL AS closed, closed_time, volume,
            NULL AS liquidity, NULL AS uma_resolution_status, false AS resolved,
            NULL AS winning_outcome_index, NULL AS payouts, NULL AS resolution_source,
            NULL AS updated_at
        FROM staged_markets_csv
        WHERE reject_field IS NULL
        QUALIFY row_number() OVER (PARTITION BY market_id ORDER BY record_no DESC) = 1
    """


def _load_json_source(
    path: Path, kind: str, rejects: Rejects
) -> tuple[list[dict[str, Any]], RowAccounting]:
    """The parsed rows of a JSON/JSON-lines dump; a malformed record is rejected with its
    line (a document: its position) and the others land. Repeats of an id are counted as
    duplicates (which one wins is decided by the caller's merge)."""
    found = read_json_records(path, kind)
    for line, reason, raw in found.broken:
        rejects.add(str(path), line, "(record)", reason, raw)
    parse = parse_market if kind == "markets" else parse_event
    key = "market_id" if kind == "markets" else "event_id"
    rows: list[dict[str, Any]] = []
    invalid = 0
    for line, payload in found.records:
        try:
            rows.append(parse(payload))
        except GammaShapeError as exc:
            invalid += 1
            rejects.add(str(path), line, "(record)", str(exc), raw_record(payload))
    distinct = len({row[key] for row in rows})
    accounting = RowAccounting(
        file=str(path),
        records_in_file=found.records_in_file,
        rows_read=len(found.records) + len(found.broken),
        accepted=distinct,
        rejected=len(found.broken) + invalid,
        duplicates=len(rows) - distinct,
    ).check()
    return rows, accounting


def _prefer_first(columns: Sequence[tuple[str, str]], first: str, second: str) -> str:
    """Column-wise COALESCE of two aliases; an empty list counts as missing."""
    parts = []
    for name, ctype in columns:
        if name == "market_id":
            parts.append(f"coalesce({first}.market_id, {second}.market_id) AS market_id")
        elif ctype.endswith("[]"):
            parts.append(
                f"CASE WHEN len({first}.{name}) > 0 THEN {first}.{name} "
                f"ELSE coalesce({second}.{name}, {first}.{name}) END AS {name}"
            )
        else:
            parts.append(f"coalesce({first}.{name}, {second}.{name}) AS {name}")
    return ", ".join(parts)


def import_markets(data_dir: Path, lake: Lake, *, progress: Progress | None = None) -> ImportReport:
    """Build raw/polymarket/markets.parquet from markets.csv and/or markets.json.

    Rows already in the lake (e.g. from the Gamma sync) are kept; where the same market
    comes from both, the row with the newer ``updated_at`` wins, imported rows on a tie.
    """
    report = ImportReport(table=MARKETS.name)
    csv_path = data_dir / MARKETS_CSV
    json_path = _first_existing(data_dir, MARKETS_JSON)
    rejects = Rejects()
    with _import_connection(data_dir) as con:
        con.execute(f"CREATE OR REPLACE TEMP TABLE csv_markets AS {MARKETS.typed_empty_select()}")
        if csv_path.is_file():
            report.source_files.append(str(csv_path))
            accounting = _stage_markets_csv(con, csv_path, rejects)
            report.accounting.append(accounting)
            report.rows_read += accounting.rows_read
            report.duplicates_dropped += accounting.duplicates
            con.execute(f"INSERT INTO csv_markets BY NAME {_markets_from_csv_sql()}")
        json_rows: list[dict[str, Any]] = []
        if json_path:
            report.source_files.append(str(json_path))
            json_rows, accounting = _load_json_source(json_path, "markets", rejects)
            report.accounting.append(accounting)
            report.rows_read += accounting.rows_read
            report.duplicates_dropped += accounting.duplicates
        con.register("json_markets", _arrow_table(json_rows, MARKETS, con))
        if progress:
            progress(f"markets: {report.rows_read} source rows read")
        merged_sources = (
            f"SELECT {_prefer_first(MARKETS.columns, 'j', 'c')} "
            "FROM (SELECT * FROM json_markets QUALIFY row_number() OVER "
            "(PARTITION BY market_id ORDER BY updated_at DESC NULLS LAST) = 1) j "
            "FULL OUTER JOIN csv_markets c ON j.market_id = c.market_id"
        )
        report.rows_accepted = _count(con, f"SELECT count(*) FROM ({merged_sources})")
        con.execute(f"CREATE OR REPLACE TEMP TABLE fresh_markets AS {merged_sources}")
        _fill_event_titles(con, data_dir)
        report.rows_written = merge_markets(con, lake, "SELECT * FROM fresh_markets")
        report.output_path = lake.single_file(MARKETS.name)
    report.absorb_rejects(rejects, data_dir / "rejects" / MARKETS.name / "markets.rejects.csv")
    return report


def _fill_event_titles(con: duckdb.DuckDBPyConnection, data_dir: Path) -> None:
    """poly_data's CSV knows only the event slug: take ids and titles from events.json."""
    json_path = _first_existing(data_dir, EVENTS_JSON)
    if not json_path:
        return
    try:
        payloads = [payload for _, payload in read_json_records(json_path, "events").records]
    except SourceFileError:
        return  # reported by the events import
    links: list[dict[str, Any]] = []
    for payload in payloads:
        try:
            event = parse_event(payload)
        except GammaShapeError:
            continue
        for market_id in event["market_ids"]:
            links.append(
                {
                    "market_id": market_id,
                    "event_id": event["event_id"],
                    "event_slug": event["slug"],
                    "event_title": event["title"],
                    "category": event["category"],
                    "tags": event["tags"],
                }
            )
    if not links:
        return
    event_links = pa.Table.from_pylist(
        links,
        schema=pa.schema(
            [
                ("market_id", pa.string()),
                ("event_id", pa.string()),
                ("event_slug", pa.string()),
                ("event_title", pa.string()),
                ("category", pa.string()),
                ("tags", pa.list_(pa.string())),
            ]
        ),
    )
    con.register("event_links", event_links)
    con.execute(
        """
        UPDATE fresh_markets AS m SET
            event_id = coalesce(m.event_id, l.event_id),
            event_slug = coalesce(m.event_slug, l.event_slug),
            event_title = coalesce(m.event_title, l.event_title),
            category = coalesce(m.category, l.category),
            tags = CASE WHEN len(m.tags) > 0 THEN m.tags ELSE l.tags END
        FROM (SELECT * FROM event_links
              QUALIFY row_number() OVER (PARTITION BY market_id ORDER BY event_id) = 1) AS l
        WHERE m.market_id = l.market_id
        """
    )


_EVENTS_CSV_ALIASES = {
    "event_id": "id",
    "neg_risk": "negRisk",
    "neg_risk_market_id": "negRiskMarketID",
    "start_date": "startDate",
    "end_date": "endDate",
    "market_ids": "markets",
}


def _events_from_csv(path: Path, rejects: Rejects) -> tuple[list[dict[str, Any]], RowAccounting]:
    records = read_records(path, ["id"] if "id" in _peek_header(path) else ["event_id"])
    records.add_broken_to(rejects)
    names = [_EVENTS_CSV_ALIASES.get(name, name) for name in records.header]
    rows: list[dict[str, Any]] = []
    for line, cells, raw in records.rows:
        payload: dict[str, Any] = dict(zip(names, cells, strict=True))
        markets = payload.get("markets")
        if isinstance(markets, str):
            payload["markets"] = [
                {"id": m.strip()} for m in markets.replace(";", ",").split(",") if m.strip()
            ]
        try:
            rows.append(parse_event(payload))
        except GammaShapeError as exc:
            rejects.add(str(path), line, "(record)", str(exc), raw)
    distinct = len({row["event_id"] for row in rows})
    accounting = RowAccounting(
        file=str(path),
        records_in_file=records.records_in_file,
        rows_read=len(records.rows) + len(records.broken),
        accepted=distinct,
        rejected=len(records.broken) + len(records.rows) - len(rows),
        duplicates=len(rows) - distinct,
    ).check()
    return rows, accounting


def _peek_header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [h.strip().lstrip("\ufeff") for h in next(csv.reader(handle), [])]


def import_events(data_dir: Path, lake: Lake, *, progress: Progress | None = None) -> ImportReport:
    """Build raw/polymarket/events.parquet from events.json/.csv, else from the markets."""
    report = ImportReport(table=EVENTS.name)
    rejects = Rejects()
    rows: list[dict[str, Any]] = []
    json_path = _first_existing(data_dir, EVENTS_JSON)
    if json_path:
        report.source_files.append(str(json_path))
        json_rows, accounting = _load_json_source(json_path, "events", rejects)
        rows += json_rows
        report.accounting.append(accounting)
    csv_path = data_dir / EVENTS_CSV
    if csv_path.is_file():
        report.source_files.append(str(csv_path))
        csv_rows, accounting = _events_from_csv(csv_path, rejects)
        rows += csv_rows
        report.accounting.append(accounting)
    report.rows_read = sum(a.rows_read for a in report.accounting)
    report.duplicates_dropped = sum(a.duplicates for a in report.accounting)
    with _import_connection(data_dir) as con:
        con.register("imported", _arrow_table(rows, EVENTS, con))
        markets = lake.scan_sql(MARKETS)
        # Events only known through their markets (a CSV-only dump) are derived from them,
        # and every event's market list is completed from the markets that point at it.
        derived = f"""
            SELECT event_id, any_value(event_slug) AS slug, any_value(event_slug) AS ticker,
                   any_value(event_title) AS title, NULL AS description,
                   any_value(category) AS category, any_value(tags) AS tags,
                   bool_or(neg_risk) AS neg_risk,
                   any_value(neg_risk_market_id) AS neg_risk_market_id,
                   min(start_date) AS start_date, max(end_date) AS end_date,
                   bool_and(coalesce(closed, false)) AS closed, sum(volume) AS volume,
                   sum(liquidity) AS liquidity, list(market_id ORDER BY market_id) AS market_ids
            FROM {markets} WHERE event_id IS NOT NULL GROUP BY event_id
        """
        combined = f"""
            SELECT {_prefer_first_events("i", "d")}
            FROM (SELECT * FROM imported QUALIFY row_number() OVER
                  (PARTITION BY event_id ORDER BY end_date DESC NULLS LAST) = 1) i
            FULL OUTER JOIN ({derived}) d ON i.event_id = d.event_id
        """
        report.rows_accepted = sum(a.accepted for a in report.accounting)
        report.rows_written = merge_events(con, lake, combined)
        report.output_path = lake.single_file(EVENTS.name)
    if progress:
        progress(f"events: {report.rows_written} events written")
    report.absorb_rejects(rejects, data_dir / "rejects" / EVENTS.name / "events.rejects.csv")
    return report


def _prefer_first_events(first: str, second: str) -> str:
    parts = []
    for name, ctype in EVENTS.columns:
        if name == "event_id":
            parts.append(f"coalesce({first}.event_id, {second}.event_id) AS event_id")
        elif name == "market_ids":
            parts.append(
                f"list_sort(list_distinct(list_concat(coalesce({first}.market_ids, []), "
                f"coalesce({second}.market_ids, [])))) AS market_ids"
            )
        elif ctype.endswith("[]"):
            parts.append(
                f"CASE WHEN len({first}.{name}) > 0 THEN {first}.{name} "
                f"ELSE coalesce({second}.{name}, {first}.{name}) END AS {name}"
            )
        else:
            parts.append(f"coalesce({first}.{name}, {second}.{name}) AS {name}")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row else 0


def _import_connection(data_dir: Path) -> duckdb.DuckDBPyConnection:
    return connect(":memory:", temp_dir=spill_dir(data_dir))


__all__ = [
    "ImportReport",
    "SourceFileError",
    "import_events",
    "import_markets",
    "import_order_filled",
    "sql_string",
]


def source_day_range(data_dir: Path) -> tuple[date, date] | None:
    """First and last UTC day of the order fills (or trades) CSV, for the pipeline's range,
    widened to the days of ctfEvents.csv when there is one."""
    fills = _fill_day_range(data_dir)
    events = _csv_day_range(data_dir / "ctfEvents.csv", "timestamp", data_dir)
    if fills is None or events is None:
        return fills or events
    return min(fills[0], events[0]), max(fills[1], events[1])


def _csv_day_range(path: Path, column: str, data_dir: Path) -> tuple[date, date] | None:
    if not path.is_file():
        return None
    with _import_connection(data_dir) as con:
        expr = n.sql_timestamp(f'"{column}"')
        try:
            source = _guarded_column(con, path, column)
        except pa.ArrowInvalid:  # e.g. a timestamp cell that is not UTF-8
            source = (
                f"read_csv({sql_string(path)}, header = true, all_varchar = true, "
                "ignore_errors = true)"
            )
        row = con.execute(
            f"SELECT min(CAST(ts AS DATE)), max(CAST(ts AS DATE)) FROM ("
            f"SELECT {expr} AS ts FROM {source}) WHERE "
            f"{n.sql_timestamp_in_range('ts')}"
        ).fetchone()
    return (row[0], row[1]) if row and row[0] is not None else None


def _fill_day_range(data_dir: Path) -> tuple[date, date] | None:
    for name in (ORDER_FILLED_CSV, TRADES_CSV):
        found = _csv_day_range(data_dir / name, "timestamp", data_dir)
        if found is not None:
            return found
    return None


def _guarded_column(con: duckdb.DuckDBPyConnection, path: Path, column: str) -> str:
    """One text column of a CSV read through ``csv_lines.GuardedLines`` like the import, so a
    stray quote cannot hide the rows after it; registered, its relation name returned."""
    import pyarrow.csv as pa_csv

    from polymkt_dagster.lib.ingest.csv_lines import CHUNK_BYTES, GuardedLines
    from polymkt_dagster.lib.ingest.sources.csv_source import read_header

    header = read_header(path, [column])
    with GuardedLines(path) as guarded:
        table = pa_csv.read_csv(
            guarded,
            read_options=pa_csv.ReadOptions(
                skip_rows=1, column_names=header, block_size=CHUNK_BYTES
            ),
            parse_options=pa_csv.ParseOptions(
                newlines_in_values=False,
                invalid_row_handler=lambda _row: "skip",  # the import reports them
            ),
            convert_options=pa_csv.ConvertOptions(
                include_columns=[column], column_types={column: pa.string()}
            ),
        )
    con.register("source_column", table)
    return "source_column"
