"""Copy every table of the demo's DuckDB warehouse into a BigQuery emulator, replacing them."""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import decimal
import os
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

ENDPOINT_ENV = "RUNBOOK_BIGQUERY_ENDPOINT"
PROJECT_ENV = "RUNBOOK_BIGQUERY_PROJECT"
DEFAULT_PROJECT = "test-project"
BATCH = 5_000  # rows per insert request

# DuckDB column type -> BigQuery type; anything else is sent as its text (STRING).
TYPES = {
    "VARCHAR": "STRING",
    "BOOLEAN": "BOOL",
    "TINYINT": "INT64",
    "SMALLINT": "INT64",
    "INTEGER": "INT64",
    "BIGINT": "INT64",
    "UTINYINT": "INT64",
    "USMALLINT": "INT64",
    "UINTEGER": "INT64",
    "FLOAT": "FLOAT64",
    "DOUBLE": "FLOAT64",
    "DATE": "DATE",
    "TIME": "TIME",
    "TIMESTAMP": "DATETIME",  # DuckDB's TIMESTAMP has no time zone, like BigQuery's DATETIME
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMP",
    "BLOB": "BYTES",
}


def bigquery_type(duck_type: str) -> tuple[str, str]:
    """The BigQuery (type, mode) of a DuckDB column type; `X[]` becomes a REPEATED X."""
    if duck_type.endswith("[]"):
        inner, _ = bigquery_type(duck_type[:-2])
        return inner, "REPEATED"
    if duck_type.startswith("DECIMAL"):
        return "NUMERIC", "NULLABLE"
    return TYPES.get(duck_type, "STRING"), "NULLABLE"


def json_value(value: Any, kind: str) -> Any:
    """A DuckDB value as the JSON the BigQuery insert API takes for a column of `kind`."""
    if value is None:
        return None
    if isinstance(value, list):
        return [json_value(v, kind) for v in value]
    if kind == "STRING":
        return value if isinstance(value, str) else str(value)
    if kind == "TIMESTAMP" and isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date | dt.time | dt.datetime):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def duckdb_tables(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """(schema, table) of every user table, in name order."""
    rows = con.execute(
        "SELECT table_schema, table_name FROM information_schema.tables"
        " WHERE table_type = 'BASE TABLE'"
        " AND table_schema NOT IN ('information_schema', 'pg_catalog')"
        " ORDER BY 1, 2"
    ).fetchall()
    return [(str(s), str(t)) for s, t in rows]


def mirror_table(
    con: duckdb.DuckDBPyConnection, client: bigquery.Client, schema: str, table: str
) -> int:
    """Replace `schema.table` in BigQuery with the DuckDB table's columns and rows."""
    columns = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        [schema, table],
    ).fetchall()
    fields = [(str(name), *bigquery_type(str(kind))) for name, kind in columns]
    client.create_dataset(schema, exists_ok=True)
    target = f"{client.project}.{schema}.{table}"
    client.delete_table(target, not_found_ok=True)
    created = client.create_table(
        bigquery.Table(target, schema=[bigquery.SchemaField(n, k, mode=m) for n, k, m in fields])
    )
    cursor = con.execute(f'SELECT * FROM "{schema}"."{table}"')  # noqa: S608 - catalog names
    total = 0
    while batch := cursor.fetchmany(BATCH):
        rows = [
            {name: json_value(v, kind) for (name, kind, _), v in zip(fields, row, strict=True)}
            for row in batch
        ]
        errors = client.insert_rows_json(created, rows)
        if errors:
            raise SystemExit(f"inserting into {target} failed: {errors[:3]}")
        total += len(rows)
    return total


def main() -> int:
    """Command line: mirror_to_bigquery.py [--warehouse PATH] [--project P] [TABLE ...]."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--warehouse",
        type=Path,
        default=Path(os.environ.get("WAREHOUSE_PATH", ".runbook/warehouse.duckdb")),
    )
    parser.add_argument("--project", default=os.environ.get(PROJECT_ENV, DEFAULT_PROJECT))
    parser.add_argument("--endpoint", default=os.environ.get(ENDPOINT_ENV))
    parser.add_argument("tables", nargs="*", help="dataset.table names (default: every table)")
    args = parser.parse_args()
    if not args.endpoint:
        print(f"no emulator endpoint: set {ENDPOINT_ENV} or pass --endpoint", file=sys.stderr)
        return 2
    if not args.warehouse.is_file():
        print(f"Warehouse not found: {args.warehouse}", file=sys.stderr)
        return 2
    started = time.monotonic()
    client = bigquery.Client(
        project=args.project,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=args.endpoint),
    )
    con = duckdb.connect(str(args.warehouse), read_only=True)
    try:
        tables = duckdb_tables(con)
        if args.tables:
            wanted = set(args.tables)
            unknown = wanted - {f"{s}.{t}" for s, t in tables}
            if unknown:
                print(f"no such table in the warehouse: {', '.join(sorted(unknown))}")
                return 2
            tables = [(s, t) for s, t in tables if f"{s}.{t}" in wanted]
        rows = 0
        for schema, table in tables:
            rows += mirror_table(con, client, schema, table)
    finally:
        con.close()
        client.close()  # type: ignore[no-untyped-call]
    print(
        f"Mirrored {len(tables)} tables ({rows} rows) to {args.project} at {args.endpoint}"
        f" in {time.monotonic() - started:.1f}s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
