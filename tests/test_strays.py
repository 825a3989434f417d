"""Processes that leave their step's process group: found, named, stopped and reaped."""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.proc.process import ProcessResult, Strays, run_process
from agent.record import Status, load_record
from tests.procs import alive, run_cli

PY = sys.executable
Write = Callable[..., Path]

# A Python program that forks twice, leaving the grandchild in a group or session of its own
# (how daemons detach); {call} is os.setsid() or os.setpgid(0, 0).
_DOUBLE_FORK = """\
import os, sys, time
if os.fork() == 0:
    os.{call}
    if os.fork() == 0:
{redirect}        with open(sys.argv[1], "a") as fh:
            fh.write(f"{{os.getpid()}}\\n")
        time.sleep(300)
    os._exit(0)
os.wait()
"""
_TO_DEV_NULL = (
    "        fd = os.open('/dev/null', os.O_RDWR)\n"
    "        for n in (0, 1, 2):\n"
    "            os.dup2(fd, n)\n"
)


@dataclass(frozen=True)
class Layout:
    """A way to leave something running: the shell that does it, how many pids it writes to
    "$P", and whether they leave the step's group."""

    script: str
    pids: int = 1
    leaves: bool = True


def _double_fork(call: str, *, redirect: bool) -> str:
    code = _DOUBLE_FORK.format(call=call, redirect=_TO_DEV_NULL if redirect else "")
    return f'{PY} -c {shlex.quote(code)} "$P"'


# A stray writes its own pid once it has left the group: `$!` would be written before.
_SELF = "sh -c 'echo $$ >> \"$P\"; exec sleep 300'"

LAYOUTS = {
    "background": Layout('sleep 300 & echo $! >> "$P"', leaves=False),
    "background-redirected": Layout('sleep 300 >/dev/null 2>&1 & echo $! >> "$P"', leaves=False),
    "nohup": Layout('nohup sleep 300 >/dev/null 2>&1 & echo $! >> "$P"', leaves=False),
    "setsid": Layout(f"setsid {_SELF} &"),
    "setsid-redirected": Layout(f"setsid {_SELF} >/dev/null 2>&1 &"),
    "nohup-setsid": Layout(f"nohup setsid {_SELF} >/dev/null 2>&1 &"),
    "setsid-in-subshell": Layout(f"(setsid {_SELF} >/dev/null 2>&1 &)"),
    "setsid-with-a-child": Layout(
        'setsid sh -c \'echo $$ >> "$P"; sleep 300 & echo $! >> "$P"; exec sleep 301\''
        " >/dev/null 2>&1 &",
        pids=2,
    ),
    # No tag: its environment is cleared (the pid file's path is written into the command).
    "setsid-env-cleared": Layout(
        'env -i setsid sh -c "echo \\$\\$ >> $P; exec sleep 300" >/dev/null 2>&1 &'
    ),
    "double-fork-setsid": Layout(_double_fork("setsid()", redirect=False)),
    "double-fork-setsid-redirected": Layout(_double_fork("setsid()", redirect=True)),
    "double-fork-setpgid": Layout(_double_fork("setpgid(0, 0)", redirect=False)),
    "double-fork-setpgid-redirected": Layout(_double_fork("setpgid(0, 0)", redirect=True)),
}


def _script(layout: Layout, pid_file: Path, end: str) -> str:
    """The step: start the layout, wait until its pids are written, then `end`."""
    return (
        f'export P={pid_file}; : > "$P"\n{layout.script}\ni=0; '
        f'while [ "$(wc -l < "$P")" -lt {layout.pids} ] && [ $i -lt 1000 ]; '
        f"do sleep 0.01; i=$((i+1)); done; {end}"
    )


def _pids(pid_file: Path) -> list[int]:
    return [int(x) for x in pid_file.read_text().split()]


def _reaped(pid: int) -> bool:
    """Gone, or at least not a zombie waiting for this process to collect it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    fields = stat[stat.rfind(")") + 2 :].split()
    return not (fields[0] == "Z" and int(fields[1]) == os.getpid())


@pytest.fixture
def kill_after() -> Iterator[list[int]]:
    """Pids to SIGKILL after the test whatever it found: a failing test leaves no sleeper."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def _run(
    tmp_path: Path, script: str, *, timeout: float = 60, strays: Strays | None = None
) -> ProcessResult:
    return run_process(
        ["/bin/sh", "-c", script],
        cwd=tmp_path,
        env=dict(os.environ),
        timeout=timeout,
        log_path=tmp_path / "step.log",
        grace=0.5,
        strays=strays,
    )


