"""A guard for SQL written by people or by an LLM: one read-only SELECT over the rollups.

The SQL is parsed with sqlglot (a real parser, not patterns) and refused with a reason
unless it is exactly one SELECT (or a UNION/INTERSECT/EXCEPT of SELECTs, with optional
CTEs) that reads only allowlisted tables and columns: no DDL/DML or session commands, no
table functions (file, url, s3, read_parquet, numbers, ...), no schema-qualified names
(system.*, information_schema.*), no unknown functions, no SETTINGS/FORMAT/INTO clauses.
A LIMIT is added, or clamped to the maximum. What runs is the SQL regenerated from the
checked tree, never the original text.

Execution (``run_guarded``) is read-only with a timeout on either engine:

- DuckDB (default): an in-memory database whose only objects are views over the lake's
  rollup files; external access is then switched off except for those directories and
  the configuration locked, so even a query that slipped past the guard could read
  nothing else and write nowhere that persists. A timer interrupts it at the timeout.
- ClickHouse (when POLYMKT_CLICKHOUSE_ENABLED=true): ``readonly=1`` and
  ``max_execution_time`` settings on the query.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from polymkt_dagster.lib.clickhouse import SERVED_TABLES
from polymkt_dagster.lib.lake import Lake

MAX_SQL_CHARS = 20_000
DEFAULT_MAX_ROWS = 1_000
DEFAULT_TIMEOUT_S = 10.0

# Statement kinds that never belong in a read-only query, wherever they appear in a tree.
_FORBIDDEN_NODES: tuple[type, ...] = tuple(
    cls
    for cls in (
        getattr(exp, name, None)
        for name in (
            "Insert", "Update", "Delete", "Merge", "Create", "Drop", "Alter", "AlterTable",
            "TruncateTable", "Command", "Copy", "Pragma", "Set", "Use", "Describe", "Show",
            "Transaction", "Commit", "Rollback", "LoadData", "Attach", "Detach", "Kill",
            "Grant", "Revoke", "Into", "Analyze", "Refresh", "Cache", "Uncache", "Export",
            "Install", "Summarize", "Values", "Lock", "Declare",
        )
    )
    if isinstance(cls, type)
)  # fmt: skip

# Functions that read or write outside the allowlisted tables, or reveal the environment.
_DENIED_FUNCTIONS = {
    "file", "url", "s3", "s3cluster", "gcs", "azureblobstorage", "hdfs", "remote",
    "remotesecure", "cluster", "clusterallreplicas", "mysql", "postgresql", "mongodb",
    "redis", "sqlite", "jdbc", "odbc", "input", "executable", "generaterandom", "numbers",
    "zeros", "merge", "dictionary", "dictget", "getsetting", "getenv", "current_setting",
    "currentuser", "currentdatabase", "hostname", "version", "uptime", "read_parquet",
    "read_csv", "read_csv_auto", "read_json", "read_json_auto", "read_text", "read_blob",
    "parquet_scan", "parquet_metadata", "parquet_schema", "glob", "sniff_csv", "query",
    "query_table", "load_extension", "install_extension", "sleep", "sleepeachrow",
    "readcsv", "readparquet", "range", "generate_series", "system", "shell",
    "current_version", "currentversion", "current_user", "current_schema",
    "current_database", "current_catalog", "session_user", "user",
}  # fmt: skip

# Functions sqlglot has no typed node for (it parses them as Anonymous) that are safe.
_ALLOWED_ANONYMOUS = {
    "tostartofminute", "tostartofhour", "tostartofday", "tostartofweek", "tostartofmonth",
    "todate", "todatetime", "tostring", "tofloat64", "toint64", "uniq", "uniqexact",
    "argmax", "argmin", "any", "anylast", "quantile", "median", "countif", "sumif", "avgif",
    "round", "floor", "ceil", "abs", "greatest", "least", "ifnull", "nullif", "coalesce",
    "date_trunc", "datetrunc", "date_diff", "datediff", "now", "today", "epoch",
    "arg_max", "arg_min", "list", "string_agg", "group_concat", "count_if", "strftime",
    "make_timestamptz", "to_timestamp", "lower", "upper", "length", "substring", "concat",
    "dateadd", "date_add", "date_sub", "adddays", "subtractdays", "addhours", "subtracthours",
    "interval", "stddev", "variance", "corr", "sign", "ln", "log", "exp", "sqrt", "power",
}  # fmt: skip


class SqlRefused(ValueError):
    """The guard refused a query; ``reason`` says why in one sentence."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Allowlist:
    """Tables a query may read and, per table, the columns it may name."""

    tables: Mapping[str, frozenset[str]]

    @classmethod
    def rollups(cls) -> Allowlist:
        return cls(
            {name: frozenset(c for c, _ in table.columns) for name, table in SERVED_TABLES.items()}
        )

    def describe(self) -> str:
        return "\n".join(
            f"{name}({', '.join(c for c, _ in SERVED_TABLES[name].columns)})"
            if name in SERVED_TABLES
            else f"{name}({', '.join(sorted(cols))})"
            for name, cols in sorted(self.tables.items())
        )


