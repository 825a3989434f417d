"""The demo pipeline with its world changed: what the report says follows from the evidence.

Each scenario lays the demo out, changes its world (the seeded data, a script that crashes or
prints other words, a table or the warehouse file gone), runs the unchanged demo runbook and
asserts the report's statements: statuses, causes, the keys it names, the counts. The demo
runbook types no outcome, so nothing of the incident's own story may leak into another world.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from agent.demo import DEMO_DATE, DEMO_RUNBOOK, demo_env, lay_out_demo
from agent.record import RunRecord, RunStatus, Status
from agent.run.options import RunOptions
from agent.workflow import run_runbook

WAREHOUSE = Path(".runbook") / "warehouse.duckdb"
TEAM_PROCESSOR = Path(
    "data_processors/analytics/upcoming_team_game_context/upcoming_team_game_context_processor.py"
)
VALIDATOR = Path("scripts/validate_tonight_data.py")


def _world(tmp_path: Path, *seed_args: str) -> Path:
    """The demo folder, seeded with `seed.py` and these arguments."""
    folder = lay_out_demo(tmp_path / "demo", seed=False)
    subprocess.run(
        [sys.executable, "seed.py", "--warehouse", str(WAREHOUSE), "--date", DEMO_DATE, *seed_args],
        cwd=folder,
        check=True,
        capture_output=True,
    )
    return folder


def _run(folder: Path) -> tuple[RunRecord, str]:
    outcome = run_runbook(
        folder / DEMO_RUNBOOK,
        RunOptions(
            overrides={"date": DEMO_DATE}, reports_dir=folder / "reports", extra_env=demo_env()
        ),
    )
    return outcome.record, outcome.report.read_text(encoding="utf-8")


def _section(report: str, heading: str) -> str:
    """The text of one `## heading` section of the report ('' when it has none)."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", report, re.M | re.S)
    return match.group(1).strip().removesuffix("---").strip() if match else ""


def _statuses(record: RunRecord) -> dict[str, Status | None]:
    return {s.id: s.status for s in record.steps}


def _missing(record: RunRecord, table: str) -> set[tuple[str, str]]:
    counts = record.step("verify_counts").counts
    (check,) = [c for c in counts.values() if c.table == table]
    return {(k["game_id"], k["team_abbr"]) for k in check.missing_keys}


def _game_ids(folder: Path, *matchups: str) -> dict[str, str]:
    """The game id of each AWAY@HOME matchup of the day, from the seeded schedule."""
    with duckdb.connect(str(folder / WAREHOUSE), read_only=True) as con:
        rows = con.execute(
            "SELECT away_team || '@' || home_team, game_id FROM nba_raw.schedule"
            " WHERE game_date = ?",
            [DEMO_DATE],
        ).fetchall()
    ids = dict(rows)
    return {m: ids[m] for m in matchups}


# --- the incident's own world ---------------------------------------------------------------


def test_the_incident_world_names_its_gaps(tmp_path: Path) -> None:
    folder = _world(tmp_path)
    record, report = _run(folder)
    games = _game_ids(folder, "GSW@MIN", "SAC@DET", "MIA@PHX", "TOR@POR")
    assert record.status == RunStatus.PARTIALLY_COMPLETE
    assert _statuses(record) == {
        "team_context": Status.SUCCESS,
        "team_defense": Status.PARTIAL,
        "verify_counts": Status.PARTIAL,
        "export": Status.NOT_FOUND,
        "validation": Status.PARTIAL,
    }
    no_boxscore = {(games[m], t) for m in ("SAC@DET", "MIA@PHX", "TOR@POR") for t in m.split("@")}
    assert _missing(record, "nba_raw.nbac_team_boxscore") == no_boxscore
    assert _missing(record, "nba_analytics.team_defense_game_summary") == no_boxscore
    assert _missing(record, "nba_analytics.upcoming_player_game_context") == {
        (games[m], t) for m in ("GSW@MIN", "SAC@DET") for t in m.split("@")
    }
    assert record.step("validation").cause == "expectation"
    remaining = _section(report, "Remaining Issues")
    for team in ("GSW", "SAC", "MIN", "DET"):
        assert team in remaining


# --- other worlds ---------------------------------------------------------------------------


def test_other_games_without_boxscores_and_other_teams_without_context(tmp_path: Path) -> None:
    folder = _world(
        tmp_path,
        "--no-boxscore",
        "BOS@CHI,LAL@DAL",
        "--no-gamebook",
        "BOS@CHI",
        "--no-props",
        "NOP@SAS",
    )
    record, report = _run(folder)
    games = _game_ids(folder, "BOS@CHI", "LAL@DAL", "NOP@SAS")
    assert _missing(record, "nba_raw.nbac_team_boxscore") == {
        (games[m], t) for m in ("BOS@CHI", "LAL@DAL") for t in m.split("@")
    }
    assert _missing(record, "nba_analytics.upcoming_player_game_context") == {
        (games["NOP@SAS"], "NOP"),
        (games["NOP@SAS"], "SAS"),
    }
    remaining = _section(report, "Remaining Issues")
    for team in ("BOS", "CHI", "LAL", "DAL", "NOP", "SAS"):
        assert team in remaining
    # Nothing of the incident's own story: these teams have all their data in this world.
    for team in ("GSW", "SAC", "MIA", "PHX", "TOR", "POR"):
        assert not re.search(rf"\b{team}\b", remaining), team


