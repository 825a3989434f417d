"""`runbook mcp`: the commands as MCP tools over stdio, confined to a root, read-only by default.

Each tool runs the command line itself (`python -m agent <command> --format json`) in the root
folder, so its result is the command's JSON document (paths relative to the root) and its
error the command's own message; a crash or a hung warehouse never takes the server down. A
run is started in its own process and session, detached: it goes on when the server ends,
like a run started from a shell, and `show` follows it through its run.json and journal.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import anyio
import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from agent import __version__
from agent.output.jsonout import history_document, validate_document

__all__ = ["Gate", "build_server", "serve"]

COMMAND_TIMEOUT = 600.0  # seconds a read-only command may take (plan may query a warehouse)
START_TIMEOUT = 300.0  # seconds a run may take to start (load, vars, lock) before it is refused
INSTRUCTIONS = """\
runbook runs incident runbooks (YAML) for data pipelines and writes their remediation reports.
Use these tools instead of running a runbook's commands in a shell: validate a runbook, review
it with plan (nothing runs), start it with run, follow it with show until `finished`, then read
report and, when steps fell short, write a follow-up runbook with followup. Paths are relative
to the server's root. Manual steps are never confirmed unless the operator said so (`yes`).
"""

VarValue = str | int | float | bool
Vars = Annotated[
    dict[str, VarValue] | None,
    Field(description="The runbook's vars: name to value (like --var name=value)."),
]
RunbookPath = Annotated[str, Field(description="A runbook file, relative to the server's root.")]
RunFolder = Annotated[
    str,
    Field(
        description="A run folder relative to the root, as `run` and `history` give it "
        "(e.g. reports/20260126T051432Z-backfill-game-context-a1b2)."
    ),
]
Reports = Annotated[
    str, Field(description="The reports folder, relative to the root (default: reports).")
]


def _var_args(values: dict[str, VarValue] | None) -> list[str]:
    out: list[str] = []
    for name, value in (values or {}).items():
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        out += ["--var", f"{name}={text}"]
    return out


def _message(stderr: str, code: int) -> str:
    """The command's own error text: its lines without warnings, or its exit code."""
    lines = [ln for ln in stderr.strip().splitlines() if ln and not ln.startswith("warning:")]
    text = "; ".join(ln.removeprefix("error: ") for ln in lines)
    return text or f"the command ended with exit code {code} and no message"


class Gate:
    """What the server lets an assistant do: the root, whether it may run, the children."""

    def __init__(self, root: Path, *, allow_run: bool) -> None:
        """Args: root: the folder paths are confined to; allow_run: let `run` start runs."""
        self.root = root.resolve()
        self.allow_run = allow_run
        self.children: list[subprocess.Popen[bytes]] = []

    def inside(self, given: str, what: str) -> str:
        """`given` as a path relative to the root; refused when it leads outside it.

        `..` and symlinks are resolved first, so neither leads out.

        Raises:
            ToolError: for a path outside the root.
        """
        if not given or "\0" in given:
            raise ToolError(f"{what}: give a path relative to the root")
        full = (self.root / given).resolve()
        if full != self.root and not full.is_relative_to(self.root):
            raise ToolError(f"{what} {given!r} is outside the root {self.root}: refused")
        return full.relative_to(self.root).as_posix() if full != self.root else "."

    def reap(self) -> None:
        """Collect the runs that ended, so none stays a zombie while the server lives."""
        self.children = [p for p in self.children if p.poll() is None]

    def command(self, *args: str) -> Any:
        """Run `python -m agent ARGS --format json` in the root; its JSON document.

        Raises:
            ToolError: with the command's message when it printed no JSON.
        """
        self.reap()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "agent", *args, "--format", "json"],
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=COMMAND_TIMEOUT,
                check=False,
                env=_child_env(),
            )
        except subprocess.TimeoutExpired:
            raise ToolError(
                f"{args[0]} took longer than {COMMAND_TIMEOUT:.0f} s: stopped"
            ) from None
        out = done.stdout.decode("utf-8", "replace")
        try:
            return json.loads(out)
        except ValueError:
            raise ToolError(
                _message(done.stderr.decode("utf-8", "replace"), done.returncode)
            ) from None

    def start(self, args: list[str]) -> str:
        """Start `python -m agent run ARGS` detached; the run folder once it has started.

        The child writes its run folder to a file when the run has started (`--started-file`);
        its stdout (the final JSON document) and stderr go to files beside it, never to the
        server's stdio, which is the protocol's channel.

        Raises:
            ToolError: with the command's message when the run ended before it started.
        """
        self.reap()
        folder = Path(tempfile.mkdtemp(prefix="runbook-mcp-run-"))
        started = folder / "run-dir"
        with (folder / "stdout.json").open("wb") as out, (folder / "stderr.log").open("wb") as err:
            child = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "agent",
                    "run",
                    *args,
                    "--quiet",
                    "--format",
                    "json",
                    "--started-file",
                    str(started),
                ],
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # a run outlives the server, and its signals
                env=_child_env(),
            )
        self.children.append(child)
        deadline = time.monotonic() + START_TIMEOUT
        while not started.is_file():
            code = child.poll()
            if code is not None and not started.is_file():
                text = (folder / "stderr.log").read_text(encoding="utf-8", errors="replace")
                raise ToolError(_message(text, code))
            if time.monotonic() > deadline:
                raise ToolError(
                    f"the run had not started after {START_TIMEOUT:.0f} s (process {child.pid}; "
                    f"its output is in {folder})"
                )
            time.sleep(0.05)
        return Path(started.read_text(encoding="utf-8")).relative_to(self.root).as_posix()


