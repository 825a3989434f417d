"""The plan's date as the `date` var, and literal text kept literal in Jinja2 templates."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter

from agent.incident.importer.steps import Draft

__all__ = ["Templater", "plan_date"]

_DATE = re.compile(r"(?<![\d-])(\d{4}-\d{2}-\d{2})(?![\d])")


def plan_date(drafts: list[Draft]) -> str | None:
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


class Templater:
    """Escapes literal text and turns the plan's date into `{{ date }}`."""

    def __init__(self, date: str | None) -> None:
        self.date = date

    def __call__(self, text: str) -> str:
        """`text` escaped, the plan's date in it as `{{ date }}`."""
        out = _escape(text)
        return out.replace(self.date, "{{ date }}") if self.date else out

    def where(self, where: str) -> str:
        """A check's `where` with the plan's date as the `@date` parameter."""
        if self.date:
            return where.replace(f"'{self.date}'", "@date")
        return where
