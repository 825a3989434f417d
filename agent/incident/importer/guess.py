"""Guesses: a code block's language, a command's step kind, the counts a query or a result names."""

from __future__ import annotations

import re

from agent.incident.importer.commands import ASSIGN, split_words

__all__ = ["COUNT_SQL", "EXPECT_COUNT", "block_language", "guess_kind"]


def _program(words: list[str]) -> tuple[str, str]:
    """The program and the script or module it runs (`python -m a.b` -> ("python", "b"))."""
    words = [w for w in words if not ASSIGN.match(w)]
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


def guess_kind(text: str) -> str:
    """run, validate or export, from the program a command names (every part of a pipeline)."""
    kinds: list[str] = []
    for part in re.split(r"\|\||&&|\||;", text):
        words = split_words(part.strip()) or part.split()
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


COUNT_SQL = re.compile(
    r"^\s*SELECT\s+COUNT\s*\(\s*(?:\*|1)\s*\)(?:\s+(?:AS\s+)?\w+)?\s+FROM\s+`?"
    r"(?P<table>[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*){1,2})`?"
    r"(?:\s+WHERE\s+(?P<col>\w+)\s*=\s*(?:DATE\s*\(?\s*)?(?P<q>['\"])"
    r"(?P<date>\d{4}-\d{2}-\d{2})(?P=q)\s*\)?)?\s*;?\s*$",
    re.I,
)


EXPECT_COUNT = re.compile(
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


def block_language(lang: str, code: str) -> str:
    """What a block holds: "shell", "sql", "python" or "text" (its fence's word, else sniffed).

    Args:
        lang: the fence's language, lowercase; may be empty.
        code: the block's code.

    Returns:
        One of the four.
    """
    if not lang:
        if _SQL_START.match(code):
            return "sql"
        lang = "bash" if _CMD_START.match(code) else "text"
    if lang in _SCRIPT_LANGS:
        return "shell"
    if lang in _SQL_LANGS:
        return "sql"
    if lang in _PY_LANGS:
        return "python"
    return "text"
