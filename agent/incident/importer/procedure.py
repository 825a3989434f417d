"""Any markdown procedure (headings, lists, shell and SQL blocks) -> a draft runbook in YAML."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path

from agent.incident import emit
from agent.incident.emit import Field, Flow, Map, Node, Note, Seq, Verbatim
from agent.incident.importer.assemble import slug
from agent.incident.importer.blocks import Code, Heading, Line, read
from agent.incident.importer.commands import (
    ASSIGN,
    Command,
    needs_shell,
    shell_commands,
    shell_quote,
    split_words,
    sql_statements,
)
from agent.incident.importer.shellgroups import group_commands
from agent.plan.shell import ShellError, placeholder, scan

__all__ = ["Procedure", "ProcedureStep", "git_root", "import_procedure"]

TODO = "TODO(import):"
_SHELL_LANGS = {"", "bash", "sh", "shell", "console", "zsh", "shell-session"}
_SQL_LANGS = {"sql", "bigquery", "googlesql"}
_DESTRUCTIVE = re.compile(
    r"\brm\s+-\w*[rf]|\bbq\s+rm\b|\bgsutil\s+(-m\s+)?rm\b|\bgcloud\b.*\bdelete\b"
    r"|\b(DELETE\s+FROM|DROP\s+(TABLE|VIEW|SCHEMA|DATASET)|TRUNCATE(\s+TABLE)?)\b",
    re.I,
)
_COUNT = re.compile(
    r"^\s*SELECT\s+COUNT\s*\(\s*(?:\*|1|DISTINCT\s+[\w.]+)\s*\)(?:\s+AS\s+\w+)?\s+"
    r"FROM\s+`?([\w-]+(?:\.[\w-]+){1,2})`?(?:\s+WHERE\s+(.*?))?\s*;?\s*$",
    re.I | re.S,
)
_CHECKOUT = re.compile(r"(?:/home|/Users)/[\w.-]+/code/[\w.-]+")
_LIST = re.compile(r"^\s*(?:\d+[.)]|[-*+])\s+(?:\[[ xX]\]\s+)?(.*\S)")
_TASK = re.compile(r"^\W*Task\s*#?\s*(\d+)\s*[:.)-]\s*(.*)", re.I)
_DECISION = re.compile(
    r"(?:Decision\s+point\W*)?\bIF\b\s+(.*?)\s*(?:->|→|=>)\s*(?:go\s+to\s+)?Task\s*#?\s*(\d+)", re.I
)
_TASK_REF = re.compile(r"\bTask\s*#?\s*(\d+)", re.I)
# A condition that reads "it did not work": the check it names fell short.
_NEGATIVE = re.compile(
    r"\b(?:not|no|none|never|didn'?t|doesn'?t|don'?t|isn'?t|aren'?t|wasn'?t|weren'?t|hasn'?t"
    r"|haven'?t|can'?t|fail(?:s|ed)?|missing|empty|zero|0|stale|incomplete|short|below|less)\b",
    re.I,
)
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null"}  # YAML reads these as values
_RANGE_VARS = re.compile(r"\{\{ (start|end) \}\}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufeff\ufffe\uffff]")
_DRY_RUN = re.compile(r"\s--dry[-_]run\b(?:=\S+)?")
# Placeholders a person writes for "the date": each becomes `{{ name }}`.
_PLACEHOLDERS = [
    (re.compile(r"\$\(date\b[^)]*\)"), "date"),
    (re.compile(r"<(START|END)?_?DATE>", re.I), None),
    (re.compile(r"\{(START|END)?_?DATE\}", re.I), None),
    (re.compile(r"\$\{?(START|END)_DATE\}?"), None),
    (re.compile(r"(?<![\w-])YYYY-MM-DD(?![\w-])"), "date"),
]
_OTHER = re.compile(r"<([A-Z][A-Z0-9_]{1,30})>|\{([A-Z][A-Z0-9_]{1,30})\}")
_LITERAL_DATE = re.compile(r"(?<![\d-])(\d{4}-\d{2}-\d{2})(?!\d)")
_START_FLAG = re.compile(r"--start[-_]?date[= ]$")
_END_FLAG = re.compile(r"--end[-_]?date[= ]$")
_BETWEEN_END = re.compile(r"BETWEEN\s+'?\d{4}-\d{2}-\d{2}'?\s+AND\s+'?$", re.I)


@dataclass
class ProcedureStep:
    """One drafted step: its kind, its command or SQL, and the comments above it."""

    id: str
    kind: str
    title: str
    command: str = ""
    shell: bool = False
    env: dict[str, str] = field(default_factory=dict)
    instructions: str = ""
    table: str = ""
    where: str = ""
    when: str = ""
    notes: list[str] = field(default_factory=list)
    needs: list[str] = field(default_factory=list)
    approved_by: ProcedureStep | None = None  # the approval in front of a destructive step
    guards: bool = False  # an approval step: its instructions quote a command


@dataclass
class Procedure:
    """A drafted runbook: its YAML text, how many TODOs it holds, and its steps."""

    text: str
    todos: int
    steps: list[ProcedureStep]


def git_root(path: Path) -> Path | None:
    """The top level of the git repository holding `path` (a `.git` folder or file), or None."""
    here = path.resolve()
    for folder in [here, *here.parents]:
        if (folder / ".git").exists():
            return folder
    return None


class _Vars:
    """The typed vars found in the document's commands, and the text rewritten to use them."""

    def __init__(self) -> None:
        self.dates: dict[str, str | None] = {}  # name -> literal default (or None)
        self.strings: list[str] = []

    def template(self, text: str) -> str:
        out = re.sub(r"\{[{%#]", lambda m: "{% raw %}" + m.group(0) + "{% endraw %}", text)
        for pattern, name in _PLACEHOLDERS:

            def sub(m: re.Match[str], n: str | None = name) -> str:
                return self._date(n or self._which(m))

            out = pattern.sub(sub, out)
        out = _LITERAL_DATE.sub(self._literal, out)

        def other(m: re.Match[str]) -> str:
            name = slug(m.group(1) or m.group(2))
            if not name or name in self.dates:
                return m.group(0)
            if name not in self.strings:
                self.strings.append(name)
            return "{{ " + name + " }}"

        return _OTHER.sub(other, out)

    @staticmethod
    def _which(m: re.Match[str]) -> str:
        part = (m.group(1) or "").lower()
        return part or "date"

    def _date(self, name: str, default: str | None = None) -> str:
        if name not in self.dates or self.dates[name] is None:
            self.dates[name] = default
        return "{{ " + name + " }}"

    def _literal(self, m: re.Match[str]) -> str:
        value = m.group(1)
        try:
            dt.date.fromisoformat(value)
        except ValueError:
            return value
        before = m.string[: m.start()]
        name = ""
        if _START_FLAG.search(before) or re.search(r"BETWEEN\s+'?$", before, re.I):
            name = "start"
        elif _END_FLAG.search(before) or _BETWEEN_END.search(before):
            name = "end"
        if not name:
            known = [n for n, v in self.dates.items() if v == value]
            name = known[0] if known else "date"
        return self._date(name, value)

    @property
    def ranged(self) -> bool:
        return "start" in self.dates and "end" in self.dates


