"""The incident file: the demo loads, the committed schema is current, problems are located."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from agent.errors import ValidationError
from agent.incident.incident import incident_schema_text, load_incident

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "runbooks" / "incident.schema.json"
DEMO_INCIDENT = ROOT / "runbooks" / "demo" / "incident.yaml"

HEAD = """\
# yaml-language-server: $schema=incident.schema.json
id: inc-1
title: Something broke
severity: SEV2
detected: 2026-01-25T23:40:00Z
summary: It broke.
root_causes: [A paused job]
"""
MANUAL = """\
actions:
  - id: tell_people
    manual: Tell people.
    status: done
"""


def _problems(text: str, tmp_path: Path, name: str = "incident.yaml") -> list[str]:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    with pytest.raises(ValidationError) as info:
        load_incident(path)
    return [str(p) for p in info.value.problems]


def test_committed_schema_is_current() -> None:
    assert SCHEMA.read_text(encoding="utf-8") == incident_schema_text(), (
        "runbooks/incident.schema.json is stale: write agent.incident.incident_schema_text() to it"
    )
    schema = json.loads(incident_schema_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert {"id", "title", "severity", "detected", "actions"} <= set(schema["required"])


def test_demo_incident_loads_and_points_at_its_schema() -> None:
    first = DEMO_INCIDENT.read_text(encoding="utf-8").splitlines()[0]
    assert first == "# yaml-language-server: $schema=../incident.schema.json"
    loaded = load_incident(DEMO_INCIDENT)
    inc = loaded.incident
    assert inc.severity == "SEV2"
    assert [a.id for a in inc.actions] == [
        "restart_scheduler",
        "notify_predictions",
        "team_context",
        "player_context",
    ]
    assert set(loaded.runbooks) == {"restart_scheduler", "team_context", "player_context"}
    assert loaded.runbooks["team_context"].runbook.id == "backfill-game-context"
    assert str(loaded.values["team_context"]["date"]) == "2026-01-25"
    assert inc.detected.tzinfo is not None and inc.resolved is not None
    assert len(inc.success_criteria) == 5 and len(inc.action_items) == 3


def test_minimal_incident_loads(tmp_path: Path) -> None:
    path = tmp_path / "incident.yaml"
    path.write_text(HEAD + MANUAL, encoding="utf-8")
    inc = load_incident(path).incident
    assert inc.actions[0].status == "done"
    assert inc.resolved is None


def test_unknown_and_missing_keys(tmp_path: Path) -> None:
    text = HEAD.replace("severity: SEV2", "severty: SEV2") + MANUAL + "owner: me\n"
    assert _problems(text, tmp_path) == [
        "incident.yaml:4:1: unknown key 'severty' in the incident; did you mean 'severity'?",
        "incident.yaml:12:1: unknown key 'owner' in the incident",
    ]


def test_bad_values_are_located(tmp_path: Path) -> None:
    text = (
        HEAD.replace("SEV2", "high").replace("2026-01-25T23:40:00Z", "yesterday")
        + """\
actions:
  - id: Tell-People
    manual: Tell people.
    status: finished
action_items:
  - {title: Alert, owner: Platform, priority: URGENT, due: 2026-02-30, type: detect}
"""
    )
    assert _problems(text, tmp_path) == [
        "incident.yaml:4:11: 'severity' of the incident: invalid value 'high':"
        " write SEV0 to SEV5, or P0 to P4",
        "incident.yaml:5:11: 'detected' of the incident: input should be a valid datetime or"
        " date, input is too short",
        "incident.yaml:9:9: 'id' of action 'Tell-People': invalid value 'Tell-People': an action"
        " id is lowercase letters, digits and '_', starting with a letter (criteria read it as"
        " actions.<id>)",
        "incident.yaml:11:13: 'status' of action 'Tell-People': input should be 'done',"
        " 'partially done', 'failed' or 'not started'",
        "incident.yaml:13:47: 'priority' of action item 1: input should be 'CRITICAL', 'HIGH',"
        " 'MEDIUM' or 'LOW'",
        "incident.yaml:13:60: invalid value '2026-02-30': day is out of range for month",
    ]


def test_action_needs_one_kind(tmp_path: Path) -> None:
    text = HEAD + "actions:\n  - id: a\n    title: nothing to do\n"
    assert _problems(text, tmp_path) == [
        "incident.yaml:9:5: action 'a': an action needs exactly one of 'runbook' (a file) or"
        " 'manual' (prose)",
    ]


def test_runbooks_vars_and_criteria_are_checked(tmp_path: Path) -> None:
    (tmp_path / "rb.yaml").write_text(
        "version: 1\nid: rb\ntitle: T\nvars: {date: {type: date}}\n"
        "steps:\n  - {id: go, kind: run, command: 'true'}\n",
        encoding="utf-8",
    )
    text = (
        HEAD
        + """\
actions:
  - id: fix
    runbook: rb.yaml
    vars: {date: 2026-01-25}
  - id: bad_vars
    runbook: rb.yaml
    vars: {dates: 2026-01-25}
  - id: gone
    runbook: missing.yaml
  - id: fix
    manual: twice
success_criteria:
  - text: fixed
    expect: actions.fixx.status == 'COMPLETE'
  - text: step
    expect: actions.fix.steps.goo.status == 'SUCCESS' and count > 1
    partial: actions.fix.stat == 'x'
"""
    )
    assert _problems(text, tmp_path) == [
        "incident.yaml:14:11: action 'bad_vars': unknown var 'dates'; did you mean 'date'?"
        " (declared: date)",
        "incident.yaml:16:14: action 'gone': runbook 'missing.yaml' does not exist",
        "incident.yaml:17:9: duplicate action id 'fix' (first at line 9)",
        "incident.yaml:21:13: 'expect' of criterion 1 reads actions.fixx, which is not an"
        " action; did you mean 'fix'?",
        "incident.yaml:23:13: undefined name 'count' in 'expect' of criterion 2: criteria read"
        " actions.<id>",
        "incident.yaml:23:13: 'expect' of criterion 2 reads actions.fix.steps.goo, which is"
        " not a step of rb.yaml; did you mean 'go'?",
        "incident.yaml:24:14: 'partial' of criterion 2 reads actions.fix.stat: an action has id,"
        " title, state, status, run_id, runs, steps, captures, counts; did you mean 'state'?",
    ]


def test_yaml_errors_are_located(tmp_path: Path) -> None:
    assert _problems("id: [unclosed\n", tmp_path) == [
        "incident.yaml:2:1: invalid YAML: did not find expected ',' or ']'"
        " (while parsing a flow sequence)",
    ]
    assert _problems("- a list\n", tmp_path) == [
        "incident.yaml:1:1: an incident is a mapping of keys such as id, title, severity and"
        " actions, not a list",
    ]
