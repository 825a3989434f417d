"""The only place that starts processes: own process group, timeout, streamed log, bounded tail."""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import fcntl
import functools
import os
import secrets
import select
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from agent.errors import DISK_FULL, disk_full
from agent.proc.redact import Redactor, StreamRedactor
from agent.proc.terminal import strip_ansi

__all__ = [
    "CHUNK_SIZE",
    "MAX_LINE_CHARS",
    "TAIL_CHARS",
    "Captured",
    "ProcessResult",
    "Stray",
    "Strays",
    "process_start_ticks",
    "run_captured",
    "run_process",
    "shell_quote",
    "stop_leftover_group",
    "strays_running",
    "strip_ansi",
]

CHUNK_SIZE = 1024 * 1024
"""Bytes read from the child's pipe at a time."""
_PIPE_SIZE = 1024 * 1024  # F_SETPIPE_SZ: fewer, larger reads for chatty steps

MAX_LINE_CHARS = 64 * 1024
"""A partial line this long is emitted as a line: output without newlines stays bounded."""

TAIL_CHARS = 32 * 1024
"""The most characters the tail keeps in all (the oldest line kept may be cut short): the
tail goes into the journal, run.json and the report, which must fit in the room a run sets
aside for them when the disk fills up."""

_POLL_SECONDS = 0.05
"""How long one wait on the pipe lasts: the latency of noticing a timeout or an interrupt."""

_LINGER_SECONDS = 1.0
"""How long the pipe may stay open after the child exited (held by its background processes)
before the rest of its group is stopped: a step's processes do not outlive it."""

_AFTER_KILL_SECONDS = 2.0
"""How long the pipe is still drained after SIGKILL; only a process that left the group (its own
setsid) can keep it open longer, and it must not hang the run."""

_REAP_SECONDS = 5.0
"""How long to wait for the group to disappear after SIGKILL."""

_RELEASE_ON_FULL = 64 * 1024
"""When the disk fills up under a log, this much of the log's end is given back, so that the
journal, run.json and the report (small files) can still be written and the run ends clearly."""


TAG_ENV = "RUNBOOK_PROCESS_TAG"
"""Set in the environment of every program the runner starts, to a value of its own. A process
that leaves its program's process group (setsid, a double fork) still carries it, inherited,
so the runner tells that program's strays from other steps' processes and its other children."""

_PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h

_STRAY_ROUNDS = 3
"""How many times strays are looked for again after stopping the ones found: a stray may have
started another one while it was being stopped."""


