"""Runs a loaded runbook: order/DAG, parallelism, baseline, journal, resume, lock; emits events."""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import os
import secrets as pysecrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from agent import __version__
from agent.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    RunbookError,
    UsageError,
)
from agent.plan import templating
from agent.plan.loader import LoadedRunbook, load_runbook
from agent.plan.model import CommandStep, VerifyStep
from agent.plan.vars import resolve_vars
from agent.process import process_start_ticks, stop_leftover_group
from agent.record import (
    Baseline,
    Journal,
    RunRecord,
    RunStatus,
    Session,
    Status,
    StepResult,
    build_models,
    load_record,
    utcnow,
    write_record,
)
from agent.redact import MASK, Redactor
from agent.steps import REGISTRY, Event, StepContext
from agent.steps.verify import measure
from agent.warehouse.base import Warehouse, WarehouseError

__all__ = [
    "RunOptions",
    "exit_code_for",
    "prepare_context",
    "resume_run",
    "run_runbook",
    "secret_values",
]

CRASH_AT_ENV = "RUNBOOK_TEST_CRASH_AT"
"""Fault-injection seam for tests, read by `_fault_injection_point`; never set it in production."""

SNAPSHOT_EVERY = 0.5  # seconds between run.json snapshots during a run
FINISHED = {
    Status.SUCCESS,
    Status.PARTIAL,
    Status.FAILED,
    Status.NOT_FOUND,
    Status.TIMED_OUT,
    Status.SKIPPED,
}


