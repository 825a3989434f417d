"""The loader: the corpus of broken runbooks, located messages, and random input never crashing."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.cli import main
from agent.errors import ValidationError
from agent.plan.loader import MAX_BYTES, load_runbook, load_text
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
