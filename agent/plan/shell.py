"""The quoting scanner for `shell: true` scripts: where each value stands, and how to quote it."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from agent.errors import RunbookError

__all__ = [
    "Script",
    "ShellError",
    "Slot",
    "placeholder",
    "render",
    "scan",
]

_PLACEHOLDER = re.compile(r"\x00(\d+)\x00")
_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")


class ShellError(RunbookError):
    """A script whose values cannot be quoted safely, or that does not scan as a POSIX shell's."""


def placeholder(index: int) -> str:
    """Return the mark that stands for value `index` in a script's text (NUL never occurs there).

    Args:
        index: the value's position among the script's `{{ }}` expressions.

    Returns:
        The placeholder text.
    """
    return f"\x00{index}\x00"


@dataclass(frozen=True)
class Slot:
    """Where one `{{ }}` stands in a shell script."""

    context: str  # plain, single, double, dollar_single, comment, arith, heredoc, heredoc_quoted
    line_start: int = 0  # heredoc body: the line the value is on, to check the delimiter
    delimiter: str = ""
    strip_tabs: bool = False


@dataclass
class _Frame:
    kind: str  # plain (top level or $( )), single, double, dollar_single, backtick, param, arith,
    # heredoc, heredoc_quoted
    depth: int = 0  # open parentheses inside $( ) or $(( ))
    cases: int = 0  # `case` ... `esac` inside $( ): a `)` there ends a pattern
    quoted: bool = False  # param: the ${ } stands inside double quotes
    delimiter: str = ""
    strip_tabs: bool = False


def _read_delimiter(text: str, i: int) -> tuple[str, bool, int]:
    """The here-document word after `<<` at `i`: (delimiter, quoted, index after it)."""
    n = len(text)
    while i < n and text[i] in " \t":
        i += 1
    word: list[str] = []
    quoted = False
    while i < n and text[i] not in " \t\n;&|<>()":
        c = text[i]
        if c == "\x00":
            raise ShellError("a here-document delimiter cannot be a {{ }} value")
        if c in "'\"":
            quoted = True
            end = text.find(c, i + 1)
            if end < 0:
                raise ShellError("shell script: No closing quotation")
            word.append(text[i + 1 : end])
            i = end + 1
            continue
        if c == "\\":
            quoted = True
            word.append(text[i + 1 : i + 2])
            i += 2
            continue
        word.append(c)
        i += 1
    if not word:
        raise ShellError("shell script: '<<' needs a here-document delimiter")
    return "".join(word), quoted, i


# The quotes whose inside only their closing character (and a backslash) changes.
_CLOSING = {"single": "'", "dollar_single": "'", "backtick": "`"}


def _starts_word(text: str, i: int) -> bool:
    """Whether text[i] begins a word for sh, as `#` must to begin a comment.

    Only after an unescaped blank, newline, `;`, `&` or `|`: an escaped one (`\\;`, `\\ `, a
    backslash-newline) is part of the word before, and after `)` the `#` may continue a
    `$(...)` word. When in doubt it is not a comment, so the value is quoted: safe either way.
    """
    if i == 0:
        return True
    if text[i - 1] not in " \t\n;&|":
        return False
    slashes = 0
    while i - 2 - slashes >= 0 and text[i - 2 - slashes] == "\\":
        slashes += 1
    return slashes % 2 == 0


