"""Tests for agent.proc.redact: every form of a secret is masked, in text and in chunked bytes."""

from __future__ import annotations

import base64
import json
import random
from urllib.parse import quote, quote_plus

from agent.proc.redact import MASK, Redactor, secret_forms

SECRET = "hunter2/s3cr+et word"


def _b64_inner(secret: bytes, shift: int) -> str:
    """The characters of base64(<shift bytes> + secret) made only of the secret's bits."""
    encoded = base64.b64encode(b"\0" * shift + secret).decode()
    return encoded[-(-8 * shift // 6) : 8 * (shift + len(secret)) // 6]


def test_plain_secret_is_masked() -> None:
    redactor = Redactor([SECRET])
    assert redactor.redact(f"token={SECRET}; again {SECRET}.") == "token=***; again ***."


def test_mask_never_reveals_length() -> None:
    redactor = Redactor(["abc", "a-much-longer-secret-value"])
    assert redactor.redact("abc a-much-longer-secret-value") == "*** ***"


def test_url_encoded_forms_are_masked() -> None:
    redactor = Redactor([SECRET])
    for form in (quote(SECRET, safe=""), quote(SECRET), quote_plus(SECRET)):
        assert form != SECRET
        assert redactor.redact(f"https://x.test/?key={form}&a=1") == "https://x.test/?key=***&a=1"


def test_base64_forms_are_masked() -> None:
    secret = "pa??>word!!"  # '?' and '>' encode differently in the standard and URL-safe alphabets
    raw = secret.encode()
    redactor = Redactor([secret])
    std = base64.b64encode(raw).decode()
    urlsafe = base64.urlsafe_b64encode(raw).decode()
    assert std != urlsafe
    for form in (std, std.rstrip("="), urlsafe, urlsafe.rstrip("=")):
        assert redactor.redact(f"Authorization: Basic {form}\n") == "Authorization: Basic ***\n"


def test_base64_inside_a_longer_stream_is_masked_at_every_alignment() -> None:
    secret = "correct-horse-battery"
    redactor = Redactor([secret])
    for shift in range(3):
        for suffix in (b"", b"x", b"yz", b"tail data"):
            blob = base64.b64encode(b"p" * shift + b"user:" + secret.encode() + suffix).decode()
            redacted = redactor.redact(blob)
            assert MASK in redacted
            for inner_shift in range(3):
                assert _b64_inner(secret.encode(), inner_shift) not in redacted
            # What survives around the mask is the neighbours' encoding and at most the two
            # edge characters that mix the secret's bits with theirs.
            assert len(redacted) - len(MASK) <= len(blob) - 4 * len(secret) // 3 + 2


def test_json_escaped_forms_are_masked() -> None:
    secret = 'pa"ss\\wörd'
    redactor = Redactor([secret])
    ascii_form = json.dumps(secret)[1:-1]
    unicode_form = json.dumps(secret, ensure_ascii=False)[1:-1]
    assert ascii_form != unicode_form
    assert redactor.redact(json.dumps({"password": secret})) == '{"password": "***"}'
    assert redactor.redact(f'"{unicode_form}"') == '"***"'


def test_short_and_empty_secrets_are_ignored() -> None:
    redactor = Redactor(["", "a", "on"])
    assert not redactor.active
    assert redactor.redact("a button turned on") == "a button turned on"
    assert secret_forms("on") == []


def test_no_secrets_is_a_pass_through() -> None:
    redactor = Redactor([])
    data = b"anything \xff\xfe at all"
    stream = redactor.stream()
    assert stream.feed(data) is data
    assert stream.flush() == b""
    assert redactor.redact("text") == "text"


def test_forms_are_longest_first() -> None:
    forms = secret_forms(SECRET)
    assert [len(f) for f in forms] == sorted((len(f) for f in forms), reverse=True)
    assert SECRET in forms


def test_longer_form_wins_over_its_prefix() -> None:
    secret = "abcdefgh"  # base64 "YWJjZGVmZ2g=": the padded form must not leave a stray "="
    redactor = Redactor([secret])
    assert redactor.redact("YWJjZGVmZ2g=.") == "***."


def test_stream_masks_a_secret_split_at_every_point() -> None:
    redactor = Redactor([SECRET])
    data = f"before {SECRET} after\n".encode()
    for split in range(len(data) + 1):
        stream = redactor.stream()
        out = stream.feed(data[:split]) + stream.feed(data[split:]) + stream.flush()
        assert out == b"before *** after\n"


def test_stream_matches_whole_text_redaction_for_any_chunking() -> None:
    secrets = [SECRET, "second-secret", "xyz"]
    redactor = Redactor(secrets)
    rng = random.Random(1234)
    pieces = [b"\xff\xfe", b"noise ", b"\n", b"x", b"yz", "\u00e9".encode()]
    pieces += [form.encode() for s in secrets for form in secret_forms(s)]
    for _ in range(500):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        stream = redactor.stream()
        out: list[bytes] = []
        pos = 0
        while pos < len(data):
            size = rng.randint(1, 12)
            out.append(stream.feed(data[pos : pos + size]))
            pos += size
        out.append(stream.flush())
        assert b"".join(out) == redactor.redact_bytes(data)


def test_stream_holds_back_only_what_could_start_a_secret() -> None:
    redactor = Redactor([SECRET])
    stream = redactor.stream()
    assert stream.feed(b"a finished line\n") == b"a finished line\n"
    start = SECRET[:-1].encode()
    assert len(start) < redactor.longest
    assert stream.feed(b"z" * 1000 + start) == b"z" * 1000
    assert stream.flush() == start


def test_stream_handles_invalid_utf8_around_a_secret() -> None:
    redactor = Redactor(["s3cret-value"])
    stream = redactor.stream()
    out = stream.feed(b"\xff\xc3s3cret-") + stream.feed(b"value\x80\n") + stream.flush()
    assert out == b"\xff\xc3***\x80\n"


def test_markdown_and_html_escaped_forms_are_masked() -> None:
    secret = "Abc&Sec|ret<1>"
    r = Redactor([secret])
    for shown in ("Abc&amp;Sec|ret&lt;1&gt;", "Abc&Sec\\|ret<1>", "Abc&amp;Sec\\|ret&lt;1&gt;"):
        assert r.redact(f"x {shown} y") == f"x {MASK} y", shown


def test_base64_wrapped_at_76_and_64_columns_is_masked_line_by_line() -> None:
    secret = "eyJhbGciOiJIUzI1NiJ9." + "eyJzdWIiOiIxMjM0NTY3ODkwIn0" * 5 + ".sig"
    r = Redactor([secret])
    wrapped = base64.encodebytes((secret + "\n").encode()).decode()
    lines = wrapped.splitlines()
    assert len(lines) >= 3 and all(len(line) == 76 for line in lines[:-1])
    masked = [r.redact(line) for line in lines]
    assert masked[:-1] == [MASK] * (len(lines) - 1)
    # Left: the character mixing the last bits with the newline, and the padding.
    assert masked[-1].startswith(MASK) and len(masked[-1]) <= len(MASK) + 3
    assert r.redact_bytes(wrapped.encode()).startswith(MASK.encode())
    pem = "\n".join(
        base64.b64encode(secret.encode()).decode()[i : i + 64] for i in range(0, 200, 64)
    )
    assert secret[:40] not in r.redact(pem)
    assert all(r.redact(line).startswith(MASK) for line in pem.splitlines())


def test_text_is_cleaned_before_it_is_masked() -> None:
    secret = "AbcSecretValue123"
    r = Redactor([secret])
    for hidden in (
        "\x1b[0m",
        "\x1b]0;t\x07",
        "\x00",
        "\x01",
        "\u200b",
        "\u200f",
        "\u2066",
        "\ufeff",
    ):
        assert r.redact(f"A:Abc{hidden}SecretValue123.") == f"A:{MASK}.", repr(hidden)
    assert Redactor([]).redact("a\x01b") == "a\x01b"  # nothing to mask: a pass-through


def test_bytes_with_invisible_characters_inside_a_secret_are_masked() -> None:
    secret = "AbcSecretValue123"
    r = Redactor([secret])
    for hidden in (b"\x1b[0m", b"\x00", b"\x01", "\u200b".encode(), "\u202e".encode()):
        data = b"A:Abc" + hidden + b"SecretValue123\n"
        assert r.redact_bytes(data) == b"A:" + MASK.encode() + b"\n", hidden
        stream = r.stream()
        assert stream.feed(data) + stream.flush() == b"A:" + MASK.encode() + b"\n", hidden
    assert r.redact_bytes(b"\x1b[1mplain\x1b[0m") == b"\x1b[1mplain\x1b[0m"
