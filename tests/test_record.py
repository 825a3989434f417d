"""Tests for agent.record: its models are built on first use, or all at once before threads."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
from agent.record import RunRecord, build_models, _Model

def models():
    todo, out = [_Model], []
    while todo:
        m = todo.pop()
        todo.extend(m.__subclasses__())
        out.append(m)
    return [m for m in out if m is not _Model]

def kinds():
    return sorted({type(m.__pydantic_validator__).__name__ for m in models()})

print(len(models()), kinds())
build_models()
print(kinds())
"""


def test_record_models_are_deferred_until_built_all_at_once() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    count, before = out[0].split(" ", 1)
    assert int(count) >= 9
    assert before == "['MockValSer']"
    assert out[1] == "['SchemaValidator']"
