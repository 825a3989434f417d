"""The post-incident report over the demo incident: golden file, states, checkboxes, numbers.

Regenerate the golden file after an intended change:

    UPDATE_GOLDEN=1 /work/venv/bin/python -m pytest tests/test_postmortem.py
"""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.demo import run_incident_demo
from agent.incident.incident import load_incident
from agent.incident.postmortem import action_namespace, collect_runs, postmortem

GOLDEN = Path(__file__).resolve().parent / "golden" / "postmortem_demo.md"

ANCHOR = datetime(2026, 1, 26, 5, 14, 32, tzinfo=UTC)
_ISO = re.compile(r'"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2}))"')
_RUN_ID = re.compile(r"\d{8}T\d{6}Z-([a-z0-9][a-z0-9_-]*?)-[0-9a-f]{4}\b")


def pin_times(reports: Path) -> None:
    """Rewrite every time in every run.json under `reports`: the n-th distinct time becomes
    ANCHOR + n seconds, so order is kept and reports over them are stable."""
    files = sorted(reports.glob("*/run.json"))
    found: set[datetime] = set()
    for f in files:
        found |= {_parse(m) for m in _ISO.findall(f.read_text(encoding="utf-8"))}
    mapping = {t: ANCHOR + timedelta(seconds=i) for i, t in enumerate(sorted(found))}
    for f in files:
        text = _ISO.sub(
            lambda m: '"' + mapping[_parse(m.group(1))].isoformat().replace("+00:00", "Z") + '"',
            f.read_text(encoding="utf-8"),
        )
        f.write_text(text, encoding="utf-8")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def normalise(text: str) -> str:
    """Run ids carry the clock and a random suffix: `<run:runbook-id>` instead."""
    return _RUN_ID.sub(lambda m: f"<run:{m.group(1)}>", text)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = run_incident_demo(tmp_path_factory.mktemp("incident") / "demo")
    pin_times(folder / "reports")
    return folder


@pytest.fixture(scope="module")
def report(demo: Path) -> str:
    return postmortem(demo / "incident.yaml", demo / "reports")


def _run_json(demo: Path, runbook_id: str) -> dict:
    (path,) = [p for p in (demo / "reports").glob("*/run.json") if f"Z-{runbook_id}-" in str(p)]
    return json.loads(path.read_text(encoding="utf-8"))


def _section(report: str, heading: str) -> str:
    start = report.index(f"## {heading}")
    return report[start : report.index("\n---", start)]


def test_golden(report: str) -> None:
    text = normalise(report)
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text, encoding="utf-8")
    assert GOLDEN.exists(), "run with UPDATE_GOLDEN=1 to create the golden file"
    assert text == GOLDEN.read_text(encoding="utf-8")


def test_actions_table_has_the_three_states(report: str) -> None:
    rows = {
        cells[2]: cells
        for line in _section(report, "Actions").splitlines()
        if line.startswith("| ") and (cells := [c.strip() for c in line.split("|")])[1].isdigit()
    }
    assert rows["Resume the phase 3 scheduler jobs for 2026-01-25"][5:8] == [
        "✅ done",
        "COMPLETE",
        "1",
    ]
    assert rows["Backfill Game Context Data for 2026-01-25"][5:7] == [
        "⚠️ partially done",
        "PARTIALLY COMPLETE",
    ]
    never = rows["Backfill player context for GSW@MIN and SAC@DET on 2026-01-25"]
    assert never[5:9] == ["⬜ not started", "NOT STARTED", "0", "—"]
    assert "failed" not in never[5]
    assert rows["Tell the predictions team which games are affected"][4:6] == ["manual", "✅ done"]


def test_checkboxes_follow_the_criteria(report: str) -> None:
    boxes = re.findall(r"^- \[(.)\] (.*?) — ", _section(report, "Success Criteria"), re.M)
    assert boxes == [
        ("x", "Phase 3 scheduler jobs are running again"),
        ("x", "Team context has 2 rows per scheduled game (16)"),
        ("~", "Team defense covers every scheduled game (16 rows)"),
        (" ", "Player context covers all 16 teams playing"),
        (" ", "Tonight's validation passes with no issues"),
    ]


