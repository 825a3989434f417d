"""Load a runbook: YAML with line/column marks -> model; every problem as FILE:LINE:COL."""

from __future__ import annotations

import difflib
import hashlib
import itertools
import re
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
import yaml
from pydantic import BaseModel

from agent.errors import Problem, UsageError, ValidationError, display_path
from agent.plan import dag, model, templating
from agent.plan.model import (
    COMMAND_KINDS,
    ID_PATTERN,
    KINDS,
    RESERVED_NAMES,
    TABLE_PATTERN,
    VAR_PATTERN,
    Runbook,
    VarSpec,
)

__all__ = [
    "LoadedRunbook",
    "load_runbook",
    "load_text",
    "read_document",
]

MAX_BYTES = 2 * 1024 * 1024
MAX_NODES = 200_000
MAX_DEPTH = 200
Path_ = tuple[str | int, ...]
Mark = tuple[int, int]  # 1-based line, column
ErrList = list[tuple[tuple[int | str, ...], dict[str, Any]]]

# What a later step may read of an earlier one: `steps.<id>.<field>`.
STEP_FIELDS = ("status", "captures", "counts", "exit_code", "reason")


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
        problem = Problem(self.file, mark[0], mark[1], message)
        if problem not in self.items:
            self.items.append(problem)


# libyaml's composer keeps the same marks and is several times faster than the pure-Python one.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _mark(m: yaml.Mark | None) -> Mark:
    return (m.line + 1, m.column + 1) if m is not None else (1, 1)


class _TooLargeError(Exception):
    def __init__(self, node: yaml.Node, message: str) -> None:
        super().__init__(message)
        self.node = node
        self.message = message


_COLLECTION_TAGS: dict[type[yaml.Node], str] = {yaml.MappingNode: "map", yaml.SequenceNode: "seq"}


class _Builder:
    """Turns composed YAML nodes into Python data, recording marks and duplicate keys."""

    def __init__(self, problems: _Problems) -> None:
        self.problems = problems
        self.key_marks: dict[Path_, Mark] = {}
        self.value_marks: dict[Path_, Mark] = {}
        self.count = 0
        self.bad: set[Path_] = set()  # values already reported; the model's errors there are noise
        self.constructor = yaml.constructor.SafeConstructor()

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _TooLargeError(
                node, f"the document expands to more than {MAX_NODES} values (too many aliases?)"
            )
        if len(path) > MAX_DEPTH:
            raise _TooLargeError(node, f"the document is nested more than {MAX_DEPTH} levels deep")
        self.value_marks.setdefault(path, _mark(node.start_mark))
        standard = _COLLECTION_TAGS.get(type(node))
        if standard is not None and node.tag != f"tag:yaml.org,2002:{standard}":
            self._bad(node, path, f"unsupported YAML tag '{_tag(node.tag)}'")
            return None
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    merged = self.build(value_node, path)
                    if isinstance(merged, dict):
                        for k, v in merged.items():
                            out.setdefault(k, v)
                    continue
                if not isinstance(key_node, yaml.ScalarNode):
                    self.problems.add(_mark(key_node.start_mark), "a key must be a plain value")
                    continue
                key = self.constructor.construct_object(key_node, deep=True)
                if not isinstance(key, str | int):
                    # YAML allows `1.5:`, `true:` or `~:` as keys; a runbook's keys are names.
                    key = str(key_node.value)
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
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            message = exc.problem or "cannot read this value"
            if "could not determine a constructor" in message:
                message = f"unsupported YAML tag '{_tag(node.tag)}'"
            self._bad(node, path, message)
        except (ValueError, OverflowError) as exc:  # a timestamp such as 2026-02-30
            self._bad(node, path, f"invalid value '{node.value}': {exc}")
        return None

    def _bad(self, node: yaml.Node, path: Path_, message: str) -> None:
        self.bad.add(path)
        self.problems.add(_mark(node.start_mark), message)


