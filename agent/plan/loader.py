"""Load a runbook: YAML with line/column marks -> model; every problem as FILE:LINE:COL."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic

from agent.errors import ValidationError, display_path
from agent.plan import checks, dag, document
from agent.plan.document import MAX_BYTES, Builder, KeyPath, Mark, read_document
from agent.plan.model import KINDS, Runbook

__all__ = [
    "MAX_BYTES",
    "LoadedRunbook",
    "load_runbook",
    "load_text",
    "read_document",
]


@dataclass
class LoadedRunbook:
    """A runbook that passed every check, with where it came from."""

    runbook: Runbook
    path: Path
    sha256: str
    graph: dag.Graph
    marks: dict[KeyPath, Mark] = field(default_factory=dict)
    warnings: list[checks.PlanWarning] = field(default_factory=list)

    @property
    def base_dir(self) -> Path:
        """The folder that relative paths in the runbook start from."""
        return self.path.parent

    def warning_lines(self) -> list[str]:
        """The warnings as `validate` and `plan` print them: `warning: FILE:LINE: message`."""
        file = display_path(self.path)
        return [f"warning: {file}:{w.mark[0]}: {w.message}" for w in self.warnings]


# --- pydantic errors -> the runbook's own words ----------------------------------------------


def _model_problems(exc: pydantic.ValidationError, data: dict[str, Any], b: Builder) -> None:
    for found, rest, err in document.located_errors(exc, data, b):
        _one_problem(found, rest, err, data=data, b=b)


def _one_problem(
    found: KeyPath,
    rest: tuple[int | str, ...],
    err: dict[str, Any],
    *,
    data: dict[str, Any],
    b: Builder,
) -> None:
    where = checks.where
    if document.key_problem(found, rest, err, data=data, b=b, root=Runbook, where=where):
        return
    problems = b.problems
    etype = err["type"]
    message = document.clean_message(err["msg"], err)
    if etype == "union_tag_invalid":
        kind = err["input"].get("kind") if isinstance(err.get("input"), dict) else None
        hint = document.suggest(str(kind), list(KINDS))
        problems.add(
            b.value_marks.get((*found, "kind"), b.value_marks.get(found, (1, 1))),
            f"unknown kind '{kind}' in {where(found, data)}{hint} (kinds: {', '.join(KINDS)})",
        )
    elif etype == "union_tag_not_found":
        problems.add(
            b.value_marks.get(found, (1, 1)),
            f"missing key 'kind' in {where(found, data)} (kinds: {', '.join(KINDS)})",
        )
    elif len(found) == 2 and found[0] == "steps" and isinstance(found[1], int):
        # A whole step is wrong: not a mapping, or a check across its keys (wait's condition).
        step = document.child(data.get("steps"), found[1])
        mark = b.value_marks.get(found, (1, 1))
        if isinstance(step, dict) and "until" in step and "command" in step:
            mark = max(b.key_marks[(*found, "until")], b.key_marks[(*found, "command")])
        problems.add(mark, f"{where(found, data)}: {message}")
    elif (len(found) == 2 and found[0] == "vars") or (len(found) == 4 and found[2] == "capture"):
        # A named entry (a var, a capture): its own name says where.
        mark = b.value_marks.get(found, (1, 1))
        if rest == ("[key]",):
            mark = b.key_marks.get(found, mark)
        problems.add(mark, f"{where(found, data)}: {message}")
    else:
        label = document.value_label(found, data, where)
        problems.add(b.value_marks.get(found, (1, 1)), f"{label}: {message}")


# --- entry points -------------------------------------------------------------------------------


def load_text(text: str, path: Path, *, raw: bytes | None = None) -> LoadedRunbook:
    """Load a runbook from its text.

    Args:
        text: the YAML source.
        path: where it came from (for messages and relative paths).
        raw: the file's bytes, for the hash (defaults to the UTF-8 text).

    Returns:
        The checked runbook.

    Raises:
        ValidationError: with every problem found.
    """
    data, builder = document.compose(text, display_path(path))
    runbook: Runbook | None = None
    try:
        runbook = Runbook.model_validate(data)
    except pydantic.ValidationError as exc:
        _model_problems(exc, data, builder)
    # The checks below read the raw data, so they report their problems alongside the model's.
    graph = checks.check_structure(data, builder)
    if graph is not None:
        checks.check_templates(data, graph, builder)
    checks.check_var_defaults(data, builder)
    checks.check_partitions(data, builder)
    problems = builder.problems.items
    if problems or runbook is None or graph is None:
        raise ValidationError(problems)
    sha = hashlib.sha256(raw if raw is not None else text.encode()).hexdigest()
    marks = {**builder.value_marks}
    warnings = checks.fall_short_warnings(runbook, marks) + checks.reparse_warnings(runbook, marks)
    return LoadedRunbook(
        runbook=runbook, path=path, sha256=sha, graph=graph, marks=marks, warnings=warnings
    )


def load_runbook(path: Path) -> LoadedRunbook:
    """Read and check a runbook file.

    Args:
        path: the YAML file.

    Returns:
        The checked runbook.

    Raises:
        ValidationError: with every problem found (also for unreadable or non-UTF-8 files).
    """
    text, raw = read_document(path, kind="runbook")
    return load_text(text, path, raw=raw)
