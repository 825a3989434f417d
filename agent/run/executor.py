"""Runs a plan: baseline, schedule (in order or as a DAG), steps, journal; emits events."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import getpass
import json
import os
import secrets as pysecrets
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from functools import partial
from pathlib import Path
from typing import Any

from agent import __version__
from agent.errors import DISK_FULL, DiskFullError, RunbookError, UsageError, disk_full
from agent.plan import templating
from agent.plan.model import ShortfallByCause, Step
from agent.plan.partitions import partition_value, resolve_partitions, select_partitions
from agent.proc.process import Strays, strays_running
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
    StoppedProcess,
    build_models,
    utcnow,
    write_record,
)
from agent.run.context import RunContext, StepsView
from agent.run.lock import lock_for, locked
from agent.run.options import RunOptions, exit_code_for
from agent.run.reserve import Reserve, reserve_size
from agent.steps import REGISTRY, Event, StepContext
from agent.steps.base import sql_params
from agent.warehouse.base import WarehouseError

__all__ = ["CRASH_AT_ENV", "FINISHED", "Runner", "fresh_result", "new_session", "start_run"]

CRASH_AT_ENV = "RUNBOOK_TEST_CRASH_AT"
"""Fault-injection seam for tests, read by `_fault_injection_point`; never set it in production."""

SNAPSHOT_EVERY = 0.5  # seconds between run.json snapshots during a run, at the least
# ...and at least this many times what the last snapshot took: a snapshot writes the whole record,
# so at a fixed rate a 10,000-step run spent more of each step on it than a 1,000-step run.
SNAPSHOT_SPACING = 50
_SHORT_TAIL, _SHORT_LINE = 5, 500  # a step's tail in a run.json written on a full disk
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


def _fault_injection_point(event: str, step_id: str, partition: str | None = None) -> None:
    """Fault-injection seam for tests: die as `kill -9` would at a named point of a step's life.

    When the environment says ``RUNBOOK_TEST_CRASH_AT=<event>:<step id>`` and both match, the
    runner SIGKILLs itself: no cleanup, no flush, no record written. The events, in order:
    ``before_start`` (nothing of the step journaled yet), ``started`` (its start journaled,
    nothing run), ``exited`` (its command ended, the result not yet journaled) and ``finished``
    (the result journaled, the next step not started). Tests use it to prove `resume` loses
    nothing wherever the runner dies; unset, it costs one dictionary lookup.
    """
    at = os.environ.get(CRASH_AT_ENV)
    if at is None:
        return
    # In a partitioned run `<event>:<step id>@<partition>` names one pair; without the
    # partition it matches the step's first pair to get there.
    if at == f"{event}:{step_id}" or (
        partition is not None and at == f"{event}:{step_id}@{partition}"
    ):
        os.kill(os.getpid(), signal.SIGKILL)


Pair = tuple[str, str | None]
"""One unit of work: a step id and its partition (None without partitions)."""


def _started_must_last(step: Step) -> bool:
    """Whether a step's start must reach the disk before it runs, not with its end's fsync.

    A runner killed mid-step leaves its written lines in the page cache, where resume reads
    them; only a machine crash loses an unsynced line, and resume then re-runs the step as if
    it had never started, which is what it does with a started one too, unless the step says
    `resume: never`: for that one the start is made durable first (an fsync costs 0.3 ms).
    """
    return step.resume == "never"


def _at(partition: str | None) -> dict[str, Any]:
    """The journal fields that name a pair's partition (none without partitions)."""
    return {} if partition is None else {"partition": partition}


