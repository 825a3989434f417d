"""`--format json`: one documented document per command, valid against the committed schema."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema

from tests.procs import run_cli

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "docs" / "assistant-results.schema.json").read_text(encoding="utf-8"))
PY = sys.executable
SECRET = "hunter2-Qx7-secret"
Write = Callable[..., Path]


def validate_schema(document: dict[str, Any]) -> None:
    """Fail unless `document` is one of the schema's documents (for test_mcp too)."""
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.Draft202012Validator(SCHEMA).validate(document)


def _runbook(write_runbook: Write) -> Path:
    return write_runbook(f"""
        version: 1
        id: quick
        title: Quick
        vars:
          token: {{type: string, secret: true, required: true}}
        steps:
          - id: hello
            kind: run
            command: >-
              {PY} -c "import sys; print('Records saved: 3'); print('key', sys.argv[1])"
              "{{{{ token }}}}"
            capture: {{n: 'Records saved: (\\d+)'}}
            expect: [n == 3]
          - id: short
            kind: run
            command: >-
              {PY} -c "print('Records saved: 1')"
            capture: {{n: 'Records saved: (\\d+)'}}
            expect: [n == 3]
          - id: gone
            kind: export
            command: {PY} bin/nothing.py
        """)


def _json(*args: str, cwd: Path, code: int = 0) -> dict[str, Any]:
    res = run_cli(*args, "--format", "json", cwd=cwd)
    assert res.returncode == code, res.stderr
    data: dict[str, Any] = json.loads(res.stdout)
    assert SECRET not in res.stdout
    return data


def test_every_command_prints_its_document(tmp_path: Path, write_runbook: Write) -> None:
    _runbook(write_runbook)
    run = _json("run", "rb.yaml", "--var", f"token={SECRET}", "-q", cwd=tmp_path, code=3)
    validate_schema(run)
    assert run["kind"] == "run" and run["status"] == "PARTIALLY COMPLETE"
    assert run["finished"] is True and run["exit_code"] == 3
    folder = run["run_dir"]
    assert folder == f"reports/{run['run_id']}" and run["report"] == f"{folder}/report.md"
    assert run["runbook_path"] == "rb.yaml"
    assert run["vars"] == {"token": "***"}
    assert run["tally"] == {"SUCCESS": 1, "PARTIAL": 1, "NOT_FOUND": 1}
    assert run["shortfalls"] == ["short", "gone"]
    steps = {s["id"]: s for s in run["steps"]}
    assert steps["hello"]["captures"] == {"n": 3}
    assert steps["hello"]["output_tail"] == ["Records saved: 3", "key ***"]
    assert steps["short"]["cause"] == "expectation"
    assert steps["short"]["expectations"] == [{"expr": "n == 3", "ok": False, "error": None}]
    assert steps["gone"]["cause"] == "not_found" and steps["gone"]["missing"] == "bin/nothing.py"

    show = _json("show", folder, cwd=tmp_path)
    validate_schema(show)
    assert show["kind"] == "show"
    assert {k: v for k, v in show.items() if k != "kind"} == {
        k: v for k, v in run.items() if k != "kind"
    }

    report = _json("report", folder, cwd=tmp_path)
    validate_schema(report)
    assert report["path"] == f"{folder}/report.md"
    assert report["text"] == (tmp_path / folder / "report.md").read_text(encoding="utf-8")

    follow = _json("followup", folder, cwd=tmp_path)
    validate_schema(follow)
    assert follow["path"] == "rb.followup.yaml"
    assert follow["text"] == (tmp_path / "rb.followup.yaml").read_text(encoding="utf-8")

    res = run_cli("history", "--format", "json", cwd=tmp_path)
    rows = json.loads(res.stdout)
    assert [r["run_dir"] for r in rows] == [folder]
    validate_schema({"version": 1, "kind": "history", "reports": "reports", "runs": rows})

    plan = _json("plan", "rb.yaml", "--var", f"token={SECRET}", "--offline", cwd=tmp_path, code=3)
    validate_schema(plan)
    assert plan["path"] == "rb.yaml" and plan["vars"] == {"token": "***"}


def test_unfinished_run_shows_progress(tmp_path: Path, write_runbook: Write) -> None:
    """A run whose runner died after its first step: show replays the journal."""
    _runbook(write_runbook)
    run = _json("run", "rb.yaml", "--var", f"token={SECRET}", "-q", cwd=tmp_path, code=3)
    run_dir = tmp_path / run["run_dir"]
    record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    record["ended_at"] = record["status"] = record["exit_code"] = None
    record["sessions"][-1]["ended_at"] = None
    record["sessions"][-1]["pid"] = 2**22 + 1  # above pid_max's default: no such process
    for step in record["steps"][1:]:
        step.update(status=None, ended_at=None, started_at=None)
    (run_dir / "run.json").write_text(json.dumps(record), encoding="utf-8")
    journal = run_dir / "journal.jsonl"
    lines = journal.read_text(encoding="utf-8").splitlines()
    kept = [ln for ln in lines if json.loads(ln).get("step") in (None, "hello")]
    journal.write_text(
        "\n".join(ln for ln in kept if json.loads(ln).get("event") != "run_finished") + "\n",
        encoding="utf-8",
    )
    show = _json("show", run["run_dir"], cwd=tmp_path)
    validate_schema(show)
    assert show["finished"] is False and show["status"] is None
    assert show["alive"] is False
    assert show["progress"]["finished"] == 1
    assert [s["state"] for s in show["steps"]] == ["finished", "pending", "pending"]


def test_format_is_text_or_json(tmp_path: Path) -> None:
    res = run_cli("show", "reports/x", "--format", "yaml", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr == "error: --format 'yaml': text or json\n"
