"""Progress on the terminal, from the executor's events (plain lines; live view on a TTY)."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any

from agent.output.facts import (
    STATUS_MARK,
    WORST_FIRST,
    capture_text,
    defaulted,
    duration_text,
    partition_grid,
    status_tally,
)
from agent.plan.durations import elapsed
from agent.record import RunRecord, Status, StepResult
from agent.steps.base import Event

__all__ = ["LiveConsole", "PlainConsole", "make_console"]


def _instructions(data: Any) -> list[str]:
    """A manual step's instructions, as its step_started event carries them."""
    text = data.get("instructions")
    if not isinstance(text, str):
        return []
    return [ln.rstrip() for ln in text.strip().splitlines() if ln.strip()]


def _summary_note(result: Any) -> str:
    """The summary's last column: why a step fell short, and captures that only defaulted."""
    parts = [result.reason or ""] if result.status != Status.SUCCESS else []
    parts += [f"{n}: {capture_text(result, n)}" for n in defaulted(result)]
    return "; ".join(p for p in parts if p)


def _lines(data: Any) -> list[str]:
    """Every line of an output event (its span of the chunk), for --verbose."""
    if "text" in data:
        start, end = data["span"]
        return str(data["text"][start:end]).split("\n")
    return [str(data["line"])]


class PlainConsole:
    """Timestamped lines without control codes: for pipes, CI and logs."""

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        verbose: bool = False,
        quiet: bool = False,
        clock: Any = None,
    ) -> None:
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
        k, sid, d = event.kind, event.label, event.data
        if self.quiet and k != "run_finished":
            return
        if k == "run_started":
            rec: RunRecord = d["record"]
            verb = "resuming" if d.get("resumed") else "run"
            n = len(rec.steps)
            self._say(f"{verb} {rec.run_id}: {rec.title} ({n} step{'' if n == 1 else 's'})")
        elif k == "baseline_started":
            self._say(f"[{sid}] measuring baseline")
        elif k == "step_started":
            self._say(f"[{sid}] started: {d.get('title', '')}")
            for line in _instructions(d):
                self._say(f"[{sid}] instructions: {line}")
        elif k == "output" and self.verbose:
            for line in _lines(d):
                self._say(f"[{sid}] | {line}")
        elif k == "retry":
            self._say(
                f"[{sid}] attempt {d['attempt']} of {d['of']} in {d['delay']:g}s "
                f"({d.get('reason') or 'failed'})"
            )
        elif k == "poll":
            state = "true" if d["ok"] else f"false, {d['left']:.0f}s left"
            self._say(f"[{sid}] poll {d['n']}: {state}")
        elif k == "step_finished":
            r = d["result"]
            secs = f" in {elapsed(r.duration_s)}" if r.duration_s is not None else ""
            why = f": {r.reason}" if r.reason and r.status != Status.SUCCESS else ""
            self._say(
                f"[{sid}] {STATUS_MARK[r.status]} {r.status.value if r.status else '?'}{secs}{why}"
            )
            for name in defaulted(r):
                self._say(f"[{sid}] {name}: {capture_text(r, name)}")
        elif k == "run_finished":
            rec = d["record"]
            status = rec.status.value if rec.status else "?"
            grid = partition_grid(rec)
            if grid is not None and not self.quiet:
                self._say(f"partitions: {grid.summary}")
            why = f" ({rec.reason})" if rec.reason else ""
            self._say(f"run {status}{why}: report {d['run_dir'] / 'report.md'}")


