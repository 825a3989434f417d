"""Hostile input: vars that try to run or add arguments, template code, hostile output, limits."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.errors import RunbookError
from agent.record import Status, load_record
from agent.run.options import RunOptions
from agent.workflow import run_runbook
from tests.procs import run_cli

PY = sys.executable
Write = Callable[..., Path]

HOSTILE = [
    "; touch pwned1",
    "&& touch pwned2",
    "| touch pwned3",
    "$(touch pwned4)",
    "`touch pwned5`",
    "x\ntouch pwned6",
    "x\r\ntouch pwned7",
    "' ; touch pwned8 ; '",
    '" ; touch pwned9 ; "',
    "${IFS}touch${IFS}pwned10",
    "> pwned11",
    "touch pwned12 #",
    "--flag",
    "-rf",
    "--output=/etc/passwd",
    "$HOME",
    "$((6*7))",
    "*",
    "~",
    "a b  c",
    "\ttab",
    "",
    "\\",
    "&",
    "!!",
    "{{ 7 * 7 }}",
    "{% raw %}x",
    "ünïcødé ☃ 🚀",
    "#not a comment",
    "'",
    '"',
]

ARGV_SCRIPT = "import json, sys\nopen(sys.argv[1], 'w').write(json.dumps(sys.argv[2:]))\n"


def test_hostile_var_values_are_one_argument_and_never_execute(
    write_runbook: Write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    watched = tmp_path / "watched"
    (watched / "out").mkdir(parents=True)
    (watched / "argv.py").write_text(ARGV_SCRIPT, encoding="utf-8")
    monkeypatch.setenv("HOME", str(watched))  # `~` and $HOME, if ever expanded, land here too
    var_lines = "\n".join(f"  v{i}: {{type: string, default: x}}" for i in range(len(HOSTILE)))
    steps = []
    for i in range(len(HOSTILE)):
        steps.append(
            f"  - id: argv{i}\n    kind: run\n"
            f"    command: {PY} argv.py out/argv{i}.json {{{{ v{i} }}}}"
        )
        steps.append(
            f"  - id: sh{i}\n    kind: run\n    shell: true\n"
            f"    command: printf '%s' {{{{ v{i} }}}} > out/sh{i}.txt"
        )
    rb = write_runbook(
        f"version: 1\nid: inj\ntitle: Inj\nworkdir: watched\nvars:\n{var_lines}\n"
        "steps:\n" + "\n".join(steps) + "\n"
    )
    overrides = {f"v{i}": value for i, value in enumerate(HOSTILE)}
    record, run_dir = run_runbook(
        rb, RunOptions(reports_dir=tmp_path / "reports", overrides=overrides, parallel=8)
    )
    bad = {s.id: s.reason for s in record.steps if s.status != Status.SUCCESS}
    assert bad == {}
    for i, value in enumerate(HOSTILE):
        received = json.loads((watched / "out" / f"argv{i}.json").read_text())
        assert received == [value], (i, value)
        assert record.step(f"argv{i}").command == [PY, "argv.py", f"out/argv{i}.json", value]
        assert (watched / "out" / f"sh{i}.txt").read_bytes() == value.encode(), (i, value)
    # Nothing was created: the watched folder holds the script and the outputs, nothing else.
    # (Besides the run's lock, which lives with the workdir's state in .runbook/locks/.)
    made = sorted(
        str(p.relative_to(watched))
        for p in watched.rglob("*")
        if p.relative_to(watched).parts[0] != ".runbook"
    )
    (lock,) = (watched / ".runbook" / "locks").iterdir()
    assert lock.name.startswith("inj-")
    assert lock.suffix == ".lock"
    expected = sorted(
        ["argv.py", "out"]
        + [f"out/argv{i}.json" for i in range(len(HOSTILE))]
        + [f"out/sh{i}.txt" for i in range(len(HOSTILE))]
    )
    assert made == expected
    assert not list(tmp_path.rglob("pwned*"))
    assert (run_dir / "report.md").exists()


def test_hostile_values_through_the_command_line(write_runbook: Write, tmp_path: Path) -> None:
    (tmp_path / "argv.py").write_text(ARGV_SCRIPT, encoding="utf-8")
    rb = write_runbook(f"""
        version: 1
        id: inj
        title: Inj
        vars:
          v: {{type: string, required: true}}
        steps:
          - id: a
            kind: run
            command: {PY} argv.py got.json {{{{ v }}}}
    """)
    for value in ["--flag", "; touch pwned", "$(touch pwned)", "-v", "a=b"]:
        proc = run_cli("run", str(rb), "-q", "--var", f"v={value}", cwd=tmp_path, timeout=30)
        assert proc.returncode == 0, proc.stderr
        assert json.loads((tmp_path / "got.json").read_text()) == [value]
    assert not list(tmp_path.rglob("pwned*"))


SSTI = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.system('touch pwned') }}",
    "{{ lipsum.__globals__['os'].popen('touch pwned').read() }}",
    "{{ self._TemplateReference__context }}",
    "{{ range.__self__.__import__('os').system('touch pwned') }}",
    "{{ request.application.__globals__ }}",
    "{{ ().__class__.__base__.__subclasses__() }}",
    "{{ v.__class__.__init__.__globals__ }}",
]


@pytest.mark.parametrize("expr", SSTI)
def test_template_code_cannot_reach_python_internals(
    write_runbook: Write, tmp_path: Path, expr: str
) -> None:
    rb = write_runbook(f"""
        version: 1
        id: ssti
        title: Ssti
        vars:
          v: {{type: string, default: x}}
        steps:
          - id: a
            kind: run
            command: {PY} -c "import sys; print(sys.argv[1:])" "{expr}"
    """)
    # Every one is refused when the runbook loads, before anything runs.
    with pytest.raises(RunbookError, match="unsafe template") as info:
        run_runbook(rb, RunOptions(reports_dir=tmp_path / "reports"))
    text = str(info.value)
    assert not list(tmp_path.rglob("pwned*"))
    assert not (tmp_path / "reports").exists()
    assert "<class '" not in text
    assert "<module '" not in text
    assert "built-in" not in text


HOSTILE_OUTPUT = (
    "import sys\n"
    "out = sys.stdout.buffer\n"
    "hostile = len(sys.argv) > 1\n"
    "lines = [\n"
    "    b'# Injected heading', b'## Summary Statistics', b'| a | b |', b'|---|---|',\n"
    "    b'<script>alert(1)</script>', b'<details><summary>x', b'</details>', b'```',\n"
    "    b'~~~', b'---', b'[click](javascript:alert(1))', b'![img](http://x/y.png)',\n"
    "    b'\\x1b[2J\\x1b[31mred\\x1b]0;title\\x07', b'nul\\x00byte', b'> quote', b'* bullet',\n"
    "    b'1. item', b'<!-- comment', b'</code></pre>', b'{{ 7*7 }}', b'\\\\', b'|',\n"
    "]\n"
    "for i, line in enumerate(lines):\n"
    "    out.write(b'Result: ' + (line if hostile else b'plain text %d' % i) + b'\\n')\n"
    "out.flush()\n"
    "sys.exit(1)\n"
)


def _skeleton(report: str) -> list[str]:
    """The report's structure: headings and the cell count of table rows, outside code fences."""
    out: list[str] = []
    fence = ""
    for line in report.splitlines():
        stripped = line.lstrip()
        if fence:
            if stripped.startswith(fence) and set(stripped.strip()) == {fence[0]}:
                fence = ""
            continue
        m = re.match(r"(`{3,}|~{3,})", stripped)
        if m:
            fence = m.group(1)
            continue
        if stripped.startswith("#"):
            out.append(stripped)
        elif stripped.startswith("|"):
            out.append("|" * len(re.findall(r"(?<!\\)\|", stripped)))
        elif stripped.startswith(("<details", "</details", "<summary")):
            out.append(stripped[:9])
    return out