class _Scanner:
    """Reads a script as a POSIX shell would, enough to know the quoting around each value."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.slots: dict[int, Slot] = {}
        self.stack = [_Frame("plain")]
        self.pending: list[_Frame] = []  # here-documents whose body starts at the next newline
        self.ambiguous = False  # a `\` inside $'...': shells disagree on where it ends

    def _slot(self, i: int, frame: _Frame, line_start: int = 0) -> int:
        m = _PLACEHOLDER.match(self.text, i)
        assert m is not None
        if self.ambiguous:
            raise ShellError(
                "{{ }} cannot follow $'...' with a backslash in it (shells read it differently);"
                " use '...' or \"...\""
            )
        kind = frame.kind
        if kind == "backtick":
            raise ShellError("write $(...) rather than backticks around a {{ }} value")
        if kind == "param":
            raise ShellError(
                "a {{ }} value cannot stand inside ${...}; assign it to a variable first"
            )
        self.slots[int(m.group(1))] = Slot(kind, line_start, frame.delimiter, frame.strip_tabs)
        return m.end()

    def _escape_before_value(self, i: int) -> None:
        if self.text.startswith("\x00", i + 1):
            raise ShellError("a backslash cannot stand right before a {{ }} value")

    def scan(self) -> dict[int, Slot]:
        text, n = self.text, len(self.text)
        i = 0
        while i < n:
            frame = self.stack[-1]
            c = text[i]
            kind = frame.kind
            if kind in ("heredoc", "heredoc_quoted"):
                i = self._heredoc_line(i, frame)
                continue
            if c == "\x00":
                if i and text[i - 1] == "$" and kind not in ("single", "dollar_single"):
                    raise ShellError("a '$' cannot stand right before a {{ }} value")
                i = self._slot(i, frame)
                continue
            if kind in _CLOSING:
                i = self._quoted(i, kind)
            elif kind == "double":
                i = self._double(i, frame)
            else:
                i = self._plain(i, frame)
        if len(self.stack) > 1 or self.pending:
            top = self.stack[-1].kind
            if top in ("heredoc", "heredoc_quoted") or self.pending:
                return self.slots  # a here-document may end at the end of the script
            if top in ("single", "double", "dollar_single", "backtick"):
                raise ShellError("shell script: No closing quotation")
            raise ShellError("shell script: an opening '$(' or '${' is never closed")
        return self.slots

    def _quoted(self, i: int, kind: str) -> int:
        """Inside '...', $'...' or `...`: the closing quote ends it; `\\` escapes but in '...'."""
        c = self.text[i]
        if c == "\\" and kind != "single":
            if kind == "dollar_single":
                self.ambiguous = True
            self._escape_before_value(i)
            return i + 2
        if c == _CLOSING[kind]:
            self.stack.pop()
        return i + 1

    def _expansion(self, i: int, quoted: bool) -> int | None:
        """`$(`, `$((`, `${` at `i`: push its frame and return the index after it."""
        text = self.text
        if text.startswith("$((", i):
            self.stack.append(_Frame("arith"))
            return i + 3
        if text.startswith("$(", i):
            self.stack.append(_Frame("plain", depth=1))
            return i + 2
        if text.startswith("${", i):
            self.stack.append(_Frame("param", quoted=quoted))
            return i + 2
        return None

    def _double(self, i: int, frame: _Frame) -> int:
        c = self.text[i]
        if c == "\\":
            self._escape_before_value(i)
            return i + 2
        if c == '"':
            self.stack.pop()
            return i + 1
        if c == "`":
            self.stack.append(_Frame("backtick"))
            return i + 1
        if c == "$":
            nxt = self._expansion(i, quoted=True)
            if nxt is not None:
                return nxt
        return i + 1

    def _plain(self, i: int, frame: _Frame) -> int:
        """The unquoted state: top level, inside $( ), ${ } and $(( ))."""
        text = self.text
        c = text[i]
        kind = frame.kind
        if c == "\\":
            self._escape_before_value(i)
            return i + 2
        if c == "'":
            if not (kind == "param" and frame.quoted):
                self.stack.append(_Frame("single"))
            return i + 1
        if c == '"':
            self.stack.append(_Frame("double"))
            return i + 1
        if c == "`":
            self.stack.append(_Frame("backtick"))
            return i + 1
        if c == "$":
            if text.startswith("$'", i) and kind != "arith":
                self.stack.append(_Frame("dollar_single"))
                return i + 2
            nxt = self._expansion(i, quoted=False)
            return nxt if nxt is not None else i + 1
        if kind == "param":
            if c == "}":
                self.stack.pop()
            return i + 1
        if kind == "arith":
            if c == "(":
                frame.depth += 1
            elif c == ")":
                if frame.depth == 0 and text.startswith("))", i):
                    self.stack.pop()
                    return i + 2
                frame.depth -= 1
            return i + 1
        return self._command_text(i, frame)

    def _command_text(self, i: int, frame: _Frame) -> int:
        """Top level or $( ): comments, here-documents, `case` and parentheses inside $( )."""
        text = self.text
        c = text[i]
        prev = text[i - 1] if i else "\n"
        if c == "#" and _starts_word(text, i):
            end = text.find("\n", i)
            end = len(text) if end < 0 else end
            while (ph := text.find("\x00", i, end)) >= 0:
                m = _PLACEHOLDER.match(text, ph)
                assert m is not None
                self.slots[int(m.group(1))] = Slot("comment")
                i = m.end()
            return end
        if c == "<" and text.startswith("<<<", i):
            return i + 3  # a here-string: the word after it is an ordinary word, quoted as such
        if c == "<" and text.startswith("<<", i):
            strip = text.startswith("<<-", i)
            delimiter, quoted, after = _read_delimiter(text, i + (3 if strip else 2))
            self.pending.append(
                _Frame(
                    "heredoc_quoted" if quoted else "heredoc",
                    delimiter=delimiter,
                    strip_tabs=strip,
                )
            )
            return after
        if c == "\n" and self.pending:
            self.stack.extend(reversed(self.pending))
            self.pending = []
            return i + 1
        if frame.depth:
            if prev in " \t\n;&|()" and re.match(r"(case|esac)(?![\w])", text[i:]):
                frame.cases += 1 if text.startswith("case", i) else -1
            elif c == "(":
                frame.depth += 1
            elif c == ")":
                if frame.cases > 0:
                    return i + 1
                frame.depth -= 1
                if frame.depth == 0:
                    self.stack.pop()
        return i + 1

    def _heredoc_line(self, i: int, frame: _Frame) -> int:
        """One line of a here-document body starting at `i`: the delimiter ends it."""
        text = self.text
        end = text.find("\n", i)
        end = len(text) if end < 0 else end
        line = text[i:end]
        if (line.lstrip("\t") if frame.strip_tabs else line) == frame.delimiter:
            self.stack.pop()
            return end + 1
        j = i
        while j < end:
            c = text[j]
            if c == "\x00":
                if frame.kind == "heredoc" and j and text[j - 1] == "$":
                    raise ShellError("a '$' cannot stand right before a {{ }} value")
                m = _PLACEHOLDER.match(text, j)
                assert m is not None
                if self.ambiguous:
                    raise ShellError("{{ }} cannot follow $'...' with a backslash in it")
                self.slots[int(m.group(1))] = Slot(frame.kind, i, frame.delimiter, frame.strip_tabs)
                j = m.end()
                continue
            if frame.kind == "heredoc" and c == "\\":
                self._escape_before_value(j)
                j += 2
                continue
            # A command inside an unquoted here-document: refuse values after it on this line
            # rather than guess their quoting.
            if (
                frame.kind == "heredoc"
                and (c == "`" or text.startswith("$(", j))
                and "\x00" in text[j:end]
            ):
                raise ShellError("a {{ }} value cannot stand inside a command in a here-document")
            j += 1
        return end + 1


@dataclass(frozen=True)
class Script:
    """A `shell: true` script: its text with a placeholder for each `{{ }}`, and their places."""

    text: str
    exprs: list[str]
    slots: list[Slot]


def scan(text: str, exprs: list[str]) -> Script:
    """Read a script as a POSIX shell would, enough to know the quoting around each value.

    Args:
        text: the script's literal text, with `placeholder(k)` for value k.
        exprs: the source of each value, in order (for messages).

    Returns:
        The script with the place of every value.

    Raises:
        ShellError: unbalanced quotes, or a value where it cannot be quoted.
    """
    slots = _Scanner(text).scan()
    return Script(text, exprs, [slots[k] for k in range(len(exprs))])


def render(script: Script, value: Callable[[str], str]) -> str:
    """Fill a scanned script: each value escaped for the quoting it stands in.

    Args:
        script: what `scan` returned.
        value: renders one expression's source to its text; called in order, so the first
            problem of the script is the one reported.

    Returns:
        The script for `/bin/sh -c`, in which every value is data.

    Raises:
        ShellError: a value that cannot stand where it is (a word in `$(( ))`, a line of a
            here-document that would end it early).
    """
    quoted = [
        _quote_for(slot, value(expr), expr)
        for expr, slot in zip(script.exprs, script.slots, strict=True)
    ]
    out = _PLACEHOLDER.sub(lambda m: quoted[int(m.group(1))], script.text)
    for k, slot in enumerate(script.slots):
        if slot.context in ("heredoc", "heredoc_quoted"):
            _check_heredoc_line(script, k, slot, quoted)
    return out


def _quote_for(slot: Slot, value: str, expr: str) -> str:
    context = slot.context
    if context == "plain":
        # Bare, `a=b` in a command's place would be an assignment: quote it always.
        return _single(value) if "=" in value else shlex.quote(value)
    if context == "single":
        return value.replace("'", "'\\''")
    if context == "double":
        return re.sub(r'([\\$`"])', r"\\\1", value)
    if context == "dollar_single":
        # Close $'...', add the value in plain single quotes, reopen: the same in every shell.
        return "'" + _single(value) + "$'"
    if context == "comment":
        return value.replace("\n", " ")
    if context == "arith":
        if not _NUMBER.fullmatch(value):
            raise ShellError(
                f"only a number can stand inside $(( )); '{expr.strip()}' is '{value}'"
            )
        return value
    if "\n" in value:
        raise ShellError(f"'{expr.strip()}' spans lines and cannot stand in a here-document")
    if context == "heredoc":
        return re.sub(r"([\\$`])", r"\\\1", value)
    return value  # heredoc_quoted: taken as written


def _single(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def _check_heredoc_line(script: Script, k: int, slot: Slot, quoted: list[str]) -> None:
    end = script.text.find("\n", slot.line_start)
    line = script.text[slot.line_start : end if end >= 0 else len(script.text)]
    line = _PLACEHOLDER.sub(lambda m: quoted[int(m.group(1))], line)
    if (line.lstrip("\t") if slot.strip_tabs else line) == slot.delimiter:
        raise ShellError(
            f"'{script.exprs[k].strip()}' would end the here-document '{slot.delimiter}' early"
        )