class _Reader:
    """Walks the document's events and drafts steps in order."""

    def __init__(self) -> None:
        self.steps: list[ProcedureStep] = []
        self.vars = _Vars()
        self.section = ""
        self.pending: tuple[str, str] | None = None  # (title, prose) of a list item
        self.item: str | None = None  # the list item the next code blocks belong to
        self.tasks: dict[int, list[ProcedureStep]] = {}
        self.task_no: int | None = None
        self.decisions: list[_Decision] = []
        self.checkouts: set[str] = set()
        self.title = ""

    # --- events ---------------------------------------------------------------------------------

    def heading(self, h: Heading) -> None:
        self.flush()
        self.item = None
        text = _plain(h.title)
        if not self.title and h.level == 1:
            self.title = text
            return
        self.section = text
        m = _TASK.match(text)
        self.task_no = int(m.group(1)) if m else None

    def line(self, line: Line) -> None:
        text = line.text
        d = _DECISION.search(text)
        if d:
            self.flush()
            self.item = None
            before = self.steps[-1] if self.steps else None
            cond = d.group(1).strip(" :")
            self.decisions.append(_Decision(cond, int(d.group(2)), _plain(text), before))
            return
        t = _TASK.match(text)
        m = _LIST.match(text)
        if t and not m:
            self.flush()
            self.item = None
            self.section = _plain(text)
            self.task_no = int(t.group(1))
            return
        if m:
            self.flush()
            item = _plain(m.group(1))
            tm = _TASK.match(item)
            if tm:
                self.task_no = int(tm.group(1))
            self.pending = (item, item)
            self.item = item
        elif self.pending and text.strip():
            title, prose = self.pending
            self.pending = (title, f"{prose} {_plain(text)}")
        elif text.strip() and not text[0].isspace():
            # Prose at the margin after an item's code: the item's code has ended.
            self.item = None

    def code(self, c: Code) -> None:
        # Every block after a list item (before the next item, heading or prose) is the item's.
        title = self.item if self.item is not None else self.section
        self.pending = None
        if c.lang in _SQL_LANGS:
            for st in sql_statements(c.code):
                self.sql(st.text, st.comment or title)
        elif c.lang in _SHELL_LANGS and c.code.strip():
            self.shell(c.code, title)

    def flush(self) -> None:
        """A list item that no code block followed: a manual step with its prose."""
        if self.pending is None:
            return
        title, prose = self.pending
        self.pending = None
        self.add(ProcedureStep("", "manual", _short(title), instructions=prose))

    # --- steps ----------------------------------------------------------------------------------

    def add(self, step: ProcedureStep) -> None:
        if self.task_no is not None:
            self.tasks.setdefault(self.task_no, []).append(step)
        self.steps.append(step)

    def shell(self, code: str, title: str) -> None:
        commands = [c for c in shell_commands(code) if not _cd_checkout(c.text, self.checkouts)]
        if not commands:
            return
        groups = group_commands([c.text for c in commands])
        alone = [commands[g.members[0]].text for g in groups if not g.why]
        texts = set(alone)
        twins = {_DRY_RUN.sub("", t) for t in alone if _DRY_RUN.search(t)}
        for g in groups:
            first = commands[g.members[0]]
            if g.why:
                self.script(code, [commands[i] for i in g.members], first.comment or title, g.why)
                continue
            if _DRY_RUN.search(first.text) and _DRY_RUN.sub("", first.text) in texts:
                continue  # the real command carries it as a comment
            self.command(first.text, first.comment or title, dry=first.text in twins)

    def script(self, code: str, members: list[Command], title: str, why: list[str]) -> None:
        """Commands that depend on each other: one `shell: true` step with their lines."""
        lines = code[members[0].start : members[-1].end].splitlines()
        body = "\n".join(
            line.removeprefix("$ ") if line.lstrip().startswith("$ ") else line
            for line in lines
            if line.strip() and not _comment(line)
        )
        body = self._checkout(body)
        approval = self.guard(body, title)
        step = ProcedureStep("", "run", _short(title) or "Shell block", body)
        step.shell, step.approved_by = True, approval
        step.notes.append(f"its lines depend on each other ({'; '.join(why)}): one shell")
        self.add(step)

    def command(self, text: str, title: str, *, dry: bool) -> None:
        text = self._checkout(text)
        words = split_words(text) or []
        env: dict[str, str] = {}
        while words and ASSIGN.match(words[0]) and len(words) > 1:
            key, _, value = words.pop(0).partition("=")
            env[key] = value
            text = text.split(None, 1)[1]
        count = _bq_count(words)
        if count is not None:
            self.sql(count, title)
            return
        approval = self.guard(text, title)
        step = ProcedureStep(
            "", "run", _short(title) or _short(text), text, shell=needs_shell(text), env=env
        )
        step.approved_by = approval
        if dry:
            step.notes.append("the document runs it with --dry-run first: add it to preview")
        if words[:2] == ["gcloud", "run"] and any(w.startswith("--args") for w in words):
            step.notes.append("a Cloud Run job: its --args are templated like any argument")
        self.add(step)

    def sql(self, sql: str, title: str) -> None:
        approval = self.guard(sql, title)
        m = _COUNT.match(sql)
        if m:
            step = ProcedureStep("", "verify", _short(title) or f"Count {m.group(1)}")
            step.table, step.where = m.group(1), " ".join((m.group(2) or "").split())
            step.notes.append(f"{TODO} the document counts rows here: set the expected number")
            self.add(step)
            return
        text = "bq query --use_legacy_sql=false " + shell_quote(" ".join(sql.split()))
        step = ProcedureStep("", "run", _short(title) or "Run SQL", text)
        step.approved_by = approval
        step.notes.append("the document's SQL is not a count: run as a query")
        self.add(step)

    def guard(self, text: str, title: str) -> ProcedureStep | None:
        """A manual approval in front of a command that deletes; the command will need it."""
        m = _DESTRUCTIVE.search(text)
        if not m:
            return None
        what = " ".join(text.split())[:160]
        approval = ProcedureStep(
            "",
            "manual",
            f"Approve: {_short(title) or m.group(0)}",
            instructions=f"The next step deletes ({m.group(0)}): {what}. "
            "Check what it removes, then approve.",
            guards=True,
        )
        self.add(approval)
        return approval

    def _checkout(self, text: str) -> str:
        """A user's checkout path: the workdir instead (the draft's workdir is the repo's top)."""
        for path in _CHECKOUT.findall(text):
            self.checkouts.add(path)
        text = re.sub(r"^\s*cd\s+" + _CHECKOUT.pattern + r"/?\s*(&&|;|\n)\s*", "", text)
        return re.sub(_CHECKOUT.pattern + r"/", "", re.sub(_CHECKOUT.pattern + r"\b", ".", text))


