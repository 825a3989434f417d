"""Progress on the terminal: plain timestamped lines without a TTY, a live view on one."""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pexpect
import pyte

from agent.output.console import PlainConsole, make_console
from agent.record import RunRecord, RunStatus, Status, StepResult
from agent.steps.base import Event
from tests.procs import run_cli

PY = sys.executable
Write = Callable[..., Path]
T0 = datetime(2026, 1, 26, 5, 14, 32, tzinfo=UTC)


def _record() -> RunRecord:
    return RunRecord(
        run_id="20260126T051432Z-demo-abcd",
        runbook_id="demo",
        runbook_path="d.yaml",
        runbook_sha256="0" * 64,
        title="Backfill for 2026-01-25",
        operator="o",
        host="h",
        tool_version="0",
        started_at=T0,
        steps=[
            StepResult(id="a", kind="run", title="Run A"),
            StepResult(id="b", kind="verify", title="Verify B"),
        ],
    )


def test_plain_output_byte_for_byte() -> None:
    out = io.StringIO()
    ticks = iter(T0 + timedelta(seconds=i) for i in range(100))
    console = PlainConsole(out, clock=lambda: next(ticks))
    rec = _record()
    a = rec.steps[0].model_copy(
        update={"status": Status.SUCCESS, "started_at": T0, "ended_at": T0 + timedelta(seconds=8.2)}
    )
    b = rec.steps[1].model_copy(
        update={
            "status": Status.PARTIAL,
            "started_at": T0,
            "ended_at": T0 + timedelta(seconds=1),
            "reason": "short: t: 10 of 16",
        }
    )
    done = rec.model_copy(update={"status": RunStatus.PARTIALLY_COMPLETE})
    for ev in [
        Event("run_started", None, {"record": rec, "run_dir": Path("reports/x")}),
        Event("baseline_started", "b"),
        Event("step_started", "a", {"title": "Run A"}),
        Event(
            "output",
            "a",
            {"line": "Records saved: 16", "text": "x\nRecords saved: 16", "span": (0, 19)},
        ),
        Event("retry", "a", {"attempt": 2, "of": 3, "delay": 5.0, "reason": "exit code 1"}),
        Event("step_finished", "a", {"result": a}),
        Event("step_started", "b", {"title": "Verify B"}),
        Event("poll", "b", {"n": 1, "ok": False, "left": 120.0}),
        Event("step_finished", "b", {"result": b}),
        Event("run_finished", None, {"record": done, "run_dir": Path("reports/x")}),
    ]:
        console(ev)
    assert out.getvalue() == (
        "05:14:32 run 20260126T051432Z-demo-abcd: Backfill for 2026-01-25 (2 steps)\n"
        "05:14:33 [b] measuring baseline\n"
        "05:14:34 [a] started: Run A\n"
        "05:14:35 [a] attempt 2 of 3 in 5s (exit code 1)\n"
        "05:14:36 [a] ✅ SUCCESS in 8.2s\n"
        "05:14:37 [b] started: Verify B\n"
        "05:14:38 [b] poll 1: false, 120s left\n"
        "05:14:39 [b] ⚠️ PARTIAL in 1.0s: short: t: 10 of 16\n"
        "05:14:40 run PARTIALLY COMPLETE: report reports/x/report.md\n"
    )
    assert "\x1b" not in out.getvalue()


def test_verbose_echoes_every_line_and_quiet_only_the_end() -> None:
    out = io.StringIO()
    console = PlainConsole(out, verbose=True, clock=lambda: T0)
    console(Event("output", "a", {"line": "two", "text": "zone\ntwo", "span": (1, 8)}))
    assert out.getvalue() == "05:14:32 [a] | one\n05:14:32 [a] | two\n"
    quiet = io.StringIO()
    q = PlainConsole(quiet, quiet=True, clock=lambda: T0)
    q(Event("step_started", "a", {"title": "A"}))
    assert quiet.getvalue() == ""


def test_non_tty_run_prints_plain_lines(write_runbook: Write, tmp_path: Path) -> None:

    rb = write_runbook(f"""
        version: 1
        id: t
        title: T
        steps:
          - {{id: a, kind: run, command: {PY} -c "print(1)"}}
    """)
    res = run_cli("run", str(rb), cwd=tmp_path)
    assert res.returncode == 0
    assert "\x1b" not in res.stderr
    lines = res.stderr.splitlines()
    assert lines[1].endswith("[a] started: a")
    assert " [a] ✅ SUCCESS in " in lines[2]
    assert make_console(quiet=False, verbose=False, tty=False).__class__ is PlainConsole


