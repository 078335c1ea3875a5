"""Running a guarded query (``run_guarded``): read-only, bounded in time and memory.

Separate from ``sql_guard``, which decides what may run from the SQL alone; this module
owns the engines: it guards the query for the engine's dialect, then runs the SQL the guard
regenerated, never the original text.

Execution is read-only and bounded in time and memory on either engine:

- DuckDB (default): a child process (``sql_worker.py``) opens an in-memory database whose
  only objects are views over the lake's rollup files, switches external access off except
  for those directories, caps memory and threads, disables spilling and locks the
  configuration. The parent kills the child at the deadline, so even a single long
  function call ends within the timeout.
- ClickHouse (when POLYMKT_CLICKHOUSE_ENABLED=true): ``readonly=2``, ``max_execution_time``,
  ``max_memory_usage`` and ``max_threads`` on the query, plus a client-side deadline.
"""

from __future__ import annotations

import contextlib
import math
import pickle
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.serving.clickhouse import SERVED_TABLES
from polymkt_dagster.lib.serving.sql_guard import (
    DEFAULT_MAX_ROWS,
    QueryLimitError,
    guard_sql,
    validate_max_rows,
)

# A window function over a year of P&L snapshots (~1M rows) takes a few seconds on a
# loaded 2-core machine; 30 s leaves room. POLYMKT_SQL_TIMEOUT_S or --timeout change it.
DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 3_600.0
DEFAULT_MEMORY_LIMIT = "1GB"
DEFAULT_THREADS = 2
# Address space of the DuckDB worker beyond memory_limit: Python, DuckDB's code and thread
# stacks, result rows.
WORKER_ADDRESS_SPACE_MARGIN = 3 * 2**30
# Starting the worker and creating the views is not the query's time; it gets its own bound.
SETUP_TIMEOUT_S = 60.0


def validate_timeout(timeout_s: Any) -> float:
    """The timeout in seconds as a float, or QueryLimitError saying what is wrong."""
    try:
        value = float(timeout_s)
    except (TypeError, ValueError):
        raise QueryLimitError(f"timeout {timeout_s!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise QueryLimitError(
            f"timeout {timeout_s!r} must be a positive number of seconds (at most "
            f"{MAX_TIMEOUT_S:g}); queries always run with a timeout"
        )
    if value > MAX_TIMEOUT_S:
        raise QueryLimitError(f"timeout {value:g} s is above the maximum of {MAX_TIMEOUT_S:g} s")
    return value


_CH_TO_DUCK = {"String": "VARCHAR", "Float64": "DOUBLE", "Int64": "BIGINT", "Int32": "INTEGER"}


def _duck_type(ch_type: str) -> str:
    inner = ch_type.removeprefix("Nullable(").removesuffix(")")
    if inner.startswith("DateTime64"):
        return "TIMESTAMPTZ"
    return _CH_TO_DUCK.get(inner, "VARCHAR")


@dataclass
class QueryResult:
    sql: str
    engine: str
    columns: list[str]
    rows: list[dict[str, Any]]
    seconds: float
    notes: list[str] = field(default_factory=list)


class QueryTimeout(RuntimeError):
    """The query ran past its timeout and was stopped; ``query_seconds`` is how long it ran."""

    def __init__(self, message: str, query_seconds: float) -> None:
        super().__init__(message)
        self.query_seconds = query_seconds


class QueryFailed(RuntimeError):
    """An allowed query failed in the engine (out of memory, a bad cast, ...): one line."""


