"""RunRecord and StepResult: what a run did, as run.json on disk and an append-only journal."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from agent.errors import DISK_FULL as _DISK_FULL

__all__ = [
    "CAUSES",
    "FOLLOWUP_SUFFIX",
    "Advice",
    "Attempt",
    "CheckResult",
    "DetailLine",
    "ExpectResult",
    "Item",
    "Journal",
    "Poll",
    "RunRecord",
    "RunStatus",
    "Status",
    "StepResult",
    "StoppedProcess",
    "build_models",
    "load_record",
    "read_runs",
    "replay_journal",
    "utcnow",
    "write_atomic",
    "write_record",
]

RECORD_FORMAT = 1

FOLLOWUP_SUFFIX = "-followup"
"""A follow-up runbook's id: the id of the runbook it follows up, plus this."""


def utcnow() -> datetime:
    """Return the current time, timezone-aware in UTC (every time in a record is UTC)."""
    return datetime.now(UTC)


class Status(StrEnum):
    """How one step ended."""

    SUCCESS = "SUCCESS"
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"
    NOT_FOUND = "NOT_FOUND"
    TIMED_OUT = "TIMED_OUT"
    SKIPPED = "SKIPPED"
    ABORTED = "ABORTED"


class RunStatus(StrEnum):
    """How a whole run ended."""

    COMPLETE = "COMPLETE"
    PARTIALLY_COMPLETE = "PARTIALLY COMPLETE"
    FAILED = "FAILED"
    INTERRUPTED = "INTERRUPTED"


class _Model(BaseModel):
    # Built on first use: `plan` and `validate` import these models (through the step kinds)
    # without making a record; building them at import cost `plan` 24 ms (-X importtime).
    model_config = ConfigDict(extra="forbid", defer_build=True)


class Attempt(_Model):
    """One try of a command (retries make several)."""

    number: int
    started_at: datetime
    ended_at: datetime | None = None
    exit_code: int | None = None
    timed_out: bool = False
    error: str | None = None


class DetailLine(_Model):
    """An output line quoted under "Details", with its mark (ok, warn, error, info)."""

    mark: str
    text: str


class Item(_Model):
    """One line a validate step listed (an `all: true` capture): stage, message, section."""

    capture: str  # the capture it came from
    stage: str | None = None  # the first group when the pattern has two (`[stage] message`)
    message: str
    section: str | None = None  # the heading the output put it under ("❌ 25 ISSUES FOUND:")
    severity: Literal["issue", "warning"] | None = None  # from the heading's words, if it says

    @property
    def identity(self) -> tuple[str | None, str]:
        """What makes two items the same item, before and after the run."""
        return (self.stage, self.message)


class Advice(_Model):
    """A lesson or next step of the runbook that held for this run."""

    text: str
    standing: bool = False  # it has no `when`: advice for every run, not a finding of this one


def _advice(value: Any) -> Any:
    """Records written before Advice held plain strings."""
    return {"text": value} if isinstance(value, str) else value


AdviceField = Annotated[Advice, BeforeValidator(_advice)]

CAUSES = (
    "crashed",
    "exit_code",
    "error",
    "timed_out",
    "not_found",
    "expectation",
    "coverage",
    "needs",
    "unconfirmed",
    "interrupted",
)
"""Why a step fell short, as `StepResult.cause` names it and `on_shortfall` may be keyed."""


class ExpectResult(_Model):
    """One `expect` expression and whether it held."""

    expr: str
    ok: bool
    error: str | None = None


class CheckResult(_Model):
    """One verify check: the count found, what was expected, and the keys that are missing."""

    table: str
    where: str | None = None
    actual: int | None = None
    expected: int | None = None
    minimum: int | None = None
    ratio: float | None = None
    # Where `expected` came from: "var" (the runbook's number or template) or "coverage" (the
    # coverage query's count of expected keys); None when the check expects no exact number.
    expected_source: str | None = None
    total: int | None = None  # the denominator of the percentage (expected, or expect_total)
    percent: float | None = None
    ok: bool = False
    key: list[str] = Field(default_factory=list)
    missing_keys: list[dict[str, Any]] = Field(default_factory=list)
    missing_total: int | None = None
    # Graded coverage: the check's `levels` ({"ok": 0.9, "warn": 0.7}) and the one its share of
    # the expected records reached ("ok", "warn" or "fail"); None for a check without levels.
    levels: dict[str, float] | None = None
    level: str | None = None
    error: str | None = None


