"""Resume: replay a crashed or interrupted run's journal, then finish what it had not."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.errors import RunbookError, UsageError
from agent.plan.loader import load_runbook
from agent.plan.vars import resolve_vars
from agent.proc.process import stop_leftover_group
from agent.proc.redact import MASK
from agent.record import (
    Journal,
    RunRecord,
    RunStatus,
    Status,
    StepResult,
    load_record,
)
from agent.run.context import RunContext, build_context
from agent.run.executor import FINISHED, Runner, fresh_result, new_session
from agent.run.lock import lock_for, locked
from agent.run.options import RunOptions
from agent.run.reserve import Reserve, reserve_size
from agent.steps import Event

__all__ = ["Resumption", "continue_run", "prepare_resume"]


@dataclass
class Resumption:
    """A run ready to go on: its context, its record as the journal left it, what to stop."""

    context: RunContext
    record: RunRecord
    run_dir: Path
    # (step id, partition) pairs; the partition is None in a runbook without partitions.
    finished: set[tuple[Any, Any]] = field(default_factory=set)
    spawned: list[tuple[Any, Any, Any, Any]] = field(default_factory=list)
    stop_here: tuple[str, str | None] | None = None  # a `resume: never` pair that was running


@dataclass
class _Progress:
    """What the journal says happened: steps started and finished, process groups spawned."""

    started: set[tuple[Any, Any]] = field(default_factory=set)
    finished: set[tuple[Any, Any]] = field(default_factory=set)
    spawned: list[tuple[Any, Any, Any, Any]] = field(default_factory=list)


def _progress(events: list[dict[str, Any]]) -> _Progress:
    out = _Progress()
    for ev in events:
        kind = ev.get("event")
        pair = (ev.get("step"), ev.get("partition"))
        if kind == "step_finished":
            out.finished.add(pair)
        elif kind == "step_started":
            out.started.add(pair)
        elif kind == "spawned":
            out.spawned.append((*pair, ev.get("pgid"), ev.get("ticks")))
    return out


def _overrides(run_dir: Path, secret_vars: set[str], given: dict[str, str]) -> dict[str, Any]:
    """The vars the run was given, with the secret ones given again now."""
    path = run_dir / "vars.json"
    overrides: Any = {}
    if path.exists():
        try:
            overrides = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            overrides = exc
        if not isinstance(overrides, dict) or not all(isinstance(k, str) for k in overrides):
            raise RunbookError(
                f"{path} is damaged (not the JSON object of --var values this tool writes): "
                "restore it, or give every var again with --var and delete it"
            )
    overrides.update({k: v for k, v in given.items() if k in secret_vars})
    unknown = sorted(k for k, v in overrides.items() if k in secret_vars and v == MASK)
    if unknown:
        raise UsageError(
            f"the run was given secret var(s) {', '.join(unknown)}, which are not "
            f"stored in the run directory: give them again with --var to resume"
        )
    return dict(overrides)


def _reconcile(
    record: RunRecord, context: RunContext, finished: set[tuple[Any, Any]]
) -> list[StepResult]:
    """The record's results for the runbook as it is now (`resume --force` after an edit).

    A step added since the run began gets a fresh result; a step removed keeps the result it
    finished with (it ran: the report says so), or is SKIPPED with the reason when it had not.
    """
    loaded = context.loaded
    parts: list[str | None] = (
        list(record.partitions) if record.partition_var is not None else [None]
    )
    old = {(r.id, r.partition): r for r in record.steps}
    by_id = {s.id: s for s in loaded.runbook.steps}
    out: list[StepResult] = []
    for sid in loaded.graph.order:
        for part in parts:
            kept = old.pop((sid, part), None)
            out.append(kept if kept is not None else fresh_result(context, by_id[sid], part))
    for pair, r in old.items():
        if pair in finished and r.status in FINISHED:
            out.append(r)
        else:
            out.append(
                StepResult(
                    id=r.id,
                    kind=r.kind,
                    title=r.title,
                    partition=r.partition,
                    status=Status.SKIPPED,
                    # The operator's choice, as --only is: no shortfall of the run.
                    skipped_by="selection",
                    reason="removed from the runbook before the run was resumed",
                )
            )
    return out


def prepare_resume(run_dir: Path, options: RunOptions, *, force: bool = False) -> Resumption:
    """Read a run directory and decide what its resume does; run nothing.

    Args:
        run_dir: the run directory (holds run.json and journal.jsonl).
        options: what the command line said (reports dir and overrides are taken from the run).
        force: resume although the runbook or a script changed.

    Returns:
        The run, ready for `continue_run`.
    """
    run_dir = run_dir.resolve()
    if not (run_dir / "run.json").is_file():
        raise UsageError(f"{run_dir} is not a run directory (no run.json)")
    # The journal is the truth: every step_finished was made durable before the next began.
    # load_record has applied its results and baselines; only the progress is read here.
    journal_path = run_dir / "journal.jsonl"
    events = Journal.read(journal_path)
    record = load_record(run_dir, events=events)
    journal = _progress(events)
    if not events:
        # A run writes its journal's first line before run.json: no line means the journal was
        # lost, and with it what finished since the last snapshot.
        state = "empty" if journal_path.exists() else "missing"
        if not force:
            raise RunbookError(
                f"the journal {journal_path} is {state}, so resume cannot tell which steps "
                "finished: `runbook resume --force` keeps the steps run.json records as "
                "finished and runs the others"
            )
        journal.finished = {(r.id, r.partition) for r in record.steps if r.status in FINISHED}
    if (
        record.status is not None
        and record.status != RunStatus.INTERRUPTED
        and len(journal.finished) == len(record.steps)
    ):
        raise RunbookError(
            f"run {record.run_id} already finished ({record.status.value}); nothing to resume"
        )
    path = Path(record.runbook_path)
    loaded = load_runbook(path)
    secret_vars = {n for n, spec in loaded.runbook.vars.items() if spec.secret}
    values = resolve_vars(loaded.runbook, _overrides(run_dir, secret_vars, dict(options.overrides)))
    context = build_context(loaded, values, extra_env=options.extra_env)
    changes = []
    if loaded.sha256 != record.runbook_sha256:
        changes.append(f"the runbook {path} changed")
    changes += [f"{rel} changed" for rel in context.changed_scripts(record.file_hashes)]
    if changes and not force:
        raise RunbookError(
            "refusing to resume: "
            + "; ".join(changes)
            + " since the run began (use --force to resume anyway)"
        )
    steps = {s.id: s for s in loaded.runbook.steps}
    if changes:
        record.steps = _reconcile(record, context, journal.finished)
        record.needs = {**record.needs, **{k: list(v) for k, v in loaded.graph.needs.items()}}
        record.after = {**record.after, **{k: list(v) for k, v in loaded.graph.after.items()}}
    stop_here: tuple[str, str | None] | None = None
    for i, r in enumerate(record.steps):
        pair = (r.id, r.partition)
        if (pair in journal.finished and r.status in FINISHED) or r.id not in steps:
            continue
        was_running = pair in journal.started
        fresh = StepResult(
            id=r.id,
            kind=steps[r.id].kind,
            title=r.title,
            partition=r.partition,
            baseline=r.baseline,
            sessions=r.sessions + (1 if was_running else 0),
        )
        if r.status == Status.ABORTED and not was_running:
            fresh.sessions = r.sessions
        record.steps[i] = fresh
        if was_running and steps[r.id].resume == "never" and stop_here is None and not force:
            stop_here = pair
    record.status, record.ended_at, record.exit_code = None, None, None
    if record.sessions and record.sessions[-1].ended_at is None and events:
        # The session before crashed: it ended, as far as anyone can tell, at its last durable
        # journal line; the report then shows both sessions' timings.
        with contextlib.suppress(KeyError, ValueError):
            record.sessions[-1].ended_at = datetime.fromisoformat(events[-1]["at"])
    record.sessions.append(new_session(context.redactor.redact))
    return Resumption(
        context=context,
        record=record,
        run_dir=run_dir,
        finished=set(journal.finished),
        spawned=journal.spawned,
        stop_here=stop_here,
    )


def continue_run(res: Resumption, options: RunOptions) -> tuple[RunRecord, Path]:
    """Finish a prepared resume: finished steps are kept, not re-run.

    Returns:
        The finished record and its run directory.
    """
    record, run_dir = res.record, res.run_dir
    lock = lock_for(res.context.loaded, res.context.values, res.context.workdir, run_dir.parent)
    # The original run's choices (--parallel, --warehouse-endpoint, ...) hold for its resume.
    sel = record.selection
    options.parallel = max(options.parallel, int(sel.get("parallel") or 1))
    options.warehouse_endpoint = options.warehouse_endpoint or sel.get("warehouse_endpoint")
    options.max_log_bytes = options.max_log_bytes or sel.get("max_log_bytes")
    with locked(lock, record.run_id):
        options.warnings.extend(lock.notes)
        # Room for the final record on a disk that fills up (finish gives it back).
        reserve = Reserve(run_dir / ".reserve", reserve_size(len(record.steps)))
        reserve.take()
        run = Runner(res.context, record, run_dir, options, reserve)
        run.append_event("run_resumed", session=len(record.sessions))
        # We hold the lock, so the runner that started these children is dead: stop whatever
        # of their process groups survived it before anything runs again.
        for sid, part, pgid, ticks in res.spawned:
            if (sid, part) in res.finished or not isinstance(pgid, int):
                continue
            if stop_leftover_group(pgid, ticks if isinstance(ticks, int) else None, grace=2.0):
                where = {} if part is None else {"partition": part}
                run.append_event("leftover_stopped", step=sid, pgid=pgid, **where)
        run.emit(
            Event("run_started", None, {"record": record, "run_dir": run_dir, "resumed": True})
        )
        if res.stop_here is not None:
            # Nothing runs: the run stays interrupted (exit 130) and resumable once a person
            # has looked; `resume --force` then runs the step again.
            reason = (
                "was running when the run stopped, and it says `resume: never`: check what it "
                f"did, then `runbook resume --force {run_dir}` runs it again"
            )
            here, here_part = res.stop_here
            run.skip(here, Status.ABORTED, reason, None, here_part)
            for sid, part in run.pairs():
                if run.result(sid, part).status is None:
                    run.skip(
                        sid, Status.ABORTED, f"not run: {here} must be checked first", None, part
                    )
        else:
            run.baseline()
            run.execute()
        run.finish()
    return record, run_dir
