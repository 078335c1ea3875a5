"""Validated CSV scanning: every cell read as text, bad rows kept with a reason.

Two readers give the same rows: DuckDB's ``read_csv`` (``scan_csv``, ``DuckDbCells``), and
pyarrow's streaming reader (``ArrowCells``), a third of DuckDB's CPU per row for a plain
dump, which hands over to DuckDB when a file needs more (``CsvReadFallback``).

A file that cannot be read at all (missing, not CSV, required columns absent) raises
``SourceFileError`` naming the file and what is wrong. A row that is malformed (wrong
column count, unterminated quote, a value failing validation) never stops the import: it
is written to a rejects file with its file, line, field and reason, and good rows land.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from polymkt_dagster.lib.core.duck import sql_string
from polymkt_dagster.lib.core.lake import write_atomically

if TYPE_CHECKING:  # csv_lines compiles numba kernels on import: loaded when a file is read
    from polymkt_dagster.lib.ingest.csv_lines import GuardedLines, LineCount

REJECT_COLUMNS = ("file", "line", "field", "reason", "raw")


class SourceFileError(ValueError):
    """An input file cannot be imported at all."""


class RowAccountingError(SourceFileError):
    """An import's rows do not add up to the records of its file: some row was lost."""


@dataclass(frozen=True)
class RowAccounting:
    """Where every record of one input file went.

    ``records_in_file`` is counted apart from the parser (``csv_lines.LineCount``: lines
    after the header that are not blank, or, for files whose values may span lines, the
    records the line reader found); ``check`` fails loudly when the sums differ.
    """

    file: str
    records_in_file: int
    rows_read: int
    accepted: int
    rejected: int
    duplicates: int
    outside_window: int = 0  # good rows outside the requested days (partitioned imports)

    def check(self) -> RowAccounting:
        landed = self.accepted + self.rejected + self.duplicates + self.outside_window
        if self.rows_read != self.records_in_file or landed != self.rows_read:
            raise RowAccountingError(
                f"{self.file}: row accounting does not add up, rows may have been lost: "
                f"{self.records_in_file:,} records in the file, {self.rows_read:,} read, "
                f"{self.accepted:,} accepted + {self.rejected:,} rejected + "
                f"{self.duplicates:,} duplicates + {self.outside_window:,} outside the "
                f"requested days = {landed:,}"
            )
        return self

    def summary(self) -> str:
        text = (
            f"{self.records_in_file:,} records = {self.accepted:,} accepted + "
            f"{self.rejected:,} rejected + {self.duplicates:,} duplicates"
        )
        if self.outside_window:
            text += f" + {self.outside_window:,} outside the requested days"
        return text


@dataclass
class Rejects:
    """Rejected rows of one import, kept with where they came from and why."""

    rows: list[tuple[str, int, str, str, str]] = field(default_factory=list)

    def add(self, file: str, line: int, field_name: str, reason: str, raw: str) -> None:
        self.rows.append((file, line, field_name, reason, raw))

    def __len__(self) -> int:
        return len(self.rows)

    def by_field(self) -> dict[str, int]:
        return dict(Counter(row[2] for row in self.rows))

    def write(self, target: Path) -> Path | None:
        """Replace the rejects file (or remove a stale one when nothing was rejected)."""
        if not self.rows:
            if target.exists():
                target.unlink()
            return None

        def write_csv(tmp: Path) -> None:
            with tmp.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(REJECT_COLUMNS)
                writer.writerows(sorted(self.rows, key=lambda r: (r[0], r[1])))

        write_atomically(target, write_csv)
        return target


def read_header(path: Path, required: Sequence[str]) -> list[str]:
    """The file's header; fails naming the file when it is unreadable or lacks columns."""
    if not path.is_file():
        raise SourceFileError(f"{path}: file not found")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), None)
    except UnicodeDecodeError as exc:
        raise SourceFileError(f"{path}: not a UTF-8 CSV file ({exc.reason})") from exc
    except csv.Error as exc:
        raise SourceFileError(f"{path}: not a CSV file ({exc})") from exc
    if not header:
        raise SourceFileError(f"{path}: empty file, expected a CSV header")
    header = [name.strip().lstrip("\ufeff") for name in header]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise SourceFileError(f"{path}: column(s) {', '.join(repeated)} appear twice in the header")
    missing = [name for name in required if name not in header]
    if missing:
        raise SourceFileError(
            f"{path}: missing required column(s) {', '.join(missing)}; "
            f"found {', '.join(header[:20])}"
        )
    return header


