"""A YAML document read with line/column marks, and pydantic's errors placed on it for a person."""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydantic
import yaml
from pydantic import BaseModel

from agent.errors import Problem, ValidationError, display_path
from agent.plan.model import (
    ID_PATTERN,
    SHORTFALL_TAGS,
    STEP_CLASSES,
    TABLE_PATTERN,
    VAR_PATTERN,
    Runbook,
)

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_NODES",
    "PATTERN_HINTS",
    "Builder",
    "KeyPath",
    "Mark",
    "Problems",
    "child",
    "clean_message",
    "compose",
    "key_problem",
    "located_errors",
    "model_at",
    "read_document",
    "suggest",
    "value_label",
]

MAX_BYTES = 2 * 1024 * 1024
MAX_NODES = 200_000
MAX_DEPTH = 200
KeyPath = tuple[str | int, ...]
"""Where a value is in a document: the keys and list indexes from the top."""
Mark = tuple[int, int]  # 1-based line, column
_ErrList = list[tuple[tuple[int | str, ...], dict[str, Any]]]


class Problems:
    """The problems found in one file, each once, in the order found."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[Problem] = []

    def add(self, mark: Mark, message: str) -> None:
        """Add a problem at `mark` (1-based line, column) unless it is there already."""
        problem = Problem(self.file, mark[0], mark[1], message)
        if problem not in self.items:
            self.items.append(problem)


# libyaml's composer keeps the same marks and is several times faster than the pure-Python one.
_BASE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Tags resolved so far, by (node kind, text, implicit flags): with no path resolvers (the safe
# loader has none) that is all a tag depends on. Runbooks repeat the same keys and values, and
# the resolver's regexes were a fifth of loading a small runbook.
_TAGS: dict[tuple[Any, Any, Any], str] = {}
_TAGS_MAX, _TAG_TEXT_MAX = 8192, 64


class _Loader(_BASE_LOADER):  # type: ignore[misc]  # PyYAML's classes are untyped
    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        key = (kind, value, implicit)
        tag = _TAGS.get(key)
        if tag is None:
            tag = super().resolve(kind, value, implicit)
            if len(_TAGS) < _TAGS_MAX and (value is None or len(value) <= _TAG_TEXT_MAX):
                _TAGS[key] = tag
        return tag


_LOADER: Any = _Loader
_STR_TAG = "tag:yaml.org,2002:str"


def _mark(m: yaml.Mark | None) -> Mark:
    return (m.line + 1, m.column + 1) if m is not None else (1, 1)


class _TooLargeError(Exception):
    def __init__(self, node: yaml.Node, message: str) -> None:
        super().__init__(message)
        self.node = node
        self.message = message


_SCALAR_TAGS = frozenset(
    f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "timestamp")
)
_COLLECTION_TAGS: dict[type[yaml.Node], str] = {yaml.MappingNode: "map", yaml.SequenceNode: "seq"}


class Builder:
    """Turns composed YAML nodes into Python data, recording marks and duplicate keys."""

    def __init__(self, problems: Problems) -> None:
        self.problems = problems
        self.key_marks: dict[KeyPath, Mark] = {}
        self.value_marks: dict[KeyPath, Mark] = {}
        self.count = 0
        self.bad: set[KeyPath] = (
            set()
        )  # values already reported; the model's errors there are noise
        self.constructor = yaml.constructor.SafeConstructor()

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        """Return the data of `node`, which stands at `path` of the document."""
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
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        if node.tag not in _SCALAR_TAGS:  # !!binary, !!set, a local tag: nothing a runbook holds
            self._bad(node, path, f"unsupported YAML tag '{_tag(node.tag)}'")
            return None
        if node.tag == _STR_TAG:  # what SafeConstructor would return, without its bookkeeping
            return node.value
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

    def _mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[Any, Any]:
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
            key = self._key(key_node)
            if key is None:
                continue
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

    def _key(self, node: yaml.ScalarNode) -> Any:
        """A key's value, or None (and a problem) when its tag is not one a runbook uses."""
        if node.tag not in _SCALAR_TAGS:
            self.problems.add(_mark(node.start_mark), f"unsupported YAML tag '{_tag(node.tag)}'")
            return None
        if node.tag == _STR_TAG:
            return node.value
        try:
            return self.constructor.construct_object(node, deep=True)
        except (yaml.constructor.ConstructorError, ValueError, OverflowError):
            return str(node.value)

    def _bad(self, node: yaml.Node, path: KeyPath, message: str) -> None:
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


def _article(kind: str) -> str:
    return "an" if kind[:1] in "aeiou" else "a"


