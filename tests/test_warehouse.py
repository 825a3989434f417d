"""The warehouse on DuckDB and on a real local BigQuery emulator: the same verify and wait tests."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import google.auth.credentials
import pytest
import sqlglot
from google.api_core.client_options import ClientOptions
from google.cloud import bigquery

_PLUGGED_IN = "tests.bqemu" in sys.modules  # tests/conftest.py may load it as a plugin

from tests import bqemu  # noqa: E402
from tests.bqemu import GAME_DATE, PROJECT, count_jobs  # noqa: E402

if not _PLUGGED_IN:  # make the emulator fixtures available without a conftest
    bq_emulator = bqemu.bq_emulator
    bq_client = bqemu.bq_client
    bq_loaded = bqemu.bq_loaded
    duckdb_loaded = bqemu.duckdb_loaded

from agent.record import Status  # noqa: E402
from agent.warehouse import CountCheck, WarehouseError, open_warehouse  # noqa: E402
from agent.warehouse import sql as wsql  # noqa: E402
from agent.warehouse.bigquery import (  # noqa: E402
    NO_CREDENTIALS,
    BigQueryWarehouse,
    to_query_parameter,
)
from agent.warehouse.duckdb import DuckDBWarehouse  # noqa: E402

HOSTILE = "'; DROP TABLE x; --"
TDGS = "nba_analytics.team_defense_game_summary"
CONTEXT = "nba_analytics.upcoming_team_game_context"
SCHEDULE = "nba_raw.schedule"
EXPECTED_KEYS = """
    SELECT game_id, home_team AS team_abbr FROM nba_raw.schedule WHERE game_date = @date
    UNION ALL
    SELECT game_id, away_team FROM nba_raw.schedule WHERE game_date = @date
