"""Secret masking: every known form of every secret value becomes "***", in text and bytes."""

from __future__ import annotations

import base64
import json
import re
import shlex
from collections.abc import Callable, Iterable
from urllib.parse import quote, quote_plus

from agent.proc.terminal import strip_controls

__all__ = ["MASK", "MIN_SECRET_LENGTH", "Redactor", "StreamRedactor", "secret_forms"]

MASK = "***"
"""What a secret becomes; always the same three characters, so its length is never revealed."""

MIN_SECRET_LENGTH = 3
"""Shorter values are not masked: masking "1" or "on" would replace every such character or
word in the output, destroying it while protecting nothing (a value that short is guessable)."""

_MIN_SHIFTED_LENGTH = 6
"""The inner part of an offset base64 encoding is only masked when at least this long: a shorter
run of base64 characters turns up by chance in ordinary text (and would be masked there)."""

_MASK_BYTES = MASK.encode()

# What a reader of a terminal does not see between two characters: an escape sequence, a
# control character, a bidi mark or a zero-width character (in UTF-8). A log is kept raw, so a
# secret with one of these inside is masked with it there.
_HIDDEN = (
    rb"(?:\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]"
    rb"|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\xc2[\x80-\x9f]|\xd8\x9c|\xef\xbb\xbf"
    rb"|\xe2\x80[\x8b-\x8f\xaa-\xae]|\xe2\x81[\xa0-\xa4\xa6-\xa9])*"
)
_CONTROL_BYTES = bytes(range(0x20)).replace(b"\t", b"").replace(b"\n", b"").replace(b"\r", b"")
_CONTROL_BYTES += b"\x7f"
_HIDDEN_LEADS = (b"\xc2", b"\xd8\x9c", b"\xef\xbb\xbf", b"\xe2\x80", b"\xe2\x81")


def _may_hide(data: bytes) -> bool:
    """Whether `data` holds a byte of `_HIDDEN` (a quick test: most output has none)."""
    if len(data.translate(None, _CONTROL_BYTES)) != len(data):
        return True
    return any(lead in data for lead in _HIDDEN_LEADS)


def _hidden_tolerant(form: bytes) -> bytes:
    """A pattern for `form` with anything a reader does not see allowed between its characters."""
    chars = form.decode("utf-8", errors="surrogatepass")
    return _HIDDEN.join(re.escape(c.encode("utf-8", errors="surrogatepass")) for c in chars)


_WRAP_WIDTHS = (76, 64)
"""Where base64 tools break their lines: `base64` and MIME at 76 columns, PEM and `openssl` at 64.
A wrapped encoding reaches the line-by-line outputs as pieces, so each piece is a form."""

# What the report's inline markdown puts before a character so that it stays text.
_MARKDOWN_ESCAPES = str.maketrans({c: "\\" + c for c in "\\`|[]"})