class Runner:
    """One runner session over a run record: baseline, schedule, steps, the end."""

    def __init__(
        self,
        context: RunContext,
        record: RunRecord,
        run_dir: Path,
        options: RunOptions,
        reserve: Reserve | None = None,
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
        # Room set aside for the final record: a piece of it for a journal line that finds
        # the disk full, the rest given back just before run.json and the report are written.
        self.reserve = reserve
        self.journal = Journal(
            run_dir / "journal.jsonl", on_full=reserve.give if reserve is not None else None
        )
        self.disk_full: str | None = None  # why the run stopped: no room left for it
        self._halt_lock = threading.Lock()
        self.lock_mutex = threading.Lock()
        self._results: dict[Pair, StepResult] = {(r.id, r.partition): r for r in record.steps}
        # The partitions in order ([None] without partitions) and each one's steps.<id> view.
        self.partitions: list[str | None] = (
            list(record.partitions) if record.partition_var is not None else [None]
        )
        self._views: dict[str | None, dict[str, StepResult]] = {p: {} for p in self.partitions}
        for r in record.steps:
            self._views.setdefault(r.partition, {})[r.id] = r
        self._saved_at = float("-inf")
        self._save_gap = SNAPSHOT_EVERY
        self._chosen = self._choose()
        # What each pair's programs left running outside their groups: stopped at the end.
        self._strays: dict[Pair, Strays] = {}

    def result(self, sid: str, partition: str | None = None) -> StepResult:
        """The result of step `sid` for `partition` (an index, not a scan: runs may have a
        thousand steps)."""
        return self._results[(sid, partition)]

    def pairs(self) -> list[Pair]:
        """Every (step, partition) pair, step by step in the graph's order."""
        return [(sid, p) for sid in self.graph.order for p in self.partitions]

    def partition_vars(self, partition: str | None) -> Mapping[str, Any]:
        """The vars a pair sees: the run's, and the partition var bound to its partition."""
        var = self.record.partition_var
        if partition is None or var is None:
            return self.values
        from agent.plan.partitions import partition_value

        return {**self.values, var: partition_value(partition)}

    # -- events ------------------------------------------------------------------------------
    def append_event(
        self, event: str, *, sync: bool = True, soon: bool = False, **fields: Any
    ) -> None:
        """Journal an event; a full disk stops the run (no step starts after it) instead of
        losing it: run.json and the report still get the room set aside for them."""
        try:
            self.journal.append(event, sync=sync, soon=soon, **fields)
        except DiskFullError as exc:
            self.halt(str(exc))

    def halt(self, reason: str) -> None:
        """Start no more steps: the disk is full (the first reason is kept)."""
        with self._halt_lock:  # not lock_mutex: a journal line written under it may halt
            if self.disk_full is None:
                self.disk_full = reason

    def stopping(self) -> bool:
        """Whether no more steps start: interrupted, or the disk is full."""
        return self.options.stop.is_set() or self.disk_full is not None

    def emit(self, event: Event) -> None:
        for listener in self.options.listeners:
            try:
                listener(event)
            except Exception:  # noqa: BLE001, S112 - a consumer's error never changes a result
                continue

    def _emit_for(self, partition: str | None, event: Event) -> None:
        """A step's event, told with the partition of the pair it is about."""
        self.emit(dataclasses.replace(event, partition=partition))

    # -- templates ---------------------------------------------------------------------------
    def steps_view(self, partition: str | None = None) -> Mapping[str, Any]:
        return StepsView(self._views.get(partition, {}))

    def context(self, result: StepResult, *, log_suffix: str = "") -> StepContext:
        part = result.partition
        if part is not None:  # one log per pair: logs/<step>@<partition>.log
            log_suffix = f"@{part}{log_suffix}"
        return StepContext(
            loaded=self.loaded,
            vars=self.partition_vars(part),
            env=self.env,
            workdir=self.workdir,
            run_dir=self.run_dir,
            steps_view=self.steps_view(part),
            result=result,
            redactor=self.redactor,
            stop=self.options.stop,
            emit=functools.partial(self._emit_for, result.partition),
            open_warehouse=lambda: self.run_context.open_warehouse(self.options.warehouse_endpoint),
            run_id=self.record.run_id,
            yes=self.options.yes,
            interactive=self.options.interactive,
            confirm=self.options.confirm,
            max_log_bytes=self.options.max_log_bytes,
            log_suffix=log_suffix,
            every_line=self.options.every_line,
            on_spawn=lambda pgid, ticks: self._spawned(result.id, pgid, ticks, part),
            strays=self._strays.setdefault((result.id, part), Strays()),
        )

    def _spawned(
        self, sid: str, pgid: int, ticks: int | None, partition: str | None = None
    ) -> None:
        """Journal a program's process group (and its leader's start time, read once when it was
        spawned) before it gets far: after a crash of this runner, resume stops what the group
        left running."""
        self.append_event("spawned", sync=False, step=sid, pgid=pgid, ticks=ticks, **_at(partition))

    def save(self, *, final: bool = False) -> None:
        """Write the run.json snapshot: at most twice a second during a run, always at the end.

        Rewriting the whole record after every step made a 1,000-step run quadratic; the
        journal already holds each result durably, and resume reads the journal. Snapshots are
        also spaced by their own cost, so they take at most 2% of a run however long it grows.
        """
        now = time.monotonic()
        if final or now - self._saved_at >= self._save_gap:
            try:
                write_record(self.record, self.run_dir / "run.json", sync=final)
            except OSError as exc:
                # A snapshot is a convenience (the journal is what resume trusts): a full disk
                # skips it; the final record gets the room set aside.
                if final or not disk_full(exc):
                    raise
            self._saved_at = now
            self._save_gap = max(SNAPSHOT_EVERY, (time.monotonic() - now) * SNAPSHOT_SPACING)

    # -- baseline ----------------------------------------------------------------------------
    def baseline(self) -> None:
        for sid, part in self.pairs():
            step = self.steps[sid]
            result = self.result(sid, part)
            if not step.baseline or result.baseline is not None or not self._selected(sid):
                continue
            if self.stopping():
                return
            self.emit(Event("baseline_started", sid, partition=part))
            probe = StepResult(id=sid, kind=step.kind, title=result.title, partition=part)
            ctx = self.context(probe, log_suffix=".baseline")
            base = Baseline(measured_at=utcnow())
            try:
                REGISTRY[step.kind].take_baseline(step, ctx, base)
            except (WarehouseError, templating.TemplateError) as exc:
                base.error = str(exc)
            except Exception as exc:  # noqa: BLE001 - a failed measurement must not stop the run
                base.error = f"internal error: {exc!r}"
            result.baseline = base
            self.append_event(
                "baseline", step=sid, baseline=base.model_dump(mode="json"), **_at(part)
            )
            self.emit(Event("baseline_finished", sid, {"baseline": base}, partition=part))
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
    def run_step(self, sid: str, part: str | None = None) -> None:
        step = self.steps[sid]
        result = self.result(sid, part)
        _fault_injection_point("before_start", sid, part)
        result.started_at = utcnow()
        result.ended_at = None
        self.append_event(
            "step_started",
            sync=_started_must_last(step),
            step=sid,
            session=len(self.record.sessions),
            **_at(part),
        )
        _fault_injection_point("started", sid, part)
        ctx = self.context(result)
        started: dict[str, Any] = {"title": result.title, "kind": step.kind}
        with contextlib.suppress(templating.TemplateError):  # the step's own run reports it
            started["instructions"] = REGISTRY[step.kind].instructions(step, ctx)
        self.emit(Event("step_started", sid, started, partition=part))
        try:
            if step.when and not templating.evaluate(step.when, ctx.template_context()):
                result.status, result.skipped_by = Status.SKIPPED, "when"
                result.reason = f"when `{step.when}` was false"
            else:
                REGISTRY[step.kind].run(step, ctx)
        except (templating.TemplateError, WarehouseError) as exc:
            result.status, result.reason = Status.FAILED, str(exc)
        except OSError as exc:
            # Evidence a step writes itself (a poll's line, a query's rows) on a full disk.
            result.status = Status.FAILED
            result.reason = (
                f"{DISK_FULL}: {exc.strerror}: {exc.filename}"
                if disk_full(exc)
                else f"internal error: {exc!r}"
            )
        except Exception as exc:  # noqa: BLE001 - a bug in one step must not lose the run
            result.status, result.reason = Status.FAILED, f"internal error: {exc!r}"
        if result.status is None:
            result.status, result.reason = Status.FAILED, "the step ended without a status"
        result.shortfall = self._shortfall(step, ctx)
        result.ended_at = utcnow()
        _fault_injection_point("exited", sid, part)
        self.finish_step(result)
        _fault_injection_point("finished", sid, part)

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
        if result.status == Status.FAILED and (result.reason or "").startswith(DISK_FULL):
            self.halt(result.reason or DISK_FULL)
        with self.lock_mutex:
            # Durable within GROUP_SYNC_SECONDS, not before the next step starts (an fsync was a
            # fifth of a short step's cost): a kill -9 of the runner loses nothing written; a
            # crash of the machine in that window at worst runs the step again on resume, as
            # for a step that never finished (a `resume: never` step's start is fsynced first).
            self.append_event(
                "step_finished",
                soon=True,
                step=result.id,
                result=result.model_dump(mode="json"),
                **_at(result.partition),
            )
            self.save()
        self.emit(Event("step_finished", result.id, {"result": result}, result.partition))

    def skip(
        self, sid: str, status: Status, reason: str, by: str | None, part: str | None = None
    ) -> None:
        result = self.result(sid, part)
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

    def _gate(self, sid: str, part: str | None = None) -> bool:
        """Skip a step that is not selected or whose needs did not succeed (in the same
        partition); else say run it."""
        if not self._selected(sid):
            self.skip(sid, Status.SKIPPED, self._why_unselected(), "selection", part)
            return False
        step = self.steps[sid]
        # A need whose status the step's own `when` reads is an ordering, not a condition:
        # `needs: [verify]` with `when: steps.verify.status != 'SUCCESS'` is how a runbook
        # says "after verify, and only if it fell short" (GitHub Actions' `if: failure()`).
        judged = templating.step_references(step.when, expression=True) if step.when else set()
        for d in self.graph.needs[sid]:
            st = self.result(d, part).status
            if d in judged and st in FINISHED:
                continue
            if self._selected(d) and st != Status.SUCCESS:
                self.skip(
                    sid,
                    Status.SKIPPED,
                    f"needs {d}, which ended {st.value if st else 'unfinished'}",
                    "needs",
                    part,
                )
                return False
        return True

    def execute(self) -> None:
        try:
            if self.record.partition_var is not None:
                self._execute_partitions()
            else:
                self._execute_steps()
        except DiskFullError as exc:  # a step thread's journal line, re-raised by its future
            self.halt(str(exc))
        if self.stopping():
            why = (
                "the run was interrupted before it started"
                if self.disk_full is None
                else f"not run: {self.disk_full}"
            )
            for sid, part in self.pairs():
                result = self.result(sid, part)
                if result.status is not None:
                    continue
                if self.disk_full is None:
                    self.skip(sid, Status.ABORTED, why, None, part)
                    continue
                # Not journaled: they never started, and a resume, once there is room again,
                # runs them (the journal, which resume trusts, says they are still to do).
                result.status, result.reason = Status.ABORTED, self.redactor.redact(why)
                result.ended_at = utcnow()
                self.emit(Event("step_finished", sid, {"result": result}, part))

    def _execute_steps(self) -> None:
        pending = [s for s in self.graph.order if self.result(s).status not in FINISHED]
        workers = max(1, self.options.parallel)
        if workers == 1:
            # In file order every step's predecessors have finished when its turn comes; running
            # inline keeps the per-step cost to the step itself (no thread hand-offs).
            for sid in pending:
                if self.stopping():
                    break
                if self._gate(sid):
                    self.run_step(sid)
        else:
            self._execute_parallel(pending, workers)

    # -- partitions ------------------------------------------------------------------------------
    def _run_pair(self, sid: str, part: str | None) -> None:
        if self.stopping() or self.result(sid, part).status in FINISHED:
            return
        if self._gate(sid, part):
            self.run_step(sid, part)

    def _run_partition(self, part: str | None) -> None:
        """`order: partition`: one partition's steps in the graph's order."""
        for sid in self.graph.order:
            self._run_pair(sid, part)

    def _execute_partitions(self) -> None:
        """Run every unfinished (step, partition) pair, phase by phase or partition by
        partition, with up to `partitions.parallel` partitions in flight.

        Finished pairs (a resume) are passed over; nothing held grows beyond the pairs.
        """
        spec = self.loaded.runbook.partitions
        order = spec.order if spec is not None else "phase"
        workers = self._partition_workers()
        if workers > 1:
            build_models()
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="partition")
        with pool:
            if order == "partition":
                self._drain(pool, [partial(self._run_partition, p) for p in self.partitions])
                return
            for sid in self.graph.order:
                if self.stopping():
                    return
                todo = [p for p in self.partitions if self.result(sid, p).status not in FINISHED]
                if not todo:
                    continue
                kind = REGISTRY[self.steps[sid].kind]
                if getattr(kind, "batches_partitions", False) and self._selected(sid):
                    self._run_batch(sid, todo)
                    continue
                self._drain(pool, [partial(self._run_pair, sid, p) for p in todo])

    def _partition_workers(self) -> int:
        return max(1, int(self.record.selection.get("partition_parallel") or 1))

    def _drain(self, pool: ThreadPoolExecutor, jobs: list[Callable[[], None]]) -> None:
        """Run `jobs` on the pool (at most its workers at once); inline for one worker."""
        if self._partition_workers() == 1:  # one at a time: no thread hand-offs
            for job in jobs:
                if self.stopping():
                    return
                job()
            return
        futures = [pool.submit(job) for job in jobs]
        for fut in futures:
            fut.result()

    def _run_batch(self, sid: str, todo: list[str | None]) -> None:
        """One step for many partitions at once (a verify step's one statement)."""
        step = self.steps[sid]
        runnable: list[StepContext] = []
        for part in todo:
            if not self._gate(sid, part):
                continue
            result = self.result(sid, part)
            result.started_at, result.ended_at = utcnow(), None
            self.append_event(
                "step_started",
                sync=_started_must_last(step),
                step=sid,
                session=len(self.record.sessions),
                **_at(part),
            )
            ctx = self.context(result)
            try:
                if step.when and not templating.evaluate(step.when, ctx.template_context()):
                    result.status, result.skipped_by = Status.SKIPPED, "when"
                    result.reason = f"when `{step.when}` was false"
                    self._end_pair(step, ctx)
                    continue
            except templating.TemplateError as exc:
                result.status, result.reason = Status.FAILED, str(exc)
                self._end_pair(step, ctx)
                continue
            self.emit(Event("step_started", sid, {"title": result.title, "kind": step.kind}, part))
            runnable.append(ctx)
        if not runnable:
            return
        try:
            REGISTRY[step.kind].run_partitions(step, runnable, self.record.partition_var)
        except Exception as exc:  # noqa: BLE001 - a bug in one step must not lose the run
            for ctx in runnable:
                if ctx.result.status is None:
                    ctx.result.status = Status.FAILED
                    ctx.result.reason = f"internal error: {exc!r}"
        for ctx in runnable:
            self._end_pair(step, ctx)

    def _end_pair(self, step: Any, ctx: StepContext) -> None:
        result = ctx.result
        if result.status is None:
            result.status, result.reason = Status.FAILED, "the step ended without a status"
        result.shortfall = self._shortfall(step, ctx)
        result.ended_at = utcnow()
        self.finish_step(result)
        _fault_injection_point("finished", result.id, result.partition)

    def _execute_parallel(self, pending: list[str], workers: int) -> None:
        build_models()
        running: dict[Future[None], str] = {}
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="step") as pool:
            while (pending or running) and not self.stopping():
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
        if self.disk_full is not None:
            return RunStatus.FAILED
        if self.options.stop.is_set() or any(r.status == Status.ABORTED for r in self.record.steps):
            return RunStatus.INTERRUPTED
        considered = [r for r in _worst_per_step(self.record.steps) if r.skipped_by != "selection"]
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

    def stop_strays(self) -> None:
        """Stop what the steps left running outside their process groups (a helper later
        steps used), each named in its step's result, which is journaled again."""
        if not strays_running(self._strays.values()):
            return
        for (sid, part), strays in list(self._strays.items()):
            stopped = strays.stop()
            if not stopped:
                continue
            result = self.result(sid, part)
            result.stopped_processes += [
                StoppedProcess(pid=s.pid, command=self.redactor.redact(s.command), when="run_end")
                for s in stopped
            ]
            with self.lock_mutex:
                self.append_event(
                    "step_finished", step=sid, result=result.model_dump(mode="json"), **_at(part)
                )

    def finish(self) -> None:
        """Stop what is left, decide the run's status, write the record and the outputs.

        Raises:
            DiskFullError: the disk is full even with the room set aside: run.json (or the
                report) could not be written; the message says which and what is kept.
        """
        self.stop_strays()
        self.record.status = self.overall()
        self.record.reason = self.disk_full
        self.record.exit_code = exit_code_for(self.record.status)
        self.record.ended_at = utcnow()
        self.record.sessions[-1].ended_at = self.record.ended_at
        self._report_prose()
        self.append_event("run_finished", status=self.record.status.value)
        self.journal.close()
        if self.reserve is not None:
            self.reserve.release()  # its room is for what follows
        self._save_final()
        for finisher in self.options.finishers:
            try:
                finisher(self.record, self.run_dir, self.redactor)
            except OSError as exc:
                if not disk_full(exc):
                    raise
                name = str(exc.filename or "").removesuffix(".tmp")
                raise DiskFullError(
                    f"{DISK_FULL}: the run's record is written ({self.run_dir / 'run.json'}), "
                    f"its outputs are not: cannot write {name}: {exc.strerror}"
                ) from None
        self.emit(Event("run_finished", None, {"record": self.record, "run_dir": self.run_dir}))

    def _save_final(self) -> None:
        """The final run.json; on a disk too full even for it, once more with the output
        tails cut short (the logs keep the output), then a clear error."""
        try:
            self.save(final=True)
        except OSError as exc:
            if not disk_full(exc):
                raise
        else:
            return
        for r in self.record.steps:
            r.output_tail = [line[-_SHORT_LINE:] for line in r.output_tail[-_SHORT_TAIL:]]
        try:
            self.save(final=True)
        except OSError as exc:
            if not disk_full(exc):
                raise
            raise DiskFullError(
                f"{DISK_FULL}: cannot write {self.run_dir / 'run.json'}: {exc.strerror}; "
                f"the journal {self.journal.path} holds what finished"
            ) from None

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


