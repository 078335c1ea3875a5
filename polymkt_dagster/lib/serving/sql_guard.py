"""A guard for SQL written by people or by an LLM: one read-only SELECT over the rollups.

This module holds the static checks only (``guard_sql``): it looks at the text and its
parsed tree and never touches an engine. Running a checked query, read-only and bounded in
time and memory on DuckDB or ClickHouse, is ``sql_runner`` (``run_guarded``).

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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import OptimizeError, ParseError, SqlglotError, TokenError
from sqlglot.optimizer.scope import Scope, traverse_scope, walk_in_scope
from sqlglot.tokens import TokenType

from polymkt_dagster.lib.serving.clickhouse import SERVED_TABLES

MAX_SQL_CHARS = 20_000
MAX_NESTING = 32  # parentheses/brackets deep; sqlglot recurses ~20 frames per level
MAX_TREE_DEPTH = 200  # levels of the parsed tree (long a+b+c+... chains nest without parens)
MAX_PAD_LENGTH = 1_000  # repeat/lpad/rpad: the longest string a query may build
MAX_REPLACEMENT_LENGTH = 100  # replace(): each match grows the string by at most this
MAX_TOP_N = 1_000  # arg_max(x, y, n), topK(n): values kept per group
DEFAULT_MAX_ROWS = 1_000
MAX_ROWS_CEILING = 100_000

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


__all__ = [
    "Allowlist",
    "GuardedQuery",
    "QueryLimitError",
    "SqlRefused",
    "guard_sql",
    "validate_max_rows",
]
