"""Every derived number, mark, tally and duration of a run record, computed once for all outputs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any, TypeGuard

from agent.plan.durations import elapsed
from agent.record import CheckResult, RunRecord, RunStatus, Status, StepResult

__all__ = [
    "AUTO_PRIORITY",
    "COUNT_WORDS",
    "PRIORITIES",
    "RUN_MARK",
    "STATUS_MARK",
    "Change",
    "check_figure",
    "check_percent",
    "check_total",
    "count_change",
    "counted",
    "display_names",
    "duration_text",
    "expected_text",
    "fraction",
    "is_number",
    "key_groups",
    "key_noun",
    "list_diff",
    "missing_count",
    "missing_phrase",
    "percent_change",
    "percent_text",
    "plural",
    "priority_rank",
    "run_folder",
    "run_seconds",
    "signed_percent_text",
    "skipped_on_purpose",
    "status_tally",
    "status_words",
    "timestamp",
    "utc",
    "value_changes",
    "value_text",
]

# One mark per step status, read by the report and the console alike.
STATUS_MARK: dict[Status | None, str] = {
    Status.SUCCESS: "✅",
    Status.PARTIAL: "⚠️",
    Status.FAILED: "❌",
    Status.NOT_FOUND: "⚠️",
    Status.TIMED_OUT: "⏱️",
    Status.SKIPPED: "⏭️",
    Status.ABORTED: "🛑",
    None: "⏳",
}
RUN_MARK: dict[RunStatus | None, str] = {
    RunStatus.COMPLETE: "✅",
    RunStatus.PARTIALLY_COMPLETE: "⚠️",
    RunStatus.FAILED: "❌",
    RunStatus.INTERRUPTED: "🛑",
    None: "⏳",
}
COUNT_WORDS: dict[Status | None, str] = {
    Status.SUCCESS: "succeeded",
    Status.PARTIAL: "partial",
    Status.FAILED: "failed",
    Status.NOT_FOUND: "not found",
    Status.TIMED_OUT: "timed out",
    Status.SKIPPED: "skipped",
    Status.ABORTED: "aborted",
    None: "not finished",
}
PRIORITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW")
AUTO_PRIORITY: dict[Status | None, str] = {
    Status.FAILED: "HIGH",
    Status.TIMED_OUT: "HIGH",
    Status.ABORTED: "HIGH",
    Status.PARTIAL: "MEDIUM",
    Status.SKIPPED: "MEDIUM",
    Status.NOT_FOUND: "LOW",
    None: "HIGH",
}
_NOUN_SUFFIXES = ("_id", "_abbr", "_code", "_key", "_name", "_lookup", "_tricode", "_num")


# --------------------------------------------------------------------------- values and time


def is_number(value: Any) -> TypeGuard[int | float]:
    """Whether `value` is a number a report may compare (booleans are not).

    Args:
        value: Any captured value.

    Returns:
        True for ints and floats other than bools.
    """
    return isinstance(value, int | float) and not isinstance(value, bool)


def value_text(value: Any) -> str:
    """A captured value as the outputs show it.

    Args:
        value: Any captured value (None when a capture did not match).

    Returns:
        ``no match`` for None, ``yes``/``no`` for booleans, six significant digits for floats,
        lists joined by dashes and mappings as ``key: value`` pairs.
    """
    if value is None:
        return "no match"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return " — ".join(value_text(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {value_text(v)}" for k, v in value.items())
    return str(value)


def utc(dt: datetime) -> datetime:
    """The time in UTC; a naive time is taken to be UTC already.

    Args:
        dt: A time of the record.

    Returns:
        The same instant with UTC as its zone.
    """
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def timestamp(dt: datetime) -> str:
    """The time as ``YYYY-MM-DD HH:MM:SS`` in UTC.

    Args:
        dt: A time of the record.

    Returns:
        The text, without a zone name.
    """
    return utc(dt).strftime("%Y-%m-%d %H:%M:%S")


def run_seconds(record: RunRecord) -> float | None:
    """How long the run took, start to end.

    Args:
        record: The run.

    Returns:
        Seconds, or None while the run has not ended.
    """
    if record.ended_at is None:
        return None
    return (utc(record.ended_at) - utc(record.started_at)).total_seconds()


def duration_text(seconds: float | None) -> str:
    """A duration as the outputs show it (``1m 05s``), or an empty text when there is none.

    Args:
        seconds: A step's or run's duration.

    Returns:
        The text.
    """
    return "" if seconds is None else elapsed(seconds)


# --------------------------------------------------------------------------- words and numbers


def percent_text(value: float) -> str:
    """A percentage with one decimal, without a trailing ``.0`` (``62.5%``, ``100%``).

    Args:
        value: The percentage (0 to 100, or more).

    Returns:
        The text with its ``%``.
    """
    text = f"{value:.1f}"
    return (text[:-2] if text.endswith(".0") else text) + "%"


def signed_percent_text(value: float) -> str:
    """A percentage with its sign (``+62.5%``, ``-4%``; zero is ``+0%``).

    Args:
        value: The percentage.

    Returns:
        The text.
    """
    return ("+" if value >= 0 else "-") + percent_text(abs(value))


def plural(word: str, n: int) -> str:
    """`word` in the plural unless `n` is 1 (English rules for -s, -x, -ch, -sh and -y).

    Args:
        word: A noun in the singular.
        n: How many.

    Returns:
        The noun.
    """
    if n == 1:
        return word
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def counted(n: int, word: str) -> str:
    """``3 games``, ``1 game``.

    Args:
        n: How many.
        word: The noun in the singular.

    Returns:
        The number and the noun.
    """
    return f"{n} {plural(word, n)}"


def key_noun(column: str) -> str:
    """The noun a key column names (``game_id`` -> ``game``, ``team_abbr`` -> ``team``).

    Args:
        column: A key column of a check.

    Returns:
        The noun, lower case, with spaces for underscores.
    """
    col = column.lower()
    for suffix in _NOUN_SUFFIXES:
        if col.endswith(suffix) and len(col) > len(suffix):
            return col[: -len(suffix)].replace("_", " ")
    return col.replace("_", " ")


# --------------------------------------------------------------------------- statuses


def status_words(status: Status | None) -> str:
    """A step's status as words (``NOT FOUND``; ``NOT FINISHED`` before it ended).

    Args:
        status: The step's status.

    Returns:
        The words, upper case.
    """
    return "NOT FINISHED" if status is None else status.value.replace("_", " ")


def status_tally(steps: Iterable[StepResult]) -> dict[Status | None, int]:
    """How many steps ended in each status, in the order the statuses first occur.

    Args:
        steps: The steps of a run.

    Returns:
        Status (None: not finished) to count.
    """
    tally: dict[Status | None, int] = {}
    for step in steps:
        tally[step.status] = tally.get(step.status, 0) + 1
    return tally


def skipped_on_purpose(step: StepResult) -> bool:
    """Whether a step was skipped because the runbook or the operator chose so (its `when`
    was false, or --only/--from left it out), not because something fell short.

    Args:
        step: The step's result.

    Returns:
        True for such a skip.
    """
    return step.status == Status.SKIPPED and step.skipped_by in ("when", "selection")


def priority_rank(priority: str) -> int:
    """Where a priority sorts: CRITICAL first, unknown names last.

    Args:
        priority: A priority name (upper case).

    Returns:
        Its rank.
    """
    return PRIORITIES.index(priority) if priority in PRIORITIES else len(PRIORITIES)


# --------------------------------------------------------------------------- checks


def display_names(checks: Iterable[tuple[str, CheckResult]]) -> dict[str, str]:
    """Short table names (`dataset.table` -> `table`) unless two checks would share one.

    A check with its own `name` (its key is not a table name) is shown by that name; several
    checks of one table are told apart by their keys (`table#2`).

    Args:
        checks: (key, result) pairs of one step.

    Returns:
        Key to the name to show.
    """
    items = list(checks)
    shorts = [c.table.rsplit(".", 1)[-1] for _, c in items]
    tables = [c.table for _, c in items]
    names: dict[str, str] = {}
    for (key, c), short in zip(items, shorts, strict=True):
        if key != c.table and not key.startswith(c.table + "#"):
            names[key] = key  # a named check
        elif tables.count(c.table) > 1:
            names[key] = (
                key.replace(c.table, short) if shorts.count(short) == tables.count(c.table) else key
            )
        else:
            names[key] = short if shorts.count(short) == 1 else c.table
    return names


def check_total(c: CheckResult) -> int | None:
    """The denominator of a check's percentage: its total, else its expected count.

    Args:
        c: The check.

    Returns:
        The number, or None (a minimum is a floor, not a total).
    """
    for value in (c.total, c.expected):
        if value is not None:
            return value
    return None


def check_percent(c: CheckResult) -> float | None:
    """The share of the total a check found, as recorded or computed from its counts.

    Args:
        c: The check.

    Returns:
        The percentage, or None without a count or a non-zero total.
    """
    if c.percent is not None:
        return c.percent
    total = check_total(c)
    if c.actual is None or not total:
        return None
    return c.actual * 100.0 / total


def fraction(c: CheckResult) -> str:
    """``actual/total``, or the count alone without a total (``n/a`` without a count).

    Args:
        c: The check.

    Returns:
        The text.
    """
    actual = "n/a" if c.actual is None else str(c.actual)
    total = check_total(c)
    return f"{actual}/{total}" if total is not None else actual


def check_figure(c: CheckResult) -> str:
    """A check's count with what it is measured against (``10/16 (62.5%)``, ``212 (≥ 1)``).

    Args:
        c: The check.

    Returns:
        The text; ``not measured`` without a count, ``error: ...`` when counting failed.
    """
    if c.error:
        return f"error: {c.error}"
    if c.actual is None:
        return "not measured"
    if c.minimum is not None and c.expected is None:
        return f"{c.actual} (≥ {c.minimum})"
    pct = check_percent(c)
    return fraction(c) + (f" ({percent_text(pct)})" if pct is not None else "")


def expected_text(c: CheckResult) -> str:
    """What a check expects (``16``, ``≥ 1``, ``≥ 95% of 16``; ``—`` for nothing).

    Args:
        c: The check.

    Returns:
        The text.
    """
    if c.expected is not None:
        return str(c.expected)
    if c.minimum is not None:
        return f"≥ {c.minimum}"
    if c.ratio is not None:
        base = f" of {c.total}" if c.total is not None else ""
        return f"≥ {percent_text(c.ratio * 100)}{base}"
    return "—"


def missing_count(c: CheckResult) -> int:
    """How many records a check misses: the missing keys counted, else the shortfall of the
    count against its total.

    Args:
        c: The check.

    Returns:
        The number (0 when nothing is known to be missing).
    """
    if c.missing_total is not None:
        return c.missing_total
    if c.missing_keys:
        return len(c.missing_keys)
    total = check_total(c)
    if total is not None and c.actual is not None and c.actual < total:
        return total - c.actual
    return 0


def key_groups(c: CheckResult) -> dict[str, list[str]]:
    """Missing keys grouped by their first key column: {game: [other key values]}.

    Args:
        c: The check.

    Returns:
        First key value to the other key values of each missing key (joined by ``/`` when
        there are several other columns), in the order the keys were found.
    """
    groups: dict[str, list[str]] = {}
    first = c.key[0] if c.key else None
    for row in c.missing_keys:
        head = value_text(row.get(first)) if first is not None else value_text(row)
        rest = [value_text(v) for k, v in row.items() if k != first]
        groups.setdefault(head, []).extend(rest if len(rest) <= 1 else ["/".join(rest)])
    return groups


def missing_phrase(c: CheckResult) -> str:
    """What a check misses, in words: ``6 team records missing (3 games)``.

    Args:
        c: The check.

    Returns:
        The phrase (``at least`` when the missing keys listed are capped).
    """
    n = missing_count(c)
    if len(c.key) >= 2 and c.missing_keys:
        groups = len(key_groups(c))
        capped = c.missing_total is not None and c.missing_total > len(c.missing_keys)
        at_least = "at least " if capped else ""
        records = f"{n} {key_noun(c.key[-1])} {plural('record', n)}"
        return f"{records} missing ({at_least}{counted(groups, key_noun(c.key[0]))})"
    if len(c.key) == 1 and c.missing_keys:
        return f"{counted(n, key_noun(c.key[0]))} missing"
    return f"{counted(n, 'record')} missing"


# --------------------------------------------------------------------------- before and after


@dataclass(frozen=True)
class Change:
    """A captured number before the run (its baseline) and after it.

    Attributes:
        name: The capture's name.
        before: The baseline's value (None when not measured).
        after: The run's value (None when not captured).
    """

    name: str
    before: Any
    after: Any

    @property
    def measured(self) -> bool:
        """Whether both sides are numbers."""
        return is_number(self.before) and is_number(self.after)

    @property
    def delta(self) -> float | None:
        """After minus before, when both are numbers."""
        if is_number(self.before) and is_number(self.after):
            return self.after - self.before
        return None

    @property
    def percent(self) -> float | None:
        """The change as a percentage of a non-zero before."""
        delta = self.delta
        if delta is None or not self.before:
            return None
        return float(delta * 100.0 / self.before)


def value_changes(step: StepResult) -> list[Change]:
    """The step's numeric captures against its baseline: those the run captured first, then
    those only the baseline measured.

    Args:
        step: A step with or without a baseline.

    Returns:
        One change per capture that is a number on either side (none without a baseline).
    """
    if step.baseline is None:
        return []
    before_all, after_all = step.baseline.captures, step.captures
    names = [n for n, v in after_all.items() if is_number(v) or is_number(before_all.get(n))]
    names += [n for n, v in before_all.items() if is_number(v) and n not in names]
    return [Change(n, before_all.get(n), after_all.get(n)) for n in names]


def list_diff(before: Sequence[Any], after: Sequence[Any]) -> tuple[list[str], list[str], int]:
    """Items of a list capture compared by their text: resolved, new, and how many stayed.

    Args:
        before: The baseline's items.
        after: The run's items.

    Returns:
        (items gone, items new, count of the run's items also in the baseline).
    """
    before_items = [value_text(v) for v in before]
    after_items = [value_text(v) for v in after]
    gone = [v for v in before_items if v not in after_items]
    new = [v for v in after_items if v not in before_items]
    return gone, new, len([v for v in after_items if v in before_items])


def count_change(before: CheckResult | None, after: CheckResult | None) -> int | None:
    """Records gained by a check between two measurements.

    Args:
        before: The earlier measurement.
        after: The later one.

    Returns:
        The difference of the counts, or None unless both have one.
    """
    if before is None or after is None or before.actual is None or after.actual is None:
        return None
    return after.actual - before.actual


def percent_change(before: CheckResult | None, after: CheckResult | None) -> float | None:
    """Percentage points gained by a check between two measurements.

    Args:
        before: The earlier measurement.
        after: The later one.

    Returns:
        The difference of the percentages, or None unless both have one.
    """
    if before is None or after is None:
        return None
    p_before, p_after = check_percent(before), check_percent(after)
    if p_before is None or p_after is None:
        return None
    return p_after - p_before


def run_folder(record: RunRecord) -> str:
    """The run directory as a user types it: `<reports folder>/<run id>`, never a temp path.

    The report may be read on another machine or after the temporary folder is gone; the
    reports folder's name and the run id are what stays true.
    """
    reports = PurePath(record.run_dir).parent.name if record.run_dir else "reports"
    return f"{reports}/{record.run_id}"


def runbook_shown(record: RunRecord) -> str:
    """The runbook's path relative to the folder the reports folder is in, when it is there."""
    path = PurePath(record.runbook_path)
    if record.run_dir:
        home = PurePath(record.run_dir).parent.parent
        if path.is_relative_to(home):
            return str(path.relative_to(home))
    return str(path)
