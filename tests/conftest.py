"""Shared fixtures: every test runs in its own folder, never writing into the real reports/."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

PY = sys.executable


@pytest.fixture(scope="session")
def _cache_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tests' compiled templates go: never the user's ~/.cache."""
    return tmp_path_factory.mktemp("cache-home")


@pytest.fixture(autouse=True)
def _isolated_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _cache_home: Path
) -> Iterator[None]:
    """Run each test in its tmp_path so a default `reports/` lands there."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNBOOK_OPERATOR", "tester")
    monkeypatch.setenv("XDG_CACHE_HOME", str(_cache_home))
    # Where a lock goes when the workdir cannot hold it: never the user's ~/.local/state.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / ".state"))
    yield


@pytest.fixture
def write_runbook(tmp_path: Path) -> Callable[..., Path]:
    """Write a runbook (dedented YAML) into tmp_path and return its path."""

    def write(text: str, name: str = "rb.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    return write


# Fixtures that start a real local BigQuery emulator (bqemulator) once per session.
pytest_plugins = ["tests.bqemu"]