def _tag(tag: str) -> str:
    return "!!" + tag.removeprefix("tag:yaml.org,2002:") if tag.startswith("tag:yaml.org") else tag


_TAB_HINT = "tabs are not allowed in YAML; indent with spaces"
_YAML_HINTS = {
    "found character '\\t' that cannot start any token": _TAB_HINT,
    "found a tab character": _TAB_HINT,
}


def _yaml_problem(exc: yaml.MarkedYAMLError) -> tuple[Mark, str]:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or "invalid YAML"
    for needle, hint in _YAML_HINTS.items():
        if needle in problem:
            return _mark(mark), f"invalid YAML: {hint}"
    context = f" ({exc.context})" if exc.context else ""
    return _mark(mark), f"invalid YAML: {problem}{context}"


def _compose(
    text: str,
    problems: _Problems,
    *,
    kind: str = "runbook",
    keys: str = "version, id, title and steps",
) -> tuple[dict[str, Any], _Builder] | None:
    """YAML text -> one mapping with marks, or None with the problems added.

    Args:
        text: the document.
        problems: where problems go.
        kind: what the document is, for messages ("runbook", "incident").
        keys: the keys it needs, for messages.

    Returns:
        The data and the builder holding its marks, or None.
    """
    article = "an" if kind[:1] in "aeiou" else "a"
    builder = _Builder(problems)
    try:
        nodes = list(yaml.compose_all(text, Loader=_LOADER))
    except yaml.MarkedYAMLError as exc:
        mark, message = _yaml_problem(exc)
        problems.add(mark, message)
        return None
    except yaml.YAMLError as exc:
        problems.add((1, 1), f"invalid YAML: {exc}")
        return None
    except RecursionError:
        problems.add((1, 1), "invalid YAML: the document is nested too deeply")
        return None
    if not nodes or nodes[0] is None:
        problems.add((1, 1), f"the file is empty: {article} {kind} needs {keys}")
        return None
    if len(nodes) > 1:
        problems.add(_mark(nodes[1].start_mark), f"one {kind} per file: remove the second document")
        return None
    try:
        data = builder.build(nodes[0], ())
    except _TooLargeError as exc:
        problems.add(_mark(exc.node.start_mark), exc.message)
        return None
    if not isinstance(data, dict):
        found = "a list" if isinstance(data, list) else "a single value"
        problems.add(
            _mark(nodes[0].start_mark),
            f"{article} {kind} is a mapping of keys such as {keys}, not {found}",
        )
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


_STEP_CLASSES: dict[str, type[BaseModel]] = {
    typing.get_args(cls.model_fields["kind"].annotation)[0]: cls
    for cls in (
        model.RunStep,
        model.ValidateStep,
        model.ExportStep,
        model.VerifyStep,
        model.WaitStep,
        model.ManualStep,
    )
}


def _child(node: Any, elem: str | int) -> Any:
    if isinstance(node, dict):
        return node.get(elem)
    if isinstance(node, list) and isinstance(elem, int) and 0 <= elem < len(node):
        return node[elem]
    return None


def _model_at(path: Path_, data: Any, root: type[BaseModel] = Runbook) -> type[BaseModel] | None:
    """The model class that describes the mapping at `path` of a document of `root`, if any."""
    current: list[Any] = [root]
    node = data
    for depth, elem in enumerate(path):
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
        node = _child(node, elem)
        # A step: pick the class its `kind` names.
        if root is Runbook and depth == 1 and path[0] == "steps" and isinstance(node, dict):
            cls = _STEP_CLASSES.get(str(node.get("kind")))
            if cls is not None:
                nxt = [cls]
        current = nxt
    for tp in current:
        for t in _unwrap(tp):
            if isinstance(t, type) and issubclass(t, BaseModel):
                return t
    return None


_UNION_MEMBERS = ("str", "int", "float", "bool", "list", "dict")


