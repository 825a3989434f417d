"""What every step kind gets to run with (StepContext) and the registry of kinds."""

from __future__ import annotations

import datetime as dt
import shlex
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.plan import templating
from agent.plan.loader import LoadedRunbook
from agent.proc import preflight
from agent.proc.process import ProcessResult, Strays
from agent.proc.redact import Redactor
from agent.record import Baseline, Status, StepResult, StoppedProcess
from agent.warehouse.base import Warehouse

__all__ = [
    "DEFAULT_TIMEOUT",
    "REGISTRY",
    "Event",
    "StepContext",
    "StepKind",
    "StepReview",
    "display",
    "note_stopped",
    "program_missing",
    "register",
    "review_program",
    "sql_params",
    "step_env",
    "step_timeout",
    "write_evidence",
]

DEFAULT_TIMEOUT = 3600.0
"""Seconds a command or wait step may take when neither it nor the runbook's defaults say."""


@dataclass(frozen=True)
class Event:
    """Something the executor tells its listeners (console, notifications); never printed by it."""

    kind: str  # run_started, step_started, output, retry, poll, step_finished, run_finished, ...
    step_id: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    partition: str | None = None  # the pair's partition in a partitioned run

    @property
    def label(self) -> str:
        """The step the event is about, as logs name it: ``load`` or ``load@2026-01-03``."""
        sid = self.step_id or ""
        return sid if self.partition is None else f"{sid}@{self.partition}"


@dataclass
class StepReview:
    """What `runbook plan` says about one step, without running it."""

    lines: list[str] = field(default_factory=list)  # markdown bullet texts
    command: str | None = None  # the rendered command, quoted as it will run
    missing: list[str] = field(default_factory=list)  # what the run needs and is not there
    alternatives: list[str] = field(default_factory=list)
    warehouse: list[str] = field(default_factory=list)  # current counts, bytes, missing tables
    # In a partitioned run, what the warehouse holds now for each partition: (partition, line).
    by_partition: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class StepContext:
    """Everything a step needs from the run; one per step execution."""

    loaded: LoadedRunbook
    vars: Mapping[str, Any]
    env: Mapping[str, str]  # the process environment for commands (os.environ + runbook env)
    workdir: Path
    run_dir: Path | None
    steps_view: Mapping[str, Any]  # steps.<id> as templates see them
    result: StepResult
    redactor: Redactor
    stop: threading.Event
    emit: Callable[[Event], None]
    open_warehouse: Callable[[], Warehouse]
    run_id: str = ""
    yes: bool = False
    interactive: bool = False
    confirm: Callable[[str], bool | None] | None = None  # None: interrupted at the prompt
    max_log_bytes: int | None = None
    log_suffix: str = ""  # ".baseline" for the measurement before the run
    offline: bool = False
    every_line: bool = False  # a listener shows every output line (--verbose)
    on_spawn: Callable[[int, int | None], None] = lambda pgid, ticks: None
    """Called with the process group of every program the step starts and its leader's start
    time (the run journals both)."""
    strays: Strays | None = None
    """Keeps what the step's programs left running outside their groups, for the run to stop
    at its end (None: stopped when each program ends)."""

    def template_context(self, **extra: Any) -> dict[str, Any]:
        """Names visible to templates: vars, env, steps, run, plus `extra`."""
        return {
            **self.vars,
            "env": dict(self.env),
            "steps": self.steps_view,
            "run": {"id": self.run_id},
            **extra,
        }

    def render(self, source: str, **extra: Any) -> str:
        """Render one of the step's strings."""
        return templating.render(source, self.template_context(**extra))

    def log_path(self) -> Path | None:
        """Where this step's output goes, or None in a dry run."""
        if self.run_dir is None:
            return None
        return self.run_dir / "logs" / f"{self.result.id}{self.log_suffix}.log"


# --- what the kinds that start a program share (run, validate, export, wait) ---------------


def display(argv: list[str], shell: bool) -> str:
    """The command as it is shown: a shell script as written, else the quoted argv."""
    if shell and len(argv) == 3 and argv[:2] == ["/bin/sh", "-c"]:
        return argv[2]
    return shlex.join(argv)


def note_stopped(ctx: StepContext, proc: ProcessResult) -> str:
    """Record the processes that had left the program's group and were stopped with it.

    Args:
        ctx: the step's context (its result gets them, masked).
        proc: the program's result.

    Returns:
        ``"; stopped 2 processes that had left the step's process group"`` for a reason, or
        ``""`` when there were none.
    """
    if not proc.stopped:
        return ""
    when = (
        "timeout"
        if proc.timed_out
        else "interrupt"
        if proc.interrupted
        else "stop"
        if proc.exit_code is None
        else "step_end"
    )
    ctx.result.stopped_processes += [
        StoppedProcess(pid=s.pid, command=ctx.redactor.redact(s.command), when=when)
        for s in proc.stopped
    ]
    n = len(proc.stopped)
    noun = "process" if n == 1 else "processes"
    return f"; stopped {n} {noun} that had left the step's process group"


def step_env(extra: Mapping[str, str], ctx: StepContext) -> dict[str, str]:
    """The program's environment: the run's, plus the step's `env` rendered."""
    return dict(ctx.env) | {k: ctx.render(v) for k, v in extra.items()}


