"""The demo runbook on the BigQuery emulator reports the same numbers as on DuckDB."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from agent.demo import DEMO_DATE, DEMO_RUNBOOK, demo_env, lay_out_demo
from agent.output.report import render_report
from agent.record import RunRecord, Status
from agent.run.options import RunOptions
from agent.warehouse import ENDPOINT_ENV
from agent.workflow import run_runbook
from tests import bqemu

pytestmark = pytest.mark.bigquery

MIRROR = "python tools/mirror_to_bigquery.py"
BIGQUERY_RUNBOOK = "backfill-game-context-bigquery.yaml"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[bqemu.Emulator]:
    """An emulator of its own: the mirror replaces tables the session emulator's tests read."""
    started = bqemu.start_emulator(tmp_path_factory.mktemp("bqemulator-demo"))
    try:
        yield started
    finally:
        bqemu._stop(started.process)


def bigquery_variant(folder: Path) -> Path:
    """Write the demo runbook on BigQuery, mirroring DuckDB after each processor step."""
    doc = yaml.safe_load((folder / DEMO_RUNBOOK).read_text(encoding="utf-8"))
    doc["warehouse"] = {"backend": "bigquery", "project": bqemu.PROJECT}
    steps: list[dict[str, Any]] = []
    for step in doc["steps"]:
        steps.append(step)
        if step["kind"] == "run":  # the processors, which write DuckDB
            steps.append(
                {
                    "id": f"mirror_{step['id']}",
                    "kind": "run",
                    "title": f"Mirror the warehouse after {step['id']}",
                    "command": MIRROR,
                }
            )
    assert len(steps) > len(doc["steps"]), "the demo runbook has no processor step"
    doc["steps"] = steps
    path = folder / BIGQUERY_RUNBOOK
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def mirror(folder: Path, env: dict[str, str]) -> None:
    """Copy the seeded DuckDB warehouse into the emulator (what the baseline reads)."""
    done = subprocess.run(
        [sys.executable, "tools/mirror_to_bigquery.py"],
        cwd=folder,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def emulator_jobs(emulator: bqemu.Emulator) -> int:
    client = bigquery.Client(
        project=bqemu.PROJECT,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=emulator.url),
    )
    try:
        return bqemu.count_jobs(client)
    finally:
        client.close()  # type: ignore[no-untyped-call]


def is_mirror(step_id: str) -> bool:
    return step_id.startswith("mirror_")


def check_view(record: RunRecord) -> dict[str, Any]:
    """Every verify check's numbers, after and at the baseline, by step and check."""
    view: dict[str, Any] = {}
    fields = [
        "actual",
        "expected",
        "minimum",
        "total",
        "ok",
        "missing_keys",
        "missing_total",
        "error",
    ]
    for step in record.steps:
        if step.kind != "verify":
            continue
        view[step.id] = {
            "after": {k: {f: getattr(c, f) for f in fields} for k, c in step.counts.items()},
            "baseline": None
            if step.baseline is None
            else {
                "error": step.baseline.error,
                "counts": {
                    k: {f: getattr(c, f) for f in fields} for k, c in step.baseline.counts.items()
                },
            },
        }
    return view


def sections(report: str, start: str, end: str) -> list[str]:
    """Each run of lines from one matching `start` up to (not including) the next matching `end`."""
    lines = report.splitlines()
    found = []
    for first, line in enumerate(lines):
        if re.match(start, line):
            last = next(
                (i for i in range(first + 1, len(lines)) if re.match(end, lines[i])), len(lines)
            )
            found.append("\n".join(lines[first:last]).strip())
    assert found, f"no line matching {start!r} in the report"
    return found


def comparable(texts: str | list[str]) -> str:
    text = texts if isinstance(texts, str) else "\n\n".join(texts)
    return re.sub(r"DuckDB|BigQuery", "WAREHOUSE", text)


def summary_statistics(report: str) -> str:
    """The Summary Statistics section without its `Run` block (step count and wall time)."""
    (text,) = sections(report, r"## Summary Statistics", r"## ")
    return re.sub(r"### Run\n.*?(?=\n### |\Z)", "", text, flags=re.DOTALL)


def test_demo_on_the_emulator_reports_what_duckdb_reports(
    tmp_path: Path, emulator: bqemu.Emulator
) -> None:
    on_duckdb = lay_out_demo(tmp_path / "duckdb")
    on_bigquery = lay_out_demo(tmp_path / "bigquery")

    a, _ = run_runbook(
        on_duckdb / DEMO_RUNBOOK,
        RunOptions(
            reports_dir=on_duckdb / "reports", extra_env=demo_env(), overrides={"date": DEMO_DATE}
        ),
    )

    env = {**demo_env(), ENDPOINT_ENV: emulator.url}
    mirror(on_bigquery, env)
    jobs_before = emulator_jobs(emulator)
    b, _ = run_runbook(
        bigquery_variant(on_bigquery),
        RunOptions(
            reports_dir=on_bigquery / "reports",
            extra_env=env,
            overrides={"date": DEMO_DATE},
            warehouse_endpoint=emulator.url,
        ),
    )

    assert emulator_jobs(emulator) >= jobs_before + 2  # the baseline and the verify step
    assert b.warehouse["backend"] == "bigquery"
    assert a.warehouse["backend"] == "duckdb"
    mirrors = [s for s in b.steps if is_mirror(s.id)]
    assert mirrors
    assert all(s.status is Status.SUCCESS for s in mirrors), [(s.id, s.reason) for s in mirrors]

    # The same statuses, step by step and overall.
    assert [(s.id, s.status, s.reason) for s in b.steps if not is_mirror(s.id)] == [
        (s.id, s.status, s.reason) for s in a.steps
    ]
    assert b.status == a.status

    # The same numbers in every verify check, after the run and at the baseline.
    numbers = check_view(a)
    assert numbers, "the demo runbook has no verify step"
    assert check_view(b) == numbers
    checks = [c for v in numbers.values() for c in v["after"].values()]
    assert all(c["error"] is None for c in checks)
    assert any(c["missing_total"] for c in checks)  # coverage found gaps: not a vacuous match
    assert any(
        v["baseline"] and v["baseline"]["counts"] != v["after"] for v in numbers.values()
    )  # the processors changed counts between the baseline and the check

    # The same Verification blocks and Summary Statistics in the reports.
    report_a, report_b = render_report(a), render_report(b)
    verification = (r"\*\*(DuckDB|BigQuery) Verification: Expected vs Actual:\*\*", r"#{1,3} ")
    assert "**DuckDB Verification: Expected vs Actual:**" in report_a
    assert "**BigQuery Verification: Expected vs Actual:**" in report_b
    assert comparable(sections(report_b, *verification)) == comparable(
        sections(report_a, *verification)
    )
    assert comparable(summary_statistics(report_b)) == comparable(summary_statistics(report_a))