def _data_path(loc: tuple[int | str, ...], data: Any) -> tuple[Path_, tuple[int | str, ...]]:
    """Follow a pydantic loc through the data; return the part found and the rest."""
    node = data
    found: list[str | int] = []
    rest = list(loc)
    while rest:
        elem = rest[0]
        if (isinstance(node, dict) and elem in node) or (
            isinstance(node, list) and isinstance(elem, int) and 0 <= elem < len(node)
        ):
            node = node[elem]  # type: ignore[index]
            found.append(elem)
            rest.pop(0)
        elif isinstance(node, dict) and isinstance(elem, str) and node.get("kind") == elem:
            rest.pop(0)  # the discriminator tag pydantic puts in the loc
        elif elem == "[key]":
            break  # a dict key that does not fit; the caller points at the key
        elif isinstance(elem, str) and ("[" in elem or elem in _UNION_MEMBERS):
            rest.pop(0)  # a union member's name
        else:
            break
    return tuple(found), tuple(rest)


def _step_name(data: Any, index: int) -> str:
    step = _child(data.get("steps"), index)
    sid = step.get("id") if isinstance(step, dict) else None
    return f"step '{sid}'" if isinstance(sid, str) and sid else f"step {index + 1}"


def _where(path: Path_, data: Any) -> str:
    """Name the place of `path` for a person: step 'x', check 2 of step 'x', var 'y', ..."""
    if len(path) >= 2 and path[0] == "steps" and isinstance(path[1], int):
        name = _step_name(data, path[1])
        if len(path) >= 4 and path[2] == "checks" and isinstance(path[3], int):
            return f"check {path[3] + 1} of {name}"
        if len(path) >= 4 and path[2] == "capture":
            return f"capture '{path[3]}' of {name}"
        if len(path) >= 4 and path[2] == "details" and isinstance(path[3], int):
            return f"detail {path[3] + 1} of {name}"
        if len(path) >= 3 and path[2] == "retries":
            return f"'retries' of {name}"
        return name
    if len(path) >= 2 and path[0] == "vars":
        return f"var '{path[1]}'"
    if len(path) >= 3 and path[0] == "report" and isinstance(path[-1], int):
        return f"item {path[-1] + 1} of 'report.{'.'.join(str(p) for p in path[1:-1])}'"
    if path:
        return f"'{'.'.join(str(p) for p in path)}'"
    return "the runbook"


def _suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


_PATTERNS = {
    ID_PATTERN: "use lowercase letters, digits, '_' and '-', starting with a letter or digit",
    TABLE_PATTERN: "write dataset.table or project.dataset.table",
    VAR_PATTERN: "a var name is letters, digits and '_', not starting with a digit",
}


_SHORTER = (
    ("Input should be a valid dictionary", "Input should be a mapping"),
    ("a valid boolean, unable to interpret input", "true or false"),
    ("a valid integer, unable to parse string as an integer", "an integer"),
    ("List should have at least 1 item after validation, not 0", "the list is empty"),
)


def _clean(msg: str, err: dict[str, Any], hints: dict[str, str] = _PATTERNS) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    msg = re.sub(
        r"a valid dictionary or (instance of \w+|object to extract fields from)", "a mapping", msg
    )
    for long, short in _SHORTER:
        msg = msg.replace(long, short)
    if err["type"] == "string_pattern_mismatch":
        hint = hints.get(str((err.get("ctx") or {}).get("pattern")), "")
        msg = f"invalid value '{err.get('input')}'" + (f": {hint}" if hint else "")
    return msg[:1].lower() + msg[1:]


