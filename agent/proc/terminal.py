"""What a reader sees of program output: escape sequences and invisible characters removed."""

from __future__ import annotations

import re

__all__ = ["clean", "strip_ansi", "strip_controls"]

# ANSI escape sequences: CSI (colours, cursor), OSC (titles, hyperlinks), and two-byte escapes.
_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC, terminated by BEL or ST (or cut off)
    r"|\x1b[@-Z\\-_]"  # two-byte escapes
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)
# Control characters except tab, newline and carriage return; DEL; C1 controls; bidi marks,
# overrides and isolates (text would display in another order than it is stored in); and the
# zero-width characters. A reader sees none of them, so a secret with one inside would be read
# whole while no mask matched it.
_CONTROL = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
    r"\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)
_NEWLINES = re.compile(r"\r\n|[\r\n\u2028\u2029\x85]")


def strip_ansi(text: str) -> str:
    """Remove ANSI escape sequences (colours, cursor movement, titles) from a text.

    Args:
        text: terminal output.

    Returns:
        The text without escape sequences.
    """
    if "\x1b" not in text and "\x9b" not in text:
        return text
    return _ANSI.sub("", text)


def strip_controls(text: str) -> str:
    """Remove escape sequences and invisible characters; keep tabs and line breaks as they are.

    Args:
        text: terminal output.

    Returns:
        What a reader sees of it, character for character.
    """
    return _CONTROL.sub("", strip_ansi(text))


def clean(text: object) -> str:
    """Remove ANSI escapes, NUL and other invisible characters; normalise line breaks.

    Args:
        text: Any value; it is converted with ``str``.

    Returns:
        The text with ``\\r\\n``/``\\r`` (and Unicode line separators) turned into ``\\n`` and
        nothing a terminal interprets.
    """
    s = str(text)
    if s.isprintable():  # every character matched above is unprintable: nothing to remove
        return s
    s = _NEWLINES.sub("\n", strip_ansi(s))
    return _CONTROL.sub("", s)
