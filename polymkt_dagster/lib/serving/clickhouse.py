"""The ClickHouse serving layer: tables created by code, rollups published with insert_arrow.

``POLYMKT_CLICKHOUSE_DSN`` is either a server (``http://host:8123``, user/password from
``POLYMKT_CLICKHOUSE_USER``/``_PASSWORD``) or the embedded engine
(``chdb:///<data dir>/clickhouse``, the default). chdb runs inside the process and opens one
data path per process, so clients are cached per DSN here and every caller of the same
DSN shares one session; asking for a second chdb path in the same process fails clearly.

Tables are ReplacingMergeTree keyed on each table's natural key with ``published_at`` as
the version: publishing the same rows again replaces them (read with FINAL for exact
answers before background merges). Publishing is incremental: a lake file is re-sent only
when its size or modification time changed since the last publish (kept in
``_polymkt_publish_log``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from polymkt_dagster.lib.core.lake import Lake

_CLIENTS: dict[str, Any] = {}
_CHDB_PATH: list[str] = []
_LOCK = threading.Lock()


class ClickHouseError(RuntimeError):
    """The serving layer cannot do what was asked (message says which table/DSN)."""


@dataclass(frozen=True)
class ServedTable:
    name: str  # ClickHouse table name
    lake_table: str  # lake table (day-partitioned dir) or single file stem
    columns: tuple[tuple[str, str], ...]
    order_by: tuple[str, ...]
    time_column: str  # what "lag" is measured on
    partitioned: bool = True


_METRIC_COMMON = (
    ("bucket_start", "DateTime64(6, 'UTC')"),
    ("volume_usd", "Float64"),
    ("trades", "Int64"),
    ("buys", "Int64"),
    ("sells", "Int64"),
    ("realized_pnl", "Float64"),
    ("counterparties", "Int64"),
    ("last_price", "Nullable(Float64)"),
)


def _wallet_metrics(grain: str) -> ServedTable:
    return ServedTable(
        f"wallet_metrics_{grain}",
        f"analytics/wallets/metrics_{grain}",
        (("wallet", "String"), *_METRIC_COMMON, ("markets", "Int64")),
        ("wallet", "bucket_start"),
        "bucket_start",
    )


def _market_metrics(grain: str) -> ServedTable:
    return ServedTable(
        f"market_metrics_{grain}",
        f"analytics/market_metrics_{grain}",
        (("market_id", "String"), *_METRIC_COMMON, ("fills", "Int64")),
        ("market_id", "bucket_start"),
        "bucket_start",
    )


SERVED_TABLES: dict[str, ServedTable] = {
    t.name: t
    for t in (
        *(_wallet_metrics(g) for g in ("1m", "1h", "1d")),
        *(_market_metrics(g) for g in ("1m", "1h", "1d")),
        ServedTable(
            "wallet_positions",
            "analytics/wallets/positions",
            (
                ("wallet", "String"),
                ("market_id", "Nullable(String)"),
                ("token_id", "String"),
                ("outcome_index", "Nullable(Int32)"),
                ("outcome", "Nullable(String)"),
                ("status", "String"),
                ("shares", "Float64"),
                ("avg_price", "Float64"),
                ("cost_basis", "Float64"),
                ("mark_price", "Nullable(Float64)"),
                ("exposure", "Nullable(Float64)"),
                ("realized_pnl", "Float64"),
                ("unrealized_pnl", "Nullable(Float64)"),
                ("total_pnl", "Nullable(Float64)"),
                ("buys", "Int64"),
                ("sells", "Int64"),
                ("oversold_shares", "Float64"),
                ("last_trade_at", "DateTime64(6, 'UTC')"),
            ),
            ("wallet", "token_id"),
            "last_trade_at",
            partitioned=False,
        ),
        ServedTable(
            "wallet_pnl_snapshots",
            "analytics/wallets/pnl_snapshots",
            (
                ("snapshot_at", "DateTime64(6, 'UTC')"),
                ("wallet", "String"),
                ("realized_pnl", "Float64"),
                ("unrealized_pnl", "Float64"),
                ("total_pnl", "Float64"),
                ("exposure", "Float64"),
                ("open_positions", "Int64"),
            ),
            ("wallet", "snapshot_at"),
            "snapshot_at",
        ),
        ServedTable(
            "wallet_alerts",
            "analytics/wallets/alerts",
            (
                ("alert_id", "String"),
                ("alerted_at", "DateTime64(6, 'UTC')"),
                ("wallet", "String"),
                ("market_id", "Nullable(String)"),
                ("side", "String"),
                ("size_usd", "Float64"),
                ("price", "Float64"),
            ),
            ("alert_id",),
            "alerted_at",
        ),
    )
}
PUBLISH_LOG = "_polymkt_publish_log"


def get_client(
    dsn: str, *, user: str | None = None, password: str | None = None, read_only: bool = False
) -> Any:
    """A shared clickhouse-connect client for ``dsn`` (one chdb data path per process).

    ``read_only`` gives a second client kept for guarded queries: in chdb a query that
    fails under ``readonly=1`` leaves its session read-only, so guarded reads never share
    a session with the publisher.
    """
    import clickhouse_connect

    key = f"{dsn}|{user or ''}|{'ro' if read_only else 'rw'}"
    with _LOCK:
        if key in _CLIENTS:
            return _CLIENTS[key]
        if dsn.startswith("chdb://"):
            path = dsn.removeprefix("chdb://")
            if _CHDB_PATH and _CHDB_PATH[0] != path:
                raise ClickHouseError(
                    f"the embedded ClickHouse engine is already open at {_CHDB_PATH[0]} in "
                    f"this process; it cannot also open {path} (one chdb path per process)"
                )
            Path(path).mkdir(parents=True, exist_ok=True)
            client = clickhouse_connect.get_client(dsn=dsn)
            _CHDB_PATH[:] = [path]
        else:
            try:
                client = clickhouse_connect.get_client(
                    dsn=dsn, username=user or "default", password=password or "",
                    connect_timeout=5,
                )  # fmt: skip
            except Exception as exc:  # the driver's errors may echo the DSN: keep it short
                raise ClickHouseError(
                    f"cannot connect to ClickHouse at {_redact(dsn)}: {type(exc).__name__}"
                ) from None
        _CLIENTS[key] = client
        return client


def _ident(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ClickHouseError(f"{name!r} is not a plain identifier")
    return name


def _redact(dsn: str) -> str:
    if "@" in dsn:
        scheme, _, rest = dsn.partition("://")
        return f"{scheme}://…@{rest.rsplit('@', 1)[-1]}"
    return dsn


def ping(client: Any) -> bool:
    try:
        return client.query("SELECT 1").result_rows == [(1,)]
    except Exception:
        return False


def ensure_tables(client: Any, database: str = "default") -> list[str]:
    """CREATE TABLE IF NOT EXISTS for every served table and the publish log."""
    db = _ident(database)
    client.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    created = []
    for table in SERVED_TABLES.values():
        columns = ", ".join(f"{name} {ctype}" for name, ctype in table.columns)
        client.command(
            f"CREATE TABLE IF NOT EXISTS {db}.{table.name} ({columns}, "
            f"published_at DateTime64(3, 'UTC')) "
            f"ENGINE = ReplacingMergeTree(published_at) ORDER BY ({', '.join(table.order_by)})"
        )
        created.append(table.name)
    client.command(
        f"CREATE TABLE IF NOT EXISTS {db}.{PUBLISH_LOG} (table_name String, file String, "
        "size UInt64, mtime_ns UInt64, rows UInt64, published_at DateTime64(3, 'UTC')) "
        "ENGINE = ReplacingMergeTree(published_at) ORDER BY (table_name, file)"
    )
    return created


@dataclass
class TablePublish:
    table: str
    files_published: int = 0
    files_unchanged: int = 0
    rows_published: int = 0
    rows_total: int = 0
    latest: datetime | None = None
    lag_s: float | None = None
    seconds: float = 0.0


@dataclass
class PublishReport:
    tables: list[TablePublish] = field(default_factory=list)

    @property
    def rows_published(self) -> int:
        return sum(t.rows_published for t in self.tables)


def _files_of(lake: Lake, table: ServedTable) -> list[Path]:
    if not table.partitioned:
        single = lake.single_file(table.lake_table)
        return [single] if single.exists() else []
    return lake.files(table.lake_table)


def _to_served(table: ServedTable, data: pa.Table, published_at: datetime) -> pa.Table:
    arrays = []
    names = []
    for name, ctype in table.columns:
        column = data.column(name) if name in data.column_names else pa.nulls(data.num_rows)
        if ctype.startswith("DateTime64"):
            column = column.cast(pa.timestamp("us", tz="UTC"))
        elif "Float64" in ctype:
            column = column.cast(pa.float64())
        elif "Int64" in ctype:
            column = column.cast(pa.int64())
        elif "Int32" in ctype:
            column = column.cast(pa.int32())
        else:
            column = column.cast(pa.string())
        arrays.append(column)
        names.append(name)
    arrays.append(pa.array([published_at] * data.num_rows, pa.timestamp("ms", tz="UTC")))
    names.append("published_at")
    return pa.Table.from_arrays(arrays, names=names)


def publish(
    client: Any,
    lake: Lake,
    *,
    tables: list[str] | None = None,
    now: datetime | None = None,
    progress: Callable[[str], None] | None = None,
    batch_rows: int = 1_000_000,
    database: str = "default",
) -> PublishReport:
    """Send new or changed lake files of the served tables; report rows and lag per table."""
    ensure_tables(client, database)
    db = _ident(database)
    now = now or datetime.now(UTC)
    published = {
        (t, f): (s, m)
        for t, f, s, m in client.query(
            f"SELECT table_name, file, argMax(size, published_at), argMax(mtime_ns, published_at)"
            f" FROM {db}.{PUBLISH_LOG} GROUP BY table_name, file"
        ).result_rows
    }
    report = PublishReport()
    for name in tables or list(SERVED_TABLES):
        table = SERVED_TABLES[name]
        started = time.perf_counter()
        result = TablePublish(name)
        log_rows: list[tuple[str, str, int, int, int]] = []
        pending: list[pa.Table] = []
        pending_rows = 0

        def flush(target: str = table.name) -> None:
            nonlocal pending, pending_rows
            if pending:
                # many small day files go out as one insert: a round trip per file is slow
                client.insert_arrow(target, pa.concat_tables(pending), database=db)
            pending, pending_rows = [], 0

        for path in _files_of(lake, table):
            stat = path.stat()
            relative = str(path.relative_to(lake.root))
            if published.get((name, relative)) == (stat.st_size, stat.st_mtime_ns):
                result.files_unchanged += 1
                continue
            parquet = pq.ParquetFile(path)
            rows = 0
            for batch in parquet.iter_batches(batch_size=batch_rows):
                data = _to_served(table, pa.Table.from_batches([batch]), now)
                pending.append(data)
                pending_rows += data.num_rows
                rows += data.num_rows
                if pending_rows >= batch_rows:
                    flush()
            result.files_published += 1
            result.rows_published += rows
            log_rows.append((name, relative, stat.st_size, stat.st_mtime_ns, rows))
        flush()
        if log_rows:
            client.insert_arrow(
                PUBLISH_LOG,
                pa.table(
                    {
                        "table_name": [r[0] for r in log_rows],
                        "file": [r[1] for r in log_rows],
                        "size": pa.array([r[2] for r in log_rows], pa.uint64()),
                        "mtime_ns": pa.array([r[3] for r in log_rows], pa.uint64()),
                        "rows": pa.array([r[4] for r in log_rows], pa.uint64()),
                        "published_at": pa.array([now] * len(log_rows), pa.timestamp("ms", "UTC")),
                    }
                ),
                database=db,
            )
        total, latest = client.query(
            f"SELECT count(), max({table.time_column}) FROM {db}.{table.name} FINAL"
        ).result_rows[0]
        result.rows_total = int(total)
        if total and latest is not None:
            latest = latest if latest.tzinfo else latest.replace(tzinfo=UTC)
            result.latest = latest
            result.lag_s = max(0.0, (now - latest).total_seconds())
        result.seconds = time.perf_counter() - started
        if progress and result.files_published:
            progress(f"clickhouse: {name} +{result.rows_published:,} rows")
        report.tables.append(result)
    return report


def table_counts(client: Any, database: str = "default") -> dict[str, int]:
    counts: dict[str, int] = {}
    db = _ident(database)
    for name in SERVED_TABLES:
        try:
            sql = f"SELECT count() FROM {db}.{name} FINAL"
            counts[name] = int(client.query(sql).result_rows[0][0])
        except Exception:
            counts[name] = 0
    return counts