"""
MISSING = [
    {"game_id": "0022500655", "team_abbr": "DAL"},
    {"game_id": "0022500655", "team_abbr": "PHX"},
    {"game_id": "0022500656", "team_abbr": "HOU"},
    {"game_id": "0022500656", "team_abbr": "OKC"},
    {"game_id": "0022500657", "team_abbr": "MEM"},
    {"game_id": "0022500657", "team_abbr": "POR"},
]
LABELS = {"runbook": "backfill-game-context", "run_id": "20260126T101500Z", "step": "verify_counts"}
PARAMS: dict[str, Any] = {"date": GAME_DATE, "games": 8}


def coverage_check(name: str = "tdgs") -> CountCheck:
    return CountCheck(
        name=name,
        table=TDGS,
        where="game_date = @date",
        coverage_key=("game_id", "team_abbr"),
        coverage_expected=EXPECTED_KEYS,
    )


@pytest.fixture(params=["duckdb", pytest.param("bigquery", marks=pytest.mark.bigquery)])
def wh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """The warehouse under test, over identical data on both backends."""
    if request.param == "duckdb":
        path = request.getfixturevalue("duckdb_loaded")
        warehouse = open_warehouse("duckdb", workdir=tmp_path, path=str(path))
    else:
        emulator = request.getfixturevalue("bq_loaded")
        warehouse = open_warehouse(
            "bigquery", workdir=tmp_path, project=PROJECT, endpoint=emulator.url
        )
    try:
        yield warehouse
    finally:
        warehouse.close()


def jobs(wh: Any) -> int:
    """Query jobs the backend has run: the emulator's job list, or DuckDB's statement counter."""
    if wh.backend == "bigquery":
        return count_jobs(wh.client)
    return int(wh.queries_run)


# -- verify: counts and coverage ------------------------------------------------------------------


def test_counts_and_coverage_name_the_missing_teams(wh: Any) -> None:
    checks = [
        CountCheck("context", CONTEXT, "game_date = @date"),
        coverage_check(),
    ]
    context, tdgs = wh.count(checks, PARAMS, LABELS)
    assert (context.name, context.count, context.error) == ("context", 16, None)
    assert context.missing_total is None
    assert tdgs.error is None
    assert tdgs.count == 10
    assert tdgs.missing_total == 6
    assert tdgs.missing_keys == MISSING
    assert {k["game_id"] for k in tdgs.missing_keys} == {"0022500655", "0022500656", "0022500657"}


def test_coverage_counts_the_distinct_expected_keys(wh: Any) -> None:
    doubled = f"{EXPECTED_KEYS} UNION ALL {EXPECTED_KEYS}"  # every key twice: counted once
    checks = [
        CountCheck("plain", CONTEXT, "game_date = @date"),
        coverage_check(),
        CountCheck("doubled", TDGS, "game_date = @date", ("game_id", "team_abbr"), doubled),
        CountCheck(
            "nothing_scheduled",
            TDGS,
            "game_date = @date",
            ("game_id", "team_abbr"),
            "SELECT game_id, home_team AS team_abbr FROM nba_raw.schedule WHERE FALSE",
        ),
    ]
    plain, tdgs, doubled_keys, nothing = wh.count(checks, PARAMS, LABELS)
    assert plain.expected_total is None
    assert (tdgs.expected_total, tdgs.missing_total) == (16, 6)
    assert (doubled_keys.expected_total, doubled_keys.missing_total) == (16, 6)
    assert (nothing.error, nothing.expected_total, nothing.missing_total) == (None, 0, 0)
    assert nothing.missing_keys == []


def test_ten_checks_cost_one_query(wh: Any) -> None:
    checks = [
        CountCheck(f"context_{i}", CONTEXT, "game_date = @date AND is_home") for i in range(4)
    ] + [
        CountCheck("schedule_all", SCHEDULE),
        CountCheck("schedule_day", SCHEDULE, "game_date = @date"),
        CountCheck("schedule_games", SCHEDULE, "game_date = @date AND @games > 0"),
        coverage_check("cov_1"),
        coverage_check("cov_2"),
        CountCheck("tdgs", TDGS, "points_allowed >= 100"),
    ]
    before, before_counter = jobs(wh), wh.queries_run
    outcomes = wh.count(checks, PARAMS, LABELS)
    assert jobs(wh) - before == 1
    assert wh.queries_run - before_counter == 1
    assert [o.name for o in outcomes] == [c.name for c in checks]
    assert [o.error for o in outcomes] == [None] * 10
    assert [o.count for o in outcomes] == [8, 8, 8, 8, 9, 8, 8, 10, 10, 10]
    assert outcomes[7].missing_keys == outcomes[8].missing_keys == MISSING


def test_hostile_values_are_parameters_never_sql(wh: Any) -> None:
    params = {**PARAMS, "team": HOSTILE, "teams": ["MIN", HOSTILE]}
    checks = [
        CountCheck("one", SCHEDULE, "home_team = @team"),
        CountCheck("list", SCHEDULE, "home_team IN UNNEST(@teams) AND game_date = @date"),
    ]
    one, listed = wh.count(checks, params, LABELS)
    assert (one.count, one.error) == (0, None)
    assert (listed.count, listed.error) == (1, None)
    assert (
        wh.scalar("SELECT COUNT(*) FROM nba_raw.schedule WHERE away_team = @team", params, LABELS)
        == 0
    )
    # Nothing was dropped or changed.
    assert wh.count([CountCheck("all", SCHEDULE)], {}, LABELS)[0].count == 9


def test_missing_table_is_named_and_the_rest_still_run_in_one_query(wh: Any) -> None:
    checks = [
        CountCheck("gone", "nba_analytics.player_game_summary", "game_date = @date"),
        CountCheck("context", CONTEXT, "game_date = @date"),
        CountCheck(
            "cov_gone",
            TDGS,
            "game_date = @date",
            ("game_id",),
            "SELECT game_id FROM nba_raw.no_such_schedule WHERE game_date = @date",
        ),
    ]
    before = jobs(wh)
    gone, context, cov_gone = wh.count(checks, PARAMS, LABELS)
    assert jobs(wh) - before == 1
    assert gone.error == "table nba_analytics.player_game_summary does not exist"
    assert gone.count is None
    assert (context.count, context.error) == (16, None)
    assert cov_gone.error == "table nba_raw.no_such_schedule does not exist"
    assert wh.missing_tables([SCHEDULE, "nba_raw.nope", CONTEXT]) == ["nba_raw.nope"]


def test_bad_sql_names_its_check_and_the_others_count(wh: Any) -> None:
    checks = [
        CountCheck("typo", TDGS, "game_dat = @date"),
        CountCheck("context", CONTEXT, "game_date = @date"),
    ]
    typo, context = wh.count(checks, PARAMS, LABELS)
    assert typo.error is not None
    assert typo.error.startswith("bad SQL: ")
    assert "game_dat" in typo.error
    assert "\n" not in typo.error
    assert (context.count, context.error) == (16, None)


def test_invalid_names_and_unknown_params_never_reach_the_warehouse(wh: Any) -> None:
    checks = [
        CountCheck("inject", "nba_raw.schedule; DROP TABLE x", None),
        CountCheck("quoted", "`nba_raw.schedule`", None),
        CountCheck("unknown", SCHEDULE, "game_date = @when"),
        CountCheck("two", SCHEDULE, "game_date = @date; DROP TABLE nba_raw.schedule"),
        CountCheck("ok", SCHEDULE, "game_date = @date"),
    ]
    inject, quoted, unknown, two, ok = wh.count(checks, PARAMS, LABELS)
    assert inject.error is not None
    assert inject.error.startswith("invalid table name 'nba_raw.schedule; DROP TABLE x'")
    assert quoted.error is not None
    assert quoted.error.startswith("invalid table name")
    assert unknown.error == "unknown parameter @when (not a var)"
    assert two.error is not None
    assert two.error.startswith("bad SQL in where")
    assert (ok.count, ok.error) == (8, None)


def test_no_checks_runs_nothing(wh: Any) -> None:
    before = jobs(wh)
    assert wh.count([], PARAMS, LABELS) == []
    assert jobs(wh) == before


# -- wait: scalar conditions ----------------------------------------------------------------------


def test_wait_condition(wh: Any) -> None:
    sql = "SELECT COUNT(*) >= @games FROM nba_raw.schedule WHERE game_date = @date"
    assert wh.scalar(sql, PARAMS, LABELS) is True
    assert wh.scalar(sql, {**PARAMS, "games": 9}, LABELS) is False
    assert wh.scalar(sql, {**PARAMS, "date": dt.date(2026, 1, 24)}, LABELS) is False
    assert wh.scalar("SELECT COUNT(*) FROM nba_analytics.team_defense_game_summary", {}, {}) == 10


def test_wait_condition_on_a_missing_table(wh: Any) -> None:
    with pytest.raises(WarehouseError, match=r"(?i)not found") as caught:
        wh.scalar(
            "SELECT COUNT(*) > 0 FROM nba_raw.team_boxscore WHERE game_date = @date", PARAMS, {}
        )
    assert "team_boxscore" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_wait_condition_with_bad_sql(wh: Any) -> None:
    with pytest.raises(WarehouseError, match=r"^bad SQL"):
        wh.scalar("SELECT COUNT(*) > 0 FROM nba_raw.schedule WHERE nope = 1", {}, {})
    with pytest.raises(WarehouseError, match=r"^bad SQL.*(SELEC|Col: 7)"):
        wh.scalar("SELEC 1", {}, {})  # BigQuery's own message there; sqlglot's on DuckDB


def test_estimate_bytes(wh: Any) -> None:
    checks = [coverage_check(), CountCheck("gone", "nba_analytics.nope")]
    estimate = wh.estimate_bytes(checks, PARAMS)
    if wh.backend == "bigquery":
        assert isinstance(estimate, int)  # the emulator reports 0; BigQuery the real bytes
        assert isinstance(wh.estimate_scalar_bytes("SELECT 1", {}), int)
        assert wh.estimate_bytes([CountCheck("gone", "nba_analytics.nope")], {}) is None
    else:
        assert estimate is None


# -- BigQuery specifics against the emulator -------------------------------------------------------


@pytest.mark.bigquery
def test_bigquery_jobs_carry_sanitised_labels(bq_loaded: bqemu.Emulator, tmp_path: Path) -> None:
    wh: Any = open_warehouse("bigquery", workdir=tmp_path, project=PROJECT, endpoint=bq_loaded.url)
    labels = {
        "Runbook": "Backfill Game Context!",
        "run id": "2026-01-26T10:15:00Z",
        "step": "x" * 80,
    }
    wh.count([CountCheck("all", SCHEDULE)], {}, labels)
    assert wh.last_job.labels == {
        "runbook": "backfill_game_context_",
        "run_id": "2026-01-26t10_15_00z",
        "step": "x" * 63,
    }
    assert wh.last_job.query_parameters == []
    wh.count([CountCheck("day", SCHEDULE, "game_date = @date")], PARAMS, labels)
    (param,) = wh.last_job.query_parameters
    assert (param.name, param.type_, param.value) == ("date", "DATE", GAME_DATE)


@pytest.mark.bigquery
def test_bigquery_endpoint_from_the_environment(
    bq_loaded: bqemu.Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNBOOK_BIGQUERY_ENDPOINT", bq_loaded.url)
    wh: Any = open_warehouse("bigquery", workdir=tmp_path, project=PROJECT)
    assert wh.endpoint == bq_loaded.url
    assert wh.scalar("SELECT COUNT(*) FROM nba_raw.schedule", {}, {}) == 9


# -- BigQuery errors and retries: the real client against a scripted REST server ------------------


class ScriptedBigQuery:
    """A local HTTP server speaking the few BigQuery REST calls a count makes.

    jobs.insert answers with the scripted errors in order (Google's JSON error body, which the
    real client turns into its exceptions), then with a finished job; getQueryResults answers
    one row `f0_ = 7`, or "not complete" while `running` is set; tables.get answers any table.
    """

    def __init__(self) -> None:
        self.errors: list[tuple[int, str, str]] = []  # (HTTP status, reason, message)
        self.running = False
        self.inserts = 0
        scripted = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                del format, args

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # jobs.insert
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                scripted.inserts += 1
                if scripted.errors:
                    # A rejected token stays rejected: 401 answers every try of it.
                    code, reason, message = scripted.errors[0]
                    if code != 401:
                        scripted.errors.pop(0)
                    error = {"reason": reason, "message": message}
                    self._send(
                        code, {"error": {"code": code, "message": message, "errors": [error]}}
                    )
                    return
                state = "RUNNING" if scripted.running else "DONE"
                self._send(200, {"jobReference": body["jobReference"], "status": {"state": state}})

            def do_GET(self) -> None:
                if "/queries/" in self.path:  # getQueryResults
                    job = self.path.split("/queries/")[1].split("?")[0]
                    done: dict[str, Any] = {
                        "schema": {"fields": [{"name": "f0_", "type": "INTEGER"}]},
                        "rows": [{"f": [{"v": "7"}]}],
                        "totalRows": "1",
                    }
                    self._send(
                        200,
                        {
                            "jobReference": {"projectId": "p", "jobId": job},
                            "jobComplete": not scripted.running,
                            **({} if scripted.running else done),
                        },
                    )
                    return
                if "/jobs/" in self.path:  # jobs.get, while a job is polled
                    job = self.path.split("/jobs/")[1].split("?")[0]
                    state = "RUNNING" if scripted.running else "DONE"
                    ref = {"projectId": "p", "jobId": job}
                    self._send(200, {"jobReference": ref, "status": {"state": state}})
                    return
                ref = {"projectId": "p", "datasetId": "nba_raw", "tableId": "schedule"}
                self._send(200, {"tableReference": ref})  # tables.get: the table is there

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def warehouse(self, sleeps: list[float]) -> BigQueryWarehouse:
        """The warehouse on the real client; the client's own retries off, so that each
        scripted error is one attempt, and waits recorded instead of slept."""
        client = bigquery.Client(
            project="p",
            credentials=_Token(),
            client_options=ClientOptions(api_endpoint=self.url),
        )
        return BigQueryWarehouse(
            project="p", client=client, sleep=sleeps.append, api_timeout=0, timeout=0.3
        )


class _Token(google.auth.credentials.Credentials):
    """A bearer token that refreshes without a network: anonymous credentials cannot refresh,
    so a 401 would read as "no credentials" instead of "credentials rejected"."""

    def __init__(self) -> None:
        super().__init__()
        self.token = "token"

    def refresh(self, request: Any) -> None:
        del request
        self.token = "token"


@pytest.fixture
def scripted() -> Iterator[ScriptedBigQuery]:
    server = ScriptedBigQuery()
    yield server
    server.server.shutdown()
    server.server.server_close()


def test_quota_is_retried_with_backoff_then_succeeds(scripted: ScriptedBigQuery) -> None:
    sleeps: list[float] = []
    scripted.errors = [(429, "rateLimitExceeded", "slow down"), (503, "backendError", "busy")]
    assert scripted.warehouse(sleeps).scalar("SELECT 7", {}, {}) == 7
    assert scripted.inserts == 3
    assert sleeps == [1.0, 2.0]


def test_quota_gives_up_after_three_tries(scripted: ScriptedBigQuery) -> None:
    sleeps: list[float] = []
    scripted.errors = [
        (403, "quotaExceeded", "Quota exceeded: too many"),
        (429, "rateLimitExceeded", "x"),
        (500, "backendError", "boom"),
    ]
    with pytest.raises(WarehouseError, match=r"gave up after 3 tries"):
        scripted.warehouse(sleeps).scalar("SELECT 7", {}, {})
    assert scripted.inserts == 3
    assert sleeps == [1.0, 2.0]


def test_timeout_is_retried_then_fails_the_checks_not_the_run(scripted: ScriptedBigQuery) -> None:
    sleeps: list[float] = []
    scripted.running = True  # the job never finishes: each wait for it times out
    (outcome,) = scripted.warehouse(sleeps).count([CountCheck("all", SCHEDULE)], {}, {})
    assert outcome.error == "timed out waiting for BigQuery (gave up after 3 tries)"
    assert sleeps == [1.0, 2.0]


def test_an_error_after_a_retried_one_is_not_retried(scripted: ScriptedBigQuery) -> None:
    sleeps: list[float] = []
    scripted.errors = [(503, "backendError", "busy"), (400, "invalidQuery", "Unrecognized x")]
    with pytest.raises(WarehouseError) as raised:
        scripted.warehouse(sleeps).scalar("SELECT 7", {}, {})
    assert str(raised.value) == "bad SQL: Unrecognized x"
    assert scripted.inserts == 2
    assert sleeps == [1.0]


@pytest.mark.parametrize(
    ("status", "reason", "message", "line"),
    [
        (
            403,
            "accessDenied",
            "Access Denied: Table p:nba_raw.schedule",
            "permission denied: Access Denied: Table p:nba_raw.schedule",
        ),
        (
            400,
            "invalidQuery",
            "Unrecognized name: game_dat at [1:45]",
            "bad SQL: Unrecognized name: game_dat at [1:45]",
        ),
        (404, "notFound", "Not found: Dataset p:nba_raw", "Not found: Dataset p:nba_raw"),
        (
            401,
            "unauthorized",
            "Request had invalid authentication credentials.\nmore",
            "credentials rejected: Request had invalid authentication credentials.",
        ),
    ],
)
def test_errors_are_one_clear_line_and_not_retried(
    scripted: ScriptedBigQuery, status: int, reason: str, message: str, line: str
) -> None:
    sleeps: list[float] = []
    scripted.errors = [(status, reason, message)]
    (outcome,) = scripted.warehouse(sleeps).count([CountCheck("all", SCHEDULE)], {}, {})
    assert outcome.error == line
    # Not retried by the warehouse; on a 401 the client's auth layer refreshes the token and
    # sends the request again, twice (google-auth's max_refresh_attempts).
    assert scripted.inserts == (3 if status == 401 else 1)
    assert sleeps == []


def test_no_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNBOOK_BIGQUERY_ENDPOINT", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-such-key.json"))
    wh: Any = open_warehouse("bigquery", workdir=tmp_path, project="p")
    (outcome,) = wh.count([CountCheck("all", SCHEDULE)], {}, LABELS)
    assert outcome.error == NO_CREDENTIALS
    assert "gcloud auth application-default login" in NO_CREDENTIALS
    with pytest.raises(WarehouseError, match="no Google credentials"):
        wh.scalar("SELECT 1", {}, {})


def test_query_parameter_types() -> None:
    def shape(value: Any) -> tuple[str, Any]:
        param = to_query_parameter("v", value)
        return getattr(param, "type_", None) or param.array_type, param.to_api_repr()[
            "parameterType"
        ]

    assert shape(dt.date(2026, 1, 25))[0] == "DATE"
    assert shape(8)[0] == "INT64"
    assert shape(True)[0] == "BOOL"
    assert shape(0.95)[0] == "FLOAT64"
    assert shape(HOSTILE)[0] == "STRING"
    assert shape(["MIN", "GSW"]) == ("STRING", {"type": "ARRAY", "arrayType": {"type": "STRING"}})
    assert shape([1, 2])[0] == "INT64"
    with pytest.raises(WarehouseError, match="one type"):
        to_query_parameter("v", [1, "a"])


# -- DuckDB specifics -----------------------------------------------------------------------------


def test_duckdb_file_that_does_not_exist_has_no_tables(tmp_path: Path) -> None:
    wh: Any = open_warehouse("duckdb", workdir=tmp_path)
    assert wh.path == tmp_path / ".runbook" / "warehouse.duckdb"
    (outcome,) = wh.count([coverage_check()], PARAMS, LABELS)
    assert outcome.error == (
        f"table {TDGS} does not exist: the DuckDB file {wh.path} does not exist (yet)"
    )
    assert wh.missing_tables([TDGS]) == [TDGS]
    with pytest.raises(WarehouseError, match="does not exist"):
        wh.scalar("SELECT COUNT(*) FROM nba_raw.schedule", {}, {})
    assert not wh.path.exists()
    assert wh.queries_run == 0


def test_duckdb_waits_for_a_writer_to_release_its_lock(tmp_path: Path, duckdb_loaded: Path) -> None:
    path = tmp_path / "locked.duckdb"
    path.write_bytes(duckdb_loaded.read_bytes())
    code = textwrap.dedent(
        f"""
        import duckdb, time
        con = duckdb.connect({str(path)!r})
        print("locked", flush=True)
        time.sleep(0.8)
        con.close()
        """
    )
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    with subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True
    ) as holder:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        wh = DuckDBWarehouse(path, lock_tries=50, lock_wait=0.1, sleep=sleep)
        (outcome,) = wh.count([CountCheck("all", SCHEDULE)], {}, {})
        assert (outcome.count, outcome.error) == (9, None)
        assert waits  # it met the lock and waited
        holder.wait(timeout=10)


def test_duckdb_reads_project_qualified_names(duckdb_loaded: Path, tmp_path: Path) -> None:
    wh: Any = open_warehouse("duckdb", workdir=tmp_path, path=str(duckdb_loaded))
    (outcome,) = wh.count([CountCheck("all", f"my-project.{SCHEDULE}")], {}, {})
    assert (outcome.count, outcome.error) == (9, None)
    assert wh.scalar("SELECT COUNT(*) FROM `my-project.nba_raw.schedule`", {}, {}) == 9


def test_duckdb_says_what_it_cannot_translate(duckdb_loaded: Path, tmp_path: Path) -> None:
    wh: Any = open_warehouse("duckdb", workdir=tmp_path, path=str(duckdb_loaded))
    with pytest.raises(WarehouseError, match=r"^cannot run this BigQuery SQL on DuckDB: wildcard"):
        wh.scalar("SELECT COUNT(*) FROM `nba_raw.sched*` WHERE _TABLE_SUFFIX = 'ule'", {}, {})
    with pytest.raises(
        WarehouseError, match=r"^cannot run this BigQuery SQL on DuckDB: .*farm_fingerprint"
    ):
        wh.scalar("SELECT FARM_FINGERPRINT(game_id) FROM nba_raw.schedule LIMIT 1", {}, {})


# -- SQL building (pure) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["nba_raw.schedule", "my-project.nba_raw.schedule", "_d.t_1", "d.t-2026"],
)
def test_valid_table_names(name: str) -> None:
    wsql.parse_table(name)


@pytest.mark.parametrize(
    "name",
    [
        "schedule",
        "a.b.c.d",
        "nba_raw.schedule; DROP TABLE x",
        "nba_raw.schedule --",
        "`nba_raw`.schedule",
        "nba raw.schedule",
        "nba_raw.sched*",
        "Project.nba_raw.schedule",
        "nba-raw.schedule",
        "",
    ],
)
def test_invalid_table_names(name: str) -> None:
    with pytest.raises(WarehouseError, match="invalid table name"):
        wsql.parse_table(name)


def test_sanitize_labels() -> None:
    assert wsql.sanitize_labels(
        {"Runbook": "Backfill Game!", "1st": "ok", "": "dropped", "k": "v" * 70}
    ) == {"runbook": "backfill_game_", "l_1st": "ok", "k": "v" * 63}


def test_to_duckdb_params_and_names() -> None:
    out = wsql.to_duckdb(
        "SELECT COUNT(*) FROM `p-1.nba_raw.schedule`"
        " WHERE game_date = @date AND home_team IN UNNEST(@teams)"
    )
    assert "$date" in out
    assert "$teams" in out
    assert "p-1" not in out
    assert "@" not in out
    assert wsql.query_params("SELECT @a, @b, @a") == ["a", "b"]


@pytest.mark.parametrize(
    ("sql", "construct"),
    [
        ("SELECT SAFE.PARSE_DATE('%Y', x) FROM d.t", "SAFE."),
        ("SELECT NET.HOST(u) FROM d.t", "NET."),
        ("SELECT * FROM ML.PREDICT(MODEL d.m, TABLE d.t)", "ML."),
        ("SELECT * FROM `d.t*`", "wildcard table"),
        ("SELECT * FROM d.t FOR SYSTEM_TIME AS OF CURRENT_TIMESTAMP()", "FOR SYSTEM_TIME AS OF"),
        ("SELECT HLL_COUNT.EXTRACT(x) FROM d.t", "HLL_COUNT."),
    ],
)
def test_to_duckdb_names_untranslatable_constructs(sql: str, construct: str) -> None:
    with pytest.raises(WarehouseError, match="cannot run this BigQuery SQL on DuckDB") as caught:
        wsql.to_duckdb(sql)
    assert construct in str(caught.value)


def test_count_query_is_one_statement_with_values_only_as_params() -> None:
    prepared, errors = wsql.prepare_checks(
        [CountCheck("a", SCHEDULE, "home_team = @team"), coverage_check()],
        {"team": HOSTILE, "date": GAME_DATE},
    )
    assert errors == {}
    query = wsql.build_count_query(prepared)
    assert HOSTILE not in query.sql
    assert query.params == ["team", "date"]
    assert "EXCEPT DISTINCT" in query.sql
    assert f"LIMIT {wsql.MISSING_KEYS_CAP}" in query.sql
    assert len(sqlglot.parse(query.sql, read="bigquery")) == 1


def test_open_warehouse_is_lazy_and_checks_the_backend(tmp_path: Path) -> None:
    with pytest.raises(WarehouseError, match="unknown warehouse backend 'snowflake'"):
        open_warehouse("snowflake", workdir=tmp_path)
    code = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from agent.warehouse import open_warehouse
        assert "duckdb" not in sys.modules and "google.cloud.bigquery" not in sys.modules
        open_warehouse("duckdb", workdir=Path("."))
        assert "duckdb" in sys.modules and "google.cloud.bigquery" not in sys.modules
        """
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def test_a_result_without_the_count_columns_is_an_error_not_a_crash(
    scripted: ScriptedBigQuery,
) -> None:
    # The scripted server answers every query with one column f0_.
    (outcome,) = scripted.warehouse([]).count([CountCheck("all", SCHEDULE)], {}, {})
    assert outcome.error == "the count query's result has no column c0_count"


