"""The post-incident report: one blameless markdown document over all of an incident's runs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from agent.incident.incident import Action, LoadedIncident, load_incident
from agent.output import mermaid
from agent.output.facts import (
    AUTO_PRIORITY,
    cause_facts,
    cause_text,
    check_figure,
    count_change,
    counted,
    is_number,
    key_groups,
    key_noun,
    missing_count,
    priority_rank,
    shortfall_title,
    skipped_on_purpose,
    timestamp,
    utc,
)
from agent.output.history import find_runs
from agent.output.templates import render_template
from agent.plan import templating
from agent.plan.durations import elapsed
from agent.plan.loader import LoadedRunbook
from agent.plan.model import CommandStep, VerifyStep
from agent.record import (
    FOLLOWUP_SUFFIX,
    CheckResult,
    RunRecord,
    RunStatus,
    Status,
    StepResult,
)
from agent.steps.verify import check_key

__all__ = [
    "POSTMORTEM_TEMPLATE",
    "ActionRuns",
    "action_namespace",
    "collect_runs",
    "postmortem",
]

POSTMORTEM_TEMPLATE = "postmortem.md.j2"
_STATE_MARK = {"done": "✅", "partially done": "⚠️", "failed": "❌", "not started": "⬜"}
_RUN_STATE = {
    RunStatus.COMPLETE: "done",
    RunStatus.PARTIALLY_COMPLETE: "partially done",
    RunStatus.FAILED: "failed",
    RunStatus.INTERRUPTED: "failed",
}
_MANUAL_STATUS = {
    "done": "COMPLETE",
    "partially done": "PARTIALLY COMPLETE",
    "failed": "FAILED",
    "not started": "NOT STARTED",
}


# --------------------------------------------------------------------------- runs


@dataclass
class ActionRuns:
    """One action of the incident and what its runs did (runbook actions; manual ones have none).

    Attributes:
        action: The action as the incident file gives it.
        loaded: Its runbook, or None for a manual action.
        runs: The matching runs, oldest first, each with its run directory.
        steps: The latest result of each step over those runs (a follow-up's re-run wins).
    """

    action: Action
    loaded: LoadedRunbook | None
    runs: list[tuple[Path, RunRecord]] = field(default_factory=list)
    steps: dict[str, StepResult] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def latest(self) -> RunRecord | None:
        """The most recent run, or None when the action never ran."""
        return self.runs[-1][1] if self.runs else None

    @property
    def state(self) -> str:
        """done, partially done, failed or not started."""
        if self.loaded is None:
            return self.action.status or "not started"
        latest = self.latest
        if latest is None:
            return "not started"
        return _RUN_STATE.get(latest.status, "failed") if latest.status else "failed"

    @property
    def status(self) -> str:
        """The latest run's status, or NOT STARTED (manual actions: from their state)."""
        if self.loaded is None:
            return _MANUAL_STATUS[self.state]
        latest = self.latest
        if latest is None:
            return "NOT STARTED"
        return latest.status.value if latest.status else "NOT FINISHED"


def _plain_json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _matches(record: RunRecord, loaded: LoadedRunbook, values: Mapping[str, Any]) -> bool:
    base = loaded.runbook.id
    if record.runbook_id not in (base, base + FOLLOWUP_SUFFIX):
        return False
    secret = {n for n, spec in loaded.runbook.vars.items() if spec.secret}
    for name, value in values.items():
        if name in secret:
            continue
        if name not in record.vars or _plain_json(record.vars[name]) != _plain_json(value):
            return False
    return True


def _finished(step: StepResult) -> bool:
    return step.status is not None and step.skipped_by != "selection"


def collect_runs(incident: LoadedIncident, reports: Path) -> list[ActionRuns]:
    """Match the runs under `reports` to the incident's actions.

    A run belongs to an action when its runbook id is the action runbook's id (or that id with
    ``-followup``, the runbook `runbook followup` writes) and its vars equal the action's.

    Args:
        incident: The loaded incident.
        reports: The reports folder.

    Returns:
        One entry per action, in the file's order.
    """
    # Oldest first: the latest matching run of an action decides its state.
    runs = [(row.run_dir, row.record) for row in reversed(find_runs(reports))]
    out: list[ActionRuns] = []
    for action in incident.incident.actions:
        loaded = incident.runbooks.get(action.id)
        values = incident.values.get(action.id, {})
        entry = ActionRuns(action=action, loaded=loaded, values=dict(values))
        if loaded is not None:
            entry.runs = [(d, r) for d, r in runs if _matches(r, loaded, values)]
            for _, record in entry.runs:
                for step in record.steps:
                    if _finished(step):
                        entry.steps[step.id] = step
        out.append(entry)
    return out


# --------------------------------------------------------------------------- criteria


def _blank_steps(loaded: LoadedRunbook) -> dict[str, dict[str, Any]]:
    steps: dict[str, dict[str, Any]] = {}
    for step in loaded.runbook.steps:
        captures = dict.fromkeys(step.capture) if isinstance(step, CommandStep) else {}
        counts: dict[str, Any] = {}
        if isinstance(step, VerifyStep):
            for i, check in enumerate(step.checks):
                counts[check_key(step, i)] = CheckResult(table=check.table).model_dump()
        steps[step.id] = {
            "status": None,
            "captures": captures,
            "counts": counts,
            "exit_code": None,
            "reason": None,
        }
    return steps


def action_namespace(entry: ActionRuns) -> dict[str, Any]:
    """What a success criterion reads as ``actions.<id>``.

    Args:
        entry: The action and its runs.

    Returns:
        ``id``, ``title``, ``state`` (done, partially done, failed, not started), ``status``
        (the latest run's status or NOT STARTED), ``run_id``, ``runs`` (how many),
        ``steps.<step id>`` (``status``, ``captures``, ``counts``, ``exit_code``, ``reason``;
        the latest result of each step, null when it never ran), and, over all steps,
        ``captures`` and ``counts[table]`` (``actual``, ``expected``, ``percent``, ``ok``, ...).
    """
    steps = _blank_steps(entry.loaded) if entry.loaded is not None else {}
    for sid, step in entry.steps.items():
        steps[sid] = {
            "status": step.status.value if step.status else None,
            "captures": {**steps.get(sid, {}).get("captures", {}), **step.captures},
            "counts": {
                **steps.get(sid, {}).get("counts", {}),
                **{k: c.model_dump() for k, c in step.counts.items()},
            },
            "exit_code": step.exit_code,
            "reason": step.reason,
        }
    captures: dict[str, Any] = {}
    counts: dict[str, Any] = {}
    for view in steps.values():
        captures.update(
            {k: v for k, v in view["captures"].items() if v is not None or k not in captures}
        )
        counts.update(view["counts"])
    latest = entry.latest
    return {
        "id": entry.action.id,
        "title": _action_title(entry),
        "state": entry.state,
        "status": entry.status,
        "run_id": latest.run_id if latest else None,
        "runs": len(entry.runs),
        "steps": steps,
        "captures": captures,
        "counts": counts,
    }


@dataclass
class CriterionView:
    """One success criterion, checked."""

    mark: str  # "x", "~" or " "
    text: str
    expect: str
    note: str | None


def _criteria(incident: LoadedIncident, entries: list[ActionRuns]) -> list[CriterionView]:
    context = {"actions": {e.action.id: action_namespace(e) for e in entries}}
    out: list[CriterionView] = []
    for crit in incident.incident.success_criteria:
        note = None
        mark = " "
        try:
            if templating.evaluate(crit.expect, context):
                mark = "x"
            elif crit.partial and templating.evaluate(crit.partial, context):
                mark = "~"
                note = "partially met"
        except templating.TemplateError as exc:
            note = f"cannot be evaluated yet: {exc}"
        out.append(CriterionView(mark, crit.text, crit.expect, note))
    return out


# --------------------------------------------------------------------------- formatting


def _delta(delta: timedelta) -> str:
    return elapsed(delta.total_seconds())


def _short(table: str) -> str:
    return table.split("#", 1)[0].rsplit(".", 1)[-1]


def _missing(c: CheckResult) -> str:
    n = missing_count(c)
    if not n:
        return "none" if c.ok else "—"
    if c.key and c.missing_keys:
        groups = sorted(key_groups(c))
        return f"{n} ({counted(len(groups), key_noun(c.key[0]))}: {', '.join(groups)})"
    return str(n)


def _key_numbers(step: StepResult) -> str:
    if step.status == Status.NOT_FOUND and step.missing:
        return f" (missing {step.missing})"
    if step.counts:
        parts = [f"{_short(k)} {check_figure(c)}" for k, c in step.counts.items()]
        return f" ({', '.join(parts)})"
    numbers = [f"{k.replace('_', ' ')} {v}" for k, v in step.captures.items() if is_number(v)]
    return f" ({', '.join(numbers)})" if numbers else ""


def _action_title(entry: ActionRuns) -> str:
    """The file's title, else the runbook's title rendered with the action's vars."""
    if entry.action.title:
        return entry.action.title
    if entry.loaded is not None:
        context = {**entry.values, "env": {}, "run": {"id": ""}}
        try:
            return templating.render(entry.loaded.runbook.title, context)
        except templating.TemplateError:
            if entry.runs:
                return entry.runs[0][1].title
            return entry.loaded.runbook.title
    return entry.action.id


# --------------------------------------------------------------------------- view model


@dataclass
class ActionView:
    """One row of the actions table."""

    number: int
    id: str
    title: str
    owner: str
    source: str
    state: str
    mark: str
    status: str
    runs: int
    latest_run: str
    when: str


@dataclass
class DataRow:
    """One table's rows before the first run and after the last one."""

    table: str
    before: str
    after: str
    change: str
    missing: str


@dataclass
class ValueRow:
    """One captured value of a step with a baseline, before and after."""

    name: str
    action: str
    before: str
    after: str


@dataclass
class IssueView:
    """A remaining issue, gathered over every action without duplicates."""

    priority: str
    issue: str
    seen_in: list[str]
    impact: str | None
    actions: list[str]
    cause: str | None = None
    facts: list[str] = field(default_factory=list)


@dataclass
class PostmortemView:
    """Everything the template shows, as plain values (the template escapes them)."""

    id: str
    title: str
    severity: str
    state: str
    detected: str
    resolved: str
    duration: str
    reference: str | None
    summary: str
    overview: str
    impact: list[str]
    measured_impact: list[str]
    timeline: list[list[str]]
    actions: list[ActionView]
    gantt: str
    data: list[DataRow]
    values: list[ValueRow]
    criteria: list[CriterionView]
    issues: list[IssueView]
    followups: list[tuple[str, str]]
    root_causes: list[str]
    contributing_factors: list[str]
    went_well: list[str]
    went_wrong: list[str]
    lucky: list[str]
    lessons: list[str]
    action_items: list[list[str]]
    sources: str


def _action_views(entries: list[ActionRuns]) -> list[ActionView]:
    views: list[ActionView] = []
    for i, e in enumerate(entries, 1):
        latest = e.latest
        if e.loaded is not None:
            source = e.action.runbook or ""
            when = (
                f"{timestamp(latest.started_at)} to {timestamp(latest.ended_at)}"
                if latest and latest.ended_at
                else (timestamp(latest.started_at) if latest else "—")
            )
        else:
            source = "manual"
            when = timestamp(e.action.at) if e.action.at else "—"
        views.append(
            ActionView(
                number=i,
                id=e.action.id,
                title=_action_title(e),
                owner=e.action.owner or "—",
                source=source,
                state=e.state,
                mark=_STATE_MARK[e.state],
                status=e.status,
                runs=len(e.runs),
                latest_run=latest.run_id if latest else "—",
                when=when,
            )
        )
    return views


def _timeline(incident: LoadedIncident, entries: list[ActionRuns]) -> list[list[str]]:
    events: list[tuple[datetime, int, str, str]] = []

    def add(at: datetime | None, who: str, text: str) -> None:
        if at is not None:
            events.append((utc(at), len(events), who, text))

    inc = incident.incident
    add(inc.detected, "—", "Incident detected")
    for entry in inc.timeline:
        add(entry.at, "—", entry.event)
    for e in entries:
        if e.loaded is None:
            if e.action.at is not None:
                add(e.action.at, e.action.id, f"{_action_title(e)}: {e.state} (manual)")
            continue
        for _, record in e.runs:
            add(
                record.started_at,
                e.action.id,
                f"Run {record.run_id} of {record.runbook_id} started",
            )
            for step in record.steps:
                if not _finished(step) or step.status is None:
                    continue
                ran = step.status not in (Status.SKIPPED, Status.NOT_FOUND)
                if ran:
                    add(step.started_at, e.action.id, f"{step.title} started")
                add(
                    step.ended_at or step.started_at,
                    e.action.id,
                    f"{step.title}: {step.status.value}{_key_numbers(step)}",
                )
            if record.ended_at is not None:
                status = record.status.value if record.status else "unknown"
                add(record.ended_at, e.action.id, f"Run {record.run_id} finished: {status}")
    if inc.resolved is not None:
        add(inc.resolved, "—", "Incident resolved")
    events.sort(key=lambda ev: (ev[0], ev[1]))
    return [[timestamp(at), who, text] for at, _, who, text in events]


def _gantt(incident: LoadedIncident, entries: list[ActionRuns]) -> str:
    lines = mermaid.gantt_head(incident.incident.title, millis=False, axis="%m-%d %H:%M")
    tags = {"done": "done", "partially done": "active", "failed": "crit"}
    for n, e in enumerate(entries, 1):
        title = mermaid.label(f"{n}. {_action_title(e)}")
        if e.loaded is None:
            if e.action.at is None:
                lines.append(f"    %% {e.action.id}: {e.state}, no time given")
                continue
            lines.append(f"    section {title}")
            at = mermaid.gantt_time(e.action.at, millis=False)
            lines.append(f"    {mermaid.label(e.state)} (manual) :milestone, a{n}, {at}, 0d")
            continue
        if not e.runs:
            lines.append(f"    %% {e.action.id}: not started")
            continue
        lines.append(f"    section {title}")
        for k, (_, record) in enumerate(e.runs, 1):
            start = utc(record.started_at)
            # A run still going (or that lasted no time) is drawn a second long.
            end = max(
                utc(record.ended_at) if record.ended_at else start, start + timedelta(seconds=1)
            )
            state = _RUN_STATE.get(record.status, "failed") if record.status else "failed"
            status = record.status.value if record.status else "NOT FINISHED"
            label = mermaid.label(f"{record.runbook_id} {status}")
            span = [mermaid.gantt_time(t, millis=False) for t in (start, end)]
            lines.append(f"    {label} :{tags[state]}, a{n}r{k}, {span[0]}, {span[1]}")
    return "\n".join(lines)


def _measurements(
    entries: list[ActionRuns],
) -> dict[str, list[tuple[datetime, bool, CheckResult]]]:
    out: dict[str, list[tuple[datetime, bool, CheckResult]]] = {}
    for e in entries:
        for _, record in e.runs:
            for step in record.steps:
                if step.baseline is not None:
                    for key, c in step.baseline.counts.items():
                        at = utc(step.baseline.measured_at)
                        out.setdefault(key, []).append((at, True, c))
                if step.counts and _finished(step):
                    at = utc(step.ended_at or step.started_at or record.started_at)
                    for key, c in step.counts.items():
                        out.setdefault(key, []).append((at, False, c))
    return out


def _data_rows(entries: list[ActionRuns]) -> list[DataRow]:
    rows: list[DataRow] = []
    for key, items in _measurements(entries).items():
        items.sort(key=lambda m: m[0])
        baselines = [m for m in items if m[1]]
        before = baselines[0][2] if baselines else None
        after = [m for m in items if not m[1]]
        last = after[-1][2] if after else None
        delta = count_change(before, last)
        change = "—" if delta is None else (f"{delta:+d}" if delta else "none")
        rows.append(
            DataRow(
                table=key,
                before=check_figure(before) if before is not None else "not measured",
                after=check_figure(last) if last is not None else "not measured",
                change=change,
                missing=_missing(last) if last is not None else "—",
            )
        )
    return rows


def _value_rows(entries: list[ActionRuns]) -> list[ValueRow]:
    rows: list[ValueRow] = []
    for e in entries:
        firsts: dict[tuple[str, str], Any] = {}
        lasts: dict[tuple[str, str], Any] = {}
        titles: dict[str, str] = {}
        for _, record in e.runs:
            for step in record.steps:
                if step.baseline is None:
                    continue
                titles[step.id] = step.title
                for name, value in step.baseline.captures.items():
                    if is_number(value):
                        firsts.setdefault((step.id, name), value)
                for name, value in step.captures.items():
                    if is_number(value) and _finished(step):
                        lasts[(step.id, name)] = value
        for (sid, name), value in firsts.items():
            after = lasts.get((sid, name))
            rows.append(
                ValueRow(
                    name=f"{name.replace('_', ' ')} ({titles[sid]})",
                    action=e.action.id,
                    before=str(value),
                    after="not measured" if after is None else str(after),
                )
            )
    return rows


def _issue_of(step: StepResult) -> tuple[str, str, str | None, list[str]]:
    """Priority, title, the runbook's impact and actions: beside the facts, never instead."""
    priority = AUTO_PRIORITY.get(step.status, "HIGH")
    sf = step.shortfall or {}
    action = sf.get("action") or []
    actions = [str(a) for a in action] if isinstance(action, list) else [str(action)]
    if not sf.get("action") and step.counts:
        actions = [f"Re-run {step.id} once the data is present"]
    impact = sf.get("impact")
    issue = sf.get("issue") or shortfall_title(step)
    return (
        str(sf.get("priority", priority)),
        str(issue),
        None if impact is None else str(impact),
        actions,
    )


def _record_of(entry: ActionRuns, step: StepResult) -> RunRecord | None:
    """The run whose result `step` is (the latest run that holds it)."""
    for _, record in reversed(entry.runs):
        if any(s is step for s in record.steps):
            return record
    for _, record in reversed(entry.runs):
        if any(s.id == step.id for s in record.steps):
            return record
    return None


def _issues(entries: list[ActionRuns]) -> list[IssueView]:
    found: dict[str, IssueView] = {}
    for e in entries:
        for sid, step in e.steps.items():
            if step.status == Status.SUCCESS or skipped_on_purpose(step):
                continue
            priority, issue, impact, actions = _issue_of(step)
            record = _record_of(e, step)
            facts = cause_facts(record, step) if record is not None else []
            key = " ".join(issue.casefold().split())
            where = f"{e.action.id} / {sid} ({step.status.value if step.status else 'unfinished'})"
            view = found.get(key)
            if view is None:
                found[key] = IssueView(
                    priority, issue, [where], impact, list(actions), cause_text(step), facts
                )
                continue
            view.facts += [f for f in facts if f not in view.facts]
            if priority_rank(priority) < priority_rank(view.priority):
                view.priority = priority
            view.seen_in.append(where)
            view.impact = view.impact or impact
            view.actions += [a for a in actions if a not in view.actions]
    # sorted() is stable: issues of one priority keep the order they were found in.
    return sorted(found.values(), key=lambda v: priority_rank(v.priority))


def _overview(entries: list[ActionRuns], criteria: list[CriterionView]) -> str:
    tally = {state: sum(e.state == state for e in entries) for state in _STATE_MARK}
    parts = [f"{n} {state}" for state, n in tally.items() if n]
    runs = sum(len(e.runs) for e in entries)
    text = (
        f"{len(entries)} actions: {', '.join(parts)}; "
        f"{runs} run{'s' if runs != 1 else ''} recorded."
    )
    if criteria:
        met = sum(c.mark == "x" for c in criteria)
        partial = sum(c.mark == "~" for c in criteria)
        text += f" Success criteria: {met} of {len(criteria)} met"
        text += f", {partial} partially." if partial else "."
    return text


def _measured_impact(entries: list[ActionRuns]) -> list[str]:
    out: list[str] = []
    for key, items in _measurements(entries).items():
        baselines = sorted((m for m in items if m[1]), key=lambda m: m[0])
        if baselines and not baselines[0][2].ok:
            c = baselines[0][2]
            out.append(f"{key}: {check_figure(c)} before the first action")
    for e in entries:
        for _, record in e.runs[:1]:
            for step in record.steps:
                if step.baseline is None:
                    continue
                for name, value in step.baseline.captures.items():
                    if is_number(value) and value:
                        label = name.replace("_", " ")
                        out.append(f"{step.title}: {value} {label} before the first action")
    return out


def _lessons(incident: LoadedIncident, entries: list[ActionRuns]) -> list[str]:
    out = list(incident.incident.lessons)
    seen = {" ".join(x.casefold().split()) for x in out}
    for e in entries:
        latest = e.latest
        for lesson in latest.lessons if latest else []:
            key = " ".join(lesson.text.casefold().split())
            if key not in seen:
                seen.add(key)
                out.append(lesson.text)
    return out


def _build(incident: LoadedIncident, reports: Path) -> PostmortemView:
    inc = incident.incident
    entries = collect_runs(incident, reports)
    criteria = _criteria(incident, entries)
    if inc.resolved is not None:
        state = "Resolved"
        resolved = f"{timestamp(inc.resolved)} UTC"
        duration = _delta(inc.resolved - inc.detected)
    else:
        state = "Open"
        resolved = "— (open)"
        duration = "— (open)"
    issues = _issues(entries)
    followups = [
        (e.action.id, f"runbook followup {reports.name or reports}/{e.latest.run_id}")
        for e in entries
        if e.latest is not None and e.state in ("partially done", "failed")
    ]
    runs = sum(len(e.runs) for e in entries)
    return PostmortemView(
        id=inc.id,
        title=inc.title,
        severity=inc.severity,
        state=state,
        detected=f"{timestamp(inc.detected)} UTC",
        resolved=resolved,
        duration=duration,
        reference=inc.reference,
        summary=inc.summary,
        overview=_overview(entries, criteria),
        impact=list(inc.impact),
        measured_impact=_measured_impact(entries),
        timeline=_timeline(incident, entries),
        actions=_action_views(entries),
        gantt=_gantt(incident, entries),
        data=_data_rows(entries),
        values=_value_rows(entries),
        criteria=criteria,
        issues=issues,
        followups=followups,
        root_causes=list(inc.root_causes),
        contributing_factors=list(inc.contributing_factors),
        went_well=list(inc.went_well),
        went_wrong=list(inc.went_wrong),
        lucky=list(inc.lucky),
        lessons=_lessons(incident, entries),
        action_items=[
            [i.priority, i.title, i.type, i.owner, i.due.isoformat(), i.status, i.ticket or "—"]
            for i in sorted(inc.action_items, key=lambda i: (priority_rank(i.priority), i.due))
        ],
        sources=f"{incident.path.name} and {runs} run{'s' if runs != 1 else ''} under "
        f"{reports.name or str(reports)}/",
    )


def postmortem(incident_path: Path, reports: Path) -> str:
    """Render the post-incident report of an incident over all of its actions' runs.

    Args:
        incident_path: The incident file (YAML); its runbook paths are relative to its folder.
        reports: The folder holding the runs (``<run id>/run.json``); the latest matching run
            of each action decides its state.

    Returns:
        The report as markdown, ending with a newline.

    Raises:
        ValidationError: when the incident file (or a runbook it names) does not load.
    """
    incident = load_incident(incident_path)
    return render_template(POSTMORTEM_TEMPLATE, p=_build(incident, reports))
