"""The incident file: pydantic model, loader with FILE:LINE:COL problems, and its JSON Schema."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent.errors import RunbookError, ValidationError, display_path
from agent.plan import document, templating
from agent.plan.document import PATTERN_HINTS, Builder, KeyPath, Problems, read_document, suggest
from agent.plan.loader import LoadedRunbook, load_runbook
from agent.plan.model import ID_PATTERN
from agent.plan.schema import schema_text
from agent.plan.vars import resolve_vars

__all__ = [
    "ACTION_STATES",
    "Action",
    "ActionItem",
    "Criterion",
    "Incident",
    "LoadedIncident",
    "TimelineEntry",
    "incident_schema_text",
    "load_incident",
    "load_incident_text",
]

ACTION_ID_PATTERN = r"^[a-z][a-z0-9_]*$"
SEVERITY_PATTERN = r"^(SEV[0-5]|P[0-4])$"
ACTION_STATES = ("done", "partially done", "failed", "not started")
CRITERIA_NAMES = ("actions",)
_HINTS = {
    ACTION_ID_PATTERN: (
        "an action id is lowercase letters, digits and '_', starting with a letter"
        " (criteria read it as actions.<id>)"
    ),
    SEVERITY_PATTERN: "write SEV0 to SEV5, or P0 to P4",
    ID_PATTERN: PATTERN_HINTS[ID_PATTERN],
}

Priority = Literal["CRITICAL", "HIGH", "MEDIUM", "LOW"]


def _utc(value: Any) -> Any:
    """A time without a zone is read as UTC; every time in a postmortem is UTC."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


class _Strict(BaseModel):
    """Unknown keys are errors, as in runbooks."""

    model_config = ConfigDict(extra="forbid")


class TimelineEntry(_Strict):
    """A moment of the incident that no run recorded (detection, escalation, a decision)."""

    at: datetime = Field(description="when, in UTC (a time without a zone is read as UTC)")
    event: str = Field(description="What happened, in one line.")

    _zone = field_validator("at", mode="after")(_utc)


class Action(_Strict):
    """One remediation action: a runbook (its runs are found under the reports folder) or prose."""

    id: Annotated[str, Field(pattern=ACTION_ID_PATTERN)] = Field(
        description="The action's name: [a-z][a-z0-9_]*; criteria read it as actions.<id>."
    )
    title: str | None = Field(default=None, description="default: the runbook's rendered title")
    runbook: str | None = Field(default=None, description="path relative to the incident file")
    vars: dict[str, Any] = Field(default_factory=dict, description="the runbook's vars (--var)")
    manual: str | None = Field(default=None, description="what a person does, in prose")
    status: Literal["done", "partially done", "failed", "not started"] | None = Field(
        default=None, description="manual actions only: how far it got (default: not started)"
    )
    at: datetime | None = Field(default=None, description="manual actions only: when it ended")
    owner: str | None = Field(default=None, description="Who carried the action out.")

    _zone = field_validator("at", mode="after")(_utc)

    @model_validator(mode="after")
    def _one_kind(self) -> Action:
        if (self.runbook is None) == (self.manual is None):
            raise ValueError(
                "an action needs exactly one of 'runbook' (a file) or 'manual' (prose)"
            )
        if self.runbook is not None and (self.status is not None or self.at is not None):
            raise ValueError("'status' and 'at' are for manual actions; a runbook's runs tell")
        if self.manual is not None and self.vars:
            raise ValueError("'vars' are for runbook actions")
        return self


class ActionItem(_Strict):
    """Follow-up work that prevents a recurrence (tracked outside the incident)."""

    title: str = Field(description="The work to do, in one line.")
    owner: str = Field(description="Who owns it (a team or a person).")
    priority: Priority = Field(description="CRITICAL, HIGH, MEDIUM or LOW.")
    due: date = Field(description="When it is due: YYYY-MM-DD.")
    type: Literal[
        "prevent", "detect", "mitigate", "repair", "investigate", "document", "process"
    ] = Field(description="prevent, detect, mitigate, repair, investigate, document or process.")
    status: Literal["open", "in progress", "done"] = Field(
        default="open", description="open, in progress or done."
    )
    ticket: str | None = Field(default=None, description="The ticket that tracks it.")


class Criterion(_Strict):
    """A success criterion: an expression over the actions' runs, with an optional partial one."""

    text: str = Field(description="The criterion as the postmortem states it.")
    expect: str = Field(description="e.g. actions.backfill.counts['ds.table'].actual >= 16")
    partial: str | None = Field(default=None, description="when true (and expect false): [~]")


def _str_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


StrList = Annotated[list[str], pydantic.BeforeValidator(_str_list)]


