"""The actions to import, their drafts with unique ids, and the needs between actions."""

from __future__ import annotations

import re

from agent.errors import UsageError
from agent.incident.importer.plan import Action, Plan
from agent.incident.importer.steps import Builder, Draft

__all__ = ["PlanImportError", "build", "select", "slug"]


class PlanImportError(UsageError):
    """The markdown holds no importable action, or `--action` names none of its actions."""


def select(plan: Plan, action: str | None) -> list[Action]:
    """The actions `--action` names (`3`, `Action 3`, a title, a heading); all when None.

    Raises:
        PlanImportError: `action` names none of the plan's actions.
    """
    if action is None:
        return plan.actions
    wanted = action.strip()
    m = re.match(r"^(?:action\s*)?(\d+)$", wanted, re.I)
    for a in plan.actions:
        if m and a.number == int(m.group(1)):
            return [a]
        if wanted.lower() in (a.title.lower(), a.heading.lower()):
            return [a]
    names = ", ".join(f"'{a.heading}'" for a in plan.actions) or "none"
    raise PlanImportError(f"no action '{action}' in the plan; its actions: {names}")


def slug(text: str, sep: str = "_", limit: int = 40) -> str:
    """`text` as lowercase words joined by `sep`, cut at a word under `limit` characters."""
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", text)
    out = re.sub(r"[^a-z0-9]+", sep, text.lower()).strip(sep)
    if len(out) > limit:
        cut = out[:limit]
        out = cut.rsplit(sep, 1)[0] if sep in cut else cut
    return out


def _unique(base: str, taken: set[str]) -> str:
    out, n = base, 2
    while out in taken:
        out = f"{base}_{n}"
        n += 1
    taken.add(out)
    return out


def build(plan: Plan, actions: list[Action], prefix: bool) -> list[Draft]:
    """The drafts of `actions` in order; with `prefix`, ids start `aN_` and actions need blockers.

    Args:
        plan: the plan (for its dependencies).
        actions: the actions to import.
        prefix: several actions in one runbook: prefixed ids, needs between actions.

    Returns:
        The drafts, ids and needs set.
    """
    drafts: list[Draft] = []
    taken: set[str] = set()
    by_action: dict[int, list[Draft]] = {}
    for a in actions:
        b = Builder(a)
        for it in a.steps:
            b.item(it)
        b.validation(a.validation)
        if not b.drafts:
            b.draft(
                a.title,
                "manual",
                a.title,
                instructions=f"Carry out {a.name} of the plan: {a.title}.",
            )
        pre = f"a{a.number if a.number is not None else a.index}_" if prefix else ""
        for d in b.drafts:
            d.id = _unique(pre + (slug(d.key) or d.kind), taken)
        for d in b.drafts:
            if d.chained_to is not None:
                d.needs = [d.chained_to.id]
                d.notes.append(
                    f"chained with && in the plan: runs only if {d.chained_to.id} succeeded"
                )
        by_action[a.index] = b.drafts
        drafts.extend(b.drafts)
    if prefix:
        _needs_between(plan, actions, by_action)
    return drafts


def _needs_between(plan: Plan, actions: list[Action], by_action: dict[int, list[Draft]]) -> None:
    """The first step of an action needs every step of the actions the plan says block it."""
    numbers = {a.number: a for a in actions if a.number is not None}
    for a in actions:
        blockers = sorted(plan.blocks.get(a.number, set())) if a.number is not None else []
        first = by_action[a.index][0]
        needs: list[str] = []
        for n in blockers:
            blocker = numbers.get(n)
            if blocker is None or blocker is a:
                continue
            if blocker.index > a.index:
                first.notes.append(
                    f"the plan says {blocker.name} blocks {a.name}, but it comes "
                    "later in the file: run it first"
                )
                continue
            needs.extend(d.id for d in by_action[blocker.index])
            first.notes.append(f"needs: {blocker.name} blocks {a.name} in the plan")
        if needs:
            first.needs = [*(first.needs or []), *needs]