def _located_errors(
    exc: pydantic.ValidationError,
    data: dict[str, Any],
    b: _Builder,
    root: type[BaseModel] = Runbook,
) -> Iterator[tuple[Path_, tuple[int | str, ...], dict[str, Any]]]:
    """Pydantic's errors of a document of `root`, each as (the path in the data that exists,
    the rest of its location, the error): grouped by place, without duplicates, without those
    under a value already reported, and without a missing key an unknown key's hint names."""
    grouped: dict[Path_, ErrList] = {}
    for detail in exc.errors(include_url=False):
        found, rest = _data_path(tuple(detail["loc"]), data)
        grouped.setdefault(found, []).append((rest, {**detail}))
    # `comand` next to a missing `command`: the hint on the unknown key says it all.
    hinted: set[Path_] = set()
    for found, errs in grouped.items():
        for _, e in errs:
            if e["type"] == "extra_forbidden" and found:
                owner = _model_at(found[:-1], data, root)
                options = list(owner.model_fields) if owner else []
                close = difflib.get_close_matches(str(found[-1]), options, n=1, cutoff=0.6)
                hinted.update((*found[:-1], c) for c in close)
    for found, errs in grouped.items():
        if any(found[: len(p)] == p for p in b.bad):
            continue
        for rest, err in _dedupe(errs):
            if err["type"] == "missing" and rest and (*found, rest[0]) in hinted:
                continue
            yield found, rest, err


def _pydantic_problems(
    exc: pydantic.ValidationError, data: dict[str, Any], b: _Builder, problems: _Problems
) -> None:
    for found, rest, err in _located_errors(exc, data, b):
        _one_problem(found, rest, err, data=data, b=b, problems=problems)


def _one_problem(
    found: Path_,
    rest: tuple[int | str, ...],
    err: dict[str, Any],
    *,
    data: dict[str, Any],
    b: _Builder,
    problems: _Problems,
) -> None:
    parent_where = _where(found, data)
    etype = err["type"]
    if etype == "extra_forbidden":
        key = found[-1] if found else "?"
        owner = _model_at(found[:-1], data)
        options = list(owner.model_fields) if owner else []
        where = _where(found[:-1], data)
        problems.add(
            b.key_marks.get(found, b.value_marks.get(found, (1, 1))),
            f"unknown key '{key}' in {where}{_suggest(str(key), options)}",
        )
    elif etype == "missing":
        key = str(rest[0]) if rest else "?"
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
    elif len(found) == 2 and found[0] == "steps" and isinstance(found[1], int):
        # A whole step is wrong: not a mapping, or a check across its keys (wait's condition).
        step = _child(data.get("steps"), found[1])
        mark = b.value_marks.get(found, (1, 1))
        if isinstance(step, dict) and "until" in step and "command" in step:
            mark = max(b.key_marks[(*found, "until")], b.key_marks[(*found, "command")])
        problems.add(mark, f"{parent_where}: {_clean(err['msg'], err)}")
    elif (len(found) == 2 and found[0] == "vars") or (len(found) == 4 and found[2] == "capture"):
        # A named entry (a var, a capture): its own name says where.
        mark = b.value_marks.get(found, (1, 1))
        if rest == ("[key]",):
            mark = b.key_marks.get(found, mark)
        problems.add(mark, f"{parent_where}: {_clean(err['msg'], err)}")
    else:
        key = found[-1] if found else ""
        owner_where = _where(found[:-1], data) if found else "the runbook"
        label = f"'{key}' of {owner_where}" if isinstance(key, str) and key else parent_where
        if isinstance(key, int) and len(found) >= 2:
            if found[-2] == "steps" and len(found) == 2:
                label = parent_where
            else:
                label = f"item {key + 1} of '{found[-2]}' in {_where(found[:-2], data)}"
        problems.add(b.value_marks.get(found, (1, 1)), f"{label}: {_clean(err['msg'], err)}")