# -- verify steps: the expected number taken from the warehouse ------------------------------

SCHEDULED = {
    "key": ["game_id", "team_abbr"],
    "expected": " ".join(EXPECTED_KEYS.split()),
}


def _verify_run(
    tmp_path: Path, duckdb_path: Path, checks: list[dict[str, Any]], date: dt.date = GAME_DATE
) -> Any:
    from agent.run.options import RunOptions
    from agent.workflow import run_runbook

    rb = tmp_path / "rb.yaml"
    rb.write_text(
        textwrap.dedent(f"""
            version: 1
            id: counts
            title: Counts
            vars:
              date: {{type: date, default: "{date}"}}
            warehouse: {{backend: duckdb, path: {duckdb_path}}}
            steps:
              - id: v
                kind: verify
                baseline: true
                checks: {json.dumps(checks)}
        """),
        encoding="utf-8",
    )
    record, _ = run_runbook(rb, RunOptions(reports_dir=tmp_path / "reports"))
    return record.step("v")


def test_expect_coverage_takes_the_number_of_expected_keys(
    tmp_path: Path, duckdb_loaded: Path
) -> None:
    day = "game_date = @date"
    checks = [
        {"name": "said", "table": TDGS, "where": day, "expect": "coverage", "coverage": SCHEDULED},
        {"name": "omitted", "table": CONTEXT, "where": day, "coverage": SCHEDULED},
        {"name": "by_var", "table": CONTEXT, "where": day, "expect": 16},
        {"name": "floor", "table": CONTEXT, "where": day, "expect": {"min": 1}},
    ]
    step = _verify_run(tmp_path, duckdb_loaded, checks)
    said, omitted = step.counts["said"], step.counts["omitted"]
    assert (said.actual, said.expected, said.expected_source, said.total) == (
        10,
        16,
        "coverage",
        16,
    )
    assert (said.percent, said.missing_total, said.ok) == (62.5, 6, False)
    assert (omitted.actual, omitted.expected, omitted.expected_source) == (16, 16, "coverage")
    assert omitted.ok
    assert (step.counts["by_var"].expected_source, step.counts["by_var"].ok) == ("var", True)
    assert step.counts["floor"].expected_source is None
    assert step.status == Status.PARTIAL
    assert step.reason == "short: said: 10 of 16, 6 expected keys missing"
    assert step.baseline.counts["said"].expected == 16
    log = next((tmp_path / "reports").glob("*/logs/v.log")).read_text()
    assert "rows: 10; expected: 16 (the coverage query's expected keys)" in log


