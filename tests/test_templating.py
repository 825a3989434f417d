"""Templating: strict sandboxed rendering, commands split before substitution, expressions."""

from __future__ import annotations

import datetime as dt
import shlex
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


# --- `shell: true`: each value escaped for the quoting it stands in ----------------------------

SHELL_HOSTILE = [
    "a'; touch PWNED; echo '",
    "$(touch PWNED2)",
    "`touch PWNED3`",
    "${IFS}touch${IFS}PWNED4",
    'x"; touch PWNED5; "',
    "\"'\"'",
    "\\",
    "a\\",
    "\\'",
    '\\"',
    "a\nb; touch PWNED6",
    "a\r\ntouch PWNED7",
    "$HOME",
    "$((6*7))",
    "a=b",
    "PATH=/nowhere",
    "",
    " ",
    "*",
    "~",
    "!!",
    "#c",
    "}",
    "-rf",
    "|| touch PWNED8 &",
    "ünïcødé ☃",
]

# (script, what it prints for value v)
SHELL_CONTEXTS = {
    "plain": ("printf '%s' {{ v }}", "{v}"),
    "plain_glued": ("printf '%s' x{{ v }}y", "x{v}y"),
    "double": ('printf "%s" "{{ v }}"', "{v}"),
    "double_glued": ('printf "%s" "<{{ v }}>$(printf ok)"', "<{v}>ok"),
    "single": ("printf '%s' '{{ v }}'", "{v}"),
    "single_glued": ("printf '%s' '<{{ v }}>'", "<{v}>"),
    "pipe": ('echo "val={{ v }}" | cat', "val={v}\n"),
    "cmdsub_in_double": ('printf "%s" "$(printf "%s|" {{ v }})"', "{v}|"),
    "heredoc": ("cat <<EOF\n<{{ v }}>\nEOF", "<{v}>\n"),
    "heredoc_quoted": ("cat <<'EOF'\n<{{ v }}>\nEOF", "<{v}>\n"),
    "comment": ("printf ok # {{ v }}", "ok"),
}


def _sh(argv: list[str], cwd: object) -> str:
    done = subprocess.run(argv, capture_output=True, check=True, cwd=cwd)
    return done.stdout.decode()  # no newline translation: "\r\n" stays as it is


@pytest.mark.parametrize("context", sorted(SHELL_CONTEXTS))
def test_shell_true_values_stay_data_in_every_quoting(context: str, tmp_path: object) -> None:
    script, shows = SHELL_CONTEXTS[context]
    for value in SHELL_HOSTILE:
        if context.startswith("heredoc") and "\n" in value:
            with pytest.raises(TemplateError, match="spans lines"):
                templating.render_command(script, {"v": value}, shell=True)
            continue
        argv = templating.render_command(script, {"v": value}, shell=True)
        out = _sh(argv, tmp_path)
        want = value.replace("\n", " ") if context == "comment" else value
        assert out == shows.format(v=want) if context != "comment" else out == "ok", (value, argv)
    assert list(tmp_path.iterdir()) == []  # type: ignore[attr-defined]


def test_the_reported_shell_injections(tmp_path: object) -> None:
    for script, value in [
        ('echo "val={{ msg }}" | cat', "a'; touch PWNED; echo '"),
        ("echo 'val={{ msg }}'", "$(touch PWNED2)"),
        ("echo 'val={{ msg }}'", "'; touch PWNED3; echo '"),
    ]:
        out = _sh(templating.render_command(script, {"msg": value}, shell=True), tmp_path)
        assert out == f"val={value}\n"
    assert list(tmp_path.iterdir()) == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", SHELL_HOSTILE)