def _rank(r: StepResult) -> int:
    """How bad a result is, for the worst of a step's partitions (higher is worse)."""
    if r.status == Status.SKIPPED:
        return {"selection": 0, "when": 1}.get(r.skipped_by or "", 3)
    order = [Status.SUCCESS, None, None, Status.PARTIAL, Status.NOT_FOUND, Status.TIMED_OUT]
    order += [Status.FAILED, Status.ABORTED]
    return order.index(r.status) if r.status in order else len(order)


def _worst_per_step(results: list[StepResult]) -> list[StepResult]:
    """A step's status is the worst of its partitions': one result per step id."""
    worst: dict[str, StepResult] = {}
    for r in results:
        if r.id not in worst or _rank(r) > _rank(worst[r.id]):
            worst[r.id] = r
    return list(worst.values())


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


def fresh_result(context: RunContext, step: Step, part: str | None) -> StepResult:
    """A pair's result before it runs: its title rendered for its partition, and masked."""
    parts = context.loaded.runbook.partitions
    title = step.title or step.id
    bound = {parts.var: partition_value(part)} if parts is not None and part is not None else {}
    with contextlib.suppress(templating.TemplateError):
        title = templating.render(title, context.names(**bound))
    return StepResult(
        id=step.id, kind=step.kind, title=context.redactor.redact(title), partition=part
    )


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


