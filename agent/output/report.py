"""Render a run record (run.json) as the markdown remediation report through a Jinja2 template."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.output import markdown
from agent.output.facts import (
    AUTO_PRIORITY,
    COUNT_WORDS,
    RUN_MARK,
    STATUS_MARK,
    Change,
    PartitionGrid,
    attribution_lines,
    capture_text,
    cause_facts,
    cause_text,
    check_percent,
    check_statement,
    count_change,
    counted,
    coverage_points,
    coverage_text,
    derived_next_steps,
    display_names,
    excess_count,
    expected_text,
    expr_values,
    fell_short,
    fraction,
    is_number,
    item_diffs,
    item_list_captures,
    item_tally,
    item_text,
    key_noun,
    list_diff,
    manual_instructions,
    missing_count,
    missing_key_lines,
    missing_phrase,
    nothing_expected,
    partition_coverage,
    partition_grid,
    percent_text,
    plural,
    points_text,
    priority_rank,
    rerun_command,
    run_folder,
    run_seconds,
    runbook_shown,
    shortfall_title,
    signed_percent_text,
    status_tally,
    status_words,
    step_items,
    step_name,
    stopped_processes_text,
    timestamp,
    utc,
    value_changes,
    value_text,
)
from agent.output.mermaid import run_flowchart, run_gantt

# The Jinja environment moved to templates.py; these names stay importable from here.
from agent.output.templates import render_template, template_environment, templates_dir
from agent.plan.durations import elapsed
from agent.record import (
    CAUSES,
    CheckResult,
    RunRecord,
    RunStatus,
    Status,
    StepResult,
    utcnow,
    write_atomic,
)

__all__ = [
    "DEFAULT_TEMPLATE",
    "render_report",
    "render_template",
    "template_environment",
    "templates_dir",
    "write_report",
]

DEFAULT_TEMPLATE = "remediation-report.md.j2"

_DETAIL_MARK = {"ok": "✓", "warn": "⚠️", "error": "❌", "info": "•"}
_MAX_LIST_ITEMS = 20
_MAX_TAIL_LINES = 20
_MAX_ITEM_EXAMPLES = 10
_WRAP_AT = 80


# --------------------------------------------------------------------------- public API


def render_report(record: RunRecord, *, template: Path | None = None) -> str:
    """Render the remediation report of a run; a pure function of the record (and the clock
    only when the run has not ended).

    Args:
        record: The run record, the report's only input.
        template: Another template file to use; it may ``{% extends %}`` or ``{% include %}``
            the bundled ones by name.

    Returns:
        The report as markdown, ending with a newline.
    """
    if template is None:
        return render_template(DEFAULT_TEMPLATE, r=_build(record))
    path = template.resolve()
    return render_template(path.name, path.parent, r=_build(record))


def write_report(
    record: RunRecord,
    path: Path,
    *,
    template: Path | None = None,
    mask: Callable[[str], str] | None = None,
) -> Path:
    """Render the report and write it atomically to `path` (parent folders are created).

    Args:
        record: The run record.
        path: Where to write the markdown.
        template: Another template file, as for `render_report`.
        mask: applied to the rendered text before it is written (secret masking).

    Returns:
        `path`.
    """
    text = render_report(record, template=template)
    write_atomic(path, mask(text) if mask is not None else text)
    return path


# --------------------------------------------------------------------------- view model


@dataclass
class Bullet:
    """A list item with optional sub-items (plain text; the template escapes it)."""

    text: str
    subs: list[str] = field(default_factory=list)


@dataclass
class Stat:
    """One `- **label:** value` line of Summary Statistics, with optional sub-items."""

    label: str
    value: str
    subs: list[str] = field(default_factory=list)


@dataclass
class StatGroup:
    """One `###` block of Summary Statistics."""

    heading: str
    stats: list[Stat]


@dataclass
class Verification:
    """What a verify step found: aligned lines, an expected-vs-actual table, missing keys."""

    title: str
    lines: list[str]
    rows: list[list[str]]
    missing: list[Bullet]


@dataclass
class StepView:
    """One step of "Actions Taken"."""

    number: int
    id: str
    title: str
    kind: str
    status: str
    status_mark: str
    status_words: str
    command: str | None
    results: list[Bullet]
    reason: str | None
    cause: str | None
    instructions: str | None
    analysis: list[str]
    details: list[tuple[str, str]]
    missing: str | None
    missing_kind: str
    alternatives: list[str]
    verification: Verification | None
    output_tail: list[str]
    log_path: str | None
    log_note: str | None


@dataclass
class Issue:
    """One entry of "Remaining Issues"."""

    priority: str
    issue: str
    step: str
    cause: str | None
    facts: list[str]
    missing: list[Bullet]
    exception: str | None
    rerun: str | None
    impact: str | None
    root_cause: list[str]
    causes: list[str]
    actions: list[str]
    extra: list[tuple[str, str]]


@dataclass
class Lesson:
    """A lesson: its first line, and any further lines as sub-items."""

    head: str
    subs: list[str]


@dataclass
class ReportView:
    """Everything the template shows, as plain values."""

    heading: str
    date: str
    action: str
    action_label: str
    summary_lead: str
    summary_text: str | None
    shortfalls: list[Bullet]
    steps: list[StepView]
    run_stats: list[Stat]
    stats: list[StatGroup]
    issues: list[Issue]
    lessons: list[Lesson]
    standing_lessons: list[Lesson]
    derived: list[tuple[str, str]]
    next_steps: list[tuple[str, list[str]]]
    standing_steps: list[str]
    followup: str | None
    status: str
    status_mark: str
    conclusion: list[str]
    recommendation: str
    log: str
    gantt: str | None
    flowchart: str
    generated_at: str
    executed_by: str
    incident_reference: str | None
    runbook: str
    run_id: str
    record: RunRecord
    partitions: PartitionGrid | None = None  # a partitioned run's grid and summary line


# --------------------------------------------------------------------------- formatting


def _human(name: str) -> str:
    words = re.sub(r"[_\-\s]+", " ", name).strip()
    return words[:1].upper() + words[1:] if words else name


def _size(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{n} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} bytes"  # pragma: no cover


def _sequence(value: Any) -> bool:
    return isinstance(value, list | tuple)


def _capped(items: Sequence[Any], render: Callable[[Any], str], noun: str = "more") -> list[str]:
    shown = [render(v) for v in items[:_MAX_LIST_ITEMS]]
    if len(items) > _MAX_LIST_ITEMS:
        shown.append(f"… and {len(items) - _MAX_LIST_ITEMS} {noun}")
    return shown


def _wrap_command(display: str) -> str:
    """Break a long shell command before each `--option`, as ` \\` continuation lines."""
    if len(display) <= _WRAP_AT or "\n" in display:
        return display
    words = _shell_words(display)
    lines: list[str] = []
    for word in words:
        if not lines or word.startswith("--"):
            lines.append(word)
        else:
            lines[-1] += " " + word
    return " \\\n  ".join(lines)


def _shell_words(text: str) -> list[str]:
    """Split on unquoted blanks, keeping each word exactly as written (quotes included)."""
    words: list[str] = []
    cur: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            cur.append(ch)
            if ch == "\\" and quote == '"' and i + 1 < len(text):
                cur.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = None
        elif ch == "\\" and i + 1 < len(text):
            cur.extend((ch, text[i + 1]))
            i += 1
        elif ch in "'\"":
            quote = ch
            cur.append(ch)
        elif ch in " \t":
            if cur:
                words.append("".join(cur))
                cur = []
        else:
            cur.append(ch)
        i += 1
    if cur:
        words.append("".join(cur))
    return words


# --------------------------------------------------------------------------- checks


def _verification(step: StepResult, backend: str) -> Verification:
    names = display_names(step.counts.items())
    rows: list[list[str]] = []
    findings: list[Bullet] = []
    for key, c in step.counts.items():
        name = names[key]
        mark = "❌" if c.error or c.level == "fail" else ("✓" if c.ok else "⚠️")
        rows.append(
            [
                c.table,
                "0" if nothing_expected(c) else expected_text(c),
                "n/a" if c.actual is None else str(c.actual),
                coverage_text(c),
                mark,
            ]
        )
        # Each fact once: the table says the counts; below only what needs words.
        if c.error:
            continue
        if nothing_expected(c) or excess_count(c) is not None:
            findings.append(Bullet(check_statement(name, c)))
        elif (not c.ok or c.level) and missing_count(c):
            bullet = Bullet(f"{name}: {missing_phrase(c)}")
            lines = missing_key_lines(c)
            if len(c.key) >= 2 and lines:
                bullet.text += f" — missing {', '.join(c.key[1:])} by {key_noun(c.key[0])}"
            more = f"more {plural(key_noun(c.key[0]), 2)}" if c.key else "more"
            bullet.subs = _capped(lines, str, more)
            if c.missing_total is not None and c.missing_total > len(c.missing_keys):
                bullet.subs.append(
                    f"showing {len(c.missing_keys)} of {c.missing_total} missing keys"
                )
            findings.append(bullet)
    label = {"bigquery": "BigQuery", "duckdb": "DuckDB"}.get(backend.lower(), "Warehouse")
    return Verification(f"{label} Verification", [], rows, findings)


# --------------------------------------------------------------------------- steps


def _failed_expectations(step: StepResult, variables: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for e in step.expectations:
        if e.ok:
            continue
        values = expr_values(e.expr, step, variables)
        text = f"Expected: {e.expr} — " + (f"error: {e.error}" if e.error else "not met")
        out.append(text + (f" ({values})" if values else ""))
    return out


def _missing_kind(step: StepResult) -> str:
    missing = step.missing or ""
    if step.command and "-m" in step.command[:3] and "/" not in missing:
        return "Module"
    if "/" in missing or re.search(r"\.(py|sh|bash|rb|pl|js|ts|sql)$", missing):
        return "Script"
    return "Program"


def _results(step: StepResult, variables: Mapping[str, Any]) -> list[Bullet]:
    bullets: list[Bullet] = []
    item_captures = item_list_captures(step)
    if item_captures:
        listed = step_items(step)
        shown = _capped(listed[:_MAX_ITEM_EXAMPLES], item_text)
        if len(listed) > _MAX_ITEM_EXAMPLES:
            shown.append(f"… and {len(listed) - _MAX_ITEM_EXAMPLES} more (see the log)")
        bullets.append(Bullet(f"Listed: {item_tally(listed)}", shown))
    for name, value in step.captures.items():
        label = _human(name)
        if name in item_captures:
            continue
        if _sequence(value):
            if not value:
                bullets.append(Bullet(f"{label}: none"))
            else:
                bullets.append(Bullet(f"{label}: {len(value)}", _capped(value, value_text)))
        elif isinstance(value, Mapping) and value:
            items = [f"{k}: {value_text(v)}" for k, v in value.items()]
            bullets.append(Bullet(f"{label}:", _capped(items, str)))
        else:
            bullets.append(Bullet(f"{label}: {capture_text(step, name)}"))
    if step.confirmed_by == "unattended":
        # --yes said yes for everyone: nobody confirmed this step by hand.
        bullets.append(Bullet("Confirmed unattended (--yes): nobody confirmed it by hand"))
    elif step.confirmed_by == "operator":
        bullets.append(Bullet("Confirmed at the prompt by the operator"))
    if step.polls:
        last = step.polls[-1]
        bullets.append(
            Bullet(
                f"Polls: {len(step.polls)} (last at {timestamp(last.at)}: {value_text(last.value)})"
            )
        )
    if step.exit_code is not None:
        bullets.append(Bullet(f"Exit code: {step.exit_code}"))
    if len(step.attempts) > 1:
        tries = [
            f"attempt {a.number}: "
            + (
                "timed out"
                if a.timed_out
                else (f"exit {a.exit_code}" if a.exit_code is not None else (a.error or "no exit"))
            )
            for a in step.attempts
        ]
        bullets.append(Bullet(f"Attempts: {len(step.attempts)}", tries))
    if step.sessions > 1:
        bullets.append(Bullet(f"Runner sessions: {step.sessions} (resumed)"))
    if step.duration_s is not None and step.status not in (Status.NOT_FOUND, Status.SKIPPED):
        bullets.append(Bullet(f"Processing time: {elapsed(step.duration_s)}"))
    stopped = stopped_processes_text(step)
    if stopped is not None:
        bullets.append(Bullet(stopped[0].upper() + stopped[1:]))
    bullets.extend(Bullet(t) for t in _failed_expectations(step, variables))
    return bullets


def _step_view(number: int, step: StepResult, record: RunRecord) -> StepView:
    status = step.status
    command = step.command_display
    if command is None and step.command:
        command = shlex.join(step.command)
    log_note = None
    if step.log_capped:
        log_note = (
            f"the log was capped: output exceeded the log size limit "
            f"({_size(step.output_bytes)} written by the command)"
        )
    tail: list[str] = []
    if status in (Status.FAILED, Status.TIMED_OUT, Status.ABORTED) and step.output_tail:
        tail = step.output_tail[-_MAX_TAIL_LINES:]
    verification = None
    if step.counts:
        verification = _verification(step, str(record.warehouse.get("backend", "")))
    return StepView(
        number=number,
        id=step.id,
        title=step.title,
        kind=step.kind,
        status="" if status is None else status.value,
        status_mark=STATUS_MARK[status],
        status_words=status_words(status),
        command=None if command is None else _wrap_command(command),
        results=_results(step, record.vars),
        # A verify step's reason repeats its table: the cause is enough there.
        reason=(
            step.reason
            if status != Status.SUCCESS and step.cause not in ("coverage", "expectation")
            else None
        ),
        cause=cause_text(step) if fell_short(step) else None,
        instructions=manual_instructions(step),
        analysis=_analysis(step, record),
        details=[(_DETAIL_MARK.get(d.mark, "•"), d.text) for d in step.details],
        missing=step.missing if status == Status.NOT_FOUND else None,
        missing_kind=_missing_kind(step),
        alternatives=list(step.alternatives),
        verification=verification,
        output_tail=tail,
        log_path=step.log_path,
        log_note=log_note,
    )


def _analysis(step: StepResult, record: RunRecord) -> list[str]:
    """A validate step's items: counted apart, against the baseline, against the run's gaps."""
    items = step_items(step)
    if not items:
        return []
    lines = [f"Listed {item_tally(items)}"]
    for diff in item_diffs(step):
        text = diff.text[:1].upper() + diff.text[1:]
        examples = [f"resolved: {item_text(i)}" for i in diff.resolved[:2]]
        examples += [f"new: {item_text(i)}" for i in diff.new[:2]]
        lines.append(text + (f" (e.g. {'; '.join(examples)})" if examples else ""))
    lines.extend(a[:1].upper() + a[1:] for a in attribution_lines(record, step))
    return lines


# --------------------------------------------------------------------------- sections


def _heading(record: RunRecord) -> tuple[str, str]:
    plan = record.incident.get("plan", "").strip()
    action = record.incident.get("action", "").strip()
    base = re.sub(r"\s+(action\s+)?plan$", "", plan, flags=re.IGNORECASE) or record.title
    heading = f"{base} - Remediation Report" + (f" ({action})" if action else "")
    return heading, action or "Run"


def _summary_lead(record: RunRecord) -> str:
    n = len(record.steps)
    if n == 0:
        return "No steps were run."
    plan = record.incident.get("plan", "").strip()
    action = record.incident.get("action", "").strip()
    if action and plan:
        what = f"{action} from the {plan}"
    elif action or plan:
        what = action or plan
    else:
        what = f"runbook {record.runbook_id}"
    tally = status_tally(record.steps)
    order: list[Status | None] = [*Status, None]
    parts = [f"{tally[s]} {COUNT_WORDS[s]}" for s in order if s in tally]
    status = f" Run status: {record.status.value}." if record.status else ""
    if record.partitions:
        steps = len({s.id for s in record.steps})
        runs = (
            f"{counted(steps, 'step')} over {counted(len(record.partitions), 'partition')} "
            f"({counted(n, 'step run')})"
        )
        return f"Ran {runs} of {what}: {', '.join(parts)}.{status}"
    return f"Ran {counted(n, 'step')} of {what}: {', '.join(parts)}.{status}"


def _numeric_changes(step: StepResult) -> list[StatGroup]:
    assert step.baseline is not None
    groups: list[StatGroup] = []
    before_all, after_all = step.baseline.captures, step.captures
    item_captures = item_list_captures(step)
    diffs = item_diffs(step)
    lists_changed = [
        n
        for n, v in after_all.items()
        if _sequence(v)
        and _sequence(before_all.get(n))
        and list(before_all[n]) != list(v)
        and n not in item_captures
    ]
    # The items changed though a count may hold: that is not "unchanged".
    moved = item_captures if any(d.resolved or d.new for d in diffs) else []
    changes = value_changes(step)
    lone = len(changes) == 1
    for change in changes:
        label = _human(change.name)
        groups.append(
            StatGroup(
                f"{label} ({step.title})",
                _change_stats(change, label, lone, [*lists_changed, *moved]),
            )
        )
    for diff in diffs:
        stats = [
            Stat("Before", str(diff.before)),
            Stat("After", str(diff.after)),
            Stat("Resolved", str(len(diff.resolved)), [item_text(i) for i in diff.resolved[:3]]),
            Stat("New", str(len(diff.new)), [item_text(i) for i in diff.new[:3]]),
            Stat("Unchanged", str(len(diff.unchanged))),
        ]
        groups.append(StatGroup(f"Listed {diff.label}, by identity ({step.title})", stats))
    for name in lists_changed:
        gone, new, kept = list_diff(before_all[name], after_all[name])
        stats = [
            Stat("Resolved", str(len(gone)), _capped(gone, str)),
            Stat("New", str(len(new)), _capped(new, str)),
            Stat("Unchanged", str(kept)),
        ]
        groups.append(StatGroup(f"{_human(name)} ({step.title})", stats))
    if step.baseline.error:
        groups.append(StatGroup(step.title, [Stat("Baseline error", step.baseline.error)]))
    return groups


def _change_stats(change: Change, label: str, lone: bool, lists_changed: list[str]) -> list[Stat]:
    unit = label.lower()
    before, after = change.before, change.after
    stats = [
        Stat("Before", f"{value_text(before)} {unit}" if is_number(before) else "not measured"),
        Stat("After", f"{value_text(after)} {unit}" if is_number(after) else "not captured"),
    ]
    delta = change.delta
    if delta is None:
        return stats
    if delta < 0:
        pct = f" ({signed_percent_text(change.percent)})" if change.percent is not None else ""
        stats.append(Stat("Reduction", f"{label} reduced by {value_text(-delta)}{pct}"))
    elif delta > 0:
        stats.append(Stat("Change", f"{label} increased by {value_text(delta)}"))
    elif any(lone or _related(change.name, n) for n in lists_changed):
        # The count held but the items it counts changed: not "unchanged".
        stats.append(Stat("Reduction", f"{label} changed but not reduced in count"))
    else:
        stats.append(Stat("Reduction", "none (unchanged)"))
    return stats


def _stem(name: str) -> str:
    word = re.split(r"[_\-\s]+", name.lower().strip("_"))[0]
    return word[:-1] if word.endswith("s") and len(word) > 3 else word


def _related(number: str, items: str) -> bool:
    """Whether list capture `items` lists what `number` counts (`issue_lines` ~ `issues`)."""
    return _stem(number) == _stem(items)


def _coverage_changes(step: StepResult) -> list[StatGroup]:
    assert step.baseline is not None
    groups: list[StatGroup] = []
    names = display_names(step.counts.items())
    for key, after in step.counts.items():
        before = step.baseline.counts.get(key)
        stats: list[Stat] = []

        def figure(c: CheckResult | None, *, mark: bool = False) -> str:
            if c is None or c.actual is None:
                return "not measured" + (f" ({c.error})" if c is not None and c.error else "")
            if nothing_expected(c) or excess_count(c) is not None:
                text = f"{fraction(c)} records ({coverage_text(c)})"
            else:
                pct = check_percent(c)
                share = f" ({percent_text(pct)})" if pct is not None else ""
                text = fraction(c) + " records" + share
            return text + (" ✅" if mark and c.ok else "")

        stats.append(Stat("Before", figure(before)))
        stats.append(Stat("After", figure(after, mark=True)))
        delta = count_change(before, after)
        if delta is not None:
            points = coverage_points(before, after)
            pct = f" ({points_text(points)})" if points is not None else ""
            if excess_count(after) is not None or (nothing_expected(after) and after.actual):
                stats.append(Stat("Finding", check_statement(names[key], after)))
            elif delta > 0:
                stats.append(Stat("Improvement", f"+{counted(delta, 'record')}{pct}"))
            elif delta < 0:
                stats.append(Stat("Change", f"-{counted(-delta, 'record')}{pct}"))
            else:
                stats.append(Stat("Change", "none (unchanged)"))
        if not after.ok and after.error is None and missing_count(after):
            stats.append(Stat("Still Missing", missing_phrase(after)))
        groups.append(StatGroup(names[key], stats))
    return groups


def _stats(record: RunRecord) -> tuple[list[Stat], list[StatGroup]]:
    tally = ", ".join(f"{n} {COUNT_WORDS[s]}" for s, n in status_tally(record.steps).items())
    run: list[Stat] = [Stat("Steps", f"{len(record.steps)}" + (f" ({tally})" if tally else ""))]
    seconds = run_seconds(record)
    if seconds is not None:
        run.append(Stat("Run time", elapsed(max(seconds, 0.0))))
    groups: list[StatGroup] = []
    for step in record.steps:
        if step.baseline is None:
            continue
        if step.counts or step.baseline.counts:
            groups.extend(_coverage_changes(step))
        if step.captures or step.baseline.captures or step.baseline.error:
            groups.extend(_numeric_changes(step))
    return run, groups


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if _sequence(value):
        return [value_text(v) for v in value]
    return [value_text(value)]


def _issues(record: RunRecord) -> list[Issue]:
    issues: list[Issue] = []
    for number, step in enumerate(record.steps, 1):
        if not fell_short(step):
            continue
        where = f"{step.title} (step {number}, {status_words(step.status)})"
        sf = dict(step.shortfall or {})
        # The runbook's text stands beside the measured facts, never instead of them.
        priority = str(sf.pop("priority", AUTO_PRIORITY[step.status])).upper()
        issue = value_text(sf.pop("issue", None) or shortfall_title(step))
        impact_value = sf.pop("impact", None)
        impact = value_text(impact_value) if impact_value is not None else None
        root_cause = _as_list(sf.pop("root_cause", None))
        keyed = sf.get("cause")
        if isinstance(keyed, str) and keyed in CAUSES:
            sf.pop("cause")  # the cause the text was chosen for, not a possible cause
        causes: list[str] = []
        for k in ("cause", "causes", "possible_causes"):
            causes += _as_list(sf.pop(k, None))
        actions = _as_list(sf.pop("action", None)) + _as_list(sf.pop("actions", None))
        if not actions:
            actions = _auto_actions(step)
        extra = [(_human(str(k)), value_text(v)) for k, v in sf.items()]
        names = display_names(step.counts.items())
        missing = [
            Bullet(f"{names[k]}:", _capped(missing_key_lines(c), str))
            for k, c in step.counts.items()
            if not c.ok and c.missing_keys
        ]
        rerun = (
            _wrap_command(rerun_command(record, step))
            if step.cause not in ("needs", "not_found") and step.status is not None
            else None
        )
        issues.append(
            Issue(
                priority,
                issue,
                where,
                cause_text(step),
                cause_facts(record, step),
                missing,
                step.crash,
                rerun,
                impact,
                root_cause,
                causes,
                actions,
                extra,
            )
        )
    return sorted(issues, key=lambda i: priority_rank(i.priority))


def _auto_actions(step: StepResult) -> list[str]:
    log = f" (log: {step.log_path})" if step.log_path else ""
    match step.status:
        case Status.NOT_FOUND:
            alts = f": candidates are {', '.join(step.alternatives)}" if step.alternatives else ""
            return [
                f"Locate the correct {_missing_kind(step).lower()}{alts}",
                f"Update step {step.id} of the runbook and re-run it",
            ]
        case Status.FAILED:
            return [f"Find the cause of the failure in the output{log}, fix it, re-run {step.id}"]
        case Status.TIMED_OUT:
            return [f"Find out why {step.id} exceeded its timeout{log}; raise it or re-run"]
        case Status.ABORTED | None:
            return ["Continue the run with runbook resume on its run directory"]
        case Status.SKIPPED if step.skipped_by == "manual":
            return [f"Do {step.id} by hand and confirm it, or re-run with --yes"]
        case Status.SKIPPED:
            return [f"Run {step.id} once the steps it needs have succeeded"]
        case _:
            return [f"Re-run {step.id} once the missing data is available"]


def _lessons(record: RunRecord, *, standing: bool) -> list[Lesson]:
    out: list[Lesson] = []
    for advice in record.lessons:
        if advice.standing != standing:
            continue
        lines = [ln.strip() for ln in markdown.clean(advice.text).split("\n") if ln.strip()]
        if not lines:
            continue
        subs = [re.sub(r"^[-*+]\s+", "", ln) for ln in lines[1:]]
        out.append(Lesson(lines[0], subs))
    return out


def _conclusion(record: RunRecord, issues: Sequence[Issue]) -> tuple[list[str], str]:
    sentences: list[str] = []
    ok = [s.title for s in record.steps if s.status == Status.SUCCESS]
    n = len(record.steps)
    grid = partition_grid(record)
    coverage: list[str] = []
    reached = "Coverage reached"
    if grid is not None:
        # Pair by pair is the grid's job; here the run in one sentence and each check summed.
        sentences.append(f"{len(ok)} of {counted(n, 'step run')} succeeded; {grid.summary}.")
        for name, found, total in partition_coverage(record):
            share = f" ({percent_text(100.0 * found / total)})" if total else ""
            coverage.append(f"{name} {found}/{total}{share}")
        reached = f"Coverage reached over {counted(len(record.partitions), grid.noun[:-1])}"
    elif n:
        listed = f": {'; '.join(ok)}" if ok else ""
        sentences.append(f"{len(ok)} of {counted(n, 'step')} succeeded{listed}.")
    changes: list[str] = []
    for step in record.steps:
        if grid is not None:
            break
        names = display_names(step.counts.items())
        for key, c in step.counts.items():
            pct = check_percent(c)
            if c.actual is None:
                continue
            if nothing_expected(c) or excess_count(c) is not None:
                coverage.append(f"{names[key]} {fraction(c)} ({coverage_text(c)})")
            else:
                # A 0% share is left unsaid here: the figure already shows it.
                share = f" ({percent_text(pct)})" if pct else ""
                coverage.append(f"{names[key]} {fraction(c)}{share}")
        changes.extend(
            f"{_human(c.name).lower()} {value_text(c.before)} before, {value_text(c.after)} after"
            for c in value_changes(step)
            if c.measured
        )
    if coverage:
        sentences.append(f"{reached}: {', '.join(coverage)}.")
    if changes:
        sentences.append(f"Compared with the baseline: {'; '.join(changes)}.")
    if issues:
        listed = "; ".join(f"{i.issue} ({i.priority})" for i in issues)
        sentences.append(f"Still open ({len(issues)}): {listed}.")
    elif n:
        sentences.append("Nothing is left open.")
    if record.reason is not None:
        rec = f"The run stopped early ({record.reason}): make room, then run it again."
    elif record.status == RunStatus.COMPLETE:
        rec = "No follow-up is needed."
    elif issues:
        rec = (
            f"Follow up on the {counted(len(issues), 'remaining issue')} above; "
            "runbook followup drafts a runbook of what fell short."
        )
    elif record.status is None:
        rec = "The run has not finished; resume it with runbook resume."
    else:
        rec = "Review the steps above before closing the action."
    return sentences, rec


def _key_numbers(step: StepResult) -> str:
    if step.status == Status.NOT_FOUND and step.missing:
        return f" (missing {step.missing})"
    if step.counts:
        names = display_names(step.counts.items())
        parts = [f"{names[k]} {fraction(c)}" for k, c in step.counts.items()]
        return f" ({', '.join(parts[:4])}{', …' if len(parts) > 4 else ''})"
    numbers = [
        f"{_human(k).lower()} {value_text(v)}" for k, v in step.captures.items() if is_number(v)
    ]
    if numbers:
        return f" ({', '.join(numbers[:4])})"
    return f" ({step.reason})" if step.reason and step.status != Status.SUCCESS else ""


def _execution_log(record: RunRecord, action: str) -> str:
    events: list[tuple[datetime, int, str]] = []

    def add(at: datetime | None, text: str) -> None:
        when = utc(at) if at is not None else (events[-1][0] if events else utc(record.started_at))
        events.append((when, len(events), markdown.plain(text)))

    label = action if action != "Run" else f"runbook {record.runbook_id}"
    add(record.started_at, f"Started {label} execution (run {record.run_id})")
    baselines = [s.baseline.measured_at for s in record.steps if s.baseline is not None]
    if baselines:
        add(min(baselines), f"Baseline measured for {counted(len(baselines), 'step')}")
    for i, session in enumerate(record.sessions[1:], 2):
        add(session.started_at, f"Resumed on {session.host} (session {i})")
    for step in record.steps:
        if step.started_at is not None:
            add(step.started_at, f"{step_name(step)} started")
        for attempt in step.attempts[1:]:
            add(attempt.started_at, f"{step_name(step)} attempt {attempt.number} started")
        if step.status is not None:
            verb = {
                Status.SKIPPED: "skipped",
                Status.NOT_FOUND: "not run",
                Status.ABORTED: "aborted",
                Status.TIMED_OUT: "timed out",
            }.get(step.status, "completed")
            add(
                step.ended_at or step.started_at,
                f"{step_name(step)} {verb}: {step.status.value}{_key_numbers(step)}",
            )
    if record.ended_at is not None:
        status = record.status.value if record.status else "unknown"
        why = f" ({record.reason})" if record.reason else ""
        add(record.ended_at, f"Run finished: {status}{why}")
    events.sort(key=lambda e: (e[0], e[1]))
    return "\n".join(f"{timestamp(at)} - {text}" for at, _, text in events)


def _build(record: RunRecord) -> ReportView:
    heading, action_label = _heading(record)
    grid = partition_grid(record)
    shortfalls = [
        Bullet(f"{step_name(s)} (step {n}): {cause_text(s)}", cause_facts(record, s))
        for n, s in enumerate(record.steps, 1)
        if fell_short(s)
    ]
    run_stats, stats = _stats(record)
    issues = _issues(record)
    conclusion, recommendation = _conclusion(record, issues)
    generated = record.ended_at or utcnow()
    incident_ref = record.incident.get("reference") or None
    short_sha = record.runbook_sha256[:12]
    return ReportView(
        heading=heading,
        date=utc(record.started_at).strftime("%Y-%m-%d"),
        action=record.title,
        action_label=action_label,
        summary_lead=_summary_lead(record),
        summary_text=record.summary or None,
        shortfalls=shortfalls,
        # A partitioned run details only the pairs that fell short; the grid shows the rest.
        steps=[
            _partition_titled(_step_view(i, s, record), s)
            for i, s in enumerate(record.steps, 1)
            if grid is None or fell_short(s)
        ],
        run_stats=run_stats,
        stats=stats,
        issues=issues,
        lessons=_lessons(record, standing=False),
        standing_lessons=_lessons(record, standing=True),
        derived=derived_next_steps(record),
        next_steps=[
            (h, [a.text for a in items if not a.standing])
            for h, items in record.next_steps.items()
            if any(not a.standing for a in items)
        ],
        standing_steps=[
            a.text for items in record.next_steps.values() for a in items if a.standing
        ],
        followup=(
            f"runbook followup {run_folder(record)}"
            if record.status in (RunStatus.PARTIALLY_COMPLETE, RunStatus.FAILED)
            else None
        ),
        status="IN PROGRESS" if record.status is None else record.status.value,
        status_mark=RUN_MARK[record.status],
        conclusion=conclusion,
        recommendation=recommendation,
        log=_execution_log(record, action_label),
        gantt=run_gantt(record),
        flowchart=run_flowchart(record),
        generated_at=timestamp(generated),
        executed_by=f"runbook {record.tool_version} ({record.operator}@{record.host})",
        incident_reference=incident_ref,
        runbook=runbook_shown(record) + (f" (sha256 {short_sha})" if short_sha else ""),
        run_id=record.run_id,
        record=record,
        partitions=grid,
    )


def _partition_titled(view: StepView, step: StepResult) -> StepView:
    view.title = step_name(step)
    return view
