"""The manual kind: a person confirms on a terminal, or `--yes` confirms for them."""

from __future__ import annotations

from agent.plan.model import ManualStep
from agent.record import Status
from agent.steps.base import StepContext, StepKind, StepReview, register, write_evidence

__all__ = ["ManualKind"]


@register("manual")
class ManualKind(StepKind):
    """SUCCESS when confirmed; without a terminal and without --yes it is not run."""

    def times_out(self, step: ManualStep) -> bool:
        """A person answering a prompt is not timed."""
        return False

    def review(self, step: ManualStep, ctx: StepContext) -> StepReview:
        """Show what the person will be asked."""
        review = StepReview()
        if step.instructions:
            review.lines.append(ctx.render(step.instructions).strip())
        review.lines.append("asks for confirmation (or `--yes`)")
        return review

    def instructions(self, step: ManualStep, ctx: StepContext) -> str | None:
        """The step's instructions, rendered."""
        return ctx.render(step.instructions).strip() if step.instructions else None

    def run(self, step: ManualStep, ctx: StepContext) -> None:
        """Ask, or take --yes, or skip with the reason."""
        res = ctx.result
        res.instructions = self.instructions(step, ctx)
        question = ctx.render(step.prompt or f"{step.label}: done?")
        if ctx.yes:
            res.status, res.reason = Status.SUCCESS, "confirmed unattended (--yes)"
            res.confirmed_by = "unattended"
        elif ctx.interactive and ctx.confirm is not None:
            # The person reads what to do before being asked whether it is done.
            text = res.instructions
            answer = ctx.confirm(f"{text}\n\n{question}" if text else question)
            if answer is None or ctx.stop.is_set():
                res.status, res.reason = Status.ABORTED, "interrupted at the prompt"
            elif answer:
                res.status, res.reason = Status.SUCCESS, "confirmed at the prompt"
                res.confirmed_by = "operator"
            else:
                res.status, res.reason = Status.FAILED, "declined at the prompt"
        else:
            res.status, res.skipped_by = Status.SKIPPED, "manual"
            res.reason = "not run: manual step needs a terminal to confirm, or --yes"
        write_evidence(
            ctx, [f"--- {question}", *(res.instructions or "").splitlines(), f"=> {res.reason}"]
        )