def _sql_string(value: str | Path) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _duckdb_setup(lake: Lake, memory_limit: str, threads: int) -> list[str]:
    """Statements that build the confined database: settings, views, then the lock-down."""
    statements = [
        "SET TimeZone = 'UTC'",
        f"SET memory_limit = {_sql_string(memory_limit)}",
        f"SET threads = {int(threads)}",
        # no spilling: a query over the memory limit fails instead of filling a disk
        "SET temp_directory = ''",
        "SET enable_progress_bar = false",
    ]
    allowed_dirs: list[Path] = []
    for name, table in SERVED_TABLES.items():
        columns = ", ".join(f"CAST({c} AS {_duck_type(t)}) AS {c}" for c, t in table.columns)
        typed_empty = ", ".join(f"CAST(NULL AS {_duck_type(t)}) AS {c}" for c, t in table.columns)
        if table.partitioned:
            files = lake.files(table.lake_table)
            directory = lake.table_dir(table.lake_table).resolve()
        else:
            single = lake.single_file(table.lake_table)
            files = [single] if single.exists() else []
            directory = single.parent.resolve()
        if files:
            file_list = "[" + ", ".join(_sql_string(p.resolve()) for p in files) + "]"
            source = (
                f"(SELECT * FROM read_parquet({file_list}, union_by_name = true, "
                f"hive_partitioning = false) UNION ALL BY NAME SELECT {typed_empty} WHERE false)"
            )
            statements.append(f"CREATE VIEW {name} AS SELECT {columns} FROM {source}")
            allowed_dirs.append(directory)
        else:
            statements.append(f"CREATE VIEW {name} AS SELECT {typed_empty} WHERE false")
    dirs = "[" + ", ".join(_sql_string(f"{d}/") for d in allowed_dirs) + "]"
    statements += [
        f"SET allowed_directories = {dirs}",
        "SET enable_external_access = false",
        "SET lock_configuration = true",
    ]
    return statements


class _Reader(threading.Thread):
    """Reads the worker's stdout: the READY byte, then the pickled answer."""

    def __init__(self, stream: Any) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.ready = threading.Event()
        self.data = b""

    def run(self) -> None:
        first = self.stream.read(1)
        self.ready.set()
        self.data = first + self.stream.read()


def _run_duckdb_worker(request: dict[str, Any], timeout_s: float) -> tuple[list[str], list[Any]]:
    worker = Path(__file__).with_name("sql_worker.py")
    process = subprocess.Popen(
        [sys.executable, "-I", str(worker)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    reader: _Reader | None = None
    try:
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(pickle.dumps(request))
            process.stdin.close()
        except BrokenPipeError:
            raise QueryFailed("the query engine did not start (worker exited early)") from None
        reader = _Reader(process.stdout)
        reader.start()
        if not reader.ready.wait(SETUP_TIMEOUT_S):
            raise QueryFailed(f"the query engine did not start within {SETUP_TIMEOUT_S:g} s")
        query_started = time.monotonic()
        reader.join(timeout_s)
        if reader.is_alive():
            process.kill()
            raise QueryTimeout(
                f"query ran longer than {timeout_s:g} s and was stopped (raise --timeout or "
                "POLYMKT_SQL_TIMEOUT_S, or narrow the query)",
                time.monotonic() - query_started,
            )
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)  # the answer is in; a worker slow to exit is killed below
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if reader is not None:
            reader.join(1.0)  # EOF follows the exit at once
        if process.stdout is not None and (reader is None or not reader.is_alive()):
            process.stdout.close()
    data = reader.data
    from polymkt_dagster.lib.serving.sql_worker import READY

    if data.startswith(READY):
        data = data[len(READY) :]
    try:
        answer = pickle.loads(data)
    except Exception:
        raise QueryFailed(
            f"the query engine stopped without an answer (exit code {process.returncode}; "
            "out of memory?)"
        ) from None
    if answer[0] != "ok":
        raise QueryFailed(_engine_message(answer[1]))
    return answer[1], answer[2]


def _engine_message(message: str) -> str:
    if "Out of Memory" in message or "MEMORY_LIMIT_EXCEEDED" in message:
        return (
            "query needs more memory than the limit allows (POLYMKT_SQL_MEMORY_LIMIT); "
            "narrow the query or aggregate first"
        )
    return f"query failed: {message.splitlines()[0][:300]}"


def _run_clickhouse(
    client: Any, sql: str, timeout_s: float, memory_limit: str, threads: int, database: str
) -> tuple[list[str], list[Any]]:
    # readonly=2: reads only, but the limits below may still be set. (In chdb a failed
    # readonly=1 query leaves the session read-only, and then no setting can be passed.)
    settings = {
        "readonly": 2,
        "max_execution_time": timeout_s,
        "timeout_overflow_mode": "throw",
        "max_memory_usage": _bytes(memory_limit),
        "max_threads": int(threads),
        "database": database,
    }
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["result"] = client.query(sql, settings=settings)
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=work, daemon=True, name="guarded-clickhouse-query")
    started = time.monotonic()
    thread.start()
    # the server stops the query at max_execution_time; this deadline covers a server that
    # does not answer at all
    thread.join(timeout_s + 0.5)
    if thread.is_alive():
        raise QueryTimeout(
            f"query ran longer than {timeout_s:g} s and was abandoned", time.monotonic() - started
        )
    if "error" in outcome:
        message = str(outcome["error"])
        if "TIMEOUT_EXCEEDED" in message or "Timeout exceeded" in message:
            raise QueryTimeout(
                f"query ran longer than {timeout_s:g} s and was stopped (raise --timeout or "
                "POLYMKT_SQL_TIMEOUT_S, or narrow the query)",
                time.monotonic() - started,
            )
        if "Cannot modify" in message and "readonly mode" in message:
            raise QueryFailed(
                "the ClickHouse user is read-only with readonly=1, which forbids per-query "
                "limits: give its profile readonly=2 (reads only, settings allowed)"
            )
        if "UNKNOWN_TABLE" in message or "Unknown table" in message:
            raise QueryFailed(
                f"ClickHouse database {database!r} does not hold the served tables yet: "
                "materialize serving/clickhouse first (or set POLYMKT_CLICKHOUSE_ENABLED=false)"
            )
        raise QueryFailed(_engine_message(_clickhouse_error_line(message)))
    result = outcome["result"]
    return list(result.column_names), list(result.result_rows)


