"""Tests of agent/report.py: the remediation report rendered from a run record alone.

The golden file ``tests/golden/report_reference_like.md`` is the report of the record built by
``reference_record()`` (the incident of shared/reference/remediation-report-2026-01-26.md).
After an intended change to the report, regenerate it and review the diff::

    UPDATE_GOLDEN=1 /work/venv/bin/python -m pytest tests/test_report.py
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.output import report
from agent.output.report import render_report, templates_dir, write_report
from agent.record import (
    Advice,
    Attempt,
    Baseline,
    CheckResult,
    DetailLine,
    ExpectResult,
    Item,
    RunRecord,
    RunStatus,
    Status,
    StepResult,
)
from tests.procs import run_cli

GOLDEN = Path(__file__).parent / "golden" / "report_reference_like.md"
T0 = datetime(2026, 1, 26, 5, 14, 32, tzinfo=UTC)

REFERENCE_SECTIONS = [
    "## Executive Summary",
    "## Actions Taken",
    "## Summary Statistics",
    "## Remaining Issues",
    "## Lessons Learned",
    "## Next Steps",
    "## Conclusion",
    "## Technical Execution Log",
]


def at(seconds: float) -> datetime:
    """A fixed time, `seconds` after the run started."""
    return T0 + timedelta(seconds=seconds)


def check(table: str, actual: int | None, expected: int, **kw: Any) -> CheckResult:
    """A verify check with its percentage and ok computed like the verify step does."""
    pct = None if actual is None else actual * 100.0 / expected
    return CheckResult(
        table=table,
        where="game_date = @date",
        actual=actual,
        expected=expected,
        total=expected,
        percent=pct,
        ok=actual == expected,
        **kw,
    )


def base_record(**kw: Any) -> RunRecord:
    """A run record with fixed identity and times and no steps."""
    fields: dict[str, Any] = {
        "run_id": "20260126-051432-backfill-game-context",
        "runbook_id": "backfill-game-context",
        "runbook_path": "runbooks/backfill-game-context.yaml",
        "runbook_sha256": "9f2c4e1a7b3d5f6e8a0c1b2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f",
        "title": "Backfill Game Context Data for 2026-01-25",
        "operator": "oncall",
        "host": "ops-1",
        "tool_version": "0.1.0",
        "started_at": T0,
    }
    fields.update(kw)
    return RunRecord(**fields)


def command_step(
    step_id: str, title: str, argv: list[str], start: float, end: float, **kw: Any
) -> StepResult:
    """A finished command step whose command and log path are filled in."""
    return StepResult(
        id=step_id,
        kind=kw.pop("kind", "run"),
        title=title,
        command=argv,
        command_display=" ".join(argv),
        started_at=at(start),
        ended_at=at(end),
        attempts=[Attempt(number=1, started_at=at(start), ended_at=at(end), exit_code=0)],
        exit_code=kw.pop("exit_code", 0),
        log_path=f"logs/{step_id}.log",
        **kw,
    )


def missing_team_keys() -> list[dict[str, Any]]:
    """The six team-game keys the team defense table lacks (three games)."""
    games = {
        "0022500651": ("GSW", "MIN"),
        "0022500653": ("SAC", "DET"),
        "0022500655": ("LAL", "BOS"),
    }
    return [{"game_id": g, "team_abbr": t} for g, teams in games.items() for t in teams]


def reference_record() -> RunRecord:
    """The incident's run: five steps like the reference report, with fixed times."""
    team_context = command_step(
        "team_context",
        "Run UpcomingTeamGameContextProcessor",
        [
            "python",
            "-m",
            "data_processors.analytics.upcoming_team_game_context.upcoming_team_game_context_processor",
            "--start_date=2026-01-25",
            "--end_date=2026-01-25",
            "--backfill-mode",
            "--skip-downstream-trigger",
        ],
        3,
        11.2,
        status=Status.SUCCESS,
        captures={"records_saved": 16, "quality_issues": 0, "status": "SUCCESS"},
        details=[
            DetailLine(mark="ok", text="Extracted 296 schedule records"),
            DetailLine(mark="ok", text="Extracted 24 betting line records"),
            DetailLine(mark="ok", text="Extracted 79 injury records"),
            DetailLine(mark="warn", text="Travel distances table not found (0 mappings loaded)"),
            DetailLine(mark="ok", text="Processed 8 games (16 team-game records)"),
        ],
        expectations=[ExpectResult(expr="records_saved == games * 2", ok=True)],
    )
    team_defense = command_step(
        "team_defense",
        "Run TeamDefenseGameSummaryProcessor",
        [
            "python",
            "-m",
            "data_processors.analytics.team_defense_game_summary.team_defense_game_summary_processor",
            "--start-date=2026-01-25",
            "--end-date=2026-01-25",
            "--backfill-mode",
            "--skip-downstream-trigger",
        ],
        13,
        43,
        status=Status.PARTIAL,
        reason="an expectation did not hold: records_processed == games * 2",
        captures={"records_processed": 10, "quality_issues": 0, "status": "SUCCESS"},
        details=[
            DetailLine(
                mark="ok", text="Extracted 10 opponent offense records from nbac_team_boxscore"
            ),
            DetailLine(mark="warn", text="Gamebook missing 5 games, fell back to BDL"),
            DetailLine(mark="warn", text="BDL fallback returned 0 records"),
            DetailLine(mark="ok", text="Gold quality records: 10/10"),
        ],
        expectations=[ExpectResult(expr="records_processed == games * 2", ok=False)],
        shortfall={
            "priority": "MEDIUM",
            "issue": "Team Defense Data Gaps",
            "impact": "3 games missing defensive analytics",
            "root_cause": [
                "Upstream boxscore data unavailable for 3 games",
                "BDL fallback returned no data",
            ],
            "action": [
                "Wait for upstream boxscore data to become available",
                "Re-run TeamDefenseGameSummaryProcessor once data is present",
            ],
        },
    )
    context_table = "nba_analytics.upcoming_team_game_context"
    defense_table = "nba_analytics.team_defense_game_summary"
    keys = ["game_id", "team_abbr"]
    verify = StepResult(
        id="verify_counts",
        kind="verify",
        title="Verify Record Counts",
        status=Status.PARTIAL,
        reason="1 of 2 checks fell short",
        started_at=at(45),
        ended_at=at(48),
        counts={
            context_table: check(context_table, 16, 16, key=keys),
            defense_table: check(
                defense_table, 10, 16, key=keys, missing_keys=missing_team_keys(), missing_total=6
            ),
        },
        baseline=Baseline(
            measured_at=at(1),
            counts={
                context_table: check(context_table, 0, 16, key=keys),
                defense_table: check(defense_table, 0, 16, key=keys),
            },
        ),
    )
    export = StepResult(
        id="export",
        kind="export",
        title="Regenerate API Exports",
        status=Status.NOT_FOUND,
        reason="script bin/export_api_data.py does not exist",
        command=["python", "bin/export_api_data.py", "--date", "2026-01-25"],
        command_display="python bin/export_api_data.py --date 2026-01-25",
        started_at=at(48),
        ended_at=at(48),
        missing="bin/export_api_data.py",
        alternatives=[
            "bin/operations/export_bigquery_tables.sh",
            "bin/deploy/deploy_live_export.sh",
        ],
        shortfall={
            "priority": "LOW",
            "issue": "API Export Script Not Found",
            "impact": "Unable to regenerate API exports as specified in the Action Plan",
            "action": [
                "Locate correct API export script",
                "Document proper procedure for API export regeneration",
            ],
        },
    )
    before_lines = [
        ["ERROR", f"{g}: missing team context"] for g in ("GSW@MIN", "SAC@DET", "LAL@BOS")
    ]
    after_lines = [
        ["ERROR", "GSW@MIN: Missing teams GSW, MIN"],
        ["ERROR", "SAC@DET: Missing teams SAC, DET"],
        ["ERROR", "LAL@BOS: missing team context"],
    ]
    validation = command_step(
        "validation",
        "Run Validation Script",
        ["python", "scripts/validate_tonight_data.py", "--date", "2026-01-25"],
        50,
        65,
        kind="validate",
        exit_code=1,
        status=Status.PARTIAL,
        reason="an expectation did not hold: issues == 0",
        captures={"issues": 25, "warnings": 48, "issue_lines": after_lines},
        expectations=[ExpectResult(expr="issues == 0", ok=False)],
        baseline=Baseline(
            measured_at=at(2),
            captures={"issues": 25, "warnings": 48, "issue_lines": before_lines},
        ),
        shortfall={
            "priority": "HIGH",
            "issue": "Player Context for GSW and SAC",
            "impact": "2 games (GSW@MIN, SAC@DET) missing from player-level predictions",
            "causes": ["No betting props available for these games", "Roster data unavailable"],
            "action": "Run UpcomingPlayerGameContextProcessor for 2026-01-25",
        },
    )
    return base_record(
        summary="Backfill missing game context data for 2026-01-25.",
        incident={
            "reference": "docs/incidents/2026-01-25-ORCHESTRATION-FAILURES-ACTION-PLAN.md",
            "action": "Action 3",
            "plan": "Orchestration Failures Action Plan",
        },
        vars={"date": "2026-01-25", "games": 8},
        warehouse={"backend": "bigquery", "project": "nba-props"},
        ended_at=at(88),
        status=RunStatus.PARTIALLY_COMPLETE,
        exit_code=3,
        steps=[team_context, team_defense, verify, export, validation],
        lessons=[
            "Backfill mode bypasses stale-data checks on odds lines.",
            "Processor Dependencies:\n- Defensive stats need complete boxscore data\n"
            "- Missing travel distances did not block team context",
        ],
        next_steps={
            "Immediate (Next 1-2 Hours)": [
                "Investigate missing player context for GSW and SAC",
                "Check if betting props are available for these teams",
            ],
            "Short-term (Next 24 Hours)": ["Monitor for upstream boxscore data availability"],
        },
    )


