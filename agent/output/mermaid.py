"""Mermaid diagrams: one label escaper, gantt lines, and a run's gantt and flowchart."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from agent.output import markdown
from agent.output.facts import WORST_FIRST, status_tally, utc
from agent.record import RunRecord, Status, StepResult

__all__ = ["gantt_head", "gantt_time", "label", "run_flowchart", "run_gantt"]

# What a label may hold: anything else (colons, quotes, brackets, `#`, `;`) can end a Mermaid
# statement or start markup, so it becomes a blank.
_UNSAFE = re.compile(r"[^\w .,()/@+=<>%&'-]")
_MAX_LABEL = 80
_GANTT_TAG = {
    Status.SUCCESS: "done",
    Status.PARTIAL: "active",
    Status.FAILED: "crit",
    Status.TIMED_OUT: "crit",
    Status.NOT_FOUND: "crit",
    Status.ABORTED: "crit",
}
_BAD = "fill:#f8d7da,stroke:#dc3545"
_FLOW_CLASS = {
    Status.SUCCESS: ("ok", "fill:#d4edda,stroke:#28a745"),
    Status.PARTIAL: ("partial", "fill:#fff3cd,stroke:#e0a800"),
    Status.FAILED: ("bad", _BAD),
    Status.TIMED_OUT: ("bad", _BAD),
    Status.NOT_FOUND: ("bad", _BAD),
    Status.ABORTED: ("bad", _BAD),
    Status.SKIPPED: ("skipped", "fill:#e2e3e5,stroke:#6c757d,stroke-dasharray: 4 3"),
}


def label(text: str) -> str:
    """A label Mermaid cannot misread: no colons, quotes, brackets, markup or control codes.

    Args:
        text: Any text (a title, a status).

    Returns:
        The text with unsafe characters blanked, at most 80 characters, ``-`` if nothing is left.
    """
    return _UNSAFE.sub(" ", markdown.clean(text)).strip()[:_MAX_LABEL] or "-"


def gantt_time(dt: datetime, *, millis: bool) -> str:
    """A time as a gantt's ``dateFormat`` reads it, in UTC.

    Args:
        dt: The time.
        millis: Whether the chart's format has milliseconds (``.SSS``).

    Returns:
        ``YYYY-MM-DDTHH:mm:ss`` (with ``.SSS`` when `millis`).
    """
    # isoformat truncates to the unit as strftime's %f cut to 3 digits did, at a third the cost.
    return utc(dt).replace(tzinfo=None).isoformat("T", "milliseconds" if millis else "seconds")


def gantt_head(title: str, *, millis: bool, axis: str, note: str = "") -> list[str]:
    """The first lines of a gantt chart.

    Args:
        title: The chart's title (escaped here).
        millis: Whether task times carry milliseconds (see `gantt_time`).
        axis: The axis format (``%H:%M:%S``).
        note: Safe text after the title, kept whole however long the title is (`` (UTC)``).

    Returns:
        The lines, without a section.
    """
    return [
        "gantt",
        f"    title {label(title)}{note}",
        f"    dateFormat YYYY-MM-DDTHH:mm:ss{'.SSS' if millis else ''}",
        f"    axisFormat {axis}",
    ]


def run_gantt(record: RunRecord) -> str | None:
    """A gantt of the steps' real start and end times (UTC).

    Args:
        record: The run.

    Returns:
        The chart, or None before any step ran.
    """
    if record.partition_var is not None:
        return _partition_gantt(record)
    rows = []
    for n, step in enumerate(record.steps, 1):
        if step.started_at is None or step.ended_at is None or step.status == Status.SKIPPED:
            continue
        tag = _GANTT_TAG.get(step.status) if step.status else None
        tags = f"{tag}, " if tag else ""
        # A task needs a length to be drawn: an instant step lasts a millisecond.
        end = max(step.ended_at, step.started_at + timedelta(milliseconds=1))
        rows.append(
            f"    {n}. {label(step.title)} ({step.status.value if step.status else '?'})"
            f" :{tags}s{n}, {gantt_time(step.started_at, millis=True)},"
            f" {gantt_time(end, millis=True)}"
        )
    if not rows:
        return None
    head = gantt_head(record.title, millis=True, axis="%H:%M:%S", note=" (UTC)")
    return "\n".join([*head, "    section Steps", *rows])


def _bands(pairs: list[StepResult]) -> list[tuple[str, Status, datetime, datetime]]:
    """Runs of consecutive partitions of one step that ended alike, as (label, status, start,
    end): 180 dates that all succeeded are one band."""
    bands: list[tuple[list[str], Status, datetime, datetime]] = []
    for r in pairs:
        status = r.status
        if r.started_at is None or r.ended_at is None or status is None:
            continue
        if status == Status.SKIPPED:
            continue
        end = max(r.ended_at, r.started_at + timedelta(milliseconds=1))
        if bands and bands[-1][1] == status:
            names, _, start, last = bands[-1]
            names.append(r.partition or "")
            bands[-1] = (names, status, min(start, r.started_at), max(last, end))
        else:
            bands.append(([r.partition or ""], status, r.started_at, end))
    out = []
    for names, status, start, end in bands:
        text = names[0] if len(names) == 1 else f"{names[0]} to {names[-1]} ({len(names)})"
        out.append((text, status, start, end))
    return out


def _partition_gantt(record: RunRecord) -> str | None:
    """A partitioned run's gantt: a section per step, its partitions as bands on shared rows
    (Mermaid's compact mode), readable at 180 dates."""
    by_step: dict[str, list[StepResult]] = {}
    for r in record.steps:
        by_step.setdefault(r.id, []).append(r)
    lines: list[str] = []
    n = 0
    for number, pairs in enumerate(by_step.values(), 1):
        bands = _bands(pairs)
        if not bands:
            continue
        lines.append(f"    section {number}. {label(pairs[0].title)}")
        for text, status, start, end in bands:
            n += 1
            tag = _GANTT_TAG.get(status)
            tags = f"{tag}, " if tag else ""
            lines.append(
                f"    {label(text)} {status.value} :{tags}b{n}, "
                f"{gantt_time(start, millis=True)}, {gantt_time(end, millis=True)}"
            )
    if not lines:
        return None
    head = gantt_head(record.title, millis=True, axis="%H:%M:%S", note=" (UTC)")
    return "\n".join(["---", "displayMode: compact", "---", *head, *lines])


def _partition_flowchart(record: RunRecord) -> str:
    """A partitioned run's flowchart: one node per step with its partitions tallied, coloured
    by its worst pair."""
    by_step: dict[str, list[StepResult]] = {}
    for r in record.steps:
        by_step.setdefault(r.id, []).append(r)
    ids = {sid: f"s{n}" for n, sid in enumerate(by_step, 1)}
    lines = ["flowchart TD"]
    used: dict[str, str] = {}
    for n, (sid, pairs) in enumerate(by_step.items(), 1):
        tally = sorted(status_tally(pairs).items(), key=lambda t: WORST_FIRST.index(t[0]))
        text = ", ".join(f"{k} {st.value if st else 'NOT RUN'}" for st, k in tally)
        lines.append(f'    {ids[sid]}["{n}. {label(pairs[0].title)}<br/>{label(text)}"]')
        worst = tally[0][0]
        if worst in _FLOW_CLASS:
            name, style = _FLOW_CLASS[worst]
            used[name] = style
            lines.append(f"    class {ids[sid]} {name}")
    for sid in by_step:
        needs = set(record.needs.get(sid, []))
        for before in record.after.get(sid, []):
            if before in ids:
                arrow = "-->" if before in needs else "-.->"
                lines.append(f"    {ids[before]} {arrow} {ids[sid]}")
    lines.extend(f"    classDef {name} {style}" for name, style in used.items())
    return "\n".join(lines)


def run_flowchart(record: RunRecord) -> str:
    """The steps' DAG as a flowchart, each step coloured by its status.

    Solid arrows are `needs` (must succeed); dotted ones only order the steps.

    Args:
        record: The run.

    Returns:
        The chart.
    """
    if record.partition_var is not None:
        return _partition_flowchart(record)
    lines = ["flowchart TD"]
    ids = {s.id: f"s{n}" for n, s in enumerate(record.steps, 1)}
    used: dict[str, str] = {}
    for n, step in enumerate(record.steps, 1):
        status = step.status.value if step.status else "NOT RUN"
        lines.append(f'    {ids[step.id]}["{n}. {label(step.title)}<br/>{status}"]')
        if step.status in _FLOW_CLASS:
            name, style = _FLOW_CLASS[step.status]
            used[name] = style
            lines.append(f"    class {ids[step.id]} {name}")
    for step in record.steps:
        needs = set(record.needs.get(step.id, []))
        for before in record.after.get(step.id, []):
            if before in ids:
                arrow = "-->" if before in needs else "-.->"
                lines.append(f"    {ids[before]} {arrow} {ids[step.id]}")
    lines.extend(f"    classDef {name} {style}" for name, style in used.items())
    return "\n".join(lines)
