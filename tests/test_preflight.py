"""Tests for agent.proc.preflight: what a command names, whether it is there, what is closest."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agent.proc import preflight
from agent.proc.preflight import Lookup, closest_files, list_files, lookup

VENV_BIN = str(Path(sys.executable).parent)

INCIDENT_FILES = [
    "bin/operations/export_bigquery_tables.sh",
    "bin/deploy/deploy_live_export.sh",
    "scripts/validate_tonight_data.py",
    "bin/validate_pipeline.py",
    "scripts/daily_export.py",
    "README.md",
    "data/games.csv",
]

PROCESSOR_FILES = [
    "data_processors/__init__.py",
    "data_processors/analytics/__init__.py",
    "data_processors/analytics/upcoming_team_game_context/__init__.py",
    "data_processors/analytics/upcoming_team_game_context/__main__.py",
    "data_processors/analytics/upcoming_team_game_context/upcoming_team_game_context_processor.py",
    "data_processors/analytics/team_defense_game_summary/__init__.py",
    "data_processors/analytics/team_defense_game_summary/team_defense_game_summary_processor.py",
    "data_processors/raw/nbac_schedule_processor.py",
    "scripts/validate_tonight_data.py",
]


def touch(root: Path, *paths: str, executable: bool = False, text: str = "") -> None:
    for rel in paths:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if executable:
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def venv_python(bin_dir: Path, *, name: str = "python", calls: Path | None = None) -> Path:
    """A real interpreter of a fresh venv, on PATH in `bin_dir` as `name` (its arguments logged
    to `calls`); returns the venv's site-packages, which its sys.path holds."""
    venv = bin_dir.parent / f"venv-{name}"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    log = f'echo "$@" >> "{calls}"\n' if calls else ""
    touch(bin_dir, name, executable=True, text=f'#!/bin/sh\n{log}exec "{venv}/bin/python" "$@"\n')
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return venv / "lib" / version / "site-packages"


# --- the incident: a missing export script ---------------------------------------------------


def test_missing_export_script_offers_the_export_scripts(tmp_path: Path) -> None:
    touch(tmp_path, *INCIDENT_FILES)
    argv = ["python", "bin/export_api_data.py", "--date", "2026-01-25"]

    found = lookup(argv, workdir=tmp_path, env={"PATH": VENV_BIN})

    assert found is not None
    assert not found.found
    assert found.kind == "script"
    assert found.target == "bin/export_api_data.py"
    assert found.resolved is None
    assert found.message == "script bin/export_api_data.py does not exist"
    assert set(found.alternatives) == {
        "bin/operations/export_bigquery_tables.sh",
        "bin/deploy/deploy_live_export.sh",
        "scripts/daily_export.py",
    }
    assert "scripts/validate_tonight_data.py" not in found.alternatives
    assert "data/games.csv" not in found.alternatives


def test_a_shared_generic_word_alone_is_no_match(tmp_path: Path) -> None:
    touch(tmp_path, *INCIDENT_FILES)

    assert closest_files("bin/load_data.py", tmp_path) == []
    assert closest_files("run_all.sh", tmp_path) == []


def test_same_kind_of_file_is_preferred_on_equal_words(tmp_path: Path) -> None:
    touch(tmp_path, "tools/export_tables.sh", "tools/export_tables.py")

    assert closest_files("export_views.py", tmp_path) == [
        "tools/export_tables.py",
        "tools/export_tables.sh",
    ]
    assert closest_files("export_views.sh", tmp_path)[0] == "tools/export_tables.sh"


def test_more_shared_words_rank_first(tmp_path: Path) -> None:
    touch(tmp_path, *INCIDENT_FILES, "bin/operations/export_api_tables.sh")

    assert closest_files("bin/export_api_data.py", tmp_path)[0] == (
        "bin/operations/export_api_tables.sh"
    )


def test_found_script(tmp_path: Path) -> None:
    touch(tmp_path, *INCIDENT_FILES)

    found = lookup(
        ["python", "scripts/validate_tonight_data.py", "--date", "2026-01-25"],
        workdir=tmp_path,
        env={"PATH": VENV_BIN},
    )

    path = tmp_path / "scripts/validate_tonight_data.py"
    assert found == Lookup(
        True,
        "script",
        "scripts/validate_tonight_data.py",
        str(path),
        [],
        f"script scripts/validate_tonight_data.py found at {path}",
    )


