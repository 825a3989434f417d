"""Where verify and wait steps look: `open_warehouse` picks DuckDB or BigQuery."""

from __future__ import annotations

import os
from pathlib import Path

from agent.warehouse.base import CountCheck, CountOutcome, Warehouse, WarehouseError

__all__ = [
    "DEFAULT_DUCKDB_PATH",
    "ENDPOINT_ENV",
    "CountCheck",
    "CountOutcome",
    "Warehouse",
    "WarehouseError",
    "open_warehouse",
]

DEFAULT_DUCKDB_PATH = ".runbook/warehouse.duckdb"
"""The DuckDB file when a runbook names none, relative to its workdir."""

ENDPOINT_ENV = "RUNBOOK_BIGQUERY_ENDPOINT"
"""An emulator URL for BigQuery when `--warehouse-endpoint` is not given."""


def open_warehouse(
    backend: str,
    *,
    workdir: Path,
    path: str | None = None,
    project: str | None = None,
    location: str | None = None,
    endpoint: str | None = None,
) -> Warehouse:
    """Open the warehouse a runbook names; duckdb or google.cloud are imported only here.

    Nothing connects yet: DuckDB opens its file for each call, BigQuery makes its client (and
    looks for credentials) on first use, so a problem there becomes a check's error.

    Args:
        backend: "duckdb" or "bigquery".
        workdir: the runbook's workdir; a relative DuckDB path is taken from here.
        path: the DuckDB file (default `.runbook/warehouse.duckdb`).
        project: the BigQuery project (default: from Application Default Credentials).
        location: the BigQuery location.
        endpoint: a BigQuery emulator URL (default: $RUNBOOK_BIGQUERY_ENDPOINT); anonymous
            credentials are used with it.

    Returns:
        The warehouse.

    Raises:
        WarehouseError: an unknown backend.
    """
    if backend == "duckdb":
        from agent.warehouse.duckdb import DuckDBWarehouse

        db = Path(path or DEFAULT_DUCKDB_PATH).expanduser()
        return DuckDBWarehouse(db if db.is_absolute() else workdir / db)
    if backend == "bigquery":
        from agent.warehouse.bigquery import BigQueryWarehouse

        url = endpoint or os.environ.get(ENDPOINT_ENV) or None
        return BigQueryWarehouse(project=project, location=location, endpoint=url)
    raise WarehouseError(f"unknown warehouse backend {backend!r}: expected duckdb or bigquery")