def outside_fences(text: str) -> list[str]:
    """The lines of `text` that are not inside fenced code blocks (nor fences themselves)."""
    out: list[str] = []
    fence: str | None = None
    for line in text.split("\n"):
        m = re.match(r"^(`{3,}|~{3,})", line)
        if fence is None and m:
            fence = m.group(1)
        elif fence is not None:
            closes = m is not None and line.strip() == m.group(1)
            if closes and m is not None and m.group(1)[0] == fence[0]:
                fence = None if len(m.group(1)) >= len(fence) else fence
        else:
            out.append(line)
    assert fence is None, "a fence was left open"
    return out


def headings(text: str) -> list[str]:
    """Lines that start with `#` outside fenced code blocks (the report's structure)."""
    return [line for line in outside_fences(text) if line.startswith("#")]


# ------------------------------------------------------------------------------ golden


def test_golden_reference_like_report() -> None:
    text = render_report(reference_record())
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text, encoding="utf-8")
    assert GOLDEN.exists(), "run with UPDATE_GOLDEN=1 to create the golden file"
    assert text == GOLDEN.read_text(encoding="utf-8")


def test_every_reference_section_in_order() -> None:
    text = render_report(reference_record())
    positions = [text.index(s) for s in REFERENCE_SECTIONS]
    assert positions == sorted(positions)
    assert text.startswith(
        "# Orchestration Failures - Remediation Report (Action 3)\n"
        "## Date: 2026-01-26\n"
        "## Action: Backfill Game Context Data for 2026-01-25\n"
    )


