"""The wait kind with real processes: polls, the time left, missing programs, interrupts."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import duckdb

from agent.record import Journal, Status
from agent.run.options import RunOptions
from agent.steps.base import Event
from agent.workflow import run_runbook
from tests.procs import run_cli

PY = sys.executable
Write = Callable[..., Path]

COUNTER = (
    "import pathlib, sys\n"
    "p = pathlib.Path('count.txt')\n"
    "n = int(p.read_text()) + 1 if p.exists() else 1\n"
    "p.write_text(str(n))\n"
    "sys.exit(0 if n >= 3 else 1)\n"
)


def test_a_command_that_holds_on_the_third_poll(write_runbook: Write, tmp_path: Path) -> None:
    (tmp_path / "ready.py").write_text(COUNTER, encoding="utf-8")
    rb = write_runbook(f"""
        version: 1
        id: w
        title: W
        steps:
          - id: wait
            kind: wait
            command: {PY} ready.py
            every: 0.1s
            timeout: 30s
    """)
    record, run_dir = run_runbook(rb, RunOptions(reports_dir=tmp_path / "r"))
    wait = record.step("wait")
    assert wait.status == Status.SUCCESS, wait.reason
    assert [p.ok for p in wait.polls] == [False, False, True]
    assert [p.value for p in wait.polls] == [1, 1, 0]
    assert (tmp_path / "count.txt").read_text() == "3"
    assert wait.command_display == f"{PY} ready.py"
    assert "poll 3: value=0 ok=True" in (run_dir / "logs" / "wait.log").read_text()
    # Each poll's process group is journaled, so a resume after a crash can stop its leftovers.
    spawned = [e for e in Journal.read(run_dir / "journal.jsonl") if e["event"] == "spawned"]
    assert [e["step"] for e in spawned] == ["wait"] * 3
    assert all(isinstance(e["pgid"], int) and isinstance(e["ticks"], int) for e in spawned)


def test_a_poll_gets_only_the_time_left(write_runbook: Write, tmp_path: Path) -> None:
    rb = write_runbook("""
        version: 1
        id: w
        title: W
        steps:
          - id: wait
            kind: wait
            command: sleep 100
            every: 1s
            timeout: 2s
    """)
    record, _ = run_runbook(rb, RunOptions(reports_dir=tmp_path / "r"))
    wait = record.step("wait")
    assert wait.status == Status.TIMED_OUT
    # The poll got the step's time that was left (it once had max(every, 60 s)).
    assert wait.polls[0].error == "the poll was stopped when the step's time ran out"
    assert len(wait.polls) == 1
    assert wait.reason is not None
    assert "the poll was stopped when the step's time ran out" in wait.reason


def test_a_missing_program_is_not_found_with_alternatives(
    write_runbook: Write, tmp_path: Path
) -> None:
    (tmp_path / "check_ready.py").write_text("print('ok')\n", encoding="utf-8")
    rb = write_runbook(f"""
        version: 1
        id: w
        title: W
        steps:
          - id: wait
            kind: wait
            command: {PY} check_redy.py
            every: 0.1s
            timeout: 5s
          - id: after
            kind: run
            command: {PY} -c "print('after')"
            needs: []
    """)
    record, _ = run_runbook(rb, RunOptions(reports_dir=tmp_path / "r"))
    wait = record.step("wait")
    assert wait.status == Status.NOT_FOUND
    assert wait.missing == "check_redy.py"
    assert "check_ready.py" in wait.alternatives
    assert wait.polls == []
    assert record.step("after").status == Status.SUCCESS


def test_plan_lists_the_missing_program_and_quotes_the_command(
    write_runbook: Write, tmp_path: Path
) -> None:
    (tmp_path / "check_ready.py").write_text("print('ok')\n", encoding="utf-8")
    rb = write_runbook(f"""
        version: 1
        id: w
        title: W
        steps:
          - id: wait
            kind: wait
            command: [{PY}, check_redy.py, "a b"]
    """)
    proc = run_cli("plan", str(rb), "--offline", cwd=tmp_path, timeout=60)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"{PY} check_redy.py 'a b'" in proc.stdout
    assert "check_redy.py" in proc.stdout
    assert "check_ready.py" in proc.stdout


def test_an_interrupt_ends_the_wait(write_runbook: Write, tmp_path: Path) -> None:
    rb = write_runbook("""
        version: 1
        id: w
        title: W
        steps:
          - id: wait
            kind: wait
            command: "false"
            every: 30s
            timeout: 10m
    """)
    options = RunOptions(reports_dir=tmp_path / "r")

    def on_event(event: Event) -> None:
        if event.kind == "poll":
            options.stop.set()

    options.listeners.append(on_event)
    record, _ = run_runbook(rb, options)
    wait = record.step("wait")
    assert wait.status == Status.ABORTED
    assert len(wait.polls) == 1


def test_until_writes_numbers_and_refuses_strings(write_runbook: Write, tmp_path: Path) -> None:
    (tmp_path / ".runbook").mkdir()
    duckdb.connect(str(tmp_path / ".runbook" / "warehouse.duckdb")).close()
    rb = write_runbook("""
        version: 1
        id: w
        title: W
        vars:
          games: {type: int, default: 8}
          name: {type: string, default: "x' OR 1=1 --"}
        steps:
          - id: numbers
            kind: wait
            until: SELECT {{ games }} * 2 = 16
            every: 0.1s
            timeout: 5s
          - id: strings
            kind: wait
            until: SELECT '{{ name }}' = 'x'
            every: 0.1s
            timeout: 5s
            needs: []
    """)
    record, _ = run_runbook(rb, RunOptions(reports_dir=tmp_path / "r"))
    assert record.step("numbers").status == Status.SUCCESS, record.step("numbers").reason
    strings = record.step("strings")
    assert strings.status == Status.FAILED
    assert strings.reason == (
        "only numbers can be written into SQL with {{ }}; bind 'name' as a query parameter: @name"
    )
    assert strings.polls == []


def test_a_condition_that_returns_text_is_never_true(write_runbook: Write, tmp_path: Path) -> None:
    """`SELECT 'false'` once counted as true (a non-empty string); the poll says what came."""
    (tmp_path / ".runbook").mkdir()
    duckdb.connect(str(tmp_path / ".runbook" / "warehouse.duckdb")).close()
    rb = write_runbook("""
        version: 1
        id: w
        title: W
        steps:
          - {id: text, kind: wait, until: "SELECT 'false'", every: 0.1s, timeout: 0.3s}
          - {id: zero, kind: wait, until: SELECT 0, every: 0.1s, timeout: 0.3s, needs: []}
          - {id: one, kind: wait, until: SELECT 1, every: 0.1s, timeout: 5s, needs: []}
    """)
    record, _ = run_runbook(rb, RunOptions(reports_dir=tmp_path / "r"))
    text = record.step("text")
    assert text.status == Status.TIMED_OUT
    assert (
        text.polls[0].error == "the condition returned the text 'false', not true/false or a number"
    )
    assert record.step("zero").status == Status.TIMED_OUT
    assert record.step("one").status == Status.SUCCESS


def test_a_condition_of_several_rows_or_columns_is_named_not_judged_by_its_first_value(
    write_runbook: Write, tmp_path: Path
) -> None:
    (tmp_path / ".runbook").mkdir()
    duckdb.connect(str(tmp_path / ".runbook" / "warehouse.duckdb")).close()
    rb = write_runbook("""
        version: 1
        id: w
        title: W
        steps:
          - {id: rows, kind: wait, until: "SELECT 1 UNION ALL SELECT 0", every: 0.1s, timeout: 0.3s}
          - {id: cols, kind: wait, until: "SELECT 1, 0", every: 0.1s, timeout: 0.3s, needs: []}
          - {id: none, kind: wait, until: "SELECT 1 WHERE 1 = 0", every: 0.1s, timeout: 0.3s,
             needs: []}
    """)
    record, _ = run_runbook(rb, RunOptions(reports_dir=tmp_path / "r"))
    rows, cols = record.step("rows"), record.step("cols")
    assert rows.status == Status.TIMED_OUT and cols.status == Status.TIMED_OUT
    assert rows.polls[0].error == "the query returned 2 rows; a condition returns one value"
    assert cols.polls[0].error == "the query returned 2 columns; a condition returns one value"
    assert record.step("none").status == Status.TIMED_OUT  # no row: not (yet) true


def test_plan_names_a_working_directory_that_does_not_exist(
    write_runbook: Write, tmp_path: Path
) -> None:
    from tests.procs import run_cli

    rb = write_runbook("""
        version: 1
        id: w
        title: W
        steps:
          - {id: here, kind: run, command: echo hi, workdir: /nonexistent/dir}
    """)
    res = run_cli("plan", str(rb), "--offline", cwd=tmp_path)
    assert res.returncode == 3, res.stderr
    assert "- ❌ `here`: the working directory /nonexistent/dir does not exist" in res.stdout


def test_a_verify_on_a_missing_duckdb_file_names_the_file(
    write_runbook: Write, tmp_path: Path
) -> None:
    rb = write_runbook("""
        version: 1
        id: v
        title: V
        warehouse: {backend: duckdb, path: nothere.duckdb}
        steps:
          - id: v
            kind: verify
            checks:
              - {table: nba.games, expect: {min: 1}}
    """)
    record, _ = run_runbook(rb, RunOptions(reports_dir=tmp_path / "r"))
    assert record.step("v").reason == (
        f"nba.games: table nba.games does not exist: the DuckDB file {tmp_path / 'nothere.duckdb'}"
        " does not exist (yet)"
    )