def test_everything_present_completes_with_no_remaining_issues(tmp_path: Path) -> None:
    folder = _world(tmp_path, "--no-boxscore", "", "--no-gamebook", "", "--no-props", "", "--clean")
    # In this world the export script the plan names exists (it runs the daily export).
    (folder / "bin" / "export_api_data.py").write_text(
        "import runpy, sys\nsys.argv[0] = 'scripts/daily_export.py'\n"
        "runpy.run_path('scripts/daily_export.py', run_name='__main__')\n",
        encoding="utf-8",
    )
    record, report = _run(folder)
    assert {s.id: s.status for s in record.steps if s.status != Status.SUCCESS} == {}
    assert record.status == RunStatus.COMPLETE
    assert record.exit_code == 0
    assert _section(report, "Remaining Issues").strip() == "None: every step that ran succeeded."
    assert "From this run's evidence" not in report


def test_a_processor_that_raises_is_a_crash_not_a_data_gap(tmp_path: Path) -> None:
    folder = _world(tmp_path)
    (folder / TEAM_PROCESSOR).write_text(
        "import logging, sys\nlogging.basicConfig(stream=sys.stdout, level=logging.INFO)\n"
        "logging.info('Processing 8 games (16 team-game records)')\n"
        "raise RuntimeError('warehouse unavailable')\n",
        encoding="utf-8",
    )
    record, report = _run(folder)
    step = record.step("team_context")
    assert step.status == Status.FAILED
    assert step.cause == "crashed"
    assert step.reason == "crashed: RuntimeError: warehouse unavailable"
    assert "RuntimeError: warehouse unavailable" in _section(report, "Remaining Issues")


def test_a_validator_that_raises_is_failed_whatever_ok_exit_codes_says(tmp_path: Path) -> None:
    folder = _world(tmp_path)
    path = folder / VALIDATOR
    crashing = "def validate(con, *_):\n    raise KeyError('schedule')\n\n\ndef _old(con"
    path.write_text(
        path.read_text(encoding="utf-8").replace("def validate(con", crashing), encoding="utf-8"
    )
    record, report = _run(folder)
    step = record.step("validation")
    assert step.status == Status.FAILED
    assert step.crash == "KeyError: 'schedule'"
    assert "KeyError: 'schedule'" in _section(report, "Remaining Issues")
    # The capture fell back to its default: never stated as a measured "Issues: 0".
    assert not re.search(r"Issues: 0(?! \(no match: default\))", report)


def test_a_reworded_summary_is_no_evidence(tmp_path: Path) -> None:
    folder = _world(tmp_path)
    path = folder / VALIDATOR
    path.write_text(
        path.read_text(encoding="utf-8").replace("ISSUES FOUND", "PROBLEMS DETECTED"),
        encoding="utf-8",
    )
    record, _ = _run(folder)
    step = record.step("validation")
    assert step.status == Status.PARTIAL
    assert "issues" in step.unmatched
    assert "no evidence: `issues` did not match" in (step.reason or "")


def test_a_missing_table_fails_what_reads_it(tmp_path: Path) -> None:
    folder = _world(tmp_path)
    with duckdb.connect(str(folder / WAREHOUSE)) as con:
        con.execute("DROP TABLE nba_analytics.upcoming_player_game_context")
    record, _ = _run(folder)
    assert record.step("verify_counts").status == Status.FAILED
    assert "upcoming_player_game_context" in (record.step("verify_counts").reason or "")
    assert record.step("validation").status == Status.FAILED
    assert record.step("validation").cause == "crashed"


def test_a_missing_warehouse_file_fails_the_run(tmp_path: Path) -> None:
    folder = _world(tmp_path)
    (folder / WAREHOUSE).unlink()
    record, _ = _run(folder)
    assert record.status == RunStatus.FAILED
    assert not [s.id for s in record.steps if s.status == Status.SUCCESS]
    for sid in ("team_context", "team_defense", "verify_counts"):
        assert record.step(sid).status == Status.FAILED, sid
    # The validator exits 1 (allowed) without its summary: no evidence, so not SUCCESS.
    validation = record.step("validation")
    assert validation.status == Status.PARTIAL
    assert "no evidence: `issues` did not match" in (validation.reason or "")


def test_a_day_with_no_games_expects_nothing(tmp_path: Path) -> None:
    folder = _world(tmp_path, "--games", "0")
    record, report = _run(folder)
    counts = record.step("verify_counts").counts
    assert {c.table: (c.actual, c.expected) for c in counts.values()} == {
        "nba_raw.nbac_team_boxscore": (0, 0),
        "nba_analytics.upcoming_team_game_context": (0, 0),
        "nba_analytics.team_defense_game_summary": (0, 0),
        "nba_analytics.upcoming_player_game_context": (0, None),
    }
    assert "nothing scheduled" in report
    assert "0 records missing" not in report


@pytest.mark.parametrize("games", [9, 10])
def test_more_games_than_the_incident_day_are_counted_from_the_schedule(
    tmp_path: Path, games: int
) -> None:
    folder = _world(tmp_path, "--games", str(games))
    record, report = _run(folder)
    counts = record.step("verify_counts").counts
    (team) = [c for c in counts.values() if c.table == "nba_analytics.upcoming_team_game_context"]
    assert (team[0].actual, team[0].expected) == (2 * games, 2 * games)
    assert record.step("team_context").status == Status.SUCCESS
    assert "112.5%" not in report
    assert "125%" not in report