def step_timeout(timeout: float | None, ctx: StepContext) -> float:
    """The step's `timeout`, else the runbook's default, else DEFAULT_TIMEOUT."""
    return timeout or ctx.loaded.runbook.defaults.timeout or DEFAULT_TIMEOUT


def review_program(
    review: StepReview, argv: list[str], *, cwd: Path, env: Mapping[str, str]
) -> None:
    """For `plan`: name the program the command needs when it is not there, and alternatives;
    or the working directory, when that is not there (the run would stop there first)."""
    try:
        state = None if cwd.is_dir() else "is not a directory" if cwd.exists() else "does not exist"
    except OSError as exc:  # a name the OS refuses, such as one too long
        state = f"cannot be used: {exc.strerror}"
    if state is not None:
        review.missing.append(f"the working directory {cwd} {state}")
        return
    found = preflight.lookup(argv, workdir=cwd, env=env)
    if found is not None and not found.found:
        review.missing.append(found.message)
        review.alternatives = list(found.alternatives)


def program_missing(
    ctx: StepContext, argv: list[str], shell: bool, *, cwd: Path, env: Mapping[str, str]
) -> bool:
    """Record the command in the result; when its program is not there the step is NOT_FOUND.

    Returns:
        True when the program is missing (the result then says what, and the alternatives).
    """
    res = ctx.result
    res.command = [ctx.redactor.redact(a) for a in argv]
    res.command_display = ctx.redactor.redact(display(argv, shell))
    found = preflight.lookup(argv, workdir=cwd, env=env)
    if found is None or found.found:
        return False
    res.status = Status.NOT_FOUND
    # The path it names may hold a substituted secret: mask it like the command.
    res.missing = ctx.redactor.redact(found.target)
    res.reason = ctx.redactor.redact(found.message)
    res.alternatives = [ctx.redactor.redact(a) for a in found.alternatives]
    write_evidence(
        ctx,
        [
            f"--- not run: {res.command_display}",
            f"looked up {found.target} from {cwd}: {found.message}",
            *(f"closest: {a}" for a in found.alternatives),
        ],
    )
    return True


def write_evidence(ctx: StepContext, lines: list[str]) -> None:
    """Leave what a step looked at in its log (one log per step), masked; none in a dry run."""
    path = ctx.log_path()
    if path is None or ctx.run_dir is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(ctx.redactor.redact(line) + "\n" for line in lines)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(text)
    ctx.result.log_path = str(path.relative_to(ctx.run_dir))


def sql_params(values: Mapping[str, Any]) -> dict[str, Any]:
    """Vars as query parameters: only typed values a warehouse can bind."""
    return {
        k: v
        for k, v in values.items()
        if isinstance(v, str | int | float | bool | dt.date | list) and v is not None
    }


class StepKind:
    """A kind of step: how it reviews itself for `plan`, runs, measures a baseline and names the
    scripts it runs. The executor and the review call only these; no other module names a kind.
    """

    def review(self, step: Any, ctx: StepContext) -> StepReview:
        """Describe what the step would do; start nothing."""
        raise NotImplementedError

    def run(self, step: Any, ctx: StepContext) -> None:
        """Run the step and fill `ctx.result` (status, reason, captures, counts, ...)."""
        raise NotImplementedError

    def take_baseline(self, step: Any, ctx: StepContext, base: Baseline) -> None:
        """Measure what `baseline: true` compares against, before any step runs.

        A kind with nothing to measure leaves `base` empty.
        """

    def scripts(self, step: Any, names: Mapping[str, Any]) -> list[str]:
        """The script files the step's program names, so that `resume` can see them edited."""
        return []

    def captures(self, step: Any) -> list[str]:
        """What the step captures from its output, as `plan` lists it."""
        return []

    def instructions(self, step: Any, ctx: StepContext) -> str | None:
        """What a person is asked to do, rendered; None for a step no person takes part in."""
        return None

    def times_out(self, step: Any) -> bool:
        """Whether a `timeout` bounds the step (a person at a prompt is not timed)."""
        return True

    # A kind that answers many partitions at once (a verify step's one statement) says so;
    # the executor then hands it every partition of a phase through `run_partitions`.
    batches_partitions: bool = False

    def review_partitions(
        self, step: Any, ctxs: Mapping[str, StepContext], var: str
    ) -> list[tuple[str, str]]:
        """What the warehouse holds now for each partition, as `plan` shows it (asking it
        read-only); a kind with nothing to measure says nothing.

        Args:
            step: the step.
            ctxs: partition -> a context whose vars bind the partition var.
            var: the partition var's name.
        """
        del step, ctxs, var
        return []

    def run_partitions(self, step: Any, ctxs: Sequence[StepContext], var: str | None) -> None:
        """Run the step for several partitions at once, filling each context's result.

        Args:
            step: the step.
            ctxs: one context per partition (its vars bind the partition var).
            var: the partition var's name.
        """
        del var
        for ctx in ctxs:
            self.run(step, ctx)


REGISTRY: dict[str, StepKind] = {}


def register(*kinds: str) -> Callable[[type[Any]], type[Any]]:
    """Class decorator: register a StepKind implementation for `kinds`."""

    def deco(cls: type[Any]) -> type[Any]:
        for k in kinds:
            REGISTRY[k] = cls()
        return cls

    return deco