def test_absolute_script_path(tmp_path: Path) -> None:
    touch(tmp_path, "job.py")
    script = str(tmp_path / "job.py")

    found = lookup(["python3", script], workdir=tmp_path / "elsewhere", env={"PATH": VENV_BIN})

    assert found is not None
    assert found.found
    assert found.resolved == script


@pytest.mark.parametrize(
    "argv",
    [
        ["python", "-u", "job.py"],
        ["python", "-X", "dev", "-W", "ignore", "job.py", "-m", "nope"],
        ["python", "-Xdev", "-uB", "job.py"],
        ["python", "--check-hash-based-pycs", "always", "job.py"],
        ["python", "-OO", "--", "job.py"],
        ["python3", "job.py"],
        ["python3.11", "-u", "job.py"],
    ],
)
def test_interpreter_flags_before_the_script(tmp_path: Path, argv: list[str]) -> None:
    bin_dir = tmp_path / "bin"
    venv_python(bin_dir, name=argv[0])
    touch(tmp_path, "job.py")

    found = lookup(argv, workdir=tmp_path, env={"PATH": str(bin_dir)})

    assert found is not None
    assert (found.found, found.kind, found.target) == (True, "script", "job.py")


def test_a_folder_is_a_script_only_with_main(tmp_path: Path) -> None:
    touch(tmp_path, "app/__main__.py", "tool/helpers.py")
    env = {"PATH": VENV_BIN}

    app = lookup(["python", "app"], workdir=tmp_path, env=env)
    tool = lookup(["python", "tool"], workdir=tmp_path, env=env)

    assert app is not None
    assert app.found
    assert tool is not None
    assert not tool.found
    assert tool.message == "script tool is a folder without __main__.py"


# --- nothing to look up -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["python", "-c", "print(1)"],
        ["python", "-uc", "print(1)"],
        ["python"],
        ["python", "-V"],
        ["python", "-"],
        ["bash", "-c", "echo hi"],
        ["bash", "-euc", "echo hi"],
        ["sh", "-s"],
    ],
)
def test_nothing_to_look_up(tmp_path: Path, argv: list[str]) -> None:
    env = {"PATH": f"{VENV_BIN}{os.pathsep}/bin{os.pathsep}/usr/bin"}

    assert lookup(argv, workdir=tmp_path, env=env) is None


# --- the interpreter itself -------------------------------------------------------------------


def test_missing_interpreter_is_the_not_found(tmp_path: Path) -> None:
    touch(tmp_path, "job.py")
    empty = tmp_path / "empty"
    empty.mkdir()

    found = lookup(["python3", "job.py"], workdir=tmp_path, env={"PATH": str(empty)})

    assert found == Lookup(
        False, "program", "python3", None, [], "program python3 not found on PATH"
    )


def test_missing_interpreter_is_reported_even_for_python_c(tmp_path: Path) -> None:
    found = lookup(["python", "-c", "pass"], workdir=tmp_path, env={"PATH": str(tmp_path)})

    assert found is not None
    assert found.message == "program python not found on PATH"


def test_missing_shell(tmp_path: Path) -> None:
    touch(tmp_path, "deploy.sh")

    found = lookup(["bash", "deploy.sh"], workdir=tmp_path, env={"PATH": str(tmp_path / "no")})

    assert found is not None
    assert (found.found, found.target, found.message) == (
        False,
        "bash",
        "program bash not found on PATH",
    )


def test_interpreter_given_as_a_path(tmp_path: Path) -> None:
    touch(tmp_path, "job.py")
    venv_python = str(Path(VENV_BIN) / "python")

    ok = lookup([venv_python, "job.py"], workdir=tmp_path, env={})
    missing = lookup([".venv/bin/python", "job.py"], workdir=tmp_path, env={})

    assert ok is not None
    assert ok.found
    assert missing == Lookup(
        False, "program", ".venv/bin/python", None, [], "program .venv/bin/python does not exist"
    )


# --- shell scripts ----------------------------------------------------------------------------


def test_misspelt_shell_script_offers_the_real_one(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "scripts/backfill.sh",
        "scripts/backfill_games.py",
        "scripts/refill.sh",
        "scripts/deploy.sh",
        "docs/backfill.md",
    )

    found = lookup(
        ["bash", "scripts/backfil.sh", "2026-01-25"],
        workdir=tmp_path,
        env={"PATH": "/bin:/usr/bin"},
    )

    assert found is not None
    assert found.message == "script scripts/backfil.sh does not exist"
    assert found.alternatives == ["scripts/backfill.sh", "scripts/backfill_games.py"]


