"""A runbook's checks beyond its model: step ids, needs, cycles, templates, var defaults."""

from __future__ import annotations

import itertools
import json
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pydantic

from agent.errors import UsageError
from agent.plan import dag, templating
from agent.plan.document import Builder, KeyPath, Mark, child, suggest
from agent.plan.model import (
    ID_PATTERN,
    RESERVED_NAMES,
    CommandStep,
    Runbook,
    ShortfallByCause,
    TemplateField,
    VarSpec,
    step_templates,
    strings,
)
from agent.plan.vars import coerce

__all__ = [
    "STEP_FIELDS",
    "PlanWarning",
    "check_partitions",
    "check_structure",
    "check_templates",
    "check_var_defaults",
    "fall_short_warnings",
    "reparse_warnings",
    "step_name",
    "where",
]

# The steps a template may read: a step's ancestors (asked one at a time), or a plain set at
# the top level and in the report.
Earlier = dag.Earlier | set[str]

# What a later step may read of an earlier one: `steps.<id>.<field>`.
STEP_FIELDS = ("status", "captures", "counts", "exit_code", "reason")


def step_name(data: Any, index: int) -> str:
    """Name step `index` of a runbook's data for a person: step 'x', or step 3 without an id."""
    step = child(data.get("steps"), index)
    sid = step.get("id") if isinstance(step, dict) else None
    return f"step '{sid}'" if isinstance(sid, str) and sid else f"step {index + 1}"


def where(path: KeyPath, data: Any) -> str:
    """Name the place of `path` for a person: step 'x', check 2 of step 'x', var 'y', ...

    Args:
        path: a place in a runbook's data.
        data: the runbook's data.

    Returns:
        The name, for the start of a message.
    """
    if len(path) >= 2 and path[0] == "steps" and isinstance(path[1], int):
        name = step_name(data, path[1])
        if len(path) >= 4 and path[2] == "checks" and isinstance(path[3], int):
            return f"check {path[3] + 1} of {name}"
        if len(path) >= 4 and path[2] == "capture":
            return f"capture '{path[3]}' of {name}"
        if len(path) >= 4 and path[2] == "details" and isinstance(path[3], int):
            return f"detail {path[3] + 1} of {name}"
        if len(path) >= 3 and path[2] == "retries":
            return f"'retries' of {name}"
        if len(path) >= 3 and path[2] == "on_shortfall":
            # One Shortfall, or one of a mapping keyed by cause: `on_shortfall.crashed`.
            keyed = len(path) >= 4 and path[3] in ShortfallByCause.model_fields
            return f"'on_shortfall{'.' + str(path[3]) if keyed else ''}' of {name}"
        return name
    if len(path) >= 2 and path[0] == "vars":
        return f"var '{path[1]}'"
    if len(path) >= 3 and path[0] == "report" and isinstance(path[-1], int):
        return f"item {path[-1] + 1} of 'report.{'.'.join(str(p) for p in path[1:-1])}'"
    if path:
        return f"'{'.'.join(str(p) for p in path)}'"
    return "the runbook"


# --- ids, needs, cycles (also when the model does not load) ----------------------------------


def check_structure(data: dict[str, Any], b: Builder) -> dag.Graph | None:
    """Check step ids, `needs` and cycles.

    Args:
        data: the runbook's data.
        b: the builder that read it, with its problems.

    Returns:
        The graph of the steps when they are sound, else None (with the problems added).
    """
    steps = data.get("steps")
    if not isinstance(steps, list) or not steps:
        return None
    raw_ids = [s.get("id") if isinstance(s, dict) else None for s in steps]
    sound = all(isinstance(i, str) and re.match(ID_PATTERN, i) for i in raw_ids)
    seen: dict[str, int] = {}
    for i, sid in enumerate(raw_ids):
        if not isinstance(sid, str):
            continue
        if sid in seen:
            sound = False
            first = b.value_marks.get(("steps", seen[sid], "id"), (0, 0))
            b.problems.add(
                b.value_marks.get(("steps", i, "id"), (1, 1)),
                f"duplicate step id '{sid}' (first at line {first[0]})",
            )
        else:
            seen[sid] = i
    needs: list[list[str] | None] = []
    for i, step in enumerate(steps):
        need = step.get("needs") if isinstance(step, dict) else None
        if need is not None and not (
            isinstance(need, list) and all(isinstance(n, str) for n in need)
        ):
            sound = False  # the model reports the type
            need = None
        elif need is not None:
            sound = _check_needs(data, b, i, need, seen, raw_ids[i]) and sound
        needs.append(need)
    if not sound:
        return None
    step_ids = [str(s) for s in raw_ids]
    cycle = dag.find_cycle(dag.implied_after(step_ids, needs))
    if cycle is not None:
        i = seen[cycle[0]]
        implied = [
            f"'{a}' has no 'needs', so it runs after '{c}', the step before it"
            for a, c in itertools.pairwise(cycle)
            if needs[seen[a]] is None
        ]
        note = f" ({'; '.join(implied)})" if implied else ""
        b.problems.add(
            b.value_marks.get(("steps", i, "needs"), b.value_marks.get(("steps", i), (1, 1))),
            "cycle: " + " -> ".join(cycle) + note,
        )
        return None
    return dag.build_graph(step_ids, needs)


