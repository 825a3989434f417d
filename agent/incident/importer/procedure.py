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
    needs_shell,
    shell_commands,
    shell_quote,
    split_words,
    sql_statements,
)
from agent.plan.shell import ShellError, scan

__all__ = ["Procedure", "ProcedureStep", "git_root", "import_procedure"]

TODO = "TODO(import):"
_SHELL_LANGS = {"", "bash", "sh", "shell", "console", "zsh", "shell-session"}
_SQL_LANGS = {"sql", "bigquery", "googlesql"}
# Lines that only make sense together: the block stays one shell step.
_DEPENDENT = re.compile(r"^(cd|pushd|for|while|until|if|export|source|\.|set)\b|^\w+=\S*$")
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
        self.tasks: dict[int, ProcedureStep] = {}
        self.task_no: int | None = None
        self.decisions: list[tuple[str, int, str]] = []  # condition, task, prose
        self.checkouts: set[str] = set()
        self.title = ""

    # --- events ---------------------------------------------------------------------------------

    def heading(self, h: Heading) -> None:
        self.flush()
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
            self.decisions.append((d.group(1).strip(" :"), int(d.group(2)), _plain(text)))
            return
        t = _TASK.match(text)
        m = _LIST.match(text)
        if t and not m:
            self.flush()
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
        elif self.pending and text.strip():
            title, prose = self.pending
            self.pending = (title, f"{prose} {_plain(text)}")
        elif not text.strip() and self.pending is None:
            return

    def code(self, c: Code) -> None:
        title = self.pending[0] if self.pending else self.section
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
        if self.task_no is not None and self.task_no not in self.tasks:
            self.tasks[self.task_no] = step
        self.steps.append(step)

    def shell(self, code: str, title: str) -> None:
        commands = shell_commands(code)
        if not commands:
            return
        if any(_DEPENDENT.match(c.text) or "\n" in c.text for c in commands):
            body = "\n".join(
                line for line in code.splitlines() if line.strip() and not _comment(line)
            )
            self.guard(body, title)
            step = ProcedureStep("", "run", _short(title) or "Shell block", self._checkout(body))
            step.shell = True
            step.notes.append("its lines depend on each other (cd, loops, variables): one shell")
            self.add(step)
            return
        texts = [c.text for c in commands]
        twins = {_DRY_RUN.sub("", t) for t in texts if _DRY_RUN.search(t)}
        for c in commands:
            if _DRY_RUN.search(c.text) and _DRY_RUN.sub("", c.text) in texts:
                continue  # the real command carries it as a comment
            self.command(c.text, c.comment or title, dry=c.text in twins)

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
        self.guard(text, title)
        step = ProcedureStep(
            "", "run", _short(title) or _short(text), text, shell=needs_shell(text), env=env
        )
        if dry:
            step.notes.append("the document runs it with --dry-run first: add it to preview")
        if words[:2] == ["gcloud", "run"] and any(w.startswith("--args") for w in words):
            step.notes.append("a Cloud Run job: its --args are templated like any argument")
        self.add(step)

    def sql(self, sql: str, title: str) -> None:
        self.guard(sql, title)
        m = _COUNT.match(sql)
        if m:
            step = ProcedureStep("", "verify", _short(title) or f"Count {m.group(1)}")
            step.table, step.where = m.group(1), " ".join((m.group(2) or "").split())
            step.notes.append(f"{TODO} the document counts rows here: set the expected number")
            self.add(step)
            return
        text = "bq query --use_legacy_sql=false " + shell_quote(" ".join(sql.split()))
        step = ProcedureStep("", "run", _short(title) or "Run SQL", text)
        step.notes.append("the document's SQL is not a count: run as a query")
        self.add(step)

    def guard(self, text: str, title: str) -> None:
        """A manual approval in front of a command that deletes."""
        m = _DESTRUCTIVE.search(text)
        if m:
            what = " ".join(text.split())[:160]
            self.add(
                ProcedureStep(
                    "",
                    "manual",
                    f"Approve: {_short(title) or m.group(0)}",
                    instructions=f"The next step deletes ({m.group(0)}): {what}. "
                    "Check what it removes, then approve.",
                )
            )

    def _checkout(self, text: str) -> str:
        """A user's checkout path: the workdir instead (the draft's workdir is the repo's top)."""
        for path in _CHECKOUT.findall(text):
            self.checkouts.add(path)
        text = re.sub(r"^\s*cd\s+" + _CHECKOUT.pattern + r"/?\s*(&&|;|\n)\s*", "", text)
        return re.sub(_CHECKOUT.pattern + r"/", "", re.sub(_CHECKOUT.pattern + r"\b", ".", text))


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
    for cond, task, prose in r.decisions:
        target = r.tasks.get(task)
        if target is not None:
            target.when = cond
            target.notes.append(f"{TODO} when: write as an expression: {prose}")
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
    for s in r.steps:
        _unscannable(s)
    _ids(r.steps)
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


def _unscannable(s: ProcedureStep) -> None:
    """A shell command whose quotes never close: a manual step quoting it, not a broken draft."""
    if s.kind != "run" or not s.shell:
        return
    try:
        scan(re.sub(r"\{\{.*?\}\}|\{%.*?%\}", "x", s.command), [])
    except ShellError as exc:
        s.kind, s.instructions = "manual", f"Run by hand: {s.command}"
        s.shell, s.env = False, {}
        s.notes.append(f"{TODO} the document's command does not scan ({exc}): check its quotes")


def _ids(steps: list[ProcedureStep]) -> None:
    taken: set[str] = set()
    for s in steps:
        base = slug(re.sub(r"\{\{.*?\}\}|\{%.*?%\}", "", s.title)) or s.kind
        if not base[0].isalpha():
            base = f"step_{base}"  # `1` or `0_0` would read back as a number, not an id
        out, n = base, 2
        while out in taken:
            out, n = f"{base}_{n}", n + 1
        taken.add(out)
        s.id = out
    ids = [s.id for s in steps]
    for s in steps:
        if s.when:
            # The decision is a person's: the step runs when the step before it is approved.
            prev = ids[ids.index(s.id) - 1] if ids.index(s.id) else ""
            s.when = f"steps.{prev}.status == 'SUCCESS'" if prev else ""


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
        head.append(Note(f"{TODO} commands take the whole range; use {{{{ date }}}} per date"))
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
