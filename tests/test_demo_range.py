"""`runbook demo --range`: a week of the simulated pipeline, graded date by date by coverage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from agent.demo import RANGE_RUNBOOK, demo_env, lay_out_demo
from agent.output.facts import partition_grid
from agent.record import RunStatus, Status, load_record
from agent.run.options import RunOptions
from agent.workflow import run_runbook
from tests.procs import run_cli


def _run_week(folder: Path, *seed_args: str) -> tuple[object, Path]:
    """Lay the demo out, seed the week as `seed_args` say, run the week's backfill."""
    target = lay_out_demo(folder, seed=False)
    subprocess.run(
        [sys.executable, "seed.py", "--warehouse", ".runbook/warehouse.duckdb", *seed_args],
        cwd=target,
        check=True,
        capture_output=True,
    )
    options = RunOptions(reports_dir=target / "reports", extra_env=demo_env())
    result = run_runbook(target / RANGE_RUNBOOK, options)
    return result.record, result.run_dir


def test_demo_range_command_grades_the_week(tmp_path: Path) -> None:
    out = run_cli("demo", "--range", "--dir", str(tmp_path / "d"), "--quiet")
    assert out.returncode == 0, out.stderr
    assert "The demo's backfill of the week ended PARTIALLY COMPLETE" in out.stdout
    (run_json,) = (tmp_path / "d" / "reports").glob("*/run.json")
    run_dir = run_json.parent
    record = load_record(run_dir)
    assert record.status == RunStatus.PARTIALLY_COMPLETE
    grid = partition_grid(record)
    assert grid is not None
    assert grid.summary == ("5 of 7 dates complete; 1 partial: 2026-01-21; 1 failed: 2026-01-25")
    report = (run_dir / "report.md").read_text()
    # The grid: each date's processor run and its graded coverage.
    assert "| 2026-01-21 | ✅ | ⚠️ 83.3% |" in report
    assert "| 2026-01-23 | ✅ | ✅ 90% |" in report
    assert "| 2026-01-25 | ✅ | ❌ 62.5% |" in report
    # Detail only for the short days, with the games they miss.
    assert "### " in report and "Grade coverage of the scheduled games [2026-01-21]" in report
    assert "[2026-01-23]" not in report.split("## Actions Taken")[1].split("## Summary")[0]
    assert "game 0022500625: ORL, WAS" in report
    assert "game 0022500655: DET, SAC" in report
    assert "runbook run backfill-week.yaml --only coverage --partition 2026-01-21" in report
    assert (
        "Coverage reached over 7 dates: boxscores 96/106 (90.6%), team_defense 96/106 (90.6%)"
        in report
    )


def test_another_week_gives_another_grid(tmp_path: Path) -> None:
    # The 19th misses 2 of its 4 games, the 24th 1 of 8 (87.5%: a warning); the incident day
    # has every boxscore but no gamebook for SAC@DET and TOR@POR (the BDL fallback is empty):
    # 12 of 16 defense records.
    record, run_dir = _run_week(tmp_path / "w", "--week=-6=2,-1=1", "--no-boxscore", "")
    by = {(r.id, r.partition): r for r in record.steps}
    levels = {
        p: by[("coverage", p)].counts["team_defense"].level
        for p in ("2026-01-19", "2026-01-21", "2026-01-24", "2026-01-25")
    }
    assert levels == {
        "2026-01-19": "fail",
        "2026-01-21": "ok",
        "2026-01-24": "warn",
        "2026-01-25": "warn",
    }
    assert by[("coverage", "2026-01-25")].counts["boxscores"].level == "ok"
    assert by[("coverage", "2026-01-19")].status == Status.FAILED
    assert by[("team_defense", "2026-01-25")].captures["gamebook_missing"] == 2
    grid = partition_grid(record)
    assert grid is not None
    assert grid.summary == (
        "4 of 7 dates complete; 1 failed: 2026-01-19; 2 partial: 2026-01-24, 2026-01-25"
    )
    report = (run_dir / "report.md").read_text()
    assert "2026-01-21" not in report.split("## Actions Taken")[1].split("## Summary")[0]
