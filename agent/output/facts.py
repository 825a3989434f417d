"""Every derived number, mark, tally and duration of a run record, computed once for all outputs."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any, TypeGuard

from agent.plan.durations import elapsed
from agent.record import CheckResult, Item, RunRecord, RunStatus, Status, StepResult

__all__ = [
    "AUTO_PRIORITY",
    "CAUSE_WORDS",
    "COUNT_WORDS",
    "PRIORITIES",
    "RUN_MARK",
    "STATUS_MARK",
    "WORST_FIRST",
    "Attribution",
    "Change",
    "Gap",
    "ItemDiff",
    "PartitionGrid",
    "attribute_items",
    "attribution_lines",
    "baseline_items",
    "capture_text",
    "cause_facts",
    "cause_text",
    "check_figure",
    "check_percent",
    "check_statement",
    "check_total",
    "concerning",
    "count_change",
    "counted",
    "coverage_points",
    "coverage_text",
    "defaulted",
    "derived_next_steps",
    "display_names",
    "duration_text",
    "excess_count",
    "expected_text",
    "expr_values",
    "fell_short",
    "fraction",
    "is_number",
    "item_diffs",
    "item_list_captures",
    "item_noun",
    "item_tally",
    "item_text",
    "key_groups",
    "key_noun",
    "level_text",
    "list_diff",
    "manual_instructions",
    "missing_count",
    "missing_key_lines",
    "missing_phrase",
    "needed_shortfalls",
    "nothing_expected",
    "partition_coverage",
    "partition_grid",
    "percent_change",
    "percent_text",
    "plural",
    "points_text",
    "priority_rank",
    "rerun_command",
    "run_folder",
    "run_gaps",
    "run_seconds",
    "runbook_shown",
    "shortfall_title",
    "signed_percent_text",
    "skipped_on_purpose",
    "status_tally",
    "status_words",
    "step_items",
    "step_label",
    "step_name",
    "stopped_processes_text",
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
    # isoformat, not strftime: 20 k strftime calls were 0.09 s of a 5,000-step report.
    return utc(dt).replace(tzinfo=None).isoformat(" ", "seconds")


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
    if nothing_expected(c) or excess_count(c) is not None:
        return f"{fraction(c)} ({coverage_text(c)})"
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


# --------------------------------------------------------------------------- numbers in context


def nothing_expected(c: CheckResult) -> bool:
    """Whether a check expects no rows at all (an exact 0: nothing was scheduled).

    Args:
        c: The check.

    Returns:
        True when its expected count (or total) is 0.
    """
    return check_total(c) == 0 and c.minimum is None and c.ratio is None


def excess_count(c: CheckResult) -> int | None:
    """How many more rows a check found than the exact number it expected.

    Args:
        c: The check.

    Returns:
        The surplus, or None when there is none (or the check has no exact expectation).
    """
    total = check_total(c)
    if c.expected is None or total is None or c.actual is None or c.actual <= total:
        return None
    return c.actual - total


def _expected_source(c: CheckResult) -> str | None:
    # `expected_source` ("var" | "coverage") is new in the record; older records lack it.
    source = getattr(c, "expected_source", None)
    return source if isinstance(source, str) else None


def check_statement(name: str, c: CheckResult) -> str:
    """A check's finding in one sentence, its number in context, and the level it reached.

    Args:
        name: The name to show for the check.
        c: The check.

    Returns:
        The sentence, without a final stop.
    """
    text = _statement(name, c)
    level = level_text(c)
    return f"{text}; {level}" if level and not c.error and c.actual is not None else text


def _statement(name: str, c: CheckResult) -> str:
    """A check's finding in one sentence, its number in context.

    A check expecting 0 says so (never 100%, never "0 missing"); more rows than expected is a
    finding (duplicates?), not a percentage over 100.

    Args:
        name: The name to show for the check.
        c: The check.

    Returns:
        The sentence, without a final stop.
    """
    if c.error:
        return f"{name} could not be counted ({c.error})"
    if c.actual is None:
        return f"{name} was not measured"
    source = " (from the coverage query)" if _expected_source(c) == "coverage" else ""
    if nothing_expected(c):
        if c.actual == 0:
            return f"{name}: 0 expected{source}: nothing scheduled"
        return (
            f"{name}: {counted(c.actual, 'row')} for 0 expected{source}: "
            f"{c.actual} more than expected (duplicates?)"
        )
    extra = excess_count(c)
    if extra is not None:
        return (
            f"{name}: {counted(c.actual, 'row')} for {check_total(c)} expected{source}: "
            f"{extra} more than expected (duplicates?)"
        )
    keys = f"; {missing_phrase(c)}" if missing_count(c) else ""
    pct = check_percent(c)
    if c.expected is not None:
        share = f" ({percent_text(pct)})" if pct is not None else ""
        return f"{name} has {c.actual} of {c.expected} expected records{source}{share}{keys}"
    if c.minimum is not None:
        need = f", at least {c.minimum} required" if c.actual < c.minimum else f" (≥ {c.minimum})"
        return f"{name} has {counted(c.actual, 'record')}{need}{keys}"
    if c.ratio is not None:
        share = f" ({percent_text(pct)})" if pct is not None else ""
        return f"{name} has {counted(c.actual, 'row')}{share}, {expected_text(c)} required{keys}"
    return f"{name} has {counted(c.actual, 'row')}{keys}"


def coverage_text(c: CheckResult) -> str:
    """The coverage cell of a check: a percentage only where one means something.

    Args:
        c: The check.

    Returns:
        ``62.5%``; ``nothing expected``; ``2 more than expected``; ``n/a``.
    """
    if c.error or c.actual is None:
        return "n/a"
    if nothing_expected(c):
        return "nothing expected" if c.actual == 0 else f"{c.actual} more than expected"
    extra = excess_count(c)
    if extra is not None:
        return f"{extra} more than expected"
    pct = check_percent(c)
    text = "n/a" if pct is None else percent_text(pct)
    level = level_text(c)
    return f"{text}, {level}" if level else text


def level_text(c: CheckResult) -> str | None:
    """The level a graded check reached, with its edge (``level ok (90% or more)``, ``level
    warn (below 90%)``, ``level fail (below 70%)``); None for a check without levels.

    Args:
        c: The check.

    Returns:
        The text, or None.
    """
    levels = getattr(c, "levels", None)
    level = getattr(c, "level", None)
    if not levels or level not in ("ok", "warn", "fail"):
        return None
    ok, warn = percent_text(levels["ok"] * 100), percent_text(levels["warn"] * 100)
    edge = {"ok": f"{ok} or more", "warn": f"below {ok}", "fail": f"below {warn}"}
    return f"level {level} ({edge[level]})"


def points_text(points: float) -> str:
    """A change of coverage in percentage points (``+62.5 pp``, ``-4 pp``).

    Args:
        points: The difference of two percentages.

    Returns:
        The text.
    """
    return signed_percent_text(points)[:-1] + " pp"


def coverage_points(before: CheckResult | None, after: CheckResult | None) -> float | None:
    """Percentage points gained, only when both shares are real coverage (0 to 100%).

    Args:
        before: The earlier measurement.
        after: The later one.

    Returns:
        The points, or None (no shares, nothing expected, or more rows than expected).
    """
    if before is None or after is None:
        return None
    for c in (before, after):
        if nothing_expected(c) or excess_count(c) is not None:
            return None
    return percent_change(before, after)


def missing_key_lines(c: CheckResult) -> list[str]:
    """A check's missing keys grouped by their first key column (``game 0022500651: GSW, MIN``).

    Args:
        c: The check.

    Returns:
        One line per group; the values alone for a single key column.
    """
    groups = key_groups(c)
    if len(c.key) >= 2:
        noun = key_noun(c.key[0])
        return [f"{noun} {head}: {', '.join(rest)}" for head, rest in groups.items()]
    return list(groups)


# --------------------------------------------------------------------------- captures


def defaulted(step: StepResult) -> list[str]:
    """The step's captures that matched nothing, so hold their default (not evidence).

    Args:
        step: The step.

    Returns:
        Their names, in capture order.
    """
    return [n for n in step.captures if n in step.unmatched]


def capture_text(step: StepResult, name: str) -> str:
    """A captured value as the outputs show it, marked when it is only the default.

    Args:
        step: The step.
        name: The capture.

    Returns:
        ``25``, or ``0 (no match: default)``.
    """
    text = value_text(step.captures.get(name))
    if name in step.unmatched:
        return "no match" if step.captures.get(name) is None else f"{text} (no match: default)"
    return text


# --------------------------------------------------------------------------- items


def _items_from_captures(captures: Mapping[str, Any]) -> list[Item]:
    """Items of list captures, for records written before steps parsed items themselves."""
    out: list[Item] = []
    for name, value in captures.items():
        if not isinstance(value, list | tuple):
            continue
        for v in value:
            if isinstance(v, list | tuple) and len(v) == 2:
                out.append(Item(capture=name, stage=value_text(v[0]), message=value_text(v[1])))
            elif v is not None:
                out.append(Item(capture=name, message=value_text(v)))
    return out


def step_items(step: StepResult) -> list[Item]:
    """The lines a validate step listed: its parsed items, else its list captures.

    Args:
        step: The step.

    Returns:
        The items (those without a severity when the output did not say).
    """
    return list(step.items) if step.items else _items_from_captures(step.captures)


def baseline_items(step: StepResult) -> list[Item] | None:
    """The items the step's baseline listed, or None without a baseline that listed any.

    Args:
        step: The step.

    Returns:
        The items, or None.
    """
    base = step.baseline
    if base is None:
        return None
    items = list(base.items) if base.items else _items_from_captures(base.captures)
    return items if items or step_items(step) else None


def item_list_captures(step: StepResult) -> list[str]:
    """The list captures whose lines are shown as items (not as a bare list).

    Args:
        step: The step.

    Returns:
        Capture names.
    """
    names = {i.capture for i in step_items(step)}
    return [n for n in step.captures if n in names]


def item_text(item: Item) -> str:
    """An item as one line (``stage: message``).

    Args:
        item: The item.

    Returns:
        The text.
    """
    return f"{item.stage}: {item.message}" if item.stage else item.message


def item_tally(items: Sequence[Item]) -> str:
    """Issues and warnings counted apart (``25 issues, 48 warnings``).

    Args:
        items: A step's items.

    Returns:
        The text; items the output did not mark are ``lines (not marked issue or warning)``.
    """
    issues = sum(i.severity == "issue" for i in items)
    warnings = sum(i.severity == "warning" for i in items)
    other = len(items) - issues - warnings
    parts: list[str] = []
    if issues or not items:
        parts.append(counted(issues, "issue"))
    if warnings:
        parts.append(counted(warnings, "warning"))
    if other:
        parts.append(f"{counted(other, 'line')} not marked as issue or warning")
    return ", ".join(parts)


def item_noun(items: Sequence[Item]) -> str:
    """What the attributed items are called: issues when the output marked any, else lines."""
    return "issue" if any(i.severity == "issue" for i in items) else "line"


def concerning(items: Sequence[Item]) -> list[Item]:
    """The items to weigh: the issues when the output marked any, else every item."""
    if any(i.severity == "issue" for i in items):
        return [i for i in items if i.severity == "issue"]
    return list(items)


@dataclass(frozen=True)
class ItemDiff:
    """A step's items against its baseline's, by identity.

    Attributes:
        label: What is compared (``issues``, ``warnings``, ``lines``).
        before: How many the baseline listed.
        after: How many the run listed.
        resolved: Items of the baseline the run no longer lists.
        new: Items the run lists that the baseline did not.
        unchanged: Items both list.
    """

    label: str
    before: int
    after: int
    resolved: list[Item]
    new: list[Item]
    unchanged: list[Item]

    @property
    def text(self) -> str:
        """``issues: 25 before, 25 after: 8 resolved, 8 new, 17 unchanged``."""
        return (
            f"{self.label}: {self.before} before, {self.after} after: "
            f"{len(self.resolved)} resolved, {len(self.new)} new, {len(self.unchanged)} unchanged"
        )


def item_diffs(step: StepResult) -> list[ItemDiff]:
    """The step's items compared with its baseline's by identity, one diff per severity.

    Args:
        step: The step.

    Returns:
        Issues, then warnings, then unmarked lines (each only when either side has some).
    """
    before_all = baseline_items(step)
    if before_all is None:
        return []
    after_all = step_items(step)
    out: list[ItemDiff] = []
    for severity, label in (("issue", "issues"), ("warning", "warnings"), (None, "lines")):
        before = [i for i in before_all if i.severity == severity]
        after = [i for i in after_all if i.severity == severity]
        if not before and not after:
            continue
        ids_before = {i.identity for i in before}
        ids_after = {i.identity for i in after}
        out.append(
            ItemDiff(
                label,
                len(before),
                len(after),
                [i for i in before if i.identity not in ids_after],
                [i for i in after if i.identity not in ids_before],
                [i for i in after if i.identity in ids_before],
            )
        )
    return out


# --------------------------------------------------------------------------- gaps


@dataclass(frozen=True)
class Gap:
    """Keys a verify check of the run found missing.

    Attributes:
        number: The step's number in the run (1-based).
        step_id: The step's id.
        name: The check's name as shown.
        check: The check.
        values: Every missing key value (any column), each once.
    """

    number: int
    step_id: str
    name: str
    check: CheckResult
    values: list[str]
    groups: dict[str, list[str]]


def run_gaps(record: RunRecord) -> list[Gap]:
    """Every check of the run that found keys missing, in step order.

    Args:
        record: The run.

    Returns:
        The gaps.
    """
    out: list[Gap] = []
    for number, step in enumerate(record.steps, 1):
        names = display_names(step.counts.items())
        for key, c in step.counts.items():
            if c.ok or not c.missing_keys:
                continue
            values: list[str] = []
            for row in c.missing_keys:
                for v in row.values():
                    text = value_text(v)
                    if len(text) >= 2 and text not in values:
                        values.append(text)
            groups = key_groups(c) if len(c.key) >= 2 else {}
            out.append(Gap(number, step.id, names[key], c, values, groups))
    return out


_GAPS_SEEN: list[tuple[RunRecord, int, list[Gap]]] = []


def _gaps_once(record: RunRecord) -> list[Gap]:
    """run_gaps, once per record while it is rendered (every step's facts ask for them)."""
    for seen, n, gaps in _GAPS_SEEN:
        if seen is record and n == len(record.steps):
            return gaps
    gaps = run_gaps(record)
    # A few records at most: the outputs render one run at a time.
    _GAPS_SEEN[:] = [*_GAPS_SEEN[-3:], (record, len(record.steps), gaps)]
    return gaps


def _token(value: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![A-Za-z0-9_]){re.escape(value)}(?![A-Za-z0-9_])")


_WORD_EDGE = "'\"()[]{}<>:;,.!?"


def _subjects(message: str, values: Sequence[str]) -> list[str]:
    """The words of `message` that hold a missing value (``GSW@MIN``), widest first kept."""
    found: list[str] = []
    for raw in message.split():
        word = raw.strip(_WORD_EDGE)
        if word and any(_token(v).search(word) for v in values) and word not in found:
            found.append(word)
    # A bare value inside a wider word already found (GSW in GSW@MIN) says nothing more.
    return [w for w in found if not any(w != o and _token(w).search(o) for o in found)]


@dataclass(frozen=True)
class Attribution:
    """Items of a step that name key values a verify check of the run found missing.

    Attributes:
        gap: The check's gap.
        items: The items that name one of its missing values.
        subjects: The words of those items that hold the values (``GSW@MIN``).
    """

    gap: Gap
    items: list[Item]
    subjects: list[str]


def names_gap(text: str, gap: Gap) -> bool:
    """Whether `text` names a missing key of `gap` (whole words, never inside another word).

    With two or more key columns a key is named by its first value (``0022500651``) or by
    all of its group's other values (``GSW`` and ``MIN``): one team code alone may be any
    game's. A one-column key is named by its value.

    Args:
        text: An item's stage and message.
        gap: The gap.

    Returns:
        True when it names one.
    """
    if not gap.groups:
        return any(_token(v).search(text) for v in gap.values)
    for head, rest in gap.groups.items():
        if len(head) >= 2 and _token(head).search(text):
            return True
        if rest and all(_token(v).search(text) for v in rest):
            return True
    return False


def attribute_items(
    items: Sequence[Item], gaps: Sequence[Gap]
) -> tuple[list[Attribution], list[Item]]:
    """Items attributed to the gaps whose missing values they name (word-boundary match).

    Args:
        items: The items to weigh.
        gaps: The run's gaps.

    Returns:
        (one attribution per gap that any item names, the items that name no gap).
    """
    attributions: list[Attribution] = []
    matched: set[int] = set()
    for gap in gaps:
        hits: list[Item] = []
        subjects: list[str] = []
        for index, item in enumerate(items):
            text = f"{item.stage or ''} {item.message}"
            if names_gap(text, gap):
                hits.append(item)
                matched.add(index)
                subjects += [s for s in _subjects(item.message, gap.values) if s not in subjects]
        if hits:
            attributions.append(Attribution(gap, hits, subjects))
    return attributions, [i for n, i in enumerate(items) if n not in matched]


def attribution_lines(record: RunRecord, step: StepResult) -> list[str]:
    """What a validate step's items have to do with the gaps the run measured, in words.

    ``6 of 25 issues concern GSW@MIN, SAC@DET, keys missing from upcoming_player_game_context
    (step 3)``, then ``19 match no gap this run measured``.

    Args:
        record: The run.
        step: The step whose items are weighed.

    Returns:
        The sentences (none when the step listed nothing or the run measured no gap).
    """
    items = concerning(step_items(step))
    gaps = [g for g in _gaps_once(record) if g.step_id != step.id]
    if not items or not gaps:
        return []
    noun = item_noun(step_items(step))
    attributions, rest = attribute_items(items, gaps)
    total = len(items)
    lines = [
        f"{len(a.items)} of {counted(total, noun)} concern {_listed(a.subjects)}, "
        f"keys missing from {a.gap.name} (step {a.gap.number})"
        for a in attributions
    ]
    if attributions:
        lines.append(f"{len(rest)} of {counted(total, noun)} match no gap this run measured")
    else:
        lines.append(f"none of the {counted(total, noun)} names a key this run found missing")
    return lines


def _listed(words: Sequence[str], at_most: int = 8) -> str:
    shown = list(words[:at_most])
    more = f" and {len(words) - at_most} more" if len(words) > at_most else ""
    if len(shown) <= 1:
        return (shown[0] if shown else "them") + more
    return ", ".join(shown[:-1]) + (f", {shown[-1]}{more}" if more else f" and {shown[-1]}")


# --------------------------------------------------------------------------- causes

CAUSE_WORDS: dict[str, str] = {
    "crashed": "crashed",
    "exit_code": "exit code",
    "error": "error",
    "timed_out": "timed out",
    "not_found": "not found",
    "expectation": "expectation not met",
    "coverage": "coverage gap",
    "needs": "not run: a step it needs fell short",
    "unconfirmed": "not confirmed",
    "interrupted": "interrupted",
}
"""A cause (`StepResult.cause`) as the outputs name it."""

_EXPR_WORDS = {"and", "or", "not", "in", "is", "if", "else", "None", "True", "False", "none"}
_IDENT = re.compile(r"\b[A-Za-z_]\w*\b")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def fell_short(step: StepResult) -> bool:
    """Whether a step fell short (ended otherwise than SUCCESS, and was not skipped on purpose).

    Args:
        step: The step.

    Returns:
        True for a shortfall.
    """
    return step.status != Status.SUCCESS and not skipped_on_purpose(step)


def cause_text(step: StepResult) -> str | None:
    """The step's cause in words (``coverage gap``), or None when it did not fall short."""
    cause = step.cause
    if step.status is None:
        return "not finished"
    return None if cause is None else CAUSE_WORDS.get(cause, cause.replace("_", " "))


def expr_values(expr: str, step: StepResult, variables: Mapping[str, Any]) -> str:
    """The values an expectation names (``records_saved = 10, games = 8``).

    Args:
        expr: The expression.
        step: The step whose captures it reads.
        variables: The run's vars.

    Returns:
        The names and values, a default marked and a baseline value added.
    """
    seen: list[str] = []
    for name in _IDENT.findall(_QUOTED.sub("", expr)):
        if name in _EXPR_WORDS or name in seen:
            continue
        value = step.captures[name] if name in step.captures else variables.get(name)
        if (name in step.captures or name in variables) and not isinstance(value, list | tuple):
            seen.append(name)
    before = step.baseline.captures if step.baseline is not None else {}
    values = []
    for n in seen:
        shown = capture_text(step, n) if n in step.captures else value_text(variables[n])
        text = f"{n} = {shown}"
        if n in step.captures and is_number(before.get(n)):
            text += f", {value_text(before[n])} before the run"
        values.append(text)
    return ", ".join(values)


def needed_shortfalls(record: RunRecord, step: StepResult) -> list[str]:
    """The steps `step` needs that did not succeed (``team_defense (PARTIAL)``)."""
    out: list[str] = []
    for sid in record.needs.get(step.id, []):
        try:
            other = record.step(sid)
        except KeyError:
            continue
        if other.status != Status.SUCCESS:
            out.append(f"{sid} ({status_words(other.status)})")
    return out


def cause_facts(record: RunRecord, step: StepResult) -> list[str]:
    """The facts behind a step's shortfall, each once: crash, exit, checks, expectations.

    Args:
        record: The run (vars, needs, the gaps of other steps).
        step: The step.

    Returns:
        Sentences without a final stop (none for a step that did not fall short).
    """
    if not fell_short(step):
        return []
    facts: list[str] = []
    cause = step.cause
    code = f" (exit code {step.exit_code})" if step.exit_code is not None else ""
    if step.status is None:
        facts.append("the step did not finish")
    elif cause == "crashed":
        facts.append(f"crashed{code}: {step.crash}")
    elif cause == "not_found":
        alts = f"; candidates: {', '.join(step.alternatives)}" if step.alternatives else ""
        facts.append(f"{step.missing or 'the program'} does not exist{alts}")
    elif cause == "timed_out":
        after = f" after {elapsed(step.duration_s)}" if step.duration_s is not None else ""
        facts.append(f"timed out{after}")
    elif cause == "needs":
        needed = needed_shortfalls(record, step)
        facts.append(
            "not run: " + (f"needs {', '.join(needed)}" if needed else (step.reason or ""))
        )
    elif cause == "exit_code":
        facts.append(f"exited with code {step.exit_code}")
    elif cause in ("error", "interrupted", "unconfirmed") and step.reason:
        facts.append(step.reason)
    names = display_names(step.counts.items())
    facts.extend(check_statement(names[k], c) for k, c in step.counts.items() if not c.ok)
    for e in step.expectations:
        if e.ok:
            continue
        values = expr_values(e.expr, step, record.vars)
        held = f"could not be evaluated ({e.error})" if e.error else "did not hold"
        facts.append(f"{e.expr} {held}" + (f" ({values})" if values else ""))
    facts.extend(f"`{n}` did not match: its value is the default" for n in defaulted(step))
    items = step_items(step)
    if items:
        facts.append(f"listed {item_tally(items)}")
        facts.extend(attribution_lines(record, step))
    if step.status == Status.PARTIAL and len(facts) == 0 and step.reason:
        facts.append(step.reason)
    return facts


_STOPPED_WHEN = {
    "timeout": "at its timeout",
    "interrupt": "when the run was interrupted",
    "stop": "when the step was stopped",
    "step_end": "when its program ended",
    "run_end": "at the end of the run",
}


def stopped_processes_text(step: StepResult) -> str | None:
    """What the runner stopped of a step's processes that had left its process group.

    Args:
        step: The step.

    Returns:
        ``stopped 2 processes that had left the step's process group at its timeout: sleep
        300 (pid 41), ...``; None when there were none.
    """
    if not step.stopped_processes:
        return None
    by_when: dict[str, list[str]] = {}
    for p in step.stopped_processes:
        by_when.setdefault(p.when, []).append(f"{p.command} (pid {p.pid})")
    parts = [
        f"{_STOPPED_WHEN.get(when, when)}: {', '.join(shown)}" for when, shown in by_when.items()
    ]
    n = len(step.stopped_processes)
    return f"stopped {counted(n, 'process')} that had left the step's process group " + (
        "; ".join(parts)
    )


def shortfall_title(step: StepResult) -> str:
    """A Remaining Issues title from the evidence alone (no `on_shortfall`).

    Args:
        step: A step that fell short.

    Returns:
        The title.
    """
    cause = step.cause
    if cause == "coverage":
        names = display_names(step.counts.items())
        short = [names[k] for k, c in step.counts.items() if not c.ok]
        return f"Coverage gap in {', '.join(short)}"
    if cause == "crashed":
        return f"{step.title} crashed"
    if cause == "not_found":
        return f"{step.title}: {step.missing or 'program'} not found"
    if cause == "expectation":
        return f"{step.title} fell short of its expectations"
    if cause == "needs":
        return f"{step.title} was not run"
    if step.status is None:
        return f"{step.title} did not finish"
    if cause == "timed_out":
        return f"{step.title} timed out"
    if cause == "exit_code":
        return f"{step.title} failed with exit code {step.exit_code}"
    return f"{step.title}: {cause_text(step)}"


def step_name(step: StepResult) -> str:
    """A result's title, with the partition it is for (``Load [2026-01-03]``).

    Args:
        step: The result.

    Returns:
        The text.
    """
    return step.title + (f" [{step.partition}]" if step.partition is not None else "")


def step_label(step: StepResult) -> str:
    """A result's id, with its partition as its log is named (``load``, ``load@2026-01-03``).

    Args:
        step: The result.

    Returns:
        The text.
    """
    return step.id if step.partition is None else f"{step.id}@{step.partition}"


def partition_coverage(record: RunRecord) -> list[tuple[str, int, int]]:
    """Each check's coverage over every partition of a partitioned run, summed.

    Args:
        record: The run.

    Returns:
        (check name, expected records found, expected records) per check, in run order: the
        covered keys where a coverage query named the missing ones, else the rows counted (at
        most the total); only checks with a count and a total are summed.
    """
    sums: dict[str, list[int]] = {}
    for step in record.steps:
        if step.partition is None:
            continue
        names = display_names(step.counts.items())
        for key, c in step.counts.items():
            total = check_total(c)
            if c.error or c.actual is None or total is None:
                continue
            found = total - c.missing_total if c.missing_total is not None else c.actual
            acc = sums.setdefault(names[key], [0, 0])
            acc[0] += max(0, min(found, total))
            acc[1] += total
    return [(name, found, total) for name, (found, total) in sums.items()]


def rerun_command(record: RunRecord, step: StepResult) -> str:
    """The command that runs a step again: its own rendered command, else the runbook's.

    Args:
        record: The run.
        step: The step.

    Returns:
        A shell command line.
    """
    if step.command_display:
        return step.command_display
    partition = f" --partition {shlex.quote(step.partition)}" if step.partition is not None else ""
    return f"runbook run {runbook_shown(record)} --only {step.id}{partition}"


def derived_next_steps(record: RunRecord) -> list[tuple[str, str]]:
    """Next steps that follow from the run's evidence, before any the runbook wrote.

    Re-run each step that failed, draft the follow-up runbook, wait for the data still missing.

    Args:
        record: The run.

    Returns:
        (what to do, the command or condition) pairs; none for a COMPLETE run.
    """
    if record.status == RunStatus.COMPLETE:
        return []
    out: list[tuple[str, str]] = []
    for number, step in enumerate(record.steps, 1):
        if not fell_short(step) or step.cause in ("needs", "not_found", "coverage"):
            continue
        out.append((f"Re-run step {number} ({step.title})", rerun_command(record, step)))
    if any(fell_short(s) for s in record.steps):
        out.append(("Draft the follow-up runbook", f"runbook followup {run_folder(record)}"))
    for number, step in enumerate(record.steps, 1):
        wait = (step.shortfall or {}).get("wait_for") if fell_short(step) else None
        if wait:
            out.append((f"Wait, for step {number} ({step.title}), until this holds", str(wait)))
    return out


def manual_instructions(step: StepResult) -> str | None:
    """A manual step's instructions as recorded (None when the record has none)."""
    text = step.instructions
    return text if isinstance(text, str) and text.strip() else None


# --- partitions ---------------------------------------------------------------------------------


@dataclass
class PartitionGrid:
    """A partitioned run at a glance: partitions by steps, and which partitions fell short."""

    noun: str  # "dates" when every partition is a date, else "partitions"
    steps: list[str]  # step ids, in the record's order
    rows: list[tuple[str, list[str]]]  # (partition, one cell per step: mark, and coverage)
    complete: list[str]
    short: dict[str, list[str]]  # status word ("partial", "failed", ...) -> partitions
    summary: str  # "178 of 180 dates complete; 2 partial: 2026-01-03, 2026-01-07"

    @property
    def short_partitions(self) -> list[str]:
        """Every partition that fell short, in the run's order."""
        bad = {p for ps in self.short.values() for p in ps}
        return [p for p, _ in self.rows if p in bad]


def _pair_fine(r: StepResult) -> bool:
    return r.status == Status.SUCCESS or (r.status == Status.SKIPPED and r.skipped_by == "when")


def _coverage_cell(r: StepResult) -> str:
    percents = [c.percent for c in r.counts.values() if c.percent is not None]
    return f" {min(percents):g}%" if percents else ""


WORST_FIRST: tuple[Status | None, ...] = (
    Status.ABORTED,
    Status.FAILED,
    Status.TIMED_OUT,
    Status.NOT_FOUND,
    Status.PARTIAL,
    Status.SKIPPED,
    None,
    Status.SUCCESS,
)
"""Step statuses from the worst a pair or step can end with to the best (None: unfinished)."""
_SHORT_WORD_ORDER = tuple(str(s.value) if s else "None" for s in WORST_FIRST[:-1])


def partition_grid(record: RunRecord) -> PartitionGrid | None:
    """The grid and summary line of a partitioned run (None for a run without partitions).

    A partition is complete when every one of its pairs succeeded (or was skipped by its
    `when`); one that fell short is named under the worst status of its pairs.
    """
    if record.partition_var is None:
        return None
    import datetime as _dt

    def is_date(p: str) -> bool:
        try:
            _dt.date.fromisoformat(p)
        except ValueError:
            return False
        return True

    parts = list(record.partitions)
    noun = "dates" if parts and all(is_date(p) for p in parts) else "partitions"
    steps = list(dict.fromkeys(r.id for r in record.steps))
    cells: dict[tuple[str, str | None], StepResult] = {(r.id, r.partition): r for r in record.steps}
    rows: list[tuple[str, list[str]]] = []
    complete: list[str] = []
    short: dict[str, list[str]] = {}
    for p in parts:
        row: list[str] = []
        worst: str | None = None
        for sid in steps:
            r = cells.get((sid, p))
            if r is None:
                row.append("")
                continue
            row.append(STATUS_MARK[r.status] + (_coverage_cell(r) if r.counts else ""))
            if not _pair_fine(r):
                word = str(r.status.value) if r.status else "None"
                if worst is None or _SHORT_WORD_ORDER.index(word) < _SHORT_WORD_ORDER.index(worst):
                    worst = word
        rows.append((p, row))
        if worst is None:
            complete.append(p)
        else:
            label = "unfinished" if worst == "None" else worst.lower().replace("_", " ")
            short.setdefault(label, []).append(p)
    if not parts:
        summary = "0 partitions: there was nothing to run"
    else:
        summary = f"{len(complete)} of {len(parts)} {noun} complete"
        for label, ps in short.items():
            summary += f"; {len(ps)} {label}: {', '.join(ps)}"
    return PartitionGrid(noun, steps, rows, complete, short, summary)
