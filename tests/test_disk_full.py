"""A full disk: the step that meets it fails with the reason, the run ends FAILED with it, and
run.json and the report are still written (on a real 256 KiB tmpfs where one can be mounted)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.errors import DiskFullError
from agent.proc.process import run_process
from agent.record import Journal, RunStatus, Status, load_record
from tests.procs import run_cli

PY = sys.executable
Write = Callable[..., Path]


def _mount(point: Path, *options: str) -> None:
    point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join(["size=256k", *options]), "tmpfs", str(point)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip() or 'mount failed'}")


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 256 KiB file system."""
    point = tmp_path / "tiny"
    _mount(point)
    yield point
    subprocess.run(["umount", "-l", str(point)], check=False)


def _fill(disk: Path, leave: int = 0) -> None:
    """Write a file until the disk is full, then give `leave` bytes back."""
    filler = disk / "filler"
    with filler.open("ab", buffering=0) as fh:
        while True:
            try:
                fh.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    if leave:
        size = filler.stat().st_size
        os.truncate(filler, max(size - leave, 0))


def _lines(journal: Path) -> list[dict[str, object]]:
    """Every journal line, each of which must be whole JSON."""
    raw = journal.read_bytes()
    assert raw.endswith(b"\n"), "the journal ends in a torn line"
    return [json.loads(line) for line in raw.decode().splitlines()]


def _runbook(write_runbook: Write, flood: str) -> Path:
    return write_runbook(f"""
        version: 1
        id: full
        title: Full
        steps:
          - id: small
            kind: run
            command: {PY} -c "print('small')"
          - id: flood
            kind: run
            command: {PY} -c "{flood}"
          - id: after
            kind: run
            command: {PY} -c "print('after')"
    """)


ONE_LONG_LINE = "import sys; sys.stdout.write('y' * 2000000)"
MANY_LINES = "import sys; sys.stdout.write(('y' * 99 + '\\\\n') * 50000)"


@pytest.mark.parametrize("flood", [ONE_LONG_LINE, MANY_LINES], ids=["one-long-line", "lines"])
def test_a_step_that_fills_the_disk_ends_the_run_failed_with_its_reason(
    write_runbook: Write, tmp_path: Path, tiny_disk: Path, flood: str
) -> None:
    rb = _runbook(write_runbook, flood)
    proc = run_cli("run", str(rb), "-q", "--reports", str(tiny_disk), cwd=tmp_path, timeout=60)
    assert "Traceback" not in proc.stderr
    assert "internal error" not in proc.stderr
    (run_dir,) = tiny_disk.glob("*-full-*")
    log = run_dir / "logs" / "flood.log"
    reason = f"the disk is full: cannot write log {log}: No space left on device"
    assert proc.returncode == 1, proc.stderr
    assert f"run FAILED ({reason}): report {run_dir / 'report.md'}" in proc.stderr
    record = load_record(run_dir)
    assert record.status == RunStatus.FAILED
    assert record.reason == reason
    assert record.step("small").status == Status.SUCCESS
    flood_result = record.step("flood")
    assert (flood_result.status, flood_result.reason) == (Status.FAILED, reason)
    assert flood_result.cause == "error"  # not "exit code": the log could not be written
    after = record.step("after")
    assert (after.status, after.reason) == (Status.ABORTED, f"not run: {reason}")
    events = _lines(run_dir / "journal.jsonl")
    assert [e["event"] for e in events][-1] == "run_finished"
    report = (run_dir / "report.md").read_text()
    assert f"Run finished: FAILED ({reason})" in report
    assert f"The run stopped early ({reason}): make room, then run it again." in report
    assert not (run_dir / ".reserve").exists()  # given back


def test_a_step_that_fills_the_disk_itself_still_gets_its_record(
    write_runbook: Write, tmp_path: Path, tiny_disk: Path
) -> None:
    """The disk fills outside the log (the step writes a file): the journal's lines take room
    from the reserve, the rest of it holds run.json and the report."""
    fill = (
        "import sys\\n"
        "f = open(sys.argv[1], 'wb')\\n"
        "try:\\n"
        "    while True: f.write(bytes(4096)); f.flush()\\n"
        "except OSError: pass\\n"
        "print('filled')"
    )
    rb = write_runbook(f"""
        version: 1
        id: full
        title: Full
        steps:
          - id: fill
            kind: run
            command: [{PY}, -c, "{fill}", {tiny_disk / "junk"}]
          - id: after
            kind: run
            command: {PY} -c "print('after')"
    """)
    proc = run_cli("run", str(rb), "-q", "--reports", str(tiny_disk), cwd=tmp_path, timeout=60)
    assert "internal error" not in proc.stderr
    (run_dir,) = tiny_disk.glob("*-full-*")
    assert proc.returncode == 1, proc.stderr
    record = load_record(run_dir)
    assert record.status == RunStatus.FAILED
    assert record.step("fill").status == Status.SUCCESS  # its few bytes of log fitted
    after = record.step("after")
    log = run_dir / "logs" / "after.log"
    reason = f"the disk is full: cannot write log {log}: No space left on device"
    assert (after.status, after.reason) == (Status.FAILED, reason)
    assert record.reason == reason
    assert (run_dir / "report.md").is_file()
    _lines(run_dir / "journal.jsonl")


