"""The committed JSON Schemas are current, every key has a description that docs/format.md names,
and every runbook in the repo points at the schema and fits it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from agent.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE
from agent.incident.incident import incident_schema_text
from agent.plan.loader import load_runbook
from agent.plan.schema import schema_text
from agent.record import CAUSES, RunStatus, Status

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


# --- descriptions: every key says what it means, for editors' hover and for docs/format.md ---

INCIDENT_SCHEMA = ROOT / "runbooks" / "incident.schema.json"
FORMAT_DOC = ROOT / "docs" / "format.md"


def _schemas() -> dict[str, dict[str, Any]]:
    return {
        "runbook": json.loads(schema_text()),
        "incident": json.loads(incident_schema_text()),
    }


def _properties(node: Any, where: str = "") -> Iterator[tuple[str, str, Any]]:
    """Every (where, name, schema) of a property, in the schema and all its $defs."""
    if isinstance(node, dict):
        props = node.get("properties")
        if isinstance(props, dict):
            for name, sub in props.items():
                yield where, name, sub
        for key, value in node.items():
            yield from _properties(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _properties(value, f"{where}/{i}")


def test_every_property_has_a_description() -> None:
    missing = [
        f"{name}: {where}/properties/{prop}"
        for name, schema in _schemas().items()
        for where, prop, sub in _properties(schema)
        if not (isinstance(sub, dict) and str(sub.get("description", "")).strip())
    ]
    assert not missing, "properties without a description (add Field(description=...)):\n" + (
        "\n".join(missing)
    )


def test_every_model_has_a_description() -> None:
    for name, schema in _schemas().items():
        for def_name, sub in schema["$defs"].items():
            assert str(sub.get("description", "")).strip(), f"{name}: $defs/{def_name}"
        assert schema.get("description"), name


def test_the_schemas_cover_many_properties() -> None:
    """The walk above finds the nested ones too (steps, checks, captures, shortfalls)."""
    names = {prop for s in _schemas().values() for _, prop, _ in _properties(s)}
    assert {"pattern", "required", "fatal", "on_shortfall", "coverage", "crashed"} <= names
    assert {"root_causes", "success_criteria", "action_items", "event"} <= names


def test_format_doc_names_every_property() -> None:
    text = FORMAT_DOC.read_text(encoding="utf-8")
    missing = sorted(
        {
            f"{name}: {prop}"
            for name, schema in _schemas().items()
            for _, prop, _ in _properties(schema)
            if f"`{prop}`" not in text
        }
    )
    assert not missing, "docs/format.md does not name these keys (as `key`):\n" + "\n".join(missing)


def test_format_doc_names_every_cause_and_status() -> None:
    text = FORMAT_DOC.read_text(encoding="utf-8")
    names = [*CAUSES, *(s.value for s in Status), *(s.value for s in RunStatus)]
    assert [n for n in names if f"`{n}`" not in text] == []
    for code in (EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL, EXIT_INTERRUPTED):
        assert f"\n| {code} |" in text, f"exit code {code} is not in the table of docs/format.md"


def test_format_doc_holds_the_spec_example_verbatim() -> None:
    example = (ROOT / "runbooks" / "examples" / "spec-example.yaml").read_text(encoding="utf-8")
    assert f"```yaml\n{example}```" in FORMAT_DOC.read_text(encoding="utf-8")
