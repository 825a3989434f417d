"""Sandboxed, strict Jinja2 for runbook strings; commands split before substitution; expressions."""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from agent.errors import RunbookError

__all__ = [
    "TemplateError",
    "check_shell_command",
    "evaluate",
    "evaluate_expectation",
    "expression_names",
    "is_template",
    "render",
    "render_command",
    "render_shell",
    "render_sql",
    "split_command",
    "step_paths",
    "step_references",
    "template_names",
]


class TemplateError(RunbookError):
    """A template or expression that cannot be parsed or rendered."""


def _none_empty(value: Any) -> Any:
    return "" if value is None else value


# Attributes the sandbox refuses besides `_private` ones; validate rejects them before a run.
UNSAFE_ATTRIBUTES = frozenset(
    {
        "mro",
        "func_globals",
        "func_code",
        "f_globals",
        "f_locals",
        "f_builtins",
        "f_code",
        "gi_frame",
        "gi_code",
        "cr_frame",
        "cr_code",
        "ag_frame",
        "ag_code",
        "tb_frame",
        "tb_next",
    }
)
MAX_REPEAT = 1_000_000  # the longest string or list `*` may build
MAX_EXPONENT = 1_000


class _Sandbox(SandboxedEnvironment):
    """The Jinja2 sandbox, plus limits on `*` and `**` so a template cannot exhaust memory."""

    intercepted_binops = frozenset({"*", "**"})

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        return attr not in UNSAFE_ATTRIBUTES and super().is_safe_attribute(obj, attr, value)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"the exponent {right} is too large (at most {MAX_EXPONENT})")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(n, int)
                    and len(seq) * n > MAX_REPEAT
                ):
                    raise SecurityError(f"the result of '*' would exceed {MAX_REPEAT} items")
        return super().call_binop(context, operator, left, right)


_ENV = _Sandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
# One value of a `shell: true` script (quoted afterwards for where it stands); null is empty.
_SHELL_ENV = _Sandbox(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True, finalize=_none_empty
)
_MARKERS = ("{{", "{%", "{#")
_EXPR = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)


def is_template(source: str) -> bool:
    """Return True when `source` holds Jinja2 syntax (and so must be rendered)."""
    return any(m in source for m in _MARKERS)


@lru_cache(maxsize=4096)
def _parse(source: str) -> nodes.Template:
    try:
        return _ENV.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error: {exc.message}") from None


@lru_cache(maxsize=4096)
def _compiled(source: str, shell: bool = False) -> Any:
    env = _SHELL_ENV if shell else _ENV
    try:
        return env.from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error: {exc.message}") from None


@lru_cache(maxsize=4096)
def _expression(source: str) -> Callable[..., Any]:
    try:
        return _ENV.compile_expression(source, undefined_to_none=False)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"invalid expression '{source}': {exc.message}") from None


def _parse_expression(source: str) -> nodes.Template:
    try:
        return _ENV.parse("{{ " + source + " }}")
    except TemplateSyntaxError as exc:
        raise TemplateError(f"invalid expression '{source}': {exc.message}") from None


def render(source: str, context: Mapping[str, Any], *, shell: bool = False) -> str:
    """Render one string value.

    Args:
        source: the runbook's string.
        context: names visible to the template (vars, env, steps).
        shell: `source` is a `shell: true` script: each value is escaped for the quoting it
            stands in (see `render_shell`).

    Returns:
        The rendered string; `source` itself when it holds no template syntax.
    """
    if not is_template(source):
        return source
    if shell:
        return render_shell(source, context)
    try:
        return str(_compiled(source, shell).render(context))
    except TemplateError:
        raise
    except Exception as exc:  # noqa: BLE001 - any render error is the runbook's, shown as one line
        raise TemplateError(f"cannot render '{source.strip()}': {exc}") from None


def evaluate(expr: str, context: Mapping[str, Any]) -> Any:
    """Evaluate an `expect` or `when` expression; None and type mismatches read as False.

    Args:
        expr: a Jinja2 expression such as `records_saved == games * 2`.
        context: the names it may read.

    Returns:
        The expression's value, or False when it compares a null or mismatched value.
    """
    try:
        return _expression(expr)(**context)
    except TypeError:
        # A capture that did not match is null; `null > 3` is false, never an error.
        return False
    except TemplateError:
        raise
    except Exception as exc:  # noqa: BLE001 - any other error is the runbook's, shown as one line
        raise TemplateError(f"cannot evaluate '{expr}': {exc}") from None


