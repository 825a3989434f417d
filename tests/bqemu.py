"""Pytest plugin: a real local BigQuery emulator (bqemulator) and identical test data for DuckDB.

bqemulator needs an exact duckdb (and its spatial extension), while the tests must run the duckdb
a user's `pip install .` resolves. So the emulator lives in a venv of its own, made once from
`EMULATOR_REQUIREMENTS` and cached under `~/.cache/runbook-tests/` (keyed by those pins), and runs
as a subprocess of that venv's python; the test environment only holds the BigQuery client.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

__all__ = [
    "EMULATOR_REQUIREMENTS",
    "GAME_DATE",
    "PROJECT",
    "TABLES",
    "Emulator",
    "bq_client",
    "bq_emulator",
    "bq_loaded",
    "count_jobs",
    "duckdb_loaded",
    "emulator_python",
    "load_bigquery",
    "load_duckdb",
    "start_emulator",
]

PROJECT = "test-project"
GAME_DATE = dt.date(2026, 1, 25)
_START_TIMEOUT = 45.0

# Eight games on 2026-01-25; team_defense_game_summary has both teams of the first five only,
# so coverage names the last three games (six team records) as missing.
_GAMES = [
    ("0022500650", "MIN", "GSW"),
    ("0022500651", "DET", "SAC"),
    ("0022500652", "BOS", "CHI"),
    ("0022500653", "LAL", "DEN"),
    ("0022500654", "NYK", "MIA"),
    ("0022500655", "PHX", "DAL"),
    ("0022500656", "OKC", "HOU"),
    ("0022500657", "MEM", "POR"),
]
_OTHER_DAY = dt.date(2026, 1, 24)


@dataclass(frozen=True)
class TableData:
    """Columns as (name, BigQuery type) and rows of one test table."""

    columns: tuple[tuple[str, str], ...]
    rows: tuple[dict[str, Any], ...]


TABLES: dict[str, TableData] = {
    "nba_raw.schedule": TableData(
        (
            ("game_id", "STRING"),
            ("game_date", "DATE"),
            ("home_team", "STRING"),
            ("away_team", "STRING"),
        ),
        (
            *(
                {"game_id": g, "game_date": GAME_DATE, "home_team": h, "away_team": a}
                for g, h, a in _GAMES
            ),
            {
                "game_id": "0022500640",
                "game_date": _OTHER_DAY,
                "home_team": "ATL",
                "away_team": "UTA",
            },
        ),
    ),
    "nba_analytics.team_defense_game_summary": TableData(
        (
            ("game_id", "STRING"),
            ("game_date", "DATE"),
            ("team_abbr", "STRING"),
            ("points_allowed", "INT64"),
        ),
        tuple(
            {"game_id": g, "game_date": GAME_DATE, "team_abbr": t, "points_allowed": 100 + i}
            for i, (g, h, a) in enumerate(_GAMES[:5])
            for t in (h, a)
        ),
    ),
    "nba_analytics.upcoming_team_game_context": TableData(
        (
            ("game_id", "STRING"),
            ("game_date", "DATE"),
            ("team_abbr", "STRING"),
            ("is_home", "BOOL"),
        ),
        tuple(
            {"game_id": g, "game_date": GAME_DATE, "team_abbr": t, "is_home": t == h}
            for g, h, a in _GAMES
            for t in (h, a)
        ),
    ),
}


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, dt.date) else v for k, v in row.items()}


def load_bigquery(client: Any, tables: dict[str, TableData] = TABLES) -> None:
    """Create the datasets and tables in BigQuery (the emulator) and insert the rows.

    Args:
        client: a google-cloud-bigquery client.
        tables: `dataset.table` -> data.
    """
    for name, data in tables.items():
        dataset, _ = name.split(".")
        client.create_dataset(dataset, exists_ok=True)
        schema = [bigquery.SchemaField(col, kind) for col, kind in data.columns]
        table = client.create_table(bigquery.Table(f"{client.project}.{name}", schema=schema))
        errors = client.insert_rows_json(table, [_json_row(r) for r in data.rows])
        assert not errors, errors


_DUCK_TYPES = {"STRING": "VARCHAR", "DATE": "DATE", "INT64": "BIGINT", "BOOL": "BOOLEAN"}


def load_duckdb(path: Path, tables: dict[str, TableData] = TABLES) -> None:
    """Write the same tables into a DuckDB file (`dataset.table` as schema.table).

    Args:
        path: the database file (created).
        tables: `dataset.table` -> data.
    """
    con = duckdb.connect(str(path))
    try:
        for name, data in tables.items():
            dataset, _ = name.split(".")
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {dataset}")
            cols = ", ".join(f"{c} {_DUCK_TYPES[k]}" for c, k in data.columns)
            con.execute(f"CREATE TABLE {name} ({cols})")
            marks = ", ".join("?" for _ in data.columns)
            con.executemany(
                f"INSERT INTO {name} VALUES ({marks})",
                [[row[c] for c, _ in data.columns] for row in data.rows],
            )
    finally:
        con.close()


@dataclass
class Emulator:
    """A running bqemulator subprocess."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def log_text(self) -> str:
        """Return the emulator's log so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else "(no log)"


# The emulator's own environment: bqemulator is tested against exactly this duckdb, whose spatial
# extension it loads at start (copied into its HOME below, so nothing is downloaded then).
EMULATOR_REQUIREMENTS = (
    "bqemulator==1.4.0",
    "duckdb==1.5.5",
    "duckdb-extension-spatial==1.5.5",
    "numpy>=1.26",
)
VENV_ENV = "RUNBOOK_BQEMU_VENV"  # an explicit venv folder (CI may keep it elsewhere)
_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "runbook-tests"
_STAMP = "runbook-bqemu.json"  # written last: a venv without it is half made and rebuilt
_INSTALL_TIMEOUT = 900.0

# Run by the emulator venv's python: what start_emulator needs to know about its duckdb.
_PROBE = """
import json, pathlib, duckdb, duckdb_extension_spatial as s
con = duckdb.connect()
platform = con.execute("PRAGMA platform").fetchone()[0]
found = sorted(
    p for d in s.__path__ for p in pathlib.Path(d).rglob("spatial.duckdb_extension")
)
print(json.dumps({"version": "v" + duckdb.__version__, "platform": platform,
                  "spatial": str(found[0]) if found else ""}))
