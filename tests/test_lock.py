"""One run per runbook and vars at a time: real concurrent runners, a dead holder, a slow holder."""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.errors import RunbookError
from agent.record import RunStatus, load_record
from agent.run.lock import Lock

PY = sys.executable
Write = Callable[..., Path]

HOLDER = re.compile(
    r"error: another run of this runbook with the same vars is in progress: pid (\d+) on (\S+), "
    r"started (\S+) \(run (\S+)\); lock file (\S+)"
)


def _runbook(write_runbook: Write, seconds: float = 1.5, *, until: str = "") -> Path:
    """A one-step runbook whose step marks that it started, then sleeps (or waits for `until`)."""
    wait = (
        f"[time.sleep(0.01) for _ in range(3000) if not pathlib.Path('{until}').exists()]"
        if until
        else f"time.sleep({seconds})"
    )
    return write_runbook(f"""
        version: 1
        id: locky
        title: Locky
        vars:
          day: {{type: string, default: mon}}
        steps:
          - id: slow
            kind: run
            command: >-
              {PY} -c "import time, pathlib; pathlib.Path('started-{{{{ day }}}}').touch();
              {wait}"
    """)


def _day(run_dir: Path) -> object:
    return json.loads((run_dir / "vars.json").read_text()).get("day", "mon")


def _start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PY, "-m", "agent", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(path: Path, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert path.exists()


def test_two_runs_started_together_exactly_one_gets_the_lock(
    write_runbook: Write, tmp_path: Path
) -> None:
    # The step holds the lock until the test releases it, which it does only once one runner
    # has ended: that runner cannot have waited for the step.
    rb = _runbook(write_runbook, until="release")
    gate = threading.Barrier(2)
    procs: list[subprocess.Popen[str]] = []
    first_to_end: list[int] = []

    def go() -> None:
        gate.wait()
        proc = _start("run", str(rb), "--reports", "reports", "-q", cwd=tmp_path)
        procs.append(proc)
        proc.wait(timeout=60)
        first_to_end.append(proc.pid)
        (tmp_path / "release").touch()

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results = {p.pid: (p.returncode, *p.communicate()) for p in procs}
    codes = sorted(code for code, _, _ in results.values())
    assert codes == [0, 1], results
    (loser,) = [pid for pid, (code, _, _) in results.items() if code == 1]
    (winner,) = [pid for pid, (code, _, _) in results.items() if code == 0]
    err = results[loser][2]
    match = HOLDER.search(err)
    assert match, err
    assert int(match.group(1)) == winner
    assert match.group(2) == socket.gethostname()
    run_id = match.group(4)
    assert len(list((tmp_path / "reports").glob("*-locky-*"))) == 1  # the loser made no run dir
    assert (tmp_path / "reports" / run_id / "run.json").exists()
    assert first_to_end[0] == loser  # it ended while the winner's step still held the lock
    assert load_record(tmp_path / "reports" / run_id).status == RunStatus.COMPLETE


def test_other_vars_run_alongside_and_resume_of_a_live_run_is_refused(
    write_runbook: Write, tmp_path: Path
) -> None:
    # Both steps wait until the test releases them: the first run is still going when the
    # other run starts beside it and when the resume is refused.
    rb = _runbook(write_runbook, until="release")
    first = _start("run", str(rb), "--reports", "reports", "-q", cwd=tmp_path)
    _wait_for(tmp_path / "started-mon")
    other = _start("run", str(rb), "--reports", "reports", "-q", "--var", "day=tue", cwd=tmp_path)
    _wait_for(tmp_path / "started-tue")  # it took its own lock: other vars
    (run_dir,) = [d for d in (tmp_path / "reports").glob("*-locky-*") if _day(d) == "mon"]
    # Resuming the run that is still going would run its steps twice at once.
    resume = _start("resume", str(run_dir), cwd=tmp_path)
    _, err = resume.communicate(timeout=20)
    (tmp_path / "release").touch()
    assert resume.returncode == 1
    match = HOLDER.search(err)
    assert match, err
    assert int(match.group(1)) == first.pid
    other.communicate(timeout=20)
    first.communicate(timeout=20)
    assert other.returncode == 0  # other vars, other lock
    assert first.returncode == 0


def test_lock_of_a_killed_runner_is_taken_over(write_runbook: Write, tmp_path: Path) -> None:
    rb = _runbook(write_runbook, seconds=30)
    victim = _start("run", str(rb), "--reports", "reports", "-q", cwd=tmp_path)
    _wait_for(tmp_path / "started-mon")
    victim.kill()  # kill -9: the lock file keeps the dead holder's pid
    victim.communicate(timeout=10)
    (lock_file,) = (tmp_path / ".runbook" / "locks").glob("locky-*.lock")
    assert json.loads(lock_file.read_text())["pid"] == victim.pid
    # Its step's child was in its own session and survives the runner.
    (tmp_path / "started-mon").unlink()
    rb.write_text(rb.read_text().replace("time.sleep(30)", "time.sleep(0)"))
    again = _start("run", str(rb), "--reports", "reports", "-q", cwd=tmp_path)
    _, err = again.communicate(timeout=20)
    assert again.returncode == 0, err
    # The dead runner's child still sleeps: the new run took the lock without waiting for it.
    assert _kill_strays("started-mon", tmp_path) == 1
    holder = json.loads(lock_file.read_text())
    assert holder["pid"] == again.pid
    assert holder["host"] == socket.gethostname()


def _kill_strays(marker: str, tmp_path: Path) -> int:
    """Stop the sleeping children the killed runner left behind (found by command line)."""
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if marker in cmd and "time.sleep(30)" in cmd and cwd == str(tmp_path):
            os.kill(int(entry.name), signal.SIGKILL)
            killed += 1
    return killed


def test_stale_lock_file_with_garbage_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    path.write_text('{"pid": 999999999, "host": "gone", "started_at": "yesterday"}')
    lock = Lock(path)
    lock.acquire({"pid": os.getpid(), "host": "here", "started_at": "now", "run_id": "r"})
    assert json.loads(path.read_text())["pid"] == os.getpid()
    lock.release()
    path.write_text("not json at all")
    lock.acquire({"pid": 7, "host": "here", "started_at": "now", "run_id": "r"})
    lock.release()


def test_holder_that_has_not_written_its_info_yet_is_still_named(tmp_path: Path) -> None:
    """The holder takes the flock, then writes its info: a second run in between waits for it."""
    path = tmp_path / "x.lock"
    path.write_text("")
    fh = path.open("a+", encoding="utf-8")
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def write_info() -> None:
        time.sleep(0.2)
        fh.write(json.dumps({"pid": 4242, "host": "h1", "started_at": "t0", "run_id": "r1"}))
        fh.flush()

    writer = threading.Thread(target=write_info)
    writer.start()
    with pytest.raises(RunbookError) as info:
        Lock(path).acquire({"pid": 1, "host": "h2", "started_at": "t1", "run_id": "r2"})
    writer.join()
    fh.close()
    assert "pid 4242 on h1, started t0 (run r1)" in str(info.value)
