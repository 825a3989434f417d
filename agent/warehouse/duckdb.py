"""The embedded warehouse: a DuckDB database file, opened read-only for each call."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from agent.warehouse.base import CountCheck, CountOutcome, WarehouseError, one_value
from agent.warehouse.sql import (
    CountQuery,
    bind_params,
    first_line,
    parse_table,
    query_params,
    read_count_row,
    run_checks,
    run_partition_checks,
    to_duckdb,
)

__all__ = ["DuckDBWarehouse"]

_LOCK_TRIES = 20
_LOCK_WAIT = 0.1


class DuckDBWarehouse:
    """Verify and wait queries on a DuckDB file; `dataset.table` is schema.table there.

    The file is opened only for the duration of a call (processors write it in between), always
    read-only; a file that does not exist yet has no tables. `queries_run` counts the data
    statements executed (one per `count` or `scalar` call), not catalog lookups.
    """

    backend = "duckdb"

    def __init__(
        self,
        path: Path,
        *,
        lock_tries: int = _LOCK_TRIES,
        lock_wait: float = _LOCK_WAIT,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Point at a database file.

        Args:
            path: the DuckDB file; it is never created here.
            lock_tries: how often to try opening while another process holds a write lock.
            lock_wait: seconds between those tries.
            sleep: the sleep function (injectable for tests).
        """
        self.path = path
        self.queries_run = 0
        self._lock_tries = max(1, lock_tries)
        self._lock_wait = lock_wait
        self._sleep = sleep

    @contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        last: Exception | None = None
        for attempt in range(self._lock_tries):
            try:
                con = duckdb.connect(str(self.path), read_only=True)
            except duckdb.IOException as exc:
                last = exc
                if "lock" not in str(exc).lower() or attempt == self._lock_tries - 1:
                    break
                self._sleep(self._lock_wait)
            except duckdb.Error as exc:
                raise WarehouseError(
                    f"cannot open DuckDB warehouse {self.path}: {first_line(exc)}"
                ) from None
            else:
                try:
                    yield con
                finally:
                    con.close()
                return
        raise WarehouseError(f"cannot open DuckDB warehouse {self.path}: {first_line(last)}")

    def _existing(self, con: duckdb.DuckDBPyConnection) -> set[tuple[str, str]]:
        try:
            rows = con.execute(
                "SELECT lower(table_schema), lower(table_name) FROM information_schema.tables"
            ).fetchall()
        except duckdb.Error as exc:
            raise WarehouseError(
                f"cannot read DuckDB warehouse {self.path}: {first_line(exc)}"
            ) from None
        return {(str(s), str(t)) for s, t in rows}

    def missing_tables(self, tables: Sequence[str]) -> list[str]:
        """Return those of `tables` that do not exist (all of them when the file does not).

        Args:
            tables: `dataset.table` names (a project part is ignored on DuckDB).

        Returns:
            The missing ones, in the given order.

        Raises:
            WarehouseError: a name is not a valid table name, or the file cannot be opened.
        """
        keys = [_key(name) for name in tables]
        if not self.path.exists():
            return list(tables)
        with self._connect() as con:
            existing = self._existing(con)
        return [name for name, key in zip(tables, keys, strict=True) if key not in existing]

    def count(
        self,
        checks: Sequence[CountCheck],
        params: Mapping[str, Any],
        labels: Mapping[str, str],
    ) -> list[CountOutcome]:
        """Count every check in one statement; problems land in each outcome's `error`.

        Args:
            checks: the verify step's checks.
            params: vars bound as `$name` parameters (only those the statement uses).
            labels: ignored on DuckDB.

        Returns:
            One outcome per check, in the order of `checks`; never raises for warehouse problems.
        """
        del labels
        if not self.path.exists():
            outcomes = run_checks(checks, params, missing=list, run=_no_query, probe=_no_probe)
            # Every table is missing then: say why, since a wrong warehouse.path is likelier
            # than a warehouse without the tables.
            for outcome in outcomes:
                if outcome.error and outcome.error.endswith("does not exist"):
                    outcome.error += f": the DuckDB file {self.path} does not exist (yet)"
            return outcomes
        try:
            with self._connect() as con:
                existing = self._existing(con)
                return run_checks(
                    checks,
                    params,
                    missing=lambda tables: [t for t in tables if _key(t) not in existing],
                    run=lambda query: self._run_count(con, query, params),
                    probe=lambda query: self._probe(con, query, params),
                )
        except WarehouseError as exc:  # the file could not be opened or read
            return [CountOutcome(name=check.name, error=str(exc)) for check in checks]

    def count_partitions(
        self,
        checks: Sequence[CountCheck],
        params: Sequence[Mapping[str, Any]],
        var: str,
        labels: Mapping[str, str],
    ) -> list[list[CountOutcome]]:
        """Count every check for every partition in one statement.

        Args:
            checks: the verify step's checks (the same for every partition).
            params: each partition's vars, the partition var bound to its value.
            var: the partition var's name.
            labels: ignored on DuckDB.

        Returns:
            Per partition, one outcome per check; never raises for warehouse problems.
        """
        if not self.path.exists() or not params:
            return [self.count(checks, p, labels) for p in params]
        try:
            with self._connect() as con:
                existing = self._existing(con)

                def rows(sql: str, bound: dict[str, Any]) -> list[dict[str, Any]]:
                    cursor = self._execute(con, to_duckdb(sql), bound)
                    names = [d[0] for d in cursor.description or []]
                    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

                def each(p: Mapping[str, Any]) -> list[CountOutcome]:
                    return run_checks(
                        checks,
                        p,
                        missing=lambda tables: [t for t in tables if _key(t) not in existing],
                        run=lambda query: self._run_count(con, query, p),
                        probe=lambda query: self._probe(con, query, p),
                    )

                return run_partition_checks(
                    checks,
                    params,
                    var,
                    missing=lambda tables: [t for t in tables if _key(t) not in existing],
                    rows=rows,
                    each=each,
                )
        except WarehouseError as exc:  # the file could not be opened or read
            return [[CountOutcome(name=c.name, error=str(exc)) for c in checks] for _ in params]

    def _run_count(
        self, con: duckdb.DuckDBPyConnection, query: CountQuery, params: Mapping[str, Any]
    ) -> list[CountOutcome]:
        sql = to_duckdb(query.sql)
        cursor = self._execute(con, sql, bind_params(query.params, params))
        names = [d[0] for d in cursor.description or []]
        row = cursor.fetchone()
        if row is None:  # pragma: no cover - a SELECT without FROM yields one row
            raise WarehouseError("the count query returned no row")
        return read_count_row(query, dict(zip(names, row, strict=True)))

    def _probe(
        self, con: duckdb.DuckDBPyConnection, query: CountQuery, params: Mapping[str, Any]
    ) -> None:
        sql = to_duckdb(query.sql)
        self._execute(con, f"EXPLAIN {sql}", bind_params(query.params, params), count=False)

    def _execute(
        self,
        con: duckdb.DuckDBPyConnection,
        sql: str,
        bound: dict[str, Any],
        *,
        count: bool = True,
    ) -> duckdb.DuckDBPyConnection:
        if count:
            self.queries_run += 1
        try:
            return con.execute(sql, bound) if bound else con.execute(sql)
        except duckdb.CatalogException as exc:
            message = first_line(exc).removeprefix("Catalog Error: ")
            if "Table with name" in message or "Schema with name" in message:
                raise WarehouseError(f"table not found: {message}") from None
            raise WarehouseError(f"cannot run this BigQuery SQL on DuckDB: {message}") from None
        except duckdb.Error as exc:
            raise WarehouseError(f"bad SQL: {first_line(exc)}") from None

    def scalar(self, sql: str, params: Mapping[str, Any], labels: Mapping[str, str]) -> Any:
        """Run a BigQuery-dialect query that yields one value and return it.

        Args:
            sql: the query (translated to DuckDB).
            params: vars; only those the query names are bound.
            labels: ignored on DuckDB.

        Returns:
            The one value of its one row, or None when there is no row.

        Raises:
            WarehouseError: a missing table, bad SQL, an untranslatable construct, more than
                one row or column.
        """
        del labels
        rows = self._rows(sql, params)
        return one_value([list(row) for row in rows])

    def column(self, sql: str, params: Mapping[str, Any], labels: Mapping[str, str]) -> list[Any]:
        """Run a BigQuery-dialect query (read-only) and return its first column.

        Args:
            sql: the query (translated to DuckDB).
            params: vars; only those the query names are bound.
            labels: ignored on DuckDB.

        Returns:
            The first value of every row, in the query's order.

        Raises:
            WarehouseError: a missing table, bad SQL, an untranslatable construct.
        """
        del labels
        return [row[0] for row in self._rows(sql, params)]

    def _rows(self, sql: str, params: Mapping[str, Any]) -> list[Any]:
        """Every row of a BigQuery-dialect query, run read-only on the DuckDB file."""
        duck_sql = to_duckdb(sql)
        bound = bind_params(query_params(sql), params)
        if not self.path.exists():
            raise WarehouseError(f"table not found: the warehouse {self.path} does not exist yet")
        with self._connect() as con:
            return list(self._execute(con, duck_sql, bound).fetchall())

    def estimate_bytes(self, checks: Sequence[CountCheck], params: Mapping[str, Any]) -> int | None:
        """DuckDB has no cost estimate.

        Args:
            checks: ignored.
            params: ignored.

        Returns:
            None.
        """
        del checks, params
        return None

    def estimate_scalar_bytes(self, sql: str, params: Mapping[str, Any]) -> int | None:
        """DuckDB has no cost estimate.

        Args:
            sql: ignored.
            params: ignored.

        Returns:
            None.
        """
        del sql, params
        return None

    def close(self) -> None:
        """Nothing stays open between calls."""


def _no_query(query: CountQuery) -> list[CountOutcome]:
    raise WarehouseError("the warehouse does not exist yet")  # pragma: no cover - all missing


def _no_probe(query: CountQuery) -> None:
    raise WarehouseError("the warehouse does not exist yet")  # pragma: no cover - all missing


def _key(name: str) -> tuple[str, str]:
    _, dataset, table = parse_table(name)
    return dataset.lower(), table.lower()
