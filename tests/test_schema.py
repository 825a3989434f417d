"""The committed JSON Schema is current, and every runbook in the repo points at it and fits it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest
import yaml

from agent.plan.loader import load_runbook
from agent.plan.schema import schema_text

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "runbooks" / "runbook.schema.json"
# Incident files (`runbook postmortem`) sit beside their runbooks and have a schema of their own.
RUNBOOKS = sorted(
    p for p in (ROOT / "runbooks").rglob("*.yaml") if not p.name.startswith("incident")
)


def test_committed_schema_is_current() -> None:
    assert SCHEMA.read_text(encoding="utf-8") == schema_text(), (
        "runbooks/runbook.schema.json is stale: run `runbook schema > runbooks/runbook.schema.json`"
    )


def test_schema_is_valid_json_schema() -> None:
    schema = json.loads(schema_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["required"] == ["version", "id", "title", "steps"]
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("path", RUNBOOKS, ids=[str(p.relative_to(ROOT)) for p in RUNBOOKS])
def test_repo_runbook_points_at_schema_and_fits_it(path: Path) -> None:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    prefix = "# yaml-language-server: $schema="
    assert first.startswith(prefix), (
        f"{path} must start with '{prefix}<path to runbook.schema.json>'"
    )
    target = (path.parent / first.removeprefix(prefix).strip()).resolve()
    assert target == SCHEMA.resolve(), (
        f"{path}: the $schema path should be {os.path.relpath(SCHEMA, path.parent)}"
    )
    load_runbook(path)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data = json.loads(json.dumps(data, default=str))  # dates as strings, as an editor sees them
    jsonschema.validate(data, json.loads(schema_text()))


def test_there_are_runbooks() -> None:
    assert len(RUNBOOKS) >= 2


def _step_fits(step: dict[str, object]) -> bool:
    doc = {"version": 1, "id": "x", "title": "T", "steps": [step]}
    return jsonschema.Draft202012Validator(json.loads(schema_text())).is_valid(doc)


def test_schema_takes_on_shortfall_in_both_forms_and_expect_coverage() -> None:
    run = {"id": "a", "kind": "run", "command": "ls"}
    assert _step_fits({**run, "on_shortfall": {"issue": "x", "priority": "HIGH"}})
    assert _step_fits(
        {**run, "on_shortfall": {"crashed": {"issue": "x"}, "PARTIAL": {"issue": "y"}}}
    )
    assert _step_fits({**run, "on_shortfall": {"default": {"issue": "x"}}})
    assert not _step_fits({**run, "on_shortfall": {"crashd": {"issue": "x"}}})
    assert not _step_fits({**run, "on_shortfall": {"crashed": {"isue": "x"}}})
    coverage = {"key": ["game_id"], "expected": "SELECT game_id FROM s.t"}
    check = {"table": "a.b", "expect": "coverage", "coverage": coverage}
    assert _step_fits({"id": "v", "kind": "verify", "checks": [check]})
