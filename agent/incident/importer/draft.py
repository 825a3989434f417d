"""The draft runbook: the plan's actions as steps, written through the shared YAML emitter."""

from __future__ import annotations

import re

from agent.incident import emit
from agent.incident.emit import Field, Flow, Map, Node, Note, Seq, Verbatim
from agent.incident.importer.assemble import PlanImportError, build, select, slug
from agent.incident.importer.commands import split_words
from agent.incident.importer.plan import Action, Plan, parse
from agent.incident.importer.steps import Check, Draft
from agent.incident.importer.templates import Templater, plan_date

__all__ = ["DEFAULT_SCHEMA_PATH", "import_plan"]

DEFAULT_SCHEMA_PATH = "../runbook.schema.json"

_VALIDATE_HINTS = [
    "capture:  # the usual captures of a validation script: keep what it prints",
    "  issues: {pattern: '(\\d+) ISSUES FOUND', type: int, default: 0}",
    "  warnings: {pattern: '(\\d+) WARNINGS', type: int, default: 0}",
    "  issue_lines: {pattern: '^  \\[(\\w+)\\] (.*)$', all: true}",
]


def _fold(text: str) -> str:
    """A comment's text on one line: a plan's line breaks would end the comment."""
    return re.sub(r"\s+", " ", text).strip()


def _note(text: str) -> Note:
    return Note(_fold(text))


def import_plan(
    text: str,
    *,
    source: str,
    action: str | None = None,
    schema_path: str = DEFAULT_SCHEMA_PATH,
) -> str:
    """Turn a markdown incident action plan into the YAML text of a draft runbook.

    Args:
        text: the plan's markdown.
        source: the plan's path as it should appear in `incident.reference`.
        action: one action to import (`3`, `Action 3`, or its exact heading title); all when None.
        schema_path: the JSON Schema path for the editor comment (relative to the draft's folder).

    Returns:
        The draft runbook: YAML with comments quoting the plan's expectations; it passes
        `runbook validate` as written, and every `expect: []` is for a person to fill.

    Raises:
        PlanImportError: the plan has no `Action N` sections, or `action` names none of them.
    """
    plan = parse(text)
    if not plan.actions:
        raise PlanImportError(
            f"{source}: no actions found; the importer reads '#### Action N: Title' headings "
            "under 'Recommended Actions'"
        )
    actions = select(plan, action)
    single = action is not None
    drafts = build(plan, actions, prefix=not single)
    t = Templater(plan_date(drafts))
    doc = emit.Document(
        header=_header(plan, actions, source, schema_path, single),
        head=_head(plan, actions, source, t, single),
        steps=_steps(plan, drafts, t, single),
        tail=[Field("report", Map(_report(plan, t, single)))],
    )
    return emit.dump(doc)


def _header(
    plan: Plan, actions: list[Action], source: str, schema_path: str, single: bool
) -> list[str]:
    which = f" ({actions[0].name})" if single else ""
    lines = [
        f"# yaml-language-server: $schema={schema_path}",
        "# " + _fold(f"Draft imported by `runbook import` from {source}{which}."),
        "# Review every step before running it: fill each `expect: []` from the expected",
        "# results quoted beside it, and check the kinds the importer guessed.",
    ]
    if plan.results:
        lines.append("# Validation results in the plan:")
        lines += [f"#   {mark} {table}: {_fold(fig)}" for mark, table, fig in plan.results]
    return lines


def _head(plan: Plan, actions: list[Action], source: str, t: Templater, single: bool) -> list[Node]:
    plan_title = plan.title or "Imported action plan"
    base_id = slug(plan_title, "-", 60) or "imported-plan"
    if single:
        base_id = f"{base_id}-{slug(actions[0].name, '-', 30)}"
    title = t(actions[0].title if single else plan_title)
    if t.date and single and "{{ date }}" not in title:
        title += " for {{ date }}"
    label = actions[0].name if single else _actions_label(actions)
    nodes: list[Node] = [
        Field("version", 1),
        Field("id", base_id[:80].strip("-")),
        Field("title", title),
        Field(
            "incident",
            Map([Field("reference", source), Field("action", label), Field("plan", t(plan_title))]),
        ),
    ]
    if plan.summary:
        nodes.append(Field("summary", t(plan.summary), prose=True))
    if t.date:
        var = {
            "type": "date",
            "default": t.date,
            "description": "the date the plan's commands name",
        }
        nodes.append(Field("vars", Map([Field("date", Flow(var))])))
    nodes.append(
        Field(
            "workdir",
            ".",
            comment="commands run in the runbook's folder: point it at the pipeline checkout",
        )
    )
    backend = "the plan's SQL is BigQuery: set bigquery and a project to query it"
    nodes.append(Field("warehouse", Map([Field("backend", "duckdb", comment=backend)])))
    return nodes


