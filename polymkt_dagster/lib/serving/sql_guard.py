"""A guard for SQL written by people or by an LLM: one read-only SELECT over the rollups.

The SQL is parsed with sqlglot (a real parser, not patterns) and refused with a reason
unless it is exactly one SELECT (or a UNION/INTERSECT/EXCEPT of SELECTs, with optional
CTEs) that reads only allowlisted tables and columns:

- every table reference is resolved with sqlglot's scope analysis: it is accepted only if it
  names an allowlisted table or a CTE visible in that reference's own scope (a CTE defined
  inside a subquery does not make the same name readable outside it);
- only allowlisted functions (aggregates, window functions, arithmetic, dates, strings):
  nothing that reads files, URLs or settings, nothing that generates unbounded data
  (``range``, ``generate_series``, array generators, ``unnest``); ``repeat``/``lpad``/
  ``rpad`` only with a literal length up to ``MAX_PAD_LENGTH``;
- no DDL/DML or session commands, no table functions, no schema-qualified names, no
  recursive CTEs, no SETTINGS/FORMAT/INTO, no sampling clauses;
- every LIMIT/OFFSET/FETCH is a whole number (no percentages, no WITH TIES, no LIMIT BY);
  the outer one is added or clamped to the maximum;
- queries nested deeper than ``MAX_NESTING`` parentheses or ``MAX_TREE_DEPTH`` tree levels
  are refused before anything recursive touches them.

What runs is the SQL regenerated from the checked tree, never the original text.

Execution (``run_guarded``) is read-only and bounded in time and memory on either engine:

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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import OptimizeError, ParseError, SqlglotError, TokenError
from sqlglot.optimizer.scope import Scope, traverse_scope, walk_in_scope
from sqlglot.tokens import TokenType

from polymkt_dagster.lib.core.lake import Lake
from polymkt_dagster.lib.serving.clickhouse import SERVED_TABLES

MAX_SQL_CHARS = 20_000
MAX_NESTING = 32  # parentheses/brackets deep; sqlglot recurses ~20 frames per level
MAX_TREE_DEPTH = 200  # levels of the parsed tree (long a+b+c+... chains nest without parens)
MAX_PAD_LENGTH = 1_000  # repeat/lpad/rpad: the longest string a query may build
MAX_REPLACEMENT_LENGTH = 100  # replace(): each match grows the string by at most this
MAX_TOP_N = 1_000  # arg_max(x, y, n), topK(n): values kept per group
DEFAULT_MAX_ROWS = 1_000
MAX_ROWS_CEILING = 100_000
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
            "Install", "Summarize", "Values", "Lock", "Declare", "Lambda", "Placeholder",
            "Parameter", "SessionParameter", "UserDefinedFunction", "Pivot", "Unpivot",
        )
    )
    if isinstance(cls, type)
)  # fmt: skip

# The only functions a query may call: names as sqlglot reports them (lower case; typed
# nodes by their sql_name, ClickHouse/DuckDB names sqlglot does not model by their text).
# Anything else, including everything that reads files/URLs/settings or generates rows or
# arrays, is refused.
_ALLOWED_FUNCTIONS = frozenset({
    # aggregates
    "sum", "avg", "count", "min", "max", "median", "quantile", "quantile_cont",
    "quantile_disc", "percentile_cont", "percentile_disc", "approx_distinct",
    "approx_count_distinct", "approx_quantile", "stddev", "stddev_pop", "stddev_samp",
    "variance", "variance_pop", "corr", "covar_pop", "covar_samp", "regr_slope",
    "regr_intercept", "arg_max", "arg_min", "argmax", "argmin", "any_value", "any",
    "anylast", "first", "last", "group_concat", "string_agg", "array_agg", "list",
    "logical_and", "logical_or", "count_if", "countif", "sumif", "avgif", "minif", "maxif",
    "uniq", "uniqexact", "countdistinct", "mode", "kurtosis", "skewness", "product",
    "sum_if", "avg_if", "min_by", "max_by", "bit_and", "bit_or", "grouparray",
    "groupuniqarray", "topk",
    # window functions
    "row_number", "rank", "dense_rank", "ntile", "lag", "lead", "first_value",
    "last_value", "nth_value", "percent_rank", "cume_dist",
    # operators sqlglot models as functions
    "and", "or", "xor", "collate", "regexp_i_like", "regexp_full_match", "array_contains",
    "array_position",
    # conditionals, casts, arithmetic
    "case", "if", "multiif", "coalesce", "ifnull", "nullif", "greatest", "least", "cast",
    "try_cast", "exists", "abs", "round", "floor", "ceil", "trunc", "sqrt", "cbrt", "ln",
    "log", "log10", "log2", "exp", "power", "pow", "sign", "is_nan", "isnan", "isfinite",
    "isnull", "isnotnull", "mod", "safe_divide", "div", "tofloat64", "toint64",
    "tostring", "todecimal64", "array", "tuple",
    # dates and times
    "timestamp_trunc", "date_trunc", "datetrunc", "datediff", "date_diff", "date_add",
    "date_sub", "dateadd", "datesub", "timestamp_add", "timestamp_sub", "timestamp_diff",
    "extract", "date_part", "datepart", "year", "month", "day", "hour", "minute",
    "second", "week", "quarter", "day_of_week", "day_of_month", "day_of_year",
    "dayofweek", "time_to_str", "strftime", "str_to_time", "strptime", "unix_to_time",
    "time_to_unix", "to_timestamp", "epoch", "epoch_ms", "now", "current_timestamp",
    "current_date", "today", "tostartofminute", "tostartofhour", "tostartofday",
    "tostartofweek", "tostartofmonth", "tostartofyear", "todate", "todatetime",
    "toyyyymm", "toyyyymmdd", "formatdatetime", "timestamp_from_parts", "make_timestamp",
    "make_timestamptz", "date_bin", "time_bucket", "adddays", "subtractdays", "addhours",
    "subtracthours", "date", "to_date", "ts_or_ds_to_date", "date_str_to_date",
    "time_str_to_time", "str_to_date", "interval", "last_day", "age",
    # strings
    "lower", "upper", "length", "substring", "concat", "concat_ws", "trim", "replace",
    "left", "right", "starts_with", "startswith", "ends_with", "endswith", "contains",
    "str_position", "regexp_like", "regexp_matches", "regexp_extract", "split_part",
    "reverse", "initcap", "pad", "repeat", "md5", "hash",
})  # fmt: skip

# Functions that build a string as long as an argument says: allowed only with a literal
# length up to MAX_PAD_LENGTH (argument name in sqlglot's node).
_LENGTH_ARGUMENT = {"pad": "expression", "repeat": "times", "lpad": "expression"}


class SqlRefused(ValueError):
    """The guard refused a query; ``reason`` says why in one sentence."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class QueryLimitError(ValueError):
    """A limit given to the guard (timeout, row count) is not usable; the message says why."""


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


