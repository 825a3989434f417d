"""How to run (everything the command line can say) and the exit code a run's status gives."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agent.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL
from agent.proc.redact import Redactor
from agent.record import RunRecord, RunStatus
from agent.steps import Event

__all__ = ["Finisher", "RunOptions", "exit_code_for"]

Finisher = Callable[[RunRecord, Path, Redactor], None]
"""Called with the final record, its run directory and the run's masks, before `run_finished`."""


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
    finishers: list[Finisher] = field(default_factory=list)  # the workflow's outputs
    stop: threading.Event = field(default_factory=threading.Event)
    extra_env: Mapping[str, str] = field(default_factory=dict)
    notify_url: str | None = None  # --notify; the runbook's `notify:` is used when this is None
    every_line: bool = False  # --verbose: output events carry every line, not the newest
    partitions: Sequence[str] = ()  # --partition VALUE: run only these partitions
    # What the run tells the user that did not change its result (where its lock had to go).
    warnings: list[str] = field(default_factory=list)


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
