"""The warehouse protocol: what a verify or wait step asks of DuckDB or BigQuery."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.errors import RunbookError

__all__ = ["CountCheck", "CountOutcome", "Warehouse", "WarehouseError", "one_value"]


class WarehouseError(RunbookError):
    """A warehouse problem a user can act on (credentials, permissions, bad SQL, quota)."""


@dataclass(frozen=True)
class CountCheck:
    """One row-count check of a verify step, with optional key coverage.

    `where` and `coverage_expected` are BigQuery-dialect SQL that may name `@params`.
    """

    name: str
    table: str
    where: str | None = None
    coverage_key: tuple[str, ...] = ()
    coverage_expected: str | None = None


@dataclass
class CountOutcome:
    """What the warehouse counted for one check; `error` set means the check could not run."""

    name: str
    count: int | None = None
    missing_keys: list[dict[str, Any]] = field(default_factory=list)
    missing_total: int | None = None
    # How many distinct keys the coverage query expects: the number a check may expect.
    expected_total: int | None = None
    error: str | None = None


class Warehouse(Protocol):
    """A place where verify steps count rows and wait steps poll conditions."""

    backend: str

    def count(
        self,
        checks: Sequence[CountCheck],
        params: Mapping[str, Any],
        labels: Mapping[str, str],
    ) -> list[CountOutcome]:
        """Count every check in one query (one job); outcomes in the order of `checks`."""
        ...

    def count_partitions(
        self,
        checks: Sequence[CountCheck],
        params: Sequence[Mapping[str, Any]],
        var: str,
        labels: Mapping[str, str],
    ) -> list[list[CountOutcome]]:
        """Count every check for every partition in one statement (one job); per partition,
        outcomes in the order of `checks`."""
        ...

    def scalar(self, sql: str, params: Mapping[str, Any], labels: Mapping[str, str]) -> Any:
        """Run a BigQuery-dialect query that yields one value and return it."""
        ...

    def column(self, sql: str, params: Mapping[str, Any], labels: Mapping[str, str]) -> list[Any]:
        """Run a read-only query and return its first column, row by row (partition values)."""
        ...

    def estimate_bytes(self, checks: Sequence[CountCheck], params: Mapping[str, Any]) -> int | None:
        """Bytes the count query would process (BigQuery dry run); None where unknown."""
        ...

    def estimate_scalar_bytes(self, sql: str, params: Mapping[str, Any]) -> int | None:
        """Bytes a wait condition's query would process (BigQuery dry run); None where unknown."""
        ...

    def missing_tables(self, tables: Sequence[str]) -> list[str]:
        """Return those of `tables` that do not exist."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def one_value(rows: list[list[Any]]) -> Any:
    """The value a one-value query returned: None for no row; more is a mistake to name.

    Raises:
        WarehouseError: more than one row or more than one column, which would otherwise be
            judged by its first value without a word.
    """
    if not rows:
        return None
    if len(rows) > 1 or len(rows[0]) != 1:
        shape = f"{len(rows)} rows" if len(rows) > 1 else f"{len(rows[0])} columns"
        raise WarehouseError(f"the query returned {shape}; a condition returns one value")
    return rows[0][0]