def _protect(source: str) -> tuple[str, list[str]]:
    parts: list[str] = []

    def keep(m: re.Match[str]) -> str:
        parts.append(m.group(0))
        return f"\x00{len(parts) - 1}\x00"

    return _EXPR.sub(keep, source), parts


def _restore(word: str, parts: list[str]) -> str:
    return re.sub(r"\x00(\d+)\x00", lambda m: parts[int(m.group(1))], word)


def split_command(source: str) -> list[str]:
    """Split a command template into argument templates like a POSIX shell, before substitution.

    Args:
        source: the command as written in the runbook.

    Returns:
        One template per argument; template expressions are never split.
    """
    protected, parts = _protect(source)
    try:
        words = shlex.split(protected, posix=True)
    except ValueError as exc:
        raise TemplateError(f"cannot split command: {exc}") from None
    return [_restore(w, parts) for w in words]


def render_command(
    command: str | list[str], context: Mapping[str, Any], *, shell: bool = False
) -> list[str]:
    """Render a step's command into argv.

    A string is split into words first and each word rendered alone, so a value can never add
    an argument or shell syntax. With `shell`, the string is one script for `/bin/sh -c` and
    every substituted value is escaped for the quoting it stands in; a list's elements are
    rendered and then quoted as whole words.

    Args:
        command: the step's command (string or list).
        context: the names it may read.
        shell: run through `/bin/sh -c`.

    Returns:
        The argv to execute.
    """
    if shell:
        if isinstance(command, str):
            script = render_shell(command, context)
        else:  # each element is one word: rendered as a plain value, then quoted as a whole
            script = shlex.join(render(w, context) for w in command)
        return ["/bin/sh", "-c", script]
    words = split_command(command) if isinstance(command, str) else list(command)
    return [render(w, context) for w in words]


def _walk(node: nodes.Node) -> Iterator[nodes.Node]:
    yield node
    for child in node.iter_child_nodes():
        yield from _walk(child)


def _is_unsafe(name: Any) -> bool:
    return isinstance(name, str) and (name.startswith("_") or name in UNSAFE_ATTRIBUTES)


def _unsafe(tree: nodes.Template) -> str | None:
    for node in _walk(tree):
        if isinstance(node, nodes.Getattr) and _is_unsafe(node.attr):
            return node.attr
        if (
            isinstance(node, nodes.Getitem)
            and isinstance(node.arg, nodes.Const)
            and _is_unsafe(node.arg.value)
        ):
            return str(node.arg.value)
        if isinstance(node, nodes.Filter) and node.name == "attr":
            # `x|attr('__class__')`: only a constant name can be judged before the run.
            for arg in node.args:
                if isinstance(arg, nodes.Const) and _is_unsafe(arg.value):
                    return str(arg.value)
    return None


def _names(tree: nodes.Template) -> set[str]:
    unsafe = _unsafe(tree)
    if unsafe is not None:
        raise TemplateError(f"unsafe template: access to '{unsafe}' is not allowed")
    return set(meta.find_undeclared_variables(tree))


# The names a source reads are worked out once per source: every `expect` of every step run,
# every `when`, asks again (0.9 ms a time with the parse and the walk; 0.08 ms cached).
# Callers get a copy; a bad source raises each time (lru_cache keeps no exception).


@lru_cache(maxsize=4096)
def _template_names(source: str) -> frozenset[str]:
    return frozenset(_names(_parse(source)))


@lru_cache(maxsize=4096)
def _expression_names(expr: str) -> frozenset[str]:
    return frozenset(_names(_parse_expression(expr)))


def template_names(source: str) -> set[str]:
    """Return the top-level names a template reads (raises TemplateError on bad syntax)."""
    if not is_template(source):
        return set()
    return set(_template_names(source))


def expression_names(expr: str) -> set[str]:
    """Return the top-level names an expression reads (raises TemplateError on bad syntax)."""
    return set(_expression_names(expr))


def _access(node: nodes.Node) -> tuple[nodes.Node, str] | None:
    """`x.key` or `x['key']` -> (x, key)."""
    if isinstance(node, nodes.Getattr):
        return node.node, node.attr
    if (
        isinstance(node, nodes.Getitem)
        and isinstance(node.arg, nodes.Const)
        and isinstance(node.arg.value, str)
    ):
        return node.node, node.arg.value
    return None


