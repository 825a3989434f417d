"""Tests for agent.proc.process: real child processes, their groups, logs, tails and limits."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.proc.process import (
    MAX_LINE_CHARS,
    ProcessResult,
    _Lines,
    process_start_ticks,
    run_captured,
    run_process,
    shell_quote,
    stop_leftover_group,
    strip_ansi,
)
from agent.proc.redact import Redactor
from tests.procs import alive

PY = sys.executable


def _run(
    argv: list[str],
    tmp_path: Path,
    *,
    timeout: float | None = 20.0,
    log_path: Path | None = None,
    **kwargs: Any,
) -> ProcessResult:
    return run_process(
        argv,
        cwd=tmp_path,
        env=dict(os.environ),
        timeout=timeout,
        log_path=log_path or tmp_path / "logs" / "step.log",
        **kwargs,
    )


def _py(code: str) -> list[str]:
    return [PY, "-u", "-c", code]


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] not in "ZX":
                members.append(int(entry.name))
    return members


def _pids(result: ProcessResult) -> tuple[int, int]:
    """The child's and grandchild's pids, printed by the child as its first line."""
    child, grandchild = result.tail[0].split()
    return int(child), int(grandchild)


def test_exit_codes_and_output(tmp_path: Path) -> None:
    ok = _run(["/bin/sh", "-c", "echo hello; echo oops >&2"], tmp_path)
    assert ok.exit_code == 0
    assert ok.error is None
    assert not ok.timed_out
    assert not ok.interrupted
    assert ok.tail == ["hello", "oops"]
    assert ok.output_bytes == len(b"hello\noops\n")
    assert ok.started_at <= ok.ended_at
    failed = _run(["/bin/sh", "-c", "exit 3"], tmp_path)
    assert failed.exit_code == 3
    assert failed.error is None
    assert (tmp_path / "logs" / "step.log").read_bytes() == b"hello\noops\n"


def test_env_and_cwd_are_the_childs(tmp_path: Path) -> None:
    result = run_process(
        [PY, "-c", "import os; print(os.getcwd()); print(os.environ['ONLY'])"],
        cwd=tmp_path,
        env={"ONLY": "this"},
        timeout=20,
        log_path=tmp_path / "step.log",
    )
    assert result.tail == [str(tmp_path), "this"]


def test_timeout_stops_the_whole_group(tmp_path: Path) -> None:
    result = _run(
        ["/bin/sh", "-c", "sleep 100 & echo $$ $!; sleep 100"], tmp_path, timeout=0.5, grace=2.0
    )
    assert result.timed_out
    assert not result.interrupted
    assert result.exit_code is None
    assert result.error is None
    child, grandchild = _pids(result)
    assert not alive(grandchild)
    assert not alive(child)
    assert _group_members(child) == []


def test_timeout_stops_a_forked_python_grandchild(tmp_path: Path) -> None:
    code = (
        "import os, time\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    time.sleep(100)\n"
        "else:\n"
        "    print(os.getpid(), pid, flush=True)\n"
        "    time.sleep(100)\n"
    )
    result = _run(_py(code), tmp_path, timeout=0.5, grace=2.0)
    assert result.timed_out
    child, grandchild = _pids(result)
    assert not alive(grandchild)
    assert _group_members(child) == []


def test_stop_event_from_another_thread_interrupts(tmp_path: Path) -> None:
    stop = threading.Event()
    started = threading.Event()

    def on_line(line: str) -> None:
        started.set()

    def stop_when_started() -> None:
        started.wait(10)
        stop.set()

    timer = threading.Thread(target=stop_when_started)
    timer.start()
    result = _run(
        ["/bin/sh", "-c", "sleep 100 & echo $$ $!; sleep 100"],
        tmp_path,
        timeout=10,
        stop_event=stop,
        on_line=on_line,
        # A finished line is not held back by the redactor: on_line sees it at once.
        redactor=Redactor(["unrelated-secret"]),
    )
    timer.join()
    assert result.interrupted
    assert not result.timed_out
    assert result.exit_code is None
    child, grandchild = _pids(result)
    assert not alive(grandchild)
    assert _group_members(child) == []


def test_child_ignoring_sigterm_gets_sigkill_after_grace(tmp_path: Path) -> None:
    code = (
        "import os, signal, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: print('got TERM, staying', flush=True))\n"
        "print(os.getpid(), os.getpid(), flush=True)\n"
        "while True:\n"
        "    time.sleep(0.01)\n"
    )
    result = _run(_py(code), tmp_path, timeout=1.0, grace=0.5)
    assert result.timed_out
    assert result.exit_code is None
    assert "got TERM, staying" in result.tail
    child, _ = _pids(result)
    assert not alive(child)


def test_background_processes_do_not_outlive_the_step(tmp_path: Path) -> None:
    # One keeps the output pipe open, one does not: neither survives the step.
    result = _run(
        ["/bin/sh", "-c", "sleep 100 & sleep 100 >/dev/null 2>&1 & echo $$ $!"],
        tmp_path,
        grace=2.0,
    )
    assert result.exit_code == 0
    assert not result.timed_out
    assert result.error is None
    child, grandchild = _pids(result)
    assert not alive(grandchild)
    assert _group_members(child) == []


def test_missing_program_is_a_result(tmp_path: Path) -> None:
    result = _run(["no-such-program-xyz", "--flag"], tmp_path)
    assert result.exit_code is None
    assert result.error == "cannot start no-such-program-xyz: No such file or directory"
    assert result.tail == []


def test_program_without_execute_permission_is_a_result(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    result = _run([str(script)], tmp_path)
    assert result.exit_code is None
    assert result.error == f"cannot start {script}: Permission denied"


def test_missing_working_directory_is_a_result(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = run_process(
        ["/bin/sh", "-c", "true"],
        cwd=missing,
        env={},
        timeout=5,
        log_path=tmp_path / "step.log",
    )
    assert result.exit_code is None
    assert result.error == f"cannot run in {missing}: No such file or directory"


def test_empty_command_is_a_result(tmp_path: Path) -> None:
    assert _run([], tmp_path).error == "cannot start an empty command"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_log_write_error_ends_the_step(tmp_path: Path) -> None:
    result = _run(
        ["/bin/sh", "-c", "echo $$ $$; sleep 100"],
        tmp_path,
        log_path=Path("/dev/full"),
        grace=2.0,
    )
    assert result.error == "the disk is full: cannot write log /dev/full: No space left on device"
    assert result.exit_code is None
    assert not result.timed_out
    child, _ = _pids(result)
    assert _group_members(child) == []


def test_log_in_an_unwritable_place_is_a_result(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = _run(["/bin/sh", "-c", "echo hi"], tmp_path, log_path=blocker / "step.log")
    assert result.exit_code is None
    assert result.error == f"cannot write log {blocker / 'step.log'}: Not a directory"


def test_invalid_utf8_nul_and_backticks_decode(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "out = sys.stdout.buffer\n"
        "out.write(b'bad \\xff\\xfe bytes\\n')\n"
        "out.write(b'nul\\x00byte\\n')\n"
        "out.write(b'`' * 5000 + b'\\n')\n"
        "out.write(b'cut \\xe2\\x82')\n"  # a multi-byte character cut off by EOF
    )
    result = _run(_py(code), tmp_path)
    assert result.exit_code == 0
    assert result.tail == ["bad \ufffd\ufffd bytes", "nulbyte", "`" * 5000, "cut \ufffd"]


def test_ansi_stripped_from_tail_but_kept_in_log(tmp_path: Path) -> None:
    code = "print('\\x1b[1;31mERROR\\x1b[0m disk \\x1b]0;title\\x07full')"
    result = _run(_py(code), tmp_path)
    assert result.tail == ["ERROR disk full"]
    log = (tmp_path / "logs" / "step.log").read_bytes()
    assert log == b"\x1b[1;31mERROR\x1b[0m disk \x1b]0;title\x07full\n"


def test_carriage_returns_keep_the_last_overwrite(tmp_path: Path) -> None:
    code = "print('10%\\r50%\\r100%\\r\\ndone\\r\\nwindows\\r')"
    result = _run(_py(code), tmp_path)
    assert result.tail == ["100%", "done", "windows"]


def test_on_line_gets_every_line_and_the_last_partial_one(tmp_path: Path) -> None:
    seen: list[str] = []
    result = _run(["/bin/sh", "-c", "printf 'a\\nb\\n\\nlast'"], tmp_path, on_line=seen.append)
    assert seen == ["a", "b", "", "last"]
    assert result.tail == seen


def test_tail_is_bounded(tmp_path: Path) -> None:
    seen: list[str] = []
    code = "for i in range(1000): print(i)"
    result = _run(_py(code), tmp_path, tail_lines=5, on_line=seen.append)
    assert result.tail == ["995", "996", "997", "998", "999"]
    assert len(seen) == 1000


def _feed_all(chunks: list[bytes], tail: int, *, every_line: bool) -> tuple[list[str], str]:
    """The tail, and the last line of the last block, after feeding `chunks`."""
    blocks: list[str] = []
    lines = _Lines(tail, None, lambda t, s, e: blocks.append(t[s:e]), every_line=every_line)
    buffer = bytearray(max((len(c) for c in chunks), default=0) + 8)
    for chunk in chunks:
        # One buffer overwritten by every chunk, as run_process reads: nothing may keep it.
        buffer[: len(chunk)] = chunk
        buffer[len(chunk) :] = b"\xff" * (len(buffer) - len(chunk))
        lines.feed(buffer, end=len(chunk))
    lines.feed(b"", final=True)
    return list(lines.tail), blocks[-1].rsplit("\n", 1)[-1] if blocks else ""


_PIECES = st.sampled_from(
    [b"a", b"line", b"\n", b"\r", b"\r\n", b"\x00", b"\x1b[31m", b"\xe2\x82\xac", b"\xe2", b"\xff"]
)


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(_PIECES, max_size=80),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6),
    tail=st.integers(min_value=0, max_value=4),
)
def test_newest_lines_only_keep_the_same_tail(
    pieces: list[bytes], cuts: list[int], tail: int
) -> None:
    data = b"".join(pieces)
    bounds = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds)]
    assert _feed_all(chunks, tail, every_line=False) == _feed_all(chunks, tail, every_line=True)


def test_newest_lines_only_keep_a_long_line_split_across_chunks() -> None:
    long = b"y" * (2 * MAX_LINE_CHARS + 5)
    chunks = [b"a\nb\n" + long[:1000], long[1000:] + b"\nc\nd\n", b"e"]
    for tail in (1, 2, 5):
        assert _feed_all(chunks, tail, every_line=False) == _feed_all(chunks, tail, every_line=True)


def test_newest_lines_only_are_decoded_for_the_block(tmp_path: Path) -> None:
    code = "import sys\nsys.stdout.write(''.join(f'{i}\\n' for i in range(100000)))"
    spans: list[int] = []

    def on_block(text: str, start: int, end: int) -> None:
        spans.append(text.count("\n", start, end) + 1)

    newest = _run(_py(code), tmp_path, tail_lines=3, on_block=on_block, every_line=False)
    every: list[int] = []
    full = _run(
        _py(code),
        tmp_path,
        tail_lines=3,
        on_block=lambda t, s, e: every.append(t.count("\n", s, e) + 1),
    )
    assert newest.tail == full.tail == ["99997", "99998", "99999"]
    assert sum(every) == 100000
    assert max(spans) <= 3
    log = (tmp_path / "logs" / "step.log").read_bytes()
    assert log.count(b"\n") == 200000  # both runs appended every line to the log


_MIXED_OUTPUT = (
    "import sys, time\n"
    "out = sys.stdout.buffer\n"
    "for i in range(3000):\n"
    "    out.write(b'row %d \\xe2\\x82\\xac \\x1b[1mbold\\x1b[0m 10%%\\r50%%\\r\\n' % i)\n"
    "out.write(b'z' * 200000)\n"  # a long line spread over chunks, before the last lines
    "out.write(b'\\n\\xe2\\x82'); out.flush(); time.sleep(0.05)\n"  # a character cut in two
    "out.write(b'\\xac tail\\nlast\\r\\nno newline')\n"
)


def test_newest_lines_only_keep_the_log_and_tail_of_every_line(tmp_path: Path) -> None:
    every = _run(_py(_MIXED_OUTPUT), tmp_path, log_path=tmp_path / "every.log", tail_lines=6)
    newest = _run(
        _py(_MIXED_OUTPUT),
        tmp_path,
        log_path=tmp_path / "newest.log",
        tail_lines=6,
        on_block=lambda t, s, e: None,
        every_line=False,
    )
    assert (tmp_path / "newest.log").read_bytes() == (tmp_path / "every.log").read_bytes()
    assert newest.output_bytes == every.output_bytes == (tmp_path / "every.log").stat().st_size
    assert newest.tail == every.tail
    assert newest.tail[-3:] == ["\u20ac tail", "last", "no newline"]


def test_newest_lines_only_with_secrets_still_masks_them(tmp_path: Path) -> None:
    result = _run(
        ["/bin/sh", "-c", "echo token=hunter22; echo done"],
        tmp_path,
        redactor=Redactor(["hunter22"]),
        every_line=False,
    )
    assert result.tail == ["token=***", "done"]
    assert (tmp_path / "logs" / "step.log").read_text() == "token=***\ndone\n"


def test_long_line_without_newline_is_split(tmp_path: Path) -> None:
    size = 3 * MAX_LINE_CHARS + 10
    seen: list[str] = []
    _run(_py(f"print('a' * {size})"), tmp_path, on_line=seen.append)
    assert [len(line) for line in seen] == [MAX_LINE_CHARS] * 3 + [10]


def test_max_log_bytes_caps_the_log(tmp_path: Path) -> None:
    code = "import sys\nfor _ in range(100): sys.stdout.write('x' * 999 + '\\n')"
    result = _run(_py(code), tmp_path, max_log_bytes=10_000)
    assert result.exit_code == 0
    assert result.log_capped
    assert result.output_bytes == 100_000
    assert result.tail[-1] == "x" * 999
    log = (tmp_path / "logs" / "step.log").read_bytes()
    marker = b"\n[runbook] log capped at 10000 bytes; further output was discarded\n"
    assert log == (b"x" * 999 + b"\n") * 10 + marker


def test_log_is_appended_to(tmp_path: Path) -> None:
    _run(["/bin/sh", "-c", "echo first"], tmp_path)
    _run(["/bin/sh", "-c", "echo second"], tmp_path)
    assert (tmp_path / "logs" / "step.log").read_text() == "first\nsecond\n"


def test_secrets_masked_in_log_and_tail(tmp_path: Path) -> None:
    secret = "s3cr3t/t0ken+value"
    code = (
        "import sys, time\n"
        f"secret = {secret!r}\n"
        "sys.stdout.write('key=' + secret[:7]); sys.stdout.flush()\n"
        "time.sleep(0.1)\n"
        "sys.stdout.write(secret[7:] + '\\n')\n"
        f"print('url=' + {quote(secret, safe='')!r})\n"
        f"print('b64=' + {base64.b64encode(secret.encode()).decode()!r})\n"
        f"print('json=' + {json.dumps(secret)!r})\n"
    )
    result = _run(_py(code), tmp_path, redactor=Redactor([secret]))
    assert result.exit_code == 0
    log = (tmp_path / "logs" / "step.log").read_text()
    assert log == 'key=***\nurl=***\nb64=***\njson="***"\n'
    assert result.tail == ["key=***", "url=***", "b64=***", 'json="***"']


def test_on_line_error_propagates_and_stops_the_child(tmp_path: Path) -> None:
    def boom(line: str) -> None:
        raise RuntimeError(line)

    with pytest.raises(RuntimeError, match=r"^[0-9]+ [0-9]+$") as info:
        _run(["/bin/sh", "-c", "echo $$ $$; sleep 100"], tmp_path, on_line=boom)
    child = int(str(info.value).split()[0])
    assert _group_members(child) == []


def test_output_of_200_mb_keeps_memory_flat(tmp_path: Path) -> None:
    # Measured in a fresh interpreter so that pytest's own allocations do not count.
    harness = tmp_path / "harness.py"
    harness.write_text(
        """
