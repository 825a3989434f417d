"""The command line as users meet it: exit codes, outputs, imports, machine-readable formats."""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import typer

from agent import cli
from agent.cli import main
from agent.errors import RunbookError, UsageError
from agent.plan.schema import schema_text
from tests.procs import run_cli

ROOT = Path(__file__).resolve().parent.parent
SPEC_EXAMPLE = ROOT / "runbooks" / "examples" / "spec-example.yaml"
DEMO = ROOT / "runbooks" / "demo" / "backfill-game-context.yaml"
PY = sys.executable
Write = Callable[..., Path]


def test_validate_ok_and_broken(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nid: x\ntitle: T\nsteps:\n  - {id: a, kind: run, comand: ls}\n")
    ok = run_cli("validate", str(SPEC_EXAMPLE), str(DEMO), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.count(": ok") == 2
    res = run_cli("validate", "bad.yaml", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr == (
        "bad.yaml:5:24: unknown key 'comand' in step 'a'; did you mean 'command'?\n"
    )
    js = run_cli("validate", "bad.yaml", "--format", "json", cwd=tmp_path)
    assert js.returncode == 2
    assert json.loads(js.stdout) == [
        {
            "file": "bad.yaml",
            "valid": False,
            "problems": [
                {
                    "file": "bad.yaml",
                    "line": 5,
                    "column": 24,
                    "message": "unknown key 'comand' in step 'a'; did you mean 'command'?",
                }
            ],
            "warnings": [],
        }
    ]


def test_plan_finds_missing_script_and_names_alternative(tmp_path: Path) -> None:
    """The acceptance case of the format issue: the spec's example in a folder that lacks
    bin/export_api_data.py but has bin/operations/export_bigquery_tables.sh."""
    shutil.copy(SPEC_EXAMPLE, tmp_path / "rb.yaml")
    (tmp_path / "bin" / "operations").mkdir(parents=True)
    (tmp_path / "bin" / "operations" / "export_bigquery_tables.sh").write_text("echo\n")
    res = run_cli("plan", "rb.yaml", "--var", "date=2026-01-25", "--offline", cwd=tmp_path)
    assert res.returncode == 3, res.stderr
    assert "- ❌ **Missing:** script bin/export_api_data.py does not exist" in res.stdout
    assert "- Closest existing files: `bin/operations/export_bigquery_tables.sh`" in res.stdout
    assert "python bin/export_api_data.py --date 2026-01-25" in res.stdout
    js = run_cli(
        "plan", "rb.yaml", "--var", "date=2026-01-25", "--offline", "--format", "json", cwd=tmp_path
    )
    data = json.loads(js.stdout)
    assert data["ok"] is False
    assert data["order"] == [
        "team_context",
        "verify_counts",
        "export",
        "validation",
        "wait_boxscores",
    ]
    export = next(s for s in data["steps"] if s["id"] == "export")
    assert export["alternatives"] == ["bin/operations/export_bigquery_tables.sh"]
    # plan writes nothing but its output.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "rb.yaml"]


def test_plan_of_demo_shows_current_counts(tmp_path: Path) -> None:
    from agent.demo import lay_out_demo

    folder = lay_out_demo(tmp_path / "demo")
    out = tmp_path / "plan.md"
    res = run_cli("plan", str(folder / "backfill-game-context.yaml"), "-o", str(out))
    text = out.read_text()
    assert res.returncode == 3  # the export script is missing
    assert "- Now: `nba_analytics.upcoming_team_game_context`: 0 rows" in text
    assert (
        "- Now: `nba_analytics.team_defense_game_summary`: 0 rows, 16 expected keys missing" in text
    )
    assert "flowchart TD" in text


def test_bad_var_and_missing_required_var(tmp_path: Path) -> None:
    shutil.copy(SPEC_EXAMPLE, tmp_path / "rb.yaml")
    res = run_cli("plan", "rb.yaml", "--offline", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr == "error: missing required var 'date': pass --var date=<date>\n"
    res = run_cli("plan", "rb.yaml", "--offline", "--var", "date=yesterday", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr == (
        "error: var 'date' is of type date: 'yesterday' is not a date (YYYY-MM-DD)\n"
    )
    res = run_cli("plan", "rb.yaml", "--offline", "--var", "dat=2026-01-25", cwd=tmp_path)
    assert res.stderr.startswith("error: unknown var 'dat'; did you mean 'date'?")


def test_schema_matches_committed_copy(capsys: pytest.CaptureFixture[str]) -> None:
    code = _run_main(["schema"])
    assert code == 0
    assert capsys.readouterr().out == schema_text()


def _run_main(argv: list[str]) -> int:
    old = sys.argv
    sys.argv = ["runbook", *argv]
    try:
        return main()
    finally:
        sys.argv = old


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["validate", str(DEMO)],
        ["plan", str(SPEC_EXAMPLE), "--offline", "--var", "date=2026-01-25"],
    ],
)
def test_light_commands_do_not_import_warehouse_clients(args: list[str], tmp_path: Path) -> None:
    probe = (
        "import sys, runpy\n"
        f"sys.argv = ['runbook', *{args!r}]\n"
        "try:\n    runpy.run_module('agent', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in sys.modules if m.startswith(('google.cloud', 'duckdb')))\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    res = subprocess.run(
        [PY, "-c", probe], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert "HEAVY []" in res.stderr, res.stderr[-2000:]


def test_init_writes_a_runbook_that_validates(tmp_path: Path) -> None:
    res = run_cli("init", "starter.yaml", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert run_cli("validate", "starter.yaml", cwd=tmp_path).returncode == 0
    again = run_cli("init", "starter.yaml", cwd=tmp_path)
    assert again.returncode == 2
    assert again.stderr == "error: starter.yaml exists; choose another name\n"


def _first_line(path: Path) -> str:
    return path.read_text(encoding="utf-8").splitlines()[0]


def test_init_points_at_the_schema_rather_than_copying_it(tmp_path: Path) -> None:
    # Outside any checkout: the package's own copy, by its absolute path; nothing is copied.
    # Which package that is, the child process (installed or editable) says, not this one.
    where = subprocess.run(
        [sys.executable, "-c", "import agent, pathlib; print(pathlib.Path(agent.__file__))"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    package = Path(where.stdout.strip()).resolve().parent
    bundled = package / "_data" / "runbook.schema.json"
    package_schema = (
        bundled if bundled.is_file() else package.parent / "runbooks" / "runbook.schema.json"
    )
    assert run_cli("init", "starter.yaml", cwd=tmp_path).returncode == 0
    assert _first_line(tmp_path / "starter.yaml") == (
        f"# yaml-language-server: $schema={package_schema}"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["starter.yaml"]
    # Inside a checkout (or project) with runbooks/runbook.schema.json: that one, relative.
    project = tmp_path / "project"
    (project / "runbooks" / "incident").mkdir(parents=True)
    (project / "runbooks" / "runbook.schema.json").write_text(schema_text(), encoding="utf-8")
    for target, line in [
        ("runbooks/incident/a.yaml", "# yaml-language-server: $schema=../runbook.schema.json"),
        ("runbooks/b.yaml", "# yaml-language-server: $schema=runbook.schema.json"),
        ("c.yaml", "# yaml-language-server: $schema=runbooks/runbook.schema.json"),
    ]:
        res = run_cli("init", target, cwd=project)
        assert res.returncode == 0, res.stderr
        assert _first_line(project / target) == line
        assert run_cli("validate", target, cwd=project).returncode == 0
    assert sorted(p.name for p in (project / "runbooks" / "incident").iterdir()) == ["a.yaml"]


def test_import_names_the_schema_as_init_does(tmp_path: Path) -> None:
    plan = next((ROOT / "tests" / "plans").glob("*.md"))
    project = tmp_path / "project"
    (project / "runbooks").mkdir(parents=True)
    (project / "runbooks" / "runbook.schema.json").write_text(schema_text(), encoding="utf-8")
    for out in ("runbooks/incident/draft.yaml", "draft.yaml"):
        assert run_cli("import", str(plan), "-o", out, cwd=project).returncode == 0
        assert run_cli("init", f"{out}.init", cwd=project).returncode == 0
        assert _first_line(project / out) == _first_line(project / f"{out}.init")
    assert _first_line(project / "draft.yaml") == (
        "# yaml-language-server: $schema=runbooks/runbook.schema.json"
    )
    # On stdout in a checkout: meant for runbooks/<folder>/, as the repository's runbooks are.
    res = run_cli("import", str(plan), cwd=project)
    assert res.stdout.splitlines()[0] == "# yaml-language-server: $schema=../runbook.schema.json"


def test_version() -> None:
    from agent import __version__

    for argv in (["--version"], ["--version", "validate"]):
        res = run_cli(*argv)
        assert (res.returncode, res.stdout, res.stderr) == (0, f"runbook {__version__}\n", "")


COMMANDS = [
    [],
    *([name] for name in sorted(c.name for c in typer.main.get_command(cli.app).commands.values())),
]


def _help_env() -> dict[str, str]:
    import os

    return {**os.environ, "COLUMNS": "100"}


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) or "runbook" for c in COMMANDS])
def test_help_by_h_names_values_not_python_types(command: list[str]) -> None:
    short = run_cli(*command, "-h", env=_help_env())
    long = run_cli(*command, "--help", env=_help_env())
    assert short.returncode == long.returncode == 0, short.stderr
    assert short.stdout == long.stdout
    assert short.stdout.startswith(f"Usage: runbook {' '.join([*command, '[OPTIONS]'])}")
    for python_type in ("<list", "str]", "{files}", "int range", "<path>", "<str>", "<int>", "{"):
        assert python_type not in short.stdout


def test_help_lines_of_run_and_validate() -> None:
    run = run_cli("run", "-h", env=_help_env()).stdout.splitlines()
    assert run[0] == "Usage: runbook run [OPTIONS] FILE"
    for line in [
        "  FILE  The runbook.  [required]",
        "  --var NAME=VALUE          Set a var (repeatable).",
        "  --reports DIR             Where run directories go.  [default: reports]",
        "  --only STEP               Run only this step (repeatable).",
        "  --from STEP               Start at this step.",
        "  --warehouse-endpoint URL  BigQuery API endpoint (emulator).",
        "  --max-log-bytes BYTES     Cap each step's log file.",
        "  --junit FILE              Also write JUnit XML here.",
        "  --notify URL              Post a summary to this Slack-style webhook.",
        "  -q, --quiet               Print no progress, only how the run ended.",
        "  -h, --help                Show this message and exit.",
    ]:
        assert line in run
    validate = run_cli("validate", "-h", env=_help_env()).stdout.splitlines()
    assert validate[0] == "Usage: runbook validate [OPTIONS] FILE..."
    assert "  FILE...  Runbook or incident files to check.  [required]" in validate
    init = run_cli("init", "-h", env=_help_env()).stdout.splitlines()
    assert init[0] == "Usage: runbook init [OPTIONS] [FILE]"
    top = run_cli("-h", env=_help_env()).stdout.splitlines()
    assert "  --version             Print the version and exit." in top


def test_every_option_and_argument_has_a_description() -> None:
    group = typer.main.get_command(cli.app)
    commands = {"runbook": group, **getattr(group, "commands", {})}
    missing = [
        f"{name} {param.name}"
        for name, command in commands.items()
        for param in command.params
        if not (getattr(param, "help", None) or "").strip()
    ]
    assert missing == []
    assert sum(len(c.params) for c in commands.values()) > 40


def _complete(words: str, cwd: Path) -> list[str]:
    import os

    env = {
        **os.environ,
        "_RUNBOOK_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split(" ")) - 1),
    }
    res = run_cli(env=env, cwd=cwd)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    return res.stdout.split()


def test_completion_of_step_ids_and_statuses(tmp_path: Path) -> None:
    shutil.copy(SPEC_EXAMPLE, tmp_path / "rb.yaml")
    steps = ["team_context", "verify_counts", "export", "validation", "wait_boxscores"]
    assert _complete("runbook run rb.yaml --only ", tmp_path) == steps
    assert _complete("runbook run rb.yaml --only export --only v", tmp_path) == [
        "verify_counts",
        "validation",
    ]
    assert _complete("runbook run --var date=2026-01-25 -y rb.yaml --from ex", tmp_path) == [
        "export"
    ]
    assert _complete(f"runbook run {SPEC_EXAMPLE} --from wait", tmp_path) == ["wait_boxscores"]
    # A file that is missing or broken, or none yet: no ids, and no error.
    (tmp_path / "bad.yaml").write_text("steps: [\n")
    assert _complete("runbook run nope.yaml --only ", tmp_path) == []
    assert _complete("runbook run bad.yaml --only ", tmp_path) == []
    assert _complete("runbook run --only ", tmp_path) == []
    assert _complete("runbook history --status ", tmp_path) == [
        "complete",
        "partial",
        "failed",
        "interrupted",
    ]
    assert _complete("runbook history --status p", tmp_path) == ["partial"]


def _quick_runbook(write_runbook: Write, notify: str | None = None) -> Path:
    extra = f"notify: '{notify}'" if notify else "summary: no notification"
    return write_runbook(f"""
        version: 1
        id: quick
        title: Quick
        {extra}
        steps:
          - id: hello
            kind: run
            command: >-
              {PY} -c "print('Records saved: 3')"
            capture: {{n: 'Records saved: (\\d+)'}}
            expect: [n == 3]
          - id: short
            kind: run
            command: >-
              {PY} -c "print('Records saved: 1')"
            capture: {{n: 'Records saved: (\\d+)'}}
            expect: [n == 3]
          - id: gone
            kind: export
            command: {PY} bin/nothing.py
    """)


def test_run_history_show_report_and_junit(write_runbook: Write, tmp_path: Path) -> None:
    rb = _quick_runbook(write_runbook)
    res = run_cli("run", str(rb), "--junit", "junit.xml", cwd=tmp_path)
    assert res.returncode == 3, res.stderr
    run_dir = Path(res.stdout.strip()).parent
    assert run_dir.parent == tmp_path / "reports"
    # JUnit: one testcase per step; PARTIAL and NOT_FOUND are failures with the reason.
    root = ET.parse(tmp_path / "junit.xml").getroot()
    cases = root.findall("./testsuite/testcase")
    assert [c.get("name") for c in cases] == ["hello: hello", "short: short", "gone: gone"]
    assert cases[0].find("failure") is None
    assert cases[1].find("failure").get("message") == "expectation not met: n == 3"
    assert cases[2].find("failure").get("type") == "NOT_FOUND"
    assert root.find("testsuite").get("failures") == "2"
    hist = run_cli("history", cwd=tmp_path)
    assert hist.returncode == 0
    assert run_dir.name in hist.stdout and "PARTIALLY COMPLETE" in hist.stdout
    js = json.loads(
        run_cli("history", "--format", "json", "--status", "partial", cwd=tmp_path).stdout
    )
    assert [r["run_id"] for r in js] == [run_dir.name]
    assert (
        json.loads(
            run_cli("history", "--format", "json", "--runbook", "other", cwd=tmp_path).stdout
        )
        == []
    )
    show = run_cli("show", str(run_dir), cwd=tmp_path)
    assert "status:   PARTIALLY COMPLETE" in show.stdout
    again = run_cli("report", str(run_dir), cwd=tmp_path)
    assert again.stdout == (run_dir / "report.md").read_text()
    custom = tmp_path / "mine.md.j2"
    custom.write_text("# {{ r.heading }}\n{% for s in r.steps %}- {{ s.title }}\n{% endfor %}")
    mine = run_cli("report", str(run_dir), "--template", str(custom), cwd=tmp_path)
    assert mine.returncode == 0, mine.stderr
    assert mine.stdout.splitlines()[1:] == ["- hello", "- short", "- gone"]


class _Hook(http.server.BaseHTTPRequestHandler):
    bodies: ClassVar[list[dict[str, object]]] = []
    status = 200

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        _Hook.bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(_Hook.status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def webhook() -> Iterator[str]:
    _Hook.bodies = []
    _Hook.status = 200
    server = http.server.HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()
    thread.join()


def test_notification_posts_summary(write_runbook: Write, tmp_path: Path, webhook: str) -> None:
    rb = _quick_runbook(write_runbook, notify=webhook)
    res = run_cli("run", str(rb), "--quiet", cwd=tmp_path)
    assert res.returncode == 3
    assert len(_Hook.bodies) == 1
    body = _Hook.bodies[0]
    assert body["status"] == "PARTIALLY COMPLETE"
    assert body["counts"] == {"SUCCESS": 1, "PARTIAL": 1, "NOT_FOUND": 1}
    assert str(body["text"]).startswith(":warning: Quick: PARTIALLY COMPLETE")


def test_failed_notification_never_changes_the_result(
    write_runbook: Write, tmp_path: Path, webhook: str
) -> None:
    _Hook.status = 500
    rb = _quick_runbook(write_runbook)
    res = run_cli("run", str(rb), "--quiet", "--notify", webhook, cwd=tmp_path)
    assert res.returncode == 3
    run_dir = Path(res.stdout.strip()).parent
    assert (run_dir / "notify.log").read_text() == "notification failed: HTTP 500\n"
    res = run_cli("run", str(rb), "--quiet", "--notify", "http://127.0.0.1:9/none", cwd=tmp_path)
    assert res.returncode == 3


def test_verbose_echoes_every_line_of_a_step_that_prints_many_at_once(
    write_runbook: Write, tmp_path: Path
) -> None:
    rb = write_runbook(f"""
        version: 1
        id: chatty
        title: Chatty
        steps:
          - id: many
            kind: run
            command: >-
              {PY} -c "print(''.join(f'line {{i}}\\n' for i in range(500)), end='')"
    """)
    verbose = run_cli("run", str(rb), "-v", cwd=tmp_path)
    plain = run_cli("run", str(rb), cwd=tmp_path)
    assert verbose.returncode == plain.returncode == 0, verbose.stderr
    echoed = [n for n in range(500) if f"line {n}\n" in verbose.stdout + verbose.stderr]
    assert echoed == list(range(500))
    assert "line 3\n" not in plain.stdout + plain.stderr
    logs = sorted((tmp_path / "reports").glob("*/logs/many.log"))
    assert len(logs) == 2
    assert all(log.read_text().count("\nline ") == 500 for log in logs)


def test_unknown_step_in_only(write_runbook: Write, tmp_path: Path) -> None:
    rb = _quick_runbook(write_runbook)
    res = run_cli("run", str(rb), "--only", "helo", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr == "error: unknown step 'helo' (steps: hello, short, gone)\n"


def test_import_writes_a_draft_that_validates(tmp_path: Path) -> None:
    plan = next((ROOT / "tests" / "plans").glob("*.md"))
    sub = tmp_path / "runbooks" / "incident"
    sub.mkdir(parents=True)
    res = run_cli("import", str(plan), "-o", str(sub / "draft.yaml"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    checked = run_cli("validate", str(sub / "draft.yaml"), cwd=tmp_path)
    assert checked.returncode == 0
    # A draft lets exit 1 through and expects nothing yet: validate says it cannot fall short.
    warned = [line for line in checked.stderr.splitlines() if line.startswith("warning: ")]
    assert warned
    assert all(line.endswith("and no expect") for line in warned)
    missing = run_cli("import", "nope.md", cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: cannot read nope.md:")


def test_plan_warns_about_a_step_that_cannot_fall_short_and_still_reviews(
    write_runbook: Write, tmp_path: Path
) -> None:
    write_runbook("""
        version: 1
        id: lenient
        title: Lenient
        steps:
          - id: check
            kind: validate
            command: ls
            ok_exit_codes: [0, 1]
    """)
    res = run_cli("plan", "rb.yaml", "--offline", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stderr == (
        "warning: rb.yaml:8: step 'check' cannot fall short: ok_exit_codes [0, 1] and no expect\n"
    )
    assert "ls" in res.stdout


def test_validate_recognises_an_incident_file_without_its_schema_line(tmp_path: Path) -> None:
    demo = ROOT / "runbooks" / "demo"
    for f in demo.iterdir():
        if f.is_file():
            shutil.copy(f, tmp_path / f.name)
    text = (tmp_path / "incident.yaml").read_text().splitlines(keepends=True)[1:]
    (tmp_path / "incident.yaml").write_text("".join(text))
    res = run_cli("validate", "incident.yaml", "backfill-game-context.yaml", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "incident.yaml: ok\nbackfill-game-context.yaml: ok\n"


def test_one_boundary_turns_errors_into_a_line_and_an_exit_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def failing(error: BaseException) -> int:
        raise error

    command = cli._command(failing)
    for error, code, line in [
        (UsageError("bad option"), 2, "error: bad option\n"),
        (RunbookError("no such run"), 1, "error: no such run\n"),
        (KeyboardInterrupt(), 130, "interrupted\n"),
    ]:
        with pytest.raises(typer.Exit) as exit_:
            command(error)
        assert exit_.value.exit_code == code
        assert capsys.readouterr().err == line


def test_the_boundary_keeps_the_signature_typer_reads() -> None:
    import inspect

    assert list(inspect.signature(cli.run).parameters)[:3] == ["file", "var", "reports"]
    assert cli.run.__doc__ is not None
    assert cli.run.__doc__.startswith("Execute a runbook")


def test_abort_at_a_prompt_is_no_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    def abort(*args: object, **kwargs: object) -> bool:
        raise typer.Abort

    monkeypatch.setattr(typer, "confirm", abort)
    assert cli._confirm([])("Run the manual step?") is None


def test_abort_while_typer_parses_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    def abort(**kwargs: object) -> int:
        raise typer.Abort

    monkeypatch.setattr(cli, "app", abort)
    assert main() == 130


def test_mcp_without_the_extra_says_how_to_install_it(tmp_path: Path) -> None:
    """An interpreter without the SDK (`mcp` blocked): one line naming the extra, exit 2."""
    code = (
        "import sys; sys.modules['mcp'] = None; from agent.cli import main; "
        "sys.argv = ['runbook', 'mcp']; raise SystemExit(main())"
    )
    res = subprocess.run(
        [PY, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert res.returncode == 2
    assert res.stderr == (
        "error: runbook mcp needs the MCP SDK: pip install 'runbook-agent[mcp]'\n"
    )


def test_mcp_refuses_a_root_that_is_no_folder(tmp_path: Path) -> None:
    res = run_cli("mcp", "--root", "nowhere", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr == "error: --root nowhere: no such folder\n"


def test_skill_install_writes_the_skill(tmp_path: Path) -> None:
    res = run_cli("skill", "install", "repo", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    skill = tmp_path / "repo" / ".claude" / "skills" / "runbook" / "SKILL.md"
    assert res.stdout == f"wrote {Path('repo') / '.claude/skills/runbook/SKILL.md'}\n"
    text = skill.read_text(encoding="utf-8")
    front, body = text.removeprefix("---\n").split("\n---\n", 1)
    fields = dict(line.split(": ", 1) for line in front.splitlines())
    assert fields["name"] == "runbook" and "runbook plan" in fields["description"]
    assert "### 2. Dry run (always do this first)" in body
    again = run_cli("skill", "install", "repo", cwd=tmp_path)
    assert again.returncode == 2
    assert "exists; --force overwrites it" in again.stderr
    assert run_cli("skill", "install", "repo", "--force", cwd=tmp_path).returncode == 0
    assert skill.read_text(encoding="utf-8") == text


def test_ctrl_c_while_the_cli_still_loads_is_one_line(tmp_path: Path) -> None:
    """SIGINT at moments across the CLI's start: never a traceback through the tool's code.

    (One landing in the interpreter's own start-up, before any of the tool runs, may still
    print CPython's; that is outside what a Python program can catch.)
    """
    import signal
    import time

    for tenths in range(0, 30, 3):
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "validate", "nope.yaml"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(tenths / 100)  # a moment to interrupt at, not a measured time
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert not ("Traceback" in err and "/agent/" in err), err
