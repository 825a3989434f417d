"""Where the lock lives (with the workdir's state, across --reports folders) and every way its
place can be unusable: one line and an exit code each, never an internal error."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.record import RunStatus, load_record
from tests.procs import run_cli

PY = sys.executable
Write = Callable[..., Path]

_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


def _no_override() -> None:
    """In the child before exec: root too obeys file modes (it keeps its uid, so the
    interpreter under its home stays readable)."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "cannot drop a capability")


def _cli(*args: str, cwd: Path, modes: bool = False) -> subprocess.CompletedProcess[str]:
    """`python -m agent ARGS`; with `modes`, file modes bind it whoever runs the tests."""
    return subprocess.run(
        [PY, "-m", "agent", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=_no_override if modes else None,
    )


def _modes_bind() -> None:
    done = subprocess.run(
        [PY, "-c", "open('/proc/self/status').read()"],
        preexec_fn=_no_override,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip("cannot run a child that obeys file modes here (no CAP_SETPCAP)")


@pytest.fixture
def runbook(write_runbook: Write) -> Path:
    return write_runbook(f"""
        version: 1
        id: locky
        title: Locky
        steps:
          - id: one
            kind: run
            command: {PY} -c "print('ran')"
    """)


def _lock_name(tmp_path: Path) -> str:
    (lock,) = (tmp_path / ".runbook" / "locks").glob("locky-*.lock")
    return lock.name


@pytest.fixture
def lock_name(runbook: Path, tmp_path: Path) -> str:
    """The lock file's name, from a first run (the name is a hash of the runbook and vars)."""
    done = run_cli("run", str(runbook), "-q", "--reports", "first", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return _lock_name(tmp_path)


@contextlib.contextmanager
def _mount_ro(point: Path) -> Iterator[Path]:
    point.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(point)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield point
    subprocess.run(["umount", "-l", str(point)], check=False)


def test_the_lock_holds_across_reports_folders(runbook: Path, tmp_path: Path) -> None:
    slow = runbook.read_text().replace("print('ran')", "import time; time.sleep(30)")
    runbook.write_text(slow)
    first = subprocess.Popen(
        [PY, "-m", "agent", "run", str(runbook), "-q", "--reports", "one"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lock_dir = tmp_path / ".runbook" / "locks"
        for _ in range(3000):  # until the first run has started its step
            if list(tmp_path.glob("one/*-locky-*/logs/one.log")) or first.poll() is not None:
                break
            time.sleep(0.01)
        second = run_cli("run", str(runbook), "-q", "--reports", "two", cwd=tmp_path)
    finally:
        first.kill()
        first.communicate(timeout=20)
    (lock,) = lock_dir.glob("locky-*.lock")
    assert second.returncode == 1
    assert second.stderr.startswith(
        f"error: another run of this runbook with the same vars is in progress: pid {first.pid} on "
    )
    assert second.stderr.endswith(f"; lock file {lock}\n")
    assert not (tmp_path / "two").exists()
    assert (tmp_path / ".runbook" / ".gitignore").read_text() == "*\n"


def test_reports_on_a_read_only_file_system(runbook: Path, tmp_path: Path) -> None:
    with _mount_ro(tmp_path / "ro") as ro:
        done = run_cli("run", str(runbook), "-q", "--reports", str(ro), cwd=tmp_path)
        assert done.stderr == f"error: cannot write in {ro}: Read-only file system\n"
        assert done.returncode == 1


def test_a_reports_folder_that_cannot_be_written(runbook: Path, tmp_path: Path) -> None:
    _modes_bind()
    reports = tmp_path / "reports"
    reports.mkdir(mode=0o555)
    done = _cli("run", str(runbook), "-q", "--reports", str(reports), cwd=tmp_path, modes=True)
    assert done.stderr == f"error: cannot write in {reports}: Permission denied\n"
    assert done.returncode == 1


def test_reports_given_as_a_file(runbook: Path, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    done = run_cli("run", str(runbook), "-q", "--reports", "afile", cwd=tmp_path)
    assert done.stderr == f"error: --reports {tmp_path / 'afile'}: not a folder\n"
    assert done.returncode == 2


def _state(tmp_path: Path, name: str) -> Path:
    return tmp_path / ".state" / "runbook" / "locks" / name


def test_a_locks_folder_that_cannot_be_written(
    runbook: Path, tmp_path: Path, lock_name: str
) -> None:
    _modes_bind()
    locks = tmp_path / ".runbook" / "locks"
    (locks / lock_name).unlink()
    locks.chmod(0o555)
    try:
        done = _cli("run", str(runbook), "-q", cwd=tmp_path, modes=True)
    finally:
        locks.chmod(0o755)
    assert done.returncode == 0, done.stderr
    assert done.stderr.endswith(
        f"warning: the lock is {_state(tmp_path, lock_name)}: cannot create "
        f"{locks / lock_name}: Permission denied; runs of other users are not kept apart "
        "from this one\n"
    )
    assert _state(tmp_path, lock_name).is_file()


def test_a_locks_folder_on_a_read_only_file_system(
    runbook: Path, tmp_path: Path, lock_name: str
) -> None:
    (tmp_path / ".runbook" / "locks" / lock_name).unlink()
    with _mount_ro(tmp_path / ".runbook" / "locks") as locks:
        done = run_cli("run", str(runbook), "-q", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert done.stderr.endswith(
            f"warning: the lock is {_state(tmp_path, lock_name)}: cannot create "
            f"{locks / lock_name}: Read-only file system; runs of other users are not kept "
            "apart from this one\n"
        )


def test_a_foreign_read_only_lock_file_still_holds(
    runbook: Path, tmp_path: Path, lock_name: str
) -> None:
    _modes_bind()
    lock = tmp_path / ".runbook" / "locks" / lock_name
    os.chown(lock, 65534, 65534)  # another user's, which we may read and not write
    lock.chmod(0o444)
    done = _cli("run", str(runbook), "-q", cwd=tmp_path, modes=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr.endswith(
        f"warning: the lock file {lock} cannot be written: it holds no details\n"
    )
    assert not _state(tmp_path, lock_name).exists()  # it was used where it is


def test_a_locks_folder_that_is_a_file(runbook: Path, tmp_path: Path, lock_name: str) -> None:
    locks = tmp_path / ".runbook" / "locks"
    (locks / lock_name).unlink()
    locks.rmdir()
    locks.write_text("")
    done = run_cli("run", str(runbook), "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.endswith(
        f"warning: the lock is {_state(tmp_path, lock_name)}: {locks} is a file, not a folder; "
        "runs of other users are not kept apart from this one\n"
    )


def test_a_lock_file_that_is_a_folder(runbook: Path, tmp_path: Path, lock_name: str) -> None:
    lock = tmp_path / ".runbook" / "locks" / lock_name
    lock.unlink()
    lock.mkdir()
    done = run_cli("run", str(runbook), "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.endswith(
        f"warning: the lock is {_state(tmp_path, lock_name)}: the lock file {lock} is a "
        "folder; runs of other users are not kept apart from this one\n"
    )


def test_no_place_for_the_lock_is_one_line(runbook: Path, tmp_path: Path, lock_name: str) -> None:
    lock = tmp_path / ".runbook" / "locks" / lock_name
    lock.unlink()
    lock.mkdir()
    state = _state(tmp_path, lock_name)
    state.parent.parent.mkdir(parents=True)
    state.parent.write_text("")  # the state folder's locks/ is a file
    reports_locks = tmp_path / "reports" / ".locks"
    reports_locks.parent.mkdir()
    reports_locks.write_text("")
    done = run_cli("run", str(runbook), "-q", cwd=tmp_path)
    assert done.stderr == (
        f"error: cannot take the lock of this runbook and vars: the lock file {lock} is a "
        f"folder; {state.parent} is a file, not a folder; {reports_locks} is a file, not a "
        "folder\n"
    )
    assert done.returncode == 1
    assert [p.name for p in (tmp_path / "reports").iterdir()] == [".locks"]  # no run folder


def test_a_workdir_that_does_not_exist_yet(write_runbook: Write, tmp_path: Path) -> None:
    rb = write_runbook(f"""
        version: 1
        id: locky
        title: Locky
        workdir: not-yet
        steps:
          - id: one
            kind: run
            command: {PY} -c "print('ran')"
    """)
    done = run_cli("run", str(rb), "-q", cwd=tmp_path)
    assert not (tmp_path / "not-yet").exists()  # not made for the lock's sake
    (lock,) = (tmp_path / ".state" / "runbook" / "locks").glob("locky-*.lock")
    assert (
        f"warning: the lock is {lock}: the workdir {tmp_path / 'not-yet'} does not exist; "
        "runs of other users are not kept apart from this one\n"
    ) in done.stderr
    assert done.returncode == 1  # the step cannot run there: its own error says so


def test_resume_takes_the_same_lock(runbook: Path, tmp_path: Path) -> None:
    env = {**os.environ, "RUNBOOK_TEST_CRASH_AT": "started:one"}
    run_cli("run", str(runbook), "-q", "--reports", "r", cwd=tmp_path, env=env)
    (run_dir,) = (tmp_path / "r").glob("*-locky-*")
    lock = tmp_path / ".runbook" / "locks" / _lock_name(tmp_path)
    with lock.open("a") as held:  # another runner holds it
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        refused = run_cli("resume", str(run_dir), cwd=tmp_path)
    assert refused.returncode == 1
    assert refused.stderr.endswith(f"lock file {lock}\n")
    done = run_cli("resume", str(run_dir), "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert load_record(run_dir).status == RunStatus.COMPLETE


def test_a_partitioned_run_holds_its_range_whatever_partitions_and_reports(
    write_runbook: Write, tmp_path: Path
) -> None:
    """One lock per runbook and range: another partition of the same range, in another
    --reports folder, waits its turn; another range runs alongside."""
    rb = write_runbook(f"""
        version: 1
        id: ranged
        title: Ranged
        vars:
          start: {{type: date, default: "2026-01-01"}}
          end: {{type: date, default: "2026-01-03"}}
        partitions:
          var: date
          dates: {{from: "{{{{ start }}}}", to: "{{{{ end }}}}"}}
        steps:
          - id: hold
            kind: run
            command: >-
              {PY} -c "import pathlib, time; pathlib.Path('held-{{{{ end }}}}').touch();
              [time.sleep(0.01) for _ in range(3000) if '{{{{ end }}}}' == '2026-01-03'
              and not pathlib.Path('release').exists()]"
    """)
    first = subprocess.Popen(
        [PY, "-m", "agent", "run", str(rb), "-q", "--reports", "a", "--partition", "2026-01-01"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(3000):
            if (tmp_path / "held-2026-01-03").exists() or first.poll() is not None:
                break
            time.sleep(0.01)
        same = run_cli(
            "run", str(rb), "-q", "--reports", "b", "--partition", "2026-01-02", cwd=tmp_path
        )
        other = run_cli(
            "run", str(rb), "-q", "--reports", "b", "--var", "end=2026-01-02", cwd=tmp_path
        )
    finally:
        (tmp_path / "release").touch()
        first.communicate(timeout=60)
    assert same.returncode == 1
    assert "another run of this runbook with the same vars is in progress" in same.stderr
    assert other.returncode == 0, other.stderr  # its own range: its own lock
    assert first.returncode == 0