class LiveConsole:
    """On a terminal: one live line per step (mark, elapsed, last output line), then a summary."""

    SPIN = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

    def __init__(self, *, verbose: bool = False, quiet: bool = False, console: Any = None) -> None:
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.verbose = verbose
        self.quiet = quiet
        self.live: Any = None
        self.rows: dict[str, dict[str, Any]] = {}
        self.title = ""
        self._lock = threading.Lock()
        self._tick = 0

    def _render(self) -> Any:
        from rich.table import Table

        self._tick += 1
        table = Table(
            title=self.title, title_justify="left", show_header=False, box=None, pad_edge=False
        )
        table.add_column(width=2)
        table.add_column(no_wrap=True)
        table.add_column(justify="right", width=7)
        table.add_column(no_wrap=True, overflow="ellipsis", max_width=70, style="dim")
        now = time.monotonic()
        for sid, row in self.rows.items():
            if row["state"] == "running":
                mark = self.SPIN[self._tick % len(self.SPIN)]
                took = now - row["t0"]
            elif row["state"] == "pending":
                mark, took = "·", None
            else:
                mark, took = row["mark"], row.get("secs")
            secs = elapsed(took) if took is not None else ""
            table.add_row(mark, f"{sid} {row['title']}", secs, self._note(row, now))
        return table

    @classmethod
    def _count_pair(cls, row: dict[str, Any], status: Status | None) -> None:
        row["pairs"] += 1
        if status is not None:
            row["finished"] += 1
            cls._worst(row, status)
        done = row["finished"] >= row["pairs"]
        row.update(state="done" if done else "pending", note=cls._pairs_note(row))
        row["mark"] = STATUS_MARK[row["worst"]] if done else ""

    @staticmethod
    def _worst(row: dict[str, Any], status: Status | None) -> None:
        # The mark a step's row ends with is its worst pair's.
        if row["worst"] is None or WORST_FIRST.index(status) < WORST_FIRST.index(row["worst"]):
            row["worst"] = status

    @staticmethod
    def _pairs_note(row: dict[str, Any]) -> str:
        running = sorted(p for p in row["running"] if p is not None)
        now = f"; running {', '.join(running[:3])}{' …' if len(running) > 3 else ''}"
        return f"{row['finished']}/{row['pairs']} partitions" + (now if running else "")

    @staticmethod
    def _note(row: dict[str, Any], now: float) -> str:
        retry = row.get("retry")
        if retry is not None and row.get("state") == "running" and not row.get("note"):
            attempt, of, at, reason = retry
            if at > now:
                return f"attempt {attempt}/{of} in {at - now:.1f}s ({reason})"
            return f"attempt {attempt}/{of} ({reason} before)"
        return str(row.get("note", ""))

    def __call__(self, event: Event) -> None:
        """Update the live view from one event."""

        from rich.live import Live

        with self._lock:
            k, sid, d = event.kind, event.step_id, event.data
            if k == "run_started":
                rec: RunRecord = d["record"]
                self.title = f"{rec.title} ({rec.run_id})"
                for s in rec.steps:
                    done = s.status is not None
                    if s.partition is not None and s.id in self.rows:
                        # A partitioned run: one row per step, counting its partitions.
                        self._count_pair(self.rows[s.id], s.status)
                        continue
                    self.rows[s.id] = {
                        "title": s.title,
                        "state": "done" if done else "pending",
                        "mark": STATUS_MARK[s.status] if done else "",
                        "note": "kept from the first session" if done else "",
                    }
                    if s.partition is not None:
                        self.rows[s.id].update(pairs=0, finished=0, worst=None, running=set())
                        self._count_pair(self.rows[s.id], s.status)
                if not self.quiet:
                    self.live = Live(
                        self._render(),
                        console=self.console,
                        refresh_per_second=8,
                        get_renderable=self._render,
                        transient=False,
                    )
                    self.live.start()
                return
            row = self.rows.get(sid or "")
            if k == "baseline_started" and row is not None:
                row["note"] = "measuring baseline…"
            elif k == "step_started" and row is not None and "pairs" in row:
                row["running"].add(event.partition)
                row.setdefault("t0", time.monotonic())
                row.update(state="running", note=self._pairs_note(row))
            elif k == "step_started" and row is not None:
                row.update(state="running", t0=time.monotonic(), note="")
                if self.live is not None:
                    for line in _instructions(d):
                        self.live.console.print(
                            f"{sid} instructions: {line}", markup=False, highlight=False
                        )
            elif k == "output" and row is not None:
                row["note"] = d["line"].strip()[:200]
                if self.verbose and self.live is not None:
                    for line in _lines(d):
                        self.live.console.print(f"{sid} | {line}", markup=False, highlight=False)
            elif k == "retry" and row is not None:
                # The note counts down to the next attempt (see _note).
                row["retry"] = (
                    d["attempt"],
                    d["of"],
                    time.monotonic() + d["delay"],
                    d.get("reason") or "failed",
                )
                row["note"] = ""
            elif k == "poll" and row is not None:
                row["note"] = (
                    f"poll {d['n']}: {'true' if d['ok'] else 'false'}, {d['left']:.0f}s left"
                )
            elif k == "step_finished" and row is not None and "pairs" in row:
                r = d["result"]
                row["running"].discard(event.partition)
                row["finished"] += 1
                self._worst(row, r.status)
                if row["finished"] >= row["pairs"]:
                    row.update(state="done", mark=STATUS_MARK[row["worst"]])
                    row["secs"] = time.monotonic() - row.get("t0", time.monotonic())
                row["note"] = self._pairs_note(row)
            elif k == "step_finished" and row is not None:
                r = d["result"]
                row.update(
                    state="done",
                    mark=STATUS_MARK[r.status],
                    secs=r.duration_s,
                    note=(r.reason or "") if r.status != Status.SUCCESS else "",
                )
            elif k == "run_finished":
                if self.live is not None:
                    self.live.stop()
                    self.live = None
                self._summary(d["record"], d["run_dir"])

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Stop redrawing while a prompt has the terminal, then go on."""
        with self._lock:
            live, self.live = self.live, None
            if live is not None:
                live.stop()
        try:
            yield
        finally:
            with self._lock:
                if live is not None:
                    self.live = live
                    live.start()

    def _summary(self, record: RunRecord, run_dir: Any) -> None:
        from rich.table import Table

        table = Table(title="Summary", show_lines=False)
        for col in ("step", "status", "time", "reason"):
            table.add_column(col)
        grid = partition_grid(record)
        if grid is not None:
            # One row per step, its partitions tallied: the report's grid has each pair.
            by_step: dict[str, list[StepResult]] = {}
            for s in record.steps:
                by_step.setdefault(s.id, []).append(s)
            for sid, pairs in by_step.items():
                tally = status_tally(pairs)
                table.add_row(
                    sid,
                    ", ".join(
                        f"{n} {STATUS_MARK[st]} {st.value if st else '-'}"
                        for st, n in sorted(tally.items(), key=lambda t: WORST_FIRST.index(t[0]))
                    ),
                    duration_text(sum(p.duration_s or 0.0 for p in pairs)),
                    next((_summary_note(p) for p in pairs if _summary_note(p)), "")[:120],
                )
        for s in record.steps if grid is None else ():
            table.add_row(
                s.id,
                f"{STATUS_MARK[s.status]} {s.status.value if s.status else '-'}",
                duration_text(s.duration_s),
                _summary_note(s)[:120],
            )
        if not self.quiet:
            self.console.print(table)
            if grid is not None:
                self.console.print(grid.summary, highlight=False, markup=False)
        status = record.status.value if record.status else "?"
        why = f" ({record.reason})" if record.reason else ""
        self.console.print(
            f"run {status}{why}: report {run_dir / 'report.md'}", highlight=False, markup=False
        )


def make_console(*, quiet: bool, verbose: bool, tty: bool | None = None) -> Any:
    """The live view on a terminal, plain timestamped lines otherwise."""
    is_tty = sys.stderr.isatty() if tty is None else tty
    if is_tty:
        return LiveConsole(quiet=quiet, verbose=verbose)
    return PlainConsole(quiet=quiet, verbose=verbose)
