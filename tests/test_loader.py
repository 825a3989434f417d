"""The loader: the corpus of broken runbooks, located messages, and random input never crashing."""

from __future__ import annotations

import copy
import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.cli import main
from agent.errors import ValidationError
from agent.plan.loader import MAX_BYTES, load_runbook, load_text
from agent.plan.model import SHORTFALL_STATUSES, ShortfallByCause
from agent.record import CAUSES, Status
from tests.procs import run_cli

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "corpus" / "broken"
BROKEN = sorted(CORPUS.glob("*.yaml"))
EXAMPLE = ROOT / "runbooks" / "examples" / "spec-example.yaml"
# RUNBOOK_UPDATE_CORPUS=1 rewrites the .expected files from the current output (review the diff).
UPDATE = os.environ.get("RUNBOOK_UPDATE_CORPUS") == "1"


def _validate(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.setattr(sys, "argv", ["runbook", "validate", *args])
    code = main()
    out = capsys.readouterr()
    return code, out.out, out.err


def test_corpus_is_large_enough() -> None:
    assert len(BROKEN) >= 40
    assert all(p.with_suffix(".expected").is_file() for p in BROKEN)


@pytest.mark.parametrize("path", BROKEN, ids=[p.stem for p in BROKEN])
def test_broken_runbook_is_rejected_with_exact_message(
    path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(CORPUS)
    code, out, err = _validate([path.name], monkeypatch, capsys)
    expected = path.with_suffix(".expected")
    if UPDATE:
        expected.write_text(err, encoding="utf-8")
    assert code == 2
    assert out == ""
    assert "Traceback" not in err
    assert err == expected.read_text(encoding="utf-8")


def test_every_problem_line_is_located(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(CORPUS)
    code, _, err = _validate([p.name for p in BROKEN], monkeypatch, capsys)
    assert code == 2
    lines = err.splitlines()
    assert len(lines) >= len(BROKEN)
    for line in lines:
        file, lineno, col, message = line.split(":", 3)
        assert file.endswith(".yaml") and int(lineno) >= 1 and int(col) >= 1 and message.strip()


def test_valid_and_broken_files_together(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(CORPUS)
    code, out, err = _validate([str(EXAMPLE), "cycle_two.yaml"], monkeypatch, capsys)
    assert code == 2
    assert out == f"{EXAMPLE}: ok\n"
    # The spec's example warns of nothing: its validator's exit code tells issues from none.
    assert err == "cycle_two.yaml:8:48: cycle: a -> b -> a\n"


def test_huge_file_is_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    big = tmp_path / "huge.yaml"
    body = "version: 1\nid: huge\ntitle: T\nsteps:\n" + "  - {id: a, kind: run, command: echo hi}\n"
    big.write_text(body + "# " + "x" * 100 + "\n" * 1 + ("# padding\n" * (MAX_BYTES // 10 + 10)))
    size = big.stat().st_size
    assert size > MAX_BYTES
    monkeypatch.chdir(tmp_path)
    code, _, err = _validate(["huge.yaml"], monkeypatch, capsys)
    assert code == 2
    assert (
        err == f"huge.yaml:1:1: the file is {size} bytes; a runbook may have at most {MAX_BYTES}\n"
    )


def test_missing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = _validate(["nope.yaml"], monkeypatch, capsys)
    assert code == 2
    assert err == "nope.yaml:1:1: cannot read the file: No such file or directory\n"


@pytest.mark.parametrize("name", ["unknown_step_key_typo", "yaml_bomb", "non_utf8", "cycle_three"])
def test_real_subprocess(name: str) -> None:
    proc = run_cli(
        "validate", f"{name}.yaml", cwd=CORPUS, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == (CORPUS / f"{name}.expected").read_text(encoding="utf-8")


# --- loading what is right ---------------------------------------------------------------------


def test_spec_example_loads() -> None:
    loaded = load_runbook(EXAMPLE)
    rb = loaded.runbook
    assert rb.id == "backfill-game-context"
    assert [s.id for s in rb.steps] == loaded.graph.order
    assert loaded.graph.needs["wait_boxscores"] == ["verify_counts"]
    assert rb.steps[0].timeout == 600.0
    assert len(loaded.sha256) == 64
    assert loaded.marks[("steps", 0, "id")] == (loaded.marks[("steps", 0)][0], 9)
    assert loaded.base_dir == EXAMPLE.parent


RUNBOOK = """\
version: 1
id: ok
title: T {{ date }}
vars:
  date: {type: date, required: true}
steps:
  - id: a
    kind: run
    command: echo {{ date }}
    timeout: {timeout}
    capture:
      n: 'n=(\\d+)'
    expect: n > 0 and exit_code == 0
  - id: b
    kind: run
    command: echo {{ steps.a.captures.n }} {{ env.HOME }}
    when: steps.a.status == 'SUCCESS'
"""


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("10m", 600.0),
        ("2h", 7200.0),
        ("1h30m", 5400.0),
        ("45", 45.0),
        ("'1.5h'", 5400.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    loaded = load_text(RUNBOOK.replace("{timeout}", text), Path("d.yaml"))
    assert loaded.runbook.steps[0].timeout == seconds


def test_problems_of_every_stage_at_once() -> None:
    text = """\
version: 1
id: all
title: T
steps:
  - id: a
    kind: run
    comand: echo hi
    timeout: 3 days
  - id: b
    kind: run
    command: echo hi
    needs: [a, zz]
"""
    with pytest.raises(ValidationError) as info:
        load_text(text, Path("all.yaml"))
    assert str(info.value) == (
        "all.yaml:7:5: unknown key 'comand' in step 'a'; did you mean 'command'?\n"
        "all.yaml:8:14: 'timeout' of step 'a': invalid duration '3 days': "
        "use a number of seconds or 90s, 10m, 2h\n"
        "all.yaml:12:16: step 'b' needs unknown step 'zz'"
    )


def test_merge_keys_and_anchors_are_allowed() -> None:
    text = """\
version: 1
id: anchors
title: T
x-common: &common {kind: run, timeout: 5m}
steps:
  - {<<: *common, id: a, command: echo a}
"""
    with pytest.raises(ValidationError) as info:
        load_text(text, Path("a.yaml"))
    # Anchors work; the extra top-level key is still an unknown key.
    assert str(info.value) == "a.yaml:4:1: unknown key 'x-common' in the runbook"


# --- property: any input either loads or raises ValidationError ----------------------------------

_VALID: dict = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
_WEIRD = st.sampled_from(
    [
        "",
        " ",
        "\u202e",
        "\ufeff",
        "\u0000",
        "\ud7ff",
        "é",
        "🙂",
        "{{",
        "}}",
        "{{ x.__class__ }}",
        "{% for %}",
        "@",
        "-",
        "*a",
        "&a",
        "!!python/none",
        "\t",
        "\n",
        "10x",
        "-1",
        "1e999",
    ]
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    _WEIRD,
    st.dates(),
)
_YAMLISH = st.recursive(
    _SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=8), _WEIRD), children, max_size=4),
    ),
    max_leaves=20,
)


def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def _mutated(draw: st.DrawFn) -> str:
    doc = copy.deepcopy(_VALID)
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(doc) if p]
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        last = path[-1]
        action = draw(st.sampled_from(["delete", "rename", "retype", "unicode"]))
        if action == "delete":
            del parent[last]
        elif action == "rename" and isinstance(parent, dict):
            parent[draw(st.one_of(st.text(max_size=8), _WEIRD))] = parent.pop(last)
        elif action == "unicode" and isinstance(parent[last], str):
            s = parent[last]
            i = draw(st.integers(0, len(s)))
            parent[last] = s[:i] + draw(_WEIRD) + s[i:]
        else:
            parent[last] = draw(_YAMLISH)
    return yaml.safe_dump(doc, allow_unicode=draw(st.booleans()), sort_keys=False)


def _loads_or_validation_error(text: str) -> None:
    try:
        load_text(text, Path("fuzz.yaml"))
    except ValidationError as exc:
        assert exc.problems
        for p in exc.problems:
            assert p.line >= 1 and p.col >= 1 and p.message


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(_YAMLISH.map(lambda d: yaml.safe_dump(d, allow_unicode=True)), st.text(max_size=200))
)
def test_random_documents_load_or_raise_validation_error(text: str) -> None:
    _loads_or_validation_error(text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated())
def test_mutated_runbooks_load_or_raise_validation_error(text: str) -> None:
    _loads_or_validation_error(text)


# --- on_shortfall keyed by cause, and its templates over the step's evidence ----------------


def _problems(text: str) -> list[str]:
    with pytest.raises(ValidationError) as info:
        load_text(textwrap.dedent(text).lstrip(), Path("rb.yaml"))
    return [str(p) for p in info.value.problems]


def test_on_shortfall_keyed_by_cause_loads_and_its_keys_are_checked() -> None:
    ok = load_text(
        textwrap.dedent("""
            version: 1
            id: x
            title: T
            steps:
              - id: a
                kind: run
                command: ls
                capture: {n: 'n=(\\d+)'}
                on_shortfall:
                  crashed: {priority: HIGH, issue: "{{ cause }} after {{ n }}"}
                  PARTIAL: {issue: "{{ missing.team_abbr | join(', ') }}"}
                  default: {issue: "{{ steps.a.status }}"}
        """).lstrip(),
        Path("rb.yaml"),
    )
    sf = ok.runbook.steps[0].on_shortfall
    assert isinstance(sf, ShortfallByCause)
    assert sf.pick("crashed", "FAILED") == ("crashed", sf.crashed)
    assert sf.pick("exit_code", "FAILED") == ("default", sf.default)
    assert sf.pick("needs", "SKIPPED") is None  # a skipped step gets no default
    assert _problems("""
        version: 1
        id: x
        title: T
        steps:
          - id: a
            kind: run
            command: ls
            on_shortfall:
              crashd: {issue: x}
              FAILED: {isue: y}
          - id: b
            kind: run
            command: ls
            on_shortfall: {isue: x}
          - id: c
            kind: run
            command: ls
            on_shortfall: {issue: x, crashed: {issue: y}}
    """) == [
        "rb.yaml:9:7: unknown key 'crashd' in 'on_shortfall' of step 'a'; did you mean 'crashed'?",
        "rb.yaml:10:16: unknown key 'isue' in 'on_shortfall.FAILED' of step 'a'; "
        "did you mean 'issue'?",
        "rb.yaml:14:20: unknown key 'isue' in 'on_shortfall' of step 'b'; did you mean 'issue'?",
        "rb.yaml:18:30: unknown key 'crashed' in 'on_shortfall' of step 'c'",
    ]


def test_on_shortfall_keys_are_the_causes_the_statuses_and_default() -> None:
    assert set(ShortfallByCause.model_fields) == {*CAUSES, *SHORTFALL_STATUSES, "default"}
    assert set(SHORTFALL_STATUSES) < {s.value for s in Status}


def test_on_shortfall_templates_read_own_captures_missing_and_cause_only() -> None:
    assert _problems("""
        version: 1
        id: x
        title: T
        steps:
          - id: a
            kind: run
            command: ls
            capture: {n: 'n=(\\d+)'}
            on_shortfall:
              default: {issue: "{{ nope }} {{ n }}", action: ["{{ causes }}"]}
          - id: b
            kind: verify
            checks: [{table: a.b}]
            on_shortfall: {issue: "{{ missing.team_abbr | join(', ') }} {{ n }}"}
    """) == [
        "rb.yaml:10:24: undefined name 'nope' in 'on_shortfall' of step 'a'",
        "rb.yaml:10:55: undefined name 'causes' in 'on_shortfall' of step 'a'; "
        "did you mean 'cause'?",
        "rb.yaml:14:27: undefined name 'n' in 'on_shortfall' of step 'b'",
    ]


def test_expect_coverage_needs_a_coverage_query() -> None:
    assert _problems("""
        version: 1
        id: x
        title: T
        steps:
          - id: v
            kind: verify
            checks:
              - {table: a.b, expect: coverage}
    """) == [
        "rb.yaml:8:9: item 1 of 'checks' in step 'v': expect: coverage needs a coverage query "
        "to count the expected keys"
    ]


# --- steps that can never fall short: warnings, not problems --------------------------------

NEVER_SHORT = """
    version: 1
    id: x
    title: T
    vars:
      games: {type: int, default: 8}
    steps:
      - id: lenient
        kind: validate
        command: ls
        ok_exit_codes: [0, 1]
      - id: defaults
        kind: validate
        command: ls
        capture:
          issues: {pattern: '(\\d+) ISSUES', type: int, default: 0}
          warnings: {pattern: '(\\d+) WARNINGS', type: int, default: 0}
          lines: {pattern: '^  (.*)$', all: true}
        expect: [issues == 0, "warnings < games", "lines | length == 0"]
      - id: required
        kind: validate
        command: ls
        capture:
          issues: {pattern: '(\\d+) ISSUES', type: int, default: 0, required: true}
        expect: [issues == 0]
      - id: lenient_but_required
        kind: validate
        command: ls
        ok_exit_codes: [0, 1]
        capture:
          summary: {pattern: 'checked (\\d+)', required: true}
      - id: no_default
        kind: validate
        command: ls
        capture: {issues: '(\\d+) ISSUES'}
        expect: [issues == 0]
      - id: fails_at_default
        kind: validate
        command: ls
        capture: {saved: {pattern: 'saved (\\d+)', type: int, default: 0}}
        expect: [saved == games * 2]
      - id: reads_a_step
        kind: validate
        command: ls
        capture: {issues: {pattern: '(\\d+) ISSUES', type: int, default: 0}}
        expect: ["issues == 0 and steps.defaults.status == 'SUCCESS'"]
      - id: strict
        kind: run
        command: ls
"""


def test_steps_that_can_never_fall_short_are_warned_about() -> None:
    loaded = load_text(textwrap.dedent(NEVER_SHORT).lstrip(), Path("rb.yaml"))
    assert [(w.mark[0], w.message) for w in loaded.warnings] == [
        (10, "step 'lenient' cannot fall short: ok_exit_codes [0, 1] and no expect"),
        (
            18,
            "step 'defaults': its expectations hold when nothing matches (defaults issues=0, "
            "warnings=0); mark a capture `required: true` or drop its default",
        ),
    ]


def test_validate_prints_the_warnings_and_exits_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "rb.yaml").write_text(textwrap.dedent(NEVER_SHORT).lstrip(), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    code, out, err = _validate(["rb.yaml"], monkeypatch, capsys)
    assert code == 0
    assert out == "rb.yaml: ok\n"
    assert err == (
        "warning: rb.yaml:10: step 'lenient' cannot fall short: ok_exit_codes [0, 1] and no "
        "expect\n"
        "warning: rb.yaml:18: step 'defaults': its expectations hold when nothing matches "
        "(defaults issues=0, warnings=0); mark a capture `required: true` or drop its default\n"
    )
    code, out, _ = _validate(["rb.yaml", "--format", "json"], monkeypatch, capsys)
    assert code == 0
    assert [w.split(": ", 2)[1] for w in json.loads(out)[0]["warnings"]] == [
        "rb.yaml:10",
        "rb.yaml:18",
    ]


def test_an_unknown_filter_or_test_is_a_located_problem_not_an_internal_error() -> None:
    text = textwrap.dedent("""
        version: 1
        id: f
        title: F
        vars:
          date: {type: date, default: "2026-01-25"}
        steps:
          - {id: a, kind: run, command: "echo {{ date | defualt(1) }}"}
          - {id: b, kind: run, command: "echo {{ date is nosuchtest }}"}
    """).lstrip()
    assert _problems(text) == [
        "rb.yaml:7:33: 'command' of step 'a': unknown filter 'defualt'; did you mean 'default'?",
        "rb.yaml:8:33: 'command' of step 'b': unknown test 'nosuchtest'",
    ]


# --- text-level fuzzing: YAML tags on keys and values, deep and odd expressions -------------

_EXAMPLE_LINES = EXAMPLE.read_text(encoding="utf-8").splitlines()
_KEYED = [
    i for i, line in enumerate(_EXAMPLE_LINES) if ":" in line and not line.lstrip().startswith("#")
]
_TAGS = st.sampled_from(
    ["!Y", "!!binary", "!!set", "!!omap", "!!python/object:os.system", "!!str", "!!int", "!<x>"]
)
_DEEP = st.one_of(
    st.integers(1, 400).map(lambda n: "{{ " + "(" * n + "1" + ")" * n + " }}"),
    st.integers(1, 2000).map(lambda n: "{{ " + " + ".join(["1"] * n) + " }}"),
    st.integers(1, 300).map(lambda n: "{{ " + "[" * n + "]" * n + " }}"),
    st.integers(1, 300).map(lambda n: "{{ x" + " | default(1)" * n + " }}"),
    st.sampled_from(["x{{ 1 }}", "{{ 1 }}x", "{{", "{% if %}", "{{ date | defualt(1) }}"]),
    st.sampled_from(["{{ x is nosuchtest }}", "{{ 1/0 }}", "{{ 'a' * 99999999 }}"]),
)


@st.composite
def _tagged_or_deep(draw: st.DrawFn) -> str:
    lines = list(_EXAMPLE_LINES)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.sampled_from(_KEYED))
        head, _, value = lines[i].partition(":")
        indent = len(head) - len(head.lstrip(" -"))
        key = head[indent:]
        action = draw(st.sampled_from(["tag key", "tag value", "deep value"]))
        if action == "tag key":
            lines[i] = f"{head[:indent]}{draw(_TAGS)} {key}:{value}"
        elif action == "tag value":
            lines[i] = f"{head}: {draw(_TAGS)}{value}"
        else:
            lines[i] = f"{head}: {json.dumps(draw(_DEEP))}"
    return "\n".join(lines) + "\n"


# CI runs a few hundred; RUNBOOK_FUZZ_EXAMPLES=10000 is the count the reliability issue asks for.
@settings(
    max_examples=int(os.environ.get("RUNBOOK_FUZZ_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(_tagged_or_deep())
def test_tags_and_deep_expressions_load_plan_or_raise_a_located_error(text: str) -> None:
    from agent.errors import RunbookError
    from agent.output.review import render_review, review_plan
    from agent.plan.vars import resolve_vars

    try:
        loaded = load_text(text, Path("fuzz.yaml"))
    except ValidationError as exc:
        assert exc.problems
        for p in exc.problems:
            assert p.line >= 1 and p.col >= 1 and p.message
        return
    try:
        values = resolve_vars(loaded.runbook, {"date": "2026-01-25"})
        render_review(review_plan(loaded, values, offline=True))
    except RunbookError as exc:  # the boundary's kind of error: one line for the user
        assert str(exc) and "\n" not in str(exc)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('env: {!Y "1": "2"}', "7:11: unsupported YAML tag '!Y'"),
        ('env: {X: !!binary "AAAA"}', "7:14: unsupported YAML tag '!!binary'"),
        ("env: !!set {X}", "7:10: unsupported YAML tag '!!set'"),
        (
            "command: echo {{ " + "(" * 100 + "1" + ")" * 100 + " }}",
            "7:14: 'command' of step 'a': ",
        ),
        ("command: echo {{ " + " + ".join(["1"] * 1000) + " }}", "7:14: 'command' of step 'a': "),
    ],
)
def test_yaml_tags_and_deep_expressions_are_located_problems(line: str, message: str) -> None:
    text = textwrap.dedent("""
        version: 1
        id: t
        title: T
        steps:
          - id: a
            kind: run
            LINE
    """).lstrip()
    if not line.startswith("command"):
        text = text.replace("    LINE", "    command: echo hi\n    LINE")
        message = message.replace("7:", "8:", 1)
    text = text.replace("LINE", line)
    problems = _problems(text)
    assert any(p.startswith(f"rb.yaml:{message}") for p in problems), problems
    if "{{" in line:
        assert problems[0].endswith(
            "the template nests too deeply to be read (hundreds of parentheses or operators "
            "in one expression): split it, or compute the value in a step"
        )


def test_an_endless_or_huge_file_is_refused_before_it_is_read_whole(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as info:
        load_runbook(Path("/dev/zero"))
    assert [str(p) for p in info.value.problems] == [
        f"/dev/zero:1:1: the file is more than {MAX_BYTES} bytes; a runbook may have at most "
        f"{MAX_BYTES}"
    ]
    big = tmp_path / "big.yaml"
    with big.open("wb") as fh:
        fh.truncate(200 * 1024 * 1024)  # sparse: 200 MB that cost no disk
    with pytest.raises(ValidationError) as info:
        load_runbook(big)
    assert str(info.value.problems[0]).endswith(
        f"the file is {200 * 1024 * 1024} bytes; a runbook may have at most {MAX_BYTES}"
    )


def test_a_value_a_shell_parses_again_is_warned_about() -> None:
    loaded = load_text(
        textwrap.dedent("""
            version: 1
            id: s
            title: S
            vars:
              x: {type: string, default: a}
            steps:
              - {id: a, kind: run, command: "sh -c 'echo {{ x }}'"}
              - {id: b, kind: run, command: "bash -c 'echo \\"$1\\"' _ {{ x }}"}
              - {id: c, kind: run, shell: true, command: "eval echo {{ x }}"}
              - {id: d, kind: run, command: ["/bin/bash", "-lc", "echo {{ x }}"]}
              - {id: e, kind: run, command: "echo {{ x }}"}
        """).lstrip(),
        Path("s.yaml"),
    )
    tail = (
        "reads {{ x }} as shell code, whatever the quoting: "
        'pass the value as an argument ("$1") or through env'
    )
    assert loaded.warning_lines() == [
        f"warning: s.yaml:7: step 'a': `sh -c` {tail}",
        f"warning: s.yaml:9: step 'c': `eval` {tail}",
        f"warning: s.yaml:10: step 'd': `bash -lc` {tail}",
    ]
