"""The pipeline in one place: load, run (or resume), write the record's outputs, exit code."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from agent.errors import DISK_FULL, DiskFullError, RunbookError, disk_full
from agent.output.notify import Notifier
from agent.output.report import write_report
from agent.plan import templating
from agent.plan.loader import load_runbook
from agent.plan.vars import resolve_vars
from agent.proc.redact import Redactor
from agent.record import RunRecord
from agent.run.context import RunContext, build_context
from agent.run.executor import start_run
from agent.run.options import RunOptions
from agent.run.resume import continue_run, prepare_resume

__all__ = ["Outcome", "resume_runbook", "run_runbook"]


class Outcome(NamedTuple):
    """What a run left: its record and its directory; the exit code and warnings follow."""

    record: RunRecord
    run_dir: Path

    @property
    def exit_code(self) -> int:
        """The command's exit code."""
        return self.record.exit_code or 0

    @property
    def report(self) -> Path:
        """The report's path."""
        return self.run_dir / "report.md"

    @property
    def warnings(self) -> list[str]:
        """What to tell the user that did not change the result (a failed notification)."""
        notice = self.run_dir / "notify.log"
        return [notice.read_text(encoding="utf-8").strip()] if notice.is_file() else []


def _write_report(record: RunRecord, run_dir: Path, redactor: Redactor) -> None:
    # Masked again in case prose quoted a secret; written once, atomically.
    write_report(record, run_dir / "report.md", mask=redactor.redact)


def _attach_outputs(
    context: RunContext, options: RunOptions, run_id: str, *, report: bool = True
) -> None:
    """The report is written, and the summary posted, when the record is final."""
    if report and _write_report not in options.finishers:
        options.finishers.append(_write_report)
    notify = context.loaded.runbook.notify
    names = context.names(run={"id": run_id})
    url = options.notify_url or (templating.render(notify, names) if notify else None)
    if url and not any(isinstance(x, Notifier) for x in options.listeners):
        options.listeners.append(Notifier(url))


def _outcome(record: RunRecord, run_dir: Path, junit: Path | None) -> Outcome:
    if junit is not None:
        from agent.output.junit import write_junit

        try:
            write_junit(record, junit)
        except OSError as exc:
            if disk_full(exc):
                raise DiskFullError(f"{DISK_FULL}: cannot write {junit}: {exc.strerror}") from None
            raise RunbookError(f"cannot write {junit}: {exc.strerror or exc}") from None
    return Outcome(record, run_dir)


def run_runbook(
    path: Path, options: RunOptions, *, junit: Path | None = None, report: bool = True
) -> Outcome:
    """Load the runbook, resolve its vars, run it and write the report (and JUnit when asked).

    Args:
        path: the runbook file.
        options: what the command line said.
        junit: where to write JUnit XML, if anywhere.
        report: write report.md (benchmarks of the executor alone say no).

    Returns:
        The outcome.
    """
    loaded = load_runbook(path)
    values = resolve_vars(loaded.runbook, options.overrides)
    context = build_context(
        loaded, values, extra_env=options.extra_env, notify_url=options.notify_url
    )
    _attach_outputs(context, options, "", report=report)
    record, run_dir = start_run(context, options)
    return _outcome(record, run_dir, junit)


def resume_runbook(
    run_dir: Path, options: RunOptions, *, force: bool = False, junit: Path | None = None
) -> Outcome:
    """Finish an interrupted or crashed run and write its report.

    Args:
        run_dir: the run directory.
        options: what the command line said.
        force: resume although the runbook or a script changed.
        junit: where to write JUnit XML, if anywhere.

    Returns:
        The outcome.
    """
    prepared = prepare_resume(run_dir, options, force=force)
    _attach_outputs(prepared.context, options, prepared.record.run_id)
    record, path = continue_run(prepared, options)
    return _outcome(record, path, junit)
