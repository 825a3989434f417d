"""Runbook YAML text: one writer, in key order with comments, for `import` and `followup`."""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass, field
from typing import Any

import yaml

from agent.proc.terminal import clean

__all__ = [
    "Data",
    "Document",
    "Field",
    "Flow",
    "Map",
    "Node",
    "Note",
    "Seq",
    "Step",
    "Verbatim",
    "dump",
    "flow",
    "scalar",
]

WIDTH = 96  # the width both commands wrap long text at


@dataclass(frozen=True)
class Note:
    """A comment line (`# text`), written as given at the indentation of where it stands."""

    text: str


@dataclass(frozen=True)
class Verbatim:
    """A scalar written exactly as given (a value the caller knows to be plain)."""

    text: str


@dataclass(frozen=True)
class Flow:
    """A list or mapping on one line: `[a, b]`, `{min: 3}`, `[]`, `{}`."""

    value: list[Any] | dict[str, Any]


@dataclass(frozen=True)
class Map:
    """A nested block mapping: fields and comments, one a line."""

    nodes: list[Node]


@dataclass(frozen=True)
class Seq:
    """A block sequence: each item a scalar or a mapping (a list of nodes)."""

    items: list[str | list[Node]]


@dataclass(frozen=True)
class Field:
    """`key: value`, with an optional comment at the end of its line.

    A string value is a plain or double-quoted scalar; `prose` lets long or multi-line text
    be a folded (`>-`) or literal (`|-`) block when that reads back the same.
    """

    key: str
    value: str | int | bool | Verbatim | Flow | Map | Seq
    comment: str = ""
    prose: bool = False


@dataclass(frozen=True)
class Data:
    """Plain data (mappings, lists, scalars) written by PyYAML in block style."""

    value: Any


Node = Note | Field | Data


@dataclass
class Step:
    """One item of `steps:`: the comment lines above it and its mapping."""

    notes: list[str]
    body: list[Node] | Data


@dataclass
class Document:
    """A runbook: header comment lines, the keys before `steps:`, the steps, the keys after."""

    header: list[str]  # whole lines, each starting with `#`
    head: list[Node]
    steps: list[Step]
    tail: list[Node] = field(default_factory=list)


def _comment(text: str) -> str:
    """A comment's text on one line, with nothing YAML refuses: it may quote a step's output."""
    return clean(text).replace("\n", " ")


def dump(doc: Document) -> str:
    """The runbook's YAML text: a blank line before `steps:`, between steps and after them.

    Args:
        doc: the runbook to write.

    Returns:
        The text, ending with a newline.
    """
    lines = ["#" + _comment(h.removeprefix("#")) for h in doc.header]
    lines += _nodes(doc.head, 0)
    lines += ["", "steps:"]
    for i, step in enumerate(doc.steps):
        if i:
            lines.append("")
        lines += [f"  # {_comment(n)}" for n in step.notes]
        lines += _item(step.body, 2)
    if doc.tail:
        lines += ["", *_nodes(doc.tail, 0)]
    return "\n".join(lines) + "\n"


# --- nodes -> lines ------------------------------------------------------------------------------


def _nodes(nodes: list[Node], indent: int) -> list[str]:
    pad = " " * indent
    out: list[str] = []
    for node in nodes:
        if isinstance(node, Note):
            out.append(f"{pad}# {_comment(node.text)}")
        elif isinstance(node, Data):
            out += _data(node.value, indent)
        else:
            out += _field(node, indent)
    return out


def _field(f: Field, indent: int) -> list[str]:
    pad = " " * indent
    tail = f"  # {_comment(f.comment)}" if f.comment else ""
    value = f.value
    if isinstance(value, Map):
        return [f"{pad}{f.key}:{tail}", *_nodes(value.nodes, indent + 2)]
    if isinstance(value, Seq):
        lines = [f"{pad}{f.key}:{tail}"]
        for item in value.items:
            if isinstance(item, str):
                lines.append(f"{pad}  - {scalar(item)}")
            else:
                lines += _item(item, indent + 2)
        return lines
    if isinstance(value, Flow):
        return [f"{pad}{f.key}: {flow(value.value)}{tail}"]
    if isinstance(value, Verbatim):
        return [f"{pad}{f.key}: {value.text}{tail}"]
    if f.prose and isinstance(value, str):
        lines = _text(f.key, value, indent)
        lines[-1] += tail
        return lines
    return [f"{pad}{f.key}: {scalar(value)}{tail}"]