class StoppedProcess(_Model):
    """A process a step started that left the step's process group, stopped by the runner."""

    pid: int
    command: str  # its command line as the system showed it, cut short and masked
    # When: "timeout", "interrupt", "stop" (the step was stopped: its log could not be
    # written), "step_end" (stopped when its program ended) or "run_end" (kept for the steps
    # after it, stopped when the run ended).
    when: str


class Poll(_Model):
    """One poll of a `wait` step."""

    at: datetime
    value: Any = None
    ok: bool = False
    error: str | None = None


class Baseline(_Model):
    """What a `baseline: true` step measured before the first step ran."""

    measured_at: datetime
    captures: dict[str, Any] = Field(default_factory=dict)
    counts: dict[str, CheckResult] = Field(default_factory=dict)
    items: list[Item] = Field(default_factory=list)
    status: Status | None = None
    error: str | None = None


class StepResult(_Model):
    """Everything one step did; `status` is None until the step has ended."""

    id: str
    kind: str
    title: str
    # The partition this result is for (a partitioned runbook has one result per step and
    # partition, in `RunRecord.steps` side by side); None in a runbook without partitions.
    partition: str | None = None
    status: Status | None = None
    reason: str | None = None
    # Why a SKIPPED step was skipped: "when" (its condition was false), "needs" (a step it
    # needs did not succeed), "selection" (--only/--from left it out) or "manual" (a manual
    # step nobody confirmed). None for other statuses, or when the runner did not say.
    skipped_by: str | None = None
    # Who confirmed a step that asks for confirmation: "operator" (a person at the prompt) or
    # "unattended" (--yes said yes for everyone). None when nothing was confirmed.
    confirmed_by: str | None = None
    instructions: str | None = None  # what a person was asked to do (a manual step), rendered
    command: list[str] | None = None  # argv as run (secrets masked)
    command_display: str | None = None  # the same, quoted for a POSIX shell
    started_at: datetime | None = None
    ended_at: datetime | None = None
    attempts: list[Attempt] = Field(default_factory=list)
    exit_code: int | None = None
    captures: dict[str, Any] = Field(default_factory=dict)
    # Captures whose pattern matched no output line: their value is the default, not evidence.
    unmatched: list[str] = Field(default_factory=list)
    # The line that shows the program crashed: a Python exception after its traceback, or a
    # line matching one of the step's `fatal` patterns. Such a step is FAILED whatever it exited.
    crash: str | None = None
    details: list[DetailLine] = Field(default_factory=list)
    items: list[Item] = Field(default_factory=list)  # what a validate step listed, parsed
    expectations: list[ExpectResult] = Field(default_factory=list)
    counts: dict[str, CheckResult] = Field(default_factory=dict)
    baseline: Baseline | None = None
    polls: list[Poll] = Field(default_factory=list)
    log_path: str | None = None  # relative to the run directory
    output_tail: list[str] = Field(default_factory=list)
    output_bytes: int = 0
    log_capped: bool = False
    missing: str | None = None  # the program, script or module that was not found
    alternatives: list[str] = Field(default_factory=list)
    shortfall: dict[str, Any] | None = None  # on_shortfall, rendered
    # Processes the step started that left its process group (setsid, a double fork), which
    # the runner found and stopped: at its timeout, or at the end of the run.
    stopped_processes: list[StoppedProcess] = Field(default_factory=list)
    sessions: int = 1  # how many runner sessions started this step (2+ after a resume)

    @property
    def cause(self) -> str | None:
        """Why the step fell short (one of CAUSES), or None when it did not."""
        st = self.status
        if st is None or st == Status.SUCCESS:
            return None
        if self.crash:
            return "crashed"
        simple = {
            Status.NOT_FOUND: "not_found",
            Status.TIMED_OUT: "timed_out",
            Status.ABORTED: "interrupted",
        }
        if st in simple:
            return simple[st]
        if st == Status.SKIPPED:
            return {"needs": "needs", "manual": "unconfirmed"}.get(self.skipped_by or "")
        if st == Status.PARTIAL:
            return "coverage" if any(not c.ok for c in self.counts.values()) else "expectation"
        if any(c.level == "fail" and not c.error for c in self.counts.values()):
            return "coverage"
        if (self.reason or "").startswith(_DISK_FULL):
            return "error"  # it may have exited 0: its log could not be written
        ran = any(a.exit_code is not None for a in self.attempts)
        return "exit_code" if ran and self.exit_code is not None else "error"

    def missing_values(self) -> dict[str, list[str]]:
        """Every key column's missing values over the step's checks, sorted, each once."""
        out: dict[str, set[str]] = {}
        for check in self.counts.values():
            for key in check.missing_keys:
                for column, value in key.items():
                    out.setdefault(column, set()).add(str(value))
        return {k: sorted(v) for k, v in out.items()}

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to end, or None if the step has not both started and ended."""
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()


class Session(_Model):
    """One runner process that worked on the run (a resume adds one)."""

    started_at: datetime
    ended_at: datetime | None = None
    pid: int
    host: str
    command: str


class RunRecord(_Model):
    """A run: the runbook's identity, its vars, every step's result, the overall status."""

    format: int = RECORD_FORMAT
    run_id: str
    runbook_id: str
    runbook_path: str
    runbook_sha256: str
    title: str
    summary: str | None = None
    incident: dict[str, str] = Field(default_factory=dict)
    vars: dict[str, Any] = Field(default_factory=dict)
    operator: str
    host: str
    tool_version: str
    warehouse: dict[str, Any] = Field(default_factory=dict)
    started_at: datetime
    ended_at: datetime | None = None
    status: RunStatus | None = None
    exit_code: int | None = None
    # Why the run ended as it did when one cause outside its steps decided it ("the disk is
    # full: ..."); None otherwise.
    reason: str | None = None
    steps: list[StepResult] = Field(default_factory=list)
    # A partitioned run: the var each partition binds and the partitions run, in order. Its
    # `steps` then hold one result per (step, partition) pair, step by step.
    partition_var: str | None = None
    partitions: list[str] = Field(default_factory=list)
    needs: dict[str, list[str]] = Field(default_factory=dict)  # explicit: must have succeeded
    after: dict[str, list[str]] = Field(default_factory=dict)  # every ordering edge
    lessons: list[AdviceField] = Field(default_factory=list)
    next_steps: dict[str, list[AdviceField]] = Field(default_factory=dict)
    sessions: list[Session] = Field(default_factory=list)
    file_hashes: dict[str, str] = Field(default_factory=dict)  # scripts the steps run, at start
    selection: dict[str, Any] = Field(default_factory=dict)  # --only, --from, --parallel, ...
    run_dir: str | None = None  # where the run directory was made (for the follow-up command)

    def step(self, step_id: str) -> StepResult:
        """Return the result of step `step_id`."""
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)


def build_models() -> None:
    """Build every record model's validator now, before threads use them.

    They are built on first use (defer_build); in some pydantic versions a second thread could
    meanwhile use the half-built model's parent validator (pydantic#11849).
    """
    todo: list[type[_Model]] = [_Model]
    while todo:
        model = todo.pop()
        todo.extend(model.__subclasses__())
        if model is not _Model:
            model.model_rebuild()


def write_atomic(path: Path, text: str, *, sync: bool = False) -> None:
    """Write a file through a temporary one and a rename: a crash never leaves half of it.

    Args:
        path: the file; its parent folders are created.
        text: what it holds (UTF-8).
        sync: fsync before the rename.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(text)
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
        tmp.replace(path)
    except BaseException:
        # A full disk leaves a partial temporary file: it goes, and gives its room back.
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_record(record: RunRecord, path: Path, *, sync: bool = True) -> None:
    """Write run.json atomically, so a crash mid-write never leaves half a file.

    Args:
        record: the run.
        path: where run.json goes.
        sync: fsync before the rename (the final write); snapshots during a run skip it, since
            the journal, not run.json, is what a resume trusts.
    """
    write_atomic(path, record.model_dump_json(indent=2), sync=sync)