def test_numbers_match_the_runs(demo: Path, report: str) -> None:
    run = _run_json(demo, "backfill-game-context")
    steps = {s["id"]: s for s in run["steps"]}
    counts = steps["verify_counts"]["counts"]
    before = steps["verify_counts"]["baseline"]["counts"]
    defense = counts["nba_analytics.team_defense_game_summary"]
    base = before["nba_analytics.team_defense_game_summary"]
    data = _section(report, "Data Before and After")
    row = next(line for line in data.splitlines() if "team_defense_game_summary" in line)
    cells = [c.strip() for c in row.split("|")[1:-1]]
    pct = f"{defense['actual'] * 100 / defense['expected']:g}%"
    assert cells[1] == f"{base['actual']}/{base['expected']} ({base['percent']:g}%)"
    assert cells[2] == f"{defense['actual']}/{defense['expected']} ({pct})"
    assert cells[3] == f"+{defense['actual'] - base['actual']}"
    assert cells[4].startswith(f"{defense['missing_total']} (3 games: ")
    issues = steps["validation"]["captures"]["issues"]
    issues_before = steps["validation"]["baseline"]["captures"]["issues"]
    assert f"| issues (Run Validation Script)   | team_context | {issues_before}" in data
    assert f"| {issues}       |" in data
    saved = steps["team_defense"]["captures"]["records_saved"]
    assert f"Run TeamDefenseGameSummaryProcessor: PARTIAL (records saved {saved}," in report


def test_remaining_issues_are_gathered_without_duplicates(demo: Path, report: str) -> None:
    issues = re.findall(r"^### \d+\. (.*)$", _section(report, "Remaining Issues"), re.M)
    assert issues == [
        "Tonight's validation does not pass for 2026-01-25",
        "Team defense data gaps for 2026-01-25",
        "Coverage gap in nbac_team_boxscore, team_defense_game_summary, "
        "upcoming_player_game_context",
        "The API export script the plan names does not exist",
    ]
    # The same run twice (e.g. copied reports) still yields each issue once.
    reports = demo / "reports"
    copy = reports.parent / "reports-twice"
    shutil.copytree(reports, copy)
    for run_dir in list(copy.iterdir()):
        if "backfill" in run_dir.name:
            shutil.copytree(run_dir, copy / (run_dir.name[:-4] + "ffff"))
    again = postmortem(demo / "incident.yaml", copy)
    again_issues = re.findall(r"^### \d+\. (.*)$", _section(again, "Remaining Issues"), re.M)
    assert again_issues == issues


def test_runs_with_other_vars_are_not_the_action(demo: Path) -> None:
    reports = demo / "reports-other-date"
    shutil.copytree(demo / "reports", reports)
    for run_json in reports.glob("*/run.json"):
        data = json.loads(run_json.read_text(encoding="utf-8"))
        data["vars"]["date"] = "2026-01-24"
        run_json.write_text(json.dumps(data), encoding="utf-8")
    entries = collect_runs(load_incident(demo / "incident.yaml"), reports)
    assert [e.state for e in entries] == ["not started", "done", "not started", "not started"]


def test_namespace_of_a_never_run_action(demo: Path) -> None:
    entries = collect_runs(load_incident(demo / "incident.yaml"), demo / "reports")
    ns = action_namespace(entries[3])
    assert (ns["state"], ns["status"], ns["runs"], ns["run_id"]) == (
        "not started",
        "NOT STARTED",
        0,
        None,
    )
    assert ns["steps"]["validation"] == {
        "status": None,
        "captures": {"issues": None, "warnings": None},
        "counts": {},
        "exit_code": None,
        "reason": None,
    }
    assert ns["counts"]["nba_analytics.upcoming_player_game_context"]["actual"] is None
    done = action_namespace(entries[2])
    assert done["status"] == "PARTIALLY COMPLETE"
    assert done["counts"]["nba_analytics.upcoming_team_game_context"]["actual"] == 16
    assert done["steps"]["export"]["status"] == "NOT_FOUND"
