"""Tests for agent.steps.command's Scanner: what a command step reads from its output."""

from __future__ import annotations

from agent.plan.model import RunStep
from agent.steps.command import Scanner


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