@pytest.mark.parametrize(
    "argv",
    [
        ["bash", "run.sh"],
        ["sh", "run.sh", "--flag"],
        ["bash", "-e", "-o", "pipefail", "run.sh"],
        ["bash", "-eo", "pipefail", "--norc", "run.sh"],
        ["bash", "--", "run.sh"],
    ],
)
def test_shell_script_by_file(tmp_path: Path, argv: list[str]) -> None:
    touch(tmp_path, "run.sh")  # not executable: `bash run.sh` does not need it to be

    found = lookup(argv, workdir=tmp_path, env={"PATH": "/bin:/usr/bin"})

    assert found is not None
    assert (found.found, found.kind, found.resolved) == (True, "script", str(tmp_path / "run.sh"))


# --- programs: paths and PATH -----------------------------------------------------------------


def test_program_on_a_custom_path(tmp_path: Path) -> None:
    tools = tmp_path / "tools"
    touch(tools, "mytool", executable=True)
    touch(tools, "notexec")
    env = {"PATH": f"{tmp_path / 'nothing'}{os.pathsep}{tools}"}

    found = lookup(["mytool", "--x"], workdir=tmp_path, env=env)
    not_exec = lookup(["notexec"], workdir=tmp_path, env=env)
    missing = lookup(["jq", "."], workdir=tmp_path, env=env)

    assert found == Lookup(
        True,
        "program",
        "mytool",
        str(tools / "mytool"),
        [],
        f"program mytool found at {tools / 'mytool'}",
    )
    assert not_exec is not None
    assert not_exec.message == "program notexec not found on PATH"
    assert missing == Lookup(False, "program", "jq", None, [], "program jq not found on PATH")


def test_relative_path_entries_are_relative_to_workdir(tmp_path: Path) -> None:
    touch(tmp_path, "node_bin/prettier", executable=True)

    found = lookup(["prettier"], workdir=tmp_path, env={"PATH": "node_bin"})

    assert found is not None
    assert found.found
    assert found.resolved == str(tmp_path / "node_bin" / "prettier")


def test_program_named_by_path(tmp_path: Path) -> None:
    touch(tmp_path, "bin/deploy_live_export.sh", executable=True)
    touch(tmp_path, "bin/plain.sh")
    env = {"PATH": "/usr/bin"}

    ok = lookup(["./bin/deploy_live_export.sh", "prod"], workdir=tmp_path, env=env)
    plain = lookup(["./bin/plain.sh"], workdir=tmp_path, env=env)
    missing = lookup(["./bin/deploy_export.sh"], workdir=tmp_path, env=env)

    assert ok is not None
    assert ok.found
    assert ok.resolved == str(tmp_path / "bin/deploy_live_export.sh")
    assert plain is not None
    assert (plain.found, plain.message) == (False, "program ./bin/plain.sh is not executable")
    assert missing is not None
    assert missing.message == "program ./bin/deploy_export.sh does not exist"
    assert missing.alternatives[0] == "bin/deploy_live_export.sh"


# --- python -m --------------------------------------------------------------------------------


def test_module_found_under_workdir(tmp_path: Path) -> None:
    touch(tmp_path, "pipeline/__init__.py", "pipeline/upcoming_team_game_context.py")

    found = lookup(
        ["python", "-m", "pipeline.upcoming_team_game_context", "--backfill-mode"],
        workdir=tmp_path,
        env={"PATH": VENV_BIN},
    )

    path = tmp_path / "pipeline/upcoming_team_game_context.py"
    assert found == Lookup(
        True,
        "module",
        "pipeline.upcoming_team_game_context",
        str(path),
        [],
        f"module pipeline.upcoming_team_game_context found at {path}",
    )


def test_module_as_a_package_with_main_and_attached_flag(tmp_path: Path) -> None:
    touch(tmp_path, "tools/report/__init__.py", "tools/report/__main__.py")

    found = lookup(["python", "-mtools.report"], workdir=tmp_path, env={"PATH": VENV_BIN})

    assert found is not None
    assert found.resolved == str(tmp_path / "tools/report/__main__.py")


def test_package_without_main_cannot_be_run(tmp_path: Path) -> None:
    touch(tmp_path, "tools/__init__.py", "tools/report.py")

    found = lookup(["python", "-m", "tools"], workdir=tmp_path, env={"PATH": VENV_BIN})

    assert found is not None
    assert not found.found
    assert found.message == f"module tools is a package without __main__.py ({tmp_path / 'tools'})"


