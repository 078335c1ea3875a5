"""Live sync of order fills (Goldsky or Polygon RPC) into the lake, resumable and bounded.

``sync_order_fills`` fetches a time window from the configured source in batches. After a
batch is merged into its day partitions (``merge.merge_order_fills``: union with what is
there, one row per fill id, each partition replaced atomically) the source's coverage is
saved in ``<lake>/_state/order_filled_<source>.json``; only then does the next batch start.
CTF position events (``sync_ctf_events``) run through the same loop into ``ctf_events`` with
their own state ``<lake>/_state/ctf_events_<source>.json``.
A crash therefore replays at most one batch, which the merge deduplicates: every event is
in the lake exactly once. ``max_batches`` bounds a run, ``dry_run`` fetches and counts
without writing, and the memory guard ends the run cleanly (state saved, nothing half
written) when the machine passes 80% memory use. Batches are bounded, DuckDB is capped at
1 GB and streams partitions out, so a sync stays well under 2 GB RSS.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil

from polymkt_dagster.lib.core.config import Settings
from polymkt_dagster.lib.core.duck import connect
from polymkt_dagster.lib.core.lake import Lake, rows_in_files
from polymkt_dagster.lib.core.schemas import CTF_EVENTS, ORDER_FILLED, Table
from polymkt_dagster.lib.ingest.market_sync import TokenLookupReport, lookup_unknown_tokens
from polymkt_dagster.lib.ingest.merge import merge_day_rows
from polymkt_dagster.lib.ingest.sources.csv_source import Rejects
from polymkt_dagster.lib.ingest.sources.ctf_events import rows_by_event
from polymkt_dagster.lib.ingest.sources.fill_source import FillSource
from polymkt_dagster.lib.ingest.sources.gamma_client import AuditTrail, GammaClient
from polymkt_dagster.lib.ingest.sources.registry import make_source, source_names
from polymkt_dagster.lib.ingest.sync_state import Coverage, StateFile, sync_lock
from polymkt_dagster.lib.ingest.trades import DeriveReport, derive_trades

Progress = Callable[[str], None]
DEFAULT_BATCH_ROWS = 50_000
MEMORY_LIMIT_PERCENT = 80.0
# Right after midnight the previous day may still miss its last minutes.
MIDNIGHT_GRACE = timedelta(hours=1)


def fills_state(lake: Lake, source: str) -> StateFile:
    return StateFile(lake.root, f"order_filled_{source}")


def ctf_events_state(lake: Lake, source: str) -> StateFile:
    return StateFile(lake.root, f"{CTF_EVENTS.name}_{source}")


def make_ctf_source(settings: Settings, source: str | None = None) -> FillSource:
    """The CTF position-event source (docs/architecture.md §3.1) named, or the configured one."""
    return make_source(settings, "ctf_events", source)


def make_fill_source(settings: Settings, source: str | None = None) -> FillSource:
    """The order-fill source named, or the configured one."""
    return make_source(settings, "order_filled", source)


def make_gamma_client(settings: Settings, lake: Lake, kinds: tuple[str, ...] = ()) -> GammaClient:
    audit = {kind: AuditTrail(lake.root, kind) for kind in kinds}
    return GammaClient(settings.gamma_api_url, audit=audit)


@dataclass
class FillSyncReport:
    source: str
    window_start: datetime
    window_end: datetime
    dry_run: bool = False
    start_position: int | None = None
    end_position: int | None = None
    head_position: int | None = None
    batches: int = 0
    rows_fetched: int = 0
    rows_new: int = 0
    duplicates: int = 0
    rejected: int = 0
    reject_reasons: dict[str, int] = field(default_factory=dict)
    rejects_file: Path | None = None
    days_written: list[date] = field(default_factory=list)
    stopped_reason: str | None = None  # None | "max_batches" | "memory"
    synced_until: datetime | None = None
    gaps: list[tuple[datetime, datetime]] = field(default_factory=list)
    requests: int = 0
    retries: int = 0
    elapsed_s: float = 0.0
    peak_rss_mb: float = 0.0
    table: str = ORDER_FILLED.name
    rows_by_event: dict[str, int] = field(default_factory=dict)  # ctf_events: fetched per event

    @property
    def complete(self) -> bool:
        return self.stopped_reason is None


class MemoryGuard:
    """Says stop when system memory use passes ``limit_percent`` (and tracks peak RSS)."""

    def __init__(self, limit_percent: float = MEMORY_LIMIT_PERCENT) -> None:
        self.limit_percent = limit_percent
        self.process = psutil.Process()
        self.peak_rss_mb = 0.0

    def over_limit(self) -> bool:
        self.peak_rss_mb = max(self.peak_rss_mb, self.process.memory_info().rss / 2**20)
        return psutil.virtual_memory().percent >= self.limit_percent


def sync_order_fills(
    lake: Lake,
    source: FillSource,
    window_start: datetime,
    window_end: datetime,
    *,
    max_batches: int | None = None,
    dry_run: bool = False,
    resync: bool = False,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    memory_guard: MemoryGuard | None = None,
    rejects_path: Path | None = None,
    progress: Progress | None = None,
) -> FillSyncReport:
    """Bring the fills of [window_start, window_end) into the lake (up to the source head).

    Positions already covered are skipped (``resync`` fetches them again, e.g. to repair a
    partition); a run resumes at the first uncovered position of its window.
    """
    return sync_events(
        lake, source, window_start, window_end, table=ORDER_FILLED, max_batches=max_batches,
        dry_run=dry_run, resync=resync, batch_rows=batch_rows, memory_guard=memory_guard,
        rejects_path=rejects_path, progress=progress,
    )  # fmt: skip


def sync_ctf_events(
    lake: Lake,
    source: FillSource,
    window_start: datetime,
    window_end: datetime,
    **options: Any,
) -> FillSyncReport:
    """Bring the CTF position events of [window_start, window_end) into the lake, exactly as
    the fills: own watermarks (``_state/ctf_events_<source>.json``), same batches, merge by id."""
    return sync_events(lake, source, window_start, window_end, table=CTF_EVENTS, **options)


def sync_events(
    lake: Lake,
    source: FillSource,
    window_start: datetime,
    window_end: datetime,
    *,
    table: Table,
    max_batches: int | None = None,
    dry_run: bool = False,
    resync: bool = False,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    memory_guard: MemoryGuard | None = None,
    rejects_path: Path | None = None,
    progress: Progress | None = None,
) -> FillSyncReport:
    """The sync loop of a day-partitioned raw event table (order_filled or ctf_events)."""
    started = time.perf_counter()
    guard = memory_guard or MemoryGuard()
    report = FillSyncReport(
        source.name, window_start, window_end, dry_run=dry_run, table=table.name
    )
    rejects = Rejects()
    state_name = f"{table.name}_{source.name}"
    state_file = StateFile(lake.root, state_name)
    by_event: Counter[str] = Counter()
    with sync_lock(lake.root, state_name, timeout_s=300):
        state = state_file.load()
        coverage = Coverage.from_json(state.get("coverage"))
        low = source.position_at(window_start)
        head = source.head()
        high = min(source.position_at(window_end), head)
        report.start_position, report.head_position = low, head
        position = low
        days: set[date] = set()
        while position < high:
            if not resync:
                position = coverage.first_uncovered(position)
                if position >= high:
                    break
            stop = high if resync else min(high, coverage.next_covered_start(position) or high)
            batch = source.fetch(position, stop, batch_rows)
            for reject in batch.rejects:
                rejects.add(reject.where, 0, reject.field, reject.reason, "")
            report.rows_fetched += batch.table.num_rows
            if "event" in batch.table.column_names:
                by_event.update(rows_by_event(batch.table))
            if not dry_run and batch.table.num_rows:
                days.update(_merge_batch(lake, table, batch.table, report))
            if not dry_run:
                coverage.add(batch.start, batch.next_position)
                state.update(
                    source=source.name,
                    coverage=coverage.to_json(),
                    position_unit=source.position_unit,
                    updated_at=datetime.now(UTC).isoformat(),
                )
                state_file.save(state)
            position = batch.next_position
            report.batches += 1
            if progress:
                progress(
                    f"{table.name} {source.name}: batch {report.batches}, "
                    f"{report.rows_fetched:,} rows fetched, position {position:,} of {high:,}"
                )
            if position >= high:
                break
            if max_batches is not None and report.batches >= max_batches:
                report.stopped_reason = "max_batches"
                break
            if guard.over_limit():
                report.stopped_reason = "memory"
                if progress:
                    progress(
                        f"memory use above {guard.limit_percent:g}%: stopping after batch "
                        f"{report.batches}; state saved, re-run to continue"
                    )
                break
        if not dry_run:
            # Saved even when nothing was new: updated_at is when the source was last checked
            # (what `polymkt status` reports as the last sync).
            state.update(
                source=source.name,
                coverage=coverage.to_json(),
                position_unit=source.position_unit,
                updated_at=datetime.now(UTC).isoformat(),
                last_run={"batches": report.batches, "rows_fetched": report.rows_fetched,
                          "stopped_reason": report.stopped_reason},
            )  # fmt: skip
            state_file.save(state)
        report.end_position = position
        report.days_written = sorted(days)
        if coverage.end is not None:
            report.synced_until = source.time_at(coverage.end)
        report.gaps = [
            (source.time_at(a), source.time_at(b))
            for a, b in coverage.gaps(low, min(high, coverage.end or low))
        ]
    guard.over_limit()
    report.peak_rss_mb = guard.peak_rss_mb
    report.rejected = len(rejects)
    report.reject_reasons = dict(Counter(r[2] for r in rejects.rows))
    report.rows_by_event = dict(by_event)
    if rejects_path is not None and not dry_run:
        report.rejects_file = rejects.write(rejects_path)
    report.requests, report.retries = source.stats.requests, source.stats.retries
    report.elapsed_s = time.perf_counter() - started
    return report


def _merge_batch(lake: Lake, table: Table, rows: Any, report: FillSyncReport) -> set[date]:
    with connect() as con:
        con.register("fresh_rows", rows)
        batch_days = [
            d for (d,) in con.execute(
                'SELECT DISTINCT CAST("timestamp" AS DATE) FROM fresh_rows'
            ).fetchall()
        ]  # fmt: skip
        old_files = [f for d in batch_days for f in lake.day_files(table.name, d)]
        before = rows_in_files(old_files)
        writes = merge_day_rows(con, lake, table, "SELECT * FROM fresh_rows")
    after = sum(w.rows for w in writes)
    report.rows_new += after - before
    report.duplicates += rows.num_rows - (after - before)
    return {w.day for w in writes}


@dataclass
class TradesRefreshReport:
    lookup: TokenLookupReport | None
    derive: DeriveReport


def refresh_trades(
    lake: Lake,
    days: list[date],
    *,
    gamma: GammaClient | None = None,
    progress: Progress | None = None,
) -> TradesRefreshReport:
    """Look up tokens the markets table lacks (when a client is given), then derive trades.

    Fills whose token is still unknown keep a NULL market and are counted, never dropped.
    """
    lookup = lookup_unknown_tokens(lake, gamma, days, progress=progress) if gamma else None
    with sync_lock(lake.root, "trades", timeout_s=300), connect() as con:
        derive = derive_trades(con, lake, days, progress=progress)
    return TradesRefreshReport(lookup, derive)


def window_for_days(days: list[date]) -> tuple[datetime, datetime]:
    first, last = min(days), max(days)
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    return start, end


def days_to_sync(now: datetime, synced_until: datetime | None) -> list[date]:
    """Today, and yesterday too right after midnight or while it is not fully synced."""
    today = now.astimezone(UTC).date()
    midnight = datetime(today.year, today.month, today.day, tzinfo=UTC)
    yesterday = today - timedelta(days=1)
    behind = synced_until is not None and synced_until < midnight
    if now - midnight < MIDNIGHT_GRACE or behind:
        return [yesterday, today]
    return [today]


def sync_status(lake: Lake) -> dict[str, Any]:
    """Coverage of every fill source (and CTF event source) for `polymkt sync status`."""
    document: dict[str, Any] = {}
    states = [(name, fills_state(lake, name)) for name in source_names("order_filled")]
    states += [
        (f"ctf_events_{name}", ctf_events_state(lake, name)) for name in source_names("ctf_events")
    ]
    for name, state_file in states:
        state = state_file.load()
        if not state:
            continue
        coverage = Coverage.from_json(state.get("coverage"))
        document[name] = {
            "unit": state.get("position_unit"),
            "intervals": coverage.to_json(),
            "updated_at": state.get("updated_at"),
            "synced_until_position": coverage.end,
        }
    return document