def load_record(path: Path, *, events: list[dict[str, Any]] | None = None) -> RunRecord:
    """Read run.json (a run directory or the file itself).

    `events`: the run's journal, when the caller has read it already (resume does).

    Raises:
        RunbookError: when there is no run.json or it is not a run record of this tool.
    """
    from pydantic import ValidationError as PydanticError

    from agent.errors import RunbookError

    # A run directory, or its run.json; a folder that does not exist is named as it was given.
    if path.name != "run.json" or path.is_dir():
        path = path / "run.json"
    try:
        record = RunRecord.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunbookError(f"{path.parent} is not a run directory (no run.json)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunbookError(f"cannot read {path}: {exc}") from None
    except PydanticError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(x) for x in first["loc"])
        raise RunbookError(
            f"{path} is not a run record of runbook {RECORD_FORMAT}: {where}: {first['msg']}"
        ) from None
    if record.ended_at is None:
        # A run that crashed (or still runs): run.json is a snapshot, the journal holds every
        # result made durable since. Show, report and follow-up read what really finished.
        replay_journal(record, path.parent / "journal.jsonl", events=events)
    return record


def read_runs(reports: Path) -> list[tuple[Path, RunRecord]]:
    """Every run record directly under `reports`; unreadable or foreign ones are passed over.

    Args:
        reports: the reports folder (each run is a folder holding run.json).

    Returns:
        (run directory, record) pairs, in folder-name order.
    """
    from agent.errors import RunbookError

    found: list[tuple[Path, RunRecord]] = []
    if not reports.is_dir():
        return found
    for run_json in sorted(reports.glob("*/run.json")):
        try:
            found.append((run_json.parent, load_record(run_json)))
        except RunbookError:  # load_record's one error for what it cannot read
            continue
    return found


