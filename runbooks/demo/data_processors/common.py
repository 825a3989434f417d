"""What the demo processors share: log format, warehouse, dates, the closing summary block."""

from __future__ import annotations

import logging
import os
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb

LOG_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
RULE = "=" * 80


def get_logger(name: str) -> logging.Logger:
    """A logger that prints in the pipeline's format on stdout."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stdout)
    return logging.getLogger(name)


def connect() -> duckdb.DuckDBPyConnection:
    """Open the warehouse named by WAREHOUSE_PATH."""
    path = Path(os.environ.get("WAREHOUSE_PATH", ".runbook/warehouse.duckdb"))
    if not path.is_file():
        raise SystemExit(f"Warehouse not found: {path} (run seed.py first)")
    # DuckDB takes one writing process at a time; like a client waiting for a table lock, a
    # processor run beside another (a partitioned backfill with `parallel: 2`) waits its turn.
    deadline = time.monotonic() + 60
    while True:
        try:
            return duckdb.connect(str(path))
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def days(start: date, end: date) -> list[date]:
    """Every date from start to end, inclusive."""
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def pause(seconds: float = 0.05) -> None:
    """A short sleep, so the demo's logs arrive like a real job's."""
    time.sleep(seconds)


def summary(records: int, quality_issues: int, status: str, started: float) -> None:
    """The closing block the real processors print."""
    lines = [
        RULE,
        "PROCESSING COMPLETE",
        f"Records saved: {records}",
        f"Quality issues: {quality_issues}",
        f"Status: {status}",
        f"Processing time: {time.monotonic() - started:.1f}s",
        RULE,
    ]
    print("\n".join(lines), flush=True)