@dataclass(frozen=True)
class CsvScan:
    """A registered scan of a CSV file, every column as text.

    ``source`` is the bare ``read_csv`` call (rows in file order); ``relation`` adds
    ``record_no``, the ordinal of the row among the structurally accepted rows.
    """

    path: Path
    header: list[str]
    source: str
    relation: str
    errors_table: str


def scan_csv(con: duckdb.DuckDBPyConnection, path: Path, required: Sequence[str]) -> CsvScan:
    header = read_header(path, required)
    suffix = uuid.uuid4().hex[:8]
    columns = "{" + ", ".join(f"{sql_string(c)}: 'VARCHAR'" for c in header) + "}"
    errors_table = f"csv_errors_{suffix}"
    # record_no is the ordinal of the row among the rows DuckDB accepted structurally, in
    # file order (a streaming window preserves insertion order); structurally broken lines
    # go to errors_table with their physical line number.
    source = (
        f"read_csv({sql_string(path)}, header = true, columns = {columns}, "
        "auto_detect = false, delim = ',', quote = '\"', escape = '\"', strict_mode = true, "
        f"store_rejects = true, rejects_table = '{errors_table}', "
        f"rejects_scan = 'csv_scans_{suffix}')"
    )
    relation = f"(SELECT row_number() OVER () AS record_no, * FROM {source})"
    return CsvScan(path, header, source, relation, errors_table)


def reject_expressions(
    checks: Sequence[tuple[str, str, str]], header: Sequence[str]
) -> tuple[str, str, str]:
    """SQL for the first failing check's field and reason, and the raw line of a row.

    ``checks`` are (field, failing condition, reason expression) in reporting order.
    """
    field_case = "CASE " + " ".join(f"WHEN {c} THEN '{f}'" for f, c, _ in checks) + " END"
    reason_case = "CASE " + " ".join(f"WHEN {c} THEN {r}" for _, c, r in checks) + " END"
    raw_line = "concat_ws(',', " + ", ".join(f'"{c}"' for c in header) + ")"
    return field_case, reason_case, raw_line


def structural_rejects(
    con: duckdb.DuckDBPyConnection, scan: CsvScan, rejects: Rejects, label: str | None = None
) -> list[int]:
    """Record the scan's structurally broken lines; returns their line numbers, sorted."""
    try:
        rows = con.execute(
            f"SELECT line, coalesce(column_name, ''), error_type, error_message, csv_line "
            f"FROM {scan.errors_table} ORDER BY line"
        ).fetchall()
    except duckdb.CatalogException:
        return []
    seen: set[int] = set()
    for line, column, error_type, message, raw in rows:
        line = int(line)
        if line in seen:
            continue
        seen.add(line)
        reason = f"{str(error_type).lower()}: {message}".strip()
        rejects.add(label or str(scan.path), line, column or "(row)", reason, raw or "")
    return sorted(seen)


def physical_line(record_no: int, broken_lines: Sequence[int]) -> int:
    """Line number in the file of the ``record_no``-th accepted row (header is line 1)."""
    line = record_no + 1
    while True:
        shifted = record_no + 1 + bisect_right(broken_lines, line)
        if shifted == line:
            return line
        line = shifted


# ---------------------------------------------------------------------------------------
# Cell batches: the file's rows in order, every cell as text
# ---------------------------------------------------------------------------------------


class CellBatches(Protocol):
    """The structurally sound rows of a CSV file in file order, as Arrow string batches."""

    def batches(self) -> Iterator[pa.RecordBatch]: ...

    def line_count(self) -> LineCount | None:
        """After ``batches``: the file's lines as counted apart from the parser."""
        ...

    def broken_lines(self, rejects: Rejects) -> list[int]:
        """After ``batches``: record the structurally broken rows in ``rejects``; returns
        the sorted lines that are not rows (for ``physical_line``)."""
        ...