@dataclass
class _Decision:
    """`Decision point: IF <condition> -> Task N`, and the step drafted just before it."""

    condition: str
    task: int
    prose: str
    before: ProcedureStep | None


def _cd_checkout(text: str, checkouts: set[str]) -> bool:
    """`cd /home/<user>/code/<repo>` alone: the draft's workdir already, not a step."""
    m = re.fullmatch(r"cd\s+(" + _CHECKOUT.pattern + r")/?", text.strip())
    if m:
        checkouts.add(m.group(1))
    return m is not None


def _comment(line: str) -> bool:
    s = line.strip()
    return s.startswith("#") and not s.startswith("#!")


def _plain(md: str) -> str:
    """Inline markdown as text: emphasis, code marks and link targets off."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", md)
    text = re.sub(r"[*_`]{1,3}", "", text)
    return " ".join(text.split())


def _short(text: str) -> str:
    text = text.strip().rstrip(":.")
    return text if len(text) <= 90 else text[:87].rsplit(" ", 1)[0] + "..."


def _bq_count(words: list[str]) -> str | None:
    """The SQL of `bq query ... 'SELECT COUNT(*) ...'`, or None."""
    if words[:2] != ["bq", "query"]:
        return None
    sql = next((w for w in reversed(words[2:]) if not w.startswith("-")), "")
    return sql if _COUNT.match(sql) else None


def import_procedure(
    text: str,
    *,
    source: str,
    workdir: str = ".",
    schema_path: str = "../runbook.schema.json",
) -> Procedure:
    """Draft a runbook from any markdown procedure.

    Args:
        text: the document's markdown.
        source: the document's path as the draft names it.
        workdir: the draft's workdir (the document's repository top, or `--workdir`).
        schema_path: the JSON Schema path for the editor comment.

    Returns:
        The draft (which validates as written) with its count of `TODO(import)` comments.
    """
    # YAML refuses control characters: a stray one in a document must not break the draft.
    text = _CONTROL.sub("\ufffd", text)
    r = _Reader()
    for event in read(text):
        if isinstance(event, Heading):
            r.heading(event)
        elif isinstance(event, Code):
            r.code(event)
        else:
            r.line(event)
    r.flush()
    if not r.steps:
        r.steps.append(
            ProcedureStep(
                "",
                "manual",
                "Follow the document",
                instructions=f"Carry out the procedure in {source}.",
                notes=[f"{TODO} the document has no list item or shell block to draft a step from"],
            )
        )
    _templates(r)
    if r.vars.ranged:
        for s in r.steps:
            _per_partition(s)
    for s in r.steps:
        _unscannable(s)
    _ids(r.steps)
    for s in r.steps:
        if s.approved_by is not None:
            # A refused or skipped approval keeps the command from running (SKIPPED by needs).
            s.needs = [s.approved_by.id, *(n for n in s.needs if n != s.approved_by.id)]
    _decisions(r)
    doc = _document(r, source, workdir, schema_path)
    out = emit.dump(doc)
    return Procedure(out, out.count(TODO), r.steps)


def _templates(r: _Reader) -> None:
    for s in r.steps:
        s.command = r.vars.template(s.command)
        s.where = r.vars.template(s.where) if s.where else ""
        s.env = {k: r.vars.template(v) for k, v in s.env.items()}
        s.title = r.vars.template(s.title)
        s.instructions = r.vars.template(s.instructions)
        if s.kind == "verify" and s.where:
            s.where = re.sub(r"'?\{\{ (\w+) \}\}'?", r"@\1", s.where)


def _per_partition(s: ProcedureStep) -> None:
    """With `partitions:`, a command runs once per date: `{{ date }}` for the range's ends."""
    if s.kind == "verify":
        if "@start" in s.where or "@end" in s.where:
            s.where = re.sub(r"\bBETWEEN\s+@start\s+AND\s+@end\b", "= @date", s.where, flags=re.I)
            s.where = re.sub(r"@(?:start|end)\b", "@date", s.where)
            s.notes.append("the document counts the whole range: here each partition's date")
        return
    if s.kind == "manual" and not s.guards:
        return  # a person's prose may speak of the range
    before = s.command + "".join(s.env.values())
    both = {m.group(1) for m in _RANGE_VARS.finditer(before)} == {"start", "end"}

    def one(text: str) -> str:
        text = re.sub(
            r"\bBETWEEN\s+('?)\{\{ start \}\}\1\s+AND\s+('?)\{\{ end \}\}\2",
            r"= \1{{ date }}\1",
            text,
            flags=re.I,
        )
        return _RANGE_VARS.sub("{{ date }}", text)

    s.command, s.instructions = one(s.command), one(s.instructions)
    s.env = {k: one(v) for k, v in s.env.items()}
    if s.kind == "run" and _RANGE_VARS.search(before):
        what = "the range" if both else "an end of the range"
        s.notes.append(
            f"{TODO} it took {what}; now once per date ({{{{ date }}}}): if it needs the "
            "whole range, use {{ start }}/{{ end }} and no partitions"
        )