def _chain(node: nodes.Node, root: str) -> tuple[str, ...] | None:
    """`steps.a.captures.x` -> ('a', 'captures', 'x'); None when it does not start at `root`."""
    keys: list[str] = []
    while (acc := _access(node)) is not None:
        node, key = acc
        keys.append(key)
    if isinstance(node, nodes.Name) and node.name == root and keys:
        return tuple(reversed(keys))
    return None


def _step_paths(tree: nodes.Template, root: str = "steps") -> set[tuple[str, ...]]:
    chains: set[tuple[str, ...]] = set()
    for node in _walk(tree):
        chain = _chain(node, root)
        if chain is not None:
            chains.add(chain)
    # Keep the longest reading of each place: `steps.a.status` also walks `steps.a`.
    return {c for c in chains if not any(len(o) > len(c) and o[: len(c)] == c for o in chains)}


def step_paths(
    source: str, *, expression: bool = False, root: str = "steps"
) -> set[tuple[str, ...]]:
    """Return every `steps.<id>.<field>...` a template or expression reads, as key tuples.

    Args:
        source: the template or expression.
        expression: `source` is an expression (`expect`, `when`), not a template.
        root: the name the paths start at (`actions` for an incident's criteria).

    Returns:
        Tuples such as `('verify_counts', 'status')`; only constant keys are followed.
    """
    if not expression and not is_template(source):
        return set()
    return set(_cached_step_paths(source, expression, root))


@lru_cache(maxsize=4096)
def _cached_step_paths(source: str, expression: bool, root: str) -> frozenset[tuple[str, ...]]:
    tree = _parse_expression(source) if expression else _parse(source)
    return frozenset(_step_paths(tree, root))


def step_references(source: str, *, expression: bool = False) -> set[str]:
    """Return the step ids read as `steps.<id>` (or `steps['<id>']`) by a template or expression."""
    if not expression and not is_template(source):
        return set()
    return {p[0] for p in step_paths(source, expression=expression)}


# --- `shell: true`: every value is escaped for the place in the script where it stands --------

_SHELL_BLOCKS = "shell: true commands take {{ }} expressions only, not {% %} blocks"
_PLACEHOLDER = re.compile(r"\x00(\d+)\x00")
_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")


@dataclass(frozen=True)
class _Slot:
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


@dataclass
class _Script:
    """A `shell: true` script: its text with a placeholder for each `{{ }}`, and their places."""

    text: str
    exprs: list[str]
    slots: list[_Slot]


def _shell_segments(source: str) -> tuple[str, list[str]]:
    """Jinja2 tokens -> the script's literal text with placeholders, and each `{{ }}`'s source."""
    if "\x00" in source:
        raise TemplateError("a shell script cannot contain a NUL byte")
    parts: list[str] = []
    exprs: list[str] = []
    current: list[str] | None = None
    in_raw = False
    try:
        for _, ttype, value in _ENV.lexer.tokeniter(source, None):
            if ttype == "variable_begin":
                current = []
            elif ttype == "variable_end":
                exprs.append("".join(current or []))
                parts.append(f"\x00{len(exprs) - 1}\x00")
                current = None
            elif current is not None:
                current.append(value)
            elif ttype == "raw_begin":
                in_raw = True
            elif ttype == "raw_end":
                in_raw = False
            elif ttype == "data":
                parts.append(value)
            elif ttype.startswith("comment"):
                continue
            elif not in_raw:
                raise TemplateError(_SHELL_BLOCKS)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error: {exc.message}") from None
    return "".join(parts), exprs


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
            raise TemplateError("a here-document delimiter cannot be a {{ }} value")
        if c in "'\"":
            quoted = True
            end = text.find(c, i + 1)
            if end < 0:
                raise TemplateError("shell script: No closing quotation")
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
        raise TemplateError("shell script: '<<' needs a here-document delimiter")
    return "".join(word), quoted, i