@dataclass
class DuckDbCells:
    """DuckDB's ``read_csv`` of a ``scan_csv`` scan, streamed in batches of ``batch_rows``.

    With ``guard_dir``, DuckDB reads a copy of the file in which the lines no record can be
    are blanked (``csv_lines.GuardedLines``: same line numbers), so a stray quote cannot
    swallow the rows after it; those lines are rejected with their reason.
    """

    con: duckdb.DuckDBPyConnection
    scan: CsvScan
    batch_rows: int
    guard_dir: Path | None = None
    guard_count: LineCount | None = None
    _read_scan: CsvScan | None = None

    def batches(self) -> Iterator[pa.RecordBatch]:
        scan = self.scan
        if self.guard_dir is not None:
            scan = self._guarded_scan(self.guard_dir)
        self._read_scan = scan
        reader = self.con.execute(f"SELECT * FROM {scan.source}")
        yield from reader.to_arrow_reader(self.batch_rows)

    def _guarded_scan(self, guard_dir: Path) -> CsvScan:
        from polymkt_dagster.lib.ingest.csv_lines import GuardedLines

        guard_dir.mkdir(parents=True, exist_ok=True)
        copy = guard_dir / f"guarded_{uuid.uuid4().hex[:8]}_{self.scan.path.name}"
        with GuardedLines(self.scan.path) as guarded, copy.open("wb") as out:
            while chunk := guarded.read(8 << 20):
                out.write(chunk)
        self.guard_count = guarded.count
        self._copy = copy
        return scan_csv(self.con, copy, self.scan.header)

    def line_count(self) -> LineCount | None:
        return self.guard_count

    def broken_lines(self, rejects: Rejects) -> list[int]:
        broken = structural_rejects(
            self.con, self._read_scan or self.scan, rejects, label=str(self.scan.path)
        )
        if self.guard_count is None:
            return broken
        copy = getattr(self, "_copy", None)
        if copy is not None:
            copy.unlink(missing_ok=True)
        for line, reason, raw in self.guard_count.blanked:
            rejects.add(str(self.scan.path), line, "(row)", reason, raw)
        return sorted(set(broken) | set(self.guard_count.not_rows()))


class CsvReadFallback(Exception):
    """pyarrow cannot read the file as DuckDB would (invalid UTF-8, a value running over
    lines): read it with DuckDB instead."""


ARROW_BLOCK_BYTES = 8 << 20