def _decisions(r: _Reader) -> None:
    """Each decision as a `when` on the task it names: the status of the check it reads."""
    index = {id(s): i for i, s in enumerate(r.steps)}
    for d in r.decisions:
        targets = r.tasks.get(d.task, [])
        if not targets:
            continue
        named = _TASK_REF.search(d.condition)
        named_steps = r.tasks.get(int(named.group(1)), []) if named else []
        check = named_steps[-1] if named_steps else d.before
        first = index[id(targets[0])]
        if check is not None and index[id(check)] < first:
            negative = bool(_NEGATIVE.search(d.condition))
            op = "!=" if negative else "=="
            when = f"steps.{check.id}.status {op} 'SUCCESS'"
            meaning = "did not succeed" if negative else "succeeded"
            note = (
                f'{TODO} when: "{d.condition}" -> Task {d.task}: runs if {check.id} {meaning}; '
                "confirm that step answers it"
            )
        elif check is not None:
            when = ""  # a runbook runs forward: going back to a task is a person's call
            note = (
                f'{TODO} when: "{d.condition}" -> Task {d.task} goes back to an earlier task: '
                "run it again by hand"
            )
        elif first:
            when = f"steps.{r.steps[first - 1].id}.status == 'SUCCESS'"
            note = (
                f'{TODO} when: a placeholder: "{d.condition}" -> Task {d.task} reads no step '
                "before it: write the condition"
            )
        else:
            when = ""
            note = f'{TODO} when: "{d.condition}" -> Task {d.task}: no step before it to read'

        for n, s in enumerate(targets):
            if when:
                s.when = f"({s.when}) or ({when})" if s.when else when
            if n == 0:
                s.notes.append(note)