def test_hostile_output_does_not_change_the_report_structure(
    write_runbook: Write, tmp_path: Path
) -> None:
    (tmp_path / "emit.py").write_text(HOSTILE_OUTPUT, encoding="utf-8")
    reports = {}
    for mode in ("plain", "hostile"):
        extra = " hostile" if mode == "hostile" else ""
        rb = write_runbook(f"""
            version: 1
            id: out
            title: Out
            steps:
              - id: emit
                kind: run
                command: {PY} emit.py{extra}
                capture:
                  all_results: {{pattern: 'Result: (.*)', all: true}}
                  last: 'Result: (.*)'
                details:
                  - {{match: 'Result', mark: warn}}
              - id: after
                kind: run
                command: {PY} -c "print('fine')"
        """)
        record, run_dir = run_runbook(rb, RunOptions(reports_dir=tmp_path / mode))
        assert record.step("emit").status == Status.FAILED
        assert record.step("after").status == Status.SUCCESS
        reports[mode] = (run_dir / "report.md").read_text()
        if mode == "hostile":
            emit = record.step("emit")
            assert len(emit.captures["all_results"]) == 22
            assert "nulbyte" in emit.captures["all_results"]  # NUL bytes dropped, line kept
            assert b"\x00" in (run_dir / "logs" / "emit.log").read_bytes()  # the log keeps all
            assert load_record(run_dir).model_dump() == record.model_dump()
    hostile = reports["hostile"]
    assert _skeleton(hostile) == _skeleton(reports["plain"])
    assert "\x1b" not in hostile
    assert "\x00" not in hostile
    assert "\x07" not in hostile


