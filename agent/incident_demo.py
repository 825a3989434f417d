"""The incident demo: lay out the demo pipeline and run two of its incident's actions."""

from __future__ import annotations

from pathlib import Path

from agent.demo import DEMO_DATE, demo_env, lay_out_demo
from agent.executor import RunOptions, run_runbook

__all__ = ["INCIDENT_FILE", "INCIDENT_RUNS", "run_incident_demo"]

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
    target = lay_out_demo(directory)
    for name in INCIDENT_RUNS:
        options = RunOptions(
            overrides={"date": DEMO_DATE},
            reports_dir=target / "reports",
            extra_env=demo_env(),
        )
        run_runbook(target / name, options)
    return target
