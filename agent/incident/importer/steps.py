"""An action's items into draft steps: commands, checks, manual steps, expected results."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from agent.incident.importer.commands import (
    ASSIGN,
    Command,
    chain,
    needs_shell,
    shell_commands,
    shell_quote,
    split_words,
    sql_statements,
    uncommented_sql,
)
from agent.incident.importer.guess import COUNT_SQL, EXPECT_COUNT, block_language, guess_kind
from agent.incident.importer.plan import Action, Block, Item, first_sentence

__all__ = ["Builder", "Check", "Draft", "indent"]


@dataclass
class Check:
    table: str
    where: str | None = None  # None: the plan's date when there is one; "": the whole table
    expect: int | None = None
    at_least: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class Draft:
    """A step of the draft, before it is written out."""

    key: str  # the caption its id comes from
    kind: str
    title: str
    action: Action
    command: str = ""
    shell: bool = False
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = ""
    checks: list[Check] = field(default_factory=list)
    instructions: str = ""
    description: str = ""
    notes: list[str] = field(default_factory=list)  # comments above the step
    expected: list[str] = field(default_factory=list)  # comments beside `expect: []`
    chained_to: Draft | None = None  # the step before it in an `a && b` chain
    id: str = ""
    needs: list[str] | None = None

    @property
    def words(self) -> set[str]:
        """The words of its title, command and checks, to match expected results to it."""
        text = " ".join([self.title, self.command, *(c.table for c in self.checks)])
        return words_of(text)


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


def words_of(text: str) -> set[str]:
    return {w for w in re.split(r"[^a-z0-9]+", text.lower()) if len(w) >= 4 and w not in _STOP}


class Builder:
    """Turns one action's items into drafts."""

    def __init__(self, action: Action) -> None:
        self.action = action
        self.drafts: list[Draft] = []
        self.env: dict[str, str] = {}
        self.workdir = ""

    def draft(self, key: str, kind: str, title: str, **kw: object) -> Draft:
        d = Draft(key=key, kind=kind, title=title, action=self.action, **kw)  # type: ignore[arg-type]
        self.drafts.append(d)
        return d

    def item(self, item: Item, *, expected: Iterable[str] = ()) -> list[Draft]:
        start = len(self.drafts)
        if not item.blocks:
            self.draft(item.label, "manual", item.label, instructions=item.prose)
        for block in item.blocks:
            lang = block_language(block.lang, block.code)
            if lang == "shell":
                for cmd in shell_commands(block.code):
                    self.command(item, cmd)
            elif lang == "sql":
                for stmt in sql_statements(block.code):
                    self.sql(item, stmt.text, stmt.comment)
            elif lang == "python":
                self.draft(
                    item.label,
                    "manual",
                    item.label,
                    instructions=f"{item.prose or 'Write this code'}\n\nCode sketch from the plan "
                    f"(python: write it, it is not a command to run):\n\n{indent(block.code, 4)}",
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

    def _output(self, item: Item, block: Block) -> None:
        quoted = indent(block.code, 4)
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

    def command(self, item: Item, cmd: Command) -> None:
        """One command of a shell block: a step, a setting for the steps after it, or a chain."""
        title = cmd.comment or item.label or first_sentence(cmd.text.split("\n")[0], 60)
        if cmd.inline and not cmd.comment:
            title = f"{title} ({cmd.inline})"
        text = cmd.text
        words = split_words(text)
        if words is None:
            self.draft(
                item.label,
                "manual",
                title,
                instructions=f"{item.prose}\n\nRun by hand (the importer cannot split this "
                f"command):\n\n{indent(text, 4)}",
            )
            return
        if self._setting(text, words):
            return
        cd = re.match(r"^cd\s+([^\s;&|$`~]+)\s+&&\s+(.+)$", text, re.S)
        if cd:
            saved, self.workdir = self.workdir, cd.group(1)
            self.command(item, Command(cd.group(2), cmd.comment, cmd.inline))
            self.workdir = saved
            return
        parts = chain(text)
        if parts:
            self._chain(item, cmd, parts)
            return
        self._program(item, cmd, title, text, words)

    def _setting(self, text: str, words: list[str]) -> bool:
        """`export X=Y` (env of the steps after it) or `cd DIR` (their workdir)."""
        if words and words[0] == "export" and len(words) == 2 and "=" in words[1]:
            name, value = words[1].split("=", 1)
            if "$" in text or "`" in text:
                self.action.notes.append(f"set by hand before the steps: {text}")
            else:
                self.env[name] = value
            return True
        if words and words[0] == "cd" and len(words) == 2 and not needs_shell(words[1]):
            self.workdir = words[1]
            return True
        return False

    def _chain(self, item: Item, cmd: Command, parts: list[str]) -> None:
        """`a && b`: a step each, each needing the one before."""
        before: Draft | None = None
        for n, part in enumerate(parts):
            self.command(item, Command(part, *((cmd.comment, cmd.inline) if n == 0 else ("", ""))))
            if before is not None:
                self.drafts[-1].chained_to = before
            before = self.drafts[-1]

    def _program(self, item: Item, cmd: Command, title: str, text: str, words: list[str]) -> None:
        """A command that runs a program: leading `X=Y` words become env."""
        env = dict(self.env)
        while words and ASSIGN.match(words[0]) and len(words) > 1 and not needs_shell(text):
            name, value = words[0].split("=", 1)
            env[name] = value
            words = words[1:]
            text = re.sub(r"^\s*[A-Za-z_]\w*=(?:'[^']*'|\"[^\"]*\"|\S*)\s+", "", text, count=1)
        kind = guess_kind(text)
        if words and words[0] == "bq" and "query" in words[1:3]:
            sql = next((w for w in reversed(words[2:]) if not w.startswith("-")), "")
            if sql and COUNT_SQL.match(uncommented_sql(sql)):
                self.sql(item, sql, cmd.comment)
                return
            kind = "run"
        d = self.draft(
            item.label,
            kind,
            title,
            command=text,
            shell=needs_shell(text),
            env=env,
            workdir=self.workdir,
        )
        if words and words[0] == "bq" and "query" in words[1:3]:
            d.notes.append("bq query kept as a command: not a simple count; read its output")

    def sql(self, item: Item, sql: str, comment: str) -> None:
        title = comment or item.label
        m = COUNT_SQL.match(uncommented_sql(sql))
        if m:
            check = Check(m.group("table"), where="")
            if m.group("col"):
                check.where = f"{m.group('col')} = '{m.group('date')}'"
            self.draft(item.label, "verify", title, checks=[check])
            return
        quoted = shell_quote(sql)
        command = f"bq query --use_legacy_sql=false {quoted}"
        d = self.draft(item.label, "run", title, command=command, workdir=self.workdir)
        d.notes.append("SQL kept as a bq query command: not a simple count, so not a verify check")

    def validation(self, items: list[Item]) -> None:
        """The action's Validation list: counts become checks, the rest comments beside steps."""
        counts: list[tuple[Item, Check]] = []
        loose: list[str] = []
        for it in items:
            if it.blocks:
                self.item(it, expected=[it.prose])
                continue
            m = EXPECT_COUNT.search(it.prose)
            if m:
                check = Check(
                    m.group("table"), expect=int(m.group("n")), at_least=bool(m.group("min"))
                )
                counts.append((it, check))
            else:
                loose.append(it.prose)
        extra = self._counts(counts, loose)
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

    def _counts(self, counts: list[tuple[Item, Check]], loose: list[str]) -> list[Check]:
        """Expected counts into the verify checks of their table; those with none returned."""
        verify = next((d for d in self.drafts if d.kind == "verify"), None)
        extra: list[Check] = []
        for it, check in counts:
            owner, same = next(
                (
                    (d, c)
                    for d in self.drafts
                    if d.kind == "verify"
                    for c in d.checks
                    if c.table == check.table and c.expect is None
                ),
                (None, None),
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
        return extra

    def _place(self, text: str, *, skip_counts: bool) -> None:
        """Put an expected result beside the step it talks about (the last one otherwise)."""
        if not self.drafts:
            return
        if skip_counts and EXPECT_COUNT.search(text):
            target = next(d for d in reversed(self.drafts) if d.key == "expected_counts")
            target.expected.append(text)
            return
        words = words_of(text)
        scored = [(len(words & d.words), i) for i, d in enumerate(self.drafts)]
        best, index = max(scored)
        if best == 0:
            expectable = [i for i, d in enumerate(self.drafts) if d.kind != "manual"]
            index = expectable[-1] if expectable else len(self.drafts) - 1
        self.drafts[index].expected.append(text)


def indent(text: str, n: int) -> str:
    return "\n".join((" " * n + line) if line.strip() else "" for line in text.splitlines())
