"""One run of a runbook with the same vars at a time: the lock file and who holds it."""

from __future__ import annotations

import contextlib
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


class Lock:
    """One run of a runbook with the same vars at a time; a dead holder's lock is taken over."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: Any = None

    def acquire(self, info: dict[str, Any]) -> None:
        """Take the lock or raise RunbookError naming its holder."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = self._holder(fh)
            fh.close()
            raise RunbookError(
                f"another run of this runbook with the same vars is in progress: pid "
                f"{holder.get('pid', '?')} on {holder.get('host', '?')}, started "
                f"{holder.get('started_at', '?')} (run {holder.get('run_id', '?')}); "
                f"lock file {self.path}"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(info))
        fh.flush()
        self._fh = fh

    @staticmethod
    def _holder(fh: Any) -> dict[str, Any]:
        """The holder's info; a holder that has just taken the lock may not have written it yet."""
        deadline = time.monotonic() + 1.0
        while True:
            fh.seek(0)
            try:
                holder = json.loads(fh.read() or "{}")
            except json.JSONDecodeError:
                holder = {}
            if (isinstance(holder, dict) and holder.get("pid")) or time.monotonic() >= deadline:
                return holder if isinstance(holder, dict) else {}
            time.sleep(0.02)

    def release(self) -> None:
        """Let go of the lock."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def lock_info(run_id: str) -> dict[str, Any]:
    """What a lock file says of its holder (shown when another run finds it taken)."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started_at": utcnow().isoformat(),
        "run_id": run_id,
    }


def lock_for(loaded: LoadedRunbook, values: Mapping[str, Any], reports_dir: Path) -> Lock:
    """The lock of this runbook with these vars under `reports_dir`."""
    # Secret vars stay out of the key: a short secret could be guessed back from the file name.
    public = {
        k: v
        for k, v in values.items()
        if not (k in loaded.runbook.vars and loaded.runbook.vars[k].secret)
    }
    key = hashlib.sha256(
        (str(loaded.path.resolve()) + json.dumps(public, sort_keys=True, default=str)).encode()
    ).hexdigest()[:16]
    return Lock(reports_dir / ".locks" / f"{loaded.runbook.id}-{key}.lock")


@contextlib.contextmanager
def locked(lock: Lock, run_id: str) -> Iterator[None]:
    """Hold `lock` for run `run_id` while the block runs."""
    lock.acquire(lock_info(run_id))
    try:
        yield
    finally:
        lock.release()