def _child_env() -> dict[str, str]:
    """The server's environment for the commands, with this package importable."""
    env = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parent.parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(x for x in (package_parent, env.get("PYTHONPATH")) if x)
    return env


async def _in_thread(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a blocking call without blocking the server's other requests."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


def build_server(root: Path, *, allow_run: bool = False) -> MCPServer:
    """The MCP server of a root folder, with the seven tools.

    Args:
        root: the folder every path is relative to and confined in.
        allow_run: let `run` start runs (otherwise it answers how to allow it).

    Returns:
        The server, ready for `run_stdio_async`.
    """
    gate = Gate(root, allow_run=allow_run)
    server: MCPServer = MCPServer(
        name="runbook", version=__version__, instructions=INSTRUCTIONS, log_level="WARNING"
    )

    @server.tool()
    async def validate(path: RunbookPath) -> dict[str, Any]:
        """Check a runbook (or incident file) without running anything.

        Each problem comes with its file, line, column and message.
        """
        rel = gate.inside(path, "path")
        entries = await _in_thread(gate.command, "validate", rel)
        return validate_document(entries)

    @server.tool()
    async def plan(
        path: RunbookPath,
        vars: Vars = None,
        offline: Annotated[bool, Field(description="Do not query the warehouse.")] = False,
    ) -> dict[str, Any]:
        """Dry-run review: every rendered command, the order, what is missing; runs nothing.

        `ok` is false when something the run needs is missing (each with its alternatives).
        """
        args = ["plan", gate.inside(path, "path"), *_var_args(vars)]
        if offline:
            args.append("--offline")
        result: dict[str, Any] = await _in_thread(gate.command, *args)
        return result

    @server.tool()
    async def run(
        path: RunbookPath,
        vars: Vars = None,
        reports: Reports = "reports",
        only: Annotated[list[str] | None, Field(description="Run only these step ids.")] = None,
        partitions: Annotated[
            list[str] | None, Field(description="Run only these partitions (--partition).")
        ] = None,
        yes: Annotated[
            bool,
            Field(
                description="Confirm manual steps unattended. Only when the operator said so; "
                "without it manual steps are SKIPPED with the reason."
            ),
        ] = False,
    ) -> dict[str, Any]:
        """Start a run; it returns once the run has started, with its run folder.

        Follow it with `show` until `finished` is true. Allowed only when the server was
        started with --allow-run.
        """
        if not gate.allow_run:
            raise ToolError(
                "run is not allowed: this server is read-only; restart it as "
                "`runbook mcp --allow-run` to let the assistant start runs"
            )
        args = [gate.inside(path, "path"), "--reports", gate.inside(reports, "reports")]
        args += _var_args(vars)
        for step in only or []:
            args += ["--only", step]
        for part in partitions or []:
            args += ["--partition", part]
        if yes:
            args.append("--yes")
        run_dir = await _in_thread(gate.start, args)
        result: dict[str, Any] = await _in_thread(gate.command, "show", run_dir)
        result["kind"] = "run"
        return result

    @server.tool()
    async def show(run: RunFolder) -> dict[str, Any]:
        """A run's progress and status: each step's status, cause, captures and counts.

        `finished` is false while it runs; `status` is then null.
        """
        result: dict[str, Any] = await _in_thread(gate.command, "show", gate.inside(run, "run"))
        return result

    @server.tool()
    async def report(run: RunFolder) -> dict[str, Any]:
        """A run's remediation report: its markdown text and path."""
        result: dict[str, Any] = await _in_thread(gate.command, "report", gate.inside(run, "run"))
        return result

    @server.tool()
    async def history(reports: Reports = "reports") -> dict[str, Any]:
        """Past runs under the reports folder, newest first."""
        rel = gate.inside(reports, "reports")
        if not (gate.root / rel).is_dir():
            return history_document([], rel)
        runs = await _in_thread(gate.command, "history", "--reports", rel)
        return history_document(runs, rel)

    @server.tool()
    async def followup(run: RunFolder) -> dict[str, Any]:
        """Write the follow-up runbook of a run that fell short (beside its runbook)."""
        rel = gate.inside(run, "run")
        _follow_up_inside(gate, rel)
        result: dict[str, Any] = await _in_thread(gate.command, "followup", rel)
        return result

    return server


def _follow_up_inside(gate: Gate, run: str) -> None:
    """Refuse a follow-up whose default place (beside the run's runbook) is outside the root."""
    try:
        data = json.loads((gate.root / run / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # the command says what is wrong with the folder
    runbook = str(data.get("runbook_path") or "")
    if runbook:
        gate.inside(str(Path(runbook).parent), "the run's runbook folder")


def serve(root: Path, *, allow_run: bool = False) -> None:
    """Serve the tools over stdio until the client closes the connection.

    Args:
        root: the folder every path is relative to and confined in.
        allow_run: let `run` start runs.
    """
    anyio.run(build_server(root, allow_run=allow_run).run_stdio_async)