def _b64_shifted(secret: bytes, shift: int, *, urlsafe: bool) -> str:
    """Return the part of base64(<shift bytes> + secret) that depends on the secret alone.

    A secret inside a longer base64 stream starts at byte offset 0, 1 or 2 of a 3-byte group;
    each offset encodes it differently. The characters covering only the secret's bits are the
    same wherever the secret sits, so masking them (for each of the three offsets) hides it
    whatever the alignment; the one or two edge characters that mix in neighbouring bytes stay.
    """
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    encoded = encode(b"\0" * shift + secret).decode("ascii")
    first = -(-8 * shift // 6)  # first character made only of the secret's bits
    end = 8 * (shift + len(secret)) // 6  # one past the last such character
    return encoded[first:end]


def _html_escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _wrapped_b64(raw: bytes) -> set[str]:
    """The lines of the secret's base64 wrapped at each usual width, and the wrapped whole.

    The encoding of the secret alone at offset 0 (its last, mixed character left out) is what
    `base64` prints when the secret starts its input, whatever follows (`echo` adds a newline).
    """
    inner = _b64_shifted(raw, 0, urlsafe=False)
    forms: set[str] = set()
    for width in _WRAP_WIDTHS:
        if len(inner) <= width:
            continue
        pieces = [inner[i : i + width] for i in range(0, len(inner), width)]
        forms.update(p for p in pieces if len(p) >= _MIN_SHIFTED_LENGTH)
        forms.add("\n".join(pieces))
        forms.add("\r\n".join(pieces))
    return forms


def secret_forms(secret: str) -> list[str]:
    """List the forms of a secret that may show up in output, longest first.

    Args:
        secret: the secret value.

    Returns:
        The distinct forms: plain, URL-encoded (``quote`` with and without ``/`` kept, and
        ``quote_plus``), JSON-escaped (ASCII-only and not), shell-quoted, HTML- and
        markdown-escaped, base64 (standard and URL-safe, with and without padding), the
        alignment-independent inner parts of base64 at the three byte offsets, and base64
        wrapped at 76 and 64 columns (each line, and the lines joined). Empty when the
        secret is shorter than ``MIN_SECRET_LENGTH``.
    """
    if len(secret) < MIN_SECRET_LENGTH:
        return []
    raw = secret.encode("utf-8", errors="surrogatepass")
    forms = {
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        # As a shell shows it: a quote inside it becomes '"'"' between quoted pieces.
        shlex.quote(secret),
        secret.replace("'", "'\"'\"'"),
        # As HTML and markdown show it: a reader of the rendered page sees the plain secret.
        _html_escaped(secret),
        secret.translate(_MARKDOWN_ESCAPES),
        _html_escaped(secret.translate(_MARKDOWN_ESCAPES)),
    }
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        padded = encode(raw).decode("ascii")
        forms.add(padded)
        forms.add(padded.rstrip("="))
    for urlsafe in (False, True):
        for shift in range(3):
            inner = _b64_shifted(raw, shift, urlsafe=urlsafe)
            if len(inner) >= _MIN_SHIFTED_LENGTH:
                forms.add(inner)
    forms.update(_wrapped_b64(raw))
    return sorted(forms, key=lambda form: (-len(form), form))


class Redactor:
    """Masks every form of a set of secret values; a cheap pass-through when there are none."""

    def __init__(self, secrets: Iterable[str]) -> None:
        """Prepare the patterns for the given secret values.

        Args:
            secrets: the secret values; empty and very short ones (< MIN_SECRET_LENGTH
                characters) are ignored, see ``MIN_SECRET_LENGTH``.
        """
        forms: set[str] = set()
        for secret in secrets:
            forms.update(secret_forms(secret))
        # Longest first: at one position, the regex takes the first alternative that matches,
        # so a longer form (base64 with padding) wins over one of its own prefixes.
        ordered = sorted(forms, key=lambda form: (-len(form), form))
        byte_forms = sorted(
            {form.encode("utf-8", errors="surrogatepass") for form in ordered},
            key=lambda form: (-len(form), form),
        )
        self._text_re = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        self._bytes_re = re.compile(b"|".join(map(re.escape, byte_forms))) if byte_forms else None
        self._byte_forms = byte_forms
        self._tolerant_re: re.Pattern[bytes] | None = None
        self._longest = len(byte_forms[0]) if byte_forms else 0
        # Every proper prefix of a form: the end of a chunk is only held back when it could be
        # the start of a secret, so a finished line is passed on at once.
        self._prefixes = frozenset(form[:i] for form in byte_forms for i in range(1, len(form)))

    @property
    def active(self) -> bool:
        """Whether there is anything to mask."""
        return self._text_re is not None

    @property
    def longest(self) -> int:
        """Length in bytes of the longest form (0 when there are no secrets)."""
        return self._longest

    def redact(self, text: str) -> str:
        """Clean a text as a reader will see it, then mask every form of every secret in it.

        Cleaning comes first (escape sequences and invisible characters removed, see
        ``terminal.strip_controls``): a secret with a colour code or a NUL inside matches no
        form, and whichever output cleaned it later would show it whole.

        Args:
            text: any text.

        Returns:
            The cleaned text with each occurrence of a secret form replaced by ``MASK``; the
            text unchanged when there is nothing to mask.
        """
        if self._text_re is None:
            return text
        return self._text_re.sub(MASK, strip_controls(text))

    def redact_bytes(self, data: bytes) -> bytes:
        """Mask every form of every secret in bytes (UTF-8 forms; invalid UTF-8 is fine).

        Args:
            data: any bytes.

        Returns:
            The bytes with each occurrence of a secret form replaced by ``b"***"``.
        """
        if self._bytes_re is None:
            return data
        return self.pattern_for(data).sub(_MASK_BYTES, data)

    def pattern_for(self, data: bytes) -> re.Pattern[bytes]:
        """The byte pattern to mask `data` with: the forms as they are, or (only when `data` has
        something a reader does not see) the forms with such bytes allowed inside, 2-3x slower."""
        assert self._bytes_re is not None
        if not _may_hide(data):
            return self._bytes_re
        if self._tolerant_re is None:
            self._tolerant_re = re.compile(b"|".join(map(_hidden_tolerant, self._byte_forms)))
        return self._tolerant_re

    def stream(self) -> StreamRedactor:
        """Start masking a byte stream that arrives in chunks.

        Returns:
            A new ``StreamRedactor`` sharing this redactor's patterns.
        """
        pattern = self.pattern_for if self._bytes_re is not None else None
        return StreamRedactor(pattern, self._prefixes, self._longest)


class StreamRedactor:
    """Masks secrets in chunked bytes, also when a secret is split across two chunks."""

    def __init__(
        self,
        pattern: Callable[[bytes], re.Pattern[bytes]] | None,
        prefixes: frozenset[bytes],
        longest: int,
    ) -> None:
        """Use the patterns of the byte forms; made by ``Redactor.stream``.

        Args:
            pattern: gives the pattern for a buffer (``Redactor.pattern_for``), or None for a
                pass-through.
            prefixes: every proper prefix of every form.
            longest: the length in bytes of the longest form.
        """
        self._pattern = pattern
        self._prefixes = prefixes
        self._hold = max(longest - 1, 0)
        self._pending = b""

    def _held_back(self, buf: bytes) -> int:
        """Length of the longest end of `buf` that is the start of a form (< longest form)."""
        for size in range(min(self._hold, len(buf)), 0, -1):
            if buf[-size:] in self._prefixes:
                return size
        return 0

    def feed(self, data: bytes) -> bytes:
        """Take the next chunk and return what is safe to emit now.

        Only the longest end of the stream that is the start of some form is held back (at most
        longest form - 1 bytes): a secret whose end has not arrived yet. A match that starts
        before that tail is final: no form starting there can reach past the bytes seen.

        Args:
            data: the next chunk of the stream.

        Returns:
            Masked bytes, possibly empty.
        """
        if self._pattern is None:
            return data
        buf = self._pending + data if self._pending else data
        cut = len(buf) - self._held_back(buf)
        out: list[bytes] = []
        pos = 0
        for match in self._pattern(buf).finditer(buf):
            if match.start() >= cut:
                break
            out.append(buf[pos : match.start()])
            out.append(_MASK_BYTES)
            pos = match.end()
        keep_from = max(pos, cut)
        out.append(buf[pos:keep_from])
        self._pending = buf[keep_from:]
        return b"".join(out)

    def flush(self) -> bytes:
        """End the stream.

        Returns:
            The masked bytes that were held back.
        """
        pending, self._pending = self._pending, b""
        if self._pattern is None or not pending:
            return pending
        return self._pattern(pending).sub(_MASK_BYTES, pending)