def test_summary_is_generated_from_the_run() -> None:
    text = render_report(reference_record())
    assert (
        "Ran 5 steps of Action 3 from the Orchestration Failures Action Plan: "
        "1 succeeded, 3 partial, 1 not found." in text
    )
    assert "team\\_defense" not in text  # underscores are not escaped needlessly
    assert "team_defense_game_summary has 10 of 16 expected records (62.5%)" in text
    assert "records_processed == games * 2 did not hold (records_processed = 10, games = 8)" in text
    assert "issues == 0 did not hold (issues = 25, 25 before the run)" in text


def test_actions_taken_details() -> None:
    text = render_report(reference_record())
    assert "### 1. Run UpcomingTeamGameContextProcessor\n**Status:** ✅ SUCCESS\n" in text
    assert "### 4. Regenerate API Exports\n**Status:** ⚠️ NOT FOUND\n" in text
    assert (
        "upcoming_team_game_context_processor \\\n  --start_date=2026-01-25 \\\n"
        "  --end_date=2026-01-25 \\\n  --backfill-mode \\\n  --skip-downstream-trigger\n```"
    ) in text
    assert "```bash\npython scripts/validate_tonight_data.py --date 2026-01-25\n```" in text
    assert "- Records saved: 16\n" in text
    assert "- Processing time: 8.2s\n" in text
    assert "- ✓ Extracted 296 schedule records\n" in text
    assert "- ⚠️ Travel distances table not found (0 mappings loaded)\n" in text
    assert "- Expected: records_processed == games * 2 — not met" in text
    assert "- Script `bin/export_api_data.py` does not exist\n" in text
    assert "  - `bin/operations/export_bigquery_tables.sh`\n" in text
    assert (
        "- Listed: 3 lines not marked as issue or warning\n"
        "  - ERROR: GSW@MIN: Missing teams GSW, MIN\n"
    ) in text
    assert "**Log:** [logs/team_context.log](logs/team_context.log)" in text
    assert "**BigQuery Verification: Expected vs Actual:**" in text
    # Each verify fact once in the step: the table, then the missing keys by game.
    assert "10 records (62.5% - 6 team records missing" not in text
    assert "| nba_analytics.team_defense_game_summary  | 16  " in text
    assert "  - game 0022500651: GSW, MIN\n" in text


