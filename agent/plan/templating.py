"""Sandboxed, strict Jinja2 for runbook strings; commands split before substitution; expressions."""

from __future__ import annotations

import difflib
import functools
import math
import re
import shlex
from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from typing import Any, ParamSpec, TypeVar

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from agent.errors import RunbookError
from agent.plan import shell

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


_P = ParamSpec("_P")
_R = TypeVar("_R")
_TOO_DEEP = (
    "the template nests too deeply to be read (hundreds of parentheses or operators in one "
    "expression): split it, or compute the value in a step"
)


def _bounded(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """Turn Python's recursion limit, which a deep expression reaches, into a TemplateError."""

    @functools.wraps(func)
    def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return func(*args, **kwargs)
        except RecursionError:
            raise TemplateError(_TOO_DEEP) from None

    return call


def is_template(source: str) -> bool:
    """Return True when `source` holds Jinja2 syntax (and so must be rendered)."""
    # Most strings hold no brace at all: one scan instead of three (and no generator) was
    # 0.12 s of 0.16 s over 20,000 calls in `plan --offline` of 5,000 steps (cProfile).
    return "{" in source and any(m in source for m in _MARKERS)


@lru_cache(maxsize=4096)
@_bounded
def _parse(source: str) -> nodes.Template:
    try:
        return _ENV.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error: {exc.message}") from None


@lru_cache(maxsize=4096)
@_bounded
def _compiled(source: str, shell: bool = False) -> Any:
    env = _SHELL_ENV if shell else _ENV
    try:
        return env.from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error: {exc.message}") from None


@lru_cache(maxsize=4096)
@_bounded
def _expression(source: str) -> Callable[..., Any]:
    try:
        return _ENV.compile_expression(source, undefined_to_none=False)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"invalid expression '{source}': {exc.message}") from None


@_bounded
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
    return _rendered(_compiled, source, context)


@_bounded
def _rendered(compile_: Callable[[str], Any], source: str, context: Mapping[str, Any]) -> str:
    """Compile (cached) and render `source`; any error is the runbook's, as one TemplateError."""
    try:
        return str(compile_(source).render(context))
    except TemplateError:
        raise
    except Exception as exc:  # noqa: BLE001 - any render error is the runbook's, shown as one line
        raise TemplateError(f"cannot render '{source.strip()}': {exc}") from None


@_bounded
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
    if _QUOTING.search(protected) is None:
        # Without quotes or backslashes shlex only splits at its whitespace; its tokenizer
        # was 0.4 s of `plan --offline` for 5,000 steps (cProfile, 10,000 calls).
        words = _WORD.findall(protected)
    else:
        try:
            words = shlex.split(protected, posix=True)
        except ValueError as exc:
            raise TemplateError(f"cannot split command: {exc}") from None
    return [_restore(w, parts) if "\x00" in w else w for w in words]


_QUOTING = re.compile(r"['\"\\]")
# shlex's whitespace in POSIX mode (not str.split's, which also splits at \v, \f and more).
_WORD = re.compile(r"[^ \t\r\n]+")


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


_NO_SUCH = re.compile(r"No (filter|test) named '([^']*)'")


def _compile_message(message: str | None) -> str:
    """Jinja's compile error as a line for a person, with the closest filter or test named."""
    text = message or "the template does not compile"
    m = _NO_SUCH.search(text)
    if m is None:
        return f"template error: {text}"
    kind, name = m.groups()
    known = _ENV.filters if kind == "filter" else _ENV.tests
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown {kind} '{name}'{hint}"


@_bounded
def _names(tree: nodes.Template) -> set[str]:
    unsafe = _unsafe(tree)
    if unsafe is not None:
        raise TemplateError(f"unsafe template: access to '{unsafe}' is not allowed")
    try:
        # Finding the names compiles the tree, which is where an unknown filter or test shows.
        return set(meta.find_undeclared_variables(tree))
    except TemplateSyntaxError as exc:
        raise TemplateError(_compile_message(exc.message)) from None


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


@_bounded
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
                parts.append(shell.placeholder(len(exprs) - 1))
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


@lru_cache(maxsize=1024)
@_bounded
def _shell_script(source: str) -> shell.Script:
    text, exprs = _shell_segments(source)
    try:
        return shell.scan(text, exprs)
    except shell.ShellError as exc:  # one error class for every template problem
        raise TemplateError(str(exc)) from None


def check_shell_command(source: str) -> None:
    """Check a `shell: true` script before any value exists (for validate and plan).

    Raises:
        TemplateError: `{% %}` blocks, unbalanced quotes, or a value where it cannot be quoted.
    """
    _shell_script(source)


def render_shell(source: str, context: Mapping[str, Any]) -> str:
    """Render a `shell: true` script: each value escaped for the quoting it stands in.

    Args:
        source: the script as written, `{{ }}` expressions only.
        context: the names it may read.

    Returns:
        The script for `/bin/sh -c`, in which every value is data.
    """
    script = _shell_script(source)
    try:
        return shell.render(script, lambda expr: _value(expr, context))
    except shell.ShellError as exc:
        raise TemplateError(str(exc)) from None


def _value(expr: str, context: Mapping[str, Any]) -> str:
    """One `{{ expr }}` of a shell script, rendered (null as an empty string)."""
    return _rendered(_shell_value, "{{" + expr + "}}", context)


def _shell_value(source: str) -> Any:
    return _compiled(source, True)


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
@_bounded
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
    return _rendered(_sql_template, source, context)


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


@_bounded
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
