"""The executor with real child processes: statuses, retries, timeouts, captures, signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from agent.record import RunStatus, Status, load_record
from agent.run.options import RunOptions
from agent.workflow import run_runbook
from tests.procs import alive

PY = sys.executable
Write = Callable[..., Path]


def run(path: Path, tmp_path: Path, **kw: object) -> tuple:  # type: ignore[type-arg]
    options = RunOptions(reports_dir=tmp_path / "reports", **kw)  # type: ignore[arg-type]
    return run_runbook(path, options)


def test_statuses_and_overall_partial(write_runbook: Write, tmp_path: Path) -> None:
    (tmp_path / "proc.py").write_text(
        "print('Records saved: 10')\nprint('Status: failed')\n", encoding="utf-8"
    )
    rb = write_runbook(f"""
        version: 1
        id: t
        title: T
        vars:
          games: {{type: int, default: 8}}
        steps:
          - id: ok
            kind: run
            command: {PY} -c "print('hello')"
          - id: liar
            kind: run
            command: {PY} proc.py
            capture:
              saved: {{pattern: 'Records saved: (\\d+)', type: int}}
              status: 'Status: (\\w+)'
            expect: [saved == games * 2, "status == 'SUCCESS'"]
          - id: missing
            kind: export
            command: {PY} bin/export_api_data.py
          - id: bad
            kind: run
            command: {PY} -c "import sys; sys.exit(4)"
          - id: okcode
            kind: validate
            command: {PY} -c "import sys; print('3 ISSUES FOUND'); sys.exit(1)"
            ok_exit_codes: [0, 1]
            capture: {{issues: '(\\d+) ISSUES FOUND'}}
            expect: [issues == 3]
    """)
    record, run_dir = run(rb, tmp_path)
    st = {s.id: s.status for s in record.steps}
    assert st == {
        "ok": Status.SUCCESS,
        "liar": Status.PARTIAL,
        "missing": Status.NOT_FOUND,
        "bad": Status.FAILED,
        "okcode": Status.SUCCESS,
    }
    liar = record.step("liar")
    assert liar.captures == {"saved": 10, "status": "failed"}
    assert [e.ok for e in liar.expectations] == [False, False]
    assert record.step("bad").exit_code == 4
    assert record.step("bad").reason == "exit code 4"
    assert record.status == RunStatus.PARTIALLY_COMPLETE
    assert record.exit_code == 3
    for name in ("run.json", "report.md", "journal.jsonl", "logs/ok.log", "vars.json"):
        assert (run_dir / name).exists(), name
    assert "hello" in (run_dir / "logs" / "ok.log").read_text()
    assert load_record(run_dir).model_dump() == record.model_dump()


def test_complete_run_exits_zero_and_when_skips(write_runbook: Write, tmp_path: Path) -> None:
    rb = write_runbook(f"""
        version: 1
        id: t
        title: T
        steps:
          - id: a
            kind: run
            command: {PY} -c "print('n=3')"
            capture: {{n: 'n=(\\d+)'}}
          - id: b
            kind: run
            command: {PY} -c "print('never')"
            when: steps.a.captures.n > 5
    """)
    record, _ = run(rb, tmp_path)
    assert record.step("b").status == Status.SKIPPED
    assert record.step("b").skipped_by == "when"
    assert record.status == RunStatus.COMPLETE
    assert record.exit_code == 0


def test_needs_not_met_skips_and_failed_needed_step_fails_run(
    write_runbook: Write, tmp_path: Path
) -> None:
    rb = write_runbook(f"""
        version: 1
        id: t
        title: T
        steps:
          - id: a
            kind: run
            command: {PY} -c "print(1)"
          - id: b
            kind: run
            command: {PY} -c "import sys; sys.exit(2)"
          - id: c
            kind: run
            command: {PY} -c "print(3)"
            needs: [b]
    """)
    record, _ = run(rb, tmp_path)
    c = record.step("c")
    assert c.status == Status.SKIPPED
    assert c.reason == "needs b, which ended FAILED"
    assert record.status == RunStatus.FAILED
    assert record.exit_code == 1


def test_retries_record_each_attempt(write_runbook: Write, tmp_path: Path) -> None:
    counter = tmp_path / "count"
    script = tmp_path / "flaky.py"
    script.write_text(
        textwrap.dedent(f"""
        from pathlib import Path
        p = Path({str(counter)!r})
        n = int(p.read_text()) + 1 if p.exists() else 1
        p.write_text(str(n))
        print(f"attempt {{n}}")
        raise SystemExit(0 if n >= 3 else 1)
    """),
        encoding="utf-8",
    )
    rb = write_runbook(f"""
        version: 1
        id: t
        title: T
        steps:
          - id: flaky
            kind: run
            command: {PY} flaky.py
            retries: {{attempts: 3, backoff: 0.05s}}
    """)
    record, run_dir = run(rb, tmp_path)
    flaky = record.step("flaky")
    assert flaky.status == Status.SUCCESS
    assert [a.exit_code for a in flaky.attempts] == [1, 1, 0]
    log = (run_dir / "logs" / "flaky.log").read_text()
    assert "attempt 1" in log and "attempt 3" in log


def test_timeout_kills_grandchildren(write_runbook: Write, tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    rb = write_runbook(f"""
        version: 1
        id: t
        title: T
        steps:
          - id: slow
            kind: run
            shell: true
            command: "sleep 60 & echo $! > {pidfile}; wait"
            timeout: 1s
    """)
    record, _ = run(rb, tmp_path)
    slow = record.step("slow")
    assert slow.status == Status.TIMED_OUT
    assert slow.reason == "timed out after 1s; the process group was stopped"
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(grandchild)


def test_invalid_utf8_and_backticks_do_not_break_anything(
    write_runbook: Write, tmp_path: Path
) -> None:
    (tmp_path / "weird.py").write_text(
        "import sys\n"
        "sys.stdout.buffer.write(b'bad \\xff\\xfe bytes\\n' + b'`' * 12 + b'\\n')\n"
        "sys.stdout.buffer.write(b'\\x1b[31mred\\x1b[0m <script>alert(1)</script>\\n')\n"
        "sys.stdout.buffer.write(b'## not a heading\\n')\n"
        "sys.exit(1)\n",
        encoding="utf-8",
    )
    rb = write_runbook(f"""
        version: 1
        id: t
        title: T
        steps:
          - id: weird
            kind: run
            command: {PY} weird.py
            capture: {{tag: '(<script>.*)'}}
    """)
    record, run_dir = run(rb, tmp_path)
    weird = record.step("weird")
    assert weird.status == Status.FAILED
    assert any("`" * 12 in line for line in weird.output_tail)
    report = (run_dir / "report.md").read_text()
    outside = _outside_fences(report)
    assert "<script>" not in "\n".join(outside)
    assert "## not a heading" not in outside
    assert "\x1b" not in report


def _outside_fences(text: str) -> list[str]:
    """The lines of a markdown text that are not inside a fenced code block."""
    out: list[str] = []
    fence = ""
    for line in text.splitlines():
        stripped = line.lstrip()
        if fence:
            if stripped.startswith(fence) and set(stripped.strip()) == {"`"}:
                fence = ""
            continue
        if stripped.startswith("```"):
            fence = stripped[: len(stripped) - len(stripped.lstrip("`"))]
            continue
        out.append(line)
    return out


def test_large_output_memory_stays_flat(write_runbook: Write, tmp_path: Path) -> None:
    """200 MB from one step; the runner's own peak RSS is measured in a separate process."""
    rb = write_runbook(f"""
        version: 1
        id: t
        title: T
        steps:
          - id: big
            kind: run
            command: >-
              {PY} -c "import sys; b = (b'x' * 1023 + b'\\n') * 1024;
              [sys.stdout.buffer.write(b) for _ in range(200)]"
    """)
    probe = textwrap.dedent(f"""
        import resource, json, sys
        from pathlib import Path
        from agent.run.options import RunOptions
        from agent.workflow import run_runbook
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        options = RunOptions(reports_dir=Path({str(tmp_path / "reports")!r}))
        record, run_dir = run_runbook(Path({str(rb)!r}), options)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({{"growth_kb": after - before, "bytes": record.step("big").output_bytes,
                          "status": record.step("big").status}}))
    """)
    out = subprocess.run(
        [PY, "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    data = json.loads(out.stdout.strip().splitlines()[-1])
    assert data["status"] == "SUCCESS"
    assert data["bytes"] == 200 * 1024 * 1024
    assert data["growth_kb"] < 100 * 1024


def test_sigint_mid_run_aborts_and_keeps_finished_steps(
    write_runbook: Write, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    rb = write_runbook(f"""
        version: 1
        id: t
        title: T
        steps:
          - id: quick
            kind: run
            command: {PY} -c "print('done')"
          - id: long
            kind: run
            shell: true
            command: "touch {started}; sleep 60"
          - id: later
            kind: run
            command: {PY} -c "print('never')"
    """)
    proc = subprocess.Popen(
        [PY, "-m", "agent", "run", str(rb), "--reports", str(tmp_path / "reports")],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    run_dir = next((tmp_path / "reports").glob("*-t-*"))
    record = load_record(run_dir)
    assert record.step("quick").status == Status.SUCCESS
    assert record.step("long").status == Status.ABORTED
    assert record.step("later").status == Status.ABORTED
    assert record.status == RunStatus.INTERRUPTED
    assert (run_dir / "report.md").exists()


def test_manual_step_needs_yes_without_terminal(write_runbook: Write, tmp_path: Path) -> None:
    rb = write_runbook("""
        version: 1
        id: t
        title: T
        steps:
          - id: gate
            kind: manual
            instructions: Check the dashboard
    """)
    record, _ = run(rb, tmp_path)
    assert record.step("gate").status == Status.SKIPPED
    assert (
        record.step("gate").reason == "not run: manual step needs a terminal to confirm, or --yes"
    )
    record, _ = run(rb, tmp_path, yes=True)
    assert record.step("gate").status == Status.SUCCESS
    assert record.step("gate").reason == "confirmed unattended (--yes)"
    assert record.step("gate").confirmed_by == "unattended"


def test_the_prompt_shows_the_rendered_instructions_first(
    write_runbook: Write, tmp_path: Path
) -> None:
    rb = write_runbook("""
        version: 1
        id: t
        title: T
        vars:
          date: {type: date, default: "2026-01-25"}
        steps:
          - id: gate
            kind: manual
            title: Check the dashboard
            instructions: |
              Open the scheduler dashboard for {{ date }}.
              Confirm no job is queued.
          - id: plain
            kind: manual
            prompt: Proceed for {{ date }}?
    """)
    asked: list[str] = []

    def confirm(question: str) -> bool:
        asked.append(question)
        return True

    record, _ = run(rb, tmp_path, interactive=True, confirm=confirm)
    assert asked == [
        "Open the scheduler dashboard for 2026-01-25.\nConfirm no job is queued.\n\n"
        "Check the dashboard: done?",
        "Proceed for 2026-01-25?",
    ]
    assert record.step("gate").reason == "confirmed at the prompt"
    assert record.step("gate").confirmed_by == "operator"


# --- on_shortfall: keyed by cause, templated over the step's evidence -----------------------


def test_on_shortfall_is_picked_by_cause_then_status_then_default(
    write_runbook: Write, tmp_path: Path
) -> None:
    keyed = """
            on_shortfall:
              crashed: {priority: HIGH, issue: "{{ cause }}: the processor raised"}
              PARTIAL: {issue: "only {{ n }} saved ({{ cause }})"}
              default:
                issue: "{{ cause }} for {{ date }}"
                action: ["re-run {{ steps.%s.status }}"]
"""
    rb = write_runbook(
        f"""
        version: 1
        id: t
        title: T
        vars:
          date: {{type: date, default: "2026-01-25"}}
        steps:
          - id: crash
            kind: run
            command: {PY} -c "raise RuntimeError('boom')"
            capture: {{n: 'saved=(\\d+)'}}
{keyed % "crash"}
          - id: short
            kind: run
            command: {PY} -c "print('saved=3')"
            capture: {{n: 'saved=(\\d+)'}}
            expect: [n == 4]
{keyed % "short"}
          - id: exit
            kind: run
            command: {PY} -c "import sys; sys.exit(3)"
            capture: {{n: 'saved=(\\d+)'}}
{keyed % "exit"}
          - id: fine
            kind: run
            command: {PY} -c "print('saved=4')"
            capture: {{n: 'saved=(\\d+)'}}
{keyed % "fine"}
          - id: only_crash
            kind: run
            command: {PY} -c "import sys; sys.exit(3)"
            on_shortfall:
              crashed: {{issue: never shown}}
          - id: plain
            kind: run
            command: {PY} -c "import sys; sys.exit(3)"
            on_shortfall: {{priority: LOW, issue: "plain {{{{ date }}}}"}}
    """
    )
    record, _ = run(rb, tmp_path)
    assert record.step("crash").shortfall == {
        "priority": "HIGH",
        "issue": "crashed: the processor raised",
        "cause": "crashed",
    }
    assert record.step("short").shortfall == {
        "priority": "MEDIUM",
        "issue": "only 3 saved (expectation)",
        "cause": "PARTIAL",
    }
    assert record.step("exit").shortfall == {
        "priority": "MEDIUM",
        "issue": "exit_code for 2026-01-25",
        "action": ["re-run FAILED"],
        "cause": "default",
    }
    assert record.step("fine").shortfall is None
    assert record.step("only_crash").shortfall is None
    # One Shortfall: exactly as before, no "cause" added.
    assert record.step("plain").shortfall == {"priority": "LOW", "issue": "plain 2026-01-25"}


def test_on_shortfall_reads_the_missing_keys_and_a_skip_by_need_has_its_own_entry(
    write_runbook: Write, tmp_path: Path
) -> None:
    import duckdb

    db = tmp_path / "wh.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE SCHEMA raw")
        con.execute("CREATE TABLE raw.schedule (game_id VARCHAR, team VARCHAR)")
        con.execute(
            "INSERT INTO raw.schedule VALUES ('g1', 'GSW'), ('g1', 'MIN'), ('g2', 'SAC'), "
            "('g2', 'DET')"
        )
        con.execute("CREATE TABLE raw.context (game_id VARCHAR, team VARCHAR)")
        con.execute("INSERT INTO raw.context VALUES ('g1', 'MIN'), ('g2', 'DET')")
    rb = write_runbook(f"""
        version: 1
        id: t
        title: T
        warehouse: {{backend: duckdb, path: {db}}}
        steps:
          - id: counts
            kind: verify
            checks:
              - table: raw.context
                coverage:
                  key: [game_id, team]
                  expected: SELECT game_id, team FROM raw.schedule
            on_shortfall:
              coverage:
                priority: HIGH
                issue: "Context missing for {{{{ missing.team | join(', ') }}}}"
                impact: "{{{{ missing.game_id | length }}}} games ({{{{ cause }}}})"
          - id: after
            kind: run
            needs: [counts]
            command: {PY} -c "print(1)"
            on_shortfall:
              needs: {{issue: "not run: {{{{ cause }}}}"}}
          - id: after_plain
            kind: run
            needs: [counts]
            command: {PY} -c "print(1)"
            on_shortfall: {{issue: never for a skipped step}}
    """)
    record, _ = run(rb, tmp_path)
    counts = record.step("counts")
    assert counts.status == Status.PARTIAL
    assert counts.shortfall == {
        "priority": "HIGH",
        "issue": "Context missing for GSW, SAC",
        "impact": "2 games (coverage)",
        "cause": "coverage",
    }
    assert record.step("after").status == Status.SKIPPED
    assert record.step("after").shortfall == {
        "priority": "MEDIUM",
        "issue": "not run: needs",
        "cause": "needs",
    }
    assert record.step("after_plain").shortfall is None


def test_parallel_runs_independent_steps_together(write_runbook: Write, tmp_path: Path) -> None:
    steps = "\n".join(
        f"  - {{id: s{i}, kind: run, command: 'sleep 0.5', needs: []}}" for i in range(4)
    )
    rb = write_runbook("version: 1\nid: t\ntitle: T\nsteps:\n" + steps + "\n")
    record, _ = run(rb, tmp_path, parallel=4)
    starts = sorted(s.started_at for s in record.steps)
    ends = sorted(s.ended_at for s in record.steps)
    # All four started before the first one ended: they overlapped.
    assert starts[-1] < ends[0]
    assert record.status == RunStatus.COMPLETE


def test_hostile_var_values_never_execute(write_runbook: Write, tmp_path: Path) -> None:
    rb = write_runbook(f"""
        version: 1
        id: t
        title: T
        vars:
          v: {{type: string, default: x}}
        steps:
          - id: echo
            kind: run
            command: {PY} -c "import sys, json; print(json.dumps(sys.argv[1:]))" {{{{ v }}}}
          - id: sh
            kind: run
            shell: true
            command: echo {{{{ v }}}}
    """)
    for value in ["; touch pwned1", "$(touch pwned2)", "`touch pwned3`", "--flag", "a\nb"]:
        record, _ = run(rb, tmp_path, overrides={"v": value})
        assert record.step("echo").status == Status.SUCCESS
        assert record.step("echo").command[-1] == value
        assert record.step("sh").status == Status.SUCCESS
    assert not list(tmp_path.glob("pwned*"))


def test_patterns_with_inline_flags_and_backreferences(
    write_runbook: Write, tmp_path: Path
) -> None:
    """The spec's own details pattern starts with (?i); a backreference must keep its meaning."""
    rb = write_runbook(f"""
        version: 1
        id: t
        title: T
        steps:
          - id: a
            kind: run
            command: >-
              {PY} -c "print('Travel table NOT FOUND'); print('ab ab'); print('Records saved: 5')"
            capture:
              saved: {{pattern: 'Records saved: (\\d+)', type: int}}
              twice: '^(\\w+) \\1$'
            details:
              - {{match: '(?i)not found|missing|fell back', mark: warn}}
    """)
    record, _ = run(rb, tmp_path)
    a = record.step("a")
    assert a.status == Status.SUCCESS, a.reason
    assert a.captures == {"saved": 5, "twice": "ab"}
    assert [d.text for d in a.details] == ["Travel table NOT FOUND"]


def test_when_reading_a_needed_step_makes_the_need_an_ordering(
    write_runbook: Write, tmp_path: Path
) -> None:
    """The spec's wait step: needs verify_counts, runs only when it fell short."""
    rb = write_runbook(f"""
        version: 1
        id: t
        title: T
        steps:
          - id: check
            kind: run
            command: {PY} -c "print('n=1')"
            capture: {{n: 'n=(\\d+)'}}
            expect: [n == 2]
          - id: recover
            kind: run
            command: {PY} -c "print('recovering')"
            needs: [check]
            when: steps.check.status != 'SUCCESS'
          - id: strict
            kind: run
            command: {PY} -c "print('never')"
            needs: [check]
    """)
    record, _ = run(rb, tmp_path)
    assert record.step("check").status == Status.PARTIAL
    assert record.step("recover").status == Status.SUCCESS
    assert record.step("strict").status == Status.SKIPPED
    assert record.step("strict").reason == "needs check, which ended PARTIAL"


def test_expect_reading_null_is_false_whatever_the_operator(
    write_runbook: Write, tmp_path: Path
) -> None:
    rb = write_runbook(f"""
        version: 1
        id: t
        title: T
        steps:
          - id: a
            kind: run
            command: {PY} -c "print('nothing to see')"
            capture: {{n: 'n=(\\d+)'}}
            expect: [n != 5]
    """)
    record, _ = run(rb, tmp_path)
    assert record.step("a").captures == {"n": None}
    assert record.step("a").status == Status.PARTIAL
