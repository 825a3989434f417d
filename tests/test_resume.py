"""Crash and resume with real processes: `kill -9` of the runner at each point of a step's life.

Every step appends its name to `effects.txt` when it starts, so the side effects on disk say
exactly how many times each step really ran, whatever the run record claims.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pexpect
import pytest

from agent.record import Journal, RunStatus, Status, load_record
from agent.run.executor import CRASH_AT_ENV
from tests.procs import alive

PY = sys.executable
Write = Callable[..., Path]

STEP_SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    name = sys.argv[1]
    with open("effects.txt", "a") as fh:
        fh.write(name + "\\n")
    print(f"{name}: working", flush=True)
    if name == "b":
        Path("b.mid").touch()  # the test kills the runner now, while b still writes
        for i in range(6):
            time.sleep(0.05)
            print(f"b: tick {i}", flush=True)
    print(f"{name}: done", flush=True)
""")

# Every fault the tests inject, counted for the closing note of the work order.
FAULTS: list[str] = []
LOSSLESS_RESUMES: list[str] = []


def _runbook(write_runbook: Write, tmp_path: Path, *, b_resume: str = "auto") -> Path:
    (tmp_path / "step.py").write_text(STEP_SCRIPT, encoding="utf-8")
    return write_runbook(f"""
        version: 1
        id: crashy
        title: Crashy
        steps:
          - {{id: a, kind: run, command: {PY} step.py a}}
          - {{id: b, kind: run, command: {PY} step.py b, resume: {b_resume}}}
          - {{id: c, kind: run, command: {PY} step.py c}}
    """)