def test_module_on_pythonpath_relative_to_workdir(tmp_path: Path) -> None:
    touch(tmp_path, "src/etl/load.py")
    env = {"PATH": VENV_BIN, "PYTHONPATH": f"/nonexistent{os.pathsep}src"}

    found = lookup(["python", "-m", "etl.load"], workdir=tmp_path, env=env)
    ignored = lookup(["python", "-E", "-m", "etl.load"], workdir=tmp_path, env=env)

    assert found is not None
    assert found.resolved == str(tmp_path / "src/etl/load.py")
    assert ignored is not None
    assert not ignored.found


def test_isolated_mode_does_not_search_workdir(tmp_path: Path) -> None:
    touch(tmp_path, "localmod.py")
    env = {"PATH": VENV_BIN}

    normal = lookup(["python", "-m", "localmod"], workdir=tmp_path, env=env)
    isolated = lookup(["python", "-I", "-m", "localmod"], workdir=tmp_path, env=env)

    assert normal is not None
    assert normal.found
    assert isolated is not None
    assert not isolated.found


def test_missing_module_message_and_alternatives(tmp_path: Path) -> None:
    touch(tmp_path, *PROCESSOR_FILES)

    found = lookup(
        ["python", "-m", "data_processors.analytics.upcoming_team_game_contxt"],
        workdir=tmp_path,
        env={"PATH": VENV_BIN},
    )

    assert found is not None
    assert not found.found
    assert found.kind == "module"
    assert found.message == (
        "module data_processors.analytics.upcoming_team_game_contxt not found under "
        f"{tmp_path} or PYTHONPATH, nor installed for python"
    )
    assert (
        found.alternatives[0] == "data_processors/analytics/upcoming_team_game_context/__main__.py"
    )
    assert not any(alt.endswith("__init__.py") for alt in found.alternatives)


def test_misspelt_package_of_a_module_suggests_the_real_module(tmp_path: Path) -> None:
    touch(tmp_path, *PROCESSOR_FILES)

    found = lookup(
        [
            "python",
            "-m",
            "data_processors.analytics.upcoming_team_game_contxt.upcoming_team_game_context_processor",
        ],
        workdir=tmp_path,
        env={"PATH": VENV_BIN},
    )

    assert found is not None
    assert not found.found
    assert found.alternatives[0] == (
        "data_processors/analytics/upcoming_team_game_context/"
        "upcoming_team_game_context_processor.py"
    )
    assert "scripts/validate_tonight_data.py" not in found.alternatives


def test_module_lookup_never_runs_the_module(tmp_path: Path) -> None:
    marker = tmp_path / "imported.marker"
    side_effect = f"open({str(marker)!r}, 'w').close()\nraise SystemExit('imported!')\n"
    touch(tmp_path, "pkg/__init__.py", "pkg/sub/__init__.py", "pkg/sub/job.py", text=side_effect)
    touch(tmp_path, "pkg/sub/__main__.py", text=side_effect)
    env = {"PATH": VENV_BIN, "PYTHONPATH": str(tmp_path)}

    for module in ["pkg.sub.job", "pkg.sub", "pkg.sub.missing"]:
        lookup(["python", "-m", module], workdir=tmp_path, env=env)
    job = lookup(["python", "-m", "pkg.sub.job"], workdir=tmp_path, env=env)

    assert job is not None
    assert job.found
    assert not marker.exists()


def test_module_installed_for_the_interpreter(tmp_path: Path) -> None:
    env = {"PATH": VENV_BIN}

    stdlib = lookup(["python", "-m", "json.tool"], workdir=tmp_path, env=env)
    editable = lookup(["python", "-m", "agent"], workdir=tmp_path, env=env)
    missing = lookup(["python", "-m", "no_such_module_here.cli"], workdir=tmp_path, env=env)

    assert stdlib is not None
    assert stdlib.found
    assert stdlib.resolved is not None
    assert stdlib.resolved.endswith("json/tool.py")
    assert editable is not None
    assert editable.found  # this project, installed editable in the venv
    assert missing is not None
    assert missing.message == (
        f"module no_such_module_here.cli not found under {tmp_path} or PYTHONPATH, "
        "nor installed for python"
    )


def test_interpreter_sys_path_is_asked_once_and_in_isolated_mode(tmp_path: Path) -> None:
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.txt"
    site = venv_python(bin_dir, calls=calls)
    touch(site, "vendor_tool/__init__.py", "vendor_tool/__main__.py")
    env = {"PATH": str(bin_dir)}

    first = lookup(["python", "-m", "vendor_tool"], workdir=tmp_path, env=env)
    second = lookup(["python", "-m", "other_tool"], workdir=tmp_path, env=env)

    assert first is not None
    assert first.resolved == str(site / "vendor_tool/__main__.py")
    assert second is not None
    assert not second.found
    lines = calls.read_text().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("-I -c ")


