"""The JSON documents of `--format json` and of `runbook mcp`: one builder per command result.

Every document is an object with `version` (`JSON_VERSION`) and `kind` (the command). Paths
in it are relative to `root` (the current folder for the command line, `--root` for the
assistant interface) when they lie inside it, else absolute. The record is masked already
(every text of a finished result is); a plan's review is masked here with the run's masks.
`docs/assistant-results.schema.json` is the schema of these documents.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.output.facts import (
    cause_text,
    check_percent,
    fell_short,
    missing_count,
    run_seconds,
    status_tally,
    status_words,
)
from agent.record import CheckResult, RunRecord, StepResult

if TYPE_CHECKING:
    from agent.output.history import RunRow
    from agent.output.review import PlanReview

__all__ = [
    "JSON_VERSION",
    "TAIL_LINES",
    "dumps",
    "followup_document",
    "history_document",
    "history_runs",
    "plan_document",
    "relative",
    "report_document",
    "run_document",
    "validate_document",
    "validate_entry",
]

JSON_VERSION = 1
TAIL_LINES = 20  # the newest output lines of a step a run document carries


def dumps(document: Mapping[str, Any] | list[Any]) -> str:
    """A document as the command line prints it: indented JSON and a newline."""
    return json.dumps(document, indent=2, default=str, ensure_ascii=False) + "\n"


def relative(path: Path | str | None, root: Path | None = None) -> str | None:
    """`path` relative to `root` (default: the current folder) when inside it, else absolute.

    Args:
        path: a path, relative to the current folder or absolute; None stays None.
        root: the folder results are relative to.

    Returns:
        The path as a result shows it (POSIX separators).
    """
    if path is None:
        return None
    base = (root or Path.cwd()).resolve()
    full = Path(path).resolve()
    try:
        return full.relative_to(base).as_posix()
    except ValueError:
        return full.as_posix()


def validate_entry(
    file: Path,
    *,
    problems: Iterable[Any] = (),
    warnings: Iterable[str] = (),
    root: Path | None = None,
) -> dict[str, Any]:
    """One checked file of `validate`: valid when it has no problems.

    Args:
        file: the runbook or incident file as given.
        problems: `ValidationError.problems` (file, line, col, message).
        warnings: the loader's warning lines.
        root: what paths are relative to; None keeps `file` as given.

    Returns:
        `{file, valid, problems: [{file, line, column, message}], warnings}`.
    """
    listed = [
        {"file": p.file, "line": p.line, "column": p.col, "message": p.message} for p in problems
    ]
    return {
        "file": str(file) if root is None else relative(file, root),
        "valid": not listed,
        "problems": listed,
        "warnings": list(warnings),
    }


def validate_document(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The `validate` document over its files (`validate_entry`)."""
    return {
        "version": JSON_VERSION,
        "kind": "validate",
        "valid": all(e["valid"] for e in entries),
        "files": entries,
    }


def plan_document(review: PlanReview, root: Path | None = None) -> dict[str, Any]:
    """The `plan` document: the review (`review_json`), masked, its paths relative to root."""
    from agent.output.review import review_json

    data = review_json(review)
    data["path"] = relative(review.loaded.path, root)
    data["workdir"] = relative(review.workdir, root)
    masked = json.loads(review.redactor.redact(json.dumps(data, default=str)))
    return {"version": JSON_VERSION, "kind": "plan", **masked}


def _check(check: CheckResult) -> dict[str, Any]:
    data = check.model_dump(mode="json")
    data["percent"] = check_percent(check)
    data["missing"] = missing_count(check)
    return data