def test_tty_live_view_through_a_pseudo_terminal(write_runbook: Write, tmp_path: Path) -> None:
    """The live view as a person sees it: run in a real pty, rendered by a VT100 emulator."""
    (tmp_path / "slow.py").write_text(
        "import time\nfor i in range(3):\n    print(f'chunk {i} loaded', flush=True)\n"
        "    time.sleep(0.4)\n",
        encoding="utf-8",
    )
    rb = write_runbook(f"""
        version: 1
        id: live
        title: Live view
        steps:
          - id: load
            kind: run
            title: Load chunks
            command: {PY} slow.py
          - id: check
            kind: run
            title: Check
            command: {PY} -c "import sys; sys.exit(2)"
    """)
    env = dict(os.environ, COLUMNS="100", LINES="30", TERM="xterm-256color")
    child = pexpect.spawn(
        PY,
        ["-m", "agent", "run", str(rb)],
        cwd=str(tmp_path),
        env=env,
        dimensions=(30, 100),
        encoding="utf-8",
        timeout=60,
    )
    screen = pyte.Screen(100, 30)
    stream = pyte.Stream(screen)
    seen_running = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            stream.feed(child.read_nonblocking(4096, timeout=0.2))
        except pexpect.TIMEOUT:
            pass
        except pexpect.EOF:
            break
        text = "\n".join(screen.display)
        seen_running = seen_running or "chunk 1 loaded" in text
    child.close()
    final = "\n".join(line.rstrip() for line in screen.display).strip()
    (tmp_path / "screen.txt").write_text(final + "\n", encoding="utf-8")
    print(final)  # the screenshot-like capture, shown with -s
    assert child.exitstatus == 3  # one step succeeded, one failed that nothing needs
    assert seen_running  # the last output line was shown while the step ran
    assert "Summary" in final
    assert "✅ SUCCESS" in final and "❌ FAILED" in final
    assert "exit code 2" in final
    assert "run PARTIALLY COMPLETE: report" in final


def _partitioned_runbook(write_runbook: Write, needs: str = "needs: [load]") -> Path:
    # Day 2 exits 2; the others succeed: the partitions are told apart by their labels.
    return write_runbook(f"""
        version: 1
        id: days
        title: Three days
        partitions: {{var: day, values: ["d1", "d2", "d3"], parallel: 2}}
        steps:
          - id: load
            kind: run
            command: {PY} -c "import sys; sys.exit(2 if '{{{{ day }}}}' == 'd2' else 0)"
          - id: publish
            kind: run
            {needs}
            command: {PY} -c "print('published {{{{ day }}}}')"
    """)


def test_plain_lines_name_each_pair_and_the_partitions_summary(
    write_runbook: Write, tmp_path: Path
) -> None:
    out = run_cli("run", str(_partitioned_runbook(write_runbook)))
    lines = out.stderr.splitlines() + out.stdout.splitlines()
    text = "\n".join(line[9:] for line in lines)  # without the clock
    assert "[load@d2] ❌ FAILED" in text
    assert "[publish@d2] ⏭️ SKIPPED" in text
    assert "[publish@d1] ✅ SUCCESS" in text and "[publish@d3] ✅ SUCCESS" in text
    assert "partitions: 2 of 3 partitions complete; 1 failed: d2" in text


def test_live_view_keeps_one_row_per_step_with_its_partitions(
    write_runbook: Write, tmp_path: Path
) -> None:
    # Nothing needs the failing step (and pyte cannot draw ⏭️, so nothing is skipped).
    rb = _partitioned_runbook(write_runbook, needs="")
    env = dict(os.environ, COLUMNS="120", LINES="30", TERM="xterm-256color")
    child = pexpect.spawn(
        PY,
        ["-m", "agent", "run", str(rb)],
        cwd=str(tmp_path),
        env=env,
        dimensions=(30, 120),
        encoding="utf-8",
        timeout=60,
    )
    screen = pyte.Screen(120, 30)
    stream = pyte.Stream(screen)
    while True:
        try:
            stream.feed(child.read_nonblocking(4096, timeout=0.2))
        except pexpect.TIMEOUT:
            continue
        except pexpect.EOF:
            break
    child.close()
    final = "\n".join(line.rstrip() for line in screen.display)
    print(final)
    assert child.exitstatus == 3
    live = final.split("Summary")[0]
    # One row per step in the live view, not one per pair, each counting its partitions.
    assert [line.split()[1:3] for line in live.splitlines()[1:] if line.strip()] == [
        ["load", "load"],
        ["publish", "publish"],
    ]
    assert live.count("3/3 partitions") == 2
    assert "1 ❌ FAILED, 2 ✅ SUCCESS" in final
    assert "3 ✅ SUCCESS" in final
    assert "2 of 3 partitions complete; 1 failed: d2" in final