def test_summary_statistics() -> None:
    text = render_report(reference_record())
    stats = text[text.index("## Summary Statistics") : text.index("## Remaining Issues")]
    assert (
        "### upcoming_team_game_context\n- **Before:** 0/16 records (0%)\n"
        "- **After:** 16/16 records (100%) ✅\n- **Improvement:** +16 records (+100 pp)\n"
    ) in stats
    assert "- **Still Missing:** 6 team records missing (3 games)" in stats
    assert (
        "### Issues (Run Validation Script)\n- **Before:** 25 issues\n- **After:** 25 issues\n"
        "- **Reduction:** Issues changed but not reduced in count\n"
    ) in stats


@pytest.mark.parametrize(
    ("before", "after", "before_lines", "expected"),
    [
        (25, 25, ["a"], "- **Reduction:** none (unchanged)"),
        (25, 20, ["a"], "- **Reduction:** Issues reduced by 5 (-20%)"),
        (20, 25, ["a"], "- **Change:** Issues increased by 5"),
        (25, 25, ["b"], "- **Reduction:** Issues changed but not reduced in count"),
    ],
)
def test_baseline_comparison_of_captured_counts(
    before: int, after: int, before_lines: list[str], expected: str
) -> None:
    step = command_step(
        "validation",
        "Validate",
        ["python", "v.py"],
        1,
        2,
        kind="validate",
        status=Status.PARTIAL,
        captures={"issues": after, "issue_lines": ["a"]},
        baseline=Baseline(
            measured_at=at(0), captures={"issues": before, "issue_lines": before_lines}
        ),
    )
    text = render_report(base_record(steps=[step], status=RunStatus.PARTIALLY_COMPLETE))
    assert expected in text


def test_remaining_issues_sorted_by_priority_with_automatic_entries() -> None:
    text = render_report(reference_record())
    section = text[text.index("## Remaining Issues") : text.index("## Lessons Learned")]
    titles = re.findall(r"^### \d+\. (.*)$", section, flags=re.MULTILINE)
    assert titles == [
        "Player Context for GSW and SAC",
        "Team Defense Data Gaps",
        "Coverage gap in team_defense_game_summary",
        "API Export Script Not Found",
    ]
    assert "**Priority:** HIGH\n" in section
    assert (
        "**Recommended Action:**\n- Wait for upstream boxscore data to become available\n"
        in section
    )
    assert "- team_defense_game_summary has 10 of 16 expected records (62.5%)" in section


def test_lessons_next_steps_conclusion_log_footer() -> None:
    text = render_report(reference_record())
    assert "1. Backfill mode bypasses stale-data checks on odds lines.\n" in text
    assert "2. Processor Dependencies:\n   - Defensive stats need complete boxscore data\n" in text
    assert "### Immediate (Next 1-2 Hours)\n1. Investigate missing player context" in text
    assert "**Action 3 Status:** PARTIALLY COMPLETE ⚠️" in text
    assert "2026-01-26 05:14:32 - Started Action 3 execution" in text
    assert (
        "2026-01-26 05:14:43 - Run UpcomingTeamGameContextProcessor completed: SUCCESS "
        "(records saved 16, quality issues 0)"
    ) in text
    assert "2026-01-26 05:16:00 - Run finished: PARTIALLY COMPLETE" in text
    assert "**Report Generated:** 2026-01-26 05:16:00 UTC\n" in text
    assert "**Executed By:** runbook 0.1.0 (oncall@ops-1)\n" in text
    assert (
        "**Incident Reference:** docs/incidents/2026-01-25-ORCHESTRATION-FAILURES-ACTION-PLAN.md"
        in text
    )
    assert "**Run ID:** 20260126-051432-backfill-game-context" in text