def replay_journal(
    record: RunRecord, journal: Path, *, events: list[dict[str, Any]] | None = None
) -> RunRecord:
    """Apply the journal's finished results and baselines onto a run.json snapshot.

    Args:
        record: the snapshot, changed in place.
        journal: the run's journal.jsonl.
        events: its lines, when already read.

    Returns:
        The same record.
    """
    from pydantic import ValidationError as PydanticError

    from agent.errors import RunbookError

    index: dict[tuple[Any, Any], int] = {(s.id, s.partition): i for i, s in enumerate(record.steps)}
    for ev in Journal.read(journal) if events is None else events:
        at = index.get((ev.get("step"), ev.get("partition")))
        if at is None:
            continue
        kind = ev.get("event")
        try:
            if kind == "step_finished":
                record.steps[at] = _journal_result(ev)
            elif kind == "baseline" and record.steps[at].baseline is None:
                record.steps[at].baseline = Baseline.model_validate(ev.get("baseline"))
        except (PydanticError, ValueError) as exc:
            detail = _first_error(exc)
            raise RunbookError(
                f"{journal}: the {kind} line of step {ev.get('step')!r} is damaged ({detail}): "
                "restore it, or delete it and the lines after it to run those steps again"
            ) from None
    return record


def _journal_result(ev: dict[str, Any]) -> StepResult:
    """The result a step_finished line holds, checked to be its own step's."""
    result = StepResult.model_validate(ev.get("result"))
    if result.id != ev.get("step"):
        raise ValueError(f"the result is step {result.id!r}'s")
    return result


def _first_error(exc: Exception) -> str:
    """The first problem of a validation error, on one line."""
    from pydantic import ValidationError as PydanticError

    if isinstance(exc, PydanticError):
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(x) for x in first["loc"])
        return f"{where}: {first['msg']}" if where else str(first["msg"])
    return str(exc)


def _cut_torn_end(path: Path) -> None:
    """Drop the torn last line a crash mid-write left, so the next line starts a line of its own."""
    try:
        with path.open("rb+") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size == 0:
                return
            fh.seek(size - 1)
            if fh.read(1) == b"\n":
                return
            start = max(size - (1 << 20), 0)  # a journal line is far shorter than a MiB
            fh.seek(start)
            tail = fh.read()
            newline = tail.rfind(b"\n")
            fh.truncate(start + newline + 1 if newline >= 0 else 0 if start == 0 else size)
    except FileNotFoundError:
        return


_PAIR_EVENTS = frozenset({"step_started", "step_finished", "spawned", "baseline"})


def _event_problem(ev: object) -> str | None:
    """What makes a parsed journal line something this tool never writes, or None."""
    if not isinstance(ev, dict):
        return f"a JSON {type(ev).__name__} where an event object belongs"
    if not isinstance(ev.get("event"), str):
        return "no event name"
    if ev["event"] in _PAIR_EVENTS:
        if not isinstance(ev.get("step"), str):
            return f"a {ev['event']} event without its step"
        if not isinstance(ev.get("partition"), str | None):
            return "a partition that is not text"
    if ev["event"] == "step_finished" and not isinstance(ev.get("result"), dict):
        return "a step_finished event without its result"
    return None


GROUP_SYNC_SECONDS = 0.05
"""How long a line written with `soon` may wait for the fsync that makes it durable."""