def _clickhouse_error_line(message: str) -> str:
    for line in message.splitlines():
        if "Code:" in line or "DB::Exception" in line:
            return line.strip()
    return message.strip()


def _bytes(limit: str) -> int:
    units = {"kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 2**10,
             "mib": 2**20, "gib": 2**30, "b": 1}  # fmt: skip
    text = limit.strip().lower().replace(" ", "")
    for unit, factor in sorted(units.items(), key=lambda u: -len(u[0])):
        if text.endswith(unit):
            return int(float(text.removesuffix(unit)) * factor)
    return int(text)


def validate_memory_limit(limit: str) -> str:
    try:
        value = _bytes(limit)
    except ValueError:
        raise QueryLimitError(f"memory limit {limit!r} is not a size like 1GB or 512MB") from None
    if value < 16 * 2**20:
        raise QueryLimitError(f"memory limit {limit!r} is below 16MB")
    return limit


def run_guarded(
    sql: str,
    *,
    lake: Lake,
    engine: str = "duckdb",
    clickhouse_client: Any = None,
    clickhouse_database: str = "default",
    max_rows: int = DEFAULT_MAX_ROWS,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
    threads: int = DEFAULT_THREADS,
) -> QueryResult:
    """Guard ``sql`` then run it read-only, bounded in time and memory.

    Raises SqlRefused (the guard), QueryLimitError (a bad timeout/row count/memory limit),
    QueryTimeout (over the timeout: raised within timeout + 1 s) or QueryFailed.
    """
    timeout_s = validate_timeout(timeout_s)
    max_rows = validate_max_rows(max_rows)
    memory_limit = validate_memory_limit(memory_limit)
    if engine == "clickhouse":
        if clickhouse_client is None:
            raise ValueError("engine clickhouse needs a client")
        guarded = guard_sql(
            sql, dialect="clickhouse", max_rows=max_rows, database=clickhouse_database
        )
        started = time.perf_counter()
        columns, raw_rows = _run_clickhouse(
            clickhouse_client, guarded.sql, timeout_s, memory_limit, threads, clickhouse_database
        )
    else:
        guarded = guard_sql(sql, dialect="duckdb", max_rows=max_rows)
        request = {
            "setup": _duckdb_setup(lake, memory_limit, threads),
            "sql": guarded.sql,
            "max_rows": max_rows,
            # a hard cap on the worker's address space: what DuckDB's memory_limit does not
            # track (one huge string, Python) still cannot take the machine's memory
            "address_space_bytes": _bytes(memory_limit) + WORKER_ADDRESS_SPACE_MARGIN,
        }
        started = time.perf_counter()
        columns, raw_rows = _run_duckdb_worker(request, timeout_s)
    rows = [dict(zip(columns, r, strict=True)) for r in raw_rows[:max_rows]]
    return QueryResult(
        sql=guarded.sql,
        engine=engine,
        columns=columns,
        rows=rows,
        seconds=time.perf_counter() - started,
        notes=list(guarded.notes),
    )


__all__ = [
    "QueryFailed",
    "QueryResult",
    "QueryTimeout",
    "run_guarded",
    "validate_memory_limit",
    "validate_timeout",
]
