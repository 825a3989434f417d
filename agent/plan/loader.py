"""Load a runbook: YAML with line/column marks -> model; every problem as FILE:LINE:COL."""

from __future__ import annotations

import difflib
import re
import hashlib
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
import yaml
from pydantic import BaseModel

from agent.errors import Problem, ValidationError, display_path
from agent.plan import dag, templating
from agent.plan.model import COMMAND_KINDS, KINDS, CommandStep, Runbook, VerifyStep, WaitStep

__all__ = ["LoadedRunbook", "load_runbook", "load_text"]

MAX_BYTES = 2 * 1024 * 1024
MAX_NODES = 200_000
Path_ = tuple[str | int, ...]
Mark = tuple[int, int]  # 1-based line, column


@dataclass
class LoadedRunbook:
    """A runbook that passed every check, with where it came from."""

    runbook: Runbook
    path: Path
    sha256: str
    graph: dag.Graph
    marks: dict[Path_, Mark] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        """The folder that relative paths in the runbook start from."""
        return self.path.parent


class _Problems:
    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[Problem] = []

    def add(self, mark: Mark, message: str) -> None:
        self.items.append(Problem(self.file, mark[0], mark[1], message))


def _mark(m: yaml.Mark | None) -> Mark:
    return (m.line + 1, m.column + 1) if m is not None else (1, 1)


