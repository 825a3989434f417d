"""Tests for agent.steps.command: what a command step reads from its output and concludes."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

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


QUOTED_TRACEBACK = """
print("the old log said: Traceback (most recent call last): see ticket 42")
print("ValueError: this line only quotes the ticket")
"""


def test_a_traceback_quoted_inside_a_line_is_not_a_crash(tmp_path: Path) -> None:
    # The chunk prefilter finds the words anywhere; only a line that starts with them opens a
    # traceback.
    res = _run_script(tmp_path, QUOTED_TRACEBACK, "capture: {n: 'ticket (\\d+)'}")
    assert res.status == Status.SUCCESS
    assert res.crash is None
    assert res.captures == {"n": 42}


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


# --- a validator's items: stage, message, and the heading they were listed under ------------

VALIDATOR = """
import sys
print("=" * 20)
print("TONIGHT'S DATA VALIDATION: 2026-01-25")
print("=" * 20)
print("✓ Schedule: 2 games (4 teams)")
print("❌ 2 ISSUES FOUND:")
print("  [game_context] GSW@MIN: Missing teams {'GSW'}, only have {'MIN'}")
print("  [roster] SAC: No roster data")
print("")
print("⚠️ 1 WARNINGS:")
print("  [prop_lines] MIN: 3/12 players without prop lines")
sys.exit(1)
"""

ITEMS_STEP = (
    "ok_exit_codes: [0, 1], capture: {"
    "issues: {pattern: '(\\d+) ISSUES FOUND', type: int}, "
    "lines: {pattern: '^  \\[(\\w+)\\] (.*)$', all: true}, "
    "teams: {pattern: '^  \\[\\w+\\] (\\w+)', all: true}}"
)
ONE_LIST = "capture: {x: {pattern: '^  \\[(\\w+)\\] (.*)$', all: true}}"


def test_every_match_of_an_all_capture_with_groups_is_an_item(tmp_path: Path) -> None:
    res = _run_script(tmp_path, VALIDATOR, ITEMS_STEP)
    lines = [i for i in res.items if i.capture == "lines"]
    assert [(i.stage, i.message, i.section, i.severity) for i in lines] == [
        (
            "game_context",
            "GSW@MIN: Missing teams {'GSW'}, only have {'MIN'}",
            "2 ISSUES FOUND:",
            "issue",
        ),
        ("roster", "SAC: No roster data", "2 ISSUES FOUND:", "issue"),
        ("prop_lines", "MIN: 3/12 players without prop lines", "1 WARNINGS:", "warning"),
    ]
    assert lines[0].identity == ("game_context", lines[0].message)
    # One group: the message alone.
    teams = [(i.stage, i.message) for i in res.items if i.capture == "teams"]
    assert teams == [(None, "GSW"), (None, "SAC"), (None, "MIN")]


def test_items_outside_any_heading_have_no_section_and_a_neutral_heading_no_severity(
    tmp_path: Path,
) -> None:
    script = """
    print("  [a] before any heading")
    print("2026-01-26 05:14:35,123 - validator - INFO - Checked tables:")
    print("  [b] under a heading that names no severity")
    print("some prose in between, not a heading")
    print("  [c] still under it")
    print("Problems (2):")
    print("  [d] a problem")
    """
    res = _run_script(
        tmp_path, script, "capture: {x: {pattern: '^  \\[(\\w+)\\] (.*)$', all: true}}"
    )
    assert [(i.stage, i.section, i.severity) for i in res.items] == [
        ("a", None, None),
        ("b", "Checked tables:", None),
        ("c", "Checked tables:", None),
        ("d", "Problems (2):", "issue"),
    ]


def test_items_are_capped_like_list_captures(tmp_path: Path) -> None:
    script = """
    print("ERRORS:")
    for i in range(1500):
        print(f"  [s{i % 7}] item {i}")
    """
    res = _run_script(
        tmp_path, script, "capture: {x: {pattern: '^  \\[(\\w+)\\] (.*)$', all: true}}"
    )
    assert len(res.items) == len(res.captures["x"]) == 1000
    assert res.items[-1].message == "item 999"
    assert {i.severity for i in res.items} == {"issue"}


def test_a_pattern_without_groups_lists_values_but_makes_no_items() -> None:
    scanner = _scanner(capture={"x": {"pattern": r"^  \[\w+\]", "all": True}})
    text = "ISSUES:\n  [a] one\n"
    scanner.block(text, 0, len(text) - 1)
    assert scanner.result() == {"x": ["[a]"]}
    assert scanner.items == []


def test_a_heading_in_a_chunk_with_no_match_is_still_seen() -> None:
    # The scanner skips chunks in which no pattern can match; a heading alone in a chunk must
    # still be the section of the items in the next one.
    scanner = _scanner(capture={"x": {"pattern": r"^  \[(\w+)\] (.*)$", "all": True}})
    first = "noise\n⚠️ 3 WARNINGS:\n"
    scanner.block(first, 0, len(first) - 1)
    second = "  [s] m\n"
    scanner.block(second, 0, len(second) - 1)
    assert [(i.section, i.severity) for i in scanner.items] == [("3 WARNINGS:", "warning")]


def test_a_baseline_keeps_the_items(tmp_path: Path) -> None:
    (tmp_path / "s.py").write_text(textwrap.dedent(VALIDATOR), encoding="utf-8")
    rb = tmp_path / "rb.yaml"
    rb.write_text(
        textwrap.dedent(f"""
            version: 1
            id: evidence
            title: Evidence
            steps:
              - id: s
                kind: validate
                command: {PY} s.py
                baseline: true
                ok_exit_codes: [0, 1]
                capture:
                  lines: {{pattern: '^  \\[(\\w+)\\] (.*)$', all: true}}
        """),
        encoding="utf-8",
    )
    record, _ = run_runbook(rb, RunOptions(reports_dir=tmp_path / "reports"))
    res = record.step("s")
    assert res.baseline is not None
    assert [i.identity for i in res.baseline.items] == [i.identity for i in res.items]
    assert [i.severity for i in res.baseline.items] == ["issue", "issue", "warning"]


def test_item_text_is_masked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKEN", "s3cr3t-value")
    (tmp_path / "s.py").write_text(
        'import os\nprint("ISSUES:")\nprint("  [auth] bad token " + os.environ["TOKEN"])\n',
        encoding="utf-8",
    )
    rb = tmp_path / "rb.yaml"
    rb.write_text(
        textwrap.dedent(f"""
            version: 1
            id: evidence
            title: Evidence
            secrets: [TOKEN]
            steps:
              - id: s
                kind: validate
                command: {PY} s.py
                capture:
                  lines: {{pattern: '^  \\[(\\w+)\\] (.*)$', all: true}}
        """),
        encoding="utf-8",
    )
    record, _ = run_runbook(rb, RunOptions(reports_dir=tmp_path / "reports"))
    assert [i.message for i in record.step("s").items] == ["bad token ***"]


def test_a_long_line_of_capitals_is_not_a_heading() -> None:
    # Once a quadratic search (2 s on 20,000 characters); its time is for bench/, not asserted.
    scanner = _scanner(capture={"x": {"pattern": r"^  \[(\w+)\] (.*)$", "all": True}})
    text = "A" * 200_000 + "a\n  [s] m\n"
    scanner.block(text, 0, len(text) - 1)
    assert [(i.stage, i.section) for i in scanner.items] == [("s", None)]
