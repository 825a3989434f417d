"""Past runs: find run directories, read their records, list and summarise them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from agent.output.facts import duration_text, partition_grid, run_seconds, utc
from agent.output.markdown import plain_table
from agent.record import RunRecord, read_runs

__all__ = ["RunRow", "find_runs", "history_table", "parse_since", "summary_text"]


@dataclass
class RunRow:
    """One past run as `runbook history` lists it."""

    run_dir: Path
    record: RunRecord

    def as_dict(self) -> dict[str, Any]:
        """The row as JSON-ready data."""
        r = self.record
        return {
            "run_id": r.run_id,
            "runbook": r.runbook_id,
            "vars": r.vars,
            "status": r.status.value if r.status else "RUNNING?",
            "started": r.started_at.isoformat(),
            "duration_s": run_seconds(r),
            "operator": r.operator,
            "run_dir": str(self.run_dir),
        }


def parse_since(text: str, now: datetime) -> datetime:
    """`2h`, `3d`, `30m` ago, or an ISO date/time."""
    units = {"m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units and text[:-1].isdigit():
        return now - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=now.tzinfo)


def find_runs(
    reports: Path,
    *,
    runbook: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
) -> list[RunRow]:
    """Every readable run under `reports`, newest first, filtered (the one reader of past runs:
    `history` lists them, the postmortem matches them to an incident's actions).

    Args:
        reports: the reports folder.
        runbook: keep runs of this runbook id.
        status: keep runs with this status (case-insensitive; `PARTIAL` matches PARTIALLY COMPLETE).
        since: keep runs started at or after this time.

    Returns:
        The rows, newest first (runs that started together by run id, descending).
    """
    rows: list[RunRow] = []
    for run_dir, record in read_runs(reports):
        if runbook and record.runbook_id != runbook:
            continue
        st = record.status.value if record.status else "RUNNING?"
        if status and not st.upper().startswith(status.upper()):
            continue
        if since and record.started_at < since:
            continue
        rows.append(RunRow(run_dir, record))
    rows.sort(key=lambda r: (utc(r.record.started_at), r.record.run_id), reverse=True)
    return rows


def _vars_text(values: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in values.items())


def history_table(rows: list[RunRow]) -> str:
    """The runs as a GitHub-style table."""
    body = [
        [
            r.record.run_id,
            r.record.runbook_id,
            _vars_text(r.record.vars),
            r.as_dict()["status"],
            r.record.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            duration_text(run_seconds(r.record)),
            r.record.operator,
        ]
        for r in rows
    ]
    headers = ["run id", "runbook", "vars", "status", "started (UTC)", "duration", "operator"]
    grids = [partition_grid(r.record) for r in rows]
    if any(g is not None for g in grids):
        # Partitioned runs: how many of their partitions are complete.
        headers.insert(4, "partitions")
        for row, grid in zip(body, grids, strict=True):
            complete = f"{len(grid.complete)}/{len(grid.rows)} complete" if grid else ""
            row.insert(4, complete)
    return plain_table(body, headers)


def summary_text(record: RunRecord, run_dir: Path) -> str:
    """One run's summary: header lines and a table of its steps."""
    status = record.status.value if record.status else "RUNNING? (no end recorded: see resume)"
    lines = [
        f"run:      {record.run_id}",
        f"runbook:  {record.runbook_id} ({record.runbook_path})",
        f"title:    {record.title}",
        f"vars:     {_vars_text(record.vars)}",
        f"status:   {status}",
        f"started:  {record.started_at.isoformat()} by {record.operator}@{record.host}",
        f"sessions: {len(record.sessions)}",
        f"report:   {run_dir / 'report.md'}",
        "",
    ]
    grid = partition_grid(record)
    if grid is not None:
        lines.insert(5, f"partitions: {grid.summary}")
    body = [
        [
            s.id,
            *([s.partition or ""] if grid is not None else []),
            s.kind,
            s.status.value if s.status else "-",
            duration_text(s.duration_s),
            (s.reason or "")[:80],
        ]
        for s in record.steps
    ]
    headers = ["step", *(["partition"] if grid is not None else []), "kind", "status", "time"]
    lines.append(plain_table(body, [*headers, "reason"]))
    return "\n".join(lines) + "\n"
