"""Step kinds: one module per kind, registered by name in `REGISTRY`."""

from agent.steps import command, manual, verify, wait
from agent.steps.base import REGISTRY, Event, StepContext, StepKind, StepReview

__all__ = [
    "REGISTRY",
    "Event",
    "StepContext",
    "StepKind",
    "StepReview",
    "command",
    "manual",
    "verify",
    "wait",
]