@pytest.mark.parametrize("end", ["timeout", "exit"])
@pytest.mark.parametrize("name", list(LAYOUTS))
def test_nothing_a_step_started_survives_it(
    tmp_path: Path, name: str, end: str, kill_after: list[int]
) -> None:
    layout = LAYOUTS[name]
    pid_file = tmp_path / "pids"
    result = _run(
        tmp_path,
        _script(layout, pid_file, "sleep 300" if end == "timeout" else "exit 0"),
        timeout=2 if end == "timeout" else 60,
    )
    pids = _pids(pid_file)
    kill_after.extend(pids)
    assert len(pids) == layout.pids, "the layout did not start in time"
    assert result.timed_out == (end == "timeout")
    assert [p for p in pids if alive(p)] == []
    assert [p for p in pids if not _reaped(p)] == []
    if layout.leaves:
        # Named, and found while they ran: their command lines are known.
        assert set(pids) <= {s.pid for s in result.stopped}
        assert all(s.command.startswith(("sleep", "sh -c", PY)) for s in result.stopped)
    else:
        assert result.stopped == []  # stopped with the group: nothing left it


def test_a_normal_end_keeps_the_strays_for_later(tmp_path: Path, kill_after: list[int]) -> None:
    pid_file = tmp_path / "pids"
    strays = Strays()
    result = _run(
        tmp_path, _script(LAYOUTS["setsid-redirected"], pid_file, "exit 0"), strays=strays
    )
    (pid,) = _pids(pid_file)
    kill_after.append(pid)
    assert result.exit_code == 0
    assert result.stopped == []
    assert [s.pid for s in result.left] == [pid]
    assert alive(pid)  # a helper that later steps may use
    stopped = strays.stop(grace=0.5)
    assert [(s.pid, s.command) for s in stopped] == [(pid, "sleep 300")]
    assert not alive(pid)
    assert _reaped(pid)
    assert strays.stop(grace=0.5) == []


