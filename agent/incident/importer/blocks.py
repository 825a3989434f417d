"""The plan's markdown through markdown-it-py: headings, fenced code blocks, and the other lines."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from markdown_it import MarkdownIt
from markdown_it.token import Token

__all__ = ["Code", "Event", "Heading", "Line", "read"]


@dataclass(frozen=True)
class Heading:
    """An ATX (`## Title`) or setext (`Title` over `====`) heading outside any container."""

    level: int
    title: str  # the heading's markdown, closing `#`s off


@dataclass(frozen=True)
class Code:
    """A fenced code block anywhere (in a list item, in a blockquote): language and code."""

    lang: str  # the info string's first word, lowercase; may be empty
    code: str  # without the container's and the fence's indentation


@dataclass(frozen=True)
class Line:
    """A source line that is neither a heading nor part of a fenced block."""

    text: str


Event = Heading | Code | Line

_LANG = re.compile(r"[\w+.-]*")
_PARSER = MarkdownIt("commonmark")


def read(text: str) -> Iterator[Event]:
    """The plan as events in source order.

    Args:
        text: the plan's markdown.

    Yields:
        A `Heading` or `Code` for each top-level heading and fenced block, and a `Line` for
        every other line (lists, labels and prose are read line by line from those).
    """
    # markdown-it's own line breaks, so that token maps index these lines.
    lines = re.sub(r"\r\n?", "\n", text).replace("\0", "\ufffd").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    found: dict[int, tuple[int, Event]] = {}  # first line -> (line after it, event)
    tokens = _PARSER.parse(text)
    for i, token in enumerate(tokens):
        if token.map is None:
            continue
        if token.type == "fence":
            found[token.map[0]] = (token.map[1], _code(token))
        elif token.type == "heading_open" and token.level == 0:
            title = tokens[i + 1].content
            found[token.map[0]] = (token.map[1], Heading(int(token.tag[1:]), title))
    n = 0
    while n < len(lines):
        if n in found:
            n, event = found[n]
            yield event
        else:
            yield Line(lines[n])
            n += 1


def _code(token: Token) -> Code:
    lang = _LANG.match(token.info.strip())
    return Code(lang.group(0).lower() if lang else "", token.content.removesuffix("\n"))
