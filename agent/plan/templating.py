"""Sandboxed, strict Jinja2 for runbook strings; commands split before substitution; expressions."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from agent.errors import RunbookError

__all__ = [
    "TemplateError",
    "evaluate",
    "expression_names",
    "is_template",
    "render",
    "render_command",
    "step_references",
    "template_names",
]


class TemplateError(RunbookError):
    """A template or expression that cannot be parsed or rendered."""


def _tojson_safe(value: Any) -> str:
    return shlex.quote("" if value is None else str(value))


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
# For `shell: true` steps every substituted value is quoted, so it stays one word of data.
_SHELL_ENV = _Sandbox(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True, finalize=_tojson_safe
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
def _compiled(source: str, shell: bool) -> Any:
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
        shell: quote every substituted value for a POSIX shell.

    Returns:
        The rendered string; `source` itself when it holds no template syntax.
    """
    if not is_template(source):
        return source
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
    every substituted value is quoted.

    Args:
        command: the step's command (string or list).
        context: the names it may read.
        shell: run through `/bin/sh -c`.

    Returns:
        The argv to execute.
    """
    if shell:
        script = command if isinstance(command, str) else shlex.join(command)
        return ["/bin/sh", "-c", render(script, context, shell=True)]  # noqa: S604 - quoted
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


def template_names(source: str) -> set[str]:
    """Return the top-level names a template reads (raises TemplateError on bad syntax)."""
    if not is_template(source):
        return set()
    return _names(_parse(source))


def expression_names(expr: str) -> set[str]:
    """Return the top-level names an expression reads (raises TemplateError on bad syntax)."""
    return _names(_parse_expression(expr))


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


def _chain(node: nodes.Node) -> tuple[str, ...] | None:
    """`steps.a.captures.x` -> ('a', 'captures', 'x'); None when it does not start at `steps`."""
    keys: list[str] = []
    while (acc := _access(node)) is not None:
        node, key = acc
        keys.append(key)
    if isinstance(node, nodes.Name) and node.name == "steps" and keys:
        return tuple(reversed(keys))
    return None


def _step_paths(tree: nodes.Template) -> set[tuple[str, ...]]:
    chains: set[tuple[str, ...]] = set()
    for node in _walk(tree):
        chain = _chain(node)
        if chain is not None:
            chains.add(chain)
    # Keep the longest reading of each place: `steps.a.status` also walks `steps.a`.
    return {c for c in chains if not any(len(o) > len(c) and o[: len(c)] == c for o in chains)}


def step_paths(source: str, *, expression: bool = False) -> set[tuple[str, ...]]:
    """Return every `steps.<id>.<field>...` a template or expression reads, as key tuples.

    Args:
        source: the template or expression.
        expression: `source` is an expression (`expect`, `when`), not a template.

    Returns:
        Tuples such as `('verify_counts', 'status')`; only constant keys are followed.
    """
    if not expression and not is_template(source):
        return set()
    tree = _parse_expression(source) if expression else _parse(source)
    return _step_paths(tree)


def step_references(source: str, *, expression: bool = False) -> set[str]:
    """Return the step ids read as `steps.<id>` (or `steps['<id>']`) by a template or expression."""
    if not expression and not is_template(source):
        return set()
    return {p[0] for p in step_paths(source, expression=expression)}
