"""Secret masking: every known form of every secret value becomes "***", in text and bytes."""

from __future__ import annotations

import base64
import json
import re
import shlex
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

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


def secret_forms(secret: str) -> list[str]:
    """List the forms of a secret that may show up in output, longest first.

    Args:
        secret: the secret value.

    Returns:
        The distinct forms: plain, URL-encoded (``quote`` with and without ``/`` kept, and
        ``quote_plus``), JSON-escaped (ASCII-only and not), shell-quoted, base64 (standard and
        URL-safe, with and without padding) and the alignment-independent inner parts of base64
        at the three byte offsets. Empty when the secret is shorter than ``MIN_SECRET_LENGTH``.
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
        """Mask every form of every secret in a text.

        Args:
            text: any text.

        Returns:
            The text with each occurrence of a secret form replaced by ``MASK``.
        """
        if self._text_re is None:
            return text
        return self._text_re.sub(MASK, text)

    def redact_bytes(self, data: bytes) -> bytes:
        """Mask every form of every secret in bytes (UTF-8 forms; invalid UTF-8 is fine).

        Args:
            data: any bytes.

        Returns:
            The bytes with each occurrence of a secret form replaced by ``b"***"``.
        """
        if self._bytes_re is None:
            return data
        return self._bytes_re.sub(_MASK_BYTES, data)

    def stream(self) -> StreamRedactor:
        """Start masking a byte stream that arrives in chunks.

        Returns:
            A new ``StreamRedactor`` sharing this redactor's patterns.
        """
        return StreamRedactor(self._bytes_re, self._prefixes, self._longest)


class StreamRedactor:
    """Masks secrets in chunked bytes, also when a secret is split across two chunks."""

    def __init__(
        self, pattern: re.Pattern[bytes] | None, prefixes: frozenset[bytes], longest: int
    ) -> None:
        """Use a compiled pattern of the byte forms; made by ``Redactor.stream``.

        Args:
            pattern: the alternation of all forms, longest first, or None for a pass-through.
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
        for match in self._pattern.finditer(buf):
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
        return self._pattern.sub(_MASK_BYTES, pending)