def test_optional_sections_are_omitted_when_empty() -> None:
    record = reference_record()
    record.lessons = []
    record.next_steps = {}
    text = render_report(record)
    assert "## Lessons Learned" not in text
    # A partial run still gets Next Steps: the follow-up command, and nothing else.
    next_steps = text.split("## Next Steps", 1)[1].split("\n---", 1)[0]
    # Only what the evidence says: re-run commands, the follow-up command, no runbook advice.
    assert re.findall(r"^### (.*)$", next_steps, flags=re.MULTILINE) == ["From this run's evidence"]
    assert "`runbook followup reports/" in next_steps
    record.status = RunStatus.COMPLETE
    assert "## Next Steps" not in render_report(record)
    assert "## Conclusion" in text


# ------------------------------------------------------------------------------ safety

HOSTILE = [
    "```` four backticks ``` and `one`",
    "<script>alert(1)</script>",
    "</details><details open>",
    "\x1b[31mred\x1b[0m \x1b]8;;http://evil\x07link\x1b]8;;\x07",
    "nul\x00byte and bell\x07",
    "before\n## Fake heading\nafter",
    "# Another fake",
    "---",
    "| a | b |",
    "&amp; & <b>bold</b>",
]


def hostile_record(values: list[str] = HOSTILE) -> RunRecord:
    """The reference record with `values` in every place a run or an author can put text."""
    record = reference_record()
    for step in record.steps:
        step.captures.update({f"h{i}": v for i, v in enumerate(values)})
        step.captures["hostile_list"] = list(values)
        step.details.extend(DetailLine(mark="warn", text=v) for v in values)
        step.output_tail = list(values)
        if step.reason:
            step.reason += values[5]
    record.steps[0].title = "Title " + values[5]
    record.steps[3].missing = "bin/" + values[0]
    record.steps[3].alternatives = [values[0], values[1]]
    record.summary = "\n".join(values)
    record.lessons.extend(Advice(text=v) for v in values)
    record.next_steps[values[6]] = [Advice(text=v) for v in values]
    record.steps[1].status = Status.FAILED
    record.steps[1].shortfall = {"issue": values[5], "action": values, "impact": values[1]}
    record.steps[2].counts["x"] = CheckResult(
        table=values[5],
        actual=1,
        expected=2,
        key=[values[0], values[6]],
        missing_keys=[{values[0]: v, values[6]: v} for v in values],
    )
    return record


def levels(text: str) -> list[str]:
    return [h.split(" ", 1)[0] for h in headings(text)]


def test_hostile_captures_do_not_change_the_structure() -> None:
    benign = render_report(hostile_record([f"value {i}" for i in range(len(HOSTILE))]))
    text = render_report(hostile_record())
    assert levels(text) == levels(benign)
    assert len(headings(text)) == len(headings(benign))
    prose = outside_fences(text)
    for injected in ("## Fake heading", "# Another fake", "| a | b |"):
        assert injected not in prose
    assert prose.count("---") == outside_fences(benign).count("---")
    assert "### 1. Title before ## Fake heading after" in prose
    assert "### \\# Another fake" in prose


def test_hostile_captures_are_neutralised() -> None:
    text = render_report(hostile_record())
    prose = "\n".join(outside_fences(text))
    # code spans show their text literally (HTML in them is not HTML), so look outside them
    outside_code = re.sub(r"(?<!\\)(`+)(?!`).*?(?<!`)\1(?!`)", "", prose)
    for raw in ("<script>", "</details>", "<b>"):
        assert raw not in outside_code
    assert "`<script>alert(1)</script>`" in prose
    assert "\x1b" not in text
    assert "\x00" not in text
    assert "\x07" not in text
    assert "&lt;script&gt;" in prose
    assert "&amp; &amp; &lt;b&gt;bold&lt;/b&gt;" in prose  # an entity is kept as written
    # in code spans and blocks, text is shown as is, with delimiters longer than its backticks
    assert "`````\n```` four backticks ``` and `one`\n" in text
    assert "- Script ````` bin/```` four backticks ``` and `one` ````` does not exist" in prose
    # every fence opened is closed: the structure after the log is intact
    assert text.rstrip().endswith("**Run ID:** 20260126-051432-backfill-game-context")
    assert headings(text)[-1] == "## Technical Execution Log"


# ------------------------------------------------------------------------------ variants


