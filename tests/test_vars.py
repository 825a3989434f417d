"""Typed vars: coercion, `--var` overrides, required vars, messages that name the var."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from agent.errors import UsageError
from agent.plan.loader import load_text
from agent.plan.model import VarSpec
from agent.plan.vars import coerce, parse_var_args, resolve_vars


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("date", "2026-01-25", dt.date(2026, 1, 25)),
        ("date", dt.date(2026, 1, 25), dt.date(2026, 1, 25)),
        ("date", dt.datetime(2026, 1, 25, 7, 30), dt.date(2026, 1, 25)),
        ("int", "8", 8),
        ("int", 8, 8),
        ("float", "0.95", 0.95),
        ("bool", "yes", True),
        ("bool", "Off", False),
        ("bool", True, True),
        ("list", "a, b,,c", ["a", "b", "c"]),
        ("list", ["x", 1], ["x", 1]),
        ("string", 42, "42"),
        ("string", dt.date(2026, 1, 25), "2026-01-25"),
    ],
)
def test_coerce(kind: str, value: Any, expected: Any) -> None:
    assert coerce("v", VarSpec.model_validate({"type": kind}), value) == expected


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("date", "2026-02-30", "var 'v' is of type date: '2026-02-30' is not a date (YYYY-MM-DD)"),
        ("date", "yesterday", "var 'v' is of type date: 'yesterday' is not a date (YYYY-MM-DD)"),
        ("int", "8.5", "var 'v' is of type int: '8.5' is not an integer"),
        ("int", True, "var 'v' is of type int: True is not an integer"),
        ("float", "lots", "var 'v' is of type float: 'lots' is not a number"),
        ("bool", "maybe", "var 'v' is of type bool: 'maybe' is not true or false"),
        ("list", 3, "var 'v' is of type list: 3 is not a comma-separated list"),
        ("string", ["a"], "var 'v' is of type string: ['a'] is not a string"),
    ],
)
def test_coerce_errors_name_the_var(kind: str, value: Any, message: str) -> None:
    with pytest.raises(UsageError) as info:
        coerce("v", VarSpec.model_validate({"type": kind}), value)
    assert str(info.value) == message


def test_choices() -> None:
    spec = VarSpec.model_validate({"type": "string", "choices": ["full", "delta"]})
    assert coerce("mode", spec, "full") == "full"
    with pytest.raises(UsageError) as info:
        coerce("mode", spec, "fast")
    assert str(info.value) == "var 'mode' must be one of full, delta; got 'fast'"


def test_parse_var_args() -> None:
    assert parse_var_args(["date=2026-01-25", "q=a=b", "empty="]) == {
        "date": "2026-01-25",
        "q": "a=b",
        "empty": "",
    }
    with pytest.raises(UsageError) as info:
        parse_var_args(["date"])
    assert str(info.value) == "--var 'date': write it as name=value"
    with pytest.raises(UsageError):
        parse_var_args(["=x"])


RUNBOOK = """\
version: 1
id: vars
title: T
vars:
  date: {type: date, required: true}
  games: {type: int, default: 8}
  teams: {type: list, default: [LAL, BOS]}
  full: {type: bool}
steps:
  - {id: a, kind: run, command: "echo {{ date }} {{ games }}"}
"""


def _rb() -> Any:
    return load_text(RUNBOOK, Path("v.yaml")).runbook


def test_resolve_vars() -> None:
    values = resolve_vars(_rb(), {"date": "2026-01-25", "games": "10"})
    assert values == {
        "date": dt.date(2026, 1, 25),
        "games": 10,
        "teams": ["LAL", "BOS"],
        "full": None,
    }


def test_missing_required_var() -> None:
    with pytest.raises(UsageError) as info:
        resolve_vars(_rb(), {})
    assert str(info.value) == "missing required var 'date': pass --var date=<date>"
    assert resolve_vars(_rb(), {}, require=False)["date"] is None


def test_override_type_error_names_the_var() -> None:
    with pytest.raises(UsageError) as info:
        resolve_vars(_rb(), {"date": "2026-01-25", "games": "eight"})
    assert str(info.value) == "var 'games' is of type int: 'eight' is not an integer"


def test_unknown_override() -> None:
    with pytest.raises(UsageError) as info:
        resolve_vars(_rb(), {"dat": "2026-01-25"})
    assert (
        str(info.value)
        == "unknown var 'dat'; did you mean 'date'? (declared: date, games, teams, full)"
    )
