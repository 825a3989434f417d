"""The dry-run review behind `runbook plan`: what would run, in which order, and what is missing."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import UsageError
from agent.plan import templating
from agent.plan.durations import setting
from agent.plan.loader import LoadedRunbook
from agent.plan.partitions import partition_value, resolve_partitions
from agent.proc.redact import Redactor
from agent.record import StepResult
from agent.steps import REGISTRY, StepContext, StepReview

if TYPE_CHECKING:
    from agent.run.context import RunContext

__all__ = ["PartitionPlan", "PlanReview", "StepPlan", "review_plan"]

SHOWN_VALUES = 50
"""The most partition values the markdown lists one by one (the JSON has them all)."""


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


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


@dataclass
class PartitionPlan:
    """A partitioned runbook's partitions as the run would resolve them.

    `keys` is None when they are not known before the run: a `query` under `--offline`, or
    one that could not be resolved (`error` says why).
    """

    var: str
    source: str  # dates | values | query
    parallel: int
    order: str
    steps: int
    keys: list[str] | None
    query: str | None = None
    duplicates: int = 0
    error: str | None = None

    @property
    def shown_for(self) -> str | None:
        """The partition the steps are reviewed for: the first one, when there is one."""
        return self.keys[0] if self.keys else None

    @property
    def step_runs(self) -> int | None:
        """How many (step, partition) pairs the run would have."""
        return None if self.keys is None else self.steps * len(self.keys)

    @property
    def runs_line(self) -> str:
        """'3 steps x 30 partitions = 90 step runs'."""
        steps = _plural(self.steps, "step")
        if self.error is not None:
            return f"{steps} x each partition (the partitions are not resolved)"
        if self.keys is None:
            return f"{steps} x the partitions the query returns (counted at run time)"
        runs = _plural(self.step_runs or 0, "step run")
        return f"{steps} x {_plural(len(self.keys), 'partition')} = {runs}"

    @property
    def values_line(self) -> str:
        """What the partitions are, in a line: a range of dates, or the values listed."""
        if self.error is not None:
            return "not resolved (see the error below)"
        if self.keys is None:
            return "from the query, resolved at run time (offline: not queried)"
        n = len(self.keys)
        if self.source == "dates":
            if n == 1:
                return f"1 date: {self.keys[0]}"
            return f"{n:,} dates, one a day from {self.keys[0]} to {self.keys[-1]}"
        origin = " from the query" if self.source == "query" else ""
        if n == 0:
            why = "the query returned no rows" if self.source == "query" else "no values"
            return f"0 partitions ({why}): the run would run no step"
        listed = ", ".join(self.keys[:SHOWN_VALUES])
        if n > SHOWN_VALUES:
            listed += f", ... ({n - SHOWN_VALUES:,} more)"
        dupes = f" ({_plural(self.duplicates, 'duplicate')} run once)" if self.duplicates else ""
        return f"{_plural(n, 'value')}{origin}: {listed}{dupes}"

    @property
    def order_line(self) -> str:
        """How the pairs are scheduled."""
        how = (
            "each step runs for every partition before the next step starts"
            if self.order == "phase"
            else "each partition runs all its steps in turn"
        )
        return f"{self.order} ({how}), {_plural(self.parallel, 'partition')} at a time"


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
    partitions: PartitionPlan | None = None

    @property
    def missing(self) -> list[tuple[str, str]]:
        """(step id, what is missing) for every step; `partitions` when they cannot be had."""
        out = [(s.id, m) for s in self.steps for m in s.review.missing]
        out += [(s.id, s.error) for s in self.steps if s.error]
        if self.partitions is not None and self.partitions.error is not None:
            out.append(("partitions", self.partitions.error))
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


def _review_partitions(
    run_context: RunContext, *, offline: bool, endpoint: str | None
) -> PartitionPlan | None:
    """Resolve the partitions as the run would; a `query` runs (read-only) unless offline."""
    spec = run_context.loaded.runbook.partitions
    if spec is None:
        return None
    source = "dates" if spec.dates is not None else "values" if spec.values is not None else "query"
    plan = PartitionPlan(
        var=spec.var,
        source=source,
        parallel=spec.parallel,
        order=spec.order,
        steps=len(run_context.loaded.graph.order),
        keys=None,
        query=spec.query,
    )
    if source == "query" and offline:
        return plan

    def query(sql: str) -> list[Any]:
        from agent.steps.base import sql_params
        from agent.warehouse.base import WarehouseError

        try:
            warehouse = run_context.open_warehouse(endpoint)
            try:
                labels = {"runbook": run_context.loaded.runbook.id, "step": "partitions"}
                return warehouse.column(sql, sql_params(run_context.values), labels)
            finally:
                warehouse.close()
        except WarehouseError as exc:
            raise UsageError(f"partitions: the query failed: {exc}") from None

    try:
        plan.keys = resolve_partitions(spec, run_context.values, query=query)
    except UsageError as exc:
        plan.error = str(exc).removeprefix("partitions: ")
        return plan
    if spec.values is not None:
        plan.duplicates = len(spec.values) - len(plan.keys)
    return plan


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
    review.partitions = _review_partitions(run_context, offline=offline, endpoint=endpoint)
    # Steps see the partition var as a run's first partition sees it; with no partition to
    # show (a query left to the run) a stand-in names it, and nothing asks the warehouse.
    step_vars = values
    step_offline = offline
    if review.partitions is not None:
        first = review.partitions.shown_for
        step_vars = {
            **values,
            review.partitions.var: (
                partition_value(first) if first is not None else f"<{review.partitions.var}>"
            ),
        }
        step_offline = offline or first is None
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

    # One stop event for every step: nothing stops a review. (StepResult.model_construct was
    # tried for the blank results and is slower: pydantic inspects each default factory's
    # signature on every call, 8.9 s for 5,000 steps against 0.16 s validating.)
    stop = threading.Event()

    def context(step: Any, step_vars: Mapping[str, Any]) -> StepContext:
        return StepContext(
            loaded=loaded,
            vars=step_vars,
            env=env,
            workdir=workdir,
            run_dir=None,
            steps_view=view,
            result=StepResult(id=step.id, kind=step.kind, title=step.label),
            redactor=redactor,
            stop=stop,
            emit=lambda e: None,
            open_warehouse=lambda: run_context.open_warehouse(endpoint),
            offline=step_offline,
        )

    for n, sid in enumerate(loaded.graph.order, start=1):
        step = steps[sid]
        ctx = context(step, step_vars)
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
            parts = review.partitions
            if parts is not None and parts.keys and not step_offline and not plan.review.missing:
                ctxs = {
                    p: context(step, {**values, parts.var: partition_value(p)}) for p in parts.keys
                }
                plan.review.by_partition = kind.review_partitions(step, ctxs, parts.var)
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
    data: dict[str, Any] = {
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
                "by_partition": [{"partition": p, "now": now} for p, now in s.review.by_partition],
                "missing": s.review.missing,
                "alternatives": s.review.alternatives,
                "error": s.error,
            }
            for s in review.steps
        ],
        "missing": [{"step": sid, "what": m} for sid, m in review.missing],
    }
    if review.partitions is not None:  # a runbook without partitions: the document as before
        data["partitions"] = _partitions_json(review.partitions)
    return data


def _partitions_json(p: PartitionPlan) -> dict[str, Any]:
    return {
        "var": p.var,
        "source": p.source,
        "query": p.query,
        # None: resolved at run time (a query under --offline) or not at all (`error`).
        "values": p.keys,
        "count": None if p.keys is None else len(p.keys),
        "duplicates": p.duplicates,
        "parallel": p.parallel,
        "order": p.order,
        "steps": p.steps,
        "step_runs": p.step_runs,
        "shown_for": p.shown_for,
        "error": p.error,
    }