class Incident(_Strict):
    """A whole incident: what happened, what was done about it (actions), what was learned."""

    version: Literal[1] = Field(default=1, description="The format's version: 1.")
    id: Annotated[str, Field(pattern=ID_PATTERN)] = Field(
        description="The incident's name: [a-z0-9][a-z0-9_-]*."
    )
    title: str = Field(description="The postmortem's title.")
    severity: Annotated[str, Field(pattern=SEVERITY_PATTERN)] = Field(
        description="SEV0 to SEV5, or P0 to P4."
    )
    detected: datetime = Field(description="When it was detected, in UTC.")
    resolved: datetime | None = Field(
        default=None, description="When it was resolved, in UTC (not before detected)."
    )
    reference: str | None = Field(default=None, description="the action plan or ticket")
    summary: str = Field(description="What happened, in a paragraph.")
    impact: StrList = Field(
        default_factory=list, description="Who or what was affected: a line or a list."
    )
    root_causes: StrList = Field(min_length=1, description="Why it happened: at least one.")
    contributing_factors: StrList = Field(
        default_factory=list, description="What made it worse or more likely."
    )
    went_well: StrList = Field(default_factory=list, description="What went well.")
    went_wrong: StrList = Field(default_factory=list, description="What went wrong.")
    lucky: StrList = Field(default_factory=list, description="Where we got lucky.")
    lessons: StrList = Field(default_factory=list, description="What was learned.")
    timeline: list[TimelineEntry] = Field(
        default_factory=list,
        description="Moments no run recorded; the runs' own times are added to them.",
    )
    actions: list[Action] = Field(
        min_length=1, description="What was done: runbooks and manual actions, at least one."
    )
    success_criteria: list[Criterion] = Field(
        default_factory=list,
        description="Expressions over the actions' runs, checked [x], [~] or [ ].",
    )
    action_items: list[ActionItem] = Field(
        default_factory=list, description="Follow-up work that prevents a recurrence."
    )

    _zone = field_validator("detected", "resolved", mode="after")(_utc)

    @model_validator(mode="after")
    def _order(self) -> Incident:
        if self.resolved is not None and self.resolved < self.detected:
            raise ValueError("'resolved' is before 'detected'")
        return self


@dataclass
class LoadedIncident:
    """An incident file that passed every check, with its actions' runbooks loaded."""

    incident: Incident
    path: Path
    runbooks: dict[str, LoadedRunbook] = field(default_factory=dict)  # action id -> runbook
    values: dict[str, dict[str, Any]] = field(default_factory=dict)  # action id -> typed vars


# --- schema ----------------------------------------------------------------------------------


def incident_schema_text() -> str:
    """Return the JSON Schema of the incident file as stable, indented JSON text.

    Returns:
        The schema, ending with a newline (committed as runbooks/incident.schema.json).
    """
    return schema_text(Incident, "incident")


# --- loading ---------------------------------------------------------------------------------


_NAMED = {
    "actions": "action",
    "action_items": "action item",
    "success_criteria": "criterion",
    "timeline": "timeline entry",
}


def _where(path: KeyPath, data: Mapping[str, Any]) -> str:
    if len(path) >= 2 and path[0] in _NAMED and isinstance(path[1], int):
        noun = _NAMED[str(path[0])]
        items = data.get(str(path[0]))
        item = items[path[1]] if isinstance(items, list) and path[1] < len(items) else None
        aid = item.get("id") if isinstance(item, dict) and path[0] == "actions" else None
        return f"{noun} '{aid}'" if isinstance(aid, str) and aid else f"{noun} {path[1] + 1}"
    if path:
        return "'" + ".".join(str(p) for p in path) + "'"
    return "the incident"


def _model_problems(exc: pydantic.ValidationError, data: dict[str, Any], b: Builder) -> None:
    for found, rest, err in document.located_errors(exc, data, b, Incident):
        if document.key_problem(found, rest, err, data=data, b=b, root=Incident, where=_where):
            continue
        message = document.clean_message(err["msg"], err, _HINTS)
        if len(found) == 2 and str(found[0]) in _NAMED:
            label = _where(found, data)  # an entry of a list: its own name says where
        else:
            label = document.value_label(found, data, _where)
        b.problems.add(b.value_marks.get(found, (1, 1)), f"{label}: {message}")


ACTION_FIELDS = ("id", "title", "state", "status", "run_id", "runs", "steps", "captures", "counts")


