"""`runbook plan` of markdown: every document imported in memory, the scripts it names looked up."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import UsageError
from agent.incident import MARKDOWN_SUFFIXES
from agent.incident.importer.commands import ASSIGN, shell_commands, split_words
from agent.incident.importer.procedure import git_root, import_procedure
from agent.proc.preflight import list_files, lookup

__all__ = [
    "DocReview",
    "DocsReview",
    "Missing",
    "docs_review_json",
    "render_docs_review",
    "review_docs",
]

# Words that start shell syntax, not a program: the block's other commands are still read.
_SYNTAX = {"for", "while", "until", "if", "then", "else", "fi", "do", "done", "case", "esac"}


@dataclass(frozen=True)
class Missing:
    """A command of a document whose script, module or program path is not there."""

    step: str
    command: str
    target: str
    alternatives: list[str]


@dataclass
class DocReview:
    """One document: how many commands it has, and the missing ones."""

    path: str
    commands: int = 0
    missing: list[Missing] = field(default_factory=list)
    error: str = ""


@dataclass
class DocsReview:
    """Every document reviewed, in path order."""

    docs: list[DocReview]

    @property
    def ok(self) -> bool:
        return not any(d.missing or d.error for d in self.docs)

    def summary(self) -> str:
        n = sum(d.commands for d in self.docs)
        missing = sum(len(d.missing) for d in self.docs)
        where = sum(1 for d in self.docs if d.missing)
        return (
            f"{_plural(len(self.docs), 'document')}, {_plural(n, 'command')}, "
            f"{missing} name a missing script in {_plural(where, 'document')}"
        )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _documents(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(
                f
                for f in p.rglob("*")
                if f.suffix.lower() in MARKDOWN_SUFFIXES
                and f.is_file()
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
        elif p.is_file():
            out.append(p)
        else:
            raise UsageError(f"{p}: no such file or folder")
    return out


def review_docs(paths: list[Path]) -> DocsReview:
    """Import each markdown document in memory and look up what its commands name.

    Args:
        paths: markdown files and folders (searched for `*.md` below them).

    Returns:
        The review; a command counts as missing when the file, module or path it names is not
        under the document's repository top (a program on PATH, such as `bq`, is not a script).
    """
    listings: dict[Path, list[str]] = {}
    docs: list[DocReview] = []
    for path in _documents(paths):
        root = git_root(path.parent) or path.parent.resolve()
        if root not in listings:
            listings[root] = list_files(root)
        docs.append(_review(path, root, listings[root]))
    return DocsReview(docs)


def _review(path: Path, root: Path, files: list[str]) -> DocReview:
    out = DocReview(str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        out.error = f"cannot read {path}: {exc}"
        return out
    draft = import_procedure(text, source=str(path), workdir=str(root))
    for step in draft.steps:
        if step.kind != "run" or not step.command:
            continue
        env = {**os.environ, **step.env}
        texts = [c.text for c in shell_commands(step.command)] if step.shell else [step.command]
        for command in texts:
            argv = _argv(command)
            if not argv:
                continue
            out.commands += 1
            if "{{" in argv[0] or "$" in argv[0]:
                continue
            found = lookup(argv, workdir=root, env=env, files=files)
            if found is None or found.found:
                continue
            if found.kind == "program" and "/" not in found.target:
                continue  # a program (bq, gcloud) missing from this machine, not from the docs
            out.missing.append(Missing(step.id, command, found.target, found.alternatives))
    return out


def _argv(command: str) -> list[str]:
    """The words of a command's first simple command, assignments and loop syntax off."""
    first = re.split(r"\s(?:&&|\|\||;|\|)\s|;\s*(?:do|then)\s", command, maxsplit=1)[0]
    words = split_words(first) or []
    if words and words[0] in ("for", "case", "select"):
        return []  # a loop's header names no program; its body's commands are read one by one
    while words and (ASSIGN.match(words[0]) or words[0] in _SYNTAX):
        words.pop(0)
    return words


def render_docs_review(review: DocsReview) -> str:
    """A table per document with missing commands, then the summary line."""
    lines: list[str] = ["# Review of markdown procedures", ""]
    for d in review.docs:
        if d.error:
            lines += [f"## {d.path}", "", d.error, ""]
        if not d.missing:
            continue
        lines += [
            f"## {d.path}",
            "",
            "| Step | Missing | Closest existing files |",
            "|---|---|---|",
        ]
        for m in d.missing:
            alts = ", ".join(f"`{a}`" for a in m.alternatives) or "none"
            lines.append(f"| {m.step} | `{m.target}` | {alts} |")
        lines.append("")
    lines.append(review.summary())
    return "\n".join(lines) + "\n"


def docs_review_json(review: DocsReview) -> dict[str, Any]:
    """The review as JSON for CI: each document, its missing commands, and the summary."""
    return {
        "ok": review.ok,
        "summary": review.summary(),
        "documents": [
            {
                "path": d.path,
                "commands": d.commands,
                "error": d.error or None,
                "missing": [
                    {
                        "step": m.step,
                        "command": m.command,
                        "target": m.target,
                        "alternatives": m.alternatives,
                    }
                    for m in d.missing
                ],
            }
            for d in review.docs
        ],
    }