def test_timed_out_and_skipped_steps() -> None:
    timed_out = command_step(
        "slow",
        "Slow Processor",
        ["python", "-m", "slow"],
        0,
        600,
        status=Status.TIMED_OUT,
        exit_code=None,
        reason="timed out after 10m",
        output_tail=["working...", "still working..."],
        log_capped=True,
        output_bytes=12 * 1024 * 1024,
    )
    skipped_when = StepResult(
        id="wait",
        kind="wait",
        title="Wait for boxscores",
        status=Status.SKIPPED,
        reason="when was false: steps.verify.status != 'SUCCESS'",
        skipped_by="when",
    )
    skipped_needs = StepResult(
        id="after",
        kind="run",
        title="After Slow",
        status=Status.SKIPPED,
        reason="needs slow, which did not succeed",
        skipped_by="needs",
    )
    record = base_record(
        steps=[timed_out, skipped_when, skipped_needs],
        status=RunStatus.FAILED,
        ended_at=at(601),
    )
    text = render_report(record)
    assert "**Status:** ⏱️ TIMED OUT" in text
    assert "**Status:** ⏭️ SKIPPED" in text
    assert "**Reason:** when was false: steps.verify.status != 'SUCCESS'" in text
    assert "**Output (last 2 lines):**\n```\nworking...\nstill working...\n```" in text
    assert "the log was capped: output exceeded the log size limit (12.0 MB written" in text
    assert "Ran 3 steps of runbook backfill-game-context: 1 timed out, 2 skipped." in text
    assert "- Processing time: 10m 00s" in text
    section = text[text.index("## Remaining Issues") : text.index("## Conclusion")]
    assert "### 1. Slow Processor timed out\n**Priority:** HIGH" in section
    assert "After Slow was not run" in section
    assert "Wait for boxscores" not in section  # skipped by `when`: nothing is left to do
    assert "**Run Status:** FAILED ❌" in text
    assert "# Backfill Game Context Data for 2026-01-25 - Remediation Report\n" in text


def test_empty_record_renders() -> None:
    text = render_report(base_record())
    for section in ("## Executive Summary", "## Actions Taken", "## Remaining Issues"):
        assert section in text
    assert "No steps were run." in text
    assert "No steps ran." in text
    assert "**Run Status:** IN PROGRESS" in text
    assert "**Incident Reference:**" not in text


def test_unfinished_and_aborted_steps() -> None:
    aborted = command_step("a", "Aborted step", ["x"], 0, 1, status=Status.ABORTED, exit_code=None)
    running = StepResult(id="b", kind="run", title="Never ended", started_at=at(2))
    retried = command_step("c", "Retried", ["y"], 3, 9, status=Status.FAILED, exit_code=2)
    retried.attempts = [
        Attempt(number=1, started_at=at(3), ended_at=at(5), exit_code=2),
        Attempt(number=2, started_at=at(6), ended_at=at(9), exit_code=2),
    ]
    text = render_report(base_record(steps=[aborted, running, retried]))
    assert "**Status:** 🛑 ABORTED" in text
    assert "**Status:** ⏳ NOT FINISHED" in text
    assert "- Attempts: 2\n  - attempt 1: exit 2\n  - attempt 2: exit 2\n" in text
    assert "Retried attempt 2 started" in text
    assert "Retried failed with exit code 2" in text


def test_custom_template(tmp_path: Path) -> None:
    custom = tmp_path / "short.md.j2"
    custom.write_text(
        "# {{ r.heading | md }}\n{% for s in r.steps %}- {{ s.title | md }}: {{ s.status }}\n"
        "{% endfor %}",
        encoding="utf-8",
    )
    text = render_report(reference_record(), template=custom)
    assert text.splitlines()[0] == "# Orchestration Failures - Remediation Report (Action 3)"
    assert "- Regenerate API Exports: NOT_FOUND" in text
    assert "## Executive Summary" not in text


def test_custom_template_can_extend_the_bundled_one(tmp_path: Path) -> None:
    custom = tmp_path / "wrapped.md.j2"
    custom.write_text(
        '<!-- internal -->\n{% include "remediation-report.md.j2" %}', encoding="utf-8"
    )
    text = render_report(reference_record(), template=custom)
    assert text.startswith("<!-- internal -->\n# Orchestration Failures")


def test_strict_undefined_in_templates(tmp_path: Path) -> None:
    custom = tmp_path / "bad.md.j2"
    custom.write_text("{{ r.no_such_field }}", encoding="utf-8")
    with pytest.raises(Exception, match="no_such_field"):
        render_report(reference_record(), template=custom)


def test_write_report(tmp_path: Path) -> None:
    out = write_report(reference_record(), tmp_path / "run" / "report.md")
    assert out == tmp_path / "run" / "report.md"
    assert out.read_text(encoding="utf-8") == render_report(reference_record())
    assert not list(out.parent.glob("*.tmp"))