def _check_criteria(
    incident: Incident, loaded: dict[str, LoadedRunbook], b: Builder, problems: Problems
) -> None:
    ids = [a.id for a in incident.actions]
    for i, crit in enumerate(incident.success_criteria):
        for key in ("expect", "partial"):
            expr = getattr(crit, key)
            if expr is None:
                continue
            mark = b.value_marks.get(("success_criteria", i, key), (1, 1))
            what = f"'{key}' of criterion {i + 1}"
            try:
                names = templating.expression_names(expr)
                refs = templating.step_paths(expr, expression=True, root="actions")
            except templating.TemplateError as exc:
                problems.add(mark, f"{what}: {exc}")
                continue
            for name in sorted(names - set(CRITERIA_NAMES)):
                problems.add(mark, f"undefined name '{name}' in {what}: criteria read actions.<id>")
            for ref in sorted(refs):
                if ref[0] not in ids:
                    problems.add(
                        mark,
                        f"{what} reads actions.{ref[0]}, which is not an action"
                        f"{suggest(ref[0], ids)}",
                    )
                elif len(ref) >= 2 and ref[1] not in ACTION_FIELDS:
                    problems.add(
                        mark,
                        f"{what} reads actions.{ref[0]}.{ref[1]}: an action has "
                        f"{', '.join(ACTION_FIELDS)}{suggest(ref[1], list(ACTION_FIELDS))}",
                    )
                elif len(ref) >= 3 and ref[1] == "steps" and ref[0] in loaded:
                    steps = [s.id for s in loaded[ref[0]].runbook.steps]
                    if ref[2] not in steps:
                        problems.add(
                            mark,
                            f"{what} reads actions.{ref[0]}.steps.{ref[2]}, which is not a "
                            f"step of {loaded[ref[0]].path.name}{suggest(ref[2], steps)}",
                        )


def _check_actions(
    incident: Incident, base: Path, b: Builder, problems: Problems
) -> tuple[dict[str, LoadedRunbook], dict[str, dict[str, Any]]]:
    loaded: dict[str, LoadedRunbook] = {}
    values: dict[str, dict[str, Any]] = {}
    seen: dict[str, int] = {}
    for i, action in enumerate(incident.actions):
        if action.id in seen:
            first = b.value_marks.get(("actions", seen[action.id], "id"), (0, 0))
            problems.add(
                b.value_marks.get(("actions", i, "id"), (1, 1)),
                f"duplicate action id '{action.id}' (first at line {first[0]})",
            )
        seen.setdefault(action.id, i)
        if action.runbook is None:
            continue
        mark = b.value_marks.get(("actions", i, "runbook"), (1, 1))
        path = base / action.runbook
        if not path.is_file():
            problems.add(mark, f"action '{action.id}': runbook '{action.runbook}' does not exist")
            continue
        try:
            rb = load_runbook(path)
        except ValidationError as exc:
            first_problem = exc.problems[0] if exc.problems else None
            problems.add(
                mark,
                f"action '{action.id}': runbook '{action.runbook}' does not load"
                + (f" ({first_problem})" if first_problem else ""),
            )
            continue
        overrides = {k: _var_text(v) for k, v in action.vars.items()}
        try:
            values[action.id] = resolve_vars(rb.runbook, overrides)
        except RunbookError as exc:
            vmark = b.value_marks.get(("actions", i, "vars"), mark)
            problems.add(vmark, f"action '{action.id}': {exc}")
            continue
        loaded[action.id] = rb
    return loaded, values


def _var_text(value: Any) -> str:
    """A var value from YAML as `--var` would give it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_var_text(v) for v in value)
    if isinstance(value, date | datetime):
        return value.isoformat()
    return str(value)


def load_incident_text(text: str, path: Path) -> LoadedIncident:
    """Load an incident from its text.

    Args:
        text: the YAML source.
        path: where it came from (for messages, and runbook paths relative to its folder).

    Returns:
        The checked incident, with the runbook of every runbook action loaded.

    Raises:
        ValidationError: with every problem found, each as FILE:LINE:COL: message.
    """
    data, builder = document.compose(
        text, display_path(path), kind="incident", keys="id, title, severity and actions"
    )
    problems = builder.problems
    try:
        incident = Incident.model_validate(data)
    except pydantic.ValidationError as exc:
        _model_problems(exc, data, builder)
        raise ValidationError(problems.items) from None
    loaded, values = _check_actions(incident, path.parent, builder, problems)
    _check_criteria(incident, loaded, builder, problems)
    if problems.items:
        raise ValidationError(problems.items)
    return LoadedIncident(incident=incident, path=path, runbooks=loaded, values=values)


def load_incident(path: Path) -> LoadedIncident:
    """Read and check an incident file.

    Args:
        path: the YAML file.

    Returns:
        The checked incident.

    Raises:
        ValidationError: with every problem found (also for unreadable or non-UTF-8 files).
    """
    text, _ = read_document(path, kind="incident")
    return load_incident_text(text, path)
