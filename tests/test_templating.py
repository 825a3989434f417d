"""Templating: strict sandboxed rendering, commands split before substitution, expressions."""

from __future__ import annotations

import datetime as dt
import shlex
import subprocess

import pytest

from agent.plan import templating
from agent.plan.templating import TemplateError

HOSTILE = [
    "; rm -rf ~",
    "$(touch x)",
    "`touch x`",
    "a\nb",
    "--flag",
    'it\'s "quoted"',
    "a b  c",
    "| cat /etc/passwd &",
    "",
    "*",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_value_never_adds_arguments(value: str) -> None:
    argv = templating.render_command(
        "python x.py --name {{ v }} --date={{ d }}", {"v": value, "d": value}
    )
    assert argv == ["python", "x.py", "--name", value, f"--date={value}"]


def test_list_command_is_taken_as_given() -> None:
    argv = templating.render_command(["echo", "{{ v }}", "a b"], {"v": "; ls"})
    assert argv == ["echo", "; ls", "a b"]


def test_template_with_spaces_is_one_word() -> None:
    assert templating.split_command("run {{ a ~ ' ' ~ b }} 'x y' \"{{ c }}\"") == [
        "run",
        "{{ a ~ ' ' ~ b }}",
        "x y",
        "{{ c }}",
    ]


def test_unbalanced_quotes() -> None:
    with pytest.raises(TemplateError, match=r"^cannot split command: No closing quotation$"):
        templating.split_command("echo 'oops")


@pytest.mark.parametrize("value", HOSTILE)
def test_shell_true_quotes_every_value(value: str, tmp_path: object) -> None:
    argv = templating.render_command("printf '%s|' {{ v }} && echo end", {"v": value}, shell=True)
    assert argv[:2] == ["/bin/sh", "-c"]
    assert argv[2] == f"printf '%s|' {shlex.quote(value)} && echo end"
    out = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert out == f"{value}|end\n"


def test_render_is_strict() -> None:
    with pytest.raises(TemplateError, match=r"^cannot render 'x {{ nope }}': 'nope' is undefined$"):
        templating.render("x {{ nope }}", {})


def test_render_plain_strings_untouched() -> None:
    assert templating.render("no template {here}", {}) == "no template {here}"
    assert templating.render("{{ d }}", {"d": dt.date(2026, 1, 25)}) == "2026-01-25"


@pytest.mark.parametrize(
    "source",
    [
        "{{ x.__class__ }}",
        "{{ x.__class__.__mro__ }}",
        "{{ x['__class__'] }}",
        "{{ x|attr('__class__') }}",
        "{{ f.__globals__ }}",
    ],
)
def test_unsafe_code_is_rejected_at_validate_and_at_render(source: str) -> None:
    with pytest.raises(TemplateError, match=r"^unsafe template: access to '_"):
        templating.template_names(source)
    with pytest.raises(TemplateError, match=r"unsafe|undefined"):
        templating.render(source, {"x": 1, "f": test_render_is_strict})


def test_render_time_sandbox_messages() -> None:
    with pytest.raises(TemplateError) as info:
        templating.render("{{ x.__class__ }}", {"x": 1})
    assert str(info.value) == (
        "cannot render '{{ x.__class__ }}': "
        "access to attribute '__class__' of 'int' object is unsafe."
    )
    with pytest.raises(TemplateError, match=r"^unsafe template: access to 'mro' is not allowed$"):
        templating.expression_names("t.mro()")
    with pytest.raises(TemplateError, match="'mro'"):
        templating.render("{{ t.mro() }}", {"t": int})


def test_memory_bombs_are_stopped() -> None:
    with pytest.raises(TemplateError, match=r"would exceed 1000000 items"):
        templating.render("{{ 'x' * 10000000 }}", {})
    with pytest.raises(TemplateError, match=r"the exponent 100000 is too large"):
        templating.render("{{ 9 ** 100000 }}", {})
    assert templating.render("{{ 'ab' * 3 }} {{ 2 ** 10 }}", {}) == "ababab 1024"


def test_names_and_step_references() -> None:
    assert templating.template_names(
        "{{ a }} {% for i in b %}{{ i }}{% endfor %} {{ range(3) }}"
    ) == {
        "a",
        "b",
    }
    assert templating.expression_names("x == games * 2 and steps.a.status") == {
        "x",
        "games",
        "steps",
    }
    assert templating.step_references("{{ steps.a.status }} {{ steps['b'].captures.n }}") == {
        "a",
        "b",
    }
    assert templating.step_paths("steps.a.captures.n > steps.b.status", expression=True) == {
        ("a", "captures", "n"),
        ("b", "status"),
    }
    assert templating.template_names("plain") == set()


def test_syntax_errors() -> None:
    with pytest.raises(TemplateError) as info:
        templating.template_names("{{ a")
    assert str(info.value) == (
        "template syntax error: unexpected end of template, expected 'end of print statement'."
    )
    with pytest.raises(TemplateError) as info:
        templating.expression_names("a ==")
    assert str(info.value) == "invalid expression 'a ==': unexpected 'end of print statement'"


@pytest.mark.parametrize(
    ("expr", "context", "expected"),
    [
        ("n > 3", {"n": None}, False),
        ("n < 3", {"n": None}, False),
        ("n == 3", {"n": None}, False),
        ("n != 3", {"n": None}, True),
        ("n >= games * 2", {"n": 16, "games": 8}, True),
        ("n + 1 > 3", {"n": None}, False),
        ("issues == 0", {"issues": 0}, True),
        ("n > 3", {"n": "x"}, False),
        ("steps.a.status != 'SUCCESS'", {"steps": {"a": {"status": "FAILED"}}}, True),
    ],
)
def test_evaluate(expr: str, context: dict[str, object], expected: bool) -> None:
    assert bool(templating.evaluate(expr, context)) is expected


def test_evaluate_undefined_is_an_error() -> None:
    with pytest.raises(TemplateError, match=r"^cannot evaluate 'nope > 1': 'nope' is undefined$"):
        templating.evaluate("nope > 1", {})


def test_is_template() -> None:
    assert templating.is_template("a {{ b }}")
    assert templating.is_template("{% if x %}{% endif %}")
    assert not templating.is_template("a { b }")