def test_a_day_with_nothing_expected_is_ok_with_no_rows(
    tmp_path: Path, duckdb_loaded: Path
) -> None:
    checks = [
        {"table": TDGS, "where": "game_date = @date", "expect": "coverage", "coverage": SCHEDULED}
    ]
    step = _verify_run(tmp_path, duckdb_loaded, checks, date=dt.date(1999, 1, 1))
    check = step.counts[TDGS]
    assert (check.actual, check.expected, check.expected_source) == (0, 0, "coverage")
    assert (check.percent, check.missing_total, check.missing_keys, check.ok) == (None, 0, [], True)
    assert step.status == Status.SUCCESS


def test_more_rows_than_expected_keys_is_not_ok(tmp_path: Path, duckdb_loaded: Path) -> None:
    one_game = {
        **SCHEDULED,
        "expected": SCHEDULED["expected"].replace(
            "game_date = @date", "game_id = '0022500650' AND game_date = @date"
        ),
    }
    checks = [
        {"table": CONTEXT, "where": "game_date = @date", "expect": "coverage", "coverage": one_game}
    ]
    step = _verify_run(tmp_path, duckdb_loaded, checks)
    check = step.counts[CONTEXT]
    assert (check.actual, check.expected, check.ok) == (16, 2, False)
    assert step.status == Status.PARTIAL