def validate_max_rows(max_rows: Any) -> int:
    if isinstance(max_rows, bool) or not isinstance(max_rows, int):
        raise QueryLimitError(f"max rows {max_rows!r} is not a whole number")
    if not 1 <= max_rows <= MAX_ROWS_CEILING:
        raise QueryLimitError(f"max rows must be between 1 and {MAX_ROWS_CEILING:,}")
    return max_rows


def _function_name(node: exp.Func) -> str:
    # Anonymous, AnonymousAggFunc, CombinedAggFunc and ParameterizedAgg keep the name as text
    if isinstance(node.this, str):
        return node.this.lower()
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    return node.sql_name().lower()


def _check_nesting(sql: str, dialect: str) -> None:
    """Refuse deep nesting from the tokens alone (the tokenizer does not recurse)."""
    depth = 0
    opening = {TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE}
    closing = {TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE}
    for token in sqlglot.Dialect.get_or_raise(dialect).tokenize(sql):
        if token.token_type in opening:
            depth += 1
            if depth > MAX_NESTING:
                raise SqlRefused(f"query nested deeper than {MAX_NESTING} parentheses")
        elif token.token_type in closing:
            depth -= 1


def _check_tree_depth(tree: exp.Expr) -> None:
    stack: list[tuple[exp.Expr, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_TREE_DEPTH:
            raise SqlRefused(
                f"query nested deeper than {MAX_TREE_DEPTH} levels (split long expressions)"
            )
        stack.extend((child, depth + 1) for child in node.iter_expressions())


def _whole_number(value: Any, clause: str) -> int:
    if isinstance(value, exp.Literal) and not value.is_string and value.this.isdigit():
        return int(value.this)
    raise SqlRefused(f"{clause} must be a whole number")


def _check_limits(node: exp.Expr) -> None:
    """LIMIT/OFFSET/FETCH anywhere: whole numbers only, no percent, ties, BY or samples."""
    if isinstance(node, exp.TableSample):
        raise SqlRefused("sampling clauses (TABLESAMPLE, USING SAMPLE, SAMPLE) are not allowed")
    if isinstance(node, exp.Limit | exp.Fetch):
        clause = "LIMIT" if isinstance(node, exp.Limit) else "FETCH"
        options = node.args.get("limit_options")
        if options is not None and options.args.get("percent"):
            raise SqlRefused(f"{clause} ... PERCENT is not allowed; give a row count")
        if options is not None and options.args.get("with_ties"):
            raise SqlRefused(f"{clause} ... WITH TIES is not allowed")
        if node.args.get("expressions"):
            raise SqlRefused("LIMIT ... BY is not allowed; use a window function (row_number)")
        if isinstance(node, exp.Limit) and node.args.get("offset") is not None:
            _whole_number(node.args["offset"], "OFFSET")
        _whole_number(node.expression if isinstance(node, exp.Limit) else node.args.get("count"),
                      clause)  # fmt: skip
    if isinstance(node, exp.Offset):
        _whole_number(node.expression, "OFFSET")


def _small_literal(value: Any, maximum: int) -> bool:
    return (
        isinstance(value, exp.Literal)
        and not value.is_string
        and value.this.isdigit()
        and int(value.this) <= maximum
    )


def _check_function(node: exp.Func) -> None:
    name = _function_name(node)
    if name not in _ALLOWED_FUNCTIONS:
        raise SqlRefused(
            f"function {name}() is not allowed (only aggregates, window functions, arithmetic, "
            "date and string functions that read no files or settings and generate no rows)"
        )
    argument = _LENGTH_ARGUMENT.get(name)
    if argument is not None and not _small_literal(node.args.get(argument), MAX_PAD_LENGTH):
        raise SqlRefused(
            f"{name}() needs a literal length of at most {MAX_PAD_LENGTH:,} characters"
        )
    # arg_max(x, y, n), max(x, n), topK(n)(x): a result list of n values per group
    counts = [node.args.get("count")]
    if isinstance(node, exp.ParameterizedAgg):
        counts += list(node.expressions)
    for count in counts:
        if count is not None and not _small_literal(count, MAX_TOP_N):
            raise SqlRefused(f"{name}() needs a literal count of at most {MAX_TOP_N:,}")
    if name in ("repeat", "replace") and not isinstance(node.this, exp.Literal | exp.Column):
        # repeat(repeat(x, 1000), 1000) and nested replace() multiply a string's length
        raise SqlRefused(f"{name}() may only {name} a literal or a column")
    if name == "replace":
        replacement = node.args.get("replacement")
        if replacement is not None and not (
            isinstance(replacement, exp.Literal)
            and replacement.is_string
            and len(replacement.this) <= MAX_REPLACEMENT_LENGTH
        ):
            raise SqlRefused(
                f"replace() needs a literal replacement of at most {MAX_REPLACEMENT_LENGTH} "
                "characters"
            )


def _scopes(tree: exp.Expr) -> list[Scope]:
    try:
        return traverse_scope(tree)
    except OptimizeError as exc:
        raise SqlRefused(f"cannot resolve the query's tables: {str(exc)[:200]}") from None


def _cte_reference(scope: Scope, table: exp.Table) -> bool:
    """True when ``table`` names a CTE visible in its own scope (sqlglot's scoping)."""
    source = scope.sources.get(table.alias_or_name)
    if not isinstance(source, Scope) or not source.is_cte:
        return False
    cte = source.expression.parent
    return (
        isinstance(cte, exp.CTE)
        and cte.alias_or_name == table.name
        and scope.cte_sources.get(table.name) is source
    )


def _resolve_tables(
    tree: exp.Expr, scopes: list[Scope], allowlist: Allowlist, dialect: str
) -> list[exp.Table]:
    """The real tables the query reads, each checked against the allowlist."""
    seen: set[int] = set()
    real: list[exp.Table] = []
    for scope in scopes:
        for table in scope.tables:
            seen.add(id(table))
            if not isinstance(table.this, exp.Identifier):
                raise SqlRefused(f"table functions are not allowed: {table.sql(dialect)[:80]}")
            if table.args.get("db") or table.args.get("catalog"):
                raise SqlRefused(
                    f"schema-qualified table {table.sql(dialect)!r} is not allowed "
                    "(system and catalog tables are off limits)"
                )
            if _cte_reference(scope, table):
                continue
            if table.name.lower() not in allowlist.tables:
                raise SqlRefused(
                    f"table {table.name!r} is not allowlisted (allowed: "
                    f"{', '.join(sorted(allowlist.tables))}; a CTE of that name defined in "
                    "another scope does not count)"
                )
            real.append(table)
    # fail closed: a table sqlglot's scopes did not place is read from nowhere we checked
    for table in tree.find_all(exp.Table):
        if id(table) not in seen:
            raise SqlRefused(
                f"table reference {table.sql(dialect)[:80]!r} outside a FROM/JOIN is not allowed"
            )
    return real


def _output_names(query: exp.Expr, allowlist: Allowlist) -> set[str]:
    """Column names a derived table or CTE exposes; a star exposes allowlisted columns."""
    if not isinstance(query, exp.Query):
        return set()
    names = {name.lower() for name in query.named_selects}
    if any(
        isinstance(s, exp.Star) or (isinstance(s, exp.Column) and isinstance(s.this, exp.Star))
        for s in query.selects
    ):
        names |= set().union(*allowlist.tables.values())
    return names


def _scope_names(scope: Scope, allowlist: Allowlist) -> tuple[set[str], set[str]]:
    """(column names, table qualifiers) a column in ``scope`` may use, outer scopes included."""
    columns: set[str] = set()
    qualifiers: set[str] = set()
    current: Scope | None = scope
    own = True
    if isinstance(scope.expression, exp.SetOperation):  # ORDER BY names the output columns
        columns |= {s.lower() for s in scope.expression.named_selects}
    while current is not None:
        for name, source in current.sources.items():
            qualifiers.add(name.lower())
            if isinstance(source, exp.Table):
                columns |= allowlist.tables.get(source.name.lower(), frozenset())
            elif isinstance(source, Scope):
                columns |= _output_names(source.expression, allowlist)
        for node in walk_in_scope(current.expression):
            if isinstance(node, exp.TableAlias):
                columns |= {c.name.lower() for c in node.columns}
                if node.name:
                    qualifiers.add(node.name.lower())
            elif own and isinstance(node, exp.Alias) and node.alias:
                # a select alias is visible in its own query level, not in subqueries
                columns.add(node.alias.lower())
        own = False
        current = current.parent
    return columns, qualifiers


def _check_columns(scopes: list[Scope], allowlist: Allowlist, dialect: str) -> None:
    for scope in scopes:
        columns, qualifiers = _scope_names(scope, allowlist)
        for column in walk_in_scope(scope.expression):
            if not isinstance(column, exp.Column) or isinstance(column.this, exp.Star):
                continue
            qualifier = column.table.lower() if column.table else ""
            if qualifier and qualifier not in qualifiers:
                raise SqlRefused(f"column {column.sql(dialect)!r} names an unknown table")
            if column.name.lower() not in columns:
                raise SqlRefused(f"column {column.name!r} is not allowlisted here")


def guard_sql(
    sql: str,
    allowlist: Allowlist | None = None,
    *,
    dialect: str = "duckdb",
    max_rows: int = DEFAULT_MAX_ROWS,
    database: str | None = None,
) -> GuardedQuery:
    """Check ``sql`` and return the query to run, or raise SqlRefused with the reason.

    ``database`` (ClickHouse) qualifies every real table the scopes resolved, so what runs
    can only read the allowlisted tables of that database.
    """
    try:
        return _guard(sql, allowlist or Allowlist.rollups(), dialect, max_rows, database)
    except RecursionError:
        raise SqlRefused("query nested too deeply to check") from None


def _guard(
    sql: str, allowlist: Allowlist, dialect: str, max_rows: int, database: str | None
) -> GuardedQuery:
    if not isinstance(sql, str) or not sql.strip():
        raise SqlRefused("empty query")
    if len(sql) > MAX_SQL_CHARS:
        raise SqlRefused(f"query longer than {MAX_SQL_CHARS:,} characters")
    if "\x00" in sql:
        raise SqlRefused("query contains a NUL byte")
    max_rows = validate_max_rows(max_rows)
    try:
        _check_nesting(sql, dialect)
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except (ParseError, TokenError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SqlRefused(f"not valid SQL: {first[:200]}") from None
    except SqlglotError as exc:
        raise SqlRefused(f"not valid SQL: {str(exc)[:200]}") from None
    if len(statements) != 1:
        raise SqlRefused(f"exactly one statement allowed, found {len(statements)}")
    tree = statements[0]
    _check_tree_depth(tree)
    if not isinstance(tree, exp.Select | exp.SetOperation):
        raise SqlRefused(f"only SELECT queries are allowed, not {tree.key.upper()}")

    for node in tree.walk():
        if isinstance(node, _FORBIDDEN_NODES):
            raise SqlRefused(f"{node.key.upper()} is not allowed in a read-only query")
        for clause in ("settings", "format", "into", "options"):
            # on queries and tables only: a function's "format" argument is not a clause
            if isinstance(node, exp.Query | exp.Table) and node.args.get(clause):
                raise SqlRefused(f"a {clause.upper()} clause is not allowed")
        if isinstance(node, exp.With) and node.args.get("recursive"):
            raise SqlRefused("recursive CTEs are not allowed (they can generate unbounded rows)")
        if isinstance(node, exp.Func):
            _check_function(node)
        if isinstance(node, exp.DataType) and node.args.get("values"):
            raise SqlRefused("fixed-size array types are not allowed in casts")
        if (
            isinstance(node, exp.DataTypeParam)
            and isinstance(node.this, exp.Literal)
            and not node.this.is_string
            and not _small_literal(node.this, MAX_PAD_LENGTH)
        ):
            # FixedString(N) and the like allocate N bytes per row
            raise SqlRefused(f"type parameter {node.this.sql()} is above {MAX_PAD_LENGTH:,}")
        if isinstance(node, exp.Lateral | exp.TableFromRows | exp.Unnest | exp.Explode):
            raise SqlRefused("table functions are not allowed")
        if isinstance(node, exp.Join) and (node.kind or "").upper() == "ARRAY":
            raise SqlRefused("ARRAY JOIN is not allowed (it generates rows from arrays)")
        if isinstance(node, exp.From | exp.Join) and not isinstance(
            node.this, exp.Table | exp.Subquery | exp.Final
        ):
            kind = node.this.key.upper()
            raise SqlRefused(f"{kind} is not allowed after FROM/JOIN (tables and subqueries only)")
        _check_limits(node)

    scopes = _scopes(tree)
    real_tables = _resolve_tables(tree, scopes, allowlist, dialect)
    if not real_tables:
        raise SqlRefused("the query must read at least one allowlisted table")
    _check_columns(scopes, allowlist, dialect)
    referenced = sorted({t.name.lower() for t in real_tables})
    if database is not None:
        for table in real_tables:
            table.set("db", exp.to_identifier(database))

    limit_added = False
    notes: list[str] = []
    limit_node = tree.args.get("limit")
    if isinstance(limit_node, exp.Fetch):  # FETCH FIRST n ROWS ONLY is a LIMIT n
        tree.set("limit", exp.Limit(expression=limit_node.args["count"].copy()))
        limit_node = tree.args["limit"]
    if limit_node is None:
        # set directly: a UNION's LIMIT applies to the whole union, after its ORDER BY
        tree.set("limit", exp.Limit(expression=exp.Literal.number(max_rows)))
        limit, limit_added = max_rows, True
        notes.append(f"LIMIT {max_rows} added")
    else:
        limit = _whole_number(limit_node.expression, "LIMIT")
        if limit > max_rows:
            limit_node.set("expression", exp.Literal.number(max_rows))
            notes.append(f"LIMIT {limit} clamped to {max_rows}")
            limit = max_rows
    return GuardedQuery(
        sql=tree.sql(dialect=dialect),
        tables=tuple(referenced),
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
    "Allowlist",
    "GuardedQuery",
    "QueryFailed",
    "QueryLimitError",
    "QueryResult",
    "QueryTimeout",
    "SqlRefused",
    "guard_sql",
    "run_guarded",
    "validate_timeout",
]
