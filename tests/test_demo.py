"""The bundled demo end to end: statuses, numbers from the warehouse, and the pinned report.

The golden report is regenerated with `UPDATE_GOLDEN=1 pytest tests/test_demo.py` and reviewed
in the diff; times, durations, run ids, paths and hashes are normalised first.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from agent.demo import run_demo
from agent.record import RunStatus, Status, load_record
from tests.procs import run_cli

GOLDEN = Path(__file__).parent / "golden" / "demo_report.md"
EXAMPLE = Path(__file__).resolve().parent.parent / "reports" / "example-demo-report.md"


def normalise(text: str, folder: Path) -> str:
    """Replace what changes from run to run with stable placeholders."""
    text = text.replace(str(folder.resolve()), "<DIR>").replace(str(folder), "<DIR>")
    rules = [
        (r"\d{8}T\d{6}Z-([a-z0-9-]+)-[0-9a-f]{4}", r"<RUN-ID \1>"),
        (r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "<TIME>"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}", "<T>"),
        (r"## Date: \d{4}-\d\d-\d\d", "## Date: <DATE>"),
        (r"sha256 [0-9a-f]{12}", "sha256 <SHA>"),
        (r"\b\d+(?:\.\d+)?s\b", "<DUR>"),
        (r"\d+(?:\.\d+)? games/sec", "<N> games/sec"),
        (r"\(\d+(?:\.\d+)?h old\)", "(<AGE> old)"),
        (r"runbook \S+ \([^)@]+@[^)]+\)", "runbook <VERSION> (<OPERATOR>)"),
    ]
    for pattern, repl in rules:
        text = re.sub(pattern, repl, text)
    return text


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path, Path]:
    folder = tmp_path_factory.mktemp("demo") / "incident"
    record, run_dir = run_demo(folder)
    return record, run_dir, folder


def test_demo_statuses_and_numbers(demo: tuple[object, Path, Path]) -> None:
    _, run_dir, _ = demo
    record = load_record(run_dir)
    st = {s.id: s.status for s in record.steps}
    assert st == {
        "team_context": Status.SUCCESS,
        "team_defense": Status.PARTIAL,
        "verify_counts": Status.PARTIAL,
        "export": Status.NOT_FOUND,
        "validation": Status.PARTIAL,
    }
    assert record.status == RunStatus.PARTIALLY_COMPLETE
    assert record.exit_code == 3
    assert record.step("team_context").captures["records_saved"] == 16
    assert record.step("team_defense").captures["records_saved"] == 10
    counts = record.step("verify_counts").counts
    assert counts["nba_analytics.upcoming_team_game_context"].actual == 16
    defense = counts["nba_analytics.team_defense_game_summary"]
    assert (defense.actual, defense.expected, defense.missing_total) == (10, 16, 6)
    assert {k["game_id"] for k in defense.missing_keys} == {
        "0022500655",
        "0022500656",
        "0022500657",
    }
    baseline = record.step("verify_counts").baseline
    assert baseline is not None
    assert baseline.counts["nba_analytics.team_defense_game_summary"].actual == 0
    export = record.step("export")
    assert export.missing == "bin/export_api_data.py"
    assert "bin/operations/export_bigquery_tables.sh" in export.alternatives
    assert "bin/deploy/deploy_live_export.sh" in export.alternatives
    validation = record.step("validation")
    assert validation.baseline is not None
    assert validation.baseline.captures["issues"] == validation.captures["issues"] == 25


def test_demo_report_matches_golden(demo: tuple[object, Path, Path]) -> None:
    _, run_dir, folder = demo
    text = normalise((run_dir / "report.md").read_text(encoding="utf-8"), folder)
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text, encoding="utf-8")
        EXAMPLE.write_text((run_dir / "report.md").read_text(encoding="utf-8"), encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8")


def test_committed_example_is_a_demo_report() -> None:
    """reports/example-demo-report.md is what the demo writes (regenerated with the golden)."""
    example = EXAMPLE.read_text(encoding="utf-8")
    # The report names no folder of the machine it ran on: paths are relative.
    assert "/tmp/" not in example
    assert normalise(example, Path("/nowhere")) == GOLDEN.read_text(encoding="utf-8")


def test_demo_command_prints_report_path(tmp_path: Path) -> None:
    out = run_cli("demo", "--dir", str(tmp_path / "d"), "--quiet")
    # The demo command succeeds when its run finished; the run's own status is partial.
    assert out.returncode == 0, out.stderr
    assert "The demo's incident run ended PARTIALLY COMPLETE (`runbook run` would exit 3)" in (
        out.stdout
    )
    report = Path(out.stdout.strip().splitlines()[-1].removeprefix("Report: "))
    assert report.is_file()
    assert report.is_relative_to(tmp_path / "d")
    assert "PARTIALLY COMPLETE" in report.read_text(encoding="utf-8")


def test_demo_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    run_demo(tmp_path / "d")
    out = run_cli("demo", "--dir", str(tmp_path / "d"), timeout=60)
    assert out.returncode == 2
    assert (
        out.stderr.strip()
        == f"error: {tmp_path / 'd'} is not empty; name an empty or new folder for the demo"
    )