def test_programs_running_side_by_side_stop_only_their_own(
    tmp_path: Path, kill_after: list[int]
) -> None:
    """Every layout at once, one program each: a timeout stops its own strays, never another
    program's; the ones that ended normally keep theirs until they are stopped."""
    results: dict[tuple[str, str], ProcessResult] = {}
    kept: dict[tuple[str, str], Strays] = {}
    files: dict[tuple[str, str], Path] = {}

    def go(name: str, end: str) -> None:
        folder = tmp_path / f"{name}-{end}"
        folder.mkdir()
        files[(name, end)] = folder / "pids"
        kept[(name, end)] = Strays()
        script = _script(LAYOUTS[name], files[(name, end)], "sleep 300" if end == "timeout" else "")
        results[(name, end)] = _run(
            folder,
            script,
            timeout=3 if end == "timeout" else 60,
            strays=kept[(name, end)],
        )

    threads = [
        threading.Thread(target=go, args=(name, end))
        for name, layout in LAYOUTS.items()
        if layout.leaves
        for end in ("timeout", "exit")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pids = {key: _pids(path) for key, path in files.items()}
    for found in pids.values():
        kill_after.extend(found)
    for (name, end), result in results.items():
        own = pids[(name, end)]
        assert len(own) == LAYOUTS[name].pids, (name, end)
        if end == "timeout":
            assert set(own) <= {s.pid for s in result.stopped}, name
            assert [p for p in own if alive(p)] == [], name
        else:
            assert result.stopped == [], name
            assert [p for p in own if not alive(p)] == [], name
    everyone = {p for found in pids.values() for p in found}
    for (name, end), result in results.items():
        theirs = {s.pid for s in [*result.stopped, *result.left]} & everyone
        assert theirs <= set(pids[(name, end)]), (name, end)
    for key, strays in kept.items():
        stopped = {s.pid for s in strays.stop(grace=0.5)}
        if key[1] == "exit":
            # The env-cleared one carries no tag: with others running it is nobody's for sure.
            expected = set() if key[0] == "setsid-env-cleared" else set(pids[key])
            assert expected <= stopped <= set(pids[key]), key
    survivors = [
        p
        for key, found in pids.items()
        for p in found
        if alive(p) and key[0] != "setsid-env-cleared"
    ]
    assert survivors == []


def _runbook(write_runbook: Write, *steps: str) -> Path:
    return write_runbook("version: 1\nid: strays\ntitle: Strays\nsteps:\n" + "\n".join(steps))


def _step(sid: str, command: str, **extra: object) -> str:
    lines = [
        f"  - id: {sid}",
        "    kind: run",
        "    shell: true",
        f"    command: {json.dumps(command)}",
    ]
    lines += [f"    {k}: {json.dumps(v)}" for k, v in extra.items()]
    return "\n".join(lines)


def test_a_helper_serves_later_steps_and_is_stopped_when_the_run_ends(
    write_runbook: Write, tmp_path: Path, kill_after: list[int]
) -> None:
    rb = _runbook(
        write_runbook,
        _step("start", "setsid sleep 300 >/dev/null 2>&1 & echo $! > helper.pid"),
        _step("use", 'kill -0 "$(cat helper.pid)" && echo helper is up'),
    )
    proc = run_cli("run", str(rb), "-q", cwd=tmp_path)
    pid = int((tmp_path / "helper.pid").read_text())
    kill_after.append(pid)
    assert proc.returncode == 0, proc.stderr
    assert not alive(pid)
    (run_dir,) = (tmp_path / "reports").glob("*-strays-*")
    record = load_record(run_dir)
    assert record.step("use").status == Status.SUCCESS  # the helper was still there
    start = record.step("start")
    assert [(p.pid, p.command, p.when) for p in start.stopped_processes] == [
        (pid, "sleep 300", "run_end")
    ]
    assert record.step("use").stopped_processes == []
    report = (run_dir / "report.md").read_text()
    assert (
        "- Stopped 1 process that had left the step's process group at the end of the run: "
        f"sleep 300 (pid {pid})"
    ) in report
    # The journal holds the result with it: a resume or `show` of a crash sees it too.
    lines = [json.loads(x) for x in (run_dir / "journal.jsonl").read_text().splitlines()]
    last = [e for e in lines if e["event"] == "step_finished" and e["step"] == "start"][-1]
    assert last["result"]["stopped_processes"][0]["pid"] == pid


def test_a_timeout_names_what_it_stopped_outside_the_group(
    write_runbook: Write, tmp_path: Path, kill_after: list[int]
) -> None:
    rb = _runbook(
        write_runbook,
        _step(
            "slow",
            "setsid sleep 300 & echo $! >> pids; setsid sleep 301 >/dev/null & echo $! >> pids; "
            "sleep 302",
            timeout=2,
        ),
    )
    proc = run_cli("run", str(rb), "-q", cwd=tmp_path)
    pids = _pids(tmp_path / "pids")
    kill_after.extend(pids)
    assert proc.returncode == 1, proc.stderr
    assert [p for p in pids if alive(p)] == []
    (run_dir,) = (tmp_path / "reports").glob("*-strays-*")
    slow = load_record(run_dir).step("slow")
    assert slow.status == Status.TIMED_OUT
    assert slow.reason == (
        "timed out after 2s; the process group was stopped; "
        "stopped 2 processes that had left the step's process group"
    )
    assert sorted((p.pid, p.when) for p in slow.stopped_processes) == sorted(
        (p, "timeout") for p in pids
    )
    report = (run_dir / "report.md").read_text()
    assert "- Stopped 2 processes that had left the step's process group at its timeout: " in report


def test_parallel_steps_keep_their_own_strays(
    write_runbook: Write, tmp_path: Path, kill_after: list[int]
) -> None:
    """One step times out while another's helper runs: the helper survives the timeout, serves
    the step after both, and is stopped at the end, named in its own step."""
    rb = _runbook(
        write_runbook,
        _step(
            "helper",
            "setsid sleep 300 >/dev/null 2>&1 & echo $! > helper.pid; "
            "while [ ! -s slow.pid ]; do sleep 0.01; done",
            needs=[],
        ),
        _step("slow", "setsid sleep 301 & echo $! > slow.pid; sleep 302", timeout=3, needs=[]),
        _step(
            "use",
            'kill -0 "$(cat helper.pid)" && ! kill -0 "$(cat slow.pid)" 2>/dev/null',
            # After both, whatever slow ended: `when` reads its status, so it is an order.
            needs=["helper", "slow"],
            when="steps.slow.status != 'SUCCESS'",
        ),
    )
    proc = run_cli("run", str(rb), "-q", "--parallel", "2", cwd=tmp_path)
    helper, slow_pid = (int((tmp_path / f).read_text()) for f in ("helper.pid", "slow.pid"))
    kill_after.extend([helper, slow_pid])
    (run_dir,) = (tmp_path / "reports").glob("*-strays-*")
    record = load_record(run_dir)
    assert record.step("use").status == Status.SUCCESS, record.step("use").reason
    assert [(p.pid, p.when) for p in record.step("helper").stopped_processes] == [
        (helper, "run_end")
    ]
    assert [(p.pid, p.when) for p in record.step("slow").stopped_processes] == [
        (slow_pid, "timeout")
    ]
    assert not alive(helper)
    assert not alive(slow_pid)
    assert proc.returncode == 1, proc.stderr  # a step others need timed out