def _unscannable(s: ProcedureStep) -> None:
    """A shell command whose quotes never close, or with a value no quoting makes safe: a manual
    step quoting it, not a broken draft."""
    if s.kind != "run" or not s.shell:
        return
    exprs: list[str] = []

    def value(m: re.Match[str]) -> str:
        exprs.append(m.group(0))
        return placeholder(len(exprs) - 1)

    # Each value where the runner will quote it: some places (inside backticks) it cannot.
    literal = re.sub(r"\{% raw %\}.*?\{% endraw %\}", "x", s.command, flags=re.S)
    try:
        scan(re.sub(r"\{\{.*?\}\}", value, literal), exprs)
    except ShellError as exc:
        s.kind, s.instructions = "manual", f"Run by hand: {s.command}"
        s.shell, s.env = False, {}
        s.notes.append(f"{TODO} the document's command does not scan ({exc}): check its quotes")


def _ids(steps: list[ProcedureStep]) -> None:
    taken: set[str] = set()
    for s in steps:
        base = slug(re.sub(r"\{\{.*?\}\}|\{%.*?%\}", "", s.title)) or s.kind
        if not base[0].isalpha() or base in _YAML_WORDS:
            base = f"step_{base}"  # `1`, `0_0` or `true` would read back as a number or a bool
        out, n = base, 2
        while out in taken:
            out, n = f"{base}_{n}", n + 1
        taken.add(out)
        s.id = out