class ArrowCells:
    """pyarrow's streaming CSV reader: one thread, a block at a time.

    Cells come as bytes (``binary``): whoever uses a cell as text checks its UTF-8 (see
    ``text_cells``), so plain ASCII cells checked byte by byte are not validated twice.
    It reads what DuckDB reads the same way: empty cells are null, a row with the wrong
    number of cells is broken (kept with its line and reason), a blank line is skipped.
    Anything else pyarrow rejects raises ``CsvReadFallback`` (nothing is recorded before
    ``broken_lines``, so the caller can start over with DuckDB).
    """

    def __init__(
        self,
        path: Path,
        header: Sequence[str],
        batch_rows: int,
        block_bytes: int = ARROW_BLOCK_BYTES,
    ) -> None:
        self.path = path
        self.header = list(header)
        self.batch_rows = batch_rows
        self.block_bytes = block_bytes
        self.broken: list[tuple[int, str, str]] = []
        self.blank: list[int] = []
        self.empty_rows: list[int] = []  # lines of cells that are all empty: rejects
        self.guard: GuardedLines | None = None

    def _on_invalid_row(self, row: pa_csv.InvalidRow) -> str:
        # A multi-line row is an unterminated quote: DuckDB reports it as one broken row
        # spanning the lines; pyarrow's line numbers would drift from there on.
        if row.number is None or "\n" in row.text or "\r" in row.text:
            return "error"
        reason = (
            f"wrong column count: expected {row.expected_columns} columns, "
            f"found {row.actual_columns}"
        )
        self.broken.append((row.number, reason, row.text))
        return "skip"

    def batches(self) -> Iterator[pa.RecordBatch]:
        from polymkt_dagster.lib.ingest.csv_lines import GuardedLines

        cell = pa.binary()
        # pieces of at most a block, so each read hands pyarrow a whole piece without a copy
        self.guard = GuardedLines(self.path, chunk_bytes=max(self.block_bytes // 2, 1))
        try:
            reader = pa_csv.open_csv(
                self.guard,
                read_options=pa_csv.ReadOptions(
                    use_threads=False,
                    block_size=self.block_bytes,
                    skip_rows=1,
                    column_names=self.header,
                ),
                parse_options=pa_csv.ParseOptions(
                    delimiter=",",
                    quote_char='"',
                    double_quote=True,
                    escape_char=False,
                    newlines_in_values=False,
                    ignore_empty_lines=False,  # kept as rows, so line numbers stay physical
                    invalid_row_handler=self._on_invalid_row,
                ),
                convert_options=pa_csv.ConvertOptions(
                    column_types={name: cell for name in self.header},
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=True,
                ),
            )
            records = 0  # rows pyarrow delivered so far, blank lines included
            for batch in reader:
                batch, records = self._without_blank_lines(batch, records)
                for begin in range(0, batch.num_rows, self.batch_rows):
                    yield batch.slice(begin, self.batch_rows)
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            raise CsvReadFallback(f"{self.path}: {exc}") from exc
        finally:
            self.guard.close()

    def _without_blank_lines(
        self, batch: pa.RecordBatch, records: int
    ) -> tuple[pa.RecordBatch, int]:
        """Drop the rows of blank lines (every cell null), noting their lines."""
        first = records + 1
        records += batch.num_rows
        if any(column.null_count == 0 for column in batch.columns):
            return batch, records
        blank = pc.is_null(batch.column(0))
        for column in batch.columns[1:]:
            blank = pc.and_(blank, pc.is_null(column))
        positions = pc.indices_nonzero(blank).to_pylist()
        if not positions:
            return batch, records
        broken = sorted(line for line, _, _ in self.broken)
        assert self.guard is not None
        not_rows = set(self.guard.count.not_rows())  # the lines seen so far are counted
        for position in positions:
            line = physical_line(first + position, broken)
            # A line of separators only (",,,") is a row of empty cells, not a blank line.
            (self.blank if line in not_rows else self.empty_rows).append(line)
        return batch.filter(pc.invert(blank)), records

    def line_count(self) -> LineCount | None:
        return self.guard.count if self.guard else None

    def broken_lines(self, rejects: Rejects) -> list[int]:
        for line, reason, raw in self.broken:
            rejects.add(str(self.path), line, "(row)", reason, raw)
        for line in self.empty_rows:
            rejects.add(str(self.path), line, "(row)", "every cell is empty", "")
        if self.guard is not None:
            for line, reason, raw in self.guard.count.blanked:
                rejects.add(str(self.path), line, "(row)", reason, raw)
        return sorted([line for line, _, _ in self.broken] + self.blank + self.empty_rows)


def text_cells(batch: pa.RecordBatch) -> pa.RecordBatch:
    """``batch`` with byte cells as UTF-8 text; ``CsvReadFallback`` when one is not UTF-8."""
    if not any(pa.types.is_binary(column.type) for column in batch.columns):
        return batch
    try:
        return pa.RecordBatch.from_arrays(
            [
                column.cast(pa.string()) if pa.types.is_binary(column.type) else column
                for column in batch.columns
            ],
            names=batch.schema.names,
        )
    except pa.ArrowInvalid as exc:
        raise CsvReadFallback(f"a cell is not UTF-8 text ({exc})") from exc


# ---------------------------------------------------------------------------------------
# Small CSV files (markets, events): a record reader that re-synchronises at the next line
# ---------------------------------------------------------------------------------------

# A line whose cells are all closed (Python's csv and pyarrow's quote rules: a quote opens a
# value only at a cell's start, "" inside it is a quote, a lone quote closes it).
_CLOSED_CELL = r'(?:"(?:[^"]|"")*"(?:[^,"][^,]*)?|[^,"][^,]*|)'
_CLOSED_LINE = re.compile(rf"{_CLOSED_CELL}(?:,{_CLOSED_CELL})*")
# A quoted value may run over this many lines at most (a question or a description with
# line breaks); a quote still open after them is a stray quote.
MAX_RECORD_LINES = 100


def _quote_open_after(text: str, open_quote: bool) -> bool:
    """Whether a quoted value is open at the end of ``text`` (the rules above)."""
    state = "quoted" if open_quote else "start"
    for char in text:
        if char == '"':
            state = {"start": "quoted", "quoted": "after", "after": "quoted"}.get(state, state)
        elif char == "," and state != "quoted":
            state = "start"
        elif state in ("start", "after"):
            state = "unquoted"
    return state == "quoted"


@dataclass
class CsvRecords:
    """The records of a CSV file, each with the line it starts on; what no record could be
    is in ``broken`` (line, reason, raw text); ``records_in_file`` counts the records."""

    path: Path
    header: list[str]
    rows: list[tuple[int, list[str], str]] = field(default_factory=list)  # line, cells, raw
    broken: list[tuple[int, str, str]] = field(default_factory=list)
    lines: int = 0
    blank_lines: int = 0
    continuation_lines: int = 0  # lines inside values that span lines

    @property
    def records_in_file(self) -> int:
        """Physical lines less the header, blank lines and the continuation lines of
        values spanning lines: every other line starts exactly one record."""
        return self.lines - 1 - self.blank_lines - self.continuation_lines

    def add_broken_to(self, rejects: Rejects) -> None:
        for line, reason, raw in self.broken:
            rejects.add(str(self.path), line, "(row)", reason, raw)


def read_records(path: Path, required: Sequence[str]) -> CsvRecords:
    """Every record of a (small) CSV file; a line that cannot start a whole record is
    rejected and reading resumes at the next line.

    A quoted value may span lines, but when its quote does not close within
    ``MAX_RECORD_LINES`` lines, or the record it closes into has the wrong number of cells,
    the quote was a stray one: its line is rejected and the next line is read as a record.
    Lines are split on ``\\n`` only (``\\r\\n`` ends a line too); a line that is not UTF-8
    is rejected alone.
    """
    header = read_header(path, required)
    data = path.read_bytes()
    raw_lines = data.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()  # the newline ending the last line
    found = CsvRecords(path, header, lines=len(raw_lines))

    def text_of(k: int) -> str | None:
        try:
            return raw_lines[k].removesuffix(b"\r").decode("utf-8")
        except UnicodeDecodeError:
            return None

    def raw_of(k: int) -> str:
        return raw_lines[k].removesuffix(b"\r").decode("utf-8", errors="backslashreplace")

    k = 1
    while k < len(raw_lines):
        line = k + 1
        text = text_of(k)
        if text is None:
            found.broken.append((line, "not UTF-8 text", raw_of(k)))
            k += 1
            continue
        if text == "":
            found.blank_lines += 1
            k += 1
            continue
        span = 1
        if not _CLOSED_LINE.fullmatch(text) and _quote_open_after(text, False):
            parts, open_quote = [text], True
            while open_quote and span < MAX_RECORD_LINES and k + span < len(raw_lines):
                more = text_of(k + span)
                if more is None:
                    break
                parts.append(more)
                span += 1
                open_quote = _quote_open_after(more, True)
            if open_quote:
                found.broken.append((line, _UNCLOSED_QUOTE, raw_of(k)))
                k += 1
                continue
            text = "\n".join(parts)
        try:
            cells = next(csv.reader(io.StringIO(text, newline=""), strict=False))
        except csv.Error as exc:
            found.broken.append((line, f"not a CSV record ({exc})", raw_of(k)))
            k += 1
            continue
        if len(cells) != len(header):
            reason = (
                f"wrong column count: expected {len(header)} columns, found {len(cells)}"
                if span == 1
                else f"{_UNCLOSED_QUOTE} (read to line {line + span - 1}, it gives "
                f"{len(cells)} of {len(header)} columns)"
            )
            found.broken.append((line, reason, raw_of(k)))
            k += 1
            continue
        found.rows.append((line, cells, text))
        found.continuation_lines += span - 1
        k += span
    return found


_UNCLOSED_QUOTE = "unterminated quote: a quoted value opened on this line never closes"


def records_table(records: CsvRecords) -> pa.Table:
    """The records as text columns under their header names (empty cells NULL, as
    ``read_csv`` gives them), with ``record_no``, ``line_no`` and ``raw_text``."""
    columns: dict[str, list[str | None]] = {name: [] for name in records.header}
    for _, cells, _ in records.rows:
        for name, cell in zip(records.header, cells, strict=True):
            columns[name].append(cell if cell != "" else None)
    table = pa.table({name: pa.array(values, pa.string()) for name, values in columns.items()})
    table = table.add_column(0, "record_no", pa.array(range(1, len(records.rows) + 1), pa.int64()))
    table = table.append_column("line_no", pa.array([r[0] for r in records.rows], pa.int64()))
    return table.append_column("raw_text", pa.array([r[2] for r in records.rows], pa.string()))
