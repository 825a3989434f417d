"""Mermaid diagrams: one label escaper, gantt lines, and a run's gantt and flowchart."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from agent.output import markdown
from agent.output.facts import utc
from agent.record import RunRecord, Status

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
    text = utc(dt).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return text[:-3] if millis else text[:-7]


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


def run_flowchart(record: RunRecord) -> str:
    """The steps' DAG as a flowchart, each step coloured by its status.

    Solid arrows are `needs` (must succeed); dotted ones only order the steps.

    Args:
        record: The run.

    Returns:
        The chart.
    """
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
