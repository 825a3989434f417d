"""The terminal prompt: answers as typed, and an interrupt ends it however early it comes."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pexpect
import pytest

PY = sys.executable

# A signal handler that only takes note, as the CLI's does; the prompt must end on its own.
_ASKER = """
import os, signal, sys
from agent.output.prompt import ask_yes_no, watch_interrupts

signal.signal(signal.SIGINT, lambda *_: None)
signal.signal(signal.SIGTERM, lambda *_: None)
watch_interrupts()
if sys.argv[1:] == ["early"]:
    os.kill(os.getpid(), signal.SIGTERM)  # handled before the prompt's read begins
print("answer:", ask_yes_no("Is the dashboard green?"))
"""


def _asker(tmp_path: Path, *args: str) -> pexpect.spawn:
    script = tmp_path / "ask.py"
    script.write_text(textwrap.dedent(_ASKER), encoding="utf-8")
    return pexpect.spawn(PY, [str(script), *args], encoding="utf-8", timeout=20)


@pytest.mark.parametrize(
    ("typed", "answer"),
    [("y", "True"), ("YES", "True"), ("n", "False"), ("", "False")],
)
def test_answers_as_typed(tmp_path: Path, typed: str, answer: str) -> None:
    child = _asker(tmp_path)
    child.expect_exact("Is the dashboard green? [y/N]: ")
    child.sendline(typed)
    child.expect_exact(f"answer: {answer}")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_an_invalid_answer_asks_again(tmp_path: Path) -> None:
    child = _asker(tmp_path)
    child.expect_exact("[y/N]: ")
    child.sendline("maybe")
    child.expect_exact("Error: invalid input")
    child.expect_exact("[y/N]: ")
    child.sendline("no")
    child.expect_exact("answer: False")


def test_ctrl_c_during_the_wait_is_no_answer(tmp_path: Path) -> None:
    child = _asker(tmp_path)
    child.expect_exact("[y/N]: ")
    child.sendintr()
    child.expect_exact("answer: None")


def test_end_of_input_is_no_answer(tmp_path: Path) -> None:
    child = _asker(tmp_path)
    child.expect_exact("[y/N]: ")
    child.sendeof()
    child.expect_exact("answer: None")


def test_a_signal_handled_just_before_the_read_still_ends_it(tmp_path: Path) -> None:
    """The race CI met: the handler ran, the read began after, and waited for ever."""
    child = _asker(tmp_path, "early")
    child.expect_exact("answer: None")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
