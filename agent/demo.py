"""`runbook demo`: lay the bundled pipeline out in a folder, seed its warehouse, run the demo."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import agent
from agent.errors import RunbookError, UsageError
from agent.proc.process import run_captured
from agent.record import RunRecord

__all__ = [
    "DEMO_RUNBOOK",
    "INCIDENT_FILE",
    "INCIDENT_RUNS",
    "RANGE_RUNBOOK",
    "demo_source",
    "lay_out_demo",
    "run_demo",
    "run_incident_demo",
]

DEMO_RUNBOOK = "backfill-game-context.yaml"
DEMO_DATE = "2026-01-25"
RANGE_RUNBOOK = "backfill-week.yaml"  # `runbook demo --range`: the week ending on DEMO_DATE
_IGNORE = shutil.ignore_patterns("__pycache__", ".ruff_cache", ".runbook", "reports", "*.pyc")


def demo_source() -> Path:
    """The bundled demo folder: inside an installed wheel, else `runbooks/demo` of the checkout."""
    bundled = Path(agent.__file__).resolve().parent / "_data" / "demo"
    if bundled.is_dir():
        return bundled
    return Path(__file__).resolve().parent.parent / "runbooks" / "demo"


def demo_env() -> dict[str, str]:
    """Put this interpreter first on PATH, so the demo's `python` has duckdb installed."""
    bindir = str(Path(sys.executable).parent)
    return {"PATH": bindir + os.pathsep + os.environ.get("PATH", "")}


def lay_out_demo(directory: Path | None = None, *, seed: bool = True, week: bool = False) -> Path:
    """Copy the demo pipeline into `directory` (default: a new temporary folder) and seed it.

    Args:
        directory: where to put it; created if missing; must not already hold a demo.
        seed: create the warehouse with the incident's starting state.
        week: seed the six days before the incident day too (`seed.py --week`).

    Returns:
        The folder, which is the demo runbook's working directory.
    """
    target = Path(tempfile.mkdtemp(prefix="runbook-demo-")) if directory is None else directory
    if target.exists() and any(target.iterdir()):
        raise UsageError(f"{target} is not empty; name an empty or new folder for the demo")
    shutil.copytree(demo_source(), target, ignore=_IGNORE, dirs_exist_ok=True)
    if seed:
        warehouse = target / ".runbook" / "warehouse.duckdb"
        done = run_captured(
            [sys.executable, "seed.py", "--warehouse", str(warehouse), "--date", DEMO_DATE]
            + (["--week"] if week else []),
            cwd=target,
        )
        if done.returncode != 0:
            raise RunbookError(f"seeding the demo warehouse failed: {done.stderr.strip()[-500:]}")
    return target


def run_demo(
    directory: Path | None,
    *,
    listeners: list[Callable[..., None]] | None = None,
    stop: threading.Event | None = None,
    week: bool = False,
    **extra: Any,
) -> tuple[RunRecord, Path]:
    """Lay out, seed and run the demo incident; reports go to `<folder>/reports`.

    Args:
        directory: where to lay the demo out (default: a new temporary folder).
        listeners: event consumers (the console).
        stop: set to interrupt the run.
        week: run the week's backfill instead (`backfill-week.yaml`, one partition per date,
            the warehouse seeded with gaps on some days).
        extra: further RunOptions fields.

    Returns:
        The run record and its run directory.
    """
    from agent.run.options import RunOptions
    from agent.workflow import run_runbook

    target = lay_out_demo(directory, week=week)
    options = RunOptions(
        overrides={} if week else {"date": DEMO_DATE},
        reports_dir=target / "reports",
        listeners=list(listeners or []),
        stop=stop or threading.Event(),
        extra_env=demo_env(),
        **extra,
    )
    return run_runbook(target / (RANGE_RUNBOOK if week else DEMO_RUNBOOK), options)


INCIDENT_FILE = "incident.yaml"
# The actions the demo runs, in order: one completes, one is partial; player-context.yaml
# (and the manual action) are left for the report to show as not started / done by hand.
INCIDENT_RUNS = ("restart-scheduler.yaml", "backfill-game-context.yaml")


def run_incident_demo(directory: Path | None = None) -> Path:
    """Lay out and seed the demo, then run the incident's complete and partial actions.

    Args:
        directory: where to lay the demo out (default: a new temporary folder).

    Returns:
        The folder: `incident.yaml` is in it and the runs are under its `reports/`, so
        `postmortem(folder / "incident.yaml", folder / "reports")` reports on the incident.
    """
    from agent.run.options import RunOptions
    from agent.workflow import run_runbook

    target = lay_out_demo(directory)
    for name in INCIDENT_RUNS:
        options = RunOptions(
            overrides={"date": DEMO_DATE},
            reports_dir=target / "reports",
            extra_env=demo_env(),
        )
        run_runbook(target / name, options)
    return target
