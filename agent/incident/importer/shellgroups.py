"""Which commands of a shell block must run in one shell: compound commands, variables, state."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Group", "group_commands", "segments"]

# A command that changes what every later line of the block sees (folder, environment, options,
# functions, background jobs): it and the lines after it stay together.
_STATEFUL = {
    "cd",
    "pushd",
    "popd",
    "export",
    "source",
    ".",
    "set",
    "shopt",
    "alias",
    "unset",
    "trap",
    "umask",
    "ulimit",
    "eval",
    "exec",
    "function",
}
_DECLARE = {"declare", "typeset", "local", "readonly"}
# Words that open and close a compound command, counted where a command starts.
_OPEN = {"if": "fi", "case": "esac", "do": "done", "{": "}"}
_CLOSE = {v: k for k, v in _OPEN.items()}
_CLOSER = {"if": "fi", "case": "esac", "{": "}"}  # for, while, until, select: `done`
_NAME = re.compile(r"^([A-Za-z_]\w*)(?:\[[^\]]*\])?\+?=")
_USE = re.compile(r"\$\{?([A-Za-z_]\w*)")


@dataclass
class Group:
    """Commands (by index) that run as one: why they cannot be split, empty when alone."""

    members: list[int]
    why: list[str] = field(default_factory=list)


def segments(text: str) -> list[list[str]]:
    """The simple commands of `text` as words: split at `;`, `&`, `|`, `(`, `)` and newlines
    outside quotes, `$( )` and backticks (a rough shell reader, enough to see command words)."""
    out: list[list[str]] = [[]]
    word: list[str] = []
    quote = ""
    depth = 0  # inside $( ... )
    i, n = 0, len(text)

    def end_word() -> None:
        if word:
            out[-1].append("".join(word))
            word.clear()

    while i < n:
        c = text[i]
        if quote:
            word.append(c)
            if c == "\\" and quote == '"' and i + 1 < n:
                word.append(text[i + 1])
                i += 2
                continue
            if c == quote:
                quote = ""
            i += 1
            continue
        if c == "\\" and i + 1 < n:
            word.append(text[i : i + 2])
            i += 2
            continue
        if c in "'\"`":
            quote = c
            word.append(c)
        elif c == "$" and text[i + 1 : i + 2] == "(":
            depth += 1
            word.append("$(")
            i += 2
            continue
        elif depth and c == ")":
            depth -= 1
            word.append(c)
        elif depth:
            word.append(c)
        elif c == "#" and not word:
            while i < n and text[i] != "\n":
                i += 1
            continue
        elif c in " \t":
            end_word()
        elif c in ";&|()\n":
            end_word()
            if out[-1]:
                out.append([])
        else:
            word.append(c)
        i += 1
    end_word()
    return [s for s in out if s]


def _background(text: str) -> bool:
    """A command left running in the background (`cmd &`), outside quotes."""
    return bool(re.search(r"(?<![&>|])&\s*$", text)) and not text.rstrip().endswith("&&")


@dataclass
class _Facts:
    opens: int = 0
    state: str = ""  # the word that changes shell state, if any
    defines: set[str] = field(default_factory=set)
    uses: set[str] = field(default_factory=set)
    reads_last: bool = False  # `$?`, `$!`, `wait`: the command before it matters


def _facts(text: str) -> _Facts:
    f = _Facts()
    for seg in segments(text):
        first = seg[0]
        f.opens += 1 if first in _OPEN else -1 if first in _CLOSE else 0
        f.opens += sum(1 for w in seg[1:] if w == "{") - sum(1 for w in seg[1:] if w == "}")
        if all(_NAME.match(w) for w in seg):
            f.defines |= {m.group(1) for w in seg if (m := _NAME.match(w))}
        elif first in _DECLARE or first in {"read", "export"}:
            f.defines |= {m.group(0) for w in seg[1:] if (m := re.match(r"^[A-Za-z_]\w*", w))}
        if first in _STATEFUL and not f.state:
            f.state = first
        elif re.match(r"^[A-Za-z_][\w-]*\(\)$", first) and not f.state:
            f.state = "function"
        if first == "wait":
            f.reads_last = True
    f.uses = set(_USE.findall(text))
    f.reads_last = f.reads_last or "$?" in text or "$!" in text
    if _background(text) and not f.state:
        f.state = "&"
    return f


def _why_state(word: str) -> str:
    if word == "&":
        return "a command runs in the background for the lines after it"
    return f"`{word}` changes what the lines after it see"


def group_commands(texts: list[str]) -> list[Group]:
    """Commands of one block (in order) as groups of commands that must run in one shell.

    Args:
        texts: each command's text, continuations joined (see `shell_commands`).

    Returns:
        Contiguous groups in order; a group of one command with no `why` is independent.
    """
    facts = [_facts(t) for t in texts]
    n = len(texts)
    # end[i]: the last command that command i must run together with.
    end = list(range(n))
    why: dict[int, list[str]] = {i: [] for i in range(n)}

    def join(a: int, b: int, reason: str) -> None:
        end[a] = max(end[a], b)
        if reason not in why[a]:
            why[a].append(reason)

    depth, opened = 0, 0
    for i, f in enumerate(facts):
        if depth == 0:
            opened = i
        depth += f.opens
        if depth > 0 or (depth == 0 and opened < i):
            word = texts[opened].split()[0]
            join(opened, i, f"`{word}` ... `{_CLOSER.get(word, 'done')}` spans lines")
        depth = max(depth, 0)
        if f.state and i + 1 < n:
            join(i, n - 1, _why_state(f.state))
        if f.reads_last and i:
            join(i - 1, i, "it reads the exit status or job of the line before it")
        for name in sorted(f.defines):
            for j in range(i + 1, n):
                if name in facts[j].uses:
                    join(i, j, f"`${name}` is set by an earlier line")
    groups: list[Group] = []
    i = 0
    while i < n:
        last, reasons = end[i], list(why[i])
        j = i + 1
        while j <= last:  # what a member must run with widens the group
            last = max(last, end[j])
            reasons += [r for r in why[j] if r not in reasons]
            j += 1
        groups.append(Group(list(range(i, last + 1)), reasons))
        i = last + 1
    return groups