def _check_needs(
    data: dict[str, Any], b: Builder, i: int, need: list[str], seen: dict[str, int], own: Any
) -> bool:
    """Whether every step that step `i` (whose id is `own`) needs exists and is another step."""
    sound = True
    name = step_name(data, i)
    for j, n in enumerate(need):
        mark = b.value_marks.get(("steps", i, "needs", j), (1, 1))
        if n not in seen:
            sound = False
            b.problems.add(mark, f"{name} needs unknown step '{n}'{suggest(n, list(seen))}")
        elif n == own:
            sound = False
            b.problems.add(mark, f"cycle: {n} -> {n} ({name} needs itself)")
    return sound


# --- templates, expressions, query parameters (on the raw data) -----------------------------


def check_templates(data: dict[str, Any], graph: dag.Graph, b: Builder) -> None:
    """Find undefined names, unsafe code and reads of steps that do not run before.

    Args:
        data: the runbook's data, whose steps are sound (see `check_structure`).
        graph: the steps' graph.
        b: the builder that read it, with its problems.
    """
    _TemplateChecker(data, graph, b).run()


class _TemplateChecker:
    def __init__(self, data: dict[str, Any], graph: dag.Graph, b: Builder) -> None:
        self.data = data
        self.graph = graph
        self.b = b
        self.problems = b.problems
        self.reach = dag.Reach(graph)
        vars_ = data.get("vars")
        self.var_names = {str(k) for k in vars_} if isinstance(vars_, dict) else set()
        self.base = self.var_names | {"env", "run"}
        # The partition var is bound for every step (and its SQL), not for the top level.
        self.step_base = self.base | partition_var(data)
        self.captures: dict[str, set[str]] = {}
        for step in data["steps"]:
            cap = step.get("capture")
            self.captures[step["id"]] = {str(k) for k in cap} if isinstance(cap, dict) else set()

    def _mark(self, path: KeyPath) -> Mark:
        return self.b.value_marks.get(path, (1, 1))

    def check(
        self,
        path: KeyPath,
        source: Any,
        allowed: set[str],
        earlier: Earlier,
        *,
        expression: bool,
        what: str,
    ) -> None:
        if not isinstance(source, str):
            return  # the model reports the type
        mark = self._mark(path)
        try:
            if expression:
                names = templating.expression_names(source)
            else:
                names = templating.template_names(source)
            refs = templating.step_paths(source, expression=expression)
        except templating.TemplateError as exc:
            self.problems.add(mark, f"{what}: {exc}")
            return
        for name in sorted(names - allowed - {"steps"}):
            hint = suggest(name, sorted(allowed))
            self.problems.add(mark, f"undefined name '{name}' in {what}{hint}")
        if "steps" not in names:
            return
        if not refs:
            self.problems.add(mark, f"{what} reads 'steps' without naming a step: use steps.<id>")
        for ref in sorted(refs):
            self._check_ref(mark, ref, earlier, what)

    def _check_ref(self, mark: Mark, ref: tuple[str, ...], earlier: Earlier, what: str) -> None:
        sid = ref[0]
        if sid not in earlier:
            if sid in self.graph.rank:
                why = "which does not run before it in every order"
            else:
                why = f"which is not a step{suggest(sid, sorted(earlier))}"
            self.problems.add(mark, f"{what} reads steps.{sid}, {why}")
            return
        if len(ref) < 2:
            return
        if ref[1] not in STEP_FIELDS:
            fields = ", ".join(STEP_FIELDS)
            self.problems.add(
                mark,
                f"{what} reads steps.{sid}.{ref[1]}: a step has {fields}"
                f"{suggest(ref[1], list(STEP_FIELDS))}",
            )
        elif ref[1] == "captures" and len(ref) > 2 and ref[2] not in self.captures[sid]:
            known = sorted(self.captures[sid])
            self.problems.add(
                mark,
                f"{what} reads steps.{sid}.captures.{ref[2]}, but step '{sid}' captures "
                + (", ".join(f"'{k}'" for k in known) if known else "nothing")
                + suggest(ref[2], known),
            )

    def run(self) -> None:
        data, base = self.data, self.base
        # Top level: title, summary, env, workdir, notify, incident see only vars and env.
        for key in ("title", "summary", "workdir", "notify"):
            self.check((key,), data.get(key), base, set(), expression=False, what=f"'{key}'")
        for top in ("env", "incident"):
            for path, s in strings(data.get(top), (top,)):
                self.check(path, s, base, set(), expression=False, what=f"{top} '{path[-1]}'")
        for i, step in enumerate(data["steps"]):
            for f in step_templates(step):
                self._field(i, step["id"], f)
        report = data.get("report")
        if isinstance(report, dict):
            self._report(report)

    def _field(self, i: int, sid: str, f: TemplateField) -> None:
        """One template field of step `i`, read as its kind says (the checker names no kind)."""
        path = ("steps", i, *f.path)
        owner = f"{f.part} of step '{sid}'" if f.part else f"step '{sid}'"
        what = f"'{f.key}' of {owner}"
        if f.mode == "params":
            self._params(path, f.source, owner)
        elif f.mode == "pattern":
            self._groups(path, f.source, f"capture '{f.key}' of {owner}")
        elif f.mode in ("command", "shell"):
            try:
                if f.mode == "shell":
                    templating.check_shell_command(f.source)
                else:
                    templating.split_command(f.source)
            except templating.TemplateError as exc:
                self.problems.add(self._mark(path), f"{what}: {exc}")
        else:
            self.check(
                path,
                f.source,
                self.step_base | {"steps"} | f.reads,
                dag.Earlier(self.reach, sid, inclusive=f.after),
                expression=f.mode == "expression",
                what=what,
            )

    def _groups(self, path: KeyPath, pattern: str, what: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            try:
                rx = re.compile(pattern)
            except (re.error, FutureWarning):
                return  # the model reports it
        if rx.groups == 0:
            self.problems.add(
                self._mark(path), f"{what}: the pattern has no group '(...)' to read a value"
            )

    def _report(self, report: dict[str, Any]) -> None:
        all_ids = set(self.graph.order)
        ctx = self.base | {"steps"}
        groups: list[tuple[KeyPath, Any]] = [(("report", "lessons"), report.get("lessons"))]
        next_steps = report.get("next_steps")
        if isinstance(next_steps, dict):
            groups += [(("report", "next_steps", k), v) for k, v in next_steps.items()]
        for path, items in groups:
            if not isinstance(items, list):
                continue
            for j, item in enumerate(items):
                name = where((*path, j), self.data)
                if isinstance(item, dict):
                    when = (*path, j, "when")
                    what = f"'when' of {name}"
                    self.check(when, item.get("when"), ctx, all_ids, expression=True, what=what)
                    text, tpath = item.get("text"), (*path, j, "text")
                else:
                    text, tpath = item, (*path, j)
                self.check(tpath, text, ctx, all_ids, expression=False, what=name)

    def _params(self, path: KeyPath, value: Any, owner: str) -> None:
        known = self.var_names | partition_var(self.data)
        for p, s in strings(value, path):
            for name in re.findall(r"(?<![@\w])@(\w+)", s):
                if name not in known:
                    self.problems.add(
                        self._mark(p),
                        f"query parameter '@{name}' in {owner} is not a var"
                        f"{suggest(name, sorted(self.var_names))}",
                    )


# --- partitions ------------------------------------------------------------------------------


def partition_var(data: Any) -> set[str]:
    """The partition var's name, as a set (empty without `partitions:`)."""
    parts = data.get("partitions") if isinstance(data, dict) else None
    var = parts.get("var") if isinstance(parts, dict) else None
    return {var} if isinstance(var, str) and var else set()


def check_partitions(data: dict[str, Any], b: Builder) -> None:
    """Check `partitions:` beyond its model: its var, its range's names, its query's params.

    Args:
        data: the runbook's data.
        b: the builder that read it, with its problems.
    """
    parts = data.get("partitions")
    if not isinstance(parts, dict):
        return
    vars_ = data.get("vars")
    var_names = {str(k) for k in vars_} if isinstance(vars_, dict) else set()
    var = parts.get("var")
    if isinstance(var, str):
        mark = b.value_marks.get(("partitions", "var"), (1, 1))
        if var in var_names:
            first = b.key_marks.get(("vars", var), (0, 0))
            b.problems.add(
                mark,
                f"partitions: var '{var}' is also declared under vars (line {first[0]}); "
                "the partition binds it",
            )
        if var in RESERVED_NAMES:
            b.problems.add(
                mark, f"partitions: var '{var}': the name is reserved ({', '.join(RESERVED_NAMES)})"
            )
    allowed = var_names | {"env", "run"}
    dates = parts.get("dates")
    literal: dict[str, str] = {}
    for key in ("from", "to"):
        source = dates.get(key) if isinstance(dates, dict) else None
        if not isinstance(source, str):
            continue
        mark = b.value_marks.get(("partitions", "dates", key), (1, 1))
        try:
            names = templating.template_names(source)
        except templating.TemplateError as exc:
            b.problems.add(mark, f"'partitions.dates.{key}': {exc}")
            continue
        for name in sorted(names - allowed):
            b.problems.add(
                mark,
                f"undefined name '{name}' in 'partitions.dates.{key}'"
                f"{suggest(name, sorted(allowed))}",
            )
        if not names:
            literal[key] = source.strip()
    if len(literal) == 2 and literal["to"] < literal["from"]:
        b.problems.add(
            b.value_marks.get(("partitions", "dates", "to"), (1, 1)),
            f"partitions: the range ends ({literal['to']}) before it starts ({literal['from']})",
        )
    query = parts.get("query")
    if isinstance(query, str):
        for name in re.findall(r"(?<![@\w])@(\w+)", query):
            if name not in var_names:
                b.problems.add(
                    b.value_marks.get(("partitions", "query"), (1, 1)),
                    f"query parameter '@{name}' in 'partitions.query' is not a var"
                    f"{suggest(name, sorted(var_names))}",
                )


# --- var defaults and choices ----------------------------------------------------------------


def check_var_defaults(data: dict[str, Any], b: Builder) -> None:
    """Find a default or a choice that does not fit the var's type now, not at run time.

    Args:
        data: the runbook's data.
        b: the builder that read it, with its problems.
    """
    vars_ = data.get("vars")
    if not isinstance(vars_, dict):
        return
    for name, raw in vars_.items():
        if name in RESERVED_NAMES:
            b.problems.add(
                b.key_marks.get(("vars", name), (1, 1)),
                f"var '{name}': the name is reserved ({', '.join(RESERVED_NAMES)})",
            )
        try:
            spec = VarSpec.model_validate(raw)
        except pydantic.ValidationError:
            continue  # the model reports it
        values: list[tuple[KeyPath, Any]] = []
        if spec.default is not None:
            values.append((("vars", name, "default"), spec.default))
        for j, choice in enumerate(spec.choices or []):
            values.append((("vars", name, "choices", j), choice))
        for path, value in values:
            try:
                coerce(str(name), spec.model_copy(update={"choices": None}), value)
            except UsageError as exc:  # the var's problem, as --var would say it
                b.problems.add(b.value_marks.get(path, (1, 1)), str(exc))
        if spec.default is not None and spec.choices is not None:
            try:
                coerce(str(name), spec, spec.default)
            except UsageError as exc:
                b.problems.add(b.value_marks.get(("vars", name, "default"), (1, 1)), str(exc))


# --- steps that can never fall short (warnings: the runbook is valid) -------------------------


@dataclass(frozen=True)
class PlanWarning:
    """Something valid that is likely a mistake, at a line of the runbook (1-based)."""

    mark: Mark
    message: str


def fall_short_warnings(runbook: Runbook, marks: Mapping[KeyPath, Mark]) -> list[PlanWarning]:
    """Find command steps that can never fall short, whatever their program prints.

    Two ways: `ok_exit_codes` beyond [0] with no `expect` (and no required capture), and, for a
    step whose only good exit is 0, expectations that all hold when no capture matches (each
    capture at its default), over at least one capture that has a default and is not `required`.

    Args:
        runbook: a loaded runbook.
        marks: where its values are (the loader's value marks).

    Returns:
        One warning per such step, at its `ok_exit_codes` or its `expect`.
    """
    values = _var_defaults(runbook)
    out: list[PlanWarning] = []
    for i, step in enumerate(runbook.steps):
        if not isinstance(step, CommandStep):
            continue
        name = f"step '{step.id}'"
        if not step.expect:
            lenient = [c for c in step.ok_exit_codes if c != 0]
            if lenient and not any(c.required for c in step.capture.values()):
                mark = marks.get(("steps", i, "ok_exit_codes"), marks.get(("steps", i), (1, 1)))
                out.append(
                    PlanWarning(
                        mark,
                        f"{name} cannot fall short: ok_exit_codes {step.ok_exit_codes} "
                        "and no expect",
                    )
                )
            continue
        # When a non-zero exit is also fine, the program's exit code tells "found something"
        # from "nothing to report": after exit 0 its defaults are its own word, and after the
        # other exits an unmatched capture is no evidence (steps/command.py).
        speaks = any(c != 0 for c in step.ok_exit_codes)
        defaulted = {} if speaks else _defaults_that_pass(step, values)
        if defaulted:
            shown = ", ".join(f"{n}={json.dumps(v, default=str)}" for n, v in defaulted.items())
            mark = marks.get(("steps", i, "expect"), marks.get(("steps", i), (1, 1)))
            out.append(
                PlanWarning(
                    mark,
                    f"{name}: its expectations hold when nothing matches (defaults {shown}); "
                    "mark a capture `required: true` or drop its default",
                )
            )
    return out


def _var_defaults(runbook: Runbook) -> dict[str, Any]:
    """The vars that have a default, typed as a run would type them."""
    values: dict[str, Any] = {}
    for name, spec in runbook.vars.items():
        if spec.default is None:
            continue
        try:
            values[name] = coerce(name, spec, spec.default)
        except UsageError:
            continue  # check_var_defaults reports it
    return values


def _defaults_that_pass(step: CommandStep, values: Mapping[str, Any]) -> dict[str, Any]:
    """The defaulted, not required captures the expectations read, when all of them hold with
    every capture at its default and exit code 0; else nothing."""
    at_default = {n: ([] if c.all else c.default) for n, c in step.capture.items()}
    names = {
        **values,
        "env": {},
        "steps": {},
        "run": {"id": ""},
        "counts": {},
        **at_default,
        "exit_code": 0,
    }
    read: set[str] = set()
    for expr in step.expect:
        try:
            read |= templating.expression_names(expr)
            if not templating.evaluate_expectation(expr, names):
                return {}
        except templating.TemplateError:
            return {}  # it cannot be judged without a run: no warning
    return {
        n: c.default
        for n, c in step.capture.items()
        if n in read and not c.all and not c.required and c.default is not None
    }


# --- values a shell parses again (warnings: quoting cannot help there) -----------------------

_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash", "busybox"})
_SCRIPT_FLAG = re.compile(r"^-[a-zA-Z]*c[a-zA-Z]*$")  # -c, -lc, -ec, -xc


def _reparsed(words: list[str]) -> list[tuple[str, str]]:
    """(how, word) for each templated word a shell reads as code: the script of `sh -c`, or
    whatever follows `eval`."""
    found: list[tuple[str, str]] = []
    for i, word in enumerate(words):
        program = word.rsplit("/", 1)[-1]
        if program in _SHELLS and i + 2 < len(words) and _SCRIPT_FLAG.match(words[i + 1]):
            script = words[i + 2]
            if templating.is_template(script):
                found.append((f"{program} {words[i + 1]}", script))
        elif program == "eval":
            found += [("eval", w) for w in words[i + 1 :] if templating.is_template(w)]
    return found


def reparse_warnings(runbook: Runbook, marks: Mapping[KeyPath, Mark]) -> list[PlanWarning]:
    """Find vars that a command hands to a shell as code (`sh -c '...{{ x }}'`, `eval`).

    The tool quotes every value it substitutes, but a script a shell parses again turns the
    quoted value back into code: a value such as `;rm -rf ~` then runs.

    Args:
        runbook: a loaded runbook.
        marks: where its values are (the loader's value marks).

    Returns:
        One warning per command that does so, at its `command`.
    """
    out: list[PlanWarning] = []
    for i, step in enumerate(runbook.steps):
        command = getattr(step, "command", None)
        if command is None:
            continue
        try:
            words = command if isinstance(command, list) else templating.split_command(command)
        except templating.TemplateError:
            continue
        seen: set[str] = set()
        for how, word in _reparsed(words):
            try:
                names = sorted(templating.template_names(word))
            except templating.TemplateError:
                continue
            names = [n for n in names if n not in seen]
            if not names:
                continue
            seen.update(names)
            shown = ", ".join(f"{{{{ {n} }}}}" for n in names)
            mark = marks.get(("steps", i, "command"), marks.get(("steps", i), (1, 1)))
            out.append(
                PlanWarning(
                    mark,
                    f"step '{step.id}': `{how}` reads {shown} as shell code, whatever the "
                    'quoting: pass the value as an argument ("$1") or through env',
                )
            )
    return out
