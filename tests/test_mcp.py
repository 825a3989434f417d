"""`runbook mcp` driven by the MCP SDK's own client over stdio, as an assistant would."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

# Without the [mcp] extra (the lowest-bounds job) this module is skipped; anyio comes with mcp.
pytest.importorskip("mcp")

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from agent.demo import DEMO_RUNBOOK, demo_env, lay_out_demo
from tests.test_jsonout import validate_schema

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
SECRET = "tok-Zq81-very-secret"
TOOLS = ["followup", "history", "plan", "report", "run", "show", "validate"]
GUARD = 120.0  # an overall guard against a hung run, never an assertion about time


def _runbook(folder: Path) -> Path:
    """A runbook that ends PARTIALLY COMPLETE: a step that prints a secret, a short step, a
    manual step, and a missing script."""
    path = folder / "rb.yaml"
    path.write_text(
        textwrap.dedent(f"""
            version: 1
            id: quick
            title: Quick
            vars:
              token: {{type: string, secret: true, required: true}}
            steps:
              - id: hello
                kind: run
                command: >-
                  {PY} -c "import sys; print('Records saved: 3'); print('key', sys.argv[1])"
                  "{{{{ token }}}}"
                capture: {{n: 'Records saved: (\\d+)'}}
                expect: [n == 3]
              - id: short
                kind: run
                command: >-
                  {PY} -c "print('Records saved: 1')"
                capture: {{n: 'Records saved: (\\d+)'}}
                expect: [n == 3]
              - id: confirm
                kind: manual
                instructions: Check the dashboard.
              - id: gone
                kind: export
                command: {PY} bin/nothing.py
            """).lstrip(),
        encoding="utf-8",
    )
    return path


@asynccontextmanager
async def _session(root: Path, *flags: str) -> AsyncIterator[ClientSession]:
    env = {
        **demo_env(),  # PATH with this interpreter first: the demo's `python` has duckdb
        "PYTHONPATH": str(ROOT),
        "RUNBOOK_OPERATOR": "tester",
        "XDG_CACHE_HOME": os.environ.get("XDG_CACHE_HOME", str(root / ".cache")),
    }
    params = StdioServerParameters(
        command=PY, args=["-m", "agent", "mcp", "--root", str(root), *flags], env=env, cwd=root
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


async def _call(session: ClientSession, name: str, **arguments: Any) -> dict[str, Any]:
    result = await session.call_tool(name, arguments)
    assert not result.is_error, result.content
    data = result.structured_content
    assert isinstance(data, dict)
    # The text block carries the same document, for clients that read only text.
    text = result.content[0]
    assert json.loads(getattr(text, "text", "")) == data
    return data


async def _error(session: ClientSession, name: str, **arguments: Any) -> str:
    result = await session.call_tool(name, arguments)
    assert result.is_error
    text = str(getattr(result.content[0], "text", ""))
    assert "\n" not in text and "Traceback" not in text
    return text


async def _until_finished(session: ClientSession, run: str) -> dict[str, Any]:
    guard = time.monotonic() + GUARD
    while True:
        doc = await _call(session, "show", run=run)
        if doc["finished"] or time.monotonic() > guard:
            return doc
        await anyio.sleep(0.2)


def test_read_only_server_lists_tools_and_refuses(tmp_path: Path) -> None:
    rb = _runbook(tmp_path)
    (tmp_path / "bad.yaml").write_text(
        "version: 1\nid: x\ntitle: T\nsteps:\n  - {id: a, kind: run, comand: ls}\n"
    )
    outside = tmp_path.parent / f"{tmp_path.name}-outside.yaml"
    outside.write_text(rb.read_text())
    (tmp_path / "link.yaml").symlink_to(outside)

    async def session() -> None:
        async with _session(tmp_path) as s:
            tools = {t.name: t for t in (await s.list_tools()).tools}
            assert sorted(tools) == TOOLS
            run_args = tools["run"].input_schema["properties"]
            assert sorted(run_args) == ["only", "partitions", "path", "reports", "vars", "yes"]
            assert all(p.get("description") for p in run_args.values())
            assert tools["run"].input_schema["required"] == ["path"]

            ok = await _call(s, "validate", path="rb.yaml")
            assert ok["valid"] is True and ok["files"][0]["file"] == "rb.yaml"
            bad = await _call(s, "validate", path="bad.yaml")
            assert bad["valid"] is False
            assert bad["files"][0]["problems"] == [
                {
                    "file": "bad.yaml",
                    "line": 5,
                    "column": 24,
                    "message": "unknown key 'comand' in step 'a'; did you mean 'command'?",
                }
            ]
            validate_schema(bad)

            plan = await _call(s, "plan", path="rb.yaml", vars={"token": SECRET}, offline=True)
            validate_schema(plan)
            assert plan["ok"] is False and plan["path"] == "rb.yaml"
            assert {"step": "gone", "what": "script bin/nothing.py does not exist"} in plan[
                "missing"
            ]
            assert SECRET not in json.dumps(plan)

            refused = await _error(s, "run", path="rb.yaml", vars={"token": SECRET})
            assert "runbook mcp --allow-run" in refused
            assert not (tmp_path / "reports").exists()

            for tool, args in [
                ("validate", {"path": "../x.yaml"}),
                ("validate", {"path": str(outside)}),
                ("validate", {"path": "link.yaml"}),
                ("show", {"run": "../.."}),
                ("history", {"reports": "/"}),
            ]:
                assert "outside the root" in await _error(s, tool, **args), (tool, args)

            missing = await _error(s, "show", run="reports/nope")
            assert "is not a run directory" in missing

            empty = await _call(s, "history")
            assert empty["runs"] == [] and empty["reports"] == "reports"

    anyio.run(session)


def test_run_show_report_history_followup(tmp_path: Path) -> None:
    _runbook(tmp_path)

    async def session() -> None:
        async with _session(tmp_path, "--allow-run") as s:
            bad = await _error(s, "run", path="rb.yaml")  # the required secret var is missing
            assert "token" in bad

            started = await _call(s, "run", path="rb.yaml", vars={"token": SECRET})
            validate_schema(started)
            run = started["run_dir"]
            assert run.startswith("reports/") and started["kind"] == "run"
            assert (tmp_path / run / "run.json").is_file()

            done = await _until_finished(s, run)
            assert done["finished"] is True, "the run did not end within the guard"
            validate_schema(done)
            assert done["status"] == "PARTIALLY COMPLETE" and done["exit_code"] == 3
            steps = {st["id"]: st for st in done["steps"]}
            assert steps["hello"]["status"] == "SUCCESS"
            assert steps["hello"]["captures"] == {"n": 3}
            assert steps["short"]["cause"] == "expectation"
            assert steps["short"]["expectations"][0]["ok"] is False
            # The assistant never confirms a manual step: it is skipped with the reason.
            assert steps["confirm"]["status"] == "SKIPPED"
            assert steps["confirm"]["cause"] == "unconfirmed"
            assert steps["gone"]["status"] == "NOT_FOUND"
            assert done["shortfalls"] == ["short", "confirm", "gone"]
            assert done["report"] == f"{run}/report.md"
            assert done["vars"] == {"token": "***"}

            report = await _call(s, "report", run=run)
            validate_schema(report)
            assert report["path"] == f"{run}/report.md"
            assert report["text"] == (tmp_path / run / "report.md").read_text()

            history = await _call(s, "history")
            validate_schema(history)
            assert [r["run_dir"] for r in history["runs"]] == [run]

            follow = await _call(s, "followup", run=run)
            validate_schema(follow)
            assert follow["path"] == "rb.followup.yaml"
            assert follow["text"] == (tmp_path / "rb.followup.yaml").read_text()

            # Secrets: in no result, whatever the step printed.
            for doc in (started, done, report, history, follow):
                assert SECRET not in json.dumps(doc)
            assert "key ***" in steps["hello"]["output_tail"]

            # With `yes` the operator confirmed: the manual step is confirmed unattended.
            yes = await _call(
                s, "run", path="rb.yaml", vars={"token": SECRET}, only=["confirm"], yes=True
            )
            confirmed = await _until_finished(s, yes["run_dir"])
            step = next(st for st in confirmed["steps"] if st["id"] == "confirm")
            assert step["status"] == "SUCCESS" and step["confirmed_by"] == "unattended"

    anyio.run(session)


def test_an_assistant_session_over_the_demo(tmp_path: Path) -> None:
    """The demo pipeline, as an assistant would work it: plan, run, follow, read the report."""
    demo = lay_out_demo(tmp_path / "demo")

    async def session() -> None:
        async with _session(demo, "--allow-run") as s:
            plan = await _call(s, "plan", path=DEMO_RUNBOOK, offline=True)
            validate_schema(plan)
            export = next(st for st in plan["steps"] if st["id"] == "export")
            assert export["missing"] == ["script bin/export_api_data.py does not exist"]
            assert "scripts/daily_export.py" in export["alternatives"]

            started = await _call(s, "run", path=DEMO_RUNBOOK)
            done = await _until_finished(s, started["run_dir"])
            assert done["finished"] is True, "the run did not end within the guard"
            validate_schema(done)
            assert done["status"] == "PARTIALLY COMPLETE" and done["exit_code"] == 3
            steps = {st["id"]: st for st in done["steps"]}
            assert steps["export"]["status"] == "NOT_FOUND"
            assert steps["validation"]["cause"] == "expectation"

            report = await _call(s, "report", run=started["run_dir"])
            assert "concern GSW@MIN and SAC@DET" in report["text"]
            history = await _call(s, "history")
            validate_schema(history)
            assert [r["run_dir"] for r in history["runs"]] == [started["run_dir"]]

    anyio.run(session)
