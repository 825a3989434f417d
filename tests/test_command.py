"""Tests for agent.steps.command: what a command step reads from its output and concludes."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from agent.plan.model import RunStep
from agent.record import Status, StepResult
from agent.run.options import RunOptions
from agent.steps.command import Scanner
from agent.workflow import run_runbook


def _scanner(**fields: object) -> Scanner:
    return Scanner(RunStep.model_validate({"id": "s", "kind": "run", "command": "x", **fields}))


def test_last_line_skips_blank_lines_at_the_end_of_a_block() -> None:
    scanner = _scanner()
    text = "".join(f"progress {i}\n" for i in range(100)) + "\n  \n"
    scanner.block(text, 0, len(text) - 1)
    assert scanner.last_line == "progress 99"


def test_last_line_of_an_all_blank_block_keeps_the_one_before() -> None:
    scanner = _scanner()
    scanner.block("first\nsecond", 0, 12)
    scanner.block("\n\n \n", 0, 3)
    assert scanner.last_line == "second"


def test_captures_read_every_line_of_a_block_where_the_pattern_occurs() -> None:
    scanner = _scanner(capture={"n": r"Records saved: (\d+)"})
    text = "noise\nRecords saved: 3\nmore\nRecords saved: 12\ntail"
    scanner.block(text, 0, len(text))
    assert scanner.values == {"n": 12}


# --- success needs evidence: real programs, their output changed ----------------------------

PY = sys.executable

CRASHING = """
import sys
print("Processing 8 games", flush=True)
raise RuntimeError("warehouse unavailable")
"""

LOGGED_AND_SURVIVED = """
import logging, sys
logging.basicConfig(stream=sys.stdout)
try:
    raise ValueError("one bad row")
except ValueError:
    logging.exception("skipping a row")
print("Records saved: 16")
"""

REWORDED = """
import sys
print("Validation finished; 3 problems")
sys.exit(1)
"""

SILENT_OK = """
print("All checks passed")
"""


def _run_script(tmp_path: Path, script: str, step: str) -> StepResult:
    (tmp_path / "s.py").write_text(textwrap.dedent(script), encoding="utf-8")
    rb = tmp_path / "rb.yaml"
    rb.write_text(
        textwrap.dedent(f"""
            version: 1
            id: evidence
            title: Evidence
            steps:
              - {{id: s, kind: validate, command: {PY} s.py, {step}}}
        """),
        encoding="utf-8",
    )
    record, _ = run_runbook(rb, RunOptions(reports_dir=tmp_path / "reports"))
    return record.step("s")


def test_a_traceback_fails_the_step_whatever_ok_exit_codes_says(tmp_path: Path) -> None:
    res = _run_script(tmp_path, CRASHING, "ok_exit_codes: [0, 1]")
    assert res.status == Status.FAILED
    assert res.reason == "crashed: RuntimeError: warehouse unavailable"
    assert res.crash == "RuntimeError: warehouse unavailable"


def test_an_exception_logged_and_survived_is_not_a_crash(tmp_path: Path) -> None:
    res = _run_script(tmp_path, LOGGED_AND_SURVIVED, "capture: {n: 'Records saved: (\\d+)'}")
    assert res.status == Status.SUCCESS
    assert res.crash is None
    assert res.captures == {"n": 16}


def test_a_fatal_pattern_of_the_runbook_fails_the_step(tmp_path: Path) -> None:
    res = _run_script(tmp_path, SILENT_OK, "fatal: ['^All checks']")
    assert res.status == Status.FAILED
    assert res.reason == "crashed: All checks passed"


def test_an_unmatched_capture_after_a_bad_exit_is_no_evidence(tmp_path: Path) -> None:
    res = _run_script(
        tmp_path,
        REWORDED,
        "ok_exit_codes: [0, 1], capture: {issues: {pattern: '(\\d+) ISSUES FOUND', "
        "type: int, default: 0}}, expect: ['issues == 0']",
    )
    assert res.status == Status.PARTIAL
    assert res.unmatched == ["issues"]
    assert res.captures == {"issues": 0}
    assert res.reason == "expectation not met: issues == 0 (no evidence: `issues` did not match)"


def test_after_exit_0_an_unmatched_capture_keeps_its_default(tmp_path: Path) -> None:
    res = _run_script(
        tmp_path,
        SILENT_OK,
        "capture: {warnings: {pattern: '(\\d+) WARNINGS', type: int, default: 0}}, "
        "expect: ['warnings == 0']",
    )
    assert res.status == Status.SUCCESS
    assert res.unmatched == ["warnings"]


def test_a_required_capture_must_match_even_after_exit_0(tmp_path: Path) -> None:
    res = _run_script(
        tmp_path,
        SILENT_OK,
        "capture: {saved: {pattern: 'Records saved: (\\d+)', type: int, required: true}}",
    )
    assert res.status == Status.PARTIAL
    assert res.reason == "no evidence: required capture `saved` did not match"