import json, os, resource, sys
from pathlib import Path
from agent.proc.process import run_process
from agent.proc.redact import Redactor

CHILD = '''
import sys
out = sys.stdout.buffer
block = (b"\\\\x1b[32mok\\\\x1b[0m " + b"x" * 1000 + b"\\\\n") * 64
for _ in range(150 * 1024 * 1024 // len(block)):
    out.write(block)
chunk = b"y" * (1024 * 1024)
for _ in range(50):  # 50 MB in one line without a newline
    out.write(chunk)
'''
count = 0
def on_line(line):
    global count
    count += 1
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = run_process([sys.executable, "-c", CHILD], cwd=Path.cwd(), env=dict(os.environ),
                     timeout=120, log_path=Path(sys.argv[1]), on_line=on_line,
                     redactor=Redactor(["hunter2-secret"]))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"growth_kib": after - before, "output_bytes": result.output_bytes,
                  "lines": count, "exit_code": result.exit_code, "tail": result.tail[-1][:5]}))
"""
    )
    log = tmp_path / "big.log"
    done = subprocess.run(
        [PY, str(harness), str(log)], capture_output=True, text=True, check=True, timeout=120
    )
    report = json.loads(done.stdout)
    try:
        assert report["exit_code"] == 0
        assert report["output_bytes"] >= 200_000_000
        assert log.stat().st_size == report["output_bytes"]
        assert report["tail"] == "yyyyy"
        assert report["growth_kib"] < 100 * 1024
    finally:
        log.unlink()


def test_helpers() -> None:
    assert shell_quote(["echo", "a b", "$x"]) == "echo 'a b' '$x'"
    assert strip_ansi("\x1b[0;32mok\x1b[0m") == "ok"
    assert strip_ansi("plain") == "plain"


def test_header_goes_first_and_outside_the_cap(tmp_path: Path) -> None:
    result = _run(
        _py("print('x' * 99)"), tmp_path, header=b"--- attempt 1 of 1: x\n", max_log_bytes=50
    )
    assert result.log_capped
    log = (tmp_path / "logs" / "step.log").read_bytes()
    assert log.startswith(b"--- attempt 1 of 1: x\n" + b"x" * 50 + b"\n[runbook] log capped")


# -- run_captured: short helper programs, output in memory -------------------------------------


def test_run_captured_returns_exit_code_output_env_and_cwd(tmp_path: Path) -> None:
    code = "import os, sys; print(os.getcwd()); print(os.environ['ONLY']); sys.exit('oops')"
    done = run_captured([PY, "-c", code], cwd=tmp_path, env={"ONLY": "this"}, timeout=20)
    assert done.returncode == 1
    assert not done.timed_out
    assert done.stdout == f"{tmp_path}\nthis\n"
    assert done.stderr == "oops\n"


def test_run_captured_decodes_bad_bytes_with_replacement(tmp_path: Path) -> None:
    done = run_captured(_py("import sys; sys.stdout.buffer.write(b'a\\xffb')"), cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout == "a\ufffdb"


def test_run_captured_timeout_stops_the_whole_group() -> None:
    done = run_captured(
        ["/bin/sh", "-c", "sleep 100 & echo $$ $!; sleep 100"], timeout=0.5, grace=2.0
    )
    assert done.timed_out
    assert done.returncode is None
    child, grandchild = (int(p) for p in done.stdout.split())
    assert not alive(grandchild)
    assert not alive(child)
    assert _group_members(child) == []


def test_run_captured_leaves_nothing_running_behind() -> None:
    # The background sleep holds the pipe: it is stopped after a linger, not waited for.
    done = run_captured(["/bin/sh", "-c", "sleep 100 & echo $$ $!"], timeout=60, grace=2.0)
    assert done.returncode == 0
    assert not done.timed_out
    child, grandchild = (int(p) for p in done.stdout.split())
    assert not alive(grandchild)
    assert _group_members(child) == []


def test_run_captured_missing_program_raises_like_subprocess(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        run_captured(["no-such-program-xyz"], cwd=tmp_path)


# --- stopping what a dead runner left: only groups provably started by a step ---------------


def _session_leader(code: str) -> subprocess.Popen[bytes]:
    """A Python child that leads its own session and process group, as a step's program does."""
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True)


