"""Room set aside in a run's folder, so that a disk that fills up still gets the final record."""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from agent.errors import DISK_FULL, DiskFullError, disk_full

__all__ = ["Reserve", "reserve_size"]

_BASE = 64 * 1024
_PER_PAIR = 8 * 1024
_MOST = 16 * 1024 * 1024


def reserve_size(pairs: int) -> int:
    """Bytes set aside for a run of `pairs` (step, partition) pairs: run.json, the report and
    the journal's last lines grow with the steps."""
    return min(_BASE + _PER_PAIR * max(pairs, 0), _MOST)


def _kib(n: int) -> str:
    return f"{max(n, 0) // 1024} KiB"


class Reserve:
    """A file of `size` bytes in the run's folder, taken at the start of a run; given back, a
    piece for a journal line or all of it before the final record and report are written."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size
        self._left = 0

    def take(self) -> None:
        """Set the room aside.

        Raises:
            DiskFullError: there is no room for it (the disk is full before the run).
        """
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise self._full(exc) from None
        try:
            try:
                os.posix_fallocate(fd, 0, self.size)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise
                # No fallocate here: written out, not zeros, which a compressing file system
                # would store in nothing.
                os.write(fd, os.urandom(self.size))
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            self.release()
            raise self._full(exc) from None
        os.close(fd)
        self._left = self.size

    def _full(self, exc: OSError) -> Exception:
        if not disk_full(exc):
            return DiskFullError(
                f"cannot set room aside for the run's record in {self.path.parent}: "
                f"{exc.strerror or exc}"
            )
        try:
            st = os.statvfs(self.path.parent)
            free = _kib(st.f_bavail * st.f_frsize) + " free"
        except OSError:
            free = "no room"
        return DiskFullError(
            f"{DISK_FULL}: {self.path.parent.parent} has {free}, and a run sets aside "
            f"{_kib(self.size)} for its record and report: free some space and run it again"
        )

    def give(self, needed: int) -> bool:
        """Give back at least `needed` bytes (rounded up to 4 KiB) for a write that found the
        disk full; False when nothing is left to give."""
        if self._left <= 0:
            return False
        self._left = max(self._left - max(needed + 4096 - needed % 4096, 4096), 0)
        try:
            os.truncate(self.path, self._left)
        except OSError:
            self._left = 0
            return False
        return True

    def release(self) -> None:
        """Give everything back (before the final record is written, and when a run ends)."""
        self._left = 0
        with contextlib.suppress(OSError):
            self.path.unlink()