def test_a_disk_full_before_the_run_is_one_line(
    write_runbook: Write, tmp_path: Path, tiny_disk: Path
) -> None:
    rb = _runbook(write_runbook, "print(1)")
    _fill(tiny_disk)
    proc = run_cli("run", str(rb), "-q", "--reports", str(tiny_disk), cwd=tmp_path, timeout=60)
    assert proc.stderr == (
        f"error: the disk is full: {tiny_disk} has 0 KiB free, and a run sets aside 88 KiB for "
        "its record and report: free some space and run it again\n"
    )
    assert proc.returncode == 1
    assert list(tiny_disk.glob("*-full-*")) == []  # no half run folder


def test_resume_on_a_full_disk(write_runbook: Write, tmp_path: Path, tiny_disk: Path) -> None:
    """A crashed run's reserve serves its resume; without one a full disk is one line; once
    there is room, a resume runs what the full disk left undone."""
    rb = _runbook(write_runbook, "print(1)")
    env = {**os.environ, "RUNBOOK_TEST_CRASH_AT": "started:flood"}
    run_cli("run", str(rb), "-q", "--reports", str(tiny_disk), cwd=tmp_path, env=env)
    (run_dir,) = tiny_disk.glob("*-full-*")
    assert (run_dir / ".reserve").is_file()  # the dead runner never gave it back
    _fill(tiny_disk)
    proc = run_cli("resume", str(run_dir), "-q", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    record = load_record(run_dir)
    assert record.status == RunStatus.FAILED
    assert record.reason is not None
    assert record.reason.startswith("the disk is full: cannot write log ")
    assert record.step("after").status == Status.ABORTED
    assert (run_dir / "report.md").is_file()

    (tiny_disk / "filler").unlink()
    (run_dir / "report.md").unlink()
    _fill(tiny_disk)  # and no reserve left to take over
    refused = run_cli("resume", str(run_dir), cwd=tmp_path)
    assert refused.stderr == (
        f"error: the disk is full: {tiny_disk} has 0 KiB free, and a run sets aside 88 KiB for "
        "its record and report: free some space and run it again\n"
    )
    assert refused.returncode == 1

    (tiny_disk / "filler").unlink()
    again = run_cli("resume", str(run_dir), "-q", cwd=tmp_path)
    record = load_record(run_dir)
    assert record.step("flood").status == Status.FAILED  # finished: not run again
    assert record.step("after").status == Status.SUCCESS
    assert record.reason is None
    assert again.returncode == 3, again.stderr
    events = [e["event"] for e in _lines(run_dir / "journal.jsonl")]
    assert events.count("run_resumed") == 2  # the refused one wrote nothing


def test_journal_lines_are_whole_or_absent_on_a_full_disk(tiny_disk: Path) -> None:
    path = tiny_disk / "journal.jsonl"
    journal = Journal(path)
    journal.append("run_started", run_id="r")
    _fill(tiny_disk, leave=100)
    big = "x" * 20000  # more than is left: a write would stop part way
    with pytest.raises(DiskFullError) as caught:
        journal.append("step_finished", step="a", result={"blob": big})
    assert str(caught.value) == f"the disk is full: cannot write the journal {path}: " + (
        "No space left on device"
    )
    assert [e["event"] for e in _lines(path)] == ["run_started"]
    journal.close()


def test_a_journal_takes_room_from_the_reserve_and_retries(tiny_disk: Path) -> None:
    path = tiny_disk / "journal.jsonl"
    _fill(tiny_disk)
    freed: list[int] = []

    def make_room(needed: int) -> bool:
        if freed:
            return False
        freed.append(needed)
        os.truncate(tiny_disk / "filler", 0)
        return True

    journal = Journal(path, on_full=make_room)
    journal.append("run_started", run_id="r", padding="p" * 5000)
    journal.close()
    assert freed and freed[0] > 5000
    assert [e["event"] for e in _lines(path)] == ["run_started"]


def test_a_torn_last_line_is_cut_before_the_next_is_appended(tmp_path: Path) -> None:
    """A crash (or an older version on a full disk) left half a line: resume's first line
    must not be glued onto it."""
    path = tmp_path / "journal.jsonl"
    path.write_text('{"event": "run_started", "at": "2026-01-01T00:00:00+00:00"}\n{"event": "st')
    journal = Journal(path)
    journal.append("run_resumed", session=2)
    journal.close()
    assert [e["event"] for e in Journal.read(path)] == ["run_started", "run_resumed"]


def test_dev_full_log_through_run_process(tmp_path: Path) -> None:
    """A full disk without a mount: the log is /dev/full."""
    result = run_process(
        [PY, "-c", "print('x' * 1000)"],
        cwd=tmp_path,
        env=dict(os.environ),
        timeout=10,
        log_path=Path("/dev/full"),
    )
    assert result.exit_code in (None, 0)  # stopped, or it had already ended
    assert result.error == "the disk is full: cannot write log /dev/full: No space left on device"