def _wait_for_file(path: Path) -> None:
    for _ in range(2000):
        if path.exists() and path.read_text():
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"{path} never appeared")


@pytest.mark.parametrize("pgid", [0, 1, -1])
def test_no_group_below_2_is_ever_signalled(pgid: int) -> None:
    assert stop_leftover_group(pgid, process_start_ticks(os.getpid()), grace=0.1) is False


def test_the_runners_own_group_is_never_signalled() -> None:
    own = os.getpgrp()
    assert stop_leftover_group(own, process_start_ticks(own), grace=0.1) is False
    assert alive(os.getpid())


def test_a_leader_with_the_recorded_start_time_is_stopped_and_another_is_not() -> None:
    child = _session_leader("import time; time.sleep(60)")
    try:
        ticks = process_start_ticks(child.pid)
        assert ticks is not None
        assert stop_leftover_group(child.pid, ticks + 1, grace=0.1) is False  # a reused pid
        assert stop_leftover_group(child.pid, None, grace=0.1) is False  # nothing recorded
        assert child.poll() is None
        assert stop_leftover_group(child.pid, ticks, grace=0.5) is True
        assert child.wait(timeout=10) != 0
    finally:
        child.kill()
        child.wait()


def test_with_the_leader_gone_only_descendants_are_stopped(tmp_path: Path) -> None:
    pid_file = tmp_path / "member.pid"
    # The leader starts a member of its group, writes its pid and exits: the member remains.
    leader = _session_leader(
        "import subprocess, sys, pathlib\n"
        "m = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"pathlib.Path({str(pid_file)!r}).write_text(str(m.pid))\n"
    )
    leader_ticks = process_start_ticks(leader.pid)
    _wait_for_file(pid_file)
    leader.wait(timeout=10)
    member = int(pid_file.read_text())
    try:
        assert leader_ticks is not None and alive(member)
        member_ticks = process_start_ticks(member)
        assert member_ticks is not None
        # A member that started before the recorded leader cannot be its descendant.
        assert stop_leftover_group(leader.pid, member_ticks + 1, grace=0.1) is False
        assert alive(member)
        assert stop_leftover_group(leader.pid, leader_ticks, grace=0.5) is True
        for _ in range(500):
            if not alive(member):
                break
            threading.Event().wait(0.01)
        assert not alive(member)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, 9)
