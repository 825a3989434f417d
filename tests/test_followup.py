"""Follow-up runbooks: golden text, validation, and a real run that completes once data arrives.

Regenerate the golden file after an intended change:

    UPDATE_GOLDEN=1 /work/venv/bin/python -m pytest tests/test_followup.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agent.demo import demo_env, run_incident_demo
from agent.errors import RunbookError
from agent.incident.followup import default_followup_path, followup, write_followup
from agent.incident.postmortem import postmortem
from agent.plan.loader import load_text
from agent.record import RunStatus, Status, load_record
from agent.run.options import RunOptions
from agent.workflow import run_runbook
from tests.test_postmortem import normalise

GOLDEN = Path(__file__).resolve().parent / "golden" / "followup_backfill-game-context.yaml"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_incident_demo(tmp_path_factory.mktemp("followup") / "demo")


def _run_dir(demo: Path, runbook_id: str) -> Path:
    (run_dir,) = (demo / "reports").glob(f"*Z-{runbook_id}-????")
    return run_dir


def test_golden(demo: Path) -> None:
    text = normalise(followup(_run_dir(demo, "backfill-game-context")))
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text, encoding="utf-8")
    assert GOLDEN.exists(), "run with UPDATE_GOLDEN=1 to create the golden file"
    assert text == GOLDEN.read_text(encoding="utf-8")


def test_shape_of_the_followup(demo: Path) -> None:
    run_dir = _run_dir(demo, "backfill-game-context")
    text = followup(run_dir)
    loaded = load_text(text, default_followup_path(run_dir))  # passes `runbook validate`
    rb = loaded.runbook
    assert rb.id == "backfill-game-context-followup"
    assert [s.id for s in rb.steps] == [
        "wait_team_defense",
        "team_defense",
        "verify_counts",
        "export",
        "wait_validation",
        "validation",
    ]
    kinds = {s.id: s.kind for s in rb.steps}
    # Still missing: it stays an export step (NOT_FOUND again until it exists), the closest
    # existing scripts named beside it for the person who fixes the command.
    assert kinds["export"] == "export"
    assert "#   closest existing: scripts/daily_export.py" in text
    assert loaded.graph.needs["team_defense"] == ["wait_team_defense"]
    assert loaded.graph.needs["validation"] == ["wait_validation"]
    assert "team_context" not in kinds  # it succeeded
    assert rb.vars["date"].default == "2026-01-25"
    assert (rb.workdir, rb.warehouse.path) == (".", ".runbook/warehouse.duckdb")
    assert rb.env == {"PYTHONPATH": ".", "WAREHOUSE_PATH": ".runbook/warehouse.duckdb"}
    assert rb.incident is not None and rb.incident.action == "Action 3"
    assert text.splitlines()[0] == "# yaml-language-server: $schema=../runbook.schema.json"
    record = load_record(run_dir)
    wait_for = record.step("team_defense").shortfall
    assert wait_for is not None and "nba_raw.nbac_team_boxscore" in wait_for["wait_for"]


def test_written_elsewhere_paths_follow(demo: Path, tmp_path: Path) -> None:
    out = tmp_path / "followups" / "next.yaml"
    path = write_followup(_run_dir(demo, "backfill-game-context"), out)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert (path.parent / data["workdir"]).resolve() == demo.resolve()
    first = path.read_text(encoding="utf-8").splitlines()[0]
    schema = first.split("$schema=", 1)[1]
    assert (path.parent / schema).resolve() == (demo.parent / "runbook.schema.json").resolve()


def test_a_complete_run_has_nothing_to_follow_up(demo: Path) -> None:
    with pytest.raises(RunbookError, match="there is nothing to follow up"):
        followup(_run_dir(demo, "restart-scheduler"))


def test_followup_completes_once_the_data_arrives(demo: Path) -> None:
    run_dir = _run_dir(demo, "backfill-game-context")
    path = write_followup(run_dir)
    assert path == demo / "backfill-game-context.followup.yaml"
    done = subprocess.run(
        [sys.executable, "arrive_late.py", "--warehouse", ".runbook/warehouse.duckdb"],
        cwd=demo,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "nba_raw.nbac_team_boxscore: 6" in done.stdout
    # The person on call picks the export script among the alternatives the follow-up names.
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text.replace("python bin/export_api_data.py", "python scripts/daily_export.py"),
        encoding="utf-8",
    )
    record, _ = run_runbook(
        path,
        RunOptions(reports_dir=demo / "reports", extra_env=demo_env(), yes=True),
    )
    steps = {s.id: s for s in record.steps}
    assert steps["team_defense"].status == Status.SUCCESS
    assert steps["team_defense"].captures["records_saved"] == 16
    counts = steps["verify_counts"].counts["nba_analytics.team_defense_game_summary"]
    assert (counts.actual, counts.expected, counts.ok) == (16, 16, True)
    assert steps["validation"].captures["issues"] == 0
    assert record.status == RunStatus.COMPLETE
    # The incident now counts the follow-up as the action's latest run.
    report = postmortem(demo / "incident.yaml", demo / "reports")
    row = next(line for line in report.splitlines() if "| backfill-game-context.yaml" in line)
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[4:7] == ["✅ done", "COMPLETE", "2"]
    assert cells[7].startswith("20") and "backfill-game-context-followup" in cells[7]
    assert "- [x] Team defense covers every scheduled game (16 rows)" in report
    assert "- [x] Tonight's validation passes with no issues" in report


def test_output_with_control_characters_and_line_breaks_makes_a_valid_followup(
    tmp_path: Path,
) -> None:
    """A reason quoting `\\001` or a carriage return once made YAML refuse the follow-up."""
    (tmp_path / "p.py").write_text(
        'import sys\nsys.stdout.write("bad \\001 thing\\nsteps: []\\rx\\n"); sys.exit(1)\n'
    )
    rb = tmp_path / "rb.yaml"
    rb.write_text(
        "version: 1\nid: ctl\ntitle: Ctl\nsteps:\n"
        f"  - {{id: a, kind: run, command: {sys.executable} p.py}}\n"
    )
    record, run_dir = run_runbook(rb, RunOptions(reports_dir=tmp_path / "r"))
    assert record.step("a").status == Status.FAILED
    path = write_followup(run_dir, tmp_path / "fu.yaml")
    text = path.read_text()
    assert "\x01" not in text and "\r" not in text
    loaded = load_text(text, path)  # validates: the quoted output stayed inside its comment
    assert [s.id for s in loaded.runbook.steps] == ["a"]
    (quoted,) = [line for line in text.splitlines() if "exit code 1:" in line]
    assert quoted.lstrip().startswith("#")