class _GroupSync:
    """fsyncs a file in a thread of its own, at most once per GROUP_SYNC_SECONDS, for every
    line written since the last: many short steps share one fsync instead of one each."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._asked = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()  # step threads (--parallel) may ask at once

    def ask(self) -> None:
        """Make what was written so far durable within GROUP_SYNC_SECONDS and one fsync."""
        with self._starting:
            if self._thread is None and not self._closing.is_set():
                self._thread = threading.Thread(
                    target=self._serve, name="journal-sync", daemon=True
                )
                self._thread.start()
        self._asked.set()

    def _serve(self) -> None:
        while not self._closing.is_set():
            self._asked.wait()
            self._closing.wait(GROUP_SYNC_SECONDS)  # the lines of this window share one fsync
            self._asked.clear()
            with contextlib.suppress(OSError):  # the lines are written; durability is a bonus
                os.fsync(self._fd)

    def close(self) -> None:
        """Stop the thread after its last fsync (the file stays open)."""
        with self._starting:
            self._closing.set()
            thread, self._thread = self._thread, None
        self._asked.set()
        if thread is not None:
            thread.join()


class Journal:
    """Append-only JSON lines, made durable before the caller goes on or, when it says `soon`,
    within GROUP_SYNC_SECONDS (resume reads it back)."""

    def __init__(self, path: Path, *, on_full: Callable[[int], bool] | None = None) -> None:
        """Open (or create) the journal for appending.

        Args:
            path: the journal file; a torn last line (a crash mid-write) is cut off first, so
                the next line starts a line of its own.
            on_full: called with a line's size when the disk is full; True when it made room
                (the run's reserve), and the line is written again.
        """
        self.path = path
        _cut_torn_end(path)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._on_full = on_full
        # Step threads (--parallel) append their step_started and spawned lines on their own.
        self._lock = threading.Lock()
        self._group = _GroupSync(self._fd)

    def append(self, event: str, *, sync: bool = True, soon: bool = False, **fields: Any) -> None:
        """Append one event; with `sync` (the default) make it durable before returning, with
        `soon` within GROUP_SYNC_SECONDS, in the background.

        Either way the line is handed to the OS first, which keeps it through a crash of the
        runner (kill -9); only a crash of the machine can lose a line not yet made durable.

        Raises:
            DiskFullError: no room for the line (none was written).
            RunbookError: the journal cannot be written otherwise.
        """
        line = json.dumps({"event": event, "at": utcnow().isoformat(), **fields}, default=str)
        data = (line + "\n").encode("utf-8")
        with self._lock:
            self._write(data)
            if sync and not soon:
                with contextlib.suppress(OSError):  # the line is written; durability is a bonus
                    os.fsync(self._fd)
        if soon:
            self._group.ask()

    def _write(self, data: bytes) -> None:
        """One line in one write, whole or not at all: a full disk never leaves half a line
        for the next line to be appended to."""
        from agent.errors import DISK_FULL, DiskFullError, RunbookError, disk_full

        while True:
            start = os.fstat(self._fd).st_size
            try:
                written = os.write(self._fd, data)
            except OSError as exc:
                error: OSError = exc
            else:
                if written == len(data):
                    return
                error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
            if not disk_full(error):
                raise RunbookError(
                    f"cannot write the journal {self.path}: {error.strerror or error}"
                ) from None
            if self._on_full is None or not self._on_full(len(data)):
                raise DiskFullError(
                    f"{DISK_FULL}: cannot write the journal {self.path}: {error.strerror}"
                ) from None

    def close(self) -> None:
        """Make every line durable, then close the file (once: the number may belong to
        another file afterwards)."""
        self._group.close()
        fd, self._fd = self._fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.fsync(fd)
            with contextlib.suppress(OSError):
                os.close(fd)

    @staticmethod
    def read(path: Path) -> list[dict[str, Any]]:
        """Read every line; a torn last line (a crash mid-write) is ignored.

        Raises:
            RunbookError: the journal cannot be read, or a line is damaged (not the torn end of
                a crash): what ran cannot be told then, and guessing could run a step twice.
        """
        from agent.errors import RunbookError

        events: list[dict[str, Any]] = []
        if not path.exists():
            return events
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise RunbookError(f"cannot read the journal {path}: {exc.strerror or exc}") from None
        lines = text.split("\n")
        for number, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                ev = json.loads(raw)
            except json.JSONDecodeError:
                if number == len(lines):  # no newline after it: the write a crash cut short
                    continue
                problem: str | None = "not JSON"
            else:
                problem = _event_problem(ev)
            if problem is not None:
                raise RunbookError(
                    f"{path}:{number}: damaged journal line ({problem}): restore it, or delete "
                    "it and the lines after it to run those steps again"
                )
            events.append(ev)
        return events