def compose(
    text: str,
    file: str,
    *,
    kind: str = "runbook",
    keys: str = "version, id, title and steps",
) -> tuple[dict[str, Any], Builder]:
    """YAML text -> one mapping with marks.

    Args:
        text: the document.
        file: its name in messages.
        kind: what the document is, for messages ("runbook", "incident").
        keys: the keys it needs, for messages.

    Returns:
        The data, and the builder holding its marks and the problems found so far.

    Raises:
        ValidationError: the text is not YAML, or not one mapping.
    """
    problems = Problems(file)
    composed = _compose(text, problems, kind, keys)
    if composed is None:
        raise ValidationError(problems.items)
    return composed


def _compose(
    text: str, problems: Problems, kind: str, keys: str
) -> tuple[dict[str, Any], Builder] | None:
    article = _article(kind)
    builder = Builder(problems)
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
    file = display_path(path)
    try:
        with path.open("rb") as fh:
            # Never more than the limit and one byte: /dev/zero or a 200 MB file is refused
            # without being read whole.
            raw = fh.read(MAX_BYTES + 1)
            size = os.fstat(fh.fileno()).st_size
    except OSError as exc:
        message = f"cannot read the file: {exc.strerror}"
        raise ValidationError([Problem(file, 1, 1, message)]) from None
    if len(raw) > MAX_BYTES:
        what = f"{size} bytes" if size > MAX_BYTES else f"more than {MAX_BYTES} bytes"
        message = f"the file is {what}; {_article(kind)} {kind} may have at most {MAX_BYTES}"
        raise ValidationError([Problem(file, 1, 1, message)])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _located(raw, exc.start)
        message = f"the file is not UTF-8: byte 0x{raw[exc.start]:02x} cannot be decoded"
        raise ValidationError([Problem(file, line, col, message)]) from None
    if "\x00" in text:
        line, col = _located(raw, raw.index(b"\x00"))
        raise ValidationError([Problem(file, line, col, "the file contains a NUL byte")])
    return text.removeprefix("\ufeff"), raw


# --- pydantic errors -> located, readable problems -------------------------------------------


_NO_NODE: Any = object()


