"""Start and stop a local BigQuery emulator for the benchmarks, reusing tests/bqemu.py."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

__all__ = ["PROJECT", "EmulatorError", "client", "count_jobs", "start", "stop"]

PROJECT = "test-project"


class EmulatorError(RuntimeError):
    """The emulator could not be started; the message is one line saying why."""


def _reason(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    head = lines[0]
    # tests/bqemu.py appends the emulator's log; its last line usually names the cause.
    return head if len(lines) == 1 else f"{head} … {lines[-1][:200]}"


def start(base: Path) -> Any:
    """Start `bqemulator` the way the test fixture does (own HOME, no downloads, free port).

    Args:
        base: an empty folder for its HOME, data and log.

    Returns:
        The running `tests.bqemu.Emulator` (its `url` is the REST endpoint).

    Raises:
        EmulatorError: it is not installed or did not start.
    """
    try:
        import pytest

        from tests.bqemu import start_emulator
    except ImportError as exc:
        raise EmulatorError(f"cannot import tests/bqemu.py: {exc}") from None
    base.mkdir(parents=True, exist_ok=True)
    try:
        return start_emulator(base)
    except pytest.fail.Exception as exc:
        raise EmulatorError(_reason(exc)) from None
    except Exception as exc:  # noqa: BLE001 - any start failure is reported as a row
        raise EmulatorError(f"{type(exc).__name__}: {_reason(exc)}") from None


def stop(emulator: Any) -> None:
    """Terminate the emulator (SIGTERM, then SIGKILL after 10 s)."""
    from tests.bqemu import _stop

    _stop(emulator.process)


def client(emulator: Any) -> Any:
    """An anonymous google-cloud-bigquery client pointed at the emulator."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    return bigquery.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=emulator.url),
    )


def count_jobs(bq: Any) -> int:
    """Query jobs the emulator has recorded (dry runs left out)."""
    from tests.bqemu import count_jobs as count

    return count(bq)