@dataclass(frozen=True)
class GuardedQuery:
    sql: str  # what will run (regenerated from the checked tree)
    tables: tuple[str, ...]
    limit: int
    limit_added: bool
    notes: tuple[str, ...] = field(default_factory=tuple)


def _function_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        name = node.this if isinstance(node.this, str) else node.name
        return str(name).lower()
    return node.sql_name().lower()


def guard_sql(
    sql: str,
    allowlist: Allowlist | None = None,
    *,
    dialect: str = "duckdb",
    max_rows: int = DEFAULT_MAX_ROWS,
) -> GuardedQuery:
    """Check ``sql`` and return the query to run, or raise SqlRefused with the reason."""
    allowlist = allowlist or Allowlist.rollups()
    if not sql or not sql.strip():
        raise SqlRefused("empty query")
    if len(sql) > MAX_SQL_CHARS:
        raise SqlRefused(f"query longer than {MAX_SQL_CHARS:,} characters")
    if "\x00" in sql:
        raise SqlRefused("query contains a NUL byte")
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except (ParseError, TokenError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SqlRefused(f"not valid SQL: {first[:200]}") from None
    if len(statements) != 1:
        raise SqlRefused(f"exactly one statement allowed, found {len(statements)}")
    tree = statements[0]
    if not isinstance(tree, exp.Select | exp.SetOperation):
        raise SqlRefused(f"only SELECT queries are allowed, not {tree.key.upper()}")

    for node in tree.walk():
        if isinstance(node, _FORBIDDEN_NODES):
            raise SqlRefused(f"{node.key.upper()} is not allowed in a read-only query")
        for clause in ("settings", "format", "into", "options"):
            if node.args.get(clause):
                raise SqlRefused(f"a {clause.upper()} clause is not allowed")
        if isinstance(node, exp.Func):
            name = _function_name(node)
            if name in _DENIED_FUNCTIONS or name.startswith(("read_", "pg_", "duckdb_")):
                raise SqlRefused(f"function {name}() is not allowed")
            if isinstance(node, exp.Anonymous) and name not in _ALLOWED_ANONYMOUS:
                raise SqlRefused(f"unknown function {name}() is not allowed")
        if isinstance(node, exp.Lateral | exp.TableFromRows):
            raise SqlRefused("table functions are not allowed")

    cte_names = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    referenced: list[str] = []
    aliases: set[str] = set(cte_names)
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            raise SqlRefused(f"table functions are not allowed: {table.this.sql(dialect)[:80]}")
        if table.args.get("db") or table.args.get("catalog"):
            raise SqlRefused(
                f"schema-qualified table {table.sql(dialect)!r} is not allowed "
                "(system and catalog tables are off limits)"
            )
        name = table.name.lower()
        if name in cte_names:
            pass
        elif name not in allowlist.tables:
            raise SqlRefused(
                f"table {table.name!r} is not allowlisted (allowed: "
                f"{', '.join(sorted(allowlist.tables))})"
            )
        else:
            referenced.append(name)
        if table.alias:
            aliases.add(table.alias.lower())
    if not referenced:
        raise SqlRefused("the query must read at least one allowlisted table")

    allowed_columns: set[str] = set().union(*(allowlist.tables[t] for t in referenced))
    defined = {a.alias.lower() for a in tree.find_all(exp.Alias) if a.alias}
    for table_alias in tree.find_all(exp.TableAlias):
        defined |= {c.name.lower() for c in table_alias.columns}
        if table_alias.name:
            aliases.add(table_alias.name.lower())
    for column in tree.find_all(exp.Column):
        if isinstance(column.this, exp.Star):
            continue
        name = column.name.lower()
        qualifier = column.table.lower() if column.table else ""
        if qualifier and qualifier not in aliases and qualifier not in allowlist.tables:
            raise SqlRefused(f"column {column.sql(dialect)!r} names an unknown table")
        if name not in allowed_columns and name not in defined:
            raise SqlRefused(f"column {column.name!r} is not allowlisted for {referenced}")

    limit_added = False
    notes: list[str] = []
    limit_node = tree.args.get("limit")
    if limit_node is None:
        if isinstance(tree, exp.SetOperation):
            tree = exp.select("*").from_(tree.subquery("guarded"))
        tree = tree.limit(max_rows)
        limit, limit_added = max_rows, True
        notes.append(f"LIMIT {max_rows} added")
    else:
        value = limit_node.expression
        if not (isinstance(value, exp.Literal) and not value.is_string and value.this.isdigit()):
            raise SqlRefused("LIMIT must be a whole number")
        limit = int(value.this)
        if limit > max_rows:
            tree = tree.limit(max_rows)
            notes.append(f"LIMIT {limit} clamped to {max_rows}")
            limit = max_rows
    return GuardedQuery(
        sql=tree.sql(dialect=dialect),
        tables=tuple(sorted(set(referenced))),
        limit=limit,
        limit_added=limit_added,
        notes=tuple(notes),
    )


# ---- execution ----------------------------------------------------------------------------

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
    pass


def _duckdb_views(con: Any, lake: Lake) -> list[Path]:
    from polymkt_dagster.lib.duck import sql_string

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
            file_list = "[" + ", ".join(sql_string(p.resolve()) for p in files) + "]"
            source = (
                f"(SELECT * FROM read_parquet({file_list}, union_by_name = true, "
                f"hive_partitioning = false) UNION ALL BY NAME SELECT {typed_empty} WHERE false)"
            )
            con.execute(f"CREATE VIEW {name} AS SELECT {columns} FROM {source}")
            allowed_dirs.append(directory)
        else:
            con.execute(f"CREATE VIEW {name} AS SELECT {typed_empty} WHERE false")
    return allowed_dirs


def run_guarded(
    sql: str,
    *,
    lake: Lake,
    engine: str = "duckdb",
    clickhouse_client: Any = None,
    clickhouse_database: str = "default",
    max_rows: int = DEFAULT_MAX_ROWS,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> QueryResult:
    """Guard ``sql`` then run it read-only with a timeout; raises SqlRefused/QueryTimeout."""
    dialect = "clickhouse" if engine == "clickhouse" else "duckdb"
    guarded = guard_sql(sql, dialect=dialect, max_rows=max_rows)
    started = time.perf_counter()
    if engine == "clickhouse":
        if clickhouse_client is None:
            raise ValueError("engine clickhouse needs a client")
        # chdb ignores a session database: qualify the allowlisted tables explicitly
        tree = sqlglot.parse_one(guarded.sql, read=dialect)
        ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
        for table in tree.find_all(exp.Table):
            if table.name.lower() not in ctes:
                table.set("db", exp.to_identifier(clickhouse_database))
        try:
            result = clickhouse_client.query(
                tree.sql(dialect=dialect),
                settings={
                    "readonly": 1,
                    "max_execution_time": max(1, int(timeout_s)),
                    "database": clickhouse_database,
                },
            )
        except Exception as exc:
            if "TIMEOUT_EXCEEDED" in str(exc):
                raise QueryTimeout(f"query ran longer than {timeout_s:g} s") from None
            raise
        columns = list(result.column_names)
        rows = [dict(zip(columns, r, strict=True)) for r in result.result_rows]
    else:
        from polymkt_dagster.lib.duck import connect

        con = connect()
        try:
            allowed = _duckdb_views(con, lake)
            dirs = "[" + ", ".join(f"'{d}/'" for d in allowed) + "]"
            con.execute(f"SET allowed_directories = {dirs}")
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
            timer = threading.Timer(timeout_s, con.interrupt)
            timer.start()
            try:
                cursor = con.execute(guarded.sql)
                columns = [d[0] for d in cursor.description or []]
                rows = [dict(zip(columns, r, strict=True)) for r in cursor.fetchall()]
            except Exception as exc:
                if not timer.is_alive() or "interrupt" in str(exc).lower():
                    raise QueryTimeout(f"query ran longer than {timeout_s:g} s") from None
                raise
            finally:
                timer.cancel()
        finally:
            con.close()
    return QueryResult(
        sql=guarded.sql,
        engine=engine,
        columns=columns,
        rows=rows,
        seconds=time.perf_counter() - started,
        notes=list(guarded.notes),
    )