"""


def _venv_dir() -> Path:
    explicit = os.environ.get(VENV_ENV)
    if explicit:
        return Path(explicit)
    key = hashlib.sha256("\n".join(EMULATOR_REQUIREMENTS).encode()).hexdigest()[:12]
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    return _CACHE / f"bqemu-venv-{tag}-{key}"


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _run(argv: list[str], what: str) -> None:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, errors="replace", timeout=_INSTALL_TIMEOUT,
            check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what}: no result after {_INSTALL_TIMEOUT:.0f} s", pytrace=False)
    if done.returncode != 0:
        pytest.fail(
            f"{what} failed (exit code {done.returncode}):\n{done.stdout}\n{done.stderr}",
            pytrace=False,
        )


def emulator_python() -> tuple[Path, dict[str, str]]:
    """Return the emulator venv's python, making the venv first if it is not there yet.

    The venv is made at most once per machine (a file lock keeps parallel test workers from
    making it twice) and is reused while `EMULATOR_REQUIREMENTS` stay the same.

    Returns:
        The python and what it reports about its duckdb: `version`, `platform`, `spatial` (the
        extension file). When the venv cannot be made the calling test FAILS with pip's output.
    """
    venv = _venv_dir()
    stamp = venv / _STAMP
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / f"{venv.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists():
            shutil.rmtree(venv, ignore_errors=True)
            _run([sys.executable, "-m", "venv", str(venv)], f"making the emulator venv {venv}")
            _run(
                [str(_venv_python(venv)), "-m", "pip", "install", "--quiet",
                 "--disable-pip-version-check", *EMULATOR_REQUIREMENTS],
                f"installing {' '.join(EMULATOR_REQUIREMENTS)} into {venv}",
            )  # fmt: skip
            probe = subprocess.run(
                [str(_venv_python(venv)), "-c", _PROBE],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if probe.returncode != 0:
                pytest.fail(f"the emulator venv {venv} has no usable duckdb:\n{probe.stderr}")
            info = json.loads(probe.stdout)
            if not info["spatial"]:
                pytest.fail(f"spatial.duckdb_extension not found in the emulator venv {venv}")
            stamp.write_text(json.dumps({**info, "requirements": EMULATOR_REQUIREMENTS}))
    info = json.loads(stamp.read_text())
    return _venv_python(venv), {k: info[k] for k in ("version", "platform", "spatial")}


def start_emulator(base: Path, *, timeout: float = _START_TIMEOUT) -> Emulator:
    """Start `bqemulator start` on a free loopback port with its own HOME and data dir.

    It runs on the python of its own venv (`emulator_python`). The spatial extension it requires
    is copied from that venv's duckdb_extension_spatial package into
    `$HOME/.duckdb/extensions/<version>/<platform>/` of that HOME, so nothing is downloaded. The
    chosen port is read from the emulator's `rest.listen` log event.

    Args:
        base: an empty temporary folder.
        timeout: seconds to wait for the REST port.

    Returns:
        The running emulator; on failure the calling test FAILS with the emulator's log.
    """
    python, duck = emulator_python()
    home = base / "home"
    ext_dir = home / ".duckdb" / "extensions" / duck["version"] / duck["platform"]
    ext_dir.mkdir(parents=True)
    shutil.copy2(duck["spatial"], ext_dir / "spatial.duckdb_extension")
    data_dir = base / "data"
    data_dir.mkdir()
    log = base / "bqemulator.log"
    env = {
        **os.environ,
        "HOME": str(home),
        "BQEMU_ENABLE_FORMAT_EXTENSIONS": "false",  # avro would be fetched from the network
    }
    argv = [
        str(python), "-m", "bqemulator", "start",
        "--rest-host", "127.0.0.1", "--rest-port", "0",
        "--grpc-host", "127.0.0.1", "--grpc-port", "0",
        "--ephemeral", "--data-dir", str(data_dir), "--project", PROJECT,
        "--log-format", "json", "--log-level", "info",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=base, start_new_session=True
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if '"rest.listen"' not in line:
                continue
            try:
                port = int(json.loads(line)["port"])
            except (ValueError, KeyError, TypeError):
                continue
            return Emulator(process, f"http://127.0.0.1:{port}", log)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    _stop(process)
    pytest.fail(
        f"bqemulator did not start (exit code {process.returncode}); its log:\n"
        + log.read_text(errors="replace"),
        pytrace=False,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def bq_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """One bqemulator per test session; the test fails with its log when it cannot start."""
    emulator = start_emulator(tmp_path_factory.mktemp("bqemulator"))
    try:
        yield emulator
    finally:
        _stop(emulator.process)


@pytest.fixture(scope="session")
def bq_client(bq_emulator: Emulator) -> Iterator[Any]:
    """The real google-cloud-bigquery client, anonymous, pointed at the emulator."""

    client = bigquery.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=bq_emulator.url),
    )
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def bq_loaded(bq_client: Any, bq_emulator: Emulator) -> Emulator:
    """The emulator with TABLES loaded (once per session)."""
    try:
        load_bigquery(bq_client)
    except Exception as exc:  # noqa: BLE001 - fail with the emulator log
        pytest.fail(f"loading test data into bqemulator failed: {exc}\n{bq_emulator.log_text()}")
    return bq_emulator


@pytest.fixture(scope="session")
def duckdb_loaded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DuckDB file with the same TABLES (once per session)."""
    path = tmp_path_factory.mktemp("duckdb") / "warehouse.duckdb"
    load_duckdb(path)
    return path


def count_jobs(client: Any, *, include_dry_runs: bool = False) -> int:
    """Count the query jobs the emulator has recorded for the project.

    Args:
        client: the client pointed at the emulator.
        include_dry_runs: also count dry runs (they are recorded as jobs there).

    Returns:
        The number of jobs.
    """
    jobs: Sequence[Any] = list(client.list_jobs(all_users=True, max_results=10_000))
    return sum(1 for j in jobs if include_dry_runs or not getattr(j, "dry_run", False))
