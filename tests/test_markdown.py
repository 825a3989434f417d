"""Tests of agent/markdown.py: untrusted text can add no HTML and no structure to a report."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.output import markdown
from agent.output.markdown import clean, code, fence, inline, link, plain, table


def test_clean_removes_ansi_nul_and_controls() -> None:
    text = "\x1b[1;31mred\x1b[0m\x00 \x1b]0;title\x07ok\x7f\x9b2Jx\r\nnext\u202eevil\tTab"
    assert clean(text) == "red okx\nnextevil\tTab"


def test_plain_collapses_newlines() -> None:
    assert plain("a\n\n## b\r\nc\u2028d\t e  ") == "a ## b c d e"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ("</details>", "&lt;/details&gt;"),
        ("a & b &amp; &#38; &#x26; &bogus", "a &amp; b &amp; &#38; &#x26; &amp;bogus"),
        ("# heading", "\\# heading"),
        ("###### six", "\\###### six"),
        ("#hashtag", "#hashtag"),
        ("> quote", "&gt; quote"),
        ("- item", "\\- item"),
        ("-5 degrees", "-5 degrees"),
        ("* item", "\\* item"),
        ("+ item", "\\+ item"),
        ("1. first", "1\\. first"),
        ("12) twelfth", "12\\) twelfth"),
        ("---", "\\---"),
        ("= = =", "\\= = ="),
        ("~~~ python", "\\~~~ python"),
        ("a | b", "a \\| b"),
        ("use `rm -rf`", "use \\`rm -rf\\`"),
        ("ends with #", "ends with \\#"),
        ("back\\slash", "back\\\\slash"),
        ("line one\n## Fake heading", "line one ## Fake heading"),
        ("\x1b[32mgreen\x1b[0m\x00", "green"),
        ("snake_case_name", "snake_case_name"),
        (42, "42"),
        ("[Click](https://evil.example/p)", "\\[Click\\](`https://evil.example/p)`"),
        ("![px](x.png)", "!\\[px\\](x.png)"),
        ("see www.evil.example now", "see `www.evil.example` now"),
        ("mail a.b@evil.example", "mail `a.b@evil.example`"),
        ("ftp://h/x|y", "`ftp://h/x\\|y`"),
        ("ratio: 0.5 step:verify 12:30", "ratio: 0.5 step:verify 12:30"),
    ],
)
def test_inline(raw: object, expected: str) -> None:
    assert inline(raw) == expected


def test_inline_is_one_line_whatever_the_input() -> None:
    hostile = "\n".join(["x", "# h", "```", "<div>", "| t |", "---", "\r\n", "\x00"])
    out = inline(hostile)
    assert "\n" not in out
    assert not re.search(r"(?<!\\)[<>`|]", out.replace("&lt;", "").replace("&gt;", ""))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("bin/x.py", "`bin/x.py`"),
        ("a`b", "``a`b``"),
        ("`start", "`` `start ``"),
        ("x ``` y", "````x ``` y````"),
        ("", "` `"),
        ("two\nlines", "`two lines`"),
    ],
)
def test_code(raw: str, expected: str) -> None:
    assert code(raw) == expected


def test_fence_is_longer_than_any_backtick_run_inside() -> None:
    body = "echo ```` hi\n```\n`````"
    block = fence(body, "bash")
    lines = block.split("\n")
    assert lines[0] == "``````bash"
    assert lines[-1] == "``````"
    assert lines[1:-1] == body.split("\n")


def test_fence_defaults_and_cleaning() -> None:
    assert fence("plain") == "```\nplain\n```"
    assert fence("\x1b[31mred\x1b[0m\x00\r\n\n", "ba sh<x>") == "```bashx\nred\n```"


def test_link_escapes_text_and_encodes_target() -> None:
    assert link("logs/a.log", "logs/a.log") == "[logs/a.log](logs/a.log)"
    assert link("x](evil)", "a b)<c>\n") == "[x\\](evil)](a%20b%29%3Cc%3E)"


def test_table_escapes_cells() -> None:
    out = table([["a|b", "<i>", "# h"]], ["T", "U", "V"])
    assert out.splitlines()[0].startswith("| T")
    assert "a\\|b" in out
    assert "&lt;i&gt;" in out
    assert "\\# h" in out
    assert len(out.splitlines()) == 3


def test_table_keeps_numbers_as_written() -> None:
    out = table([["007", "1e3"]], ["a", "b"])
    assert "007" in out
    assert "1e3" in out


def test_all_is_exported() -> None:
    assert set(markdown.__all__) == {
        "clean",
        "code",
        "fence",
        "inline",
        "link",
        "plain",
        "plain_table",
        "table",
    }


def test_plain_table_widths_do_not_depend_on_wcwidth() -> None:
    """Emoji count as one character each, so reports are the same bytes on every machine."""
    text = markdown.plain_table([["✅ done", "1"], ["x", "22"]], ["state", "n"])
    assert text.splitlines()[2] == "| ✅ done  | 1   |"


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("aZ09 .,:;/()'%+=#*~-_@w&<>`|[]\\é!")), max_size=30))
def test_inline_fast_path_writes_what_the_full_escape_writes(raw: str) -> None:
    """Text the fast path passes through unchanged is text the full escape leaves unchanged."""
    fast = inline(raw)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(markdown, "_INERT", re.compile(r"(?!)"))  # never inert: always the full path
        assert inline(raw) == fast