def test_templates_dir_holds_the_default_template() -> None:
    assert (templates_dir() / report.DEFAULT_TEMPLATE).is_file()


def test_record_round_trip_renders_the_same() -> None:
    record = reference_record()
    again = RunRecord.model_validate_json(record.model_dump_json())
    assert render_report(again) == render_report(record)


def test_thousand_steps_are_fast() -> None:
    steps = []
    for i in range(1000):
        step = command_step(
            f"s{i}",
            f"Step {i}",
            ["python", "-m", "proc", f"--n={i}", "--backfill-mode"],
            i,
            i + 0.5,
            status=Status.SUCCESS if i % 3 else Status.PARTIAL,
            captures={"records": i, "lines": [f"line {j}" for j in range(5)]},
            details=[DetailLine(mark="ok", text=f"did {i}")],
            expectations=[ExpectResult(expr="records > 0", ok=bool(i % 3))],
        )
        steps.append(step)
    record = base_record(steps=steps, ended_at=at(2000), status=RunStatus.PARTIALLY_COMPLETE)
    render_report(record)  # warm: environment and template compiled here, once
    misses = report.template_environment.cache_info().misses
    text = render_report(record)  # how long it takes is measured in bench/, not asserted here
    assert report.template_environment.cache_info().misses == misses
    assert text.count("\n### ") >= 1000


_PLAN_DEMO = (
    Path(__file__).resolve().parent.parent / "runbooks" / "demo" / "backfill-game-context.yaml"
)


def _plan_with_cache(cache_home: Path) -> str:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache_home)}
    done = run_cli("plan", str(_PLAN_DEMO), "--offline", env=env, timeout=60)
    assert "## " in done.stdout, done.stderr  # the review, whatever its exit code says
    return f"{done.returncode}\n{done.stdout}"