def test_shell_true_list_renders_words_then_quotes_them(value: str, tmp_path: object) -> None:
    argv = templating.render_command(
        ["printf", "%s|", "{{ v }}", "x{{ v }}"], {"v": value}, shell=True
    )
    assert argv[:2] == ["/bin/sh", "-c"]
    assert argv[2] == shlex.join(["printf", "%s|", value, f"x{value}"])
    assert _sh(argv, tmp_path) == f"{value}|x{value}|"
    assert list(tmp_path.iterdir()) == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("echo {% if v %}x{% endif %}", "not {% %} blocks"),
        ("{% set x = 1 %}echo {{ x }}", "not {% %} blocks"),
        ('echo "{{ v }}', "No closing quotation"),
        ("echo `echo {{ v }}`", "rather than backticks"),
        ("echo ${X:-{{ v }}}", "inside ${...}"),
        ("echo ${{ v }}", "'$' cannot stand right before"),
        ("echo \\{{ v }}", "backslash cannot stand right before"),
        ('echo "\\{{ v }}"', "backslash cannot stand right before"),
        ("cat <<{{ v }}\nx\n", "delimiter cannot be a {{ }} value"),
    ],
)
def test_shell_scripts_that_cannot_be_quoted(script: str, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        templating.check_shell_command(script)
    assert message in str(info.value)
    with pytest.raises(TemplateError):
        templating.render_command(script, {"v": "x"}, shell=True)


def test_shell_scripts_that_scan() -> None:
    ctx = {"v": "EOF", "n": 4, "date": "2026-03-01"}
    # raw blocks (the importer's way to write a literal `{#`) and comments are fine
    assert (
        templating.render(
            'games=(a b); echo "${% raw %}{#{% endraw %}games[@]} on {{ date }}"{# c #}',
            ctx,
            shell=True,
        )
        == 'games=(a b); echo "${#games[@]} on 2026-03-01"'
    )
    assert templating.render("echo $(( {{ n }} * 2 ))", ctx, shell=True) == "echo $(( 4 * 2 ))"
    with pytest.raises(TemplateError, match=r"only a number can stand inside \$\(\( \)\)"):
        templating.render("echo $(( {{ v }} ))", ctx, shell=True)
    # a value that would end a here-document early
    with pytest.raises(TemplateError, match="would end the here-document 'EOF' early"):
        templating.render("cat <<EOF\n{{ v }}\nEOF\necho after", ctx, shell=True)
    # `case` patterns inside $( ) do not close it
    script = 'x=$(case a in a) printf %s {{ v }};; esac); echo "$x"'
    assert templating.render(script, {"v": "a b"}, shell=True) == (
        "x=$(case a in a) printf %s 'a b';; esac); echo \"$x\""
    )
    # null renders empty, as before
    assert templating.render("echo {{ v }}", {"v": None}, shell=True) == "echo ''"


# --- SQL fields: numbers only ------------------------------------------------------------------


def test_sql_takes_numbers_only() -> None:
    ctx = {"games": 8, "ratio": 0.5, "name": "x' OR 1=1 --", "flag": True, "d": dt.date(2026, 1, 2)}
    assert templating.render_sql("n >= {{ games * 2 }} AND r > {{ ratio }}", ctx) == (
        "n >= 16 AND r > 0.5"
    )
    assert templating.render_sql(
        "a = @date{% if games > 1 %} AND b = {{ games }}{% endif %}", ctx
    ) == ("a = @date AND b = 8")
    assert templating.render_sql("no template", {}) == "no template"
    for expr in ("name", "flag", "d", "games ~ ''"):
        with pytest.raises(TemplateError) as info:
            templating.render_sql("x = '{{ " + expr + " }}'", ctx)
        assert str(info.value) == (
            "only numbers can be written into SQL with {{ }}; "
            f"bind '{expr}' as a query parameter: @name"
        )
    with pytest.raises(TemplateError, match="'nope' is undefined"):
        templating.render_sql("x = {{ nope }}", ctx)


# --- expectations: a null read is not met -------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "context", "expected"),
    [
        ("nothing != 5", {"nothing": None}, False),
        ("nothing == none", {"nothing": None}, False),
        ("n != 5", {"n": 4}, True),
        ("n > 3", {"n": 4}, True),
        ("n > 3 or other", {"n": None, "other": True}, False),
        ("steps.a.captures.n != 5", {"steps": {"a": {"captures": {"n": None}}}}, False),
        ("steps.a.captures.n != 5", {"steps": {"a": {"captures": {"n": 4}}}}, True),
        ("steps.a.status == 'SUCCESS'", {"steps": {"a": {"status": "SUCCESS"}}}, True),
        ("counts['t'].actual == 3", {"counts": {"t": {"actual": 3}}}, True),
    ],
)
def test_evaluate_expectation(expr: str, context: dict[str, object], expected: bool) -> None:
    assert templating.evaluate_expectation(expr, context) is expected


