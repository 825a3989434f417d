"""The plan read from markdown events: title, summary, actions and their items, dependencies."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from agent.incident.importer.blocks import Code, Heading, read

__all__ = ["Action", "Block", "Item", "Plan", "clean", "first_sentence", "parse"]


@dataclass
class Block:
    """A fenced code block: its language (lowercase, may be empty) and its dedented code."""

    lang: str
    code: str


@dataclass
class Item:
    """One numbered or bulleted entry: a bold caption, prose, and the code blocks under it."""

    caption: str
    text: str
    blocks: list[Block] = field(default_factory=list)

    @property
    def label(self) -> str:
        """The caption, or the prose's first sentence when the item has no bold caption."""
        return self.caption or first_sentence(self.text, 80)

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
class Action:
    """A `#### Action N: Title` section of the plan."""

    number: int | None
    title: str
    heading: str
    group: str
    fields: dict[str, str] = field(default_factory=dict)
    steps: list[Item] = field(default_factory=list)
    validation: list[Item] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    index: int = 0

    @property
    def name(self) -> str:
        """`Action N`, or the heading when the action has no number."""
        return f"Action {self.number}" if self.number is not None else self.title


@dataclass
class Plan:
    """What the importer reads from a plan."""

    title: str = ""
    summary: str = ""
    results: list[tuple[str, str, str]] = field(default_factory=list)  # mark, table, "n/m (p%)"
    actions: list[Action] = field(default_factory=list)
    blocks: dict[int, set[int]] = field(default_factory=dict)  # action -> actions it needs
    dependency_lines: list[str] = field(default_factory=list)
    success: list[str] = field(default_factory=list)
    risks: list[str] = field(default_factory=list)
    communication: list[str] = field(default_factory=list)


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
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`])")
_STEPS_LABELS = ("steps", "implementation", "procedure", "commands", "implementation steps")
_FIELD_LABELS = ("priority", "owner", "estimated effort")
_NEEDS_FIELDS = (
    "dependencies",
    "dependency",
    "depends on",
    "requires",
    "blocked by",
    "prerequisites",
)


def clean(text: str) -> str:
    """Markdown emphasis and checkboxes off, whitespace folded."""
    text = re.sub(r"^\s*\[[ xX]\]\s*", "", text)
    text = re.sub(r"\*\*(.+?)\*\*", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def first_sentence(text: str, limit: int) -> str:
    """The first sentence of `text`, cut at a word under `limit` characters, end mark off."""
    first = _SENTENCE_END.split(text.strip(), maxsplit=1)[0]
    if len(first) > limit:
        first = first[:limit].rsplit(" ", 1)[0] + "..."
    return first.rstrip(".:")


def _summary(paragraph: str) -> str:
    sentences = _SENTENCE_END.split(paragraph.strip())
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


def parse(text: str) -> Plan:
    """Read a plan's markdown.

    Args:
        text: the markdown.

    Returns:
        The plan; its `actions` are empty when it has no action headings.
    """
    reader = _Reader()
    for event in read(text):
        if isinstance(event, Code):
            reader.code(Block(event.lang, event.code))
        elif isinstance(event, Heading):
            reader.heading(event.level, clean(event.title))
        else:
            reader.line(event.text)
    return reader.finish()


class _Reader:
    """Where the reading stands: the section, the action, what its lines now add to."""

    def __init__(self) -> None:
        self.plan = Plan()
        self.section = ""  # the current level-2 heading, lowercase
        self.group = ""
        self.action: Action | None = None
        self.mode = ""  # "steps", "validation", "other:<label>" or ""
        self.item: Item | None = None
        self.lists: dict[str, list[str]] = {}
        self.summary_lines: list[str] = []

    def new_item(self, target: list[Item], body: str) -> Item:
        m = _CAPTION.match(body.strip())
        if m:
            it = Item(caption=clean(m.group(1)).rstrip(":"), text=clean(m.group(2)))
        else:
            it = Item(caption="", text=clean(body))
        target.append(it)
        return it

    def code(self, block: Block) -> None:
        action, mode = self.action, self.mode
        if action is None:
            return
        if self.item is not None and mode in ("steps", "validation"):
            self.item.blocks.append(block)
        elif mode.startswith("other:"):
            action.notes.extend(f"{mode[6:]}: {line}" for line in block.code.splitlines() if line)
        else:  # a block straight under the action: a step of its own
            target = action.validation if mode == "validation" else action.steps
            self.item = Item(caption="", text="", blocks=[block])
            target.append(self.item)

    def heading(self, level: int, title: str) -> None:
        plan = self.plan
        am = _ACTION_HEADING.match(title)
        if level == 1 and not plan.title:
            plan.title = title
            return
        if am or (level >= 4 and "action" in self.section):
            number = int(am.group(1)) if am else None
            name = clean(am.group(2)) if am else title
            self.action = Action(number, name, title, self.group, index=len(plan.actions) + 1)
            plan.actions.append(self.action)
            self.mode, self.item = "", None
            return
        if level <= 2:
            self.section, self.group = title.lower(), ""
        elif level == 3:
            self.group = title
        self.action, self.mode, self.item = None, "", None

    def line(self, line: str) -> None:
        for dm in _BLOCKS_PROSE.finditer(line):
            blocker = int(dm.group(1))
            for blocked in {int(n) for n in re.findall(r"\d+", dm.group(2))}:
                self.plan.blocks.setdefault(blocked, set()).add(blocker)
            self.plan.dependency_lines.append(clean(line.lstrip(" -*+")))
        if self.action is None:
            self.outside(line)
            return
        label = _LABEL.match(line)
        if label:
            self.label(self.action, label.group(1).strip().rstrip(":"), label.group(2).strip())
            return
        lm = _LIST_ITEM.match(line)
        if lm and len(lm.group(1)) < 2:
            self.list_item(self.action, lm.group(2))
        elif line.strip() and self.item is not None:
            more = clean(line.lstrip(" -*+"))
            self.item.text = f"{self.item.text} {more}".strip() if self.item.text else more
        elif line.strip() and self.mode.startswith("other:"):
            self.action.notes.append(f"{self.mode[6:]}: {clean(line)}")

    def outside(self, line: str) -> None:
        """A line before the first action or between actions: results, summary, lists."""
        plan = self.plan
        rm = _RESULT.match(line)
        if rm:
            plan.results.append((rm.group(1), rm.group(2), re.sub(r"\s+", " ", rm.group(3))))
        if "summary" in self.section and not plan.summary:
            if line.strip() and not line.lstrip().startswith(("**", "-", "|", ">")):
                self.summary_lines.append(line.strip())
            elif self.summary_lines:
                plan.summary = _summary(clean(" ".join(self.summary_lines)))
        lm = _LIST_ITEM.match(line)
        if lm and len(lm.group(1)) < 2:
            self.lists.setdefault(self.section, []).append(clean(lm.group(2)))

    def label(self, action: Action, label: str, rest: str) -> None:
        """A `**Label:** rest` line of an action: a list to come, or a field of the action."""
        name = label.lower()
        if name in _STEPS_LABELS:
            self.mode, self.item = "steps", None
        elif name.startswith(("validation", "verification", "expected result")):
            self.mode, self.item = "validation", None
            if rest:
                self.item = self.new_item(action.validation, rest)
        elif rest or name in _FIELD_LABELS:
            action.fields[name] = clean(rest)
            if name in _NEEDS_FIELDS or name == "blocks":
                self.dependencies(action, name, rest)
        else:
            self.mode, self.item = f"other:{label}", None

    def dependencies(self, action: Action, name: str, rest: str) -> None:
        # "Dependencies: Blocks Action 3" is the other direction: left to the prose.
        blocks_others = name == "dependencies" and "block" in rest.lower()
        refs = set() if blocks_others else _numbers(rest)
        if action.number is not None and name == "blocks":
            for n in refs:
                self.plan.blocks.setdefault(n, set()).add(action.number)
        elif action.number is not None:
            self.plan.blocks.setdefault(action.number, set()).update(refs)

    def list_item(self, action: Action, body: str) -> None:
        mode = self.mode
        if mode in ("steps", "validation"):
            target = action.steps if mode == "steps" else action.validation
            self.item = self.new_item(target, body)
        elif mode.startswith("other:"):
            action.notes.append(f"{mode[6:]}: {clean(body)}")
        else:
            self.item = self.new_item(action.steps, body)
            self.mode = "steps"

    def finish(self) -> Plan:
        plan = self.plan
        if not plan.summary and self.summary_lines:
            plan.summary = _summary(clean(" ".join(self.summary_lines)))
        for name, items in self.lists.items():
            if "success" in name or "criteria" in name:
                plan.success.extend(items)
            elif "risk" in name:
                plan.risks.extend(items)
            elif "communication" in name:
                plan.communication.extend(items)
        return plan
