"""Runs a plan: baseline, schedule (in order or as a DAG), steps, journal; emits events."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import secrets as pysecrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from agent import __version__
from agent.errors import UsageError
from agent.plan import templating
from agent.plan.model import ShortfallByCause
from agent.proc.process import process_start_ticks
from agent.proc.redact import MASK, Redactor
from agent.record import (
    Advice,
    Baseline,
    Journal,
    RunRecord,
    RunStatus,
    Session,
    Status,
    StepResult,
    build_models,
    utcnow,
    write_record,
)
from agent.run.context import RunContext, StepsView
from agent.run.lock import lock_for, locked
from agent.run.options import RunOptions, exit_code_for
from agent.steps import REGISTRY, Event, StepContext
from agent.warehouse.base import WarehouseError

__all__ = ["CRASH_AT_ENV", "FINISHED", "Runner", "new_session", "start_run"]

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


def _run_id(runbook_id: str) -> str:
    return f"{utcnow().strftime('%Y%m%dT%H%M%SZ')}-{runbook_id}-{pysecrets.token_hex(2)}"


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


class Runner:
    """One runner session over a run record: baseline, schedule, steps, the end."""

    def __init__(
        self,
        context: RunContext,
        record: RunRecord,
        run_dir: Path,
        options: RunOptions,
    ) -> None:
        # Made once by the caller (run or resume), which needed it first.
        self.run_context = context
        loaded = context.loaded
        self.loaded = loaded
        self.values = context.values
        self.env, self.workdir, self.redactor = context.env, context.workdir, context.redactor
        self.record = record
        self.run_dir = run_dir
        self.options = options
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
            open_warehouse=lambda: self.run_context.open_warehouse(self.options.warehouse_endpoint),
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
                REGISTRY[step.kind].take_baseline(step, ctx, base)
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
        ctx = self.context(result)
        started: dict[str, Any] = {"title": result.title, "kind": step.kind}
        with contextlib.suppress(templating.TemplateError):  # the step's own run reports it
            started["instructions"] = REGISTRY[step.kind].instructions(step, ctx)
        self.emit(Event("step_started", sid, started))
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
        result.shortfall = self._shortfall(step, ctx)
        result.ended_at = utcnow()
        _fault_injection_point("exited", sid)
        self.finish_step(result)
        _fault_injection_point("finished", sid)

    def _shortfall(self, step: Any, ctx: StepContext) -> dict[str, Any] | None:
        """The step's `on_shortfall` for its result, rendered over its evidence; None if none.

        One Shortfall is given for every status but SUCCESS and SKIPPED, as written. A mapping
        gives the entry of the result's cause, else of its status, else `default` (see
        `ShortfallByCause.pick`), with the key that matched added as "cause".
        """
        res = ctx.result
        fine = res.status == Status.SUCCESS or (
            res.status == Status.SKIPPED and res.skipped_by not in ("needs", "manual")
        )
        if step.on_shortfall is None or res.status is None or fine:
            return None
        picked: str | None = None
        if isinstance(step.on_shortfall, ShortfallByCause):
            chosen = step.on_shortfall.pick(res.cause, res.status.value)
            if chosen is None:
                return None
            picked, sf = chosen
        elif res.status == Status.SKIPPED:
            return None
        else:
            sf = step.on_shortfall
        # The step's own captures win over the names the shortfall adds, as over vars.
        evidence = {"missing": res.missing_values(), "cause": res.cause, **res.captures}
        names = ctx.template_context(**evidence)

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
        if picked is not None:
            out["cause"] = picked
        return out

    def finish_step(self, result: StepResult) -> None:
        _mask_result(result, self.redactor)
        with self.lock_mutex:
            self.journal.append(
                "step_finished", step=result.id, result=result.model_dump(mode="json")
            )
            self.save()
        self.emit(Event("step_finished", result.id, {"result": result}))

    def skip(self, sid: str, status: Status, reason: str, by: str | None) -> None:
        result = self.result(sid)
        result.status, result.reason, result.skipped_by = status, reason, by
        if by == "needs":  # a shortfall keyed by `needs` or SKIPPED says what it leaves undone
            result.shortfall = self._shortfall(self.steps[sid], self.context(result))
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
        for finisher in self.options.finishers:
            finisher(self.record, self.run_dir, self.redactor)
        self.emit(Event("run_finished", None, {"record": self.record, "run_dir": self.run_dir}))

    def _report_prose(self) -> None:
        ctx = self.run_context.names(
            steps=self.steps_view(), run={"id": self.record.run_id, "status": self.record.status}
        )

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
        self.record.lessons = [
            Advice(text=r(x.text), standing=x.when is None) for x in rep.lessons if keep(x)
        ]
        self.record.next_steps = {
            h: [Advice(text=r(x.text), standing=x.when is None) for x in items if keep(x)]
            for h, items in rep.next_steps.items()
        }


def _masked(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_masked(v, redact) for v in value]
    if isinstance(value, dict):
        return {k: _masked(v, redact) for k, v in value.items()}
    return value


def _mask_result(result: StepResult, redactor: Redactor) -> None:
    """Mask every text of a finished result, whichever part of the step wrote it.

    Error messages carry rendered values (a workdir, a ratio) that no step masked; this is
    the one place every result passes before the journal, the record and the outputs.
    """
    if not redactor.active:
        return
    masked = StepResult.model_validate(_masked(result.model_dump(), redactor.redact))
    for name in StepResult.model_fields:
        setattr(result, name, getattr(masked, name))


def new_session(redact: Callable[[str], str]) -> Session:
    """This runner process, as the record lists it."""
    return Session(
        started_at=utcnow(),
        pid=os.getpid(),
        host=socket.gethostname(),
        command=redact(" ".join(sys.argv)),
    )


def _operator() -> str:
    try:
        return os.environ.get("RUNBOOK_OPERATOR") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def start_run(context: RunContext, options: RunOptions) -> tuple[RunRecord, Path]:
    """Select, measure the baseline, execute and write the record of a new run.

    Args:
        context: the run context (the loaded runbook, its vars, env and masks).
        options: what the command line said.

    Returns:
        The finished record and its run directory.
    """
    loaded, values, redactor = context.loaded, context.values, context.redactor
    ids = set(loaded.graph.order)
    for sid in [*options.only, *([options.start_from] if options.start_from else [])]:
        if sid not in ids:
            raise UsageError(f"unknown step '{sid}' (steps: {', '.join(loaded.graph.order)})")
    run_id = _run_id(loaded.runbook.id)
    reports_dir = options.reports_dir.resolve()
    run_dir = reports_dir / run_id
    with locked(lock_for(loaded, values, reports_dir), run_id):
        (run_dir / "logs").mkdir(parents=True, exist_ok=True)
        rb = loaded.runbook
        record = RunRecord(
            run_id=run_id,
            runbook_id=rb.id,
            runbook_path=str(loaded.path.resolve()),
            runbook_sha256=loaded.sha256,
            title=context.render(rb.title),
            summary=context.render(rb.summary) if rb.summary else None,
            incident={
                k: context.render(v)
                for k, v in (rb.incident.model_dump() if rb.incident else {}).items()
                if v
            },
            vars={k: context.masked_var(k, v) for k, v in values.items()},
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
            sessions=[new_session(redactor.redact)],
            file_hashes=context.script_hashes(),
        )
        steps = {s.id: s for s in rb.steps}
        for sid in loaded.graph.order:
            step = steps[sid]
            title = step.title or step.id
            with contextlib.suppress(templating.TemplateError):
                title = templating.render(title, context.names())
            record.steps.append(StepResult(id=sid, kind=step.kind, title=redactor.redact(title)))
        # Vars are kept as given so that `resume` types them again the same way.
        # A secret var is stored as the mask (the run directory never holds a secret): `resume`
        # needs it given again.
        secret_vars = {n for n, spec in rb.vars.items() if spec.secret}
        (run_dir / "vars.json").write_text(
            json.dumps({k: MASK if k in secret_vars else v for k, v in options.overrides.items()}),
            encoding="utf-8",
        )
        run = Runner(context, record, run_dir, options)
        run.journal.append("run_started", run_id=run_id, runbook=str(loaded.path.resolve()))
        run.save()
        run.emit(Event("run_started", None, {"record": record, "run_dir": run_dir}))
        run.baseline()
        run.execute()
        run.finish()
    return record, run_dir