# -- pruning: every scan of a table carries its check's filter -------------------------------------

PRUNED = "nba_pruned.team_games"


def _unfiltered_scans(sql: str, table: str, column: str) -> list[str]:
    """Each scan of `table` in `sql` whose own SELECT has no WHERE naming `column`."""
    name = table.rsplit(".", maxsplit=1)[-1]
    bad = []
    for scan in sqlglot.parse_one(sql, read="bigquery").find_all(sqlglot.exp.Table):
        if scan.name != name:
            continue
        select = scan.find_ancestor(sqlglot.exp.Select)
        where = select.args.get("where") if select is not None else None
        columns = {c.name for c in where.find_all(sqlglot.exp.Column)} if where else set()
        if column not in columns:
            bad.append(select.sql(dialect="bigquery") if select else scan.sql())
    return bad


def test_every_scan_of_a_table_carries_its_checks_filter() -> None:
    checks = [
        CountCheck("day", PRUNED, "game_date = @date"),
        CountCheck("home", PRUNED, "game_date = @date AND is_home"),
        CountCheck("cov", PRUNED, "game_date = @date", ("game_id", "team_abbr"), EXPECTED_KEYS),
    ]
    prepared, errors = wsql.prepare_checks(checks, PARAMS)
    assert errors == {}
    query = wsql.build_count_query(prepared)
    assert len(sqlglot.parse(query.sql, read="bigquery")) == 1
    assert "COUNTIF" not in query.sql.upper()
    assert _unfiltered_scans(query.sql, PRUNED, "game_date") == []
    # The partitioned form, one statement for many dates, keeps each copy's filter.
    grouped, names = wsql.partition_query(query, "date", 3)
    assert names == ["date__p0", "date__p1", "date__p2"]
    assert _unfiltered_scans(grouped, PRUNED, "game_date") == []
    # The parse check itself sees an unfiltered scan.
    assert _unfiltered_scans(f"SELECT COUNT(*) FROM {PRUNED}", PRUNED, "game_date")