def test_max_log_bytes_caps_the_log_and_the_report_says_so(
    write_runbook: Write, tmp_path: Path
) -> None:
    rb = write_runbook(f"""
        version: 1
        id: big
        title: Big
        steps:
          - id: loud
            kind: run
            command: {PY} -c "import sys; sys.stdout.write(('x' * 99 + '\\\\n') * 20000)"
    """)
    proc = run_cli("run", str(rb), "-q", "--max-log-bytes", "10000", cwd=tmp_path, timeout=30)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "reports").glob("*-big-*")
    record = load_record(run_dir)
    loud = record.step("loud")
    assert loud.status == Status.SUCCESS
    assert loud.log_capped
    assert loud.output_bytes == 2_000_000
    size = (run_dir / "logs" / "loud.log").stat().st_size
    assert 10000 <= size < 10000 + 400  # the cap, the attempt header and the marker line
    assert "log capped at 10000 bytes" in (run_dir / "logs" / "loud.log").read_text()
    assert "the log was capped" in (run_dir / "report.md").read_text()


# --- `shell: true`: the quotes the author wrote are respected ----------------------------------

SHELL_SCRIPTS = [
    'printf "%s" "val={{ v }}" | cat > out/dq{i}.txt',
    "printf '%s' 'val={{ v }}' > out/sq{i}.txt",
    "printf '%s' val={{ v }} > out/plain{i}.txt",
    'printf "%s" "$(printf "%s" "val={{ v }}")" > out/sub{i}.txt',
]


def test_shell_true_values_stay_data_inside_the_authors_quotes(
    write_runbook: Write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    watched = tmp_path / "watched"
    (watched / "out").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(watched))
    values = [*HOSTILE, "a'; touch pwned20; echo '", "\\'", '\\"', "a\\", "`touch pwned21`"]
    var_lines = "\n".join(f"  v{i}: {{type: string, default: x}}" for i in range(len(values)))
    steps = []
    for i in range(len(values)):
        for j, script in enumerate(SHELL_SCRIPTS):
            command = script.replace("{{ v }}", f"{{{{ v{i} }}}}").replace("{i}", str(i))
            steps.append(
                f"  - id: s{i}-{j}\n    kind: run\n    shell: true\n"
                f"    command: {json.dumps(command)}\n    needs: []"
            )
    rb = write_runbook(
        f"version: 1\nid: inj\ntitle: Inj\nworkdir: watched\nvars:\n{var_lines}\n"
        "steps:\n" + "\n".join(steps) + "\n"
    )
    overrides = {f"v{i}": value for i, value in enumerate(values)}
    record, _ = run_runbook(
        rb, RunOptions(reports_dir=tmp_path / "reports", overrides=overrides, parallel=8)
    )
    assert {s.id: s.reason for s in record.steps if s.status != Status.SUCCESS} == {}
    for i, value in enumerate(values):
        for name in ("dq", "sq", "plain"):
            got = (watched / "out" / f"{name}{i}.txt").read_bytes().decode()
            assert got == f"val={value}", (name, value)
        got = (watched / "out" / f"sub{i}.txt").read_bytes().decode()
        # `$(...)` drops trailing newlines
        assert got == f"val={value}".rstrip("\n"), ("sub", value)
    assert not list(tmp_path.rglob("pwned*"))


def test_sql_fields_take_numbers_and_refuse_strings(write_runbook: Write, tmp_path: Path) -> None:
    import duckdb

    (tmp_path / ".runbook").mkdir()
    con = duckdb.connect(str(tmp_path / ".runbook" / "warehouse.duckdb"))
    con.execute("CREATE SCHEMA ds; CREATE TABLE ds.t AS SELECT range AS n FROM range(10)")
    con.close()
    rb = write_runbook("""
        version: 1
        id: sql
        title: Sql
        vars:
          limit: {type: int, default: 4}
          name: {type: string, default: "x' OR 1=1 --"}
        steps:
          - id: numbers
            kind: verify
            checks:
              - table: ds.t
                where: n < {{ limit }}
                expect: "{{ limit }}"
          - id: strings
            kind: verify
            needs: []
            checks:
              - table: ds.t
                where: CAST(n AS VARCHAR) = '{{ name }}'
                expect: 0
    """)
    record, _ = run_runbook(rb, RunOptions(reports_dir=tmp_path / "reports"))
    numbers = record.step("numbers")
    assert numbers.status == Status.SUCCESS, numbers.reason
    assert numbers.counts["ds.t"].where == "n < 4"
    strings = record.step("strings")
    assert strings.status == Status.FAILED
    assert strings.reason == (
        "only numbers can be written into SQL with {{ }}; bind 'name' as a query parameter: @name"
    )
