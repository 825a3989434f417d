"""RunbookError and its kinds: the one place user-facing errors are shaped."""

from __future__ import annotations

import errno
import functools
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DISK_FULL",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_USAGE",
    "DiskFullError",
    "Problem",
    "RunbookError",
    "UsageError",
    "ValidationError",
    "disk_full",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Problem:
    """One problem in a runbook, located at a line and column (1-based) of its file."""

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class RunbookError(Exception):
    """An error the user can act on; the CLI prints it as is and exits with `exit_code`."""

    exit_code = EXIT_FAILED


DISK_FULL = "the disk is full"
"""How every message about a full disk (ENOSPC, EDQUOT) begins: a step's reason, a run's."""


def disk_full(exc: BaseException) -> bool:
    """Whether an error says there is no room left (no space, or the quota is used up)."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(RunbookError):
    """No room left where the run writes: its message begins with DISK_FULL."""


class UsageError(RunbookError):
    """Bad command-line usage: an unknown var, a bad --var value, a missing file."""

    exit_code = EXIT_USAGE


class ValidationError(RunbookError):
    """A runbook that does not load: every problem of the file, in file order."""

    exit_code = EXIT_USAGE

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.col))
        super().__init__("\n".join(str(p) for p in self.problems))


def display_path(path: Path) -> str:
    """Return `path` relative to the working directory when it lies below it."""
    return _display_path(str(path), os.getcwd())  # noqa: PTH109 - a str key for the cache


# Loading one runbook names its file three times, and each resolve walks the path with lstat:
# a tenth of validating a small runbook.
@functools.lru_cache(maxsize=1024)
def _display_path(path: str, cwd: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(cwd).resolve()))
    except ValueError:
        return path