class _Scanner:
    """Reads a script as a POSIX shell would, enough to know the quoting around each value."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.slots: dict[int, _Slot] = {}
        self.stack = [_Frame("plain")]
        self.pending: list[_Frame] = []  # here-documents whose body starts at the next newline
        self.ambiguous = False  # a `\` inside $'...': shells disagree on where it ends

    def _slot(self, i: int, frame: _Frame, line_start: int = 0) -> int:
        m = _PLACEHOLDER.match(self.text, i)
        assert m is not None
        if self.ambiguous:
            raise TemplateError(
                "{{ }} cannot follow $'...' with a backslash in it (shells read it differently);"
                " use '...' or \"...\""
            )
        kind = frame.kind
        if kind == "backtick":
            raise TemplateError("write $(...) rather than backticks around a {{ }} value")
        if kind == "param":
            raise TemplateError(
                "a {{ }} value cannot stand inside ${...}; assign it to a variable first"
            )
        self.slots[int(m.group(1))] = _Slot(kind, line_start, frame.delimiter, frame.strip_tabs)
        return m.end()

    def _escape_before_value(self, i: int) -> None:
        if self.text.startswith("\x00", i + 1):
            raise TemplateError("a backslash cannot stand right before a {{ }} value")

    def scan(self) -> dict[int, _Slot]:
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
                    raise TemplateError("a '$' cannot stand right before a {{ }} value")
                i = self._slot(i, frame)
                continue
            if kind == "single":
                if c == "'":
                    self.stack.pop()
                i += 1
            elif kind == "dollar_single":
                if c == "\\":
                    self.ambiguous = True
                    self._escape_before_value(i)
                    i += 2
                    continue
                if c == "'":
                    self.stack.pop()
                i += 1
            elif kind == "backtick":
                if c == "\\":
                    self._escape_before_value(i)
                    i += 2
                    continue
                if c == "`":
                    self.stack.pop()
                i += 1
            elif kind == "double":
                i = self._double(i, frame)
            else:
                i = self._plain(i, frame)
        if len(self.stack) > 1 or self.pending:
            top = self.stack[-1].kind
            if top in ("heredoc", "heredoc_quoted") or self.pending:
                return self.slots  # a here-document may end at the end of the script
            if top in ("single", "double", "dollar_single", "backtick"):
                raise TemplateError("shell script: No closing quotation")
            raise TemplateError("shell script: an opening '$(' or '${' is never closed")
        return self.slots

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
        # plain: comments, here-documents, `case` and parentheses inside $( )
        prev = text[i - 1] if i else "\n"
        if c == "#" and prev in " \t\n;&|()":
            end = text.find("\n", i)
            end = len(text) if end < 0 else end
            while (ph := text.find("\x00", i, end)) >= 0:
                m = _PLACEHOLDER.match(text, ph)
                assert m is not None
                self.slots[int(m.group(1))] = _Slot("comment")
                i = m.end()
            return end
        if c == "<" and text.startswith("<<", i) and not text.startswith("<<<", i):
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
                    raise TemplateError("a '$' cannot stand right before a {{ }} value")
                m = _PLACEHOLDER.match(text, j)
                assert m is not None
                if self.ambiguous:
                    raise TemplateError("{{ }} cannot follow $'...' with a backslash in it")
                self.slots[int(m.group(1))] = _Slot(
                    frame.kind, i, frame.delimiter, frame.strip_tabs
                )
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
                raise TemplateError(
                    "a {{ }} value cannot stand inside a command in a here-document"
                )
            j += 1
        return end + 1


@lru_cache(maxsize=1024)
def _shell_script(source: str) -> _Script:
    text, exprs = _shell_segments(source)
    slots = _Scanner(text).scan()
    return _Script(text, exprs, [slots[k] for k in range(len(exprs))])


def check_shell_command(source: str) -> None:
    """Check a `shell: true` script before any value exists (for validate and plan).

    Raises:
        TemplateError: `{% %}` blocks, unbalanced quotes, or a value where it cannot be quoted.
    """
    _shell_script(source)


def _quote_for(slot: _Slot, value: str, expr: str) -> str:
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
            raise TemplateError(
                f"only a number can stand inside $(( )); '{expr.strip()}' is '{value}'"
            )
        return value
    if "\n" in value:
        raise TemplateError(f"'{expr.strip()}' spans lines and cannot stand in a here-document")
    if context == "heredoc":
        return re.sub(r"([\\$`])", r"\\\1", value)
    return value  # heredoc_quoted: taken as written


def _single(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def render_shell(source: str, context: Mapping[str, Any]) -> str:
    """Render a `shell: true` script: each value escaped for the quoting it stands in.

    Args:
        source: the script as written, `{{ }}` expressions only.
        context: the names it may read.

    Returns:
        The script for `/bin/sh -c`, in which every value is data.
    """
    script = _shell_script(source)
    quoted: list[str] = []
    for expr, slot in zip(script.exprs, script.slots, strict=True):
        value = _value(expr, context)
        quoted.append(_quote_for(slot, value, expr))
    out = _PLACEHOLDER.sub(lambda m: quoted[int(m.group(1))], script.text)
    for k, slot in enumerate(script.slots):
        if slot.context in ("heredoc", "heredoc_quoted"):
            _check_heredoc_line(script, k, slot, quoted)
    return out


def _check_heredoc_line(script: _Script, k: int, slot: _Slot, quoted: list[str]) -> None:
    end = script.text.find("\n", slot.line_start)
    line = script.text[slot.line_start : end if end >= 0 else len(script.text)]
    line = _PLACEHOLDER.sub(lambda m: quoted[int(m.group(1))], line)
    if (line.lstrip("\t") if slot.strip_tabs else line) == slot.delimiter:
        raise TemplateError(
            f"'{script.exprs[k].strip()}' would end the here-document '{slot.delimiter}' early"
        )


def _value(expr: str, context: Mapping[str, Any]) -> str:
    """One `{{ expr }}` of a shell script, rendered (null as an empty string)."""
    source = "{{" + expr + "}}"
    try:
        return str(_compiled(source, True).render(context))
    except TemplateError:
        raise
    except Exception as exc:  # noqa: BLE001 - any render error is the runbook's, shown as one line
        raise TemplateError(f"cannot render '{source.strip()}': {exc}") from None


# --- SQL (`where`, `coverage.expected`, `until`): only numbers may be written in --------------

_SQL_FILTER = "runbook_sql_number"


def _sql_number(value: Any, expr: str) -> Any:
    if isinstance(value, Undefined):
        str(value)  # raises: 'x' is undefined
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TemplateError(
            "only numbers can be written into SQL with {{ }}; "
            f"bind '{expr}' as a query parameter: @name"
        )
    return value


_SQL_ENV = _Sandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
_SQL_ENV.filters[_SQL_FILTER] = _sql_number


@lru_cache(maxsize=1024)
def _sql_template(source: str) -> Any:
    """Compile SQL with every `{{ expr }}` passed through the number check."""
    out: list[str] = []
    inner: list[str] | None = None
    try:
        for _, ttype, value in _ENV.lexer.tokeniter(source, None):
            if ttype == "variable_begin":
                inner = []
                out.append(value)
            elif ttype == "variable_end":
                expr = "".join(inner or []).strip()
                out.append(f" ({expr})|{_SQL_FILTER}({expr!r}) {value}")
                inner = None
            elif inner is not None:
                inner.append(value)
            else:
                out.append(value)
        return _SQL_ENV.from_string("".join(out))
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error: {exc.message}") from None


def render_sql(source: str, context: Mapping[str, Any]) -> str:
    """Render a SQL field: `{{ }}` may write numbers only; other values are bound as `@name`.

    Args:
        source: the SQL as written.
        context: the names it may read.

    Returns:
        The SQL; `source` itself when it holds no template syntax.

    Raises:
        TemplateError: a value that is not a number, or any render error.
    """
    if not is_template(source):
        return source
    try:
        return str(_sql_template(source).render(context))
    except TemplateError:
        raise
    except Exception as exc:  # noqa: BLE001 - any render error is the runbook's, shown as one line
        raise TemplateError(f"cannot render '{source.strip()}': {exc}") from None


# --- expectations --------------------------------------------------------------------------------

_MISSING = object()


def _lookup(root: Any, keys: tuple[str, ...]) -> Any:
    node = root
    for key in keys:
        if isinstance(node, Mapping):
            node = node.get(key, _MISSING)
        else:
            node = getattr(node, key, _MISSING)
        if node is _MISSING or node is None:
            return node
    return node


def evaluate_expectation(expr: str, context: Mapping[str, Any]) -> bool:
    """Judge an `expect` expression: false when it reads a null, else its truth.

    A capture that did not match is null, and an expectation that reads null is not met, even
    `n != 5`. A name (or a `steps.<id>....` value) the expression reads that is null makes it
    false without evaluating it.

    Args:
        expr: the expression, such as `records_saved == games * 2`.
        context: the names it may read.

    Returns:
        Whether the expectation is met.

    Raises:
        TemplateError: the expression is invalid or reads an undefined name.
    """
    names = expression_names(expr)
    if any(name in context and context[name] is None for name in names):
        return False
    if "steps" in names and "steps" in context:
        for path in step_paths(expr, expression=True):
            if _lookup(context["steps"], path) is None:
                return False
    return bool(evaluate(expr, context))
