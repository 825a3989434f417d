"""The wait kind: poll a SQL condition or a command until it holds or the timeout ends."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from agent.plan import templating
from agent.plan.durations import elapsed, setting
from agent.plan.model import WaitStep
from agent.proc.process import run_process
from agent.record import Poll, Status, utcnow
from agent.steps.base import (
    Event,
    StepContext,
    StepKind,
    StepReview,
    display,
    note_stopped,
    program_missing,
    register,
    review_program,
    sql_params,
    step_env,
    step_timeout,
    write_evidence,
)
from agent.warehouse.base import WarehouseError

__all__ = ["WaitKind"]

MIN_POLL_SECONDS = 0.1  # the least a command poll gets, even when the step's time is up


@dataclass
class _Condition:
    """What one poll checks, rendered once: SQL, or a command with its environment."""

    sql: str | None = None
    argv: list[str] | None = None
    env: dict[str, str] | None = None


def _condition(step: WaitStep, ctx: StepContext) -> _Condition:
    if step.until:
        return _Condition(sql=templating.render_sql(step.until, ctx.template_context()))
    argv = templating.render_command(step.command or "", ctx.template_context(), shell=step.shell)
    return _Condition(argv=argv, env=step_env(step.env, ctx))


def _judged(at: Any, value: Any) -> Poll:
    """A condition's value as a poll: true, a number other than 0; text is never a truth.

    `SELECT 'false'` must not count as true (Python's truth of a non-empty string), nor be
    guessed from its words: the poll says what came back.
    """
    if isinstance(value, str):
        error = f"the condition returned the text {value!r}, not true/false or a number"
        return Poll(at=at, value=value, ok=False, error=error)
    return Poll(at=at, value=value, ok=bool(value))


@register("wait")
class WaitKind(StepKind):
    """Poll every `every` seconds; SUCCESS when the condition holds, TIMED_OUT otherwise."""

    def review(self, step: WaitStep, ctx: StepContext) -> StepReview:
        """Show the condition and the polling schedule; look up the program a command names."""
        review = StepReview()
        cond = _condition(step, ctx)
        if cond.sql is not None:
            review.lines.append(f"until `{cond.sql.strip()}`")
        elif cond.argv is not None:
            review.command = display(cond.argv, step.shell)
            review_program(review, cond.argv, cwd=ctx.workdir, env=cond.env or {})
        most = setting(step_timeout(step.timeout, ctx))
        review.lines.append(f"polls every {setting(step.every)} for at most {most}")
        return review

    def _poll(self, step: WaitStep, ctx: StepContext, cond: _Condition, left: float) -> Poll:
        at = utcnow()
        if cond.sql is not None:
            labels = {"runbook": ctx.loaded.runbook.id, "run": ctx.run_id, "step": step.id}
            try:
                warehouse = ctx.open_warehouse()
                try:
                    value = warehouse.scalar(cond.sql, sql_params(ctx.vars), labels)
                finally:
                    warehouse.close()
            except WarehouseError as exc:
                write_evidence(ctx, [f"poll at {at.isoformat()}: {cond.sql}", f"  error: {exc}"])
                return Poll(at=at, ok=False, error=str(exc))
            write_evidence(ctx, [f"poll at {at.isoformat()}: {cond.sql}", f"  value: {value!r}"])
            return _judged(at, value)
        log = ctx.log_path()
        assert log is not None
        assert cond.argv is not None
        proc = run_process(
            cond.argv,
            cwd=ctx.workdir,
            env=cond.env or {},
            # A poll never outlives the step: it gets the time that is left.
            timeout=max(left, MIN_POLL_SECONDS),
            log_path=log,
            redactor=ctx.redactor,
            stop_event=ctx.stop,
            on_spawn=ctx.on_spawn,
            strays=ctx.strays,
        )
        stopped = note_stopped(ctx, proc)
        error = proc.error
        if proc.timed_out:
            error = "the poll was stopped when the step's time ran out"
        elif proc.interrupted:
            error = "interrupted"
        if error is not None:
            error += stopped
        return Poll(at=at, value=proc.exit_code, ok=proc.exit_code == 0, error=error)

    def run(self, step: WaitStep, ctx: StepContext) -> None:
        """Poll until true, timeout or interrupt; every poll is recorded."""
        res = ctx.result
        timeout = step_timeout(step.timeout, ctx)
        try:
            cond = _condition(step, ctx)
        except templating.TemplateError as exc:
            res.status, res.reason = Status.FAILED, str(exc)
            return
        if cond.argv is not None and program_missing(
            ctx, cond.argv, step.shell, cwd=ctx.workdir, env=cond.env or {}
        ):
            return
        start = time.monotonic()
        log = ctx.log_path()
        if log is not None:
            res.log_path = str(log.relative_to(ctx.run_dir)) if ctx.run_dir else None
        while True:
            poll = self._poll(step, ctx, cond, timeout - (time.monotonic() - start))
            res.polls.append(poll)
            took = time.monotonic() - start
            if log is not None:
                with log.open("a", encoding="utf-8") as fh:
                    fh.write(
                        f"{poll.at.isoformat()} poll {len(res.polls)}: value={poll.value!r} "
                        f"ok={poll.ok}{' error=' + poll.error if poll.error else ''}\n"
                    )
            ctx.emit(
                Event(
                    "poll",
                    res.id,
                    {"n": len(res.polls), "ok": poll.ok, "left": max(timeout - took, 0.0)},
                )
            )
            if poll.ok:
                res.status = Status.SUCCESS
                res.reason = f"became true after {len(res.polls)} polls, {elapsed(took)}"
                return
            if ctx.stop.is_set():
                res.status, res.reason = Status.ABORTED, "the run was interrupted while waiting"
                return
            remaining = timeout - took
            if remaining <= 0:
                res.status = Status.TIMED_OUT
                last = f" (last error: {poll.error})" if poll.error else ""
                res.reason = f"still false after {len(res.polls)} polls, {elapsed(took)}{last}"
                return
            if ctx.stop.wait(min(step.every, remaining)):
                res.status, res.reason = Status.ABORTED, "the run was interrupted while waiting"
                return