@pytest.mark.bigquery
def test_verify_on_a_table_that_requires_a_partition_filter(
    bq_loaded: bqemu.Emulator, bq_client: Any, tmp_path: Path
) -> None:
    bq_client.create_dataset("nba_pruned", exists_ok=True)
    table = bigquery.Table(
        f"{PROJECT}.{PRUNED}",
        schema=[
            bigquery.SchemaField("game_id", "STRING"),
            bigquery.SchemaField("team_abbr", "STRING"),
            bigquery.SchemaField("game_date", "DATE"),
            bigquery.SchemaField("is_home", "BOOL"),
        ],
    )
    table.time_partitioning = bigquery.TimePartitioning(field="game_date")
    table.require_partition_filter = True
    table = bq_client.create_table(table, exists_ok=True)
    rows = [
        {"game_id": g, "team_abbr": t, "game_date": d.isoformat(), "is_home": home}
        for d in (GAME_DATE, GAME_DATE - dt.timedelta(days=1))
        for g, t, home in (("0022500650", "MIN", True), ("0022500650", "GSW", False))
    ]
    assert not bq_client.insert_rows_json(table, rows)
    wh: Any = open_warehouse("bigquery", workdir=tmp_path, project=PROJECT, endpoint=bq_loaded.url)
    checks = [
        CountCheck("day", PRUNED, "game_date = @date"),
        CountCheck("home", PRUNED, "game_date = @date AND is_home"),
        CountCheck("cov", PRUNED, "game_date = @date", ("game_id", "team_abbr"), EXPECTED_KEYS),
    ]
    try:
        before = jobs(wh)
        day, home, cov = wh.count(checks, PARAMS, LABELS)
        assert jobs(wh) - before == 1
        assert [(o.error, o.count) for o in (day, home, cov)] == [(None, 2), (None, 1), (None, 2)]
        assert cov.missing_total == 14
        # The emulator does not enforce require_partition_filter (an unfiltered COUNT(*) of
        # this table runs there), so the statement it ran is read back and parsed instead.
        ran = [j.query for j in bq_client.list_jobs(all_users=True) if PRUNED in (j.query or "")]
        assert ran
        assert [q for q in ran if _unfiltered_scans(q, PRUNED, "game_date")] == []
        estimate = wh.estimate_bytes(checks, PARAMS)
        assert isinstance(estimate, int)  # the emulator reports 0; BigQuery the pruned bytes
    finally:
        wh.close()