def _dedupe(errs: ErrList) -> Iterator[tuple[tuple[int | str, ...], dict[str, Any]]]:
    """One message per place: a value that fits no member of a union gets one combined line."""
    plain = [e for e in errs if e[1]["type"] not in ("extra_forbidden", "missing")]
    others = [e for e in errs if e[1]["type"] in ("extra_forbidden", "missing")]
    yield from others
    if len(plain) > 1:
        msgs: list[str] = []
        for _, e in plain:
            m = _clean(e["msg"], e).removeprefix("input should be ")
            if m not in msgs:
                msgs.append(m)
        merged = dict(plain[0][1])
        merged["type"] = "union"
        merged["msg"] = (
            "input should be " + " or ".join(msgs) if len(msgs) > 1 else plain[0][1]["msg"]
        )
        yield plain[0][0], merged
    elif plain:
        yield plain[0]


# --- checks on the raw data: ids, needs, cycles (also when the model does not load) ----------


def _structure(data: dict[str, Any], b: _Builder, problems: _Problems) -> dag.Graph | None:
    """Check step ids, `needs` and cycles; return the graph when they are sound."""
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
            problems.add(
                b.value_marks.get(("steps", i, "id"), (1, 1)),
                f"duplicate step id '{sid}' (first at line {first[0]})",
            )
        else:
            seen[sid] = i
    ids = list(seen)
    needs: list[list[str] | None] = []
    for i, step in enumerate(steps):
        need = step.get("needs") if isinstance(step, dict) else None
        if need is None:
            needs.append(None)
            continue
        if not isinstance(need, list) or not all(isinstance(n, str) for n in need):
            sound = False  # the model reports the type
            needs.append(None)
            continue
        needs.append(need)
        name = _step_name(data, i)
        for j, n in enumerate(need):
            mark = b.value_marks.get(("steps", i, "needs", j), (1, 1))
            if n not in seen:
                sound = False
                problems.add(mark, f"{name} needs unknown step '{n}'{_suggest(n, ids)}")
            elif n == raw_ids[i]:
                sound = False
                problems.add(mark, f"cycle: {n} -> {n} ({name} needs itself)")
    if not sound:
        return None
    step_ids = [str(s) for s in raw_ids]
    after = dag.implied_after(step_ids, needs)
    cycle = dag.find_cycle(after)
    if cycle is not None:
        i = seen[cycle[0]]
        implied = [
            f"'{a}' has no 'needs', so it runs after '{c}', the step before it"
            for a, c in itertools.pairwise(cycle)
            if needs[seen[a]] is None
        ]
        note = f" ({'; '.join(implied)})" if implied else ""
        problems.add(
            b.value_marks.get(("steps", i, "needs"), b.value_marks.get(("steps", i), (1, 1))),
            "cycle: " + " -> ".join(cycle) + note,
        )
        return None
    return dag.build_graph(step_ids, needs)


# --- templates, expressions, query parameters, var defaults (on the raw data) ---------------


