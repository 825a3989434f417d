"""`runbook import`: a markdown incident action plan -> a draft runbook in YAML, by heuristics."""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
import textwrap
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import yaml

from agent.errors import UsageError

__all__ = ["DEFAULT_SCHEMA_PATH", "PlanImportError", "import_plan"]

DEFAULT_SCHEMA_PATH = "../runbook.schema.json"

# --- errors ----------------------------------------------------------------------------------


class PlanImportError(UsageError):
    """The markdown holds no importable action, or `--action` names none of its actions."""


# --- the markdown, read into a small tree ----------------------------------------------------


@dataclass
class _Block:
    """A fenced code block: its language (lowercase, may be empty) and its dedented code."""

    lang: str
    code: str


@dataclass
class _Item:
    """One numbered or bulleted entry: a bold caption, prose, and the code blocks under it."""

    caption: str
    text: str
    blocks: list[_Block] = field(default_factory=list)

    @property
    def label(self) -> str:
        """The caption, or the prose's first sentence when the item has no bold caption."""
        return self.caption or _first_sentence(self.text, 80)

    @property
    def prose(self) -> str:
        """Caption and text as one sentence or paragraph, for a person to read."""
        if self.caption and self.text:
            if self.text[0] in ",;":
                return f"{self.caption}{self.text}"
            if self.text[0] == "(" or self.text[0].islower():
                return f"{self.caption} {self.text}"
            return f"{self.caption.rstrip('.:')}: {self.text}"
        return self.caption or self.text


@dataclass
class _Action:
    """A `#### Action N: Title` section of the plan."""

    number: int | None
    title: str
    heading: str
    group: str
    fields: dict[str, str] = field(default_factory=dict)
    steps: list[_Item] = field(default_factory=list)
    validation: list[_Item] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    index: int = 0

    @property
    def name(self) -> str:
        """`Action N`, or the heading when the action has no number."""
        return f"Action {self.number}" if self.number is not None else self.title


@dataclass
class _Plan:
    """What the importer reads from a plan."""

    title: str = ""
    summary: str = ""
    results: list[tuple[str, str, str]] = field(default_factory=list)  # mark, table, "n/m (p%)"
    actions: list[_Action] = field(default_factory=list)
    blocks: dict[int, set[int]] = field(default_factory=dict)  # action -> actions it needs
    dependency_lines: list[str] = field(default_factory=list)
    success: list[str] = field(default_factory=list)
    risks: list[str] = field(default_factory=list)
    communication: list[str] = field(default_factory=list)


_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+.-]*)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_ACTION_HEADING = re.compile(r"^Action\s+(\d+)\s*[:.\-\u2013\u2014]\s*(.+)$", re.I)
_LABEL = re.compile(r"^\*\*([^*]+?)\*\*\s*:?\s*(.*)$")
_LIST_ITEM = re.compile(r"^(\s*)(?:\d+[.)]|[-*+])\s+(.*)$")
_CAPTION = re.compile(r"^\*\*(.+?)\*\*\s*[:.\-\u2013\u2014]?\s*(.*)$")
_RESULT = re.compile(
    r"^\s*(?:[-*+]\s+)?([\u2713\u2714\u25b3\u26a0\u2717\u2718\u274c\u25cb])\ufe0f?\s*`?"
    r"([A-Za-z_][\w.-]*)`?\s*:\s*(\d+\s*/\s*\d+(?:\s*\(\s*\d+(?:\.\d+)?\s*%\s*\))?)"
)
_BLOCKS_PROSE = re.compile(
    r"Action\s+(\d+)\s*(?:->|-->|\u2192|=>|\u27f6)\s*Blocks?\s*:?\s*(.+)$", re.I
)
_ACTION_REF = re.compile(r"Actions?\s+(\d+(?:\s*(?:,|and|&)\s*\d+)*)", re.I)
_NEEDS_FIELDS = (
    "dependencies",
    "dependency",
    "depends on",
    "requires",
    "blocked by",
    "prerequisites",
)


