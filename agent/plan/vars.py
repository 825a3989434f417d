"""Typed vars: defaults, `--var name=value` overrides, and errors that name the var."""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from agent.errors import UsageError
from agent.plan.model import Runbook, VarSpec

__all__ = ["coerce", "parse_var_args", "resolve_vars"]

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}
_FORMS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "date": "a date (YYYY-MM-DD)",
    "list": "a comma-separated list",
    "string": "a string",
}


def coerce(name: str, spec: VarSpec, value: Any) -> Any:
    """Turn a value from YAML or the command line into the var's type.

    Args:
        name: the var's name, for the message.
        spec: its declaration.
        value: the value to convert.

    Returns:
        The typed value.

    Raises:
        UsageError: naming the var, its type and the bad value.
    """
    try:
        out = _convert(spec.type, value)
    except (ValueError, TypeError):
        # A secret's value is never echoed, not even a wrong one.
        shown = "the value given" if spec.secret else repr(value)
        raise UsageError(
            f"var '{name}' is of type {spec.type}: {shown} is not {_FORMS[spec.type]}"
        ) from None
    if spec.choices is not None and out not in spec.choices:
        allowed = ", ".join(str(c) for c in spec.choices)
        shown = "another value" if spec.secret else repr(value)
        raise UsageError(f"var '{name}' must be one of {allowed}; got {shown}")
    return out


def _convert(kind: str, value: Any) -> Any:
    if kind == "string":
        if isinstance(value, dt.date | int | float | str) and not isinstance(value, bool):
            return str(value)
        raise TypeError
    if kind == "int":
        if isinstance(value, bool | float):
            raise TypeError
        return int(value)
    if kind == "float":
        if isinstance(value, bool):
            raise TypeError
        return float(value)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError
    if kind == "date":
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        if isinstance(value, str):
            return dt.date.fromisoformat(value.strip())
        raise TypeError
    if kind == "list":
        if isinstance(value, list):
            return value
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        raise TypeError
    raise ValueError(kind)


def parse_var_args(items: Sequence[str]) -> dict[str, str]:
    """Parse `--var name=value` arguments.

    Args:
        items: the raw arguments.

    Returns:
        name -> value (strings; typed later by `resolve_vars`).
    """
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--var {item!r}: write it as name=value")
        out[name.strip()] = value
    return out


def resolve_vars(
    runbook: Runbook, overrides: Mapping[str, str], *, require: bool = True
) -> dict[str, Any]:
    """Give every var its typed value: the override, else the default.

    Args:
        runbook: the runbook declaring the vars.
        overrides: values from `--var`.
        require: fail on a required var without value (False for `validate`).

    Returns:
        name -> typed value (None for a var with neither value nor default).
    """
    for name in overrides:
        if name not in runbook.vars:
            close = difflib.get_close_matches(name, list(runbook.vars), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            declared = ", ".join(runbook.vars) or "none"
            raise UsageError(f"unknown var '{name}'{hint} (declared: {declared})")
    values: dict[str, Any] = {}
    missing: list[str] = []
    for name, spec in runbook.vars.items():
        if name in overrides:
            values[name] = coerce(name, spec, overrides[name])
        elif spec.default is not None:
            values[name] = coerce(name, spec, spec.default)
        else:
            if spec.required and require:
                missing.append(name)
            values[name] = None
    if missing:
        args = " ".join(f"--var {n}=<{runbook.vars[n].type}>" for n in missing)
        raise UsageError(
            f"missing required var{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(m) for m in missing)}: pass {args}"
        )
    return values
