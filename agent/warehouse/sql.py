"""Pure SQL building for the warehouse: identifiers, the one query per verify step, DuckDB SQL."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError, SqlglotError, UnsupportedError

from agent.warehouse.base import CountCheck, CountOutcome, WarehouseError

__all__ = [
    "MISSING_KEYS_CAP",
    "CountQuery",
    "PreparedCheck",
    "bind_params",
    "build_count_query",
    "check_column",
    "first_line",
    "parse_table",
    "partition_query",
    "prepare_checks",
    "query_params",
    "read_count_row",
    "run_checks",
    "run_partition_checks",
    "sanitize_labels",
    "tables_in",
    "to_duckdb",
]

MISSING_KEYS_CAP = 50
"""At most this many missing keys come back per coverage check (plus the total)."""

_PROJECT = r"[a-z][a-z0-9-]{0,61}[a-z0-9]"
_DATASET = r"[A-Za-z_][A-Za-z0-9_]{0,1023}"
_TABLE = r"[A-Za-z_][A-Za-z0-9_-]{0,1023}"
_TABLE_RE = re.compile(
    rf"^(?:(?P<project>{_PROJECT})\.)?(?P<dataset>{_DATASET})\.(?P<table>{_TABLE})$"
)
_COLUMN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,299}$")
_LABEL_BAD = re.compile(r"[^a-z0-9_-]")
_LABEL_MAX = 63
_MAX_LABELS = 64


def first_line(message: object) -> str:
    """Return the first non-empty line of an error message, stripped.

    Args:
        message: an exception or any text.

    Returns:
        The line a user reads; "unknown error" when there is none.
    """
    for line in str(message).splitlines():
        if line.strip():
            return line.strip()
    return "unknown error"


def parse_table(name: str) -> tuple[str | None, str, str]:
    """Check a table name against the strict identifier pattern and split it.

    Args:
        name: `dataset.table` or `project.dataset.table`.

    Returns:
        (project or None, dataset, table).

    Raises:
        WarehouseError: the name is anything else ("invalid table name ...").
    """
    match = _TABLE_RE.match(name) if isinstance(name, str) else None
    if match is None:
        raise WarehouseError(
            f"invalid table name {name!r}: expected dataset.table or project.dataset.table "
            "(letters, digits, underscores; project ids may use hyphens)"
        )
    return match["project"], match["dataset"], match["table"]


def check_column(name: str) -> str:
    """Check a coverage key column name.

    Args:
        name: a column name.

    Returns:
        The name, unchanged.

    Raises:
        WarehouseError: the name is not a plain identifier.
    """
    if not isinstance(name, str) or _COLUMN_RE.match(name) is None:
        raise WarehouseError(f"invalid key column {name!r}: expected a plain column name")
    return name


def sanitize_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """Make job labels acceptable to BigQuery: lowercase, [a-z0-9_-], at most 63 characters.

    Keys must start with a letter (others get an `l_` prefix); empty keys are dropped; at most 64
    labels are kept.

    Args:
        labels: label names and values as the caller has them (runbook id, run id, step id).

    Returns:
        The sanitised labels.
    """
    out: dict[str, str] = {}
    for raw_key, raw_value in labels.items():
        key = _LABEL_BAD.sub("_", str(raw_key).lower())
        if not key:
            continue
        if not key[0].isalpha():
            key = f"l_{key}"
        key = key[:_LABEL_MAX]
        out[key] = _LABEL_BAD.sub("_", str(raw_value).lower())[:_LABEL_MAX]
        if len(out) >= _MAX_LABELS:
            break
    return out


def _parse(sql: str, what: str) -> exp.Expr:
    """Parse one BigQuery-dialect statement; WarehouseError("bad SQL ...") otherwise."""
    try:
        statements = [s for s in sqlglot.parse(sql, read="bigquery") if s is not None]
    except ParseError as exc:
        raise WarehouseError(f"bad SQL in {what}: {first_line(exc)}") from None
    except SqlglotError as exc:  # pragma: no cover - other sqlglot failures
        raise WarehouseError(f"bad SQL in {what}: {first_line(exc)}") from None
    if len(statements) != 1:
        raise WarehouseError(f"bad SQL in {what}: expected one statement, got {len(statements)}")
    return statements[0]


def _param_names(node: exp.Expr) -> list[str]:
    names: list[str] = []
    for param in node.find_all(exp.Parameter):
        name = param.name
        if name and name not in names:
            names.append(name)
    return names


def tables_in(sql_node: exp.Expr) -> list[str]:
    """Return the qualified tables (`dataset.table`, `project.dataset.table`) a query reads.

    CTE names, unqualified names and names outside the strict pattern are left out.

    Args:
        sql_node: a parsed query.

    Returns:
        The distinct table names, in order of appearance.
    """
    ctes = {cte.alias_or_name.lower() for cte in sql_node.find_all(exp.CTE)}
    names: list[str] = []
    for table in sql_node.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier) or not table.db:
            continue
        if not table.catalog and table.name.lower() in ctes:
            continue
        parts = [p for p in (table.catalog, table.db, table.name) if p]
        name = ".".join(parts)
        if _TABLE_RE.match(name) is not None and name not in names:
            names.append(name)
    return names


@dataclass
class PreparedCheck:
    """A check that passed the identifier and SQL checks, ready to join the combined query."""

    index: int
    check: CountCheck
    table_sql: str
    where_sql: str | None
    expected_sql: str | None
    key: tuple[str, ...]
    params: list[str]
    tables: list[str] = field(default_factory=list)


def _quoted_table(name: str) -> str:
    project, dataset, table = parse_table(name)
    parts = [p for p in (project, dataset, table) if p]
    return "`" + ".".join(parts) + "`"


def prepare_checks(
    checks: Sequence[CountCheck], params: Mapping[str, Any]
) -> tuple[list[PreparedCheck], dict[int, str]]:
    """Check every table name, key column and SQL fragment of a verify step.

    Args:
        checks: the step's checks.
        params: the vars that `@name` may bind.

    Returns:
        (the checks that can run, {index of a check that cannot: its one-line error}).
    """
    prepared: list[PreparedCheck] = []
    errors: dict[int, str] = {}
    for index, check in enumerate(checks):
        try:
            prepared.append(_prepare(index, check, params))
        except WarehouseError as exc:
            errors[index] = str(exc)
    return prepared, errors


def _prepare(index: int, check: CountCheck, params: Mapping[str, Any]) -> PreparedCheck:
    table_sql = _quoted_table(check.table)
    used: list[str] = []
    where_sql = None
    if check.where is not None and check.where.strip():
        # Parsed, never pasted: only the re-generated condition enters the query.
        where_node = _parse(f"SELECT 1 FROM t WHERE {check.where}", "where")  # noqa: S608
        condition = where_node.args.get("where")
        if (
            not isinstance(where_node, exp.Select)
            or condition is None
            or where_node.args.get("from_") is None
            or len(where_node.expressions) != 1
            or any(where_node.args.get(k) for k in ("group", "having", "order", "limit", "qualify"))
        ):
            raise WarehouseError(f"bad SQL in where: {check.where!r} is not one condition")
        where_sql = condition.this.sql(dialect="bigquery")
        used += _param_names(condition)
    expected_sql = None
    key: tuple[str, ...] = ()
    tables = [check.table]
    if check.coverage_expected is not None:
        key = tuple(check_column(k) for k in check.coverage_key)
        if not key:
            raise WarehouseError("coverage needs at least one key column")
        expected = _parse(check.coverage_expected, "coverage expected")
        if not isinstance(expected, exp.Query):
            raise WarehouseError("bad SQL in coverage expected: it must be a SELECT")
        expected_sql = expected.sql(dialect="bigquery")
        used += [p for p in _param_names(expected) if p not in used]
        tables += [t for t in tables_in(expected) if t not in tables]
    bind_params(used, params)  # refuses a name that is not a var
    return PreparedCheck(index, check, table_sql, where_sql, expected_sql, key, used, tables)


@dataclass(frozen=True)
class CountQuery:
    """The one statement of a verify step (BigQuery dialect) and the params it binds."""

    sql: str
    params: list[str]
    checks: list[PreparedCheck]


def build_count_query(prepared: Sequence[PreparedCheck]) -> CountQuery:
    """Build the single statement that counts every check and finds every missing key.

    It returns one row: for check number i, `c{i}_count`, and for coverage checks also
    `c{i}_expected_total` (the distinct expected keys), `c{i}_missing_total` and `c{i}_missing`
    (the first MISSING_KEYS_CAP missing keys as an array of structs, ordered by the key columns).
    Missing keys are an anti-join computed in the warehouse (`EXCEPT DISTINCT`), so only they
    come back.

    Args:
        prepared: checks from `prepare_checks`, at least one.

    Returns:
        The query in BigQuery dialect.
    """
    ctes: list[str] = []
    columns: list[str] = []
    params: list[str] = []
    for i, check in enumerate(prepared):
        where = f" WHERE ({check.where_sql})" if check.where_sql else ""
        # Identifiers are checked and fragments re-generated from their parse; values are params.
        # Each count scans its table with its own check's filter in WHERE. One scan with
        # COUNTIF per check read every row (and every BigQuery partition, which a table with
        # require_partition_filter refuses): 227 ms against about 1 ms per filtered count on
        # a date-sorted 50 M-row DuckDB table (issue 15).
        columns.append(f"(SELECT COUNT(*) FROM {check.table_sql}{where}) AS c{i}_count")  # noqa: S608
        if check.expected_sql is not None:
            cols = ", ".join(f"`{k}`" for k in check.key)
            struct = ", ".join(f"`{k}` AS `{k}`" for k in check.key)
            # The expected keys once, distinct: the missing ones are taken from them, and their
            # number is what `expect: coverage` expects.
            keys, cte = f"runbook_expected_{i}", f"runbook_missing_{i}"
            ctes.append(
                f"{keys} AS (SELECT DISTINCT {cols} FROM ({check.expected_sql}))"  # noqa: S608
            )
            ctes.append(
                f"{cte} AS (SELECT {cols} FROM {keys} "  # noqa: S608
                f"EXCEPT DISTINCT SELECT {cols} FROM {check.table_sql}{where})"
            )
            columns.append(f"(SELECT COUNT(*) FROM {keys}) AS c{i}_expected_total")  # noqa: S608
            columns.append(f"(SELECT COUNT(*) FROM {cte}) AS c{i}_missing_total")  # noqa: S608
            columns.append(
                f"(SELECT ARRAY_AGG(STRUCT({struct}) ORDER BY {cols}) FROM "  # noqa: S608
                f"(SELECT {cols} FROM {cte} ORDER BY {cols} LIMIT {MISSING_KEYS_CAP})) "
                f"AS c{i}_missing"
            )
        params += [p for p in check.params if p not in params]
    # One row of scalar subqueries: one statement (one BigQuery job), every scan filtered.
    with_clause = f"WITH {', '.join(ctes)} " if ctes else ""
    sql = f"{with_clause}SELECT {', '.join(columns)}"
    return CountQuery(sql, params, list(prepared))


def read_count_row(query: CountQuery, row: Mapping[str, Any]) -> list[CountOutcome]:
    """Turn the one row of a count query into outcomes.

    Args:
        query: the query that was run.
        row: its single row, by column name.

    Returns:
        One outcome per check of the query, in its order.

    Raises:
        WarehouseError: the row lacks a column the query asked for.
    """
    wanted = [f"c{i}_count" for i in range(len(query.checks))]
    absent = [c for c in wanted if c not in row]
    if absent:
        raise WarehouseError(f"the count query's result has no column {absent[0]}")
    outcomes: list[CountOutcome] = []
    for i, check in enumerate(query.checks):
        outcome = CountOutcome(name=check.check.name, count=int(row[f"c{i}_count"]))
        if check.expected_sql is not None:
            outcome.missing_total = int(row[f"c{i}_missing_total"] or 0)
            expected = row.get(f"c{i}_expected_total")
            outcome.expected_total = None if expected is None else int(expected)
            keys = row[f"c{i}_missing"] or []
            outcome.missing_keys = [{k: dict(item)[k] for k in check.key} for item in keys]
        outcomes.append(outcome)
    return outcomes


def bind_params(names: Sequence[str], params: Mapping[str, Any]) -> dict[str, Any]:
    """Pick the params a statement uses (DuckDB errors on unused and on missing ones).

    Args:
        names: parameter names the statement uses.
        params: every var.

    Returns:
        {name: value} for exactly `names`.

    Raises:
        WarehouseError: a name is not among `params`.
    """
    missing = [n for n in names if n not in params]
    if missing:
        raise WarehouseError(
            "unknown parameter " + ", ".join(f"@{p}" for p in missing) + " (not a var)"
        )
    return {n: params[n] for n in names}


_PARAM_RE = re.compile(r"(?<![@\w])@([A-Za-z_][A-Za-z0-9_]*)")


def query_params(sql: str, *, lenient: bool = False) -> list[str]:
    """Return the `@name` parameters a BigQuery-dialect statement uses.

    Args:
        sql: one statement.
        lenient: when sqlglot cannot parse the statement, find `@name` tokens instead of raising
            (BigQuery then judges the SQL and gives its own message).

    Returns:
        Distinct parameter names in order of appearance.

    Raises:
        WarehouseError: the statement does not parse (unless `lenient`).
    """
    try:
        return _param_names(_parse(sql, "query"))
    except WarehouseError:
        if not lenient:
            raise
    return list(dict.fromkeys(_PARAM_RE.findall(sql)))


_NAMESPACES = {
    exp.SafeFunc: "the SAFE. function prefix",
    exp.NetFunc: "NET. functions",
}


def _untranslatable(node: exp.Expr) -> str | None:
    """Name a BigQuery construct DuckDB cannot run, or None."""
    for sub in node.walk():
        for kind, what in _NAMESPACES.items():
            if isinstance(sub, kind):
                return what
        if isinstance(sub, exp.Table):
            if not isinstance(sub.this, exp.Identifier):
                namespace = sub.db or "table"
                return f"{namespace}.{sub.this.key.upper()} (a table function)"
            if "*" in sub.name:
                return f"wildcard table {sub.name} (`_TABLE_SUFFIX`)"
            if sub.args.get("version") is not None:
                return "FOR SYSTEM_TIME AS OF (time travel)"
        if isinstance(sub, exp.Dot) and isinstance(sub.expression, exp.Func):
            return f"{sub.this.sql(dialect='bigquery')}. functions"
    return None


def to_duckdb(sql: str) -> str:
    """Translate one BigQuery-dialect statement to DuckDB.

    `dataset.table` becomes schema.table; a project part is dropped (one database file);
    `@name` becomes the named parameter `$name`.

    Args:
        sql: the statement.

    Returns:
        DuckDB SQL.

    Raises:
        WarehouseError: bad SQL, or a construct DuckDB cannot run
            ("cannot run this BigQuery SQL on DuckDB: ...").
    """
    node = _parse(sql, "query")
    construct = _untranslatable(node)
    if construct is not None:
        raise WarehouseError(f"cannot run this BigQuery SQL on DuckDB: {construct}")
    for table in node.find_all(exp.Table):
        if table.args.get("catalog") is not None:
            table.set("catalog", None)
    try:
        return node.sql(dialect="duckdb", unsupported_level=ErrorLevel.RAISE)
    except UnsupportedError as exc:
        raise WarehouseError(f"cannot run this BigQuery SQL on DuckDB: {first_line(exc)}") from None


def run_checks(
    checks: Sequence[CountCheck],
    params: Mapping[str, Any],
    *,
    missing: Callable[[list[str]], Collection[str]],
    run: Callable[[CountQuery], list[CountOutcome]],
    probe: Callable[[CountQuery], None],
) -> list[CountOutcome]:
    """Run a verify step's checks as one query; every problem lands in its check's `error`.

    Checks with a bad name or SQL, or reading a missing table, get their error and stay out of
    the query; the rest run in one statement. If that statement fails and it has several checks,
    each is probed on its own (a dry run or EXPLAIN, not a query) to name the one that broke it,
    and the others run again together.

    Args:
        checks: the step's checks.
        params: vars for `@name` parameters.
        missing: returns those of the given tables that do not exist.
        run: runs a count query (one job) and returns its outcomes.
        probe: validates a count query without running it; raises WarehouseError when bad.

    Returns:
        One outcome per check, in the order of `checks`.
    """
    prepared, errors = prepare_checks(checks, params)
    results: dict[int, CountOutcome] = {}
    try:
        tables = list(dict.fromkeys(t for check in prepared for t in check.tables))
        gone = set(missing(tables)) if tables else set()
        runnable = []
        for check in prepared:
            absent = [t for t in check.tables if t in gone]
            if absent:
                errors[check.index] = f"table {absent[0]} does not exist"
            else:
                runnable.append(check)
        if runnable:
            try:
                outcomes = run(build_count_query(runnable))
            except WarehouseError:
                if len(runnable) == 1:
                    raise
                good = []
                for check in runnable:
                    try:
                        probe(build_count_query([check]))
                    except WarehouseError as exc:
                        errors[check.index] = str(exc)
                    else:
                        good.append(check)
                if len(good) == len(runnable):
                    raise
                runnable = good
                outcomes = run(build_count_query(good)) if good else []
            for check, outcome in zip(runnable, outcomes, strict=True):
                results[check.index] = outcome
    except WarehouseError as exc:
        for check in prepared:
            if check.index not in results:
                errors.setdefault(check.index, str(exc))
    return [
        CountOutcome(name=check.name, error=errors[i]) if i in errors else results[i]
        for i, check in enumerate(checks)
    ]


PARTITION_COLUMN = "runbook_partition"


def partition_query(query: CountQuery, var: str, count: int) -> tuple[str, list[str]]:
    """One statement that answers a verify step's count query for `count` partitions at once.

    Each partition's copy binds the partition var under its own name (`@date__p3`), so every
    copy keeps its partition filter in its own WHERE (BigQuery prunes, and a table that
    requires a partition filter accepts it); the copies are joined with UNION ALL, each row
    tagged with its partition's number in `runbook_partition`.

    Args:
        query: the step's count query (see `build_count_query`).
        var: the partition var's name.
        count: how many partitions.

    Returns:
        (the statement, the params it binds; the partition ones as `<var>__p<n>`).
    """
    pattern = re.compile(rf"(?<![@\w])@{re.escape(var)}\b")
    params = [p for p in query.params if p != var]
    parts = []
    for n in range(count):
        sql = pattern.sub(f"@{var}__p{n}", query.sql) if var in query.params else query.sql
        parts.append(
            f"SELECT {n} AS {PARTITION_COLUMN}, runbook_q.* FROM ({sql}) AS runbook_q"  # noqa: S608
        )
        if var in query.params:
            params.append(f"{var}__p{n}")
    return " UNION ALL ".join(parts), params


def run_partition_checks(
    checks: Sequence[CountCheck],
    params: Sequence[Mapping[str, Any]],
    var: str,
    *,
    missing: Callable[[list[str]], Collection[str]],
    rows: Callable[[str, dict[str, Any]], list[dict[str, Any]]],
    each: Callable[[Mapping[str, Any]], list[CountOutcome]],
) -> list[list[CountOutcome]]:
    """Run a verify step's checks for many partitions in one statement.

    When a check cannot be prepared, reads a missing table, or the one statement fails, each
    partition is counted on its own (`each`), which names every problem in its check's error.

    Args:
        checks: the step's checks (the same SQL for every partition).
        params: each partition's params (the partition var bound to its value).
        var: the partition var's name.
        missing: returns those of the given tables that do not exist.
        rows: runs a statement with its bound params and returns its rows.
        each: counts the checks for one partition's params (the fallback).

    Returns:
        For each partition, one outcome per check, in the order of `checks`.
    """
    if not params:
        return []
    prepared, errors = prepare_checks(checks, params[0])
    tables = list(dict.fromkeys(t for check in prepared for t in check.tables))
    try:
        gone = set(missing(tables)) if tables else set()
    except WarehouseError:
        gone = set(tables)
    if errors or gone or not prepared:
        return [each(p) for p in params]
    query = build_count_query(prepared)
    sql, names = partition_query(query, var, len(params))
    values = dict(params[0])
    for n, p in enumerate(params):
        values[f"{var}__p{n}"] = p.get(var)
    try:
        found = {int(r[PARTITION_COLUMN]): r for r in rows(sql, bind_params(names, values))}
        return [read_count_row(query, found[n]) for n in range(len(params))]
    except (WarehouseError, KeyError):
        return [each(p) for p in params]
