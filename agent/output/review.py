"""The dry-run review behind `runbook plan`: what would run, in which order, and what is missing."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.plan import templating
from agent.plan.durations import setting
from agent.plan.loader import LoadedRunbook
from agent.proc.redact import Redactor
from agent.record import StepResult
from agent.steps import REGISTRY, StepContext, StepReview

__all__ = ["PlanReview", "StepPlan", "review_plan"]


@dataclass
class StepPlan:
    """One step as the review shows it."""

    number: int
    id: str
    kind: str
    title: str
    needs: list[str]
    after: list[str]
    when: str | None
    timeout: str | None
    retries: str | None
    captures: list[str]
    expect: list[str]
    baseline: bool
    review: StepReview
    error: str | None = None


@dataclass
class PlanReview:
    """The whole review; `ok` is False when something the run needs is missing."""

    loaded: LoadedRunbook
    title: str
    summary: str | None
    vars: dict[str, Any]
    workdir: Path
    steps: list[StepPlan] = field(default_factory=list)
    offline: bool = False
    redactor: Redactor = field(default_factory=lambda: Redactor([]))

    @property
    def missing(self) -> list[tuple[str, str]]:
        """(step id, what is missing) for every step."""
        out = [(s.id, m) for s in self.steps for m in s.review.missing]
        out += [(s.id, s.error) for s in self.steps if s.error]
        return out

    @property
    def ok(self) -> bool:
        """True when nothing the run needs is missing."""
        return not self.missing


def _setting(seconds: float | None) -> str | None:
    return None if seconds is None else setting(seconds)


class _Placeholder(dict[str, Any]):
    """Any key of a step that has not run: a readable stand-in, nested as deep as asked."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def __missing__(self, key: str) -> Any:
        return _Placeholder(f"{self.path}.{key}")

    def __str__(self) -> str:
        return f"<{self.path.replace('.captures', '').replace('.counts', '')}>"


def review_plan(
    loaded: LoadedRunbook, values: dict[str, Any], *, offline: bool, endpoint: str | None = None
) -> PlanReview:
    """Review every step in execution order; start no command, write nothing.

    Args:
        loaded: the checked runbook.
        values: the resolved vars.
        offline: skip the warehouse.
        endpoint: a BigQuery endpoint (emulator) if any.

    Returns:
        The review.
    """
    from agent.run.context import build_context

    run_context = build_context(loaded, values)
    env, workdir = run_context.env, run_context.workdir
    rb = loaded.runbook
    review = PlanReview(
        loaded=loaded,
        title=templating.render(rb.title, run_context.names()),
        summary=templating.render(rb.summary, run_context.names()) if rb.summary else None,
        vars=values,
        workdir=workdir,
        offline=offline,
    )
    redactor = run_context.redactor
    review.redactor = redactor
    steps = {s.id: s for s in rb.steps}
    # Steps that have not run read as having succeeded; what they will capture or count shows
    # as a placeholder naming it (`<team_context.records_saved>`), so commands still render.
    view: dict[str, dict[str, Any]] = {
        s.id: {
            "status": "SUCCESS",
            "captures": _Placeholder(f"{s.id}.captures"),
            "counts": _Placeholder(f"{s.id}.counts"),
            "exit_code": 0,
            "reason": None,
        }
        for s in rb.steps
    }
    for n, sid in enumerate(loaded.graph.order, start=1):
        step = steps[sid]
        ctx = StepContext(
            loaded=loaded,
            vars=values,
            env=env,
            workdir=workdir,
            run_dir=None,
            steps_view=view,
            result=StepResult(id=sid, kind=step.kind, title=step.label),
            redactor=redactor,
            stop=threading.Event(),
            emit=lambda e: None,
            open_warehouse=lambda: run_context.open_warehouse(endpoint),
            offline=offline,
        )
        retries = step.retries or rb.defaults.retries
        kind = REGISTRY[step.kind]
        plan = StepPlan(
            number=n,
            id=sid,
            kind=step.kind,
            title=step.label,
            needs=list(step.needs or []),
            after=list(loaded.graph.after[sid]),
            when=step.when,
            timeout=_setting(step.timeout or rb.defaults.timeout) if kind.times_out(step) else None,
            retries=(
                f"{retries.attempts} attempts, {setting(retries.backoff)} back-off"
                if retries and retries.attempts > 1
                else None
            ),
            captures=kind.captures(step),
            expect=list(getattr(step, "expect", []) or []),
            baseline=step.baseline,
            review=StepReview(),
        )
        try:
            plan.title = templating.render(step.label, ctx.template_context())
            plan.review = kind.review(step, ctx)
            if plan.review.command:
                plan.review.command = redactor.redact(plan.review.command)
        except templating.TemplateError as exc:
            plan.error = str(exc)
        review.steps.append(plan)
    return review


def _flowchart(review: PlanReview) -> str:
    lines = ["flowchart TD"]
    for s in review.steps:
        label = s.title.replace('"', "'")
        lines.append(f'    {s.id}["{s.number}. {label}"]')
    for s in review.steps:
        for d in s.after:
            arrow = "-->" if d in s.needs else "-.->"
            lines.append(f"    {d} {arrow} {s.id}")
    for s in review.steps:
        if s.review.missing or s.error:
            lines.append(f"    style {s.id} fill:#f8d7da,stroke:#c00")
    return "\n".join(lines)


def render_review(review: PlanReview) -> str:
    """The review as markdown, through `templates/plan.md.j2`."""
    from agent.errors import display_path
    from agent.output.markdown import table
    from agent.output.report import render_template

    rb = review.loaded.runbook
    rows = [
        [name, spec.type, "***" if spec.secret else review.vars.get(name), spec.description or ""]
        for name, spec in rb.vars.items()
    ]
    vars_table = table(rows, ["var", "type", "value", "description"]) if rows else "_none_"
    w = rb.warehouse
    warehouse = (
        f"duckdb {w.path}"
        if w.backend == "duckdb"
        else f"bigquery project {w.project or '(default)'}"
    )
    order = " → ".join(s.id for s in review.steps)
    text = render_template(
        "plan.md.j2",
        p=review,
        path=display_path(review.loaded.path),
        vars_table=vars_table,
        warehouse=warehouse,
        order=order,
        flowchart=_flowchart(review),
    )
    # Everything the review shows passes the mask once (titles, messages, rendered commands).
    return review.redactor.redact(text)


def review_json(review: PlanReview) -> dict[str, Any]:
    """The review as JSON-ready data (for `runbook plan --format json`)."""
    return {
        "runbook": review.loaded.runbook.id,
        "path": str(review.loaded.path),
        "sha256": review.loaded.sha256,
        "title": review.title,
        "vars": {
            k: ("***" if review.loaded.runbook.vars[k].secret else v)
            for k, v in review.vars.items()
        },
        "workdir": str(review.workdir),
        "ok": review.ok,
        "order": [s.id for s in review.steps],
        "steps": [
            {
                "id": s.id,
                "kind": s.kind,
                "title": s.title,
                "needs": s.needs,
                "after": s.after,
                "when": s.when,
                "timeout": s.timeout,
                "retries": s.retries,
                "command": s.review.command,
                "captures": s.captures,
                "expect": s.expect,
                "baseline": s.baseline,
                "checks": s.review.lines,
                "warehouse": s.review.warehouse,
                "missing": s.review.missing,
                "alternatives": s.review.alternatives,
                "error": s.error,
            }
            for s in review.steps
        ],
        "missing": [{"step": sid, "what": m} for sid, m in review.missing],
    }
