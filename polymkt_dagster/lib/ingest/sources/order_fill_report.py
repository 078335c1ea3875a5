"""What the streaming fill import counted and wrote (``FillImport``), and its accounting.

Every row of the file ends up in exactly one count (accepted, rejected, duplicate, outside
the requested days); ``account`` settles the counts once the file is read and checks them
against the file's records (``csv_source.RowAccounting``). The import's threads report the
seconds each stage was busy here too. Separate so the day writer and the import's flow
share one result without importing each other.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import date

from polymkt_dagster.lib.core.lake import PartitionWrite
from polymkt_dagster.lib.ingest.sources.csv_source import (
    CellBatches,
    CsvScan,
    Rejects,
    RowAccounting,
    physical_line,
)

# A row the canonical rules rejected: (record number, field, reason, raw line).
ValidationReject = tuple[int, str, str, str]


@dataclass
class FillImport:
    """What the streaming import counted and wrote."""

    rows_read: int = 0
    rows_accepted: int = 0  # distinct good rows inside the requested days
    rows_rejected: int = 0
    duplicates_dropped: int = 0
    rows_outside_window: int = 0
    accounting: RowAccounting | None = None
    partitions: dict[date, PartitionWrite] = field(default_factory=dict)
    # Wall seconds each stage was busy; the stages overlap (scan, main and writer threads),
    # so they add up to more than the import took. For benchmarks and logs.
    stage_seconds: dict[str, float] = field(default_factory=dict)
    _timing_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def timed(self, stage: str, started: float) -> None:
        elapsed = time.perf_counter() - started
        with self._timing_lock:  # the writer threads report too
            self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + elapsed

    def account(
        self,
        cells: CellBatches,
        scan: CsvScan,
        rejects: Rejects,
        validation_rejects: list[ValidationReject],
    ) -> None:
        """Settle the counts once the whole file is read, and check them (``RowAccounting``).

        Adds to ``rejects`` the rows the reader could not split (``cells.broken_lines``) and
        the rows the canonical rules rejected, at their physical line in the file.
        """
        rejected_before = len(rejects)
        broken = cells.broken_lines(rejects)
        self.rows_read += len(rejects) - rejected_before
        for record_no, field_name, reason, raw in validation_rejects:
            rejects.add(str(scan.path), physical_line(record_no, broken), field_name, reason, raw)
        self.rows_rejected = len(rejects) - rejected_before
        # rows_accepted counted every good row; a repeated fill id is a duplicate instead
        self.rows_accepted -= self.duplicates_dropped
        count = cells.line_count()
        self.accounting = RowAccounting(
            file=str(scan.path),
            records_in_file=count.records() if count else self.rows_read,
            rows_read=self.rows_read,
            accepted=self.rows_accepted,
            rejected=self.rows_rejected,
            duplicates=self.duplicates_dropped,
            outside_window=self.rows_outside_window,
        ).check()