def _report(plan: Plan, t: Templater, single: bool) -> list[Node]:
    """Empty lessons, the plan's success criteria as next steps, the rest of it as comments."""
    out: list[Node] = [Field("lessons", Flow([]))]
    if plan.success:
        criteria = Seq([t(s) for s in plan.success])
        out.append(Field("next_steps", Map([Field("Success Criteria", criteria)])))
    else:
        out.append(Field("next_steps", Flow({})))
    quoted = [("Risks", plan.risks), ("Communication plan", plan.communication)]
    if not single:
        quoted.append(("Dependencies", plan.dependency_lines))
    for label, items in quoted:
        if items:
            out.append(Note(f"{label} (from the plan):"))
            out += [_note(f"- {s}") for s in items]
    return out


def _actions_label(actions: list[Action]) -> str:
    numbers = [a.number for a in actions]
    if len(actions) > 1 and all(n is not None for n in numbers):
        nums = [n for n in numbers if n is not None]
        if nums == list(range(nums[0], nums[0] + len(nums))):
            return f"Actions {nums[0]}-{nums[-1]}"
        return "Actions " + ", ".join(str(n) for n in nums)
    return ", ".join(a.name for a in actions)


def _steps(plan: Plan, drafts: list[Draft], t: Templater, single: bool) -> list[emit.Step]:
    """The steps, each action's first one under a banner with the action's notes."""
    out: list[emit.Step] = []
    current: Action | None = None
    for d in drafts:
        notes: list[str] = []
        if d.action is not current:
            current = d.action
            notes += _action_banner(current)
            if single:
                notes += _single_dependencies(plan, current)
            notes += [_fold(f"note: {n}") for n in current.notes]
        notes += [_fold(n) for n in d.notes]
        out.append(emit.Step(notes, _step(d, t, plan)))
    return out


def _action_banner(a: Action) -> list[str]:
    facts = [a.group] if a.group else []
    facts += [
        f"{k}: {v}" for k, v in a.fields.items() if k in ("priority", "estimated effort", "owner")
    ]
    return [_fold(f"--- {a.heading}" + (f" ({'; '.join(facts)})" if facts else ""))]


def _single_dependencies(plan: Plan, a: Action) -> list[str]:
    if a.number is None:
        return []
    lines: list[str] = []
    titles = {x.number: x.heading for x in plan.actions}
    for n in sorted(plan.blocks.get(a.number, set())):
        lines.append(f"depends on: {titles.get(n, f'Action {n}')} (run it first)")
    for other, blockers in sorted(plan.blocks.items()):
        if a.number in blockers:
            lines.append(f"blocks: {titles.get(other, f'Action {other}')}")
    return lines


def _step(d: Draft, t: Templater, plan: Plan) -> list[Node]:
    # The id is a slug of [a-z0-9_]: written as it is.
    out: list[Node] = [
        Field("id", Verbatim(d.id)),
        Field("kind", Verbatim(d.kind)),
        Field("title", t(d.title)),
    ]
    if d.description:
        out.append(Field("description", t(d.description), prose=True))
    if d.needs is not None:
        inline = emit.flow(d.needs)
        out.append(Field("needs", Flow(d.needs) if len(inline) <= 80 else Seq(list(d.needs))))
    if d.kind == "manual":
        out.append(Field("instructions", t(d.instructions or d.title), prose=True))
        out += [_note(f"expected: {e}") for e in d.expected]
        return out
    if d.command:
        out += _command(d, t)
    if d.kind == "validate":
        out.append(Field("baseline", True))
        comment = "validation scripts exit 1 when they find issues"
        out.append(Field("ok_exit_codes", Flow([0, 1]), comment=comment))
        out += [Note(hint) for hint in _VALIDATE_HINTS]
    if d.kind == "verify":
        out.append(Field("baseline", True))
        out.append(Field("checks", Seq([_check(c, t, plan) for c in d.checks])))
    out.append(Field("expect", Flow([])))
    out += [_note(f"expected: {e}") for e in d.expected]
    if d.kind == "validate" and not d.expected:
        out.append(Note("  - issues == 0"))
    return out


def _check(c: Check, t: Templater, plan: Plan) -> list[Node]:
    out: list[Node] = [Field("table", c.table)]
    where = t.where(c.where) if c.where is not None else ("game_date = @date" if t.date else "")
    if where:
        out.append(Field("where", where))
    if c.expect is not None:
        out.append(Field("expect", Flow({"min": c.expect}) if c.at_least else c.expect))
    else:
        out.append(Note("expect: N  # the plan gives no number for this table"))
    results = {table: f"{mark} {figures}" for mark, table, figures in plan.results}
    if c.table in results:
        out.append(_note(f"the plan's validation results: {results[c.table]}"))
    return out


def _command(d: Draft, t: Templater) -> list[Node]:
    out: list[Node] = []
    if not d.shell and re.search(r"\{[{%#]", d.command):
        # Split by hand: a literal `{{` must not reach the word splitter as a template.
        words = split_words(d.command) or [d.command]
        out.append(Field("command", Seq([t(w) for w in words])))
    else:
        out.append(Field("command", t(d.command), prose=True))
    if d.shell:
        out.append(Field("shell", True))
    if d.env:
        out.append(Field("env", Map([Field(k, t(v)) for k, v in d.env.items()])))
    if d.workdir:
        out.append(Field("workdir", d.workdir))
    return out
