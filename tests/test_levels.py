"""Graded coverage: a verify check's `levels` pass, warn or fail by the share of expected keys."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.errors import ValidationError
from agent.output.facts import partition_grid
from agent.plan.loader import load_runbook
from agent.record import RunRecord, Status
from agent.run.options import RunOptions
from agent.workflow import run_runbook

Write = Callable[..., Path]
# Ten games a day; the days below have this many of them loaded.
LOADED = {"2026-03-01": 10, "2026-03-02": 9, "2026-03-03": 8, "2026-03-04": 7, "2026-03-05": 6}


def _warehouse(tmp_path: Path, loaded: dict[str, int]) -> Path:
    import duckdb

    db = tmp_path / "wh.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE SCHEMA raw")
        con.execute("CREATE TABLE raw.schedule (game_date DATE, game_id VARCHAR)")
        con.execute("CREATE TABLE raw.boxscores (game_date DATE, game_id VARCHAR)")
        for day, n in loaded.items():
            date = dt.date.fromisoformat(day)
            for g in range(10):
                con.execute("INSERT INTO raw.schedule VALUES (?, ?)", [date, f"{day}-g{g}"])
                if g < n:
                    con.execute("INSERT INTO raw.boxscores VALUES (?, ?)", [date, f"{day}-g{g}"])
    return db


def _runbook(write_runbook: Write, db: Path, levels: str = "{ok: 0.9, warn: 0.7}") -> Path:
    return write_runbook(f"""
        version: 1
        id: graded
        title: Graded coverage
        warehouse: {{backend: duckdb, path: {db}}}
        partitions:
          var: date
          dates: {{from: "2026-03-01", to: "2026-03-05"}}
        steps:
          - id: coverage
            kind: verify
            checks:
              - table: raw.boxscores
                where: game_date = @date
                levels: {levels}
                coverage:
                  key: [game_id]
                  expected: SELECT game_id FROM raw.schedule WHERE game_date = @date
    """)


def _run(path: Path) -> RunRecord:
    return run_runbook(path, RunOptions(reports_dir=Path("reports"))).record


def test_levels_grade_each_day_by_its_share_of_expected_keys(
    write_runbook: Write, tmp_path: Path
) -> None:
    record = _run(_runbook(write_runbook, _warehouse(tmp_path, LOADED)))
    by_day = {r.partition: r for r in record.steps}
    levels = {d: r.counts["raw.boxscores"].level for d, r in by_day.items()}
    assert levels == {
        "2026-03-01": "ok",
        "2026-03-02": "ok",
        "2026-03-03": "warn",
        "2026-03-04": "warn",
        "2026-03-05": "fail",
    }
    statuses = {d: r.status for d, r in by_day.items()}
    assert statuses == {
        "2026-03-01": Status.SUCCESS,
        "2026-03-02": Status.SUCCESS,
        "2026-03-03": Status.PARTIAL,
        "2026-03-04": Status.PARTIAL,
        "2026-03-05": Status.FAILED,
    }
    assert by_day["2026-03-03"].reason == (
        "short: raw.boxscores: 8 of 10 expected records (80%), below the ok level 90%"
    )
    assert by_day["2026-03-05"].reason == (
        "below the warn level: raw.boxscores: 6 of 10 expected records (60%), "
        "below the warn level 70%"
    )
    assert by_day["2026-03-05"].cause == "coverage"
    assert by_day["2026-03-03"].cause == "coverage"
    # A day that passes at its level still names the key it misses.
    assert by_day["2026-03-02"].counts["raw.boxscores"].missing_keys == [
        {"game_id": "2026-03-02-g9"}
    ]
    grid = partition_grid(record)
    assert grid is not None
    assert grid.summary == (
        "2 of 5 dates complete; 2 partial: 2026-03-03, 2026-03-04; 1 failed: 2026-03-05"
    )


def test_the_report_shows_the_level_each_check_reached(
    write_runbook: Write, tmp_path: Path
) -> None:
    result = run_runbook(
        _runbook(write_runbook, _warehouse(tmp_path, LOADED)),
        RunOptions(reports_dir=Path("reports")),
    )
    report = (result.run_dir / "report.md").read_text()
    assert "| 80%, level warn (below 90%) |" in report
    assert "| 60%, level fail (below 70%) |" in report
    assert "(60%); 4 games missing; level fail (below 70%)" in report


def test_a_check_that_passes_at_its_level_still_names_what_it_misses(
    write_runbook: Write, tmp_path: Path
) -> None:
    db = _warehouse(tmp_path, {"2026-03-02": 9})
    rb = write_runbook(f"""
        version: 1
        id: one-day
        title: One day
        warehouse: {{backend: duckdb, path: {db}}}
        steps:
          - id: coverage
            kind: verify
            checks:
              - table: raw.boxscores
                levels: {{ok: 0.9, warn: 0.7}}
                coverage:
                  key: [game_id]
                  expected: SELECT game_id FROM raw.schedule
    """)
    result = run_runbook(rb, RunOptions(reports_dir=Path("reports")))
    assert [r.status for r in result.record.steps] == [Status.SUCCESS]
    report = (result.run_dir / "report.md").read_text()
    assert "| 90%, level ok (90% or more) |" in report
    assert "- boxscores: 1 game missing\n  - 2026-03-02-g9" in report


def test_a_world_with_every_game_passes_without_a_word_of_levels_falling_short(
    write_runbook: Write, tmp_path: Path
) -> None:
    full = dict.fromkeys(LOADED, 10)
    record = _run(_runbook(write_runbook, _warehouse(tmp_path, full)))
    assert {r.status for r in record.steps} == {Status.SUCCESS}
    assert {r.counts["raw.boxscores"].level for r in record.steps} == {"ok"}


def test_levels_can_be_equal_so_nothing_warns(write_runbook: Write, tmp_path: Path) -> None:
    rb = _runbook(write_runbook, _warehouse(tmp_path, LOADED), "{ok: 0.8, warn: 0.8}")
    statuses = [r.status for r in _run(rb).steps]
    assert statuses == [Status.SUCCESS] * 3 + [Status.FAILED] * 2


def test_levels_without_an_expected_number_or_out_of_order_are_located(
    write_runbook: Write,
) -> None:
    rb = write_runbook("""
        version: 1
        id: bad
        title: T
        steps:
          - id: v
            kind: verify
            checks:
              - table: raw.games
                expect: {min: 3}
                levels: {ok: 0.9, warn: 0.7}
              - table: raw.games
                expect: 10
                levels: {ok: 0.7, warn: 0.9}
    """)
    with pytest.raises(ValidationError) as info:
        load_runbook(rb)
    text = str(info.value)
    assert (
        "levels grade a share of the expected records: give the check a coverage query "
        "or an exact expect, not {min: N} or {ratio: R}"
    ) in text
    assert "levels: warn (0.9) is above ok (0.7)" in text