def test_compiled_templates_are_kept_between_processes_and_a_bad_cache_is_skipped(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    first = _plan_with_cache(cache)
    kept = sorted(cache.glob("runbook/templates-*/*"))
    assert kept, "no compiled template was kept"
    assert _plan_with_cache(cache) == first
    for path in kept:
        path.write_bytes(b"not bytecode")
    assert _plan_with_cache(cache) == first
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    assert _plan_with_cache(not_a_folder) == first


# --------------------------------------------------------------------------- the world changes


def _verify(counts: dict[str, CheckResult], status: Status) -> StepResult:
    return StepResult(
        id="verify_counts",
        kind="verify",
        title="Verify Record Counts",
        status=status,
        started_at=at(1),
        ended_at=at(2),
        counts=counts,
    )


def _remaining(text: str) -> str:
    return text[text.index("## Remaining Issues") : text.index("## Conclusion")]


def test_a_crash_without_on_shortfall_names_the_exception_and_the_rerun() -> None:
    crashed = command_step(
        "team_defense",
        "Run TeamDefenseGameSummaryProcessor",
        ["python", "-m", "proc", "--date", "2026-01-25"],
        0,
        2,
        status=Status.FAILED,
        exit_code=1,
        crash="RuntimeError: warehouse unavailable",
        reason="crashed: RuntimeError: warehouse unavailable",
    )
    text = render_report(base_record(steps=[crashed], status=RunStatus.FAILED, ended_at=at(3)))
    section = _remaining(text)
    assert "### 1. Run TeamDefenseGameSummaryProcessor crashed\n" in section
    assert "**Cause:** crashed\n" in section
    assert "- crashed (exit code 1): RuntimeError: warehouse unavailable\n" in section
    assert "**Exception:** `RuntimeError: warehouse unavailable`" in section
    assert "**Re-run:**\n```bash\npython -m proc --date 2026-01-25\n```" in section
    assert "Wait for upstream" not in text
    assert "coverage gap" not in text


def test_a_default_capture_is_shown_as_such() -> None:
    step = command_step(
        "validation",
        "Run Validation Script",
        ["python", "v.py"],
        0,
        1,
        kind="validate",
        status=Status.SUCCESS,
        captures={"issues": 0},
        unmatched=["issues"],
    )
    text = render_report(base_record(steps=[step], status=RunStatus.COMPLETE, ended_at=at(2)))
    assert "- Issues: 0 (no match: default)\n" in text
    assert "- Issues: 0\n" not in text


def _other_teams_record() -> RunRecord:
    table = "nba_analytics.upcoming_player_game_context"
    keys = [{"game_id": "0022500652", "team_abbr": t} for t in ("HOU", "MEM")]
    verify = _verify(
        {
            table: CheckResult(
                table=table,
                actual=200,
                minimum=1,
                ok=False,
                key=["game_id", "team_abbr"],
                missing_keys=keys,
                missing_total=2,
            )
        },
        Status.PARTIAL,
    )
    items = [
        Item(
            capture="lines",
            stage="game_context",
            message="MEM@HOU: Missing teams",
            severity="issue",
        ),
        Item(
            capture="lines",
            stage="predictions",
            message="MEM@HOU: No predictions",
            severity="issue",
        ),
        Item(capture="lines", stage="data_quality", message="A B (BOS): OUT", severity="issue"),
        Item(capture="lines", stage="roster", message="HOU roster stale", severity="warning"),
    ]
    before = [
        *items[:1],
        Item(capture="lines", stage="x", message="GSW@MIN: gone", severity="issue"),
    ]
    validation = command_step(
        "validation",
        "Run Validation Script",
        ["python", "v.py"],
        3,
        4,
        kind="validate",
        exit_code=1,
        status=Status.PARTIAL,
        captures={"issues": 3},
        items=items,
        expectations=[ExpectResult(expr="issues == 0", ok=False)],
        baseline=Baseline(measured_at=at(0), captures={"issues": 2}, items=before),
    )
    return base_record(
        steps=[verify, validation], status=RunStatus.PARTIALLY_COMPLETE, ended_at=at(5)
    )


def test_other_teams_missing_are_named_and_items_attributed() -> None:
    text = render_report(_other_teams_record())
    assert "- game 0022500652: HOU, MEM\n" in text
    assert "Listed 3 issues, 1 warning" in text
    assert (
        "2 of 3 issues concern MEM@HOU, keys missing from upcoming_player_game_context (step 1)"
        in text
    )
    assert "1 of 3 issues match no gap this run measured" in text
    assert "Issues: 2 before, 3 after: 1 resolved, 2 new, 1 unchanged" in text
    for leak in ("GSW, MIN", "SAC", "nothing scheduled", "duplicates?", "Issue lines"):
        assert leak not in text.replace("GSW@MIN: gone", "")


def test_zero_expected_says_nothing_scheduled() -> None:
    table = "nba_analytics.team_defense_game_summary"
    c = CheckResult(table=table, actual=0, expected=0, total=0, ok=True, key=["game_id"])
    text = render_report(
        base_record(steps=[_verify({table: c}, Status.SUCCESS)], status=RunStatus.COMPLETE)
    )
    assert "- team_defense_game_summary: 0 expected: nothing scheduled\n" in text
    assert "100%" not in text
    assert "0 records missing" not in text and "0 missing" not in text


def test_more_rows_than_expected_is_a_finding() -> None:
    table = "nba_analytics.team_defense_game_summary"
    after = CheckResult(table=table, actual=18, expected=16, total=16, percent=112.5, ok=False)
    step = _verify({table: after}, Status.PARTIAL)
    step.baseline = Baseline(
        measured_at=at(0),
        counts={table: CheckResult(table=table, actual=0, expected=16, total=16, percent=0.0)},
    )
    text = render_report(base_record(steps=[step], status=RunStatus.PARTIALLY_COMPLETE))
    assert (
        "team_defense_game_summary: 18 rows for 16 expected: 2 more than expected (duplicates?)"
        in text
    )
    assert "112.5" not in text
    assert "Improvement" not in text


def test_a_complete_run_lists_no_shortfall() -> None:
    step = command_step("a", "Step A", ["true"], 0, 1, status=Status.SUCCESS)
    record = base_record(
        steps=[step],
        status=RunStatus.COMPLETE,
        ended_at=at(2),
        lessons=[Advice(text="Always check the warehouse", standing=True)],
        next_steps={"Later": [Advice(text="Add monitoring", standing=True)]},
    )
    text = render_report(record)
    assert "None: every step that ran succeeded." in text
    assert "From this run's evidence" not in text
    assert "runbook followup" not in text
    assert "### Standing advice (the runbook gives it for every run)\n- Add monitoring\n" in text
    assert "**Fell short:**" not in text


def test_unattended_manual_step() -> None:
    step = StepResult(
        id="m",
        kind="manual",
        title="Confirm",
        status=Status.SUCCESS,
        confirmed_by="unattended",
        reason="confirmed by --yes",
    )
    text = render_report(base_record(steps=[step], status=RunStatus.COMPLETE))
    assert "- Confirmed unattended (--yes): nobody confirmed it by hand\n" in text
