"""Tests for agent.record: its models are built on first use, or all at once before threads."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

PROBE = """
from agent.record import RunRecord, build_models, _Model

def models():
    todo, out = [_Model], []
    while todo:
        m = todo.pop()
        todo.extend(m.__subclasses__())
        out.append(m)
    return [m for m in out if m is not _Model]

def kinds():
    return sorted({type(m.__pydantic_validator__).__name__ for m in models()})

print(len(models()), kinds())
build_models()
print(kinds())
"""


def test_record_models_are_deferred_until_built_all_at_once() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    count, before = out[0].split(" ", 1)
    assert int(count) >= 9
    assert before == "['MockValSer']"
    assert out[1] == "['SchemaValidator']"


def test_read_runs_passes_over_what_is_not_a_readable_run(tmp_path: Path) -> None:
    from agent.record import RunRecord, read_runs, write_record

    good = tmp_path / "20260126T050000Z-a-0000"
    good.mkdir()
    at = datetime(2026, 1, 26, 5, 0, tzinfo=UTC)
    write_record(
        RunRecord(
            run_id=good.name,
            runbook_id="a",
            runbook_path="a.yaml",
            runbook_sha256="0" * 64,
            title="A",
            operator="o",
            host="h",
            tool_version="0",
            started_at=at,
            ended_at=at,
        ),
        good / "run.json",
    )
    for name, text in [("corrupt", "{not json"), ("foreign", '{"x": 1}')]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "run.json").write_text(text)
    (tmp_path / "no-record").mkdir()
    assert [(d.name, r.run_id) for d, r in read_runs(tmp_path)] == [(good.name, good.name)]
    assert read_runs(tmp_path / "missing") == []


def test_journal_lines_stay_whole_when_threads_append_at_once(tmp_path: Path) -> None:
    import threading

    from agent.record import Journal

    journal = Journal(tmp_path / "journal.jsonl")
    payload = "x" * 5000  # long lines: a torn write would show

    def append(n: int) -> None:
        for i in range(200):
            journal.append("spawned", sync=False, step=f"s{n}", i=i, payload=payload)

    threads = [threading.Thread(target=append, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    journal.close()
    events = Journal.read(tmp_path / "journal.jsonl")
    assert len(events) == 1600
    assert sorted((e["step"], e["i"]) for e in events) == sorted(
        (f"s{n}", i) for n in range(8) for i in range(200)
    )


def test_a_soon_line_is_written_at_once_and_fsynced_beside_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import threading

    from agent import record
    from agent.record import Journal

    synced_by: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:  # the real fsync, noting which thread asked for it
        synced_by.append(threading.current_thread().name)
        real_fsync(fd)

    monkeypatch.setattr(record.os, "fsync", fsync)
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    for i in range(50):
        journal.append("step_finished", soon=True, step=f"s{i}", result={})
        # Written before append returns: a reader (resume after kill -9) sees it at once.
        assert Journal.read(path)[-1]["step"] == f"s{i}"
    assert "MainThread" not in synced_by  # no result waited for its fsync
    journal.append("run_finished", status="COMPLETE")
    assert synced_by[-1] == "MainThread"  # a plain append is durable before it returns
    journal.close()
    assert synced_by[-1] == "MainThread"  # close makes the rest durable, then the file closes
    assert not any(t.name == "journal-sync" for t in threading.enumerate())
    assert len(Journal.read(path)) == 51


def test_load_record_names_the_folder_it_was_given(tmp_path: Path) -> None:
    import pytest

    from agent.errors import RunbookError
    from agent.record import load_record

    for given in (tmp_path / "gone", tmp_path / "gone" / "run.json"):
        with pytest.raises(RunbookError) as info:
            load_record(given)
        assert str(info.value) == f"{tmp_path / 'gone'} is not a run directory (no run.json)"