def _partitions(context: RunContext, options: RunOptions) -> list[str] | None:
    """The partitions this run covers (`--partition` chooses some), or None without any."""
    spec = context.loaded.runbook.partitions
    if spec is None:
        if options.partitions:
            raise UsageError("--partition: the runbook declares no partitions")
        return None

    def query(sql: str) -> list[Any]:
        warehouse = context.open_warehouse(options.warehouse_endpoint)
        try:
            labels = {"runbook": context.loaded.runbook.id, "step": "partitions"}
            return warehouse.column(sql, sql_params(context.values), labels)
        except WarehouseError as exc:
            raise UsageError(f"partitions: the query failed: {exc}") from None
        finally:
            warehouse.close()

    keys = resolve_partitions(spec, context.values, query=query)
    return select_partitions(keys, options.partitions)


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
    partitions = _partitions(context, options)
    run_id = _run_id(loaded.runbook.id)
    reports_dir = options.reports_dir.resolve()
    run_dir = reports_dir / run_id
    pairs = len(loaded.graph.order) * len(partitions or [None])
    lock = lock_for(loaded, values, context.workdir, reports_dir)
    with locked(lock, run_id):
        options.warnings.extend(lock.notes)
        reserve = _new_run_dir(run_dir, pairs)
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
                **(
                    {
                        "partitions": list(options.partitions),
                        "partition_parallel": max(rb.partitions.parallel, options.parallel),
                        "partition_order": rb.partitions.order,
                    }
                    if rb.partitions is not None
                    else {}
                ),
            },
            partition_var=rb.partitions.var if rb.partitions is not None else None,
            partitions=partitions or [],
            run_dir=str(run_dir),
            sessions=[new_session(redactor.redact)],
            file_hashes=context.script_hashes(),
        )
        steps = {s.id: s for s in rb.steps}
        for sid in loaded.graph.order:
            for part in partitions if partitions is not None else [None]:
                record.steps.append(fresh_result(context, steps[sid], part))
        # Vars are kept as given so that `resume` types them again the same way.
        # A secret var is stored as the mask (the run directory never holds a secret): `resume`
        # needs it given again.
        secret_vars = {n for n, spec in rb.vars.items() if spec.secret}
        given = {k: MASK if k in secret_vars else v for k, v in options.overrides.items()}
        try:
            (run_dir / "vars.json").write_text(json.dumps(given), encoding="utf-8")
            run = Runner(context, record, run_dir, options, reserve)
        except OSError as exc:
            reserve.release()
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing ran: no half run folder
            raise _cannot_write(run_dir, exc) from None
        try:
            run.append_event("run_started", run_id=run_id, runbook=str(loaded.path.resolve()))
            run.save()
            run.emit(Event("run_started", None, {"record": record, "run_dir": run_dir}))
            run.baseline()
            run.execute()
            run.finish()
        finally:
            reserve.release()
    return record, run_dir


def _cannot_write(folder: Path, exc: OSError) -> RunbookError:
    """A folder the run cannot write in, as one line (a full disk says so first)."""
    if disk_full(exc):
        return DiskFullError(f"{DISK_FULL}: cannot write in {folder}: {exc.strerror}")
    return RunbookError(f"cannot write in {folder}: {exc.strerror or exc}")


def _new_run_dir(run_dir: Path, pairs: int) -> Reserve:
    """Make a run's folder and set room aside in it for the final record and report.

    Raises:
        RunbookError: the folder cannot be made (a read-only or unwritable reports folder).
        DiskFullError: there is no room for it; nothing is left behind.
    """
    reports = run_dir.parent
    if reports.exists() and not reports.is_dir():
        raise UsageError(f"--reports {reports}: not a folder")
    try:
        (run_dir / "logs").mkdir(parents=True)
    except OSError as exc:
        raise _cannot_write(reports, exc) from None
    reserve = Reserve(run_dir / ".reserve", reserve_size(pairs))
    try:
        reserve.take()
    except DiskFullError:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return reserve