def _strings(value: Any, path: Path_) -> Iterator[tuple[Path_, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, (*path, i))


# Step keys whose strings are not Jinja2 templates (or are checked on their own below).
_NOT_TEMPLATED = {
    "id",
    "kind",
    "needs",
    "when",
    "expect",
    "capture",
    "details",
    "until",
    "checks",
    "resume",
}


class _TemplateChecker:
    """Find undefined names, unsafe code and reads of steps that do not run before."""

    def __init__(
        self, data: dict[str, Any], graph: dag.Graph, b: _Builder, problems: _Problems
    ) -> None:
        self.data = data
        self.graph = graph
        self.b = b
        self.problems = problems
        vars_ = data.get("vars")
        self.var_names = {str(k) for k in vars_} if isinstance(vars_, dict) else set()
        self.base = self.var_names | {"env", "run"}
        self.captures: dict[str, set[str]] = {}
        for step in data["steps"]:
            cap = step.get("capture")
            self.captures[step["id"]] = {str(k) for k in cap} if isinstance(cap, dict) else set()

    def check(
        self,
        path: Path_,
        source: Any,
        allowed: set[str],
        earlier: set[str],
        *,
        expression: bool,
        what: str,
    ) -> None:
        if not isinstance(source, str):
            return  # the model reports the type
        mark = self.b.value_marks.get(path, (1, 1))
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
            hint = _suggest(name, sorted(allowed))
            self.problems.add(mark, f"undefined name '{name}' in {what}{hint}")
        if "steps" not in names:
            return
        if not refs:
            self.problems.add(mark, f"{what} reads 'steps' without naming a step: use steps.<id>")
        for ref in sorted(refs):
            self._check_ref(mark, ref, earlier, what)

    def _check_ref(self, mark: Mark, ref: tuple[str, ...], earlier: set[str], what: str) -> None:
        sid = ref[0]
        if sid not in earlier:
            if sid in self.graph.order:
                why = "which does not run before it in every order"
            else:
                why = f"which is not a step{_suggest(sid, sorted(earlier))}"
            self.problems.add(mark, f"{what} reads steps.{sid}, {why}")
            return
        if len(ref) < 2:
            return
        if ref[1] not in STEP_FIELDS:
            fields = ", ".join(STEP_FIELDS)
            self.problems.add(
                mark,
                f"{what} reads steps.{sid}.{ref[1]}: a step has {fields}"
                f"{_suggest(ref[1], list(STEP_FIELDS))}",
            )
        elif ref[1] == "captures" and len(ref) > 2 and ref[2] not in self.captures[sid]:
            known = sorted(self.captures[sid])
            self.problems.add(
                mark,
                f"{what} reads steps.{sid}.captures.{ref[2]}, but step '{sid}' captures "
                + (", ".join(f"'{k}'" for k in known) if known else "nothing")
                + _suggest(ref[2], known),
            )

    def run(self) -> None:
        data, base = self.data, self.base
        # Top level: title, summary, env, workdir, notify, incident see only vars and env.
        for key in ("title", "summary", "workdir", "notify"):
            self.check((key,), data.get(key), base, set(), expression=False, what=f"'{key}'")
        for top in ("env", "incident"):
            for path, s in _strings(data.get(top), (top,)):
                self.check(path, s, base, set(), expression=False, what=f"{top} '{path[-1]}'")
        for i, step in enumerate(data["steps"]):
            self._step(i, step)
        report = data.get("report")
        if isinstance(report, dict):
            self._report(report)

    def _step(self, i: int, step: dict[str, Any]) -> None:
        sid: str = step["id"]
        earlier = self.graph.ancestors[sid]
        ctx = self.base | {"steps"}
        where = f"step '{sid}'"
        for path, s in _strings(step, ("steps", i)):
            if path[2] in _NOT_TEMPLATED:
                continue
            self.check(path, s, ctx, earlier, expression=False, what=f"'{path[2]}' of {where}")
        # `when` is decided before the step runs: it may read earlier steps only.
        self.check(
            ("steps", i, "when"),
            step.get("when"),
            ctx,
            earlier,
            expression=True,
            what=f"'when' of {where}",
        )
        kind = step.get("kind")
        if kind in (*COMMAND_KINDS, "wait"):
            self._command(i, step, where)
        expect_ctx = ctx | self.captures[sid] | {"counts"}
        if kind in COMMAND_KINDS:
            expect_ctx |= {"exit_code"}
        expect = step.get("expect")
        items = enumerate(expect) if isinstance(expect, list) else [(None, expect)]
        for j, expr in items:
            path = ("steps", i, "expect") if j is None else ("steps", i, "expect", j)
            self.check(
                path,
                expr,
                expect_ctx,
                earlier | {sid},
                expression=True,
                what=f"'expect' of {where}",
            )
        captures = step.get("capture") if kind in COMMAND_KINDS else None
        for name, cap in captures.items() if isinstance(captures, dict) else ():
            if isinstance(cap, dict) and isinstance(cap.get("pattern"), str):
                self._groups(("steps", i, "capture", name, "pattern"), cap["pattern"], name, where)
            elif isinstance(cap, str):
                self._groups(("steps", i, "capture", name), cap, name, where)
        checks = step.get("checks")
        if kind == "verify" and isinstance(checks, list):
            for j, c in enumerate(checks):
                if not isinstance(c, dict):
                    continue
                what = f"check {j + 1} of {where}"
                for key in ("expect", "expect_total"):
                    for p, s in _strings(c.get(key), ("steps", i, "checks", j, key)):
                        self.check(p, s, ctx, earlier, expression=False, what=f"'{key}' of {what}")
                for key in ("where", "coverage"):
                    self._params(("steps", i, "checks", j, key), c.get(key), what)
                # SQL fields may write numbers with {{ }}; their names are checked like others.
                sql: list[tuple[Path_, Any, str]] = [
                    (("steps", i, "checks", j, "where"), c.get("where"), "where")
                ]
                cov = c.get("coverage")
                if isinstance(cov, dict):
                    path = ("steps", i, "checks", j, "coverage", "expected")
                    sql.append((path, cov.get("expected"), "coverage.expected"))
                for sql_path, sql_source, key in sql:
                    self.check(
                        sql_path,
                        sql_source,
                        ctx,
                        earlier,
                        expression=False,
                        what=f"'{key}' of {what}",
                    )
        if kind == "wait":
            self.check(
                ("steps", i, "until"),
                step.get("until"),
                ctx,
                earlier,
                expression=False,
                what=f"'until' of {where}",
            )
            self._params(("steps", i, "until"), step.get("until"), where)

    def _command(self, i: int, step: dict[str, Any], where: str) -> None:
        """A string command must split (or, with `shell: true`, scan) before any value exists."""
        command = step.get("command")
        if not isinstance(command, str) or not command.strip():
            return  # a list, or the model reports it
        try:
            if step.get("shell") is True:
                templating.check_shell_command(command)
            else:
                templating.split_command(command)
        except templating.TemplateError as exc:
            mark = self.b.value_marks.get(("steps", i, "command"), (1, 1))
            self.problems.add(mark, f"'command' of {where}: {exc}")

    def _groups(self, path: Path_, pattern: str, name: str, where: str) -> None:
        try:
            rx = re.compile(pattern)
        except re.error:
            return  # the model reports it
        if rx.groups == 0:
            self.problems.add(
                self.b.value_marks.get(path, (1, 1)),
                f"capture '{name}' of {where}: the pattern has no group '(...)' to read a value",
            )

    def _report(self, report: dict[str, Any]) -> None:
        all_ids = set(self.graph.order)
        ctx = self.base | {"steps"}
        lessons = report.get("lessons")
        groups: list[tuple[Path_, Any]] = [(("report", "lessons"), lessons)]
        next_steps = report.get("next_steps")
        if isinstance(next_steps, dict):
            groups += [(("report", "next_steps", k), v) for k, v in next_steps.items()]
        for path, items in groups:
            if not isinstance(items, list):
                continue
            for j, item in enumerate(items):
                if isinstance(item, dict):
                    self.check(
                        (*path, j, "when"),
                        item.get("when"),
                        ctx,
                        all_ids,
                        expression=True,
                        what=f"'when' of {_where((*path, j), self.data)}",
                    )
                    text, tpath = item.get("text"), (*path, j, "text")
                else:
                    text, tpath = item, (*path, j)
                self.check(
                    tpath,
                    text,
                    ctx,
                    all_ids,
                    expression=False,
                    what=f"{_where((*path, j), self.data)}",
                )

    def _params(self, path: Path_, value: Any, where: str) -> None:
        for p, s in _strings(value, path):
            for name in re.findall(r"(?<![@\w])@(\w+)", s):
                if name not in self.var_names:
                    self.problems.add(
                        self.b.value_marks.get(p, (1, 1)),
                        f"query parameter '@{name}' in {where} is not a var"
                        f"{_suggest(name, sorted(self.var_names))}",
                    )


def _var_defaults(data: dict[str, Any], b: _Builder, problems: _Problems) -> None:
    """A default or a choice that does not fit the var's type is found now, not at run time."""
    from agent.plan.vars import coerce

    vars_ = data.get("vars")
    if not isinstance(vars_, dict):
        return
    for name, raw in vars_.items():
        if name in RESERVED_NAMES:
            problems.add(
                b.key_marks.get(("vars", name), (1, 1)),
                f"var '{name}': the name is reserved ({', '.join(RESERVED_NAMES)})",
            )
        try:
            spec = VarSpec.model_validate(raw)
        except pydantic.ValidationError:
            continue  # the model reports it
        values: list[tuple[Path_, Any]] = []
        if spec.default is not None:
            values.append((("vars", name, "default"), spec.default))
        for j, choice in enumerate(spec.choices or []):
            values.append((("vars", name, "choices", j), choice))
        for path, value in values:
            try:
                coerce(str(name), spec.model_copy(update={"choices": None}), value)
            except UsageError as exc:  # the var's problem, as --var would say it
                problems.add(b.value_marks.get(path, (1, 1)), str(exc))
        if spec.default is not None and spec.choices is not None:
            try:
                coerce(str(name), spec, spec.default)
            except UsageError as exc:
                problems.add(b.value_marks.get(("vars", name, "default"), (1, 1)), str(exc))


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
    runbook: Runbook | None = None
    try:
        runbook = Runbook.model_validate(data)
    except pydantic.ValidationError as exc:
        _pydantic_problems(exc, data, builder, problems)
    # The checks below read the raw data, so they report their problems alongside the model's.
    graph = _structure(data, builder, problems)
    if graph is not None:
        _TemplateChecker(data, graph, builder, problems).run()
    _var_defaults(data, builder, problems)
    if problems.items or runbook is None or graph is None:
        raise ValidationError(problems.items)
    sha = hashlib.sha256(raw if raw is not None else text.encode()).hexdigest()
    marks = {**builder.value_marks}
    return LoadedRunbook(runbook=runbook, path=path, sha256=sha, graph=graph, marks=marks)


def _located(raw: bytes, index: int) -> Mark:
    before = raw[:index]
    return before.count(b"\n") + 1, index - (before.rfind(b"\n") + 1) + 1


def read_document(path: Path, *, kind: str) -> tuple[str, bytes]:
    """Read a YAML file as UTF-8 text, with located problems for what makes that impossible.

    Args:
        path: the file.
        kind: what it is, for messages ("runbook", "incident").

    Returns:
        The text (without a byte-order mark) and the raw bytes (for hashes).

    Raises:
        ValidationError: unreadable, too large, not UTF-8, or holding a NUL byte.
    """
    name = display_path(path)
    article = "an" if kind[:1] in "aeiou" else "a"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        message = f"cannot read the file: {exc.strerror}"
        raise ValidationError([Problem(name, 1, 1, message)]) from None
    if len(raw) > MAX_BYTES:
        message = f"the file is {len(raw)} bytes; {article} {kind} may have at most {MAX_BYTES}"
        raise ValidationError([Problem(name, 1, 1, message)])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _located(raw, exc.start)
        message = f"the file is not UTF-8: byte 0x{raw[exc.start]:02x} cannot be decoded"
        raise ValidationError([Problem(name, line, col, message)]) from None
    if "\x00" in text:
        line, col = _located(raw, raw.index(b"\x00"))
        raise ValidationError([Problem(name, line, col, "the file contains a NUL byte")])
    return text.removeprefix("\ufeff"), raw


def load_runbook(path: Path) -> LoadedRunbook:
    """Read and check a runbook file.

    Args:
        path: the YAML file.

    Returns:
        The checked runbook.

    Raises:
        ValidationError: with every problem found (also for unreadable or non-UTF-8 files).
    """
    text, raw = read_document(path, kind="runbook")
    return load_text(text, path, raw=raw)
