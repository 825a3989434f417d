"""`runbook demo`: lay the bundled incident pipeline out in a folder, seed its warehouse, run it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import agent
from agent.errors import RunbookError, UsageError
from agent.record import RunRecord

__all__ = ["DEMO_RUNBOOK", "demo_source", "lay_out_demo", "run_demo"]

DEMO_RUNBOOK = "backfill-game-context.yaml"
DEMO_DATE = "2026-01-25"
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


def lay_out_demo(directory: Path | None = None, *, seed: bool = True) -> Path:
    """Copy the demo pipeline into `directory` (default: a new temporary folder) and seed it.

    Args:
        directory: where to put it; created if missing; must not already hold a demo.
        seed: create the warehouse with the incident's starting state.

    Returns:
        The folder, which is the demo runbook's working directory.
    """
    target = Path(tempfile.mkdtemp(prefix="runbook-demo-")) if directory is None else directory
    if target.exists() and any(target.iterdir()):
        raise UsageError(f"{target} is not empty; name an empty or new folder for the demo")
    shutil.copytree(demo_source(), target, ignore=_IGNORE, dirs_exist_ok=True)
    if seed:
        warehouse = target / ".runbook" / "warehouse.duckdb"
        done = subprocess.run(
            [sys.executable, "seed.py", "--warehouse", str(warehouse), "--date", DEMO_DATE],
            cwd=target,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RunbookError(f"seeding the demo warehouse failed: {done.stderr.strip()[-500:]}")
    return target


def run_demo(
    directory: Path | None,
    *,
    listeners: list[Callable[..., None]] | None = None,
    stop: threading.Event | None = None,
    **extra: Any,
) -> tuple[RunRecord, Path]:
    """Lay out, seed and run the demo incident; reports go to `<folder>/reports`.

    Args:
        directory: where to lay the demo out (default: a new temporary folder).
        listeners: event consumers (the console).
        stop: set to interrupt the run.
        extra: further RunOptions fields.

    Returns:
        The run record and its run directory.
    """
    from agent.executor import RunOptions, run_runbook

    target = lay_out_demo(directory)
    options = RunOptions(
        overrides={"date": DEMO_DATE},
        reports_dir=target / "reports",
        listeners=list(listeners or []),
        stop=stop or threading.Event(),
        extra_env=demo_env(),
        **extra,
    )
    return run_runbook(target / DEMO_RUNBOOK, options)
