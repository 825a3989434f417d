"""Secrets never leave a step: every file of a run and the console, scanned for every form."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from agent.errors import RunbookError
from agent.proc.redact import MASK
from agent.record import Status, load_record
from agent.run.options import RunOptions
from agent.workflow import resume_runbook as resume_run
from tests.procs import run_cli

PY = sys.executable
Write = Callable[..., Path]

# An env secret (listed in `secrets`) and a `secret: true` var; both hold characters that URL
# encoding and base64 change, so each form differs from the plain value.
ENV_SECRET = "s3cr3t/Key+with=chars&more"
VAR_SECRET = "tok-Ωmega 42!#"
PIN = 90210417  # a `secret: true` var of type int

LEAKER = textwrap.dedent("""
    import base64, sys, time
    from urllib.parse import quote, quote_plus
    secret = sys.argv[1]
    out = sys.stdout.buffer
    def say(text):
        out.write(text.encode() + b"\\n")
        out.flush()
    say("plain: " + secret)
    say("url: https://api.example.com/?key=" + quote(secret, safe=""))
    say("url-plus: " + quote_plus(secret))
    say("b64: " + base64.b64encode(secret.encode()).decode())
    say("b64-inside: " + base64.b64encode(b"user:" + secret.encode()).decode())
    say("b64-url: " + base64.urlsafe_b64encode(secret.encode()).decode())
    raw = ("split: " + secret).encode()
    cut = len(raw) - len(secret.encode()) // 2
    out.write(raw[:cut]); out.flush(); time.sleep(0.05)
    out.write(raw[cut:] + b"\\n"); out.flush()
    sys.stderr.write("stderr: " + secret + "\\n"); sys.stderr.flush()
    say("key=" + secret)
    say("captured: " + secret)
    if "--fail" in sys.argv:
        say("fatal: could not authenticate with " + secret)
        sys.exit(1)
