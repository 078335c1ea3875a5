"""Alerts when a watched wallet trades above its size threshold, with a cooldown.

A candidate is one of a watched wallet's own fills (maker == wallet) whose USDC size is at
least the wallet's ``alert_min_usd``. Per (wallet, market) an alert opens a cooldown window:
candidates inside it are suppressed (counted, not written), the first one after it alerts
again. Alerts are day-partitioned like the trades; recomputing a day reads the last alert
before that day from the earlier partitions, so re-running gives the same rows.

Delivery to a webhook is optional: each alert not yet delivered is POSTed as JSON and
retried with exponential backoff on connection errors, timeouts, 429 and 5xx. Delivery
state lives in SQLite beside the lake, so an alert is sent once however often the asset
re-runs; a URL's path and query (where tokens live) never reach logs or metadata.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import duckdb
import httpx
import pyarrow as pa

from polymkt_dagster.lib.core.lake import DAY_COLUMN, Lake, PartitionWrite
from polymkt_dagster.lib.core.schemas import MARKETS, TRADES
from polymkt_dagster.lib.wallets.watchlists import WatchedSet

ALERTS_TABLE = "analytics/wallets/alerts"
ALERT_SCHEMA = pa.schema(
    [
        ("alert_id", pa.string()),
        ("alerted_at", pa.timestamp("us", tz="UTC")),
        ("wallet", pa.string()),
        ("label", pa.string()),
        ("market_id", pa.string()),
        ("question", pa.string()),
        ("outcome", pa.string()),
        ("side", pa.string()),
        ("size_usd", pa.float64()),
        ("shares", pa.float64()),
        ("price", pa.float64()),
        ("threshold_usd", pa.float64()),
        ("cooldown_minutes", pa.float64()),
        ("transaction_hash", pa.string()),
        ("order_fill_id", pa.string()),
    ]
)


@dataclass
class AlertsReport:
    days: list[date]
    candidates: int = 0
    alerts: int = 0
    suppressed: int = 0
    writes: list[PartitionWrite] = field(default_factory=list)
    table: pa.Table | None = None


def alert_id(wallet: str, order_fill_id: str) -> str:
    return hashlib.sha1(f"{wallet}|{order_fill_id}".encode()).hexdigest()[:20]


def _previous_alerts(con: duckdb.DuckDBPyConnection, lake: Lake, before: date) -> dict:
    """Last alert time per (wallet, market) in partitions before ``before``."""
    files = [f for f in lake.files(ALERTS_TABLE) if _day_of(f) < before]
    if not files:
        return {}
    file_list = "[" + ", ".join(f"'{f}'" for f in files) + "]"
    rows = con.execute(
        f"SELECT wallet, market_id, max(alerted_at) FROM read_parquet({file_list}) GROUP BY ALL"
    ).fetchall()
    return {(w, m): t for w, m, t in rows}


def _day_of(path: Path) -> date:
    parts = {p.split("=")[0]: p.split("=")[1] for p in path.parts if "=" in p}
    return date(int(parts["year"]), int(parts["month"]), int(parts["day"]))


def build_alerts(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    watched: WatchedSet,
    days: Sequence[date],
) -> AlertsReport:
    """Rewrite the alert partitions of ``days`` (sorted, each day replaced whole)."""
    days = sorted(set(days))
    report = AlertsReport(days=list(days))
    if not days:
        return report
    rules = watched.rules_table()
    con.register("_alert_rules", rules)
    files = lake.files(TRADES.name, start=days[0], end=days[-1])
    try:
        candidates = con.execute(
            f"""
            SELECT t."timestamp" AS alerted_at, t.maker AS wallet, r.label, t.market_id,
                   m.question, t.outcome, t.maker_direction AS side, t.usd_amount AS size_usd,
                   t.token_amount AS shares, t.price, r.alert_min_usd AS threshold_usd,
                   r.cooldown_minutes, t.transaction_hash, t.order_fill_id
            FROM {lake.scan_sql(TRADES, files)} t
            JOIN _alert_rules r ON r.wallet = t.maker
            LEFT JOIN (SELECT market_id, question FROM {lake.scan_sql(MARKETS)}) m
              USING (market_id)
            WHERE t.usd_amount >= r.alert_min_usd
            ORDER BY t.maker, t.market_id, t."timestamp", t.order_fill_id
            """
        ).to_arrow_table()
    finally:
        con.unregister("_alert_rules")
    report.candidates = candidates.num_rows
    last_alert = _previous_alerts(con, lake, days[0])
    keep: list[int] = []
    # Candidates are few (only watched wallets above a size threshold): a plain loop over
    # them applies the cooldown exactly, in time order per (wallet, market).
    for i, row in enumerate(
        zip(
            candidates.column("wallet").to_pylist(),
            candidates.column("market_id").to_pylist(),
            candidates.column("alerted_at").to_pylist(),
            candidates.column("cooldown_minutes").to_pylist(),
            strict=True,
        )
    ):
        wallet, market, at, cooldown = row
        previous = last_alert.get((wallet, market))
        if previous is not None and at < previous + timedelta(minutes=cooldown):
            report.suppressed += 1
            continue
        last_alert[(wallet, market)] = at
        keep.append(i)
    alerts = candidates.take(pa.array(keep, pa.int64()))
    ids = [
        alert_id(w, f)
        for w, f in zip(
            alerts.column("wallet").to_pylist(),
            alerts.column("order_fill_id").to_pylist(),
            strict=True,
        )
    ]
    alerts = alerts.add_column(0, "alert_id", pa.array(ids, pa.string()))
    alerts = alerts.select(ALERT_SCHEMA.names).cast(ALERT_SCHEMA)
    report.alerts = alerts.num_rows
    report.table = alerts
    con.register("_alerts_new", alerts)
    try:
        reader = con.execute(
            f"SELECT *, CAST(alerted_at AS DATE) AS {DAY_COLUMN} FROM _alerts_new "
            f"ORDER BY {DAY_COLUMN}, alerted_at, alert_id"
        ).to_arrow_reader(65_536)
        report.writes = lake.write_sorted_days(ALERTS_TABLE, reader)
    finally:
        con.unregister("_alerts_new")
    written = {w.day for w in report.writes}
    for day in days:
        if day not in written:
            lake.remove_day(ALERTS_TABLE, day)
    return report


def list_alerts(
    lake: Lake, *, since: datetime | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """Alerts newest first, optionally since a time."""
    files = lake.files(ALERTS_TABLE, start=since.date() if since else None)
    if not files:
        return []
    from polymkt_dagster.lib.core.duck import connect, sql_string

    file_list = "[" + ", ".join(sql_string(f) for f in files) + "]"
    where = f"WHERE alerted_at >= TIMESTAMPTZ '{since.isoformat()}'" if since else ""
    with connect() as con:
        return (
            con.execute(
                f"SELECT * EXCLUDE (year, month, day) FROM read_parquet({file_list}, "
                f"hive_partitioning = true) {where} ORDER BY alerted_at DESC, alert_id"
                + (f" LIMIT {int(limit)}" if limit else "")
            )
            .to_arrow_table()
            .to_pylist()
        )


# ---- webhook delivery ---------------------------------------------------------------------


def redact_url(url: str) -> str:
    """scheme://host[:port]/… : webhook paths and queries often carry tokens."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}/…"


