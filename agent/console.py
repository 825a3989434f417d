"""Progress on the terminal, from the executor's events (plain lines; live view on a TTY)."""

from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime
from typing import IO, Any

from agent.record import RunRecord, Status
from agent.steps.base import Event

__all__ = ["MARKS", "PlainConsole"]

MARKS = {
    Status.SUCCESS: "✅",
    Status.PARTIAL: "⚠️",
    Status.FAILED: "❌",
    Status.NOT_FOUND: "❓",
    Status.TIMED_OUT: "⏱️",
    Status.SKIPPED: "⏭️",
    Status.ABORTED: "🛑",
}


class PlainConsole:
    """Timestamped lines without control codes: for pipes, CI and logs."""

    def __init__(self, stream: IO[str] | None = None, *, verbose: bool = False,
                 quiet: bool = False, clock: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.verbose = verbose
        self.quiet = quiet
        self.clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()

    def _say(self, text: str) -> None:
        with self._lock:
            self.stream.write(f"{self.clock().strftime('%H:%M:%S')} {text}\n")
            self.stream.flush()

    def __call__(self, event: Event) -> None:
        """Print one event."""
        k, sid, d = event.kind, event.step_id, event.data
        if self.quiet and k != "run_finished":
            return
        if k == "run_started":
            rec: RunRecord = d["record"]
            verb = "resuming" if d.get("resumed") else "run"
            self._say(f"{verb} {rec.run_id}: {rec.title} ({len(rec.steps)} steps)")
        elif k == "baseline_started":
            self._say(f"[{sid}] measuring baseline")
        elif k == "step_started":
            self._say(f"[{sid}] started: {d.get('title', '')}")
        elif k == "output" and self.verbose:
            self._say(f"[{sid}] | {d['line']}")
        elif k == "retry":
            self._say(f"[{sid}] attempt {d['attempt']} of {d['of']} in {d['delay']:g}s "
                      f"({d.get('reason') or 'failed'})")
        elif k == "poll":
            state = "true" if d["ok"] else f"false, {d['left']:.0f}s left"
            self._say(f"[{sid}] poll {d['n']}: {state}")
        elif k == "step_finished":
            r = d["result"]
            secs = f" in {r.duration_s:.1f}s" if r.duration_s is not None else ""
            why = f": {r.reason}" if r.reason and r.status != Status.SUCCESS else ""
            self._say(f"[{sid}] {MARKS.get(r.status, '')} {r.status.value if r.status else '?'}"
                      f"{secs}{why}")
        elif k == "run_finished":
            rec = d["record"]
            status = rec.status.value if rec.status else "?"
            self._say(f"run {status}: report {d['run_dir'] / 'report.md'}")