""")


def forms(secret: str) -> dict[str, str]:
    """Every form a leak of `secret` could take on disk or on the console."""
    raw = secret.encode()
    return {
        "plain": secret,
        "url": quote(secret, safe=""),
        "url-keep-slash": quote(secret),
        "url-plus": quote_plus(secret),
        "base64": base64.b64encode(raw).decode(),
        "base64-unpadded": base64.b64encode(raw).decode().rstrip("="),
        "base64-url": base64.urlsafe_b64encode(raw).decode(),
        "json": json.dumps(secret)[1:-1],
    }


def _scan(texts: dict[str, bytes]) -> list[str]:
    leaks = []
    for secret in (ENV_SECRET, VAR_SECRET, str(PIN)):
        for name, form in forms(secret).items():
            for where, data in texts.items():
                if form.encode() in data:
                    leaks.append(f"{name} form of {secret!r} in {where}")
        # The mask never reveals the length: no run of asterisks as long as the secret.
        for where, data in texts.items():
            if b"*" * len(secret) in data:
                leaks.append(f"length of {secret!r} shown by a mask in {where}")
    return leaks


def test_secret_corpus_never_reaches_any_file_or_the_console(
    write_runbook: Write, tmp_path: Path
) -> None:
    (tmp_path / "leak.py").write_text(LEAKER, encoding="utf-8")
    rb = write_runbook(f"""
        version: 1
        id: leaky
        title: Leaky
        vars:
          token: {{type: string, secret: true, required: true}}
          pin: {{type: int, secret: true, default: {PIN}}}
        secrets: [API_KEY]
        report:
          lessons:
            - text: "The call used {{{{ token }}}} and {{{{ env.API_KEY }}}}"
        steps:
          - id: env_secret
            kind: run
            command: {PY} leak.py "{{{{ env.API_KEY }}}}"
            capture:
              key: 'key=(.+)'
              line: 'captured: (.*)'
            details:
              - {{match: 'plain', mark: warn}}
          - id: var_secret
            kind: run
            command: {PY} leak.py "{{{{ token }}}}" {{{{ pin }}}}
            capture:
              key: 'key=(\\S+)'
            expect: ["key == 'nope'"]
            on_shortfall:
              priority: HIGH
              issue: "token {{{{ token }}}} was refused"
          - id: fails
            kind: run
            command: {PY} leak.py "{{{{ token }}}}" --fail
          - id: missing
            kind: export
            command: {PY} "bin/{{{{ token }}}}.py"
    """)
    env = {**os.environ, "API_KEY": ENV_SECRET}
    proc = subprocess.run(
        [
            PY,
            "-m",
            "agent",
            "run",
            str(rb),
            "--reports",
            "reports",
            "-v",
            "--var",
            f"token={VAR_SECRET}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 3, proc.stderr.decode()
    (run_dir,) = (tmp_path / "reports").glob("*-leaky-*")
    record = load_record(run_dir)
    st = {s.id: s.status for s in record.steps}
    assert st == {
        "env_secret": Status.SUCCESS,
        "var_secret": Status.PARTIAL,
        "fails": Status.FAILED,
        "missing": Status.NOT_FOUND,
    }

    files = {
        str(p.relative_to(tmp_path)): p.read_bytes()
        for p in (tmp_path / "reports").rglob("*")
        if p.is_file()
    }
    assert {
        "run.json",
        "journal.jsonl",
        "report.md",
        "vars.json",
        "logs/env_secret.log",
        "logs/var_secret.log",
        "logs/fails.log",
    } <= {
        str(Path(f).relative_to(run_dir.relative_to(tmp_path)))
        for f in files
        if f.startswith(str(run_dir.relative_to(tmp_path)))
    }
    texts = {**files, "stdout": proc.stdout, "stderr": proc.stderr}
    leaks = _scan(texts)
    assert leaks == [], "\n".join(leaks)

    # The output is still there, masked where the secret was (not dropped wholesale).
    log = (run_dir / "logs" / "env_secret.log").read_text()
    for prefix in ("plain: ", "split: ", "stderr: ", "key=", "b64: "):
        assert f"{prefix}{MASK}" in log, prefix
    assert "url: https://api.example.com/?key=" + MASK in log
    assert record.step("env_secret").captures == {"key": MASK, "line": MASK}
    assert record.step("env_secret").command == [PY, "leak.py", MASK]
    assert record.step("var_secret").command == [PY, "leak.py", MASK, MASK]
    assert record.step("fails").reason is not None
    assert f"fatal: could not authenticate with {MASK}" in record.step("fails").reason
    assert MASK in (record.step("missing").reason or "")
    assert record.vars["token"] == MASK
    assert record.vars["pin"] == MASK
    assert MASK in (record.step("var_secret").shortfall or {}).get("issue", "")
    assert f"[var_secret] | plain: {MASK}" in proc.stderr.decode()
    assert [a.text for a in record.lessons] == [f"The call used {MASK} and {MASK}"]


def test_short_and_absent_secrets_do_not_break_output(write_runbook: Write, tmp_path: Path) -> None:
    """A secret env var that is unset or two characters long masks nothing and breaks nothing."""
    rb = write_runbook(f"""
        version: 1
        id: short
        title: Short
        secrets: [UNSET_SECRET_FOR_TEST, TINY]
        steps:
          - {{id: s, kind: run, command: {PY} -c "print('ok ab ok')"}}
    """)
    env = {k: v for k, v in os.environ.items() if k != "UNSET_SECRET_FOR_TEST"}
    proc = run_cli(
        "run", str(rb), "--reports", "reports", "-q", cwd=tmp_path, env={**env, "TINY": "ab"}
    )
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "reports").glob("*-short-*")
    assert "ok ab ok" in (run_dir / "logs" / "s.log").read_text()


def test_resume_needs_secret_vars_again_and_never_stores_them(
    write_runbook: Write, tmp_path: Path
) -> None:
    rb = write_runbook(f"""
        version: 1
        id: sec
        title: Sec
        vars:
          token: {{type: string, secret: true, required: true}}
        steps:
          - {{id: a, kind: run, command: {PY} -c "print('a')"}}
          - id: b
            kind: run
            command: {PY} -c "import sys; print(sys.argv[1])" "{{{{ token }}}}"
    """)
    proc = subprocess.run(
        [
            PY,
            "-m",
            "agent",
            "run",
            str(rb),
            "--reports",
            "reports",
            "-q",
            "--var",
            f"token={VAR_SECRET}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "RUNBOOK_TEST_CRASH_AT": "started:b"},
    )
    assert proc.returncode == -9
    (run_dir,) = (tmp_path / "reports").glob("*-sec-*")
    assert json.loads((run_dir / "vars.json").read_text()) == {"token": MASK}
    with pytest.raises(RunbookError) as info:
        resume_run(run_dir, RunOptions())
    assert str(info.value) == (
        "the run was given secret var(s) token, which are not stored in the run "
        "directory: give them again with --var to resume"
    )
    record, _ = resume_run(run_dir, RunOptions(overrides={"token": VAR_SECRET}))
    assert record.step("b").status == Status.SUCCESS
    assert record.step("b").output_tail == [MASK]
    leaks = _scan({str(p): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()})
    assert leaks == [], leaks


QUOTED = "T0k3n-Secr3t'Quote"


def test_secrets_in_error_messages_and_shell_quoted_are_masked(
    write_runbook: Write, tmp_path: Path
) -> None:
    """A rendered value in an error message, and a secret as a shell quotes it (issue 18)."""
    rb = write_runbook(f"""
        version: 1
        id: errs
        title: Errors
        vars:
          token: {{type: string, secret: true, required: true}}
        steps:
          - id: nowhere
            kind: run
            workdir: /nonexistent/{{{{ token }}}}
            command: {PY} -c "print(1)"
          - id: quoted
            kind: run
            command: {PY} -c "import sys; print(sys.argv[1]); sys.exit(2)" {{{{ token }}}}
    """)
    res = run_cli("run", str(rb), "--reports", "reports", "--var", f"token={QUOTED}", cwd=tmp_path)
    (run_dir,) = (tmp_path / "reports").glob("*-errs-*")
    texts = {p.name: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    texts["console"] = (res.stdout + res.stderr).encode()
    leaks = [
        f"{name} in {where}"
        for name, form in {
            "plain": QUOTED,
            "shell-quoted": QUOTED.replace("'", "'\"'\"'"),
            "tail": "Secr3t",
        }.items()
        for where, data in texts.items()
        if form.encode() in data
    ]
    assert leaks == []
    record = load_record(run_dir)
    assert MASK in (record.step("nowhere").reason or "")
    assert record.step("quoted").status == Status.FAILED


# A secret with characters markdown and HTML escape, and a long token (a JWT) that a step pipes
# through `base64`, which wraps its output at 76 columns.
ESCAPED = "Abc&Secret|Value<123>"
JWT = "eyJhbGciOiJIUzI1NiJ9." + "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ" * 3 + ".c2ln"
HOOK = "hooks.example.com/services/T000/B000/HookSecretPath"

HIDER = textwrap.dedent("""
    import base64, sys
    secret, jwt = sys.argv[1], sys.argv[2]
    out = sys.stdout.buffer
    def say(text):
        out.write(text.encode() + b"\\n")
    head, rest = secret[:3], secret[3:]
    say("ansi: " + head + "\\x1b[0m" + rest)
    say("osc: " + head + "\\x1b]0;title\\x07" + rest)
    say("nul: " + head + "\\x00" + rest)
    say("soh: " + head + "\\x01" + rest)
    say("bidi: " + head + "\\u200f" + rest[:2] + "\\u2066" + rest[2:])
    say("zero-width: " + head + "\\u200b" + rest)
    say("plain: " + secret)
    out.write(base64.encodebytes((jwt + "\\n").encode()))
    say("[Click here](https://evil.example/phish) ![px](https://evil.example/t.png) "
        "<https://evil.example/auto> www.evil.example mail@evil.example")
    say("fatal: " + head + "\\x1b[31m" + rest + " [Click](https://evil.example/x)")
    out.flush()
    sys.exit(1)