def _cli(*args: str, crash_at: str | None = None, cwd: Path) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.pop(CRASH_AT_ENV, None)
    if crash_at:
        env[CRASH_AT_ENV] = crash_at
    return subprocess.Popen(
        [PY, "-m", "agent", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _effects(tmp_path: Path) -> Counter[str]:
    path = tmp_path / "effects.txt"
    return Counter(path.read_text().split()) if path.exists() else Counter()


def _run_dir(tmp_path: Path) -> Path:
    (run_dir,) = (tmp_path / "reports").glob("*-crashy-*")
    return run_dir


def _crash(rb: Path, tmp_path: Path, crash_at: str | None) -> Path:
    """Run the runbook in a runner that dies by SIGKILL; return its run directory."""
    proc = _cli("run", str(rb), "--reports", "reports", crash_at=crash_at, cwd=tmp_path)
    if crash_at is None:  # the test kills the runner itself, while step b writes output
        deadline = time.monotonic() + 20
        while not (tmp_path / "b.mid").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert (tmp_path / "b.mid").exists()
        proc.kill()
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    FAULTS.append(crash_at or "kill -9 mid-output:b")
    run_dir = _run_dir(tmp_path)
    record = load_record(run_dir)
    assert record.status is None  # nothing had the chance to finish the record
    assert not (run_dir / "report.md").exists()
    return run_dir


def _resume(run_dir: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    proc = _cli("resume", str(run_dir), *extra, cwd=tmp_path)
    out, err = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# (crash point, how many times b's side effect may show, b's sessions after resume)
CRASH_POINTS = [
    ("before_start:b", 1, 1),  # b never journaled as started: it simply runs on resume
    ("started:b", 1, 2),  # journaled as started, its command never ran: runs once, 2 sessions
    (None, 2, 2),  # kill -9 from outside while b's child writes: b runs again from its start
    ("exited:b", 2, 2),  # b's command ended, result not journaled: b runs again
    ("finished:b", 1, 1),  # b's result journaled: kept, never run again
    ("before_start:a", 1, 1),  # the very first step, before anything of it is journaled
    ("exited:c", 1, 1),  # the last step (c counted below)
]


@pytest.mark.parametrize(("crash_at", "b_runs", "b_sessions"), CRASH_POINTS)
def test_kill_9_then_resume_loses_nothing(
    write_runbook: Write, tmp_path: Path, crash_at: str | None, b_runs: int, b_sessions: int
) -> None:
    rb = _runbook(write_runbook, tmp_path)
    run_dir = _crash(rb, tmp_path, crash_at)
    # The journal is readable after the crash and every line is whole JSON.
    raw = (run_dir / "journal.jsonl").read_text().splitlines()
    assert json.loads(raw[0])["event"] == "run_started"
    assert all(json.loads(line) for line in raw)
    before = _effects(tmp_path)

    done = _resume(run_dir, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(run_dir / "report.md")

    effects = _effects(tmp_path)
    crashed_step = (crash_at or "x:b").split(":")[1]
    expected = {"a": 1, "b": b_runs, "c": 1}
    if crash_at == "exited:c":
        expected["c"] = 2  # c's command had ended when the runner died: it ran again
    assert dict(effects) == expected, (before, effects)
    record = load_record(run_dir)
    assert record.status == RunStatus.COMPLETE
    assert [s.status for s in record.steps] == [Status.SUCCESS] * 3
    sessions = {s.id: s.sessions for s in record.steps}
    want_sessions = {"a": 1, "b": b_sessions, "c": 1}
    if crash_at == "exited:c":
        want_sessions["c"] = 2
    assert sessions == want_sessions
    # Steps finished before the crash keep their first session's timings.
    first_started = record.sessions[0].started_at
    resumed_at = record.sessions[1].started_at
    for step in record.steps:
        assert step.started_at is not None
        assert step.ended_at is not None
        ran_before = step.id == "a" and crashed_step != "a"
        if ran_before:
            assert first_started <= step.started_at < resumed_at
    # The report covers the whole run, both sessions, and says which step ran twice.
    assert len(record.sessions) == 2
    assert record.sessions[0].ended_at is not None  # the crashed session: its last journal line
    assert record.sessions[0].ended_at <= resumed_at
    report = (run_dir / "report.md").read_text()
    assert "(session 2)" in report
    for step in record.steps:
        assert f"{step.title} completed: SUCCESS" in report
    if 2 in want_sessions.values():
        assert "Runner sessions: 2 (resumed)" in report
    else:
        assert "Runner sessions" not in report
    events = [e["event"] for e in Journal.read(run_dir / "journal.jsonl")]
    assert events.count("run_resumed") == 1
    assert events[-1] == "run_finished"
    LOSSLESS_RESUMES.append(crash_at or "mid-output:b")


def test_resume_never_stops_and_says_why(write_runbook: Write, tmp_path: Path) -> None:
    rb = _runbook(write_runbook, tmp_path, b_resume="never")
    run_dir = _crash(rb, tmp_path, "exited:b")
    done = _resume(run_dir, tmp_path)
    # Nothing ran: the run stays interrupted (130) and resumable once a person has looked.
    assert done.returncode == 130, done.stderr
    assert dict(_effects(tmp_path)) == {"a": 1, "b": 1}  # neither b nor c ran again
    record = load_record(run_dir)
    b, c = record.step("b"), record.step("c")
    assert b.status == Status.ABORTED
    assert b.reason is not None
    assert "resume: never" in b.reason
    assert f"runbook resume --force {run_dir}" in b.reason
    assert c.status == Status.ABORTED
    assert c.reason == "not run: b must be checked first"
    report = (run_dir / "report.md").read_text()
    assert "resume: never" in report
    assert "resume: never" in done.stderr  # the console says why, too
    # Without --force it stops there again; with --force, b runs again and the run finishes.
    again = _resume(run_dir, tmp_path)
    assert again.returncode == 130
    assert dict(_effects(tmp_path)) == {"a": 1, "b": 1}
    forced = _cli("resume", "--force", str(run_dir), cwd=tmp_path)
    _, err = forced.communicate(timeout=60)
    assert forced.returncode == 0, err
    assert dict(_effects(tmp_path)) == {"a": 1, "b": 2, "c": 1}
    assert load_record(run_dir).status == RunStatus.COMPLETE


def test_resume_refuses_when_runbook_or_script_changed(
    write_runbook: Write, tmp_path: Path
) -> None:
    rb = _runbook(write_runbook, tmp_path)
    run_dir = _crash(rb, tmp_path, "started:b")
    script = tmp_path / "step.py"
    script.write_text(script.read_text() + "\n# edited during the incident\n")
    rb.write_text(rb.read_text() + "\n# edited too\n")

    refused = _resume(run_dir, tmp_path)
    assert refused.returncode == 1
    assert "refusing to resume" in refused.stderr
    assert f"the runbook {rb} changed" in refused.stderr
    assert "step.py changed" in refused.stderr
    assert "--force" in refused.stderr
    assert dict(_effects(tmp_path)) == {"a": 1}  # nothing ran
    assert load_record(run_dir).status is None

    forced = _resume(run_dir, tmp_path, "--force")
    assert forced.returncode == 0, forced.stderr
    assert dict(_effects(tmp_path)) == {"a": 1, "b": 1, "c": 1}


def test_resume_refuses_when_a_script_named_through_env_changed(
    write_runbook: Write, tmp_path: Path
) -> None:
    """The script's path comes from the runbook's `env`: it is hashed with that env, not {}."""
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "step.py").write_text(STEP_SCRIPT, encoding="utf-8")
    rb = write_runbook(f"""
        version: 1
        id: crashy
        title: Crashy
        env:
          SCRIPTS: scripts
        steps:
          - {{id: a, kind: run, command: "{PY} {{{{ env.SCRIPTS }}}}/step.py a"}}
          - {{id: b, kind: run, command: "{PY} {{{{ env.SCRIPTS }}}}/step.py b"}}
    """)
    run_dir = _crash(rb, tmp_path, "started:b")
    assert "scripts/step.py" in load_record(run_dir).file_hashes
    script = tmp_path / "scripts" / "step.py"
    script.write_text(script.read_text() + "\n# edited during the incident\n")

    refused = _resume(run_dir, tmp_path)
    assert refused.returncode == 1
    assert "refusing to resume: scripts/step.py changed since the run began" in refused.stderr
    assert dict(_effects(tmp_path)) == {"a": 1}  # nothing ran


def test_resume_of_a_finished_run_is_refused(write_runbook: Write, tmp_path: Path) -> None:
    rb = _runbook(write_runbook, tmp_path)
    proc = _cli("run", str(rb), "--reports", "reports", cwd=tmp_path)
    proc.communicate(timeout=30)
    assert proc.returncode == 0
    again = _resume(_run_dir(tmp_path), tmp_path)
    assert again.returncode == 1
    assert "already finished (COMPLETE); nothing to resume" in again.stderr
    assert dict(_effects(tmp_path)) == {"a": 1, "b": 1, "c": 1}


def test_from_and_only_skip_the_rest_and_say_so(write_runbook: Write, tmp_path: Path) -> None:
    rb = _runbook(write_runbook, tmp_path)
    proc = _cli("run", str(rb), "--reports", "r1", "--from", "b", cwd=tmp_path)
    proc.communicate(timeout=30)
    assert proc.returncode == 0
    (run_dir,) = (tmp_path / "r1").glob("*-crashy-*")
    record = load_record(run_dir)
    a = record.step("a")
    assert a.status == Status.SKIPPED
    assert a.skipped_by == "selection"
    assert a.reason == "not selected: before --from b"
    assert dict(_effects(tmp_path)) == {"b": 1, "c": 1}
    assert "not selected: before --from b" in (run_dir / "report.md").read_text()

    proc = _cli("run", str(rb), "--reports", "r2", "--only", "c", "--only", "a", cwd=tmp_path)
    proc.communicate(timeout=30)
    assert proc.returncode == 0
    (run_dir,) = (tmp_path / "r2").glob("*-crashy-*")
    record = load_record(run_dir)
    assert record.step("b").status == Status.SKIPPED
    assert record.step("b").reason == "not selected: --only c a"
    assert dict(_effects(tmp_path)) == {"a": 1, "b": 1, "c": 2}
    assert "not selected: --only c a" in (run_dir / "report.md").read_text()

    bad = _cli("run", str(rb), "--reports", "r3", "--only", "nope", cwd=tmp_path)
    _, err = bad.communicate(timeout=30)
    assert bad.returncode == 2
    assert "unknown step 'nope' (steps: a, b, c)" in err


def test_sigterm_during_retry_backoff_aborts_and_writes_the_record(
    write_runbook: Write, tmp_path: Path
) -> None:
    rb = write_runbook(f"""
        version: 1
        id: crashy
        title: Crashy
        steps:
          - id: flaky
            kind: run
            command: {PY} -c "open('effects.txt', 'a').write('flaky\\\\n'); raise SystemExit(3)"
            retries: {{attempts: 3, backoff: 30s}}
          - {{id: after, kind: run, command: {PY} -c "print(1)"}}
    """)
    proc = _cli("run", str(rb), "--reports", "reports", cwd=tmp_path)
    assert proc.stderr is not None
    for line in proc.stderr:  # the console says when the back-off begins
        if "attempt 2 of 3 in 30s" in line:
            break
    proc.send_signal(signal.SIGTERM)
    FAULTS.append("SIGTERM in retry back-off")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    run_dir = _run_dir(tmp_path)
    record = load_record(run_dir)
    flaky = record.step("flaky")
    assert flaky.status == Status.ABORTED
    assert flaky.reason == "interrupted during retry back-off"
    assert [a.exit_code for a in flaky.attempts] == [3]
    assert record.step("after").status == Status.ABORTED
    assert record.status == RunStatus.INTERRUPTED
    assert record.exit_code == 130
    assert (run_dir / "report.md").exists()
    assert Journal.read(run_dir / "journal.jsonl")[-1]["event"] == "run_finished"
    assert dict(_effects(tmp_path)) == {"flaky": 1}


@pytest.mark.parametrize(("answer", "status"), [("y", Status.SUCCESS), ("n", Status.FAILED)])
def test_manual_gate_asks_on_a_real_terminal(
    write_runbook: Write, tmp_path: Path, answer: str, status: Status
) -> None:
    rb = write_runbook(f"""
        version: 1
        id: crashy
        title: Crashy
        steps:
          - id: gate
            kind: manual
            title: Check the dashboard
            prompt: Is the dashboard green?
          - {{id: after, kind: run, command: {PY} -c "print('after')", needs: [gate]}}
    """)
    child = pexpect.spawn(
        PY,
        ["-m", "agent", "run", str(rb), "--reports", "reports"],
        cwd=str(tmp_path),
        env=dict(os.environ),
        encoding="utf-8",
        timeout=20,
    )
    child.expect_exact("Is the dashboard green?")
    child.sendline(answer)
    child.expect(pexpect.EOF)
    child.close()
    record = load_record(_run_dir(tmp_path))
    gate = record.step("gate")
    assert gate.status == status
    assert gate.reason == ("confirmed at the prompt" if answer == "y" else "declined at the prompt")
    after = record.step("after")
    assert after.status == (Status.SUCCESS if answer == "y" else Status.SKIPPED)
    assert child.exitstatus == (0 if answer == "y" else 1)  # nothing succeeded: FAILED


def test_ctrl_c_at_a_manual_prompt_aborts_the_run(write_runbook: Write, tmp_path: Path) -> None:
    rb = write_runbook(f"""
        version: 1
        id: crashy
        title: Crashy
        steps:
          - {{id: gate, kind: manual, prompt: Is the dashboard green?}}
          - {{id: after, kind: run, command: {PY} -c "print('after')"}}
    """)
    child = pexpect.spawn(
        PY,
        ["-m", "agent", "run", str(rb), "--reports", "reports"],
        cwd=str(tmp_path),
        env=dict(os.environ),
        encoding="utf-8",
        timeout=20,
    )
    child.expect_exact("Is the dashboard green?")
    child.sendintr()  # Ctrl-C, as the terminal sends it
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    record = load_record(_run_dir(tmp_path))
    assert record.step("gate").status == Status.ABORTED
    assert record.step("gate").reason == "interrupted at the prompt"
    assert record.step("after").status == Status.ABORTED
    assert record.status == RunStatus.INTERRUPTED


def test_resume_stops_children_the_dead_runner_left_behind(
    write_runbook: Write, tmp_path: Path
) -> None:
    """kill -9 leaves a silent child running in its own session; resume must stop it first."""
    pidfile = tmp_path / "child.pid"
    rb = write_runbook(f"""
        version: 1
        id: orphan
        title: Orphan
        steps:
          - id: quiet
            kind: run
            shell: true
            command: "echo $$ > {pidfile}; sleep 60 & wait"
    """)
    runner = _cli("run", str(rb), "--reports", str(tmp_path / "reports"), cwd=tmp_path)
    deadline = time.monotonic() + 20
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    runner.send_signal(signal.SIGKILL)
    runner.communicate(timeout=10)
    FAULTS.append("kill -9 with a silent child")
    orphan = int(pidfile.read_text())
    assert alive(orphan)  # the crash left it running
    pidfile.unlink()
    run_dir = next((tmp_path / "reports").glob("*-orphan-*"))
    resumed = _cli("resume", str(run_dir), cwd=tmp_path)
    # The resumed step starts the command again; stop that one once it has started.
    while not pidfile.exists() and time.monotonic() < deadline + 20:
        time.sleep(0.05)
    assert not alive(orphan)
    events = [e["event"] for e in Journal.read(run_dir / "journal.jsonl")]
    assert "leftover_stopped" in events
    resumed.send_signal(signal.SIGINT)
    resumed.communicate(timeout=20)


def test_show_report_and_followup_of_a_crashed_run_read_the_journal(
    write_runbook: Write, tmp_path: Path
) -> None:
    """run.json is a snapshot; what finished before the crash is in the journal."""
    rb = _runbook(write_runbook, tmp_path)
    run_dir = _crash(rb, tmp_path, "started:b")
    show = _cli("show", str(run_dir), cwd=tmp_path)
    out, _ = show.communicate(timeout=30)
    row_a = next(line for line in out.splitlines() if line.startswith("| a "))
    assert "SUCCESS" in row_a
    report = _cli("report", str(run_dir), cwd=tmp_path)
    text, _ = report.communicate(timeout=30)
    assert "### 1. a\n**Status:** ✅ SUCCESS" in text


def _journal_lines(run_dir: Path) -> list[str]:
    return (run_dir / "journal.jsonl").read_text().splitlines()


def _finished_line(run_dir: Path, step: str) -> int:
    """The index of step's step_finished line in the journal."""
    for i, line in enumerate(_journal_lines(run_dir)):
        ev = json.loads(line)
        if ev["event"] == "step_finished" and ev["step"] == step:
            return i
    raise AssertionError(step)


def _replace_line(run_dir: Path, index: int, text: str) -> None:
    lines = _journal_lines(run_dir)
    lines[index] = text
    (run_dir / "journal.jsonl").write_text("\n".join(lines) + "\n")


def _damage_result(run_dir: Path, index: int, change: Callable[[dict[str, object]], None]) -> None:
    ev = json.loads(_journal_lines(run_dir)[index])
    change(ev)
    _replace_line(run_dir, index, json.dumps(ev))


# How a hand or a tool can damage a journal; each (shape, how, the message's middle).
DAMAGED_JOURNALS: list[tuple[str, Callable[[Path, int], None], str]] = [
    ("a number", lambda d, i: _replace_line(d, i, "42"), "damaged journal line (a JSON int"),
    ("a list", lambda d, i: _replace_line(d, i, "[1, 2]"), "damaged journal line (a JSON list"),
    ("a string", lambda d, i: _replace_line(d, i, '"x"'), "damaged journal line (a JSON str"),
    ("not JSON", lambda d, i: _replace_line(d, i, "{oops"), "damaged journal line (not JSON)"),
    (
        "no step",
        lambda d, i: _damage_result(d, i, lambda ev: ev.pop("step")),
        "(a step_finished event without its step)",
    ),
    (
        "no result",
        lambda d, i: _damage_result(d, i, lambda ev: ev.pop("result")),
        "(a step_finished event without its result)",
    ),
    (
        "a string result",
        lambda d, i: _damage_result(d, i, lambda ev: ev.update(result="SUCCESS")),
        "(a step_finished event without its result)",
    ),
    (
        "a result of the wrong shape",
        lambda d, i: _damage_result(d, i, lambda ev: ev.update(result={"id": "a"})),
        "the step_finished line of step 'a' is damaged (kind: Field required)",
    ),
    (
        "another step's result",
        lambda d, i: _damage_result(
            d,
            i,
            lambda ev: ev.update(result={**ev["result"], "id": "c"}),  # type: ignore[dict-item]
        ),
        "the step_finished line of step 'a' is damaged (the result is step 'c''s)",
    ),
    (
        "no event name",
        lambda d, i: _damage_result(d, i, lambda ev: ev.update(event=7)),
        "damaged journal line (no event name)",
    ),
]


@pytest.mark.parametrize(
    ("shape", "damage", "message"), DAMAGED_JOURNALS, ids=[d[0] for d in DAMAGED_JOURNALS]
)
def test_a_damaged_journal_is_one_line_and_runs_nothing(
    write_runbook: Write,
    tmp_path: Path,
    shape: str,
    damage: Callable[[Path, int], None],
    message: str,
) -> None:
    rb = _runbook(write_runbook, tmp_path)
    run_dir = _crash(rb, tmp_path, "started:b")
    damage(run_dir, _finished_line(run_dir, "a"))
    before = (run_dir / "journal.jsonl").read_bytes()
    res = _resume(run_dir, tmp_path)
    assert res.returncode == 1, shape
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr
    (line,) = res.stderr.strip().splitlines()
    assert message in line, line
    assert line.endswith("restore it, or delete it and the lines after it to run those steps again")
    assert dict(_effects(tmp_path)) == {"a": 1}  # nothing ran again
    assert (run_dir / "journal.jsonl").read_bytes() == before  # and nothing was lost
    FAULTS.append(f"damaged journal: {shape}")


@pytest.mark.parametrize("shape", ["a folder", "vars.json garbage", "vars.json a list"])
def test_an_unreadable_journal_or_vars_file_is_one_line(
    write_runbook: Write, tmp_path: Path, shape: str
) -> None:
    rb = _runbook(write_runbook, tmp_path)
    run_dir = _crash(rb, tmp_path, "started:b")
    journal = run_dir / "journal.jsonl"
    if shape == "a folder":
        journal.unlink()
        journal.mkdir()
        expected = f"cannot read the journal {journal}: Is a directory"
    else:
        (run_dir / "vars.json").write_text("{garbage" if "garbage" in shape else "[1]")
        expected = (
            f"{run_dir / 'vars.json'} is damaged (not the JSON object of --var values this tool "
            "writes): restore it, or give every var again with --var and delete it"
        )
    res = _resume(run_dir, tmp_path)
    assert res.returncode == 1
    assert res.stderr.strip() == f"error: {expected}"
    assert dict(_effects(tmp_path)) == {"a": 1}
    FAULTS.append(f"damaged run folder: {shape}")


@pytest.mark.parametrize("state", ["missing", "empty"])
def test_a_lost_journal_refuses_then_force_keeps_what_run_json_says_finished(
    write_runbook: Write, tmp_path: Path, state: str
) -> None:
    rb = _runbook(write_runbook, tmp_path)
    run_dir = _crash(rb, tmp_path, "finished:b")
    # run.json is a snapshot; make it say what the journal said, then lose the journal.
    record = load_record(run_dir)
    from agent.record import write_record

    write_record(record, run_dir / "run.json")
    journal = run_dir / "journal.jsonl"
    if state == "missing":
        journal.unlink()
    else:
        journal.write_text("")
    res = _resume(run_dir, tmp_path)
    assert res.returncode == 1
    assert res.stderr.strip() == (
        f"error: the journal {journal} is {state}, so resume cannot tell which steps "
        "finished: `runbook resume --force` keeps the steps run.json records as finished and "
        "runs the others"
    )
    assert dict(_effects(tmp_path)) == {"a": 1, "b": 1}
    forced = _resume(run_dir, tmp_path, "--force")
    assert forced.returncode == 0, forced.stderr
    assert dict(_effects(tmp_path)) == {"a": 1, "b": 1, "c": 1}  # a and b never ran again
    FAULTS.append(f"lost journal: {state}")


def test_resume_force_after_steps_were_added_renamed_and_removed(
    write_runbook: Write, tmp_path: Path
) -> None:
    rb = _runbook(write_runbook, tmp_path)
    run_dir = _crash(rb, tmp_path, "finished:b")
    # a and b finished. Now: a is removed, c renamed to c2, and d added after it.
    write_runbook(f"""
        version: 1
        id: crashy
        title: Crashy
        steps:
          - {{id: b, kind: run, command: {PY} step.py b}}
          - {{id: c2, kind: run, command: {PY} step.py c2}}
          - {{id: d, kind: run, command: {PY} step.py d}}
    """)
    refused = _resume(run_dir, tmp_path)
    assert refused.returncode == 1 and "refusing to resume" in refused.stderr
    forced = _resume(run_dir, tmp_path, "--force")
    assert forced.returncode == 0, forced.stderr
    assert "Traceback" not in forced.stderr
    assert dict(_effects(tmp_path)) == {"a": 1, "b": 1, "c2": 1, "d": 1}
    record = load_record(run_dir)
    status = {s.id: s.status for s in record.steps}
    assert status == {
        "b": Status.SUCCESS,
        "c2": Status.SUCCESS,
        "d": Status.SUCCESS,
        "a": Status.SUCCESS,  # removed, but it ran: the record keeps what it did
        "c": Status.SKIPPED,  # removed before it ran
    }
    assert record.step("c").reason == "removed from the runbook before the run was resumed"
    assert record.status == RunStatus.COMPLETE
    report = (run_dir / "report.md").read_text()
    assert "removed from the runbook before the run was resumed" in report
