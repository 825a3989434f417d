"""The wait kind: poll a SQL condition or a command until it holds or the timeout ends."""

from __future__ import annotations

import time

from agent.plan import templating
from agent.plan.model import WaitStep
from agent.process import run_process
from agent.record import Poll, Status, utcnow
from agent.steps.base import Event, StepContext, StepReview, register, sql_params
from agent.warehouse.base import WarehouseError

__all__ = ["WaitKind"]

DEFAULT_TIMEOUT = 3600.0


def _fmt(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


@register("wait")
class WaitKind:
    """Poll every `every` seconds; SUCCESS when the condition holds, TIMED_OUT otherwise."""

    def review(self, step: WaitStep, ctx: StepContext) -> StepReview:
        """Show the condition and the polling schedule."""
        review = StepReview()
        timeout = step.timeout or ctx.loaded.runbook.defaults.timeout or DEFAULT_TIMEOUT
        if step.until:
            review.lines.append(f"until `{ctx.render(step.until).strip()}`")
        else:
            argv = templating.render_command(
                step.command or "", ctx.template_context(), shell=step.shell
            )
            review.command = " ".join(argv)
        review.lines.append(f"polls every {_fmt(step.every)} for at most {_fmt(timeout)}")
        return review

    def _poll(self, step: WaitStep, ctx: StepContext) -> Poll:
        at = utcnow()
        if step.until:
            sql = ctx.render(step.until)
            labels = {"runbook": ctx.loaded.runbook.id, "run": ctx.run_id, "step": step.id}
            try:
                warehouse = ctx.open_warehouse()
                try:
                    value = warehouse.scalar(sql, sql_params(ctx.vars), labels)
                finally:
                    warehouse.close()
            except WarehouseError as exc:
                return Poll(at=at, ok=False, error=str(exc))
            return Poll(at=at, value=value, ok=bool(value))
        argv = templating.render_command(
            step.command or "", ctx.template_context(), shell=step.shell
        )
        log = ctx.log_path()
        assert log is not None
        env = dict(ctx.env) | {k: ctx.render(v) for k, v in step.env.items()}
        proc = run_process(
            argv,
            cwd=ctx.workdir,
            env=env,
            timeout=max(step.every, 60.0),
            log_path=log,
            redactor=ctx.redactor,
            stop_event=ctx.stop,
        )
        return Poll(at=at, value=proc.exit_code, ok=proc.exit_code == 0, error=proc.error)

    def run(self, step: WaitStep, ctx: StepContext) -> None:
        """Poll until true, timeout or interrupt; every poll is recorded."""
        res = ctx.result
        timeout = step.timeout or ctx.loaded.runbook.defaults.timeout or DEFAULT_TIMEOUT
        start = time.monotonic()
        log = ctx.log_path()
        if log is not None:
            res.log_path = str(log.relative_to(ctx.run_dir)) if ctx.run_dir else None
        while True:
            poll = self._poll(step, ctx)
            res.polls.append(poll)
            elapsed = time.monotonic() - start
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
                    {"n": len(res.polls), "ok": poll.ok, "left": max(timeout - elapsed, 0.0)},
                )
            )
            if poll.ok:
                res.status = Status.SUCCESS
                res.reason = f"became true after {len(res.polls)} polls, {_fmt(elapsed)}"
                return
            remaining = timeout - elapsed
            if remaining <= 0:
                res.status = Status.TIMED_OUT
                last = f" (last error: {poll.error})" if poll.error else ""
                res.reason = f"still false after {len(res.polls)} polls, {_fmt(elapsed)}{last}"
                return
            if ctx.stop.wait(min(step.every, remaining)):
                res.status, res.reason = Status.ABORTED, "the run was interrupted while waiting"
                return