def _step(step: StepResult) -> dict[str, Any]:
    finished = step.status is not None
    return {
        "id": step.id,
        "kind": step.kind,
        "title": step.title,
        "partition": step.partition,
        "status": step.status.value if step.status else None,
        "status_text": status_words(step.status) if step.started_at else "NOT STARTED",
        "state": "finished" if finished else ("running" if step.started_at else "pending"),
        "reason": step.reason,
        "cause": step.cause,
        "cause_text": cause_text(step) if step.started_at or finished else None,
        "fell_short": finished and fell_short(step),
        "skipped_by": step.skipped_by,
        "confirmed_by": step.confirmed_by,
        "command": step.command_display,
        "started_at": step.started_at.isoformat() if step.started_at else None,
        "ended_at": step.ended_at.isoformat() if step.ended_at else None,
        "duration_s": step.duration_s,
        "attempts": len(step.attempts),
        "exit_code": step.exit_code,
        "captures": step.captures,
        "unmatched": step.unmatched,
        "expectations": [e.model_dump(mode="json") for e in step.expectations],
        "counts": {name: _check(c) for name, c in step.counts.items()},
        "missing_keys": step.missing_values(),
        "missing": step.missing,
        "alternatives": step.alternatives,
        "crash": step.crash,
        "log": step.log_path,
        "output_tail": step.output_tail[-TAIL_LINES:],
    }


def _alive(record: RunRecord) -> bool | None:
    """Whether the runner of an unfinished run still lives (None: it runs on another host)."""
    if record.ended_at is not None or not record.sessions:
        return False
    last = record.sessions[-1]
    if last.ended_at is not None:
        return False
    if last.host != socket.gethostname():
        return None
    try:
        os.kill(last.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_document(
    record: RunRecord, run_dir: Path, *, root: Path | None = None, kind: str = "run"
) -> dict[str, Any]:
    """The summary of a run (`run`, `resume` and `show`): status, progress, every step's facts.

    Args:
        record: the run record (for an unfinished run, as `load_record` replays its journal).
        run_dir: its run directory.
        root: what paths are relative to (default: the current folder).
        kind: the command the document answers.

    Returns:
        The document; `status` is None and `finished` False while the run has not ended.
    """
    report = run_dir / "report.md"
    tally = status_tally(record.steps)
    done = sum(1 for s in record.steps if s.status is not None)
    return {
        "version": JSON_VERSION,
        "kind": kind,
        "run_id": record.run_id,
        "run_dir": relative(run_dir, root),
        "runbook": record.runbook_id,
        "runbook_path": relative(record.runbook_path, root),
        "title": record.title,
        "vars": record.vars,
        "partitions": record.partitions,
        "status": record.status.value if record.status else None,
        "finished": record.ended_at is not None,
        "alive": _alive(record),
        "exit_code": record.exit_code,
        "started_at": record.started_at.isoformat(),
        "ended_at": record.ended_at.isoformat() if record.ended_at else None,
        "duration_s": run_seconds(record),
        "operator": record.operator,
        "progress": {
            "steps": len(record.steps),
            "finished": done,
            "running": [s.id for s in record.steps if s.started_at and s.status is None],
        },
        "tally": {(k.value if k else "NOT FINISHED"): v for k, v in tally.items()},
        "shortfalls": [s.id for s in record.steps if s.status is not None and fell_short(s)],
        "steps": [_step(s) for s in record.steps],
        "report": relative(report, root) if report.is_file() else None,
    }


def report_document(
    text: str, run_dir: Path, path: Path | None, *, root: Path | None = None
) -> dict[str, Any]:
    """The `report` document: the markdown and where it is (None: rendered, not written)."""
    return {
        "version": JSON_VERSION,
        "kind": "report",
        "run_dir": relative(run_dir, root),
        "path": relative(path, root),
        "text": text,
    }


def history_runs(rows: list[RunRow], *, root: Path | None = None) -> list[dict[str, Any]]:
    """Past runs as `history --format json` lists them (`RunRow.as_dict`, run_dir relative)."""
    return [{**r.as_dict(), "run_dir": relative(r.run_dir, root)} for r in rows]


def history_document(runs: list[dict[str, Any]], reports: str | None) -> dict[str, Any]:
    """The `history` document over the runs `history_runs` lists, newest first."""
    return {"version": JSON_VERSION, "kind": "history", "reports": reports, "runs": runs}


def followup_document(
    path: Path, text: str, run_dir: Path, *, root: Path | None = None
) -> dict[str, Any]:
    """The `followup` document: the follow-up runbook written, and its text."""
    return {
        "version": JSON_VERSION,
        "kind": "followup",
        "run_dir": relative(run_dir, root),
        "path": relative(path, root),
        "text": text,
    }
