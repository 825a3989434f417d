"""Partitions: the values a partitioned runbook runs over (dates, a list, or a query's rows)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agent.errors import UsageError
from agent.plan import templating
from agent.plan.model import Partitions

__all__ = [
    "MAX_PARTITIONS",
    "partition_key",
    "partition_value",
    "resolve_partitions",
    "select_partitions",
]

MAX_PARTITIONS = 10_000
"""More partitions than this are refused: a typo in a range's year should not start a decade."""

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def partition_value(raw: Any) -> Any:
    """A partition's value as templates and SQL params see it: YYYY-MM-DD is a date.

    Args:
        raw: the value as written, or as the journal or a query gave it.

    Returns:
        A `datetime.date` for a date, else the value itself.
    """
    if isinstance(raw, dt.datetime):
        return raw.date()
    if isinstance(raw, str) and _DATE.match(raw):
        try:
            return dt.date.fromisoformat(raw)
        except ValueError:
            return raw
    return raw


def partition_key(value: Any) -> str:
    """The partition's name in the record, the journal, the report and `--partition`."""
    value = partition_value(value)
    return value.isoformat() if isinstance(value, dt.date) else str(value)


def _date(text: str, what: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"partitions: '{what}' is not a date (YYYY-MM-DD): '{text}'") from None


def resolve_partitions(
    spec: Partitions,
    values: Mapping[str, Any],
    *,
    query: Callable[[str], Sequence[Any]] | None = None,
    limit: int = MAX_PARTITIONS,
) -> list[str]:
    """Work out the partitions of a run, in order, each once.

    Args:
        spec: the runbook's `partitions:`.
        values: the run's vars (the range's templates see them).
        query: runs the `query` read-only and returns its first column; needed for a query.
        limit: the most partitions allowed.

    Returns:
        The partition keys (see `partition_key`).

    Raises:
        UsageError: a range that ends before it starts, a date that is not one, too many.
    """
    names = {**values, "env": {}, "steps": {}, "run": {"id": ""}}
    raw: list[Any]
    if spec.dates is not None:
        first = _date(templating.render(spec.dates.from_, names), "from")
        last = _date(templating.render(spec.dates.to, names), "to")
        if last < first:
            raise UsageError(f"partitions: the range ends ({last}) before it starts ({first})")
        days = (last - first).days + 1
        if days > limit:
            raise UsageError(
                f"partitions: the range holds {days:,} dates, more than the {limit:,} allowed"
            )
        raw = [first + dt.timedelta(days=i) for i in range(days)]
    elif spec.values is not None:
        raw = list(spec.values)
    else:
        if query is None:
            raise UsageError("partitions: the query needs the warehouse")
        raw = [v for v in query(str(spec.query)) if v is not None]
    keys = list(dict.fromkeys(partition_key(v) for v in raw))
    if len(keys) > limit:
        raise UsageError(f"partitions: {len(keys):,} partitions, more than the {limit:,} allowed")
    return keys


def select_partitions(keys: Sequence[str], wanted: Sequence[str]) -> list[str]:
    """The partitions `--partition` names, in the run's order.

    Args:
        keys: every partition of the run.
        wanted: the values given (dates as YYYY-MM-DD); empty means all.

    Returns:
        The chosen keys.

    Raises:
        UsageError: a value that is not one of the run's partitions.
    """
    if not wanted:
        return list(keys)
    asked = {partition_key(w) for w in wanted}
    unknown = sorted(asked - set(keys))
    if unknown:
        shown = ", ".join(keys[:5]) + (", ..." if len(keys) > 5 else "")
        raise UsageError(
            f"unknown partition(s) {', '.join(unknown)} (the run's partitions: {shown})"
        )
    return [k for k in keys if k in asked]