def test_setuptools_editable_mapping_is_read_not_run(tmp_path: Path) -> None:
    bin_dir, src = tmp_path / "bin", tmp_path / "checkout/src/mytool"
    site = venv_python(bin_dir)
    marker = tmp_path / "finder-ran.marker"
    finder = (
        f"open({str(marker)!r}, 'w').close()\n"
        f"MAPPING: dict[str, str] = {{'mytool': {str(src)!r}}}\n"
        "NAMESPACES: dict[str, list[str]] = {}\n"
    )
    touch(site, "__editable___mytool_0_1_finder.py", text=finder)
    touch(src, "__init__.py", "cli.py")

    found = lookup(
        ["python", "-m", "mytool.cli"], workdir=tmp_path / "w", env={"PATH": str(bin_dir)}
    )

    assert found is not None
    assert found.resolved == str(src / "cli.py")
    assert not marker.exists()


# --- closest_files and list_files -------------------------------------------------------------


def test_list_files_skips_noise(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "bin/export.sh",
        ".git/hooks/export.sh",
        ".venv/bin/export.py",
        "venv/lib/export.py",
        "node_modules/x/export.js",
        "pkg/__pycache__/export.cpython-311.pyc",
        ".runbook/warehouse.duckdb",
        "reports/run-1/report.md",
        ".hidden/export.py",
        ".env",
        "pkg/export.py",
    )

    assert list_files(tmp_path) == ["bin/export.sh", "pkg/export.py"]


def test_list_files_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    touch(tmp_path, *(f"f{i}.py" for i in range(10)))
    monkeypatch.setattr(preflight, "MAX_FILES", 4)

    assert len(list_files(tmp_path)) == 4


def test_closest_files_uses_a_given_file_list(tmp_path: Path) -> None:
    files = ["jobs/ExportApiTables.py", "jobs/nightly_export_api.py", "jobs/cleanup.py"]

    # nothing exists on disk: the list given is the one judged, no walk is made;
    # camelCase splits into words, and spelling is compared on the words (export_api_tables)
    assert closest_files("bin/export_api_data.py", tmp_path, files=files) == [
        "jobs/ExportApiTables.py",
        "jobs/nightly_export_api.py",
    ]
    assert closest_files("bin/export_api_data.py", tmp_path, limit=1, files=files) == [
        "jobs/ExportApiTables.py"
    ]
    assert closest_files("bin/export_api_data.py", tmp_path, limit=0, files=files) == []


def test_closest_files_accepts_an_absolute_missing_path(tmp_path: Path) -> None:
    touch(tmp_path, *INCIDENT_FILES)

    assert "scripts/daily_export.py" in closest_files(
        str(tmp_path / "bin/export_api_data.py"), tmp_path
    )


def test_folder_words_count_a_little(tmp_path: Path) -> None:
    touch(tmp_path, "exports/publish.py", "tools/publish.py", "tools/unrelated.py")

    # the folder named like the missing script's words is offered; its namesake elsewhere is not
    assert closest_files("bin/export_api.py", tmp_path) == ["exports/publish.py"]


def test_data_and_docs_are_not_offered_for_a_script(tmp_path: Path) -> None:
    touch(tmp_path, "docs/export_api_data.md", "data/export_api_data.csv", "bin/export_api.sh")

    assert closest_files("bin/export_api_data.py", tmp_path) == ["bin/export_api.sh"]


def test_program_missing_from_path_offers_a_script_of_that_name(tmp_path: Path) -> None:
    touch(tmp_path, "bin/sync-odds.sh", "bin/deploy.sh")

    found = lookup(["sync_odds", "--all"], workdir=tmp_path, env={"PATH": "/usr/bin"})

    assert found == Lookup(
        False,
        "program",
        "sync_odds",
        None,
        ["bin/sync-odds.sh"],
        "program sync_odds not found on PATH",
    )


def test_the_interpreter_is_not_asked_for_the_users_own_module(tmp_path: Path) -> None:
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.txt"
    venv_python(bin_dir, calls=calls)
    touch(tmp_path, "pipeline/team_context.py")

    found = lookup(
        ["python", "-m", "pipeline.team_context"], workdir=tmp_path, env={"PATH": str(bin_dir)}
    )

    assert found is not None
    assert found.found
    assert not calls.exists()