def _tokens(text: str) -> list[tuple[str, str, int, str]]:
    """Split markdown into ("text", line, 0, "") and ("code", code, indent, lang) tokens."""
    out: list[tuple[str, str, int, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            out.append(("text", lines[i], 0, ""))
            i += 1
            continue
        indent, fence, lang = len(m.group(1).expandtabs()), m.group(2), m.group(3).lower()
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            line = lines[i].expandtabs()
            # Dedent by the fence's indentation, never into the code's own indentation.
            strip = min(indent, len(line) - len(line.lstrip(" ")))
            body.append(line[strip:])
            i += 1
        i += 1  # the closing fence
        out.append(("code", "\n".join(body), indent, lang))
    return out


def _clean(text: str) -> str:
    """Markdown emphasis and checkboxes off, whitespace folded."""
    text = re.sub(r"^\s*\[[ xX]\]\s*", "", text)
    text = re.sub(r"\*\*(.+?)\*\*", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def _first_sentence(text: str, limit: int) -> str:
    first = re.split(r"(?<=[.!?])\s+(?=[A-Z0-9`])", text.strip(), maxsplit=1)[0]
    if len(first) > limit:
        first = first[:limit].rsplit(" ", 1)[0] + "..."
    return first.rstrip(".:")


def _summary(paragraph: str) -> str:
    sentences = re.split(r"(?<=[.!?])\s+(?=[A-Z0-9`])", paragraph.strip())
    out = sentences[0] if sentences else ""
    for s in sentences[1:]:
        if len(out) >= 120 or len(out) + len(s) > 260:
            break
        out = f"{out} {s}"
    return out


def _numbers(text: str) -> set[int]:
    found: set[int] = set()
    for m in _ACTION_REF.finditer(text):
        found |= {int(n) for n in re.findall(r"\d+", m.group(1))}
    return found


def _parse(text: str) -> _Plan:
    plan = _Plan()
    section = ""  # the current level-2 heading, lowercase
    group = ""
    action: _Action | None = None
    mode = ""
    item: _Item | None = None
    lists: dict[str, list[str]] = {}
    summary_lines: list[str] = []

    def new_item(target: list[_Item], body: str) -> _Item:
        m = _CAPTION.match(body.strip())
        it = (
            _Item(caption=_clean(m.group(1)).rstrip(":"), text=_clean(m.group(2)))
            if m
            else (_Item(caption="", text=_clean(body)))
        )
        target.append(it)
        return it

    for kind, value, _fence_indent, lang in _tokens(text):
        if kind == "code":
            if action is None:
                continue
            block = _Block(lang, value)
            if item is not None and mode in ("steps", "validation"):
                item.blocks.append(block)
            elif mode.startswith("other:"):
                action.notes.extend(f"{mode[6:]}: {line}" for line in value.splitlines() if line)
            else:  # a block straight under the action: a step of its own
                target = action.validation if mode == "validation" else action.steps
                item = _Item(caption="", text="", blocks=[block])
                target.append(item)
            continue
        line = value
        h = _HEADING.match(line)
        if h:
            level, title = len(h.group(1)), _clean(h.group(2))
            am = _ACTION_HEADING.match(title)
            if level == 1 and not plan.title:
                plan.title = title
                continue
            if am or (level >= 4 and "action" in section):
                number = int(am.group(1)) if am else None
                name = _clean(am.group(2)) if am else title
                action = _Action(number, name, title, group, index=len(plan.actions) + 1)
                plan.actions.append(action)
                mode, item = "", None
                continue
            if level <= 2:
                section, group = title.lower(), ""
            elif level == 3:
                group = title
            action, mode, item = None, "", None
            continue
        for dm in _BLOCKS_PROSE.finditer(line):
            blocker = int(dm.group(1))
            for blocked in {int(n) for n in re.findall(r"\d+", dm.group(2))}:
                plan.blocks.setdefault(blocked, set()).add(blocker)
            plan.dependency_lines.append(_clean(line.lstrip(" -*+")))
        if action is None:
            rm = _RESULT.match(line)
            if rm:
                plan.results.append((rm.group(1), rm.group(2), re.sub(r"\s+", " ", rm.group(3))))
            if "summary" in section and not plan.summary:
                if line.strip() and not line.lstrip().startswith(("**", "-", "|", ">")):
                    summary_lines.append(line.strip())
                elif summary_lines:
                    plan.summary = _summary(_clean(" ".join(summary_lines)))
            lm = _LIST_ITEM.match(line)
            if lm and len(lm.group(1)) < 2:
                lists.setdefault(section, []).append(_clean(lm.group(2)))
            continue
        label = _LABEL.match(line)
        if label:
            name, rest = label.group(1).strip().rstrip(":").lower(), label.group(2).strip()
            if name in ("steps", "implementation", "procedure", "commands", "implementation steps"):
                mode, item = "steps", None
            elif name.startswith(("validation", "verification", "expected result")):
                mode, item = "validation", None
                if rest:
                    item = new_item(action.validation, rest)
            elif rest or name in ("priority", "owner", "estimated effort"):
                action.fields[name] = _clean(rest)
                if name in _NEEDS_FIELDS or name == "blocks":
                    # "Dependencies: Blocks Action 3" is the other direction: left to the prose.
                    blocks_others = name == "dependencies" and "block" in rest.lower()
                    refs = set() if blocks_others else _numbers(rest)
                    if action.number is not None and name == "blocks":
                        for n in refs:
                            plan.blocks.setdefault(n, set()).add(action.number)
                    elif action.number is not None:
                        plan.blocks.setdefault(action.number, set()).update(refs)
            else:
                mode, item = f"other:{label.group(1).strip().rstrip(':')}", None
            continue
        lm = _LIST_ITEM.match(line)
        if lm and len(lm.group(1)) < 2:
            if mode in ("steps", "validation"):
                item = new_item(action.steps if mode == "steps" else action.validation, lm.group(2))
            elif mode.startswith("other:"):
                action.notes.append(f"{mode[6:]}: {_clean(lm.group(2))}")
            else:
                item = new_item(action.steps, lm.group(2))
                mode = "steps"
            continue
        if line.strip() and item is not None:
            more = _clean(line.lstrip(" -*+"))
            item.text = f"{item.text} {more}".strip() if item.text else more
        elif line.strip() and mode.startswith("other:"):
            action.notes.append(f"{mode[6:]}: {_clean(line)}")
    if not plan.summary and summary_lines:
        plan.summary = _summary(_clean(" ".join(summary_lines)))
    for name, items in lists.items():
        if "success" in name or "criteria" in name:
            plan.success.extend(items)
        elif "risk" in name:
            plan.risks.extend(items)
        elif "communication" in name:
            plan.communication.extend(items)
    return plan


# --- shell blocks -> commands ------------------------------------------------------------------


@dataclass
class _Command:
    """One command of a shell block, with the comment that named it."""

    text: str
    comment: str = ""  # the comment lines (or echo) before it
    inline: str = ""  # a comment at the end of its line


_HEREDOC = re.compile(r"<<-?\s*['\"]?(\w+)['\"]?")


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


def _shell_commands(code: str) -> list[_Command]:
    """Split a shell block into commands; a comment before a command (or an echo) names it."""
    out: list[_Command] = []
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
        text, comment, pos = _scan(code, pos)
        if not text:
            continue
        words = _split(text)
        if words and words[0] == "echo" and not _needs_shell(text):
            pending.append(" ".join(words[1:]).strip(" =-#*:"))
            continue
        title = " ".join(p for p in pending if p).strip()
        out.append(_Command(text, title.rstrip(":"), comment))
        pending = []
    return out


def _split(text: str) -> list[str] | None:
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


def _needs_shell(text: str) -> bool:
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
    words = _split(text)
    return words is None or (bool(words) and words[0] in _BUILTINS)


def _chain(text: str) -> list[str] | None:
    """`a && b && c` as [a, b, c] when every part is a plain command; None otherwise."""
    parts = [p.strip() for p in re.split(r"\s&&\s", text)]
    if len(parts) < 2 or any(not p or (_needs_shell(p) and not p.startswith("cd ")) for p in parts):
        return None
    if any(_needs_shell(p) for p in parts[1:]):
        return None
    return parts


_ASSIGN = re.compile(r"^[A-Za-z_]\w*=")


# --- guessing kinds -----------------------------------------------------------------------------


def _program(words: list[str]) -> tuple[str, str]:
    """The program and the script or module it runs (`python -m a.b` -> ("python", "b"))."""
    words = [w for w in words if not _ASSIGN.match(w)]
    while words and words[0] in ("sudo", "time", "nohup", "exec", "env"):
        words = words[1:]
    if not words:
        return "", ""
    prog = words[0].rsplit("/", 1)[-1]
    script = prog
    if re.match(r"^python[\d.]*$", prog) and len(words) > 1:
        if words[1] == "-m" and len(words) > 2:
            script = words[2].rsplit(".", 1)[-1]
        elif words[1] == "-c":
            script = "-c"
        else:
            script = words[1].rsplit("/", 1)[-1]
    elif prog in ("bash", "sh", "zsh") and len(words) > 1:
        script = words[1].rsplit("/", 1)[-1]
    return prog, script


def _guess_kind(text: str) -> str:
    """run, validate or export, from the program a command names (every part of a pipeline)."""
    kinds: list[str] = []
    for part in re.split(r"\|\||&&|\||;", text):
        words = _split(part.strip()) or part.split()
        prog, script = _program(words)
        if not prog:
            continue
        lowered = [w.lower() for w in words]
        rest = " ".join(lowered[1:])
        trigger = " ".join(lowered[1:4]) in ("scheduler jobs run", "pubsub topics publish")
        if ("export" in script.lower() and prog != "export") or (
            prog == "gcloud" and trigger and "export" in rest
        ):
            kinds.append("export")
        elif "validate" in script.lower() or script.lower().startswith("check_"):
            kinds.append("validate")
        else:
            kinds.append("run")
    for kind in ("export", "validate"):
        if kind in kinds:
            return kind
    return "run"


_COUNT_SQL = re.compile(
    r"^\s*SELECT\s+COUNT\s*\(\s*(?:\*|1)\s*\)(?:\s+(?:AS\s+)?\w+)?\s+FROM\s+`?"
    r"(?P<table>[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*){1,2})`?"
    r"(?:\s+WHERE\s+(?P<col>\w+)\s*=\s*(?:DATE\s*\(?\s*)?(?P<q>['\"])"
    r"(?P<date>\d{4}-\d{2}-\d{2})(?P=q)\s*\)?)?\s*;?\s*$",
    re.I,
)


def _sql_statements(code: str) -> list[_Command]:
    """Split SQL on `;` outside quotes; `--` comments before a statement name it."""
    out: list[_Command] = []
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
            out.append(_Command("\n".join(current).strip().rstrip(";").rstrip(), " ".join(pending)))
            current, pending = [], []
    if "\n".join(current).strip():
        out.append(_Command("\n".join(current).strip(), " ".join(pending)))
    return out


def _uncommented_sql(sql: str) -> str:
    return "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--")).strip()


# --- drafts -----------------------------------------------------------------------------------


@dataclass
class _Check:
    table: str
    where: str | None = None  # None: the plan's date when there is one; "": the whole table
    expect: int | None = None
    at_least: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class _Draft:
    """A step of the draft, before it is written out."""

    key: str  # the caption its id comes from
    kind: str
    title: str
    action: _Action
    command: str = ""
    shell: bool = False
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = ""
    checks: list[_Check] = field(default_factory=list)
    instructions: str = ""
    description: str = ""
    notes: list[str] = field(default_factory=list)  # comments above the step
    expected: list[str] = field(default_factory=list)  # comments beside `expect: []`
    chained_to: _Draft | None = None  # the step before it in an `a && b` chain
    id: str = ""
    needs: list[str] | None = None

    @property
    def words(self) -> set[str]:
        """The words of its title, command and checks, to match expected results to it."""
        text = " ".join([self.title, self.command, *(c.table for c in self.checks)])
        return _words(text)


_STOP = {
    "with",
    "that",
    "have",
    "shows",
    "show",
    "from",
    "records",
    "record",
    "rows",
    "each",
    "every",
    "after",
    "into",
    "this",
    "than",
    "there",
    "they",
    "logs",
    "state",
    "date",
    "data",
    "python",
    "exits",
    "should",
    "least",
    "more",
    "games",
}


def _words(text: str) -> set[str]:
    return {w for w in re.split(r"[^a-z0-9]+", text.lower()) if len(w) >= 4 and w not in _STOP}


_EXPECT_COUNT = re.compile(
    r"`?(?P<table>[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*){1,2})`?\s*(?::|has|have|contains?|shows?|"
    r"with|=)\s*(?P<min>at\s+least\s+|>=\s*|\u2265\s*)?(?P<n>\d+)\s+(?:records?|rows?)\b",
    re.I,
)
_SCRIPT_LANGS = {"bash", "sh", "shell", "console", "zsh", "shell-session"}
_SQL_LANGS = {"sql", "bigquery", "bq", "googlesql"}
_PY_LANGS = {"python", "py", "python3"}
_SQL_START = re.compile(r"^\s*(?:--.*\n\s*)*(SELECT|WITH|INSERT|UPDATE|DELETE|MERGE)\b", re.I)
_CMD_START = re.compile(
    r"^\s*(?:#.*\n\s*)*(?:[A-Za-z_]\w*=\S*\s+)*(python[\d.]*|bq|gcloud|gsutil|curl|bash|sh|cd|"
    r"export|\./|bin/|scripts/|make|docker|kubectl|psql|echo)\b"
)


class _Builder:
    """Turns one action's items into drafts."""

    def __init__(self, action: _Action) -> None:
        self.action = action
        self.drafts: list[_Draft] = []
        self.env: dict[str, str] = {}
        self.workdir = ""

    def draft(self, key: str, kind: str, title: str, **kw: object) -> _Draft:
        d = _Draft(key=key, kind=kind, title=title, action=self.action, **kw)  # type: ignore[arg-type]
        self.drafts.append(d)
        return d

    def item(self, item: _Item, *, expected: Iterable[str] = ()) -> list[_Draft]:
        start = len(self.drafts)
        if not item.blocks:
            self.draft(item.label, "manual", item.label, instructions=item.prose)
        for block in item.blocks:
            lang = block.lang or self._sniff(block.code)
            if lang in _SCRIPT_LANGS:
                for cmd in _shell_commands(block.code):
                    self.command(item, cmd)
            elif lang in _SQL_LANGS:
                for stmt in _sql_statements(block.code):
                    self.sql(item, stmt.text, stmt.comment)
            elif lang in _PY_LANGS:
                self.draft(
                    item.label,
                    "manual",
                    item.label,
                    instructions=f"{item.prose or 'Write this code'}\n\nCode sketch from the plan "
                    f"(python: write it, it is not a command to run):\n\n{_indent(block.code, 4)}",
                    notes=["a python sketch in the plan: a person writes it"],
                )
            else:
                self._output(item, block)
        made = self.drafts[start:]
        for i, d in enumerate(made):
            if i and d.title == item.label:
                d.title = f"{item.label} ({i + 1})"
            if item.text and d.kind != "manual" and i == 0:
                d.description = item.text
            d.expected.extend(expected)
        return made

    @staticmethod
    def _sniff(code: str) -> str:
        if _SQL_START.match(code):
            return "sql"
        if _CMD_START.match(code):
            return "bash"
        return "text"

    def _output(self, item: _Item, block: _Block) -> None:
        quoted = _indent(block.code, 4)
        if self.drafts and self.drafts[-1].action is self.action and item.blocks[0] is not block:
            last = self.drafts[-1]
            last.expected.extend(
                f"output: {line.strip()}" for line in block.code.splitlines() if line.strip()
            )
            return
        self.draft(
            item.label,
            "manual",
            item.label,
            instructions=f"{item.prose}\n\nFrom the plan ({block.lang or 'text'}):\n\n{quoted}",
        )

    def command(self, item: _Item, cmd: _Command) -> None:
        title = cmd.comment or item.label or _first_sentence(cmd.text.split("\n")[0], 60)
        if cmd.inline and not cmd.comment:
            title = f"{title} ({cmd.inline})"
        text = cmd.text
        words = _split(text)
        if words is None:
            self.draft(
                item.label,
                "manual",
                title,
                instructions=f"{item.prose}\n\nRun by hand (the importer cannot split this "
                f"command):\n\n{_indent(text, 4)}",
            )
            return
        if words and words[0] == "export" and len(words) == 2 and "=" in words[1]:
            name, value = words[1].split("=", 1)
            if "$" in text or "`" in text:
                self.action.notes.append(f"set by hand before the steps: {text}")
            else:
                self.env[name] = value
            return
        if words and words[0] == "cd" and len(words) == 2 and not _needs_shell(words[1]):
            self.workdir = words[1]
            return
        cd = re.match(r"^cd\s+([^\s;&|$`~]+)\s+&&\s+(.+)$", text, re.S)
        if cd:
            saved, self.workdir = self.workdir, cd.group(1)
            self.command(item, _Command(cd.group(2), cmd.comment, cmd.inline))
            self.workdir = saved
            return
        chain = _chain(text)
        if chain:
            before: _Draft | None = None
            for n, part in enumerate(chain):
                self.command(
                    item, _Command(part, *((cmd.comment, cmd.inline) if n == 0 else ("", "")))
                )
                if before is not None:
                    self.drafts[-1].chained_to = before
                before = self.drafts[-1]
            return
        env = dict(self.env)
        while words and _ASSIGN.match(words[0]) and len(words) > 1 and not _needs_shell(text):
            name, value = words[0].split("=", 1)
            env[name] = value
            words = words[1:]
            text = re.sub(r"^\s*[A-Za-z_]\w*=(?:'[^']*'|\"[^\"]*\"|\S*)\s+", "", text, count=1)
        if words and words[0] == "bq" and "query" in words[1:3]:
            sql = next((w for w in reversed(words[2:]) if not w.startswith("-")), "")
            if sql and _COUNT_SQL.match(_uncommented_sql(sql)):
                self.sql(item, sql, cmd.comment)
                return
            d = self.draft(
                item.label,
                "run",
                title,
                command=text,
                shell=_needs_shell(text),
                env=env,
                workdir=self.workdir,
            )
            d.notes.append("bq query kept as a command: not a simple count; read its output")
            return
        self.draft(
            item.label,
            _guess_kind(text),
            title,
            command=text,
            shell=_needs_shell(text),
            env=env,
            workdir=self.workdir,
        )

    def sql(self, item: _Item, sql: str, comment: str) -> None:
        title = comment or item.label
        m = _COUNT_SQL.match(_uncommented_sql(sql))
        if m:
            check = _Check(m.group("table"), where="")
            if m.group("col"):
                check.where = f"{m.group('col')} = '{m.group('date')}'"
            self.draft(item.label, "verify", title, checks=[check])
            return
        quoted = _shell_quote(sql)
        command = f"bq query --use_legacy_sql=false {quoted}"
        d = self.draft(item.label, "run", title, command=command, workdir=self.workdir)
        d.notes.append("SQL kept as a bq query command: not a simple count, so not a verify check")

    def validation(self, items: list[_Item]) -> None:
        counts: list[tuple[_Item, _Check]] = []
        loose: list[str] = []
        for it in items:
            if it.blocks:
                self.item(it, expected=[it.prose])
                continue
            m = _EXPECT_COUNT.search(it.prose)
            if m:
                counts.append(
                    (
                        it,
                        _Check(
                            m.group("table"),
                            expect=int(m.group("n")),
                            at_least=bool(m.group("min")),
                        ),
                    )
                )
            else:
                loose.append(it.prose)
        verify = next((d for d in self.drafts if d.kind == "verify"), None)
        extra: list[_Check] = []
        for it, check in counts:
            same = next(
                (
                    c
                    for d in self.drafts
                    if d.kind == "verify"
                    for c in d.checks
                    if c.table == check.table and c.expect is None
                ),
                None,
            )
            owner = next(
                (
                    d
                    for d in self.drafts
                    if d.kind == "verify" and same is not None and same in d.checks
                ),
                None,
            )
            if same is not None and owner is not None:
                same.expect, same.at_least = check.expect, check.at_least
                owner.expected.append(it.prose)
            elif verify is not None:
                verify.checks.append(check)
                verify.expected.append(it.prose)
            else:
                extra.append(check)
                loose.append(it.prose)
        if extra:
            self.draft(
                "expected_counts",
                "verify",
                "Check the expected record counts",
                checks=extra,
                notes=["from the plan's Validation list"],
            )
        for text in loose:
            self._place(text, skip_counts=bool(extra))

    def _place(self, text: str, *, skip_counts: bool) -> None:
        """Put an expected result beside the step it talks about (the last one otherwise)."""
        if not self.drafts:
            return
        if skip_counts and _EXPECT_COUNT.search(text):
            target = next(d for d in reversed(self.drafts) if d.key == "expected_counts")
            target.expected.append(text)
            return
        words = _words(text)
        scored = [(len(words & d.words), i) for i, d in enumerate(self.drafts)]
        best, index = max(scored)
        if best == 0:
            expectable = [i for i, d in enumerate(self.drafts) if d.kind != "manual"]
            index = expectable[-1] if expectable else len(self.drafts) - 1
        self.drafts[index].expected.append(text)


def _indent(text: str, n: int) -> str:
    return "\n".join((" " * n + line) if line.strip() else "" for line in text.splitlines())


def _shell_quote(sql: str) -> str:
    if "'" not in sql:
        return f"'{sql}'"
    if not any(c in sql for c in '"\\'):
        return f'"{sql}"'
    return shlex.quote(sql)


# --- ids, dates, templating ---------------------------------------------------------------------


def _slug(text: str, sep: str = "_", limit: int = 40) -> str:
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", text)
    slug = re.sub(r"[^a-z0-9]+", sep, text.lower()).strip(sep)
    if len(slug) > limit:
        cut = slug[:limit]
        slug = cut.rsplit(sep, 1)[0] if sep in cut else cut
    return slug


def _unique(base: str, taken: set[str]) -> str:
    out, n = base, 2
    while out in taken:
        out = f"{base}_{n}"
        n += 1
    taken.add(out)
    return out


_DATE = re.compile(r"(?<![\d-])(\d{4}-\d{2}-\d{2})(?![\d])")


def _plan_date(drafts: list[_Draft]) -> str | None:
    """The date the commands name most often (a real date), or None."""
    found: Counter[str] = Counter()
    for d in drafts:
        texts = [d.command, *(c.where or "" for c in d.checks)]
        for text in texts:
            for value in _DATE.findall(text):
                try:
                    dt.date.fromisoformat(value)
                except ValueError:
                    continue
                found[value] += 1
    return found.most_common(1)[0][0] if found else None


def _escape(text: str) -> str:
    """Literal text safe in a Jinja2 template: `{{`, `{%` and `{#` kept as they are."""
    return re.sub(r"\{[{%#]", lambda m: "{% raw %}" + m.group(0) + "{% endraw %}", text)


class _Templater:
    """Escapes literal text and turns the plan's date into `{{ date }}`."""

    def __init__(self, date: str | None) -> None:
        self.date = date

    def __call__(self, text: str) -> str:
        out = _escape(text)
        return out.replace(self.date, "{{ date }}") if self.date else out

    def where(self, where: str) -> str:
        if self.date:
            return where.replace(f"'{self.date}'", "@date")
        return where


# --- YAML text ----------------------------------------------------------------------------------


def _loads_as(text: str, value: object) -> bool:
    try:
        return bool(yaml.safe_load(text) == {"k": value})
    except yaml.YAMLError:
        return False


def _scalar(value: str | int | bool) -> str:
    """A YAML scalar: plain when it reads back the same, double-quoted otherwise."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if (
        value
        and "\n" not in value
        and not value.startswith(" ")
        and _loads_as(f"k: {value}", value)
    ):
        return value
    quoted = json.dumps(value, ensure_ascii=False)
    for ch in ("\u2028", "\u2029", "\x85", "\ufeff"):
        quoted = quoted.replace(ch, f"\\u{ord(ch):04x}")
    return quoted


def _value(key: str, value: str, indent: int, *, fold: bool = False) -> list[str]:
    """`key: value`: a literal block when the value has lines, folded when long and `fold`."""
    pad = " " * indent
    width = 96 - indent - 2
    if fold and "\n" not in value and len(value) > width and "  " not in value:
        # Never break inside a `{{ ... }}`: \x01 holds its spaces while wrapping.
        glued = re.sub(r"\{\{.*?\}\}", lambda m: m.group(0).replace(" ", "\x01"), value)
        lines = [
            line.replace("\x01", " ")
            for line in textwrap.wrap(glued, width, break_long_words=False, break_on_hyphens=False)
        ]
        candidate = f"{pad}{key}: >-\n" + "\n".join(f"{pad}  {line}" for line in lines)
        if value == value.strip() and _loads_as(_dedent_doc(candidate, indent), value):
            return candidate.split("\n")
    if "\n" in value:
        body = "\n".join((pad + "  " + line) if line else "" for line in value.split("\n"))
        candidate = f"{pad}{key}: |-\n{body}"
        if (
            not value.startswith((" ", "\n"))
            and all(line == line.rstrip() for line in value.split("\n"))
            and _loads_as(_dedent_doc(candidate, indent), value)
        ):
            return candidate.split("\n")
    return [f"{pad}{key}: {_scalar(value)}"]


def _dedent_doc(text: str, indent: int) -> str:
    lines = text.split("\n")
    key = lines[0].lstrip().split(":", 1)[0]
    return "\n".join(
        ["k:" + lines[0].split(key + ":", 1)[1]] + [line[indent:] for line in lines[1:]]
    )


def _comment(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _note(indent: int, text: str) -> str:
    """A YAML comment line: `text` on one line, after `indent` spaces."""
    return " " * indent + "# " + _comment(text)


def _flow_list(values: Iterable[str]) -> str:
    return "[" + ", ".join(_scalar(v) for v in values) + "]"


# --- the draft --------------------------------------------------------------------------------


def _select(plan: _Plan, action: str | None) -> list[_Action]:
    if action is None:
        return plan.actions
    wanted = action.strip()
    m = re.match(r"^(?:action\s*)?(\d+)$", wanted, re.I)
    for a in plan.actions:
        if m and a.number == int(m.group(1)):
            return [a]
        if wanted.lower() in (a.title.lower(), a.heading.lower()):
            return [a]
    names = ", ".join(f"'{a.heading}'" for a in plan.actions) or "none"
    raise PlanImportError(f"no action '{action}' in the plan; its actions: {names}")


_PRIORITY = re.compile(r"\b(P[0-4])\b|\b(CRITICAL|HIGH|MEDIUM|LOW)\b", re.I)


def _action_banner(a: _Action) -> list[str]:
    facts = [a.group] if a.group else []
    facts += [
        f"{k}: {v}" for k, v in a.fields.items() if k in ("priority", "estimated effort", "owner")
    ]
    return [_note(2, f"--- {a.heading}" + (f" ({'; '.join(facts)})" if facts else ""))]


def _build(plan: _Plan, actions: list[_Action], prefix: bool) -> list[_Draft]:
    drafts: list[_Draft] = []
    taken: set[str] = set()
    by_action: dict[int, list[_Draft]] = {}
    for a in actions:
        b = _Builder(a)
        for it in a.steps:
            b.item(it)
        b.validation(a.validation)
        if not b.drafts:
            b.draft(
                a.title,
                "manual",
                a.title,
                instructions=f"Carry out {a.name} of the plan: {a.title}.",
            )
        pre = f"a{a.number if a.number is not None else a.index}_" if prefix else ""
        for d in b.drafts:
            d.id = _unique(pre + (_slug(d.key) or d.kind), taken)
        for d in b.drafts:
            if d.chained_to is not None:
                d.needs = [d.chained_to.id]
                d.notes.append(
                    f"chained with && in the plan: runs only if {d.chained_to.id} succeeded"
                )
        by_action[a.index] = b.drafts
        drafts.extend(b.drafts)
    if prefix:
        numbers = {a.number: a for a in actions if a.number is not None}
        for a in actions:
            blockers = sorted(plan.blocks.get(a.number, set())) if a.number is not None else []
            first = by_action[a.index][0]
            needs: list[str] = []
            for n in blockers:
                blocker = numbers.get(n)
                if blocker is None or blocker is a:
                    continue
                if blocker.index > a.index:
                    first.notes.append(
                        f"the plan says {blocker.name} blocks {a.name}, but it comes "
                        "later in the file: run it first"
                    )
                    continue
                needs.extend(d.id for d in by_action[blocker.index])
                first.notes.append(f"needs: {blocker.name} blocks {a.name} in the plan")
            if needs:
                first.needs = [*(first.needs or []), *needs]
    return drafts


def import_plan(
    text: str,
    *,
    source: str,
    action: str | None = None,
    schema_path: str = DEFAULT_SCHEMA_PATH,
) -> str:
    """Turn a markdown incident action plan into the YAML text of a draft runbook.

    Args:
        text: the plan's markdown.
        source: the plan's path as it should appear in `incident.reference`.
        action: one action to import (`3`, `Action 3`, or its exact heading title); all when None.
        schema_path: the JSON Schema path for the editor comment (relative to the draft's folder).

    Returns:
        The draft runbook: YAML with comments quoting the plan's expectations; it passes
        `runbook validate` as written, and every `expect: []` is for a person to fill.

    Raises:
        PlanImportError: the plan has no `Action N` sections, or `action` names none of them.
    """
    plan = _parse(text)
    if not plan.actions:
        raise PlanImportError(
            f"{source}: no actions found; the importer reads '#### Action N: Title' headings "
            "under 'Recommended Actions'"
        )
    actions = _select(plan, action)
    single = action is not None
    drafts = _build(plan, actions, prefix=not single)
    date = _plan_date(drafts)
    t = _Templater(date)
    plan_title = plan.title or "Imported action plan"
    out = [f"# yaml-language-server: $schema={schema_path}"]
    which = f" ({actions[0].name})" if single else ""
    out.append(_note(0, f"Draft imported by `runbook import` from {source}{which}."))
    out.append("# Review every step before running it: fill each `expect: []` from the expected")
    out.append("# results quoted beside it, and check the kinds the importer guessed.")
    if plan.results:
        out.append("# Validation results in the plan:")
        out.extend(
            f"#   {mark} {table}: {_comment(figures)}" for mark, table, figures in plan.results
        )
    out.append("version: 1")
    base_id = _slug(plan_title, "-", 60) or "imported-plan"
    if single:
        base_id = f"{base_id}-{_slug(actions[0].name, '-', 30)}"
    out.append(f"id: {_scalar(base_id[:80].strip('-'))}")
    title = actions[0].title if single else plan_title
    title = t(title)
    if date and single and "{{ date }}" not in title:
        title += " for {{ date }}"
    out.append(f"title: {_scalar(title)}")
    out.append("incident:")
    out.append(f"  reference: {_scalar(source)}")
    names = [a.name for a in actions]
    out.append(f"  action: {_scalar(names[0] if single else _actions_label(actions))}")
    out.append(f"  plan: {_scalar(t(plan_title))}")
    if plan.summary:
        out.extend(_value("summary", t(plan.summary), 0, fold=True))
    if date:
        out.append("vars:")
        out.append(
            f'  date: {{type: date, default: "{date}", description: the date the plan\'s '
            "commands name}"
        )
    out.append(
        "workdir: .  # commands run in the runbook's folder: point it at the pipeline checkout"
    )
    out.append("warehouse:")
    out.append(
        "  backend: duckdb  # the plan's SQL is BigQuery: set bigquery and a project to query it"
    )
    out.append("")
    out.append("steps:")
    current: _Action | None = None
    for d in drafts:
        if d.action is not current:
            current = d.action
            if current is not drafts[0].action:
                out.append("")
            out.extend(_action_banner(current))
            if single:
                out.extend(_single_dependencies(plan, current))
            out.extend(_note(2, f"note: {n}") for n in current.notes)
        else:
            out.append("")
        out.extend(_step(d, t, plan))
    out.append("")
    out.append("report:")
    out.append("  lessons: []")
    if plan.success:
        out.append("  next_steps:")
        out.append("    Success Criteria:")
        out.extend(f"      - {_scalar(t(s))}" for s in plan.success)
    else:
        out.append("  next_steps: {}")
    for label, items in (("Risks", plan.risks), ("Communication plan", plan.communication)):
        if items:
            out.append(f"  # {label} (from the plan):")
            out.extend(_note(2, f"  - {s}") for s in items)
    if not single and plan.dependency_lines:
        out.append("  # Dependencies (from the plan):")
        out.extend(_note(2, f"  - {s}") for s in plan.dependency_lines)
    return "\n".join(out) + "\n"


def _actions_label(actions: list[_Action]) -> str:
    numbers = [a.number for a in actions]
    if len(actions) > 1 and all(n is not None for n in numbers):
        nums = [n for n in numbers if n is not None]
        if nums == list(range(nums[0], nums[0] + len(nums))):
            return f"Actions {nums[0]}-{nums[-1]}"
        return "Actions " + ", ".join(str(n) for n in nums)
    return ", ".join(a.name for a in actions)


def _single_dependencies(plan: _Plan, a: _Action) -> list[str]:
    if a.number is None:
        return []
    lines: list[str] = []
    titles = {x.number: x.heading for x in plan.actions}
    for n in sorted(plan.blocks.get(a.number, set())):
        lines.append(f"  # depends on: {titles.get(n, f'Action {n}')} (run it first)")
    for other, blockers in sorted(plan.blocks.items()):
        if a.number in blockers:
            lines.append(f"  # blocks: {titles.get(other, f'Action {other}')}")
    return lines


def _step(d: _Draft, t: _Templater, plan: _Plan) -> list[str]:
    out = [_note(2, n) for n in d.notes]
    out.append(f"  - id: {d.id}")
    out.append(f"    kind: {d.kind}")
    out.append(f"    title: {_scalar(t(d.title))}")
    if d.description:
        out.extend(_value("description", t(d.description), 4, fold=True))
    if d.needs is not None:
        flow = _flow_list(d.needs)
        if len(flow) <= 80:
            out.append(f"    needs: {flow}")
        else:
            out.append("    needs:")
            out.extend(f"      - {_scalar(n)}" for n in d.needs)
    if d.kind == "manual":
        out.extend(_value("instructions", t(d.instructions or d.title), 4, fold=True))
        out.extend(_note(4, f"expected: {e}") for e in d.expected)
        return out
    if d.command:
        out.extend(_command(d, t))
        if d.shell:
            out.append("    shell: true")
        if d.env:
            out.append("    env:")
            out.extend(f"      {k}: {_scalar(t(v))}" for k, v in d.env.items())
        if d.workdir:
            out.append(f"    workdir: {_scalar(d.workdir)}")
    if d.kind == "validate":
        out.append("    baseline: true")
        out.append("    ok_exit_codes: [0, 1]  # validation scripts exit 1 when they find issues")
        out.append(
            "    # capture:  # the usual captures of a validation script: keep what it prints"
        )
        out.append("    #   issues: {pattern: '(\\d+) ISSUES FOUND', type: int, default: 0}")
        out.append("    #   warnings: {pattern: '(\\d+) WARNINGS', type: int, default: 0}")
        out.append("    #   issue_lines: {pattern: '^  \\[(\\w+)\\] (.*)$', all: true}")
    if d.kind == "verify":
        out.append("    baseline: true")
        out.append("    checks:")
        results = {table: f"{mark} {figures}" for mark, table, figures in plan.results}
        for c in d.checks:
            out.append(f"      - table: {_scalar(c.table)}")
            where = (
                t.where(c.where) if c.where is not None else ("game_date = @date" if t.date else "")
            )
            if where:
                out.append(f"        where: {_scalar(where)}")
            if c.expect is not None:
                out.append(f"        expect: {f'{{min: {c.expect}}}' if c.at_least else c.expect}")
            else:
                out.append("        # expect: N  # the plan gives no number for this table")
            if c.table in results:
                out.append(_note(8, f"the plan's validation results: {results[c.table]}"))
    out.append("    expect: []")
    out.extend(_note(4, f"expected: {e}") for e in d.expected)
    if d.kind == "validate" and not d.expected:
        out.append("    #   - issues == 0")
    return out


def _command(d: _Draft, t: _Templater) -> list[str]:
    if not d.shell and re.search(r"\{[{%#]", d.command):
        # Split by hand: a literal `{{` must not reach the word splitter as a template.
        words = _split(d.command) or [d.command]
        lines = ["    command:"]
        lines.extend(f"      - {_scalar(t(w))}" for w in words)
        return lines
    return _value("command", t(d.command), 4, fold=True)
