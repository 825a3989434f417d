"""Code blocks into commands: shell blocks split into commands, SQL into statements, quoting."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

__all__ = [
    "ASSIGN",
    "Command",
    "chain",
    "needs_shell",
    "shell_commands",
    "shell_quote",
    "split_words",
    "sql_statements",
    "uncommented_sql",
]


@dataclass
class Command:
    """One command of a shell block, with the comment that named it."""

    text: str
    comment: str = ""  # the comment lines (or echo) before it
    inline: str = ""  # a comment at the end of its line
    start: int = 0  # where it starts in the block's code
    end: int = 0  # where it ends (continuations and here-doc bodies included)


# `<<<` is a here-string, not a here-doc.
_HEREDOC = re.compile(r"(?<!<)<<-?(?!<)\s*['\"]?(\w+)['\"]?")


def _scan(code: str, pos: int) -> tuple[str, str, int]:
    """Read one command from `pos`: continuations joined, trailing comment apart, quotes kept."""
    out: list[str] = []
    comment = ""
    quote = ""
    i, n = pos, len(code)
    while i < n:
        c = code[i]
        if quote == "'":
            out.append(c)
            quote = "" if c == "'" else quote
            i += 1
            continue
        if quote == '"':
            if c == "\\" and i + 1 < n:
                out.append(code[i : i + 2])
                i += 2
                continue
            out.append(c)
            quote = "" if c == '"' else quote
            i += 1
            continue
        if c == "\\" and code[i + 1 : i + 2] == "\n":
            i += 2
            while i < n and code[i] in " \t":
                i += 1
            if out and out[-1] != " ":
                out.append(" ")
            continue
        if c == "\\" and i + 1 < n:
            out.append(code[i : i + 2])
            i += 2
            continue
        if c in "'\"":
            quote = c
        elif c == "#" and (not out or out[-1] in " \t"):
            end = code.find("\n", i)
            end = n if end < 0 else end
            comment = code[i + 1 : end].strip()
            i = end
            continue
        elif c == "\n":
            current = "".join(out).rstrip()
            if current.endswith(("&&", "||", "|")):
                out = [current, " "]
                i += 1
                while i < n and code[i] in " \t":
                    i += 1
                continue
            heredoc = _HEREDOC.search(current)
            if heredoc:
                lines = code[i + 1 :].split("\n")
                body: list[str] = []
                for body_line in lines:
                    body.append(body_line)
                    if body_line.strip() == heredoc.group(1):
                        break
                out = [current, "\n", "\n".join(body)]
                i += 1 + len("\n".join(body)) + 1
                break
            i += 1
            break
        out.append(c)
        i += 1
    return "".join(out).strip(), comment, i


def shell_commands(code: str) -> list[Command]:
    """Split a shell block into commands; a comment before a command (or an echo) names it."""
    out: list[Command] = []
    pending: list[str] = []
    pos = 0
    while pos < len(code):
        end = code.find("\n", pos)
        end = len(code) if end < 0 else end
        line = code[pos:end].strip()
        if not line:
            pos = end + 1
            continue
        if line.startswith("#"):
            if not line.startswith("#!"):
                pending.append(line.lstrip("#").strip())
            pos = end + 1
            continue
        if line.startswith("$ "):  # a console prompt
            pos = code.index("$ ", pos) + 2
        start = pos
        text, comment, pos = _scan(code, pos)
        if not text:
            continue
        words = split_words(text)
        if words and words[0] == "echo" and not needs_shell(text):
            pending.append(" ".join(words[1:]).strip(" =-#*:"))
            continue
        title = " ".join(p for p in pending if p).strip()
        out.append(Command(text, title.rstrip(":"), comment, start, min(pos, len(code))))
        pending = []
    return out


def split_words(text: str) -> list[str] | None:
    """The shell words of `text`, or None when its quotes do not balance."""
    try:
        return shlex.split(text)
    except ValueError:
        return None


_BUILTINS = {
    "cd",
    "export",
    "source",
    ".",
    "set",
    "if",
    "for",
    "while",
    "until",
    "case",
    "[",
    "[[",
    "function",
    "unset",
    "alias",
    "eval",
    "exec",
    "exit",
    "read",
    "pushd",
    "popd",
}


def needs_shell(text: str) -> bool:
    """True when the command uses shell syntax (pipes, chains, redirects, expansions, builtins)."""
    quote = ""
    prev = " "
    for i, c in enumerate(text):
        if quote == "'":
            quote = "" if c == "'" else quote
        elif c == "\\":
            pass
        elif quote == '"':
            if c == '"':
                quote = ""
            elif c in "$`":
                return True
        elif c in "'\"":
            quote = c
        elif (
            c in "|&;<>`$"
            or (c in "*?" and "://" not in text)
            or (c == "~" and prev in " =")
            or (c == "\n" and text[i + 1 :].strip())
        ):
            return True
        prev = c
    words = split_words(text)
    return words is None or (bool(words) and words[0] in _BUILTINS)


def chain(text: str) -> list[str] | None:
    """`a && b && c` as [a, b, c] when every part is a plain command; None otherwise."""
    parts = [p.strip() for p in re.split(r"\s&&\s", text)]
    if len(parts) < 2 or any(not p or (needs_shell(p) and not p.startswith("cd ")) for p in parts):
        return None
    if any(needs_shell(p) for p in parts[1:]):
        return None
    return parts


ASSIGN = re.compile(r"^[A-Za-z_]\w*=")


def sql_statements(code: str) -> list[Command]:
    """Split SQL on `;` outside quotes; `--` comments before a statement name it."""
    out: list[Command] = []
    pending: list[str] = []
    current: list[str] = []
    quote = ""
    for line in code.splitlines():
        if not quote and not current and line.strip().startswith("--"):
            pending.append(line.strip().lstrip("-").strip())
            continue
        current.append(line)
        for c in line:
            if quote and c == quote:
                quote = ""
            elif not quote and c in "'\"`":
                quote = c
        if not quote and line.rstrip().endswith(";"):
            out.append(Command("\n".join(current).strip().rstrip(";").rstrip(), " ".join(pending)))
            current, pending = [], []
    if "\n".join(current).strip():
        out.append(Command("\n".join(current).strip(), " ".join(pending)))
    return out


def uncommented_sql(sql: str) -> str:
    """`sql` without its `--` comment lines."""
    return "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--")).strip()


def shell_quote(sql: str) -> str:
    """`sql` as one shell word, in the quotes that read best."""
    if "'" not in sql:
        return f"'{sql}'"
    if not any(c in sql for c in '"\\'):
        return f'"{sql}"'
    return shlex.quote(sql)