""")


def _reader_view(name: str, data: bytes) -> str:
    """What a person reads of a file or the console: rendered, decoded and cleaned."""
    import html
    import xml.etree.ElementTree as ET

    from markdown_it import MarkdownIt

    from agent.proc.terminal import clean

    text = data.decode("utf-8", errors="replace")
    if name.endswith(".md"):
        rendered = MarkdownIt("commonmark").enable("table").render(text)
        # Quoted output is inert: no link or image, and what GFM would autolink is code.
        assert "<img" not in rendered, name
        assert "evil.example" not in re.sub(
            r"<code[^>]*>.*?</code>", "", rendered, flags=re.DOTALL
        ), name
        text = html.unescape(re.sub(r"<[^>]+>", "", rendered))
    elif name.endswith((".json", ".jsonl")):
        values: list[str] = []

        def walk(node: object) -> None:
            if isinstance(node, str):
                values.append(node)
            elif isinstance(node, dict):
                for key, value in node.items():
                    walk(key)
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        for line in text.splitlines() if name.endswith(".jsonl") else [text]:
            walk(json.loads(line))
        text = "\n".join(values)
    elif name.endswith(".xml"):
        root = ET.fromstring(data)
        text = "\n".join([*root.itertext(), *(v for e in root.iter() for v in e.attrib.values())])
    return clean(text)


def test_secrets_hidden_by_invisible_characters_escaping_or_wrapping_reach_no_reader(
    write_runbook: Write, tmp_path: Path
) -> None:
    """Masking sees the text as its reader will: cleaned, escaped, wrapped (issue 18, item 2)."""
    (tmp_path / "hide.py").write_text(HIDER, encoding="utf-8")
    rb = write_runbook(f"""
        version: 1
        id: hiding
        title: Hiding
        secrets: [API_KEY, JWT]
        steps:
          - id: hider
            kind: run
            command: {PY} hide.py "{{{{ env.API_KEY }}}}" "{{{{ env.JWT }}}}"
            capture:
              seen: 'ansi: (.+)'
            details:
              - {{match: 'Click', mark: warn}}
    """)
    env = {**os.environ, "API_KEY": ESCAPED, "JWT": JWT}
    res = run_cli(
        "run",
        str(rb),
        "--reports",
        "reports",
        "-v",
        "--junit",
        "junit.xml",
        "--notify",
        HOOK,
        cwd=tmp_path,
        env=env,
    )
    assert res.returncode == 1, res.stderr
    (run_dir,) = (tmp_path / "reports").glob("*-hiding-*")
    fu = run_cli("followup", str(run_dir), "-o", "fu.yaml", cwd=tmp_path, env=env)
    assert fu.returncode == 0, fu.stderr
    sinks = {
        str(p.relative_to(tmp_path)): p.read_bytes()
        for p in [*run_dir.rglob("*"), tmp_path / "junit.xml", tmp_path / "fu.yaml"]
        if p.is_file()
    }
    sinks["console"] = (res.stdout + res.stderr + fu.stdout + fu.stderr).encode()
    assert {"junit.xml", "fu.yaml", "console"} <= set(sinks)
    assert any(name.endswith("report.md") for name in sinks)
    wrapped = base64.encodebytes((JWT + "\n").encode()).decode().splitlines()
    # Every full line of the wrapped encoding is the secret's alone; the last one mixes in the
    # newline `echo` adds, and only its first characters are the secret's.
    pieces = {"escaped secret": ESCAPED, "jwt": JWT, "hook": HOOK}
    pieces.update({f"base64 line {i}": line for i, line in enumerate(wrapped[:-1], 1)})
    leaks = [
        f"{what} in {name}"
        for name, data in sinks.items()
        for what, piece in pieces.items()
        if piece in _reader_view(name, data)
    ]
    assert leaks == []
    record = load_record(run_dir)
    step = record.step("hider")
    assert step.captures == {"seen": MASK}
    assert step.reason is not None
    assert f"fatal: {MASK}" in step.reason
    tail = "\n".join(step.output_tail)
    for label in ("ansi", "osc", "nul", "soh", "bidi", "zero-width", "plain"):
        assert f"{label}: {MASK}" in tail, label
    assert (run_dir / "notify.log").read_text() == (
        "notification failed: the webhook URL does not start with http:// or https://\n"
    )
