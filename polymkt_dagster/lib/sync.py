"""Live sync of order fills (Goldsky or Polygon RPC) into the lake, resumable and bounded.

``sync_order_fills`` fetches a time window from the configured source in batches. After a
batch is merged into its day partitions (``merge.merge_order_fills``: union with what is
there, one row per fill id, each partition replaced atomically) the source's coverage is
saved in ``<lake>/_state/order_filled_<source>.json``; only then does the next batch start.
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

from polymkt_dagster.lib.config import Settings
from polymkt_dagster.lib.csv_source import Rejects
from polymkt_dagster.lib.duck import connect
from polymkt_dagster.lib.fill_source import FillSource
from polymkt_dagster.lib.gamma_client import AuditTrail, GammaClient
from polymkt_dagster.lib.goldsky import GoldskySource
from polymkt_dagster.lib.lake import Lake, rows_in_files
from polymkt_dagster.lib.market_sync import TokenLookupReport, lookup_unknown_tokens
from polymkt_dagster.lib.merge import merge_order_fills
from polymkt_dagster.lib.rpc import RpcSource
from polymkt_dagster.lib.schemas import ORDER_FILLED
from polymkt_dagster.lib.sync_state import Coverage, StateFile, sync_lock
from polymkt_dagster.lib.trades import DeriveReport, derive_trades

Progress = Callable[[str], None]
DEFAULT_BATCH_ROWS = 50_000
MEMORY_LIMIT_PERCENT = 80.0
# Right after midnight the previous day may still miss its last minutes.
MIDNIGHT_GRACE = timedelta(hours=1)


def fills_state(lake: Lake, source: str) -> StateFile:
    return StateFile(lake.root, f"order_filled_{source}")


def make_fill_source(settings: Settings, source: str | None = None) -> FillSource:
    name = source or settings.order_filled_source
    if name == "goldsky":
        return GoldskySource(settings.goldsky_orderbook_url)
    if name == "rpc":
        return RpcSource(settings.polygon_rpc_url, confirmations=settings.rpc_confirmations)
    raise ValueError(f"order fill source must be goldsky or rpc, not {name!r}")


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
    started = time.perf_counter()
    guard = memory_guard or MemoryGuard()
    report = FillSyncReport(source.name, window_start, window_end, dry_run=dry_run)
    rejects = Rejects()
    state_file = fills_state(lake, source.name)
    with sync_lock(lake.root, f"order_filled_{source.name}", timeout_s=300):
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
            if not dry_run and batch.table.num_rows:
                days.update(_merge_batch(lake, batch.table, report))
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
                    f"{source.name}: batch {report.batches}, {report.rows_fetched:,} fills "
                    f"fetched, position {position:,} of {high:,}"
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
    if rejects_path is not None and not dry_run:
        report.rejects_file = rejects.write(rejects_path)
    report.requests, report.retries = source.stats.requests, source.stats.retries
    report.elapsed_s = time.perf_counter() - started
    return report


def _merge_batch(lake: Lake, table: Any, report: FillSyncReport) -> set[date]:
    with connect() as con:
        con.register("fresh_fills", table)
        batch_days = [
            d for (d,) in con.execute(
                'SELECT DISTINCT CAST("timestamp" AS DATE) FROM fresh_fills'
            ).fetchall()
        ]  # fmt: skip
        old_files = [f for d in batch_days for f in lake.day_files(ORDER_FILLED.name, d)]
        before = rows_in_files(old_files)
        writes = merge_order_fills(con, lake, "SELECT * FROM fresh_fills")
    after = sum(w.rows for w in writes)
    report.rows_new += after - before
    report.duplicates += table.num_rows - (after - before)
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
    """Coverage of every fill source as times, for `polymkt sync status`."""
    document: dict[str, Any] = {}
    for name in ("goldsky", "rpc"):
        state = fills_state(lake, name).load()
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