def _document(r: _Reader, source: str, workdir: str, schema_path: str) -> emit.Document:
    title = r.title or "Imported procedure"
    header = [
        f"# yaml-language-server: $schema={schema_path}",
        f"# Draft imported by `runbook import` from {source}.",
        "# Review every step before running it; each TODO(import) comment is for a person",
        "# to decide.",
    ]
    head: list[Node] = [
        Field("version", 1),
        Field("id", (slug(title, "-", 60) or "imported-procedure")),
        Field("title", r.vars.template(title)),
    ]
    vars_: list[Node] = []
    names = sorted(r.vars.dates)
    if r.vars.ranged:
        names = [n for n in names if n != "date"]
    for name in names:
        value = r.vars.dates[name]
        spec: dict[str, str | bool] = {"type": "date"}
        if value:
            spec["default"] = value
        else:
            spec["required"] = True
        vars_.append(Field(name, Flow(spec)))
    for name in r.vars.strings:
        vars_.append(Field(name, Flow({"type": "string", "required": True})))
        vars_.append(Note(f"{TODO} <{name.upper()}> in the document: what value is it?"))
    if vars_:
        head.append(Field("vars", Map(vars_)))
    if r.vars.ranged:
        head.append(Note("one run per date from start to end: the commands take {{ date }}"))
        rng = Flow({"from": "{{ start }}", "to": "{{ end }}"})
        head.append(Field("partitions", Map([Field("var", "date"), Field("dates", rng)])))
    comment = "the top of the repository holding the document"
    if r.checkouts:
        comment = "the document's checkout path " + ", ".join(sorted(r.checkouts))
    head.append(Field("workdir", workdir, comment=comment))
    if any(s.kind == "verify" for s in r.steps):
        note = "the document's SQL is BigQuery: set bigquery and a project to query it"
        head.append(Field("warehouse", Map([Field("backend", "duckdb", comment=note)])))
    steps = [emit.Step(s.notes, _step(s)) for s in r.steps]
    return emit.Document(header=header, head=head, steps=steps)


def _step(s: ProcedureStep) -> list[Node]:
    out: list[Node] = [
        Field("id", Verbatim(s.id)),
        Field("kind", Verbatim(s.kind)),
        Field("title", s.title or s.id),
    ]
    if s.needs:
        out.append(Field("needs", Flow(s.needs)))
    if s.when:
        out.append(Field("when", s.when))
    if s.kind == "manual":
        out.append(Field("instructions", s.instructions or s.title, prose=True))
        return out
    if s.kind == "verify":
        check: list[Node] = [Field("table", s.table)]
        if s.where:
            check.append(Field("where", s.where))
        check.append(Field("expect", Flow({"min": 1})))
        out.append(Field("checks", Seq([check])))
        return out
    out.append(Field("command", s.command, prose=True))
    if s.shell:
        out.append(Field("shell", True))
    if s.env:
        out.append(Field("env", Map([Field(k, v) for k, v in s.env.items()])))
    return out