def _item(body: list[Node] | Data, indent: int) -> list[str]:
    """One `- ` item of a sequence at `indent`: its first line carries the dash."""
    if isinstance(body, Data):
        return _data([body.value], indent)
    lines = _nodes(body, indent + 2)
    assert isinstance(body[0], Field), "an item starts with a key"
    lines[0] = " " * indent + "- " + lines[0][indent + 2 :]
    return lines


# --- scalars -------------------------------------------------------------------------------------


def _loads_as(text: str, value: object) -> bool:
    try:
        return bool(yaml.safe_load(text) == {"k": value})
    except yaml.YAMLError:
        return False


def scalar(value: str | int | bool) -> str:
    """A YAML scalar: plain when it reads back the same, double-quoted otherwise.

    Args:
        value: the value.

    Returns:
        Its text, for a block context.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if (
        value
        and "\n" not in value
        and not value.startswith(" ")
        and _loads_as(f"k: {value}", value)
    ):
        return value
    return _quoted(value)


def _quoted(value: str) -> str:
    quoted = json.dumps(value, ensure_ascii=False)
    # JSON leaves these as they are; YAML readers take them for line breaks or a BOM.
    for ch in ("\u2028", "\u2029", "\x85", "\ufeff"):
        quoted = quoted.replace(ch, f"\\u{ord(ch):04x}")
    return quoted


def flow(value: list[Any] | dict[str, Any]) -> str:
    """A list or mapping of scalars as one line of YAML: `[a, b]`, `{min: 3}`.

    Args:
        value: the list or mapping.

    Returns:
        Its flow text.
    """
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow_scalar(v)}" for k, v in value.items()) + "}"
    return "[" + ", ".join(_flow_scalar(v) for v in value) + "]"


def _flow_scalar(value: str | int | bool) -> str:
    text = scalar(value)
    # Plain in a block is not always plain in a flow (`,`, `[`, `{`): check it there too.
    if isinstance(value, str) and not text.startswith('"'):
        try:
            if yaml.safe_load(f"k: [{text}]") == {"k": [value]}:
                return text
        except yaml.YAMLError:
            pass
        return _quoted(value)
    return text


def _text(key: str, value: str, indent: int) -> list[str]:
    """`key: value`: a literal block when the value has lines, folded when long."""
    pad = " " * indent
    width = WIDTH - indent - 2
    if "\n" not in value and len(value) > width and "  " not in value:
        # Never break inside a `{{ ... }}`: \x01 holds its spaces while wrapping.
        glued = re.sub(r"\{\{.*?\}\}", lambda m: m.group(0).replace(" ", "\x01"), value)
        lines = [
            line.replace("\x01", " ")
            for line in textwrap.wrap(glued, width, break_long_words=False, break_on_hyphens=False)
        ]
        candidate = f"{pad}{key}: >-\n" + "\n".join(f"{pad}  {line}" for line in lines)
        if value == value.strip() and _loads_as(_dedent_doc(candidate, indent), value):
            return candidate.split("\n")
    if "\n" in value:
        body = "\n".join((pad + "  " + line) if line else "" for line in value.split("\n"))
        candidate = f"{pad}{key}: |-\n{body}"
        if (
            not value.startswith((" ", "\n"))
            and all(line == line.rstrip() for line in value.split("\n"))
            and _loads_as(_dedent_doc(candidate, indent), value)
        ):
            return candidate.split("\n")
    return [f"{pad}{key}: {scalar(value)}"]


def _dedent_doc(text: str, indent: int) -> str:
    lines = text.split("\n")
    key = lines[0].lstrip().split(":", 1)[0]
    return "\n".join(
        ["k:" + lines[0].split(key + ":", 1)[1]] + [line[indent:] for line in lines[1:]]
    )


# --- plain data through PyYAML -------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Block style everywhere; multi-line strings as literal blocks."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value.strip("\n") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def _data(value: Any, indent: int) -> list[str]:
    text = yaml.dump(
        value,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=WIDTH,
        default_flow_style=False,
    )
    pad = " " * indent
    text = "".join((pad + line if line.strip() else line) for line in text.splitlines(True))
    return text.removesuffix("\n").split("\n")