class _Builder:
    """Turns composed YAML nodes into Python data, recording marks and duplicate keys."""

    def __init__(self, problems: _Problems) -> None:
        self.problems = problems
        self.key_marks: dict[Path_, Mark] = {}
        self.value_marks: dict[Path_, Mark] = {}
        self.count = 0
        self.constructor = yaml.constructor.SafeConstructor()

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _TooLarge(node)
        self.value_marks.setdefault(path, _mark(node.start_mark))
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    merged = self.build(value_node, path)
                    if isinstance(merged, dict):
                        for k, v in merged.items():
                            out.setdefault(k, v)
                    continue
                key = self.constructor.construct_object(key_node, deep=True)
                if not isinstance(key, str | int | float | bool) and key is not None:
                    self.problems.add(_mark(key_node.start_mark), "a key must be a plain value")
                    continue
                if key in out:
                    first = self.key_marks.get((*path, key), (0, 0))
                    self.problems.add(
                        _mark(key_node.start_mark),
                        f"duplicate key '{key}' (first at line {first[0]})",
                    )
                    continue
                self.key_marks[(*path, key)] = _mark(key_node.start_mark)
                out[key] = self.build(value_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.constructor.construct_object(node, deep=True)


class _TooLarge(Exception):
    def __init__(self, node: yaml.Node) -> None:
        self.node = node


_YAML_HINTS = {
    "found character '\\t' that cannot start any token": "tabs are not allowed in YAML; indent with spaces",
    "found a tab character": "tabs are not allowed in YAML; indent with spaces",
}


def _yaml_problem(exc: yaml.MarkedYAMLError) -> tuple[Mark, str]:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or "invalid YAML"
    for needle, hint in _YAML_HINTS.items():
        if needle in problem:
            return _mark(mark), f"invalid YAML: {hint}"
    context = f" ({exc.context})" if exc.context else ""
    return _mark(mark), f"invalid YAML: {problem}{context}"


def _compose(text: str, problems: _Problems) -> tuple[Any, _Builder] | None:
    builder = _Builder(problems)
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark, message = _yaml_problem(exc)
        problems.add(mark, message)
        return None
    except yaml.YAMLError as exc:
        problems.add((1, 1), f"invalid YAML: {exc}")
        return None
    if not nodes or nodes[0] is None:
        problems.add((1, 1), "the file is empty: a runbook needs version, id, title and steps")
        return None
    if len(nodes) > 1:
        problems.add(_mark(nodes[1].start_mark), "one runbook per file: remove the second document")
        return None
    try:
        data = builder.build(nodes[0], ())
    except _TooLarge as exc:
        problems.add(
            _mark(exc.node.start_mark),
            f"the document expands to more than {MAX_NODES} values (too many aliases?)",
        )
        return None
    except yaml.constructor.ConstructorError as exc:
        mark, message = _yaml_problem(exc)
        problems.add(mark, message)
        return None
    if not isinstance(data, dict):
        problems.add(_mark(nodes[0].start_mark), "a runbook is a mapping of keys such as version, id, steps")
        return None
    return data, builder


# --- pydantic errors -> located, readable problems -------------------------------------------


def _unwrap(tp: Any) -> list[Any]:
    """The concrete types behind Annotated, Optional and unions."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(tp):
            out.extend(_unwrap(arg))
        return out
    return [tp]


_STEP_CLASSES: dict[str, type[BaseModel]] = {}


def _step_classes() -> dict[str, type[BaseModel]]:
    if not _STEP_CLASSES:
        from agent.plan import model

        for cls in (model.RunStep, model.ValidateStep, model.ExportStep, model.VerifyStep,
                    model.WaitStep, model.ManualStep):
            kind = typing.get_args(cls.model_fields["kind"].annotation)[0]
            _STEP_CLASSES[kind] = cls
    return _STEP_CLASSES


def _model_at(path: Path_, data: Any) -> type[BaseModel] | None:
    """The model class that describes the mapping at `path`, if any."""
    current: list[Any] = [Runbook]
    node = data
    for elem in path:
        nxt: list[Any] = []
        for tp in current:
            for t in _unwrap(tp):
                origin = typing.get_origin(t)
                if isinstance(t, type) and issubclass(t, BaseModel) and isinstance(elem, str):
                    f = t.model_fields.get(elem)
                    if f is not None:
                        nxt.append(f.annotation)
                elif origin is list and isinstance(elem, int):
                    nxt.append(typing.get_args(t)[0])
                elif origin is dict and isinstance(elem, str):
                    nxt.append(typing.get_args(t)[1])
        node = node.get(elem) if isinstance(node, dict) else (
            node[elem] if isinstance(node, list) and isinstance(elem, int) and elem < len(node) else None
        )
        # A step: pick the class its `kind` names.
        if isinstance(node, dict) and len(path) >= 2 and path[0] == "steps" and elem == path[1]:
            cls = _step_classes().get(str(node.get("kind")))
            if cls is not None:
                nxt = [cls]
        current = nxt
    for tp in current:
        for t in _unwrap(tp):
            if isinstance(t, type) and issubclass(t, BaseModel):
                return t
    return None


def _data_path(loc: tuple[int | str, ...], data: Any) -> tuple[Path_, tuple[int | str, ...]]:
    """Follow a pydantic loc through the data; return the part found and the rest."""
    node = data
    found: list[str | int] = []
    rest = list(loc)
    while rest:
        elem = rest[0]
        if isinstance(node, dict) and elem in node:
            node = node[elem]
            found.append(elem)
            rest.pop(0)
        elif isinstance(node, list) and isinstance(elem, int) and 0 <= elem < len(node):
            node = node[elem]
            found.append(elem)
            rest.pop(0)
        elif isinstance(node, dict) and isinstance(elem, str) and node.get("kind") == elem:
            rest.pop(0)  # the discriminator tag pydantic puts in the loc
        elif isinstance(elem, str) and ("[" in elem or elem in ("str", "int", "float", "bool", "list")):
            rest.pop(0)  # a union member's name
        else:
            break
    return tuple(found), tuple(rest)


def _where(path: Path_, data: Any) -> str:
    """Name the place of `path` for a person: step 'x', check 2 of step 'x', warehouse, ..."""
    if len(path) >= 2 and path[0] == "steps" and isinstance(path[1], int):
        step = data["steps"][path[1]]
        name = f"step '{step.get('id')}'" if isinstance(step, dict) and step.get("id") else (
            f"step {path[1] + 1}"
        )
        if len(path) >= 4 and path[2] == "checks" and isinstance(path[3], int):
            return f"check {path[3] + 1} of {name}"
        if len(path) >= 3 and path[2] == "capture" and len(path) >= 4:
            return f"capture '{path[3]}' of {name}"
        return name
    if len(path) >= 2 and path[0] == "vars":
        return f"var '{path[1]}'"
    if path:
        return f"'{path[0]}'"
    return "the runbook"


def _suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _clean(msg: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    msg = re.sub(r"a valid dictionary or instance of \w+", "a mapping", msg)
    return msg[:1].lower() + msg[1:]


def _pydantic_problems(
    exc: pydantic.ValidationError, data: dict[str, Any], b: _Builder, problems: _Problems
) -> None:
    grouped: dict[Path_, list[tuple[tuple[int | str, ...], dict[str, Any]]]] = {}
    for err in exc.errors(include_url=False):
        found, rest = _data_path(tuple(err["loc"]), data)
        grouped.setdefault(found, []).append((rest, dict(err)))
    for found, errs in grouped.items():
        parent_where = _where(found, data)
        for rest, err in _dedupe(errs):
            etype = err["type"]
            if etype == "extra_forbidden":
                key = found[-1] if found else "?"
                model = _model_at(found[:-1], data)
                options = list(model.model_fields) if model else []
                where = _where(found[:-1], data)
                problems.add(
                    b.key_marks.get(found, b.value_marks.get(found, (1, 1))),
                    f"unknown key '{key}' in {where}{_suggest(str(key), options)}",
                )
            elif etype == "missing":
                key = rest[0] if rest else "?"
                problems.add(b.value_marks.get(found, (1, 1)), f"missing key '{key}' in {parent_where}")
            elif etype == "union_tag_invalid":
                kind = err["input"].get("kind") if isinstance(err.get("input"), dict) else None
                problems.add(
                    b.value_marks.get((*found, "kind"), b.value_marks.get(found, (1, 1))),
                    f"unknown kind '{kind}' in {parent_where}{_suggest(str(kind), list(KINDS))}"
                    f" (kinds: {', '.join(KINDS)})",
                )
            elif etype == "union_tag_not_found":
                problems.add(
                    b.value_marks.get(found, (1, 1)),
                    f"missing key 'kind' in {parent_where} (kinds: {', '.join(KINDS)})",
                )
            else:
                key = found[-1] if found else ""
                owner = _where(found[:-1], data) if found else "the runbook"
                label = f"'{key}' of {owner}" if isinstance(key, str) and key else parent_where
                if isinstance(key, int) and len(found) >= 2:
                    label = f"item {key + 1} of '{found[-2]}' in {_where(found[:-2], data)}"
                problems.add(b.value_marks.get(found, (1, 1)), f"{label}: {_clean(err['msg'])}")


def _dedupe(
    errs: list[tuple[tuple[int | str, ...], dict[str, Any]]],
) -> Iterator[tuple[tuple[int | str, ...], dict[str, Any]]]:
    """One message per place: a value that fits no member of a union gets one combined line."""
    plain = [e for e in errs if e[1]["type"] not in ("extra_forbidden", "missing")]
    others = [e for e in errs if e[1]["type"] in ("extra_forbidden", "missing")]
    yield from others
    if len(plain) > 1:
        msgs: list[str] = []
        for _, e in plain:
            m = _clean(e["msg"]).removeprefix("input should be ")
            if m not in msgs:
                msgs.append(m)
        merged = dict(plain[0][1])
        merged["msg"] = "input should be " + " or ".join(msgs) if len(msgs) > 1 else plain[0][1]["msg"]
        yield plain[0][0], merged
    elif plain:
        yield plain[0]


# --- checks across the model: ids, needs, cycles, templates ----------------------------------


def _semantic(rb: Runbook, data: dict[str, Any], b: _Builder, problems: _Problems) -> dag.Graph | None:
    ids = [s.id for s in rb.steps]
    seen: dict[str, int] = {}
    for i, sid in enumerate(ids):
        if sid in seen:
            first = b.value_marks.get(("steps", seen[sid], "id"), (0, 0))
            problems.add(
                b.value_marks.get(("steps", i, "id"), (1, 1)),
                f"duplicate step id '{sid}' (first at line {first[0]})",
            )
        else:
            seen[sid] = i
    if len(seen) != len(ids):
        return None
    ok = True
    for i, step in enumerate(rb.steps):
        for j, need in enumerate(step.needs or []):
            if need not in seen:
                ok = False
                problems.add(
                    b.value_marks.get(("steps", i, "needs", j), (1, 1)),
                    f"step '{step.id}' needs unknown step '{need}'{_suggest(need, ids)}",
                )
            elif need == step.id:
                ok = False
                problems.add(
                    b.value_marks.get(("steps", i, "needs", j), (1, 1)),
                    f"cycle: {step.id} -> {step.id}",
                )
    if not ok:
        return None
    after = {
        s.id: (list(s.needs) if s.needs is not None else ([ids[i - 1]] if i else []))
        for i, s in enumerate(rb.steps)
    }
    cycle = dag.find_cycle(after)
    if cycle is not None:
        i = seen[cycle[0]]
        problems.add(b.value_marks.get(("steps", i, "needs"), b.value_marks.get(("steps", i), (1, 1))),
                     "cycle: " + " -> ".join(cycle))
        return None
    graph = dag.build_graph(ids, [s.needs for s in rb.steps])
    _check_templates(rb, graph, b, problems)
    return graph


def _strings(value: Any, path: Path_) -> Iterator[tuple[Path_, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, (*path, i))


_NOT_TEMPLATED = {"id", "kind", "needs", "when", "expect", "pattern", "match", "until", "where",
                  "expected", "table", "key", "resume", "backend", "type"}


def _check_templates(rb: Runbook, graph: dag.Graph, b: _Builder, problems: _Problems) -> None:
    var_names = set(rb.vars)
    base = var_names | {"env", "run"}
    raw = b.data

    def check(path: Path_, source: str, allowed: set[str], earlier: set[str], *, expression: bool,
              what: str) -> None:
        mark = b.value_marks.get(path, (1, 1))
        try:
            names = (templating.expression_names(source) if expression
                     else templating.template_names(source))
            refs = templating.step_references(source, expression=expression)
        except templating.TemplateError as exc:
            problems.add(mark, f"{what}: {exc}")
            return
        for name in sorted(names - allowed - {"steps"}):
            hint = _suggest(name, sorted(allowed))
            problems.add(mark, f"undefined name '{name}' in {what}{hint}")
        if "steps" in names:
            if "steps" not in allowed:
                problems.add(mark, f"{what} cannot read 'steps': no step has run yet")
                return
            for ref in sorted(refs):
                if ref not in earlier:
                    problems.add(mark, f"{what} reads steps.{ref}, which does not run before it"
                                 f"{_suggest(ref, sorted(earlier))}")

    # Top level: title, summary, env, workdir, notify see only vars and env.
    for key in ("title", "summary", "workdir", "notify"):
        if isinstance(raw.get(key), str):
            check((key,), raw[key], base, set(), expression=False, what=f"'{key}'")
    for path, s in _strings(raw.get("env", {}), ("env",)):
        check(path, s, base, set(), expression=False, what=f"env '{path[-1]}'")
    for path, s in _strings(raw.get("incident", {}), ("incident",)):
        check(path, s, base, set(), expression=False, what=f"incident '{path[-1]}'")

    all_ids = set(graph.order)
    for i, step in enumerate(rb.steps):
        earlier = graph.ancestors[step.id]
        ctx = base | {"steps"}
        where = f"step '{step.id}'"
        raw_step = raw["steps"][i]
        for path, s in _strings(raw_step, ("steps", i)):
            if any(p in _NOT_TEMPLATED for p in path[2:] if isinstance(p, str)):
                continue
            if len(path) > 3 and path[2] == "capture":
                continue
            check(path, s, ctx, earlier, expression=False, what=f"'{path[2]}' of {where}")
        if step.when:
            # `when` is decided before the step runs: it may read earlier steps only.
            check(("steps", i, "when"), step.when, ctx, earlier, expression=True,
                  what=f"'when' of {where}")
        captures = set(step.capture) if isinstance(step, CommandStep) else set()
        expect_ctx = ctx | captures | ({"counts", "exit_code"} if step.kind in COMMAND_KINDS
                                       else {"counts"})
        for j, expr in enumerate(getattr(step, "expect", []) or []):
            path = ("steps", i, "expect", j) if isinstance(raw_step.get("expect"), list) else (
                "steps", i, "expect")
            check(path, expr, expect_ctx, earlier | {step.id}, expression=True,
                  what=f"'expect' of {where}")
        if isinstance(step, VerifyStep):
            for j, c in enumerate(step.checks):
                if isinstance(c.expect, str):
                    check(("steps", i, "checks", j, "expect"), c.expect, ctx, earlier,
                          expression=False, what=f"'expect' of check {j + 1} of {where}")
                for key in ("where", "coverage"):
                    _check_params(b, ("steps", i, "checks", j, key), raw_step["checks"][j].get(key),
                                  var_names, problems, f"check {j + 1} of {where}")
        if isinstance(step, WaitStep) and step.until:
            check(("steps", i, "until"), step.until, ctx, earlier, expression=False,
                  what=f"'until' of {where}")
            _check_params(b, ("steps", i, "until"), step.until, var_names, problems, where)
    for j, lesson in enumerate(rb.report.lessons):
        if lesson.when:
            check(("report", "lessons", j, "when"), lesson.when, base | {"steps"}, all_ids,
                  expression=True, what="'when' of a lesson")
    del all_ids


def _check_params(b: _Builder, path: Path_, value: Any, var_names: set[str], problems: _Problems,
                  where: str) -> None:
    import re

    for p, s in _strings(value, path):
        for name in re.findall(r"(?<![@\w])@(\w+)", s):
            if name not in var_names:
                problems.add(b.value_marks.get(p, (1, 1)),
                             f"query parameter '@{name}' in {where} is not a var"
                             f"{_suggest(name, sorted(var_names))}")


# --- entry points -------------------------------------------------------------------------------


def load_text(text: str, path: Path, *, raw: bytes | None = None) -> LoadedRunbook:
    """Load a runbook from its text.

    Args:
        text: the YAML source.
        path: where it came from (for messages and relative paths).
        raw: the file's bytes, for the hash (defaults to the UTF-8 text).

    Returns:
        The checked runbook.

    Raises:
        ValidationError: with every problem found.
    """
    problems = _Problems(display_path(path))
    composed = _compose(text, problems)
    if composed is None:
        raise ValidationError(problems.items)
    data, builder = composed
    builder.data = data  # type: ignore[attr-defined]
    try:
        runbook = Runbook.model_validate(data)
    except pydantic.ValidationError as exc:
        _pydantic_problems(exc, data, builder, problems)
        raise ValidationError(problems.items) from None
    graph = _semantic(runbook, data, builder, problems)
    if problems.items or graph is None:
        raise ValidationError(problems.items)
    sha = hashlib.sha256(raw if raw is not None else text.encode()).hexdigest()
    marks = {**builder.value_marks}
    return LoadedRunbook(runbook=runbook, path=path, sha256=sha, graph=graph, marks=marks)


def load_runbook(path: Path) -> LoadedRunbook:
    """Read and check a runbook file.

    Args:
        path: the YAML file.

    Returns:
        The checked runbook.

    Raises:
        ValidationError: with every problem found (also for unreadable or non-UTF-8 files).
    """
    name = display_path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValidationError([Problem(name, 1, 1, f"cannot read the file: {exc.strerror}")]) from None
    if len(raw) > MAX_BYTES:
        raise ValidationError(
            [Problem(name, 1, 1, f"the file is {len(raw)} bytes; a runbook may have at most {MAX_BYTES}")]
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        raise ValidationError(
            [Problem(name, line, col, f"the file is not UTF-8: byte 0x{raw[exc.start]:02x} cannot be decoded")]
        ) from None
    if "\x00" in text:
        i = text.index("\x00")
        line = text.count("\n", 0, i) + 1
        col = i - (text.rfind("\n", 0, i) + 1) + 1
        raise ValidationError([Problem(name, line, col, "the file contains a NUL byte")])
    return load_text(text.removeprefix("\ufeff"), path, raw=raw)
