"""Safe-markdown helpers: put untrusted text (captured output, titles) into a report unharmed."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from urllib.parse import quote

from agent.proc.terminal import clean

__all__ = [
    "clean",
    "code",
    "fence",
    "inline",
    "link",
    "plain",
    "plain_table",
    "table",
]

_SPACES = re.compile(r"\s+")
_BACKTICKS = re.compile(r"`+")
# `&` that does not start a character reference stays visible as `&`.
_BARE_AMP = re.compile(r"&(?!#[0-9]{1,7};|#[xX][0-9a-fA-F]{1,6};|[A-Za-z][A-Za-z0-9]{1,31};)")
# What makes a line's start mean something other than text.
_LINE_START = (
    re.compile(r"^(#{1,6})(?=\s|$)"),  # ATX heading
    re.compile(r"^([-+*])(?=\s|$)"),  # bullet list item
    re.compile(r"^([-*_=])(?=(?:\s*[-*_=]){2,}\s*$)"),  # thematic break / setext underline
    re.compile(r"^(~{3,})"),  # tilde fence
)
# What a renderer links by itself (GFM's autolinks): a URL with `scheme://`, a `www.` name, an
# e-mail address. Shown as code, where no renderer links anything.
_LINKISH = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://\S+|\bwww\.\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# Text of only these characters has nothing `_escape` changes and nothing `_LINKISH` finds but
# a `www.` name (no `://`: `:` and `/` never meet, no `@`).
_INERT = re.compile(r"(?:[\w .,;()'%+=#*~-]|:(?!//)|/)*")
_ORDERED = re.compile(r"^(\d{1,9})([.)])(?=\s|$)")
_STARTERS = frozenset("#-+*_=~")


def plain(text: object) -> str:
    """Clean `text` and collapse all whitespace (newlines included) into single spaces.

    Args:
        text: Any value; it is converted with ``str``.

    Returns:
        One line of text, stripped, with no markdown escaping (for use inside code blocks).
    """
    s = str(text)
    if s.isprintable() and "  " not in s:  # most cells: nothing to clean or collapse
        return s.strip()
    return _SPACES.sub(" ", clean(s).replace("\t", " ")).strip()


def inline(text: object) -> str:
    """Make `text` safe as inline markdown on one line: it can add no HTML and no structure.

    Raw HTML is neutralised (``<``, ``>``, bare ``&``), newlines are collapsed, backticks,
    pipes and brackets are backslash-escaped (no code span, table cell, link or image can be
    opened or closed), whatever a renderer would autolink (a URL, ``www.``, an e-mail address)
    becomes a code span, and whatever would start a heading, quote, list, rule or fence at the
    start of a line is escaped.

    Args:
        text: Any value; it is converted with ``str``.

    Returns:
        Markdown that renders as the original text.
    """
    s = plain(text)
    if not (_INERT.fullmatch(s) and "www." not in s):  # most cells: nothing to escape or link
        pos, parts = 0, []
        for match in _LINKISH.finditer(s):
            parts.append(_escape(s[pos : match.start()]))
            parts.append(code(match.group()).replace("|", "\\|"))
            pos = match.end()
        s = "".join(parts) + _escape(s[pos:])
    # Only these first characters can start a structure; skipping the five anchored
    # patterns otherwise halves the re.sub calls of a 10,000-step report (cProfile: 320 k).
    if s[:1] in _STARTERS or s[:1].isdecimal():  # \d is any decimal digit
        for pattern in _LINE_START:
            s = pattern.sub(lambda m: "\\" + m.group(1), s, count=1)
        s = _ORDERED.sub(lambda m: m.group(1) + "\\" + m.group(2), s, count=1)
    if s.endswith("#"):  # a closing sequence of an ATX heading would be eaten
        s = s[:-1] + "\\#"
    return s


def _escape(s: str) -> str:
    """Backslash-escape what opens markdown structure inside a line, and neutralise HTML."""
    s = s.replace("\\", "\\\\")
    if "&" in s:
        s = _BARE_AMP.sub("&amp;", s)
    s = s.replace("<", "&lt;").replace(">", "&gt;")
    return s.replace("`", "\\`").replace("|", "\\|").replace("[", "\\[").replace("]", "\\]")


def code(text: object) -> str:
    """Render `text` as an inline code span that no backtick inside it can close early.

    Args:
        text: Any value; it is converted with ``str`` and put on one line (runs of spaces are
            kept: in a regex or a command they mean something, and code spans show them).

    Returns:
        A code span such as ``` `bin/x.py` ``` (longer delimiters when the text has backticks).
    """
    s = re.sub(r"[\r\n\t]+", " ", clean(text)).strip()
    if not s:
        return "` `"
    longest = max((len(m) for m in _BACKTICKS.findall(s)), default=0)
    ticks = "`" * (longest + 1)
    if s.startswith("`") or s.endswith("`"):
        s = f" {s} "
    return f"{ticks}{s}{ticks}"


def fence(text: object, lang: str = "") -> str:
    """Render `text` as a fenced code block whose fence is longer than any backtick run inside.

    Args:
        text: The block's content; control characters and ANSI escapes are removed.
        lang: The info string (``bash``); anything but letters, digits, ``_+-.`` is dropped.

    Returns:
        The block, from the opening fence to the closing fence, without a final newline.
    """
    body = clean(text).rstrip("\n")
    longest = max((len(m) for m in _BACKTICKS.findall(body)), default=0)
    ticks = "`" * max(3, longest + 1)
    info = re.sub(r"[^\w+.-]", "", lang)
    return f"{ticks}{info}\n{body}\n{ticks}"


def link(text: object, target: object) -> str:
    """Render a link whose text is escaped and whose target is percent-encoded.

    Args:
        text: The visible text.
        target: A relative path or URL; characters outside a safe set are percent-encoded.

    Returns:
        ``[text](target)``.
    """
    dest = quote(plain(target), safe="/._-~:#?=&%+@")
    label = inline(text)
    return f"[{label}]({dest})"


def table(rows: Iterable[Sequence[object]], headers: Sequence[object]) -> str:
    """Render a GitHub-flavoured markdown table; every cell is escaped like `inline`.

    Args:
        rows: The body rows, each a sequence of cells (any values).
        headers: The column titles.

    Returns:
        The table as produced by ``tabulate(..., tablefmt="github")``.
    """
    body = [[inline(cell) for cell in row] for row in rows]
    head = [inline(h) for h in headers]
    return plain_table(body, head)


def plain_table(rows: Iterable[Sequence[object]], headers: Sequence[object]) -> str:
    """A GitHub-style table of cells taken as they are (for terminals and trusted text).

    Column widths count characters, whether or not `wcwidth` is installed (tabulate measures
    emoji as two columns when it is): the same run gives the same bytes on every machine.
    """
    # Imported here: tabulate pulls in importlib.metadata and wcwidth, a cost of every start
    # when imported at the top (issue 15), though only a report draws tables.
    import tabulate as tabulate_module

    mode = tabulate_module.WIDE_CHARS_MODE
    tabulate_module.WIDE_CHARS_MODE = False
    try:
        return str(
            tabulate_module.tabulate(
                list(rows),
                headers=[str(h) for h in headers],
                tablefmt="github",
                disable_numparse=True,
            )
        )
    finally:
        tabulate_module.WIDE_CHARS_MODE = mode
