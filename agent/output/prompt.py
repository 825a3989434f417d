"""A yes/no question on the terminal that an interrupt ends whenever it arrives."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys

import typer

__all__ = ["ask_yes_no", "watch_interrupts"]

_STOPPING = frozenset({signal.SIGINT, signal.SIGTERM})


class _Wakeup:
    """The read end of the pipe Python writes each caught signal's number to, and whether an
    interrupt has been read from it."""

    def __init__(self) -> None:
        self.fd: int | None = None
        self.interrupted = False

    def drain(self) -> bool:
        """Read what signals arrived; True once an interrupt (SIGINT, SIGTERM) is among them."""
        if self.fd is not None:
            with contextlib.suppress(BlockingIOError):
                while chunk := os.read(self.fd, 512):
                    self.interrupted |= any(n in _STOPPING for n in chunk)
        return self.interrupted


_WAKEUP = _Wakeup()


def watch_interrupts() -> None:
    """Have every caught signal also written to a pipe (call from the main thread, once).

    A signal that comes just before a prompt starts reading runs its Python handler too late:
    the read has begun and blocks on. The pipe holds it, so the prompt's wait sees it.
    """
    if _WAKEUP.fd is not None:
        return
    read_end, write_end = os.pipe()
    for fd in (read_end, write_end):
        os.set_blocking(fd, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    _WAKEUP.fd = read_end


def ask_yes_no(question: str) -> bool | None:
    """Ask on the terminal; True for y/yes, False for n/no or Enter, None when interrupted (a
    signal, before or during the wait) or at end of input."""
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):
        fd = -1
    if _WAKEUP.fd is None or fd < 0 or not os.isatty(fd):
        return _ask_plainly(question)
    while True:
        typer.echo(f"{question} [y/N]: ", nl=False)
        answer = _read_line(fd, _WAKEUP.fd)
        if answer is None:
            return None
        word = answer.strip().lower()
        if word in ("y", "yes"):
            return True
        if word in ("", "n", "no"):
            return False
        typer.echo("Error: invalid input")


def _read_line(fd: int, wake: int) -> str | None:
    """One line from the terminal `fd` (canonical mode: a read returns one line), or None."""
    while True:
        if _WAKEUP.drain():
            return None
        ready, _, _ = select.select([fd, wake], [], [])
        if fd in ready and not _WAKEUP.drain():
            data = os.read(fd, 4096)
            return data.decode("utf-8", "replace") if data else None


def _ask_plainly(question: str) -> bool | None:
    """typer's own prompt, for input that is not a terminal (no interrupt comes from it)."""
    try:
        return bool(typer.confirm(question, default=False))
    except (KeyboardInterrupt, EOFError, typer.Abort):
        return None