def test_evaluate_expectation_undefined_is_an_error() -> None:
    with pytest.raises(TemplateError, match="'nope' is undefined"):
        templating.evaluate_expectation("nope > 1", {})


def test_a_here_string_is_an_ordinary_word_not_a_here_document(tmp_path: object) -> None:
    # `<<<'...'` once read as `<<` with a quoted delimiter that swallowed the value: KeyError.
    for script in ("cat <<<'{{ v }}'", 'cat <<<"{{ v }}"', "cat <<< {{ v }}"):
        for value in ("plain", "a'; touch PWNED; echo '", "$(touch PWNED2)"):
            argv = templating.render_command(script, {"v": value}, shell=True)
            # /bin/sh may be dash, which has no here-strings: the quoting is bash's too.
            assert _sh(["bash", "-c", argv[2]], tmp_path) == value + "\n", (script, value)
    assert list(tmp_path.iterdir()) == []  # type: ignore[attr-defined]


# sh's own word rules around `#`: each of these once let a value run as a command.
COMMENT_LOOKALIKES = [
    "echo a\\;#{{ x }}",
    "echo $(echo a)#{{ x }}",
    "echo \\ #{{ x }}",
    "echo a\\\n#{{ x }}",
    "echo a\\&#{{ x }}",
    "echo a\\|#{{ x }}",
]
FRAGMENTS = ["echo a", " ", "\\", ";", "&&", "|", "#", "(", ")", "$(", "\n", "b", "'", '"', "\\\n"]


@pytest.mark.parametrize("script", COMMENT_LOOKALIKES)
def test_a_hash_that_does_not_start_a_word_is_no_comment(script: str, tmp_path: Path) -> None:
    for value in [";touch PWNED", *SHELL_HOSTILE]:
        argv = templating.render_command(script, {"x": value}, shell=True)
        subprocess.run(argv, cwd=tmp_path, capture_output=True, check=False, timeout=10)
        assert list(tmp_path.iterdir()) == [], (script, value, argv)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    before=st.lists(st.sampled_from(FRAGMENTS), max_size=6),
    after=st.lists(st.sampled_from(FRAGMENTS), max_size=3),
    value=st.sampled_from([";touch PWNED", "$(touch PWNED)", "`touch PWNED`", "a\ntouch PWNED"]),
)
def test_no_script_that_validates_runs_a_value_in_real_sh(
    before: list[str], after: list[str], value: str, tmp_path: Path
) -> None:
    """Generated contexts: whatever the scanner accepts, real /bin/sh keeps the value data."""
    script = "".join(before) + "{{ x }}" + "".join(after)
    try:
        argv = templating.render_command(script, {"x": value}, shell=True)
    except TemplateError:
        return  # refused: validate says so, nothing runs
    work = Path(tempfile.mkdtemp(dir=tmp_path))  # one folder per example: examples repeat
    subprocess.run(argv, cwd=work, capture_output=True, check=False, timeout=10)
    assert not (work / "PWNED").exists(), (script, value, argv)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab# \t\r\n\v\f\x1c=|;&$", max_size=30))
def test_split_without_quotes_agrees_with_shlex(source: str) -> None:
    # The unquoted fast path must split exactly where shlex would.
    assert templating.split_command(source) == shlex.split(source, posix=True)
