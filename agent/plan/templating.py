"""Sandboxed, strict Jinja2 for runbook strings, commands split before substitution, and expressions."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
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


_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
# For `shell: true` steps every substituted value is quoted, so it stays one word of data.
_SHELL_ENV = SandboxedEnvironment(
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
        return _ENV.compile_expression(source, undefined_to_none=False)  # type: ignore[no-any-return]
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
    except Exception as exc:  # noqa: BLE001
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
        return ["/bin/sh", "-c", render(script, context, shell=True)]
    words = split_command(command) if isinstance(command, str) else list(command)
    return [render(w, context) for w in words]


def _walk(node: nodes.Node) -> Iterator[nodes.Node]:
    yield node
    for child in node.iter_child_nodes():
        yield from _walk(child)


def _unsafe(tree: nodes.Template) -> str | None:
    for node in _walk(tree):
        if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
            return node.attr
        if (
            isinstance(node, nodes.Getitem)
            and isinstance(node.arg, nodes.Const)
            and isinstance(node.arg.value, str)
            and node.arg.value.startswith("_")
        ):
            return node.arg.value
    return None


def _names(tree: nodes.Template) -> set[str]:
    from jinja2 import meta

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


def _step_refs(tree: nodes.Template) -> set[str]:
    refs: set[str] = set()
    for node in _walk(tree):
        inner: nodes.Node | None = None
        key: Any = None
        if isinstance(node, nodes.Getattr):
            inner, key = node.node, node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            inner, key = node.node, node.arg.value
        if isinstance(inner, nodes.Name) and inner.name == "steps" and isinstance(key, str):
            refs.add(key)
    return refs


def step_references(source: str, *, expression: bool = False) -> set[str]:
    """Return the step ids named as `steps.<id>` (or `steps['<id>']`) in a template or expression."""
    if not expression and not is_template(source):
        return set()
    tree = _parse_expression(source) if expression else _parse(source)
    return _step_refs(tree)
