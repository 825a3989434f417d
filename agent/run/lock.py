"""One run of a runbook with the same vars at a time: the lock file, where it lives, its holder."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from agent.errors import RunbookError
from agent.plan.loader import LoadedRunbook
from agent.record import utcnow

__all__ = ["Lock", "lock_for", "lock_info", "locked"]


class _UnusableError(Exception):
    """A place that cannot hold the lock, and why (one line)."""


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _open(path: Path) -> tuple[int, bool]:
    """Open (or create) the lock file: its descriptor, and whether it can be written.

    A lock file another user made, or one on a read-only file system, is opened for reading
    only: flock needs no more, and the lock then still holds against that user's runs.

    Raises:
        _UnusableError: the lock cannot live here.
    """
    made = not path.parent.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise _UnusableError(f"{path.parent} is a file, not a folder") from None
    except OSError as exc:
        raise _UnusableError(f"cannot create {path.parent}: {_why(exc)}") from None
    if made and path.parent.parent.name == ".runbook":
        # Like a tool's cache folder, the state folder keeps itself out of version control.
        with contextlib.suppress(OSError):
            (path.parent.parent / ".gitignore").write_text("*\n", encoding="utf-8")
    if path.is_dir():
        raise _UnusableError(f"the lock file {path} is a folder")
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644), True
    except OSError as exc:
        if exc.errno == errno.EISDIR:
            raise _UnusableError(f"the lock file {path} is a folder") from None
        if not path.is_file():
            raise _UnusableError(f"cannot create {path}: {_why(exc)}") from None
        try:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC), False
        except OSError as again:
            raise _UnusableError(f"cannot open {path}: {_why(again)}") from None


class Lock:
    """One run of a runbook with the same vars at a time; a dead holder's lock is taken over.

    The lock file is looked for in `places`, in order: the first place that can hold it is
    used (the runs that find the same places unusable meet in the same next one); `notes`
    then says why the first was not.
    """

    def __init__(
        self,
        path: Path,
        *fallbacks: Path,
        passed_over: tuple[str, ...] = (),
        caveats: Mapping[Path, str] | None = None,
    ) -> None:
        """Args:
        path, fallbacks: the places to try, in order.
        passed_over: why places before them could not be tried.
        caveats: what using a place instead of the first one means.
        """
        self.places = [path, *fallbacks]
        self.path = path
        self.notes: list[str] = []
        self._passed_over = list(passed_over)
        self._caveats = dict(caveats or {})
        self._fd: int | None = None

    def acquire(self, info: dict[str, Any]) -> None:
        """Take the lock or raise RunbookError naming its holder, or why none can be taken."""
        import fcntl

        unusable = list(self._passed_over)
        for place in self.places:
            try:
                fd, writable = _open(place)
            except _UnusableError as why:
                unusable.append(str(why))
                continue
            break
        else:
            raise RunbookError(
                "cannot take the lock of this runbook and vars: " + "; ".join(unusable)
            )
        self.path = place
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = self._holder(fd)
            os.close(fd)
            raise RunbookError(
                f"another run of this runbook with the same vars is in progress: pid "
                f"{holder.get('pid', '?')} on {holder.get('host', '?')}, started "
                f"{holder.get('started_at', '?')} (run {holder.get('run_id', '?')}); "
                f"lock file {place}"
            ) from None
        self._fd = fd
        if unusable:
            caveat = self._caveats.get(place)
            self.notes.append(
                f"the lock is {place}: " + "; ".join(unusable) + (f"; {caveat}" if caveat else "")
            )
        if not writable or not self._write(fd, info):
            # Held all the same: only the details another run would show are missing.
            self.notes.append(f"the lock file {place} cannot be written: it holds no details")

    @staticmethod
    def _write(fd: int, info: dict[str, Any]) -> bool:
        """Put the holder's details in the lock file (what another run shows); False when the
        file cannot take them (a full disk)."""
        data = json.dumps(info).encode()
        try:
            os.ftruncate(fd, 0)
            return os.pwrite(fd, data, 0) == len(data)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            return False

    @staticmethod
    def _holder(fd: int) -> dict[str, Any]:
        """The holder's info; a holder that has just taken the lock may not have written it yet."""
        deadline = time.monotonic() + 1.0
        while True:
            try:
                holder = json.loads(os.pread(fd, 1 << 16, 0) or b"{}")
            except (OSError, ValueError):
                holder = {}
            if (isinstance(holder, dict) and holder.get("pid")) or time.monotonic() >= deadline:
                return holder if isinstance(holder, dict) else {}
            time.sleep(0.02)

    def release(self) -> None:
        """Let go of the lock."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def lock_info(run_id: str) -> dict[str, Any]:
    """What a lock file says of its holder (shown when another run finds it taken)."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started_at": utcnow().isoformat(),
        "run_id": run_id,
    }


def _state_home() -> Path | None:
    """The user's state folder ($XDG_STATE_HOME, else ~/.local/state), if there is a home."""
    given = os.environ.get("XDG_STATE_HOME")
    if given and Path(given).is_absolute():
        return Path(given)
    try:
        return Path.home() / ".local" / "state"
    except RuntimeError:
        return None


def lock_for(
    loaded: LoadedRunbook, values: Mapping[str, Any], workdir: Path, reports_dir: Path
) -> Lock:
    """The lock of this runbook with these vars, wherever its reports go.

    It lives with the user's state, in the workdir's `.runbook/locks/`, so that runs with other
    --reports folders meet there; where that cannot hold it (a read-only checkout, a workdir
    that does not exist yet), in the user's state folder, then under the reports folder.

    Args:
        loaded: the runbook.
        values: its vars (secret ones stay out of the key).
        workdir: the folder its steps run in.
        reports_dir: the reports folder.

    Returns:
        The lock, not yet taken.
    """
    # Secret vars stay out of the key: a short secret could be guessed back from the file name.
    public = {
        k: v
        for k, v in values.items()
        if not (k in loaded.runbook.vars and loaded.runbook.vars[k].secret)
    }
    key = hashlib.sha256(
        (str(loaded.path.resolve()) + json.dumps(public, sort_keys=True, default=str)).encode()
    ).hexdigest()[:16]
    name = f"{loaded.runbook.id}-{key}.lock"
    # A workdir that does not exist is not made here: the steps' own error says so.
    places = [workdir / ".runbook" / "locks" / name] if workdir.is_dir() else []
    passed_over = () if places else (f"the workdir {workdir} does not exist",)
    caveats: dict[Path, str] = {}
    state = _state_home()
    if state is not None:
        places.append(state / "runbook" / "locks" / name)
        caveats[places[-1]] = "runs of other users are not kept apart from this one"
    places.append(reports_dir / ".locks" / name)
    caveats[places[-1]] = "runs with other --reports folders are not kept apart from this one"
    return Lock(*places, passed_over=passed_over, caveats=caveats)


@contextlib.contextmanager
def locked(lock: Lock, run_id: str) -> Iterator[None]:
    """Hold `lock` for run `run_id` while the block runs."""
    lock.acquire(lock_info(run_id))
    try:
        yield
    finally:
        lock.release()