class _Children:
    """The programs this module started and has not yet waited for (subprocess reaps them, the
    stray reaper never does), and how many it ever started: whether a program ran alone."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        """Held while a program starts and is registered, and while strays are reaped: a child
        that exits at once is never taken for an adopted orphan."""
        self.pids: set[int] = set()
        self.started = 0


_CHILDREN = _Children()


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class ProcessResult:
    """What happened to one process: how it ended, how much it wrote, its last lines."""

    exit_code: int | None
    """None when it never started or was stopped by timeout, interrupt or a log error."""
    timed_out: bool
    interrupted: bool
    started_at: datetime
    ended_at: datetime
    output_bytes: int
    """Total bytes the child wrote (stdout and stderr merged), before redaction."""
    log_capped: bool
    """The log reached max_log_bytes and stopped growing."""
    tail: list[str] = field(default_factory=list)
    """The last decoded lines (ANSI stripped, redacted), at most tail_lines of them and
    TAIL_CHARS characters in all."""
    error: str | None = None
    """Why the run did not go as a normal run goes, e.g. "cannot write log <path>: <reason>"."""
    stopped: list[Stray] = field(default_factory=list)
    """Processes that had left the program's process group, stopped with it (at the timeout,
    an interrupt or a log error) or when it ended (without a `Strays` to keep them)."""
    left: list[Stray] = field(default_factory=list)
    """Such processes still running when the program ended, kept in its `Strays`."""


def shell_quote(argv: list[str]) -> str:
    """Join arguments into one shell-quoted command line, for messages and reports.

    Args:
        argv: the arguments.

    Returns:
        A string a POSIX shell would split back into ``argv``.
    """
    return shlex.join(argv)


def _may_hold_long_line(text: str, start: int, end: int) -> bool:
    """Whether a line of `block` may exceed MAX_LINE_CHARS (never False when one does).

    A line that long covers a whole aligned window of half that size, so a window without a
    newline is the only place to look; a regex for "MAX characters but no newline" would
    rescan every line from every position.
    """
    step = MAX_LINE_CHARS // 2
    return any(text.find("\n", i, i + step) < 0 for i in range(start, end - step + 1, step))


class _Lines:
    """Turns decoded output into lines for the tail and the callbacks, with bounded memory.

    Output is handled a chunk at a time: the complete lines of each read are one span of
    the decoded chunk, passed on as (text, start, end) without copying it, so a gigabyte of
    output costs a few thousand Python calls and no per-line work for lines nobody reads.
    """

    def __init__(
        self,
        tail_lines: int,
        on_line: Callable[[str], None] | None,
        on_block: Callable[[str, int, int], None] | None = None,
        *,
        every_line: bool = True,
        redactor: Redactor | None = None,
    ) -> None:
        self.tail: deque[str] = deque(maxlen=max(tail_lines, 0))
        # The bytes were masked as they streamed; the lines are masked again once cleaned,
        # because removing an escape code or an invisible character inside a secret rebuilds it.
        self._redactor = redactor if redactor is not None and redactor.active else None
        self._on_line = on_line
        self._on_block = on_block
        self._undecoded = b""  # the start of a UTF-8 character cut off by the chunk's end
        self._pending = ""
        self._split = False  # the last line was emitted because it reached MAX_LINE_CHARS
        # Without a reader of every line only the newest lines of a chunk are decoded: the
        # tail's and the last one shown. The rest is written to the log and nowhere else.
        self._newest = None if every_line or on_line is not None else max(tail_lines, 1)

    def _newest_start(self, data: bytes | bytearray, end: int) -> int:
        """Where the newest lines of data[:end] begin; the complete lines before are dropped.

        The newline before the last `_newest` ones ends every line the tail can still hold;
        after it the text starts afresh: a new line, no partial UTF-8 sequence.
        """
        assert self._newest is not None
        cut = end
        for _ in range(self._newest + 1):
            cut = data.rfind(b"\n", 0, cut)
            if cut < 0:
                return 0
        self._undecoded = b""
        self._pending = ""
        self._split = False
        return cut + 1

    def feed(self, data: bytes | bytearray, *, end: int | None = None, final: bool = False) -> None:
        """Take data[:end] (all of it when end is None): `data` may be a buffer reused next."""
        end = len(data) if end is None else end
        start = 0 if self._newest is None else self._newest_start(data, end)
        text = self._decode(memoryview(data)[start:end], final=final)
        if "\0" in text:
            text = text.replace("\0", "")
        if not text and not final:
            return
        end = text.rfind("\n")
        if end >= 0:
            first = text.find("\n")
            # The line the previous chunk began, completed by this one: delivered alone, so
            # the rest of the chunk is passed on as a span of `text`, never copied.
            head = self._pending + text[:first]
            self._pending = text[end + 1 :]
            if self._split:
                # The newline ending a line already emitted in full-size pieces.
                self._split = False
                if head not in ("", "\r"):
                    self._deliver(head, 0, len(head))
            else:
                self._deliver(head, 0, len(head))
            if end > first:
                self._deliver(text, first + 1, end)
        else:
            self._pending += text
            if self._split and self._pending not in ("", "\r"):
                self._split = False
        # A carriage return inside the partial line (a progress bar) means the terminal
        # overwrites what came before it; keep only what follows, except a trailing "\r" that
        # may be the first half of "\r\n".
        cut = self._pending.rfind("\r", 0, len(self._pending) - 1)
        if cut >= 0:
            self._pending = self._pending[cut + 1 :]
        while len(self._pending) >= MAX_LINE_CHARS:
            piece = self._pending[:MAX_LINE_CHARS]
            self._deliver(piece, 0, len(piece))
            self._pending = self._pending[MAX_LINE_CHARS:]
            self._split = True
        if final and self._pending:
            self._deliver(self._pending, 0, len(self._pending))
            self._pending = ""

    def _decode(self, data: memoryview, *, final: bool) -> str:
        """UTF-8 with replacement; an incomplete character at the end waits for the next chunk.

        codecs.utf_8_decode directly, not an incremental decoder: that one copies every chunk
        (`self.buffer + input`) and measured 0.9 ms per MiB against 0.08 ms.
        """
        raw: bytes | memoryview = self._undecoded + data if self._undecoded else data
        text, used = codecs.utf_8_decode(raw, "replace", final)
        self._undecoded = bytes(raw[used:])
        return text

    def _deliver(self, text: str, start: int, end: int) -> None:
        """Take the complete lines text[start:end], joined by newlines."""
        if end - start > MAX_LINE_CHARS and _may_hold_long_line(text, start, end):
            text = "\n".join(
                line[i : i + MAX_LINE_CHARS]
                for line in text[start:end].split("\n")
                for i in range(0, max(len(line), 1), MAX_LINE_CHARS)
            )
            start, end = 0, len(text)
        if text.find("\r", start, end) >= 0 or text.find("\x1b", start, end) >= 0:
            text = "\n".join(strip_ansi(_overwrite(line)) for line in text[start:end].split("\n"))
            start, end = 0, len(text)
        if self._redactor is not None:
            text = self._redactor.redact(text[start:end])
            start, end = 0, len(text)
        n = self.tail.maxlen or 0
        if n:
            # The start of the last n lines, found from the end: no copy of the whole span.
            cut = end
            for _ in range(n):
                cut = text.rfind("\n", start, cut)
                if cut < 0:
                    break
            self.tail.extend(text[(cut + 1 if cut >= 0 else start) : end].split("\n"))
        if self._on_block is not None:
            self._on_block(text, start, end)
        if self._on_line is not None:
            for line in text[start:end].split("\n"):
                self._on_line(line)


def _overwrite(line: str) -> str:
    """What a terminal shows of a line with carriage returns: the text after the last one."""
    line = line.rstrip("\r")
    return line.rsplit("\r", 1)[1] if "\r" in line else line


class _Log:
    """The step's log file: raw (redacted) bytes, capped at max_log_bytes; write errors kept."""

    def __init__(self, path: Path, handle: BinaryIO, max_bytes: int | None) -> None:
        self.path = path
        self._handle = handle
        self._max = max_bytes
        self.written = 0
        self.capped = False
        self.error: str | None = None

    def write(self, data: bytes | memoryview) -> None:
        if self.capped or self.error is not None or not data:
            return
        if self._max is not None and self.written + len(data) >= self._max:
            self._write_all(data[: self._max - self.written])
            self.capped = True
            marker = f"\n[runbook] log capped at {self._max} bytes; further output was discarded\n"
            self._write_all(marker.encode())
            return
        self._write_all(data)

    def _write_all(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        try:
            while view:
                count = self._handle.write(view)
                if count is None:  # only for non-blocking files; never for a regular log
                    count = 0
                self.written += count
                view = view[count:]
        except OSError as exc:
            self.error = _log_error(self.path, exc)
            if disk_full(exc):
                self._release()

    def _release(self) -> None:
        """Give back the end of a log that filled the disk (a device such as /dev/full: no-op)."""
        with contextlib.suppress(OSError, ValueError):
            fd = self._handle.fileno()
            size = os.fstat(fd).st_size
            os.ftruncate(fd, max(0, size - _RELEASE_ON_FULL))
            os.write(fd, b"\n[runbook] disk full: the end of this log was dropped\n")

    def close(self) -> None:
        try:
            self._handle.close()
        except OSError as exc:
            if self.error is None:
                self.error = _log_error(self.path, exc)


def _log_error(path: Path, exc: OSError) -> str:
    """Why a log cannot be written; a full disk says so first, the run ends on it."""
    text = f"cannot write log {path}: {exc.strerror or exc}"
    return f"{DISK_FULL}: {text}" if disk_full(exc) else text


def _bounded(tail: Iterable[str]) -> list[str]:
    """The newest lines of `tail` that fit in TAIL_CHARS; the oldest one kept may be cut short
    (its start says what it is)."""
    kept: list[str] = []
    room = TAIL_CHARS
    for line in reversed(list(tail)):
        if len(line) > room:
            if room > 0:
                kept.append(line[: room - 1] + "…")
            break
        kept.append(line)
        room -= len(line)
    kept.reverse()
    return kept


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs; zombies waiting for their reaper do not count."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(entry.name)
        if len(fields) >= 3 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def _read_proc_file(path: str) -> bytes | None:
    """A small /proc file's bytes, or None when it is gone: read with os calls, since these run
    several times per step and pathlib's text reading cost more than the kernel's work."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def _stat_fields(pid: int | str) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name: state, ppid, pgrp, ... ([] when
    the process is gone). The name may hold spaces and parentheses: fields resume after the
    last ')'."""
    data = _read_proc_file(f"/proc/{pid}/stat")
    if data is None:
        return []
    stat = data.decode("utf-8", "replace")
    return stat[stat.rfind(")") + 2 :].split()


def _wait_group_gone(pgid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _group_alive(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _stop_group(pgid: int, grace: float) -> bool:
    """SIGTERM the group, give it `grace` seconds, SIGKILL it; return whether none survives."""
    _signal_group(pgid, signal.SIGTERM)
    if _wait_group_gone(pgid, grace):
        return True
    _signal_group(pgid, signal.SIGKILL)
    return _wait_group_gone(pgid, _REAP_SECONDS)


def _reap(proc: subprocess.Popen[bytes], pgid: int, grace: float) -> bool:
    """Kill a child still running (the caller was interrupted, or it ignores KILL), reap it and
    stop what is left of its group; return whether nothing of the group survived."""
    if proc.poll() is None:
        _signal_group(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=_REAP_SECONDS)
    gone = not _group_alive(pgid) or _stop_group(pgid, grace)
    with _CHILDREN.lock:
        if proc.returncode is not None:
            _CHILDREN.pids.discard(proc.pid)
    _reap_group(pgid)
    return gone


@dataclass(frozen=True)
class _Spawned:
    """A program started by `_spawn`."""

    proc: subprocess.Popen[bytes]
    tag: str
    """Its TAG_ENV value."""
    serial: int
    """How many programs had been started, this one included."""
    alone: bool
    """No other program of this module's ran when it started."""
    ticks: int | None
    """The leader's start time."""

    def since(self) -> int | None:
        """The leader's start time when no other program ran or started during its life: an
        orphan adopted since then, untagged (its environment was cleared), is then its own."""
        with _CHILDREN.lock:
            others = _CHILDREN.pids - {self.proc.pid}
            alone = self.alone and _CHILDREN.started == self.serial and not others
        return self.ticks if alone else None


def _spawn(argv: list[str], env: Mapping[str, str] | None, **kwargs: Any) -> _Spawned:
    """Start a program in a session of its own, tagged (TAG_ENV) so that its strays are
    found, and registered as a child subprocess waits for."""
    _adopt_orphans()
    tag = secrets.token_hex(8)
    full = {**(os.environ if env is None else env), TAG_ENV: tag}
    with _CHILDREN.lock:
        alone = not _CHILDREN.pids
        proc = subprocess.Popen(argv, env=full, start_new_session=True, **kwargs)
        _CHILDREN.pids.add(proc.pid)
        _CHILDREN.started += 1
        ticks = process_start_ticks(proc.pid)
        return _Spawned(proc, tag, _CHILDREN.started, alone, ticks)


def process_start_ticks(pid: int) -> int | None:
    """When a process started (clock ticks since boot, /proc), to tell it from a reused pid."""
    fields = _stat_fields(pid)
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def stop_leftover_group(pgid: int, start_ticks: int | None, grace: float = 5.0) -> bool:
    """Stop what is left of a step's process group after its runner died (kill -9, reboot).

    Only a group it can prove the step made is stopped (see `_started_by_us`): a pid reused by
    an unrelated process, this runner's own group and a group without a recorded start time
    are left alone.

    Args:
        pgid: the group recorded when the step started.
        start_ticks: the leader's start time recorded then.
        grace: seconds between SIGTERM and SIGKILL.

    Returns:
        True when something was stopped.
    """
    if not _started_by_us(pgid, start_ticks):
        return False
    if _wait_group_gone(pgid, 0):
        return False
    _stop_group(pgid, grace)
    return True


def _group_members(pgid: int) -> list[int | None]:
    """The start times of the processes now in group `pgid` (None where unreadable)."""
    ticks: list[int | None] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(entry.name)
        if len(fields) > 19 and fields[2] == str(pgid):
            ticks.append(int(fields[19]) if fields[19].isdigit() else None)
    return ticks


def _started_by_us(pgid: int, start_ticks: int | None) -> bool:
    """Whether group `pgid` is provably the one a step's leader made when it started then.

    Never group 0, 1 or below, nor this runner's own; the leader, when alive, must have the
    recorded start time; with the leader gone, every member must have started after it (a
    descendant), or nothing is proved and nothing is stopped.
    """
    if pgid <= 1 or pgid in (os.getpgrp(), os.getpid()) or start_ticks is None:
        return False
    leader = process_start_ticks(pgid)
    if leader is not None:
        return leader == start_ticks
    members = _group_members(pgid)
    return all(m is not None and m >= start_ticks for m in members)


@dataclass(frozen=True)
class Stray:
    """A process that left its program's process group (a group or session of its own)."""

    pid: int
    ticks: int | None
    """When it started (clock ticks since boot): tells it from a later process given its pid."""
    command: str
    """Its command line as /proc shows it, cut to a readable length; not masked yet."""

    def __str__(self) -> str:
        return f"{self.command} (pid {self.pid})"


class Strays:
    """The strays of one step's programs: the tags its programs ran with, and the strays still
    running when a program ended normally, which `stop` stops later (at the end of the run: a
    step may start a helper that later steps use, as CI runners allow within a job)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # parallel partitions of one step share nothing, but
        self._tags: list[str] = []  # a resume's leftovers and a retry may meet here
        self._left: list[Stray] = []

    def add(self, tag: str, left: Iterable[Stray] = ()) -> None:
        """Keep a program's tag, and the strays it left running."""
        with self._lock:
            if tag not in self._tags:
                self._tags.append(tag)
            self._left.extend(left)

    @property
    def left(self) -> list[Stray]:
        """The strays seen running when their program ended."""
        with self._lock:
            return list(self._left)

    def stop(self, grace: float = 5.0) -> list[Stray]:
        """Stop every process of these programs that still runs outside their groups.

        Args:
            grace: seconds between SIGTERM and SIGKILL.

        Returns:
            The processes stopped (none when nothing was left).
        """
        with self._lock:
            tags, left = set(self._tags), list(self._left)
            self._left.clear()
        if not tags:
            return []
        return _stop_strays(tags, None, grace, known=left)


def strays_running(groups: Iterable[Strays]) -> bool:
    """Whether a stray of any of these programs may still run: one walk of the processes for
    all of them, where stopping each group in turn walks once per group (a run's end)."""
    tags: set[str] = set()
    for group in groups:
        with group._lock:
            if group._left:
                return True
            tags.update(group._tags)
    return bool(tags) and bool(_find_strays(tags, None))


@dataclass(frozen=True)
class _Proc:
    """One line of /proc: enough to place a process in the tree and to stop the right one."""

    pid: int
    ppid: int
    pgid: int
    state: str
    ticks: int | None


def _read_proc(pid: int) -> _Proc | None:
    fields = _stat_fields(pid)
    try:
        return _Proc(pid, int(fields[1]), int(fields[2]), fields[0], int(fields[19]))
    except (IndexError, ValueError):
        return None


@functools.cache
def _adopt_orphans() -> bool:
    """Make this process a child subreaper (Linux, once): a descendant whose parent dies is
    then reparented here rather than to init, so it stays below the runner, where its strays
    are looked for (and this process reaps it). False where the system has no such thing:
    strays are then looked for among all processes, by their tag alone."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


@functools.cache
def _has_children_files() -> bool:
    """Whether the kernel lists a task's children (/proc/<pid>/task/<tid>/children)."""
    pid = os.getpid()
    return Path(f"/proc/{pid}/task/{pid}/children").exists()


def _children(pid: int) -> list[int]:
    """The children of every thread of `pid` (an orphan may be given to any of them)."""
    base = f"/proc/{pid}/task"
    try:
        tasks = os.listdir(base)  # noqa: PTH208 - names, not Paths: this runs after every step
    except OSError:
        return []
    out: list[int] = []
    for task in tasks:
        data = _read_proc_file(f"{base}/{task}/children")
        if data:
            with contextlib.suppress(ValueError):
                out.extend(int(x) for x in data.split())
    return out


def _all_procs() -> list[_Proc]:
    try:
        entries = [e.name for e in Path("/proc").iterdir()]
    except OSError:
        return []
    found = (_read_proc(int(name)) for name in entries if name.isdigit())
    return [p for p in found if p is not None]


def _descendants(root: int, among: list[_Proc] | None = None) -> list[_Proc]:
    """Every descendant of `root` (zombies too), parents before their children.

    Read from the children lists when the kernel has them (a walk of the runner's own subtree
    costs what the subtree holds), else from `among` or a scan of every process.
    """
    if among is None and _has_children_files():
        out: list[_Proc] = []
        todo, seen = [root], {root}
        while todo:
            for child in _children(todo.pop()):
                info = None if child in seen else _read_proc(child)
                if info is not None:
                    seen.add(child)
                    out.append(info)
                    todo.append(child)
        return out
    kids: dict[int, list[_Proc]] = {}
    for p in _all_procs() if among is None else among:
        kids.setdefault(p.ppid, []).append(p)
    out, todo = [], [root]
    while todo:
        for p in kids.pop(todo.pop(), []):
            out.append(p)
            todo.append(p.pid)
    return out


def _tag(pid: int) -> str | None:
    """The TAG_ENV value of a process's environment (None when absent or unreadable)."""
    env = _read_proc_file(f"/proc/{pid}/environ")
    if env is None:
        return None
    key = TAG_ENV.encode() + b"="
    for item in env.split(b"\0"):
        if item.startswith(key):
            return item[len(key) :].decode("ascii", "replace")
    return None


def _find_strays(
    tags: Collection[str],
    pgid: int | None,
    leader: int | None = None,
    since: int | None = None,
) -> list[_Proc]:
    """The processes running outside group `pgid` that are a program's: tagged with one of
    `tags`, below its `leader`, or (`since`: it ran alone) adopted untagged since it started.

    Looked for below this process (a subreaper: orphans come back to it), else among all
    processes, where the tag alone, random per program, tells the program's own apart. The
    runner's own children (other programs' leaders) are never strays.
    """
    me = os.getpid()
    adopting = _adopt_orphans()
    procs = _descendants(me) if adopting else [p for p in _all_procs() if p.pid != me]
    below = {p.pid for p in _descendants(leader, procs)} if leader is not None else set()
    mine = os.getpgrp()
    out: list[_Proc] = []
    for p in procs:
        if p.state in ("Z", "X") or p.pgid in (pgid, mine) or p.pid in _CHILDREN.pids:
            continue
        if p.pid in below:
            out.append(p)
            continue
        tag = _tag(p.pid)
        if tag in tags or (
            tag is None
            and adopting
            and since is not None
            and p.ppid == me
            and p.ticks is not None
            and p.ticks >= since
        ):
            out.append(p)
    return out


def _stray(p: _Proc) -> Stray:
    data = _read_proc_file(f"/proc/{p.pid}/cmdline") or b""
    command = " ".join(a.decode("utf-8", "replace") for a in data.rstrip(b"\0").split(b"\0"))
    command = " ".join(command.split()) or "?"  # one line: a report lists it in a bullet
    return Stray(p.pid, p.ticks, command if len(command) <= 80 else command[:79] + "…")


def _still(p: _Proc) -> bool:
    """Whether `p` still runs as itself: not gone, not a zombie, its pid not reused."""
    now = _read_proc(p.pid)
    return now is not None and now.ticks == p.ticks and now.state not in ("Z", "X")


def _signal_strays(procs: Iterable[_Proc], sig: signal.Signals) -> None:
    mine = os.getpgrp()
    for p in procs:
        if not _still(p):
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p.pid, sig)
        if p.pgid == p.pid != mine:  # it leads a group of its own: its members go with it
            _signal_group(p.pgid, sig)


def _reap_adopted(pids: Iterable[int]) -> None:
    """Collect the zombies among `pids` that are this process's children (adopted orphans,
    which nobody else waits for); a child subprocess started is never touched."""
    me = os.getpid()
    with _CHILDREN.lock:
        for pid in pids:
            info = None if pid in _CHILDREN.pids else _read_proc(pid)
            if info is not None and info.ppid == me and info.state == "Z":
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)


def _reap_group(pgid: int) -> None:
    """Reap the members of a stopped group that were adopted (their parent died first)."""
    if _adopt_orphans() and _a_child_has_ended():
        _reap_adopted(p.pid for p in _descendants(os.getpid()) if p.pgid == pgid)


def _a_child_has_ended() -> bool:
    """Whether any child of this process waits to be reaped, left waiting (WNOWAIT): one call,
    where a walk of the children costs a read per thread and per child after every program."""
    try:
        return os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return False


def _wait_strays_gone(procs: list[_Proc], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        _reap_adopted(p.pid for p in procs)
        if not any(_still(p) for p in procs):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def _stop_strays(
    tags: Collection[str],
    pgid: int | None,
    grace: float,
    *,
    leader: int | None = None,
    known: Iterable[Stray | _Proc] = (),
    since: int | None = None,
) -> list[Stray]:
    """Stop the strays of programs tagged `tags` (and `known` ones, if still themselves):
    SIGTERM, `grace` seconds, SIGKILL, looked for again in case one started another, reaped.

    Returns:
        The processes stopped, in the order they were found.
    """
    stopped: dict[int, Stray] = {}
    extra: list[_Proc] = []
    for k in known:
        info = k if isinstance(k, _Proc) else _read_proc(k.pid)
        if info is not None and info.ticks == k.ticks:
            extra.append(info)
    for _ in range(_STRAY_ROUNDS):
        found = [*extra, *_find_strays(tags, pgid, leader, since)]
        procs = {p.pid: p for p in found if _still(p)}
        if not procs:
            break
        for p in procs.values():
            stopped.setdefault(p.pid, _stray(p))
        found = list(procs.values())
        _signal_strays(found, signal.SIGTERM)
        if not _wait_strays_gone(found, grace):
            _signal_strays(found, signal.SIGKILL)
            _wait_strays_gone(found, _REAP_SECONDS)
        for p in found:
            if p.pgid == p.pid:  # the members of a group it led went with it
                _reap_group(p.pgid)
        extra, leader = [], None
    # Those told to stop earlier (with their group) may have died since: reaped here.
    _reap_adopted([*stopped, *(k.pid for k in known)])
    return list(stopped.values())


@dataclass(frozen=True)
class Captured:
    """What a short helper program printed, for the runner itself to read (not a step's run)."""

    returncode: int | None
    """None when it was stopped at its timeout."""
    stdout: str
    stderr: str
    """Both decoded as UTF-8 with replacement: bad bytes never raise."""

    @property
    def timed_out(self) -> bool:
        """Whether the program was stopped at its timeout."""
        return self.returncode is None


def run_captured(
    argv: list[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    grace: float = 1.0,
) -> Captured:
    """Run a short program the runner needs (an interpreter probe, a seed script), capturing
    its output in memory.

    Unlike ``run_process`` there is no log and no streaming: the output is small and read
    whole. The program runs in its own process group with stdin closed; at the timeout, or
    when the caller is interrupted, the whole group is stopped (SIGTERM, ``grace`` seconds,
    SIGKILL), and so is what it left running after it exited.

    Args:
        argv: the program and its arguments; no shell.
        cwd: the working directory (default: the runner's).
        env: the complete environment of the child (default: the runner's).
        timeout: seconds before the group is stopped, or None for no limit.
        grace: seconds between SIGTERM and SIGKILL.

    Returns:
        The ``Captured`` exit code and output; ``returncode`` is None after a timeout.

    Raises:
        OSError: the program cannot be started (as ``subprocess.run`` raises it).
    """
    spawned = _spawn(
        argv,
        env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc = spawned.proc
    pgid = proc.pid  # start_new_session: the child leads a new process group
    deadline = None if timeout is None else time.monotonic() + timeout
    timed_out = False
    exited_at: float | None = None
    stopped_at: float | None = None
    out = err = b""
    try:
        while True:
            try:
                out, err = proc.communicate(timeout=_POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                pass  # communicate keeps what it read so far for the next call
            now = time.monotonic()
            if stopped_at is not None:
                if now - stopped_at >= _AFTER_KILL_SECONDS:
                    break  # a process that left the group holds the pipes: do not hang on it
                continue
            if proc.poll() is None:
                timed_out = deadline is not None and now >= deadline
                stop = timed_out
            else:  # only what it left running in the background holds the pipes open
                exited_at = now if exited_at is None else exited_at
                stop = now - exited_at >= _LINGER_SECONDS
            if stop:
                _stop_group(pgid, grace)
                stopped_at = time.monotonic()
    finally:
        _reap(proc, pgid, grace)  # after Ctrl-C while waiting, too: nothing may outlive us
        since = spawned.since()
        _stop_strays({spawned.tag}, pgid, grace, since=since)  # nor what left its group
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    return Captured(
        returncode=None if timed_out else proc.returncode,
        stdout=out.decode("utf-8", "replace"),
        stderr=err.decode("utf-8", "replace"),
    )


def _not_started(started_at: datetime, error: str) -> ProcessResult:
    return ProcessResult(
        exit_code=None,
        timed_out=False,
        interrupted=False,
        started_at=started_at,
        ended_at=_utcnow(),
        output_bytes=0,
        log_capped=False,
        tail=[],
        error=error,
    )


def run_process(
    argv: list[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float | None,
    log_path: Path,
    on_line: Callable[[str], None] | None = None,
    on_block: Callable[[str, int, int], None] | None = None,
    redactor: Redactor | None = None,
    max_log_bytes: int | None = None,
    tail_lines: int = 50,
    stop_event: threading.Event | None = None,
    grace: float = 5.0,
    on_spawn: Callable[[int, int | None], None] | None = None,
    every_line: bool = True,
    header: bytes = b"",
    strays: Strays | None = None,
) -> ProcessResult:
    """Run a program in its own process group, streaming its output to a log.

    stdout and stderr are merged and read in large chunks; each chunk is redacted and appended
    to the log as it comes (ANSI codes kept), then decoded with replacement and split into lines
    (ANSI stripped, NUL bytes removed, carriage-return overwrites applied) for ``on_line`` and
    the bounded tail. On timeout, ``stop_event`` or a log write error the whole group gets
    SIGTERM, ``grace`` seconds, then SIGKILL; background processes still running when the child
    exits are stopped the same way. Nothing of the group survives. Processes that left the
    group (setsid, a double fork) are found by the tag their environment inherited (TAG_ENV)
    and stopped with the group; when the program ended normally they are kept in ``strays``
    for the caller to stop later, or stopped at once without it. Never raises for a program
    that cannot start or a log that cannot be written: those are results.

    Args:
        argv: the program and its arguments; no shell (pass ``["/bin/sh", "-c", ...]`` for one).
        cwd: the working directory.
        env: the complete environment of the child.
        timeout: seconds before the group is stopped, or None for no limit.
        log_path: the log file, appended to; its parent folders are created.
        on_line: called with every output line, and with the last partial line at the end.
        on_block: called as on_block(text, start, end) with the complete lines of each chunk
            read: text[start:end], joined by newlines (cheaper than on_line for large outputs;
            search it with compiled patterns' pos/endpos rather than slicing it).
        redactor: masks secrets in everything written to the log and passed on as lines.
        max_log_bytes: bytes this run may append to the log; then a marker line and no more.
        tail_lines: how many of the last lines to keep.
        stop_event: set by another thread to stop the run (Ctrl-C, SIGTERM).
        grace: seconds between SIGTERM and SIGKILL.
        on_spawn: called with the process group id and its leader's start time (clock ticks,
            None when /proc has none) once the child runs (the journal keeps them, so a resume
            after a crash can stop what the dead runner left behind).
        every_line: False when ``on_block`` only needs the newest lines of each chunk (the
            last one, for a progress display): the older ones are then written to the log but
            never decoded. Ignored when ``on_line`` is given.
        header: written to the log before the program's output (the attempt's heading).
        strays: where the processes that left the group and still run after a normal end are
            kept (the run stops them at its end); None stops them when the program ends.

    Returns:
        The ``ProcessResult``; ``exit_code`` is None when the program never started or was
        stopped by timeout, interrupt or a log error, and ``error`` says why in those cases.
    """
    started_at = _utcnow()
    if not argv:
        return _not_started(started_at, "cannot start an empty command")
    try:
        # A file where a folder should be: opening the log below says "Not a directory".
        with contextlib.suppress(FileExistsError):
            log_path.parent.mkdir(parents=True, exist_ok=True)
        handle: BinaryIO = log_path.open("ab", buffering=0)
    except OSError as exc:
        return _not_started(started_at, _log_error(log_path, exc))
    try:
        if header:  # outside max_log_bytes, which counts the program's output
            handle.write(header)
    except OSError as exc:
        with contextlib.suppress(OSError):
            handle.close()
        return _not_started(started_at, _log_error(log_path, exc))
    log = _Log(log_path, handle, max_log_bytes)
    try:
        spawned = _spawn(
            argv,
            env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            bufsize=0,
        )
    except OSError as exc:
        log.close()
        reason = exc.strerror or str(exc)
        if exc.filename is not None and str(exc.filename) == str(cwd) != argv[0]:
            return _not_started(started_at, f"cannot run in {cwd}: {reason}")
        return _not_started(started_at, f"cannot start {argv[0]}: {reason}")

    stream: StreamRedactor | None = (
        redactor.stream() if redactor is not None and redactor.active else None
    )
    lines = _Lines(tail_lines, on_line, on_block, every_line=every_line, redactor=redactor)
    proc, tag = spawned.proc, spawned.tag
    pgid = proc.pid  # start_new_session: the child leads a new session and process group
    if strays is not None:
        strays.add(tag)
    if on_spawn is not None:
        on_spawn(pgid, spawned.ticks)
    output_bytes = 0
    timed_out = interrupted = False
    deadline = None if timeout is None else time.monotonic() + timeout
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    with contextlib.suppress(OSError, AttributeError):
        # Linux only; an unprivileged user may be capped lower (pipe-max-size): then 64 KiB.
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), _PIPE_SIZE)
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)

    # One buffer for every read: a fresh 1 MiB bytes object per read cost a page fault per
    # page (os.read); the log is written from it and only the lines needed are decoded.
    buffer = bytearray(CHUNK_SIZE)
    view = memoryview(buffer)

    def consume(count: int, *, final: bool = False) -> None:
        if stream is not None:
            data = stream.feed(bytes(view[:count])) + (stream.flush() if final else b"")
            log.write(data)
            lines.feed(data, final=final)
        else:
            log.write(view[:count])
            lines.feed(buffer, end=count, final=final)

    eof = False
    stopping = False  # the group was told to stop (by us) while the child still ran
    term_at: float | None = None
    kill_at: float | None = None
    exited_at: float | None = None
    escaped: list[_Proc] = []  # found when the group was told to stop, and told too
    stopped: list[Stray] = []
    completed = False
    try:
        while True:
            now = time.monotonic()
            returncode = proc.poll()
            if returncode is not None and exited_at is None:
                exited_at = now
            if eof and returncode is not None:
                break
            if term_at is None:
                if returncode is None:
                    if stop_event is not None and stop_event.is_set():
                        interrupted = True
                    elif deadline is not None and now >= deadline:
                        timed_out = True
                    stopping = interrupted or timed_out or log.error is not None
                    should_stop = stopping
                else:  # only background processes of the child hold the pipe open
                    assert exited_at is not None
                    should_stop = now - exited_at >= _LINGER_SECONDS or bool(
                        stop_event is not None and stop_event.is_set()
                    )
                if should_stop:
                    if stopping:  # found while the leader lives: its descendants count too
                        escaped = _find_strays({tag}, pgid, proc.pid, spawned.since())
                        stopped = [_stray(p) for p in escaped]  # named while they run
                        _signal_strays(escaped, signal.SIGTERM)
                    _signal_group(pgid, signal.SIGTERM)
                    term_at = now
            elif kill_at is None and now - term_at >= grace:
                _signal_strays(escaped, signal.SIGKILL)
                _signal_group(pgid, signal.SIGKILL)
                kill_at = now
            elif kill_at is not None and now - kill_at >= _AFTER_KILL_SECONDS:
                break  # something outside the group holds the pipe; do not hang on it
            if eof:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=_POLL_SECONDS)
                continue
            if not poller.poll(int(_POLL_SECONDS * 1000)):
                continue
            try:
                count = os.readv(fd, [buffer])
            except (BlockingIOError, InterruptedError):
                continue
            if not count:
                eof = True
                continue
            output_bytes += count
            consume(count)
        consume(0, final=True)
        completed = True
    finally:
        proc.stdout.close()
        # After an exception (e.g. from on_line) the child may still run: it is killed here.
        survived = not _reap(proc, pgid, 0 if kill_at else grace)
        log.close()
        left: list[Stray] = []
        since = spawned.since()
        if stopping or not completed or strays is None:
            # Those told to stop with the group had its grace; others found now get theirs.
            late = _stop_strays({tag}, pgid, 0 if escaped else grace, known=escaped, since=since)
            named = {s.pid for s in stopped}
            stopped += [s for s in late if s.pid not in named]
        else:
            left = [_stray(p) for p in _find_strays({tag}, pgid, since=since)]
            strays.add(tag, left)

    error = log.error
    if proc.returncode is None or survived:
        error = error or f"processes of group {pgid} survived SIGKILL"
    return ProcessResult(
        exit_code=None if stopping or proc.returncode is None else proc.returncode,
        timed_out=timed_out,
        interrupted=interrupted,
        started_at=started_at,
        ended_at=_utcnow(),
        output_bytes=output_bytes,
        log_capped=log.capped,
        tail=_bounded(lines.tail),
        error=error,
        stopped=stopped,
        left=left,
    )