@dataclass
class DeliveryReport:
    target: str
    delivered: int = 0
    already_delivered: int = 0
    failed: int = 0
    attempts: int = 0
    errors: list[str] = field(default_factory=list)


class DeliveryLog:
    """Which alerts reached the webhook (SQLite: survives restarts, one row per alert)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(path)) as db, db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS deliveries (alert_id TEXT PRIMARY KEY, "
                "delivered_at TEXT, attempts INTEGER NOT NULL, last_error TEXT)"
            )

    def delivered(self, ids: Sequence[str]) -> set[str]:
        with closing(sqlite3.connect(self.path)) as db:
            found: set[str] = set()
            for start in range(0, len(ids), 500):
                chunk = list(ids[start : start + 500])
                marks = ",".join("?" * len(chunk))
                found |= {
                    r[0]
                    for r in db.execute(
                        f"SELECT alert_id FROM deliveries WHERE delivered_at IS NOT NULL "
                        f"AND alert_id IN ({marks})",
                        chunk,
                    )
                }
            return found

    def record(self, alert: str, attempts: int, error: str | None) -> None:
        delivered_at = None if error else datetime.now(UTC).isoformat()
        with closing(sqlite3.connect(self.path)) as db, db:
            db.execute(
                "INSERT INTO deliveries VALUES (?, ?, ?, ?) ON CONFLICT (alert_id) DO UPDATE "
                "SET delivered_at = excluded.delivered_at, "
                "attempts = deliveries.attempts + excluded.attempts, "
                "last_error = excluded.last_error",
                (alert, delivered_at, attempts, error),
            )


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}


def deliver_alerts(
    alerts: pa.Table,
    url: str,
    log: DeliveryLog,
    *,
    max_attempts: int = 4,
    backoff_s: float = 0.5,
    timeout_s: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryReport:
    """POST each undelivered alert as JSON; retry transient failures with backoff."""
    report = DeliveryReport(target=redact_url(url))
    rows = alerts.to_pylist()
    done = log.delivered([r["alert_id"] for r in rows])
    with httpx.Client(timeout=timeout_s) as client:
        for row in rows:
            if row["alert_id"] in done:
                report.already_delivered += 1
                continue
            error: str | None = None
            attempts = 0
            for attempt in range(1, max_attempts + 1):
                attempts = attempt
                report.attempts += 1
                try:
                    response = client.post(url, json={"type": "wallet_trade", **_jsonable(row)})
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__}"
                else:
                    if response.status_code < 300:
                        error = None
                        break
                    error = f"HTTP {response.status_code}"
                    if response.status_code < 500 and response.status_code != 429:
                        break  # the receiver refuses this alert: retrying will not help
                if attempt < max_attempts:
                    sleep(backoff_s * 2 ** (attempt - 1))
            log.record(row["alert_id"], attempts, error)
            if error is None:
                report.delivered += 1
            else:
                report.failed += 1
                report.errors.append(f"alert {row['alert_id']}: {error} after {attempts} tries")
    return report