def _unwrap(tp: Any, node: Any = _NO_NODE) -> list[Any]:
    """The concrete types behind Annotated, Optional and unions.

    A union with a callable discriminator gives only the member it picks for `node` (the value
    the type describes), so that a "did you mean" offers the keys of the model that was used.
    """
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        inner, *meta = typing.get_args(tp)
        picker = next((m for m in meta if isinstance(m, pydantic.Discriminator)), None)
        if picker is not None and callable(picker.discriminator) and node is not _NO_NODE:
            tag = picker.discriminator(node)
            for member in typing.get_args(inner):
                tags = typing.get_args(member)[1:] if typing.get_origin(member) else ()
                if any(isinstance(t, pydantic.Tag) and t.tag == tag for t in tags):
                    return _unwrap(member, node)
        return _unwrap(inner, node)
    if origin in (typing.Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(tp):
            out.extend(_unwrap(arg, node))
        return out
    return [tp]


def child(node: Any, elem: str | int) -> Any:
    """The value under key or index `elem` of `node`, or None when there is none."""
    if isinstance(node, dict):
        return node.get(elem)
    if isinstance(node, list) and isinstance(elem, int) and 0 <= elem < len(node):
        return node[elem]
    return None


def model_at(path: KeyPath, data: Any, root: type[BaseModel] = Runbook) -> type[BaseModel] | None:
    """The model class that describes the mapping at `path` of a document of `root`, if any.

    Args:
        path: where the mapping is.
        data: the document.
        root: the model of the whole document.

    Returns:
        The class, or None when no model describes that place.
    """
    current: list[Any] = [root]
    node = data
    for depth, elem in enumerate(path):
        nxt: list[Any] = []
        for tp in current:
            for t in _unwrap(tp, node):
                origin = typing.get_origin(t)
                if isinstance(t, type) and issubclass(t, BaseModel) and isinstance(elem, str):
                    f = t.model_fields.get(elem)
                    if f is not None:
                        nxt.append(f.annotation)
                elif origin is list and isinstance(elem, int):
                    nxt.append(typing.get_args(t)[0])
                elif origin is dict and isinstance(elem, str):
                    nxt.append(typing.get_args(t)[1])
        node = child(node, elem)
        # A step: pick the class its `kind` names.
        if root is Runbook and depth == 1 and path[0] == "steps" and isinstance(node, dict):
            cls = STEP_CLASSES.get(str(node.get("kind")))
            if cls is not None:
                nxt = [cls]
        current = nxt
    for tp in current:
        for t in _unwrap(tp, node):
            if isinstance(t, type) and issubclass(t, BaseModel):
                return t
    return None


_UNION_MEMBERS = ("str", "int", "float", "bool", "list", "dict")


def _data_path(loc: tuple[int | str, ...], data: Any) -> tuple[KeyPath, tuple[int | str, ...]]:
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
        elif isinstance(elem, str) and (
            "[" in elem or elem in _UNION_MEMBERS or elem in SHORTFALL_TAGS
        ):
            rest.pop(0)  # a union member's name, or the tag of a discriminated one
        else:
            break
    return tuple(found), tuple(rest)


def suggest(word: str, options: list[str]) -> str:
    """Return "; did you mean 'x'?" for the option closest to `word`, or "" when none is close."""
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


PATTERN_HINTS = {
    ID_PATTERN: "use lowercase letters, digits, '_' and '-', starting with a letter or digit",
    TABLE_PATTERN: "write dataset.table or project.dataset.table",
    VAR_PATTERN: "a var name is letters, digits and '_', not starting with a digit",
}
"""What to write instead of a value that does not match a pattern, by pattern."""


_SHORTER = (
    ("Input should be a valid dictionary", "Input should be a mapping"),
    ("a valid boolean, unable to interpret input", "true or false"),
    ("a valid integer, unable to parse string as an integer", "an integer"),
    ("List should have at least 1 item after validation, not 0", "the list is empty"),
)


def clean_message(msg: str, err: dict[str, Any], hints: dict[str, str] = PATTERN_HINTS) -> str:
    """Pydantic's message for a person: shorter, lowercase, with a hint for a pattern mismatch.

    Args:
        msg: the message.
        err: the error it belongs to.
        hints: what to write instead, by pattern.

    Returns:
        The message.
    """
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


def located_errors(
    exc: pydantic.ValidationError,
    data: dict[str, Any],
    b: Builder,
    root: type[BaseModel] = Runbook,
) -> Iterator[tuple[KeyPath, tuple[int | str, ...], dict[str, Any]]]:
    """Pydantic's errors of a document of `root`, placed in the data.

    Grouped by place, without duplicates, without those under a value already reported, and
    without a missing key an unknown key's hint names.

    Args:
        exc: what the model raised.
        data: the document.
        b: the builder that read it.
        root: the model of the whole document.

    Yields:
        (the path in the data that exists, the rest of its location, the error).
    """
    grouped: dict[KeyPath, _ErrList] = {}
    for detail in exc.errors(include_url=False):
        found, rest = _data_path(tuple(detail["loc"]), data)
        grouped.setdefault(found, []).append((rest, {**detail}))
    # `comand` next to a missing `command`: the hint on the unknown key says it all.
    hinted: set[KeyPath] = set()
    for found, errs in grouped.items():
        for _, e in errs:
            if e["type"] == "extra_forbidden" and found:
                owner = model_at(found[:-1], data, root)
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


def _dedupe(errs: _ErrList) -> Iterator[tuple[tuple[int | str, ...], dict[str, Any]]]:
    """One message per place: a value that fits no member of a union gets one combined line."""
    plain = [e for e in errs if e[1]["type"] not in ("extra_forbidden", "missing")]
    others = [e for e in errs if e[1]["type"] in ("extra_forbidden", "missing")]
    yield from others
    if len(plain) > 1:
        msgs: list[str] = []
        for _, e in plain:
            m = clean_message(e["msg"], e).removeprefix("input should be ")
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


Where = Callable[[KeyPath, Any], str]
"""Names a place of a document for a person: "step 'x'", "action 2", "'report.lessons'"."""


def key_problem(
    found: KeyPath,
    rest: tuple[int | str, ...],
    err: dict[str, Any],
    *,
    data: dict[str, Any],
    b: Builder,
    root: type[BaseModel],
    where: Where,
) -> bool:
    """Report an unknown key (with a "did you mean") or a missing one.

    Args:
        found: the error's place in the data (see `located_errors`).
        rest: the rest of its location.
        err: the error.
        data: the document.
        b: the builder that read it, with its problems.
        root: the model of the whole document.
        where: how the document names its places.

    Returns:
        Whether the error was about a key (and so is reported).
    """
    if err["type"] == "extra_forbidden":
        key = str(found[-1]) if found else "?"
        owner = model_at(found[:-1], data, root)
        options = list(owner.model_fields) if owner else []
        b.problems.add(
            b.key_marks.get(found, b.value_marks.get(found, (1, 1))),
            f"unknown key '{key}' in {where(found[:-1], data)}{suggest(key, options)}",
        )
        return True
    if err["type"] == "missing":
        key = str(rest[0]) if rest else "?"
        b.problems.add(
            b.value_marks.get(found, (1, 1)), f"missing key '{key}' in {where(found, data)}"
        )
        return True
    return False


def value_label(found: KeyPath, data: Any, where: Where) -> str:
    """Name a wrong value by its key ("'timeout' of step 'x'") or its item ("item 2 of ...").

    Args:
        found: the value's place in the data.
        data: the document.
        where: how the document names its places.

    Returns:
        The label that starts the problem's message.
    """
    last = found[-1] if found else ""
    if isinstance(last, int) and len(found) >= 2:
        return f"item {last + 1} of '{found[-2]}' in {where(found[:-2], data)}"
    if isinstance(last, str) and last:
        return f"'{last}' of {where(found[:-1], data)}"
    return where(found, data)