@dataclass
class RunOptions:
    """How to run: everything the command line can say."""

    overrides: Mapping[str, str] = field(default_factory=dict)
    reports_dir: Path = Path("reports")
    parallel: int = 1
    yes: bool = False
    only: Sequence[str] = ()
    start_from: str | None = None
    warehouse_endpoint: str | None = None
    interactive: bool = False
    confirm: Callable[[str], bool | None] | None = None
    max_log_bytes: int | None = None
    listeners: list[Callable[[Event], None]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    write_report: bool = True
    extra_env: Mapping[str, str] = field(default_factory=dict)
    notify_url: str | None = None  # --notify; the runbook's `notify:` is used when this is None
    every_line: bool = False  # --verbose: output events carry every line, not the newest


def exit_code_for(status: RunStatus | None) -> int:
    """The command's exit code for a run's status."""
    return (
        {
            RunStatus.COMPLETE: EXIT_OK,
            RunStatus.PARTIALLY_COMPLETE: EXIT_PARTIAL,
            RunStatus.FAILED: EXIT_FAILED,
            RunStatus.INTERRUPTED: EXIT_INTERRUPTED,
        }.get(status, EXIT_FAILED)
        if status
        else EXIT_FAILED
    )


def secret_values(
    loaded: LoadedRunbook,
    values: Mapping[str, Any],
    env: Mapping[str, str],
    notify_url: str | None = None,
) -> list[str]:
    """What to mask: env vars named in `secrets`, `secret: true` vars, webhook URLs.

    A Slack-style webhook URL is itself a credential: whoever has it can post.
    """
    out = [env[name] for name in loaded.runbook.secrets if env.get(name)]
    out += [u for u in (notify_url, loaded.runbook.notify) if u and "{{" not in u]
    out += [
        str(values[n]) for n, spec in loaded.runbook.vars.items() if spec.secret and values.get(n)
    ]
    return out


def _workdir(loaded: LoadedRunbook, context: Mapping[str, Any]) -> Path:
    return (loaded.base_dir / templating.render(loaded.runbook.workdir, context)).resolve()


def prepare_context(
    loaded: LoadedRunbook, values: Mapping[str, Any], extra_env: Mapping[str, str] | None = None
) -> tuple[dict[str, str], Path]:
    """Render the runbook's env over the process environment; return it and the workdir."""
    env = dict(os.environ) | dict(extra_env or {})
    base = {**values, "env": env, "run": {"id": ""}}
    for k, v in loaded.runbook.env.items():
        env[k] = templating.render(v, {**base, "env": env})
    return env, _workdir(loaded, {**values, "env": env, "run": {"id": ""}})


def open_warehouse_for(loaded: LoadedRunbook, workdir: Path, endpoint: str | None) -> Warehouse:
    """Open the runbook's warehouse (imports the backend only now)."""
    from agent.warehouse import open_warehouse

    w = loaded.runbook.warehouse
    return open_warehouse(
        w.backend,
        workdir=workdir,
        path=w.path,
        project=w.project,
        location=w.location,
        endpoint=endpoint or os.environ.get("RUNBOOK_BIGQUERY_ENDPOINT"),
    )


def _run_id(runbook_id: str) -> str:
    return f"{utcnow().strftime('%Y%m%dT%H%M%SZ')}-{runbook_id}-{pysecrets.token_hex(2)}"


def _hash_file(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _fault_injection_point(event: str, step_id: str) -> None:
    """Fault-injection seam for tests: die as `kill -9` would at a named point of a step's life.

    When the environment says ``RUNBOOK_TEST_CRASH_AT=<event>:<step id>`` and both match, the
    runner SIGKILLs itself: no cleanup, no flush, no record written. The events, in order:
    ``before_start`` (nothing of the step journaled yet), ``started`` (its start journaled,
    nothing run), ``exited`` (its command ended, the result not yet journaled) and ``finished``
    (the result journaled, the next step not started). Tests use it to prove `resume` loses
    nothing wherever the runner dies; unset, it costs one dictionary lookup.
    """
    if os.environ.get(CRASH_AT_ENV) == f"{event}:{step_id}":
        os.kill(os.getpid(), signal.SIGKILL)


class StepsView(Mapping[str, Any]):
    """`steps.<id>` as templates see it, built on access (a step reads a few, not all)."""

    def __init__(self, results: Mapping[str, StepResult]) -> None:
        self._results = results

    def __getitem__(self, sid: str) -> dict[str, Any]:
        r = self._results[sid]
        return {
            "status": r.status.value if r.status else None,
            "captures": dict(r.captures),
            "counts": {k: c.model_dump() for k, c in r.counts.items()},
            "exit_code": r.exit_code,
            "reason": r.reason,
        }

    def __iter__(self) -> Iterator[str]:
        return iter(self._results)

    def __len__(self) -> int:
        return len(self._results)


class Lock:
    """One run of a runbook with the same vars at a time; a dead holder's lock is taken over."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: Any = None

    def acquire(self, info: dict[str, Any]) -> None:
        """Take the lock or raise RunbookError naming its holder."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = self._holder(fh)
            fh.close()
            raise RunbookError(
                f"another run of this runbook with the same vars is in progress: pid "
                f"{holder.get('pid', '?')} on {holder.get('host', '?')}, started "
                f"{holder.get('started_at', '?')} (run {holder.get('run_id', '?')}); "
                f"lock file {self.path}"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(info))
        fh.flush()
        self._fh = fh

    @staticmethod
    def _holder(fh: Any) -> dict[str, Any]:
        """The holder's info; a holder that has just taken the lock may not have written it yet."""
        deadline = time.monotonic() + 1.0
        while True:
            fh.seek(0)
            try:
                holder = json.loads(fh.read() or "{}")
            except json.JSONDecodeError:
                holder = {}
            if (isinstance(holder, dict) and holder.get("pid")) or time.monotonic() >= deadline:
                return holder if isinstance(holder, dict) else {}
            time.sleep(0.02)

    def release(self) -> None:
        """Let go of the lock."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class _Run:
    """One runner session over a run record."""

    def __init__(
        self,
        loaded: LoadedRunbook,
        values: dict[str, Any],
        record: RunRecord,
        run_dir: Path,
        options: RunOptions,
        context: tuple[dict[str, str], Path, Redactor],
    ) -> None:
        self.loaded = loaded
        self.values = values
        self.record = record
        self.run_dir = run_dir
        self.options = options
        # Made once by the caller (run or resume), which needed them first.
        self.env, self.workdir, self.redactor = context
        self.steps = {s.id: s for s in loaded.runbook.steps}
        self.graph = loaded.graph
        self.journal = Journal(run_dir / "journal.jsonl")
        self.lock_mutex = threading.Lock()
        self._results = {r.id: r for r in record.steps}
        self._saved_at = float("-inf")
        self._chosen = self._choose()

    def result(self, sid: str) -> StepResult:
        """The result of step `sid` (an index, not a scan: runs may have a thousand steps)."""
        return self._results[sid]

    # -- events ------------------------------------------------------------------------------
    def emit(self, event: Event) -> None:
        for listener in self.options.listeners:
            try:
                listener(event)
            except Exception:  # noqa: BLE001, S112 - a consumer's error never changes a result
                continue

    # -- templates ---------------------------------------------------------------------------
    def steps_view(self) -> Mapping[str, Any]:
        return StepsView(self._results)

    def context(self, result: StepResult, *, log_suffix: str = "") -> StepContext:
        return StepContext(
            loaded=self.loaded,
            vars=self.values,
            env=self.env,
            workdir=self.workdir,
            run_dir=self.run_dir,
            steps_view=self.steps_view(),
            result=result,
            redactor=self.redactor,
            stop=self.options.stop,
            emit=self.emit,
            open_warehouse=lambda: open_warehouse_for(
                self.loaded, self.workdir, self.options.warehouse_endpoint
            ),
            run_id=self.record.run_id,
            yes=self.options.yes,
            interactive=self.options.interactive,
            confirm=self.options.confirm,
            max_log_bytes=self.options.max_log_bytes,
            log_suffix=log_suffix,
            every_line=self.options.every_line,
            on_spawn=lambda pgid: self._spawned(result.id, pgid),
        )

    def _spawned(self, sid: str, pgid: int) -> None:
        """Journal a program's process group before it gets far: after a crash of this runner,
        resume stops what the group left running."""
        ticks = process_start_ticks(pgid)
        self.journal.append("spawned", sync=False, step=sid, pgid=pgid, ticks=ticks)

    def save(self, *, final: bool = False) -> None:
        """Write the run.json snapshot: at most twice a second during a run, always at the end.

        Rewriting the whole record after every step made a 1,000-step run quadratic; the
        journal already holds each result durably, and resume reads the journal.
        """
        now = time.monotonic()
        if final or now - self._saved_at >= SNAPSHOT_EVERY:
            write_record(self.record, self.run_dir / "run.json", sync=final)
            self._saved_at = now

    # -- baseline ----------------------------------------------------------------------------
    def baseline(self) -> None:
        for sid in self.graph.order:
            step = self.steps[sid]
            result = self.result(sid)
            if not step.baseline or result.baseline is not None or not self._selected(sid):
                continue
            if self.options.stop.is_set():
                return
            self.emit(Event("baseline_started", sid))
            probe = StepResult(id=sid, kind=step.kind, title=result.title)
            ctx = self.context(probe, log_suffix=".baseline")
            base = Baseline(measured_at=utcnow())
            try:
                if isinstance(step, VerifyStep):
                    base.counts = measure(step, ctx)
                elif isinstance(step, CommandStep):
                    REGISTRY[step.kind].run(step, ctx)
                    base.captures = probe.captures
                    base.status = probe.status
                    if probe.status not in (Status.SUCCESS, Status.PARTIAL):
                        base.error = probe.reason
            except (WarehouseError, templating.TemplateError) as exc:
                base.error = str(exc)
            except Exception as exc:  # noqa: BLE001 - a failed measurement must not stop the run
                base.error = f"internal error: {exc!r}"
            result.baseline = base
            self.journal.append("baseline", step=sid, baseline=base.model_dump(mode="json"))
            self.emit(Event("baseline_finished", sid, {"baseline": base}))
        self.save()

    # -- selection -----------------------------------------------------------------------------
    def _selected(self, sid: str) -> bool:
        return sid in self._chosen

    def _choose(self) -> set[str]:
        """The steps --only or --from select (all of them without either), worked out once."""
        sel = self.record.selection
        order = self.graph.order
        if sel.get("only"):
            return set(sel["only"])
        if sel.get("from"):
            return set(order[order.index(sel["from"]) :])
        return set(order)

    # -- one step ------------------------------------------------------------------------------
    def run_step(self, sid: str) -> None:
        step = self.steps[sid]
        result = self.result(sid)
        _fault_injection_point("before_start", sid)
        result.started_at = utcnow()
        result.ended_at = None
        self.journal.append("step_started", step=sid, session=len(self.record.sessions))
        _fault_injection_point("started", sid)
        self.emit(Event("step_started", sid, {"title": result.title, "kind": step.kind}))
        ctx = self.context(result)
        try:
            if step.when and not templating.evaluate(step.when, ctx.template_context()):
                result.status, result.skipped_by = Status.SKIPPED, "when"
                result.reason = f"when `{step.when}` was false"
            else:
                REGISTRY[step.kind].run(step, ctx)
        except (templating.TemplateError, WarehouseError) as exc:
            result.status, result.reason = Status.FAILED, str(exc)
        except Exception as exc:  # noqa: BLE001 - a bug in one step must not lose the run
            result.status, result.reason = Status.FAILED, f"internal error: {exc!r}"
        if result.status is None:
            result.status, result.reason = Status.FAILED, "the step ended without a status"
        if result.status not in (Status.SUCCESS, Status.SKIPPED) and step.on_shortfall:
            result.shortfall = self._shortfall(step, ctx)
        result.ended_at = utcnow()
        _fault_injection_point("exited", sid)
        self.finish_step(result)
        _fault_injection_point("finished", sid)

    def _shortfall(self, step: Any, ctx: StepContext) -> dict[str, Any]:
        sf = step.on_shortfall
        names = ctx.template_context(**ctx.result.captures)

        def r(s: str) -> str:
            try:
                return self.redactor.redact(templating.render(s, names))
            except templating.TemplateError:
                return s

        out: dict[str, Any] = {"priority": sf.priority, "issue": r(sf.issue)}
        if sf.impact:
            out["impact"] = r(sf.impact)
        if sf.action:
            out["action"] = (
                [r(a) for a in sf.action] if isinstance(sf.action, list) else r(sf.action)
            )
        if sf.wait_for:
            out["wait_for"] = r(sf.wait_for)
        return out

    def finish_step(self, result: StepResult) -> None:
        with self.lock_mutex:
            self.journal.append(
                "step_finished", step=result.id, result=result.model_dump(mode="json")
            )
            self.save()
        self.emit(Event("step_finished", result.id, {"result": result}))

    def skip(self, sid: str, status: Status, reason: str, by: str | None) -> None:
        result = self.result(sid)
        result.status, result.reason, result.skipped_by = status, reason, by
        now = utcnow()
        result.started_at = result.started_at or now
        result.ended_at = now
        self.finish_step(result)

    # -- the schedule ------------------------------------------------------------------------
    def _ready(self, sid: str) -> bool:
        return all(self.result(d).status in FINISHED for d in self.graph.after[sid])

    def _gate(self, sid: str) -> bool:
        """Skip a step that is not selected or whose needs did not succeed; else say run it."""
        if not self._selected(sid):
            self.skip(sid, Status.SKIPPED, self._why_unselected(), "selection")
            return False
        step = self.steps[sid]
        # A need whose status the step's own `when` reads is an ordering, not a condition:
        # `needs: [verify]` with `when: steps.verify.status != 'SUCCESS'` is how a runbook
        # says "after verify, and only if it fell short" (GitHub Actions' `if: failure()`).
        judged = templating.step_references(step.when, expression=True) if step.when else set()
        for d in self.graph.needs[sid]:
            st = self.result(d).status
            if d in judged and st in FINISHED:
                continue
            if self._selected(d) and st != Status.SUCCESS:
                self.skip(
                    sid,
                    Status.SKIPPED,
                    f"needs {d}, which ended {st.value if st else 'unfinished'}",
                    "needs",
                )
                return False
        return True

    def execute(self) -> None:
        pending = [s for s in self.graph.order if self.result(s).status not in FINISHED]
        workers = max(1, self.options.parallel)
        if workers == 1:
            # In file order every step's predecessors have finished when its turn comes; running
            # inline keeps the per-step cost to the step itself (no thread hand-offs).
            for sid in pending:
                if self.options.stop.is_set():
                    break
                if self._gate(sid):
                    self.run_step(sid)
        else:
            self._execute_parallel(pending, workers)
        if self.options.stop.is_set():
            for sid in self.graph.order:
                if self.result(sid).status is None:
                    self.skip(
                        sid, Status.ABORTED, "the run was interrupted before it started", None
                    )

    def _execute_parallel(self, pending: list[str], workers: int) -> None:
        build_models()
        running: dict[Future[None], str] = {}
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="step") as pool:
            while (pending or running) and not self.options.stop.is_set():
                ready = [s for s in pending if self._ready(s)] if len(running) < workers else []
                for sid in ready:
                    if len(running) >= workers:
                        break
                    pending.remove(sid)
                    if self._gate(sid):
                        running[pool.submit(self.run_step, sid)] = sid
                if not running:
                    if pending and not any(self._ready(s) for s in pending):
                        break  # cannot happen in a checked DAG; never spin
                    continue
                done, _ = wait(list(running), timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in done:
                    running.pop(fut)
                    fut.result()
            # Interrupted: the running steps stop their process groups through `stop`.
            for fut in list(running):
                fut.result()

    def _why_unselected(self) -> str:
        sel = self.record.selection
        if sel.get("only"):
            return "not selected: --only " + " ".join(sel["only"])
        return f"not selected: before --from {sel.get('from')}"

    # -- the end -----------------------------------------------------------------------------
    def overall(self) -> RunStatus:
        if self.options.stop.is_set() or any(r.status == Status.ABORTED for r in self.record.steps):
            return RunStatus.INTERRUPTED
        considered = [r for r in self.record.steps if r.skipped_by != "selection"]
        fine = [
            r
            for r in considered
            if r.status == Status.SUCCESS or (r.status == Status.SKIPPED and r.skipped_by == "when")
        ]
        if len(fine) == len(considered):
            return RunStatus.COMPLETE
        if not any(r.status == Status.SUCCESS for r in considered):
            return RunStatus.FAILED
        needed = {d for deps in self.graph.needs.values() for d in deps}
        for r in considered:
            if r.id in needed and r.status in (Status.FAILED, Status.TIMED_OUT, Status.NOT_FOUND):
                return RunStatus.FAILED
        return RunStatus.PARTIALLY_COMPLETE

    def finish(self) -> None:
        self.record.status = self.overall()
        self.record.exit_code = exit_code_for(self.record.status)
        self.record.ended_at = utcnow()
        self.record.sessions[-1].ended_at = self.record.ended_at
        self._report_prose()
        self.journal.append("run_finished", status=self.record.status.value)
        self.save(final=True)
        self.journal.close()
        if self.options.write_report:
            from agent.report import write_report

            # Masked again in case prose quoted a secret; written once, atomically.
            write_report(self.record, self.run_dir / "report.md", mask=self.redactor.redact)
        self.emit(Event("run_finished", None, {"record": self.record, "run_dir": self.run_dir}))

    def _report_prose(self) -> None:
        ctx = {
            **self.values,
            "env": self.env,
            "steps": self.steps_view(),
            "run": {"id": self.record.run_id, "status": self.record.status},
        }

        def keep(item: Any) -> bool:
            if not item.when:
                return True
            try:
                return bool(templating.evaluate(item.when, ctx))
            except templating.TemplateError:
                return False

        def r(s: str) -> str:
            try:
                return self.redactor.redact(templating.render(s, ctx))
            except templating.TemplateError:
                return s

        rep = self.loaded.runbook.report
        self.record.lessons = [r(x.text) for x in rep.lessons if keep(x)]
        self.record.next_steps = {
            h: [r(x.text) for x in items if keep(x)] for h, items in rep.next_steps.items()
        }


def _lock_info(run_id: str) -> dict[str, Any]:
    """What a lock file says of its holder (shown when another run finds it taken)."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started_at": utcnow().isoformat(),
        "run_id": run_id,
    }


def _lock_for(loaded: LoadedRunbook, values: Mapping[str, Any], reports_dir: Path) -> Lock:
    # Secret vars stay out of the key: a short secret could be guessed back from the file name.
    public = {
        k: v
        for k, v in values.items()
        if not (k in loaded.runbook.vars and loaded.runbook.vars[k].secret)
    }
    key = hashlib.sha256(
        (str(loaded.path.resolve()) + json.dumps(public, sort_keys=True, default=str)).encode()
    ).hexdigest()[:16]
    return Lock(reports_dir / ".locks" / f"{loaded.runbook.id}-{key}.lock")


def _masked_var(loaded: LoadedRunbook, name: str, value: Any, redactor: Redactor) -> Any:
    """A var as the record shows it: a `secret: true` var is masked whatever its type."""
    spec = loaded.runbook.vars.get(name)
    if spec is not None and spec.secret and value is not None:
        return MASK
    return redactor.redact(value) if isinstance(value, str) else value


def _session(command: str) -> Session:
    return Session(started_at=utcnow(), pid=os.getpid(), host=socket.gethostname(), command=command)


def _script_hashes(loaded: LoadedRunbook, values: dict[str, Any], workdir: Path) -> dict[str, str]:
    """Hashes of the script files the commands name, so `resume` can tell if they changed."""
    out: dict[str, str] = {}
    ctx = {**values, "env": {}, "steps": {}, "run": {"id": ""}}
    for step in loaded.runbook.steps:
        if not isinstance(step, CommandStep):
            continue
        try:
            argv = templating.render_command(step.command, ctx, shell=step.shell)
        except templating.TemplateError:
            continue
        for arg in argv[1:3]:
            p = (workdir / arg) if not Path(arg).is_absolute() else Path(arg)
            if p.suffix in (".py", ".sh", ".bash", ".sql") and p.is_file():
                h = _hash_file(p)
                if h:
                    out[arg] = h
    return out


@contextlib.contextmanager
def _locked(lock: Lock, info: dict[str, Any]) -> Iterator[None]:
    lock.acquire(info)
    try:
        yield
    finally:
        lock.release()


def run_runbook(path: Path, options: RunOptions) -> tuple[RunRecord, Path]:
    """Load, resolve, select, measure the baseline, execute, write the record and the report.

    Args:
        path: the runbook file.
        options: what the command line said.

    Returns:
        The finished record and its run directory.
    """
    loaded = load_runbook(path)
    values = resolve_vars(loaded.runbook, options.overrides)
    ids = set(loaded.graph.order)
    for sid in [*options.only, *([options.start_from] if options.start_from else [])]:
        if sid not in ids:
            raise UsageError(f"unknown step '{sid}' (steps: {', '.join(loaded.graph.order)})")
    env, workdir = prepare_context(loaded, values, options.extra_env)
    context = {**values, "env": env, "run": {"id": ""}}
    _add_notifier(loaded, options, context)
    run_id = _run_id(loaded.runbook.id)
    reports_dir = options.reports_dir.resolve()
    run_dir = reports_dir / run_id
    with _locked(_lock_for(loaded, values, reports_dir), _lock_info(run_id)):
        (run_dir / "logs").mkdir(parents=True, exist_ok=True)
        redactor = Redactor(secret_values(loaded, values, env, options.notify_url))
        rb = loaded.runbook
        record = RunRecord(
            run_id=run_id,
            runbook_id=rb.id,
            runbook_path=str(loaded.path.resolve()),
            runbook_sha256=loaded.sha256,
            title=redactor.redact(templating.render(rb.title, context)),
            summary=redactor.redact(templating.render(rb.summary, context)) if rb.summary else None,
            incident={
                k: redactor.redact(templating.render(v, context))
                for k, v in (rb.incident.model_dump() if rb.incident else {}).items()
                if v
            },
            vars={k: _masked_var(loaded, k, v, redactor) for k, v in values.items()},
            operator=_operator(),
            host=socket.gethostname(),
            tool_version=__version__,
            warehouse={
                "backend": rb.warehouse.backend,
                **(
                    {"path": rb.warehouse.path}
                    if rb.warehouse.backend == "duckdb"
                    else {"project": rb.warehouse.project, "location": rb.warehouse.location}
                ),
            },
            started_at=utcnow(),
            needs={s.id: list(loaded.graph.needs[s.id]) for s in rb.steps},
            after={s.id: list(loaded.graph.after[s.id]) for s in rb.steps},
            # What the command line chose, so that `resume` goes on the same way.
            selection={
                "only": list(options.only),
                "from": options.start_from,
                "parallel": options.parallel,
                "warehouse_endpoint": options.warehouse_endpoint,
                "max_log_bytes": options.max_log_bytes,
            },
            run_dir=str(run_dir),
            sessions=[_session(redactor.redact(" ".join(sys.argv)))],
            file_hashes=_script_hashes(loaded, values, workdir),
        )
        steps = {s.id: s for s in rb.steps}
        for sid in loaded.graph.order:
            step = steps[sid]
            title = step.title or step.id
            with contextlib.suppress(templating.TemplateError):
                title = templating.render(title, context)
            record.steps.append(StepResult(id=sid, kind=step.kind, title=redactor.redact(title)))
        # Vars are kept as given so that `resume` types them again the same way.
        # A secret var is stored as the mask (the run directory never holds a secret): `resume`
        # needs it given again.
        secret_vars = {n for n, spec in rb.vars.items() if spec.secret}
        (run_dir / "vars.json").write_text(
            json.dumps({k: MASK if k in secret_vars else v for k, v in options.overrides.items()}),
            encoding="utf-8",
        )
        run = _Run(loaded, values, record, run_dir, options, (env, workdir, redactor))
        run.journal.append("run_started", run_id=run_id, runbook=str(loaded.path.resolve()))
        run.save()
        run.emit(Event("run_started", None, {"record": record, "run_dir": run_dir}))
        run.baseline()
        run.execute()
        run.finish()
    return record, run_dir


def _add_notifier(loaded: LoadedRunbook, options: RunOptions, context: dict[str, Any]) -> None:
    """Post a summary when the run ends, to --notify or the runbook's `notify:` URL."""
    from agent.notify import Notifier

    url = options.notify_url or (
        templating.render(loaded.runbook.notify, context) if loaded.runbook.notify else None
    )
    if url and not any(isinstance(x, Notifier) for x in options.listeners):
        options.listeners.append(Notifier(url))


def _operator() -> str:
    try:
        return os.environ.get("RUNBOOK_OPERATOR") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def resume_run(
    run_dir: Path, options: RunOptions, *, force: bool = False
) -> tuple[RunRecord, Path]:
    """Continue an interrupted or crashed run: finished steps are kept, not re-run.

    Args:
        run_dir: the run directory (holds run.json and journal.jsonl).
        options: what the command line said (reports dir and overrides are taken from the run).
        force: resume although the runbook or a script changed.

    Returns:
        The finished record and its run directory.
    """
    run_dir = run_dir.resolve()
    if not (run_dir / "run.json").is_file():
        raise UsageError(f"{run_dir} is not a run directory (no run.json)")
    # The journal is the truth: every step_finished was made durable before the next began.
    events = Journal.read(run_dir / "journal.jsonl")
    record = load_record(run_dir, events=events)
    finished: dict[str, dict[str, Any]] = {}
    baselines: dict[str, dict[str, Any]] = {}
    started: set[str] = set()
    spawned: list[tuple[Any, Any, Any]] = []
    for ev in events:
        if ev.get("event") == "step_finished":
            finished[ev["step"]] = ev["result"]
        elif ev.get("event") == "step_started":
            started.add(ev["step"])
        elif ev.get("event") == "baseline":
            baselines[ev["step"]] = ev["baseline"]
        elif ev.get("event") == "spawned":
            spawned.append((ev.get("step"), ev.get("pgid"), ev.get("ticks")))
    if (
        record.status is not None
        and record.status != RunStatus.INTERRUPTED
        and len(finished) == len(record.steps)
    ):
        raise RunbookError(
            f"run {record.run_id} already finished ({record.status.value}); nothing to resume"
        )
    path = Path(record.runbook_path)
    loaded = load_runbook(path)
    overrides = (
        json.loads((run_dir / "vars.json").read_text(encoding="utf-8"))
        if (run_dir / "vars.json").is_file()
        else {}
    )
    secret_vars = {n for n, spec in loaded.runbook.vars.items() if spec.secret}
    overrides.update({k: v for k, v in options.overrides.items() if k in secret_vars})
    unknown = sorted(k for k, v in overrides.items() if k in secret_vars and v == MASK)
    if unknown:
        raise UsageError(
            f"the run was given secret var(s) {', '.join(unknown)}, which are not "
            f"stored in the run directory: give them again with --var to resume"
        )
    values = resolve_vars(loaded.runbook, overrides)
    env, workdir = prepare_context(loaded, values, options.extra_env)
    redactor = Redactor(secret_values(loaded, values, env))
    changes = []
    if loaded.sha256 != record.runbook_sha256:
        changes.append(f"the runbook {path} changed")
    for rel, old in record.file_hashes.items():
        p = Path(rel) if Path(rel).is_absolute() else workdir / rel
        if _hash_file(p) != old:
            changes.append(f"{rel} changed")
    if changes and not force:
        raise RunbookError(
            "refusing to resume: "
            + "; ".join(changes)
            + " since the run began (use --force to resume anyway)"
        )
    results = {r.id: r for r in record.steps}
    for sid, res in finished.items():
        if sid in results:
            results[sid] = StepResult.model_validate(res)
    for sid, base in baselines.items():
        if sid in results and results[sid].baseline is None:
            results[sid].baseline = Baseline.model_validate(base)
    steps = {s.id: s for s in loaded.runbook.steps}
    stop_here: str | None = None
    for sid, r in results.items():
        if sid in finished and r.status in FINISHED:
            continue
        was_running = sid in started
        fresh = StepResult(
            id=sid,
            kind=r.kind,
            title=r.title,
            baseline=r.baseline,
            sessions=r.sessions + (1 if was_running else 0),
        )
        if r.status == Status.ABORTED and sid not in started:
            fresh.sessions = r.sessions
        results[sid] = fresh
        if was_running and steps[sid].resume == "never" and stop_here is None and not force:
            stop_here = sid
    record.steps = [results[r.id] for r in record.steps]
    record.status, record.ended_at, record.exit_code = None, None, None
    if record.sessions and record.sessions[-1].ended_at is None and events:
        # The session before crashed: it ended, as far as anyone can tell, at its last durable
        # journal line; the report then shows both sessions' timings.
        with contextlib.suppress(KeyError, ValueError):
            record.sessions[-1].ended_at = datetime.fromisoformat(events[-1]["at"])
    record.sessions.append(_session(redactor.redact(" ".join(sys.argv))))
    lock = _lock_for(loaded, values, run_dir.parent)
    # The original run's choices (--parallel, --warehouse-endpoint, ...) hold for its resume.
    sel = record.selection
    options.parallel = max(options.parallel, int(sel.get("parallel") or 1))
    options.warehouse_endpoint = options.warehouse_endpoint or sel.get("warehouse_endpoint")
    options.max_log_bytes = options.max_log_bytes or sel.get("max_log_bytes")
    _add_notifier(loaded, options, {**values, "env": env, "run": {"id": record.run_id}})
    with _locked(lock, _lock_info(record.run_id)):
        run = _Run(loaded, values, record, run_dir, options, (env, workdir, redactor))
        run.journal.append("run_resumed", session=len(record.sessions))
        # We hold the lock, so the runner that started these children is dead: stop whatever
        # of their process groups survived it before anything runs again.
        for sid, pgid, ticks in spawned:
            if sid in finished or not isinstance(pgid, int):
                continue
            if stop_leftover_group(pgid, ticks if isinstance(ticks, int) else None, grace=2.0):
                run.journal.append("leftover_stopped", step=sid, pgid=pgid)
        run.emit(
            Event("run_started", None, {"record": record, "run_dir": run_dir, "resumed": True})
        )
        if stop_here is not None:
            # Nothing runs: the run stays interrupted (exit 130) and resumable once a person
            # has looked; `resume --force` then runs the step again.
            reason = (
                "was running when the run stopped, and it says `resume: never`: check what it "
                f"did, then `runbook resume --force {run_dir}` runs it again"
            )
            run.skip(stop_here, Status.ABORTED, reason, None)
            for sid in run.graph.order:
                if run.result(sid).status is None:
                    run.skip(
                        sid, Status.ABORTED, f"not run: {stop_here} must be checked first", None
                    )
        else:
            run.baseline()
            run.execute()
        run.finish()
    return record, run_dir
