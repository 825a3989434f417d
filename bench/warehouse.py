"""Verify-step benchmarks: one query for ten checks vs one query per check, DuckDB and emulator."""

from __future__ import annotations

import datetime as dt
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

__all__ = ["bench_verify"]

DUCKDB_ROWS = 10_000_000
EMULATOR_ROWS = 200_000
CHECKS = 10
TABLE = "bench.events"
DATE = dt.date(2026, 1, 10)
TARGET = "one query; ≤ the baseline's time"
EMULATOR_TARGET = "one job; ≤ the baseline's time"


def _wheres() -> list[str]:
    """The ten checks' conditions (BigQuery dialect), each counting a different slice."""
    return [f"game_date >= @date AND MOD(points, {CHECKS}) = {k}" for k in range(CHECKS)]


def _checks() -> list[Any]:
    from agent.warehouse import CountCheck

    return [CountCheck(f"slice_{k}", TABLE, where) for k, where in enumerate(_wheres())]


def _interleaved(
    one: Callable[[], object], base: Callable[[], object], repeat: int = 7
) -> tuple[float, float]:
    """Median wall times of `one` and `base`, run alternately so load hits both alike."""
    one()  # warm: file cache, client session, the emulator's catalog
    base()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for fn, out in ((one, times[0]), (base, times[1])):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return statistics.median(times[0]), statistics.median(times[1])


def _verify_runbook(path: Path, warehouse: str) -> Path:
    lines = [
        "version: 1",
        "id: bench-verify",
        "title: Bench verify",
        f"vars: {{date: {{type: date, default: '{DATE.isoformat()}'}}}}",
        f"warehouse: {warehouse}",
        "steps:",
        "  - id: verify",
        "    kind: verify",
        "    checks:",
    ]
    for where in _wheres():
        lines += [
            f"      - table: {TABLE}",
            f"        where: '{where}'",
            "        expect: {min: 0}",
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _step_seconds(runbook: Path, reports: Path, endpoint: str | None = None) -> tuple[float, Any]:
    """Run the one-step verify runbook through the executor; the step's own time and counts."""
    from agent.run.options import RunOptions
    from agent.workflow import run_runbook

    record, _ = run_runbook(
        runbook, RunOptions(reports_dir=reports, warehouse_endpoint=endpoint), report=False
    )
    (step,) = record.steps
    if step.started_at is None or step.ended_at is None:
        raise RuntimeError(f"the verify step did not run: {step.status} {step.reason}")
    counts = {k: c.actual for k, c in step.counts.items()}
    return (step.ended_at - step.started_at).total_seconds(), counts


def bench_duckdb(tmp: Path, rows: list[list[object]]) -> None:
    """Ten checks on a 10-million-row DuckDB table: one statement vs ten COUNT statements."""
    import duckdb

    from agent.warehouse.duckdb import DuckDBWarehouse

    path = tmp / "verify.duckdb"
    path.unlink(missing_ok=True)
    con = duckdb.connect(str(path))
    try:
        con.execute("CREATE SCHEMA bench")
        con.execute(
            f"CREATE TABLE {TABLE} AS SELECT i AS id,"
            " DATE '2026-01-01' + CAST(i % 31 AS INTEGER) AS game_date,"
            " 'T' || CAST(i % 30 AS VARCHAR) AS team_abbr,"
            " CAST(i % 120 AS INTEGER) AS points"
            f" FROM range({DUCKDB_ROWS}) t(i)"
        )
    finally:
        con.close()
    params = {"date": DATE}
    checks = _checks()
    last: dict[str, Any] = {}

    def one_query() -> None:
        wh = DuckDBWarehouse(path)
        outcomes = wh.count(checks, params, {})
        last["queries"] = wh.queries_run
        last["counts"] = [o.count for o in outcomes]
        last["errors"] = [o.error for o in outcomes if o.error]

    baseline_sql = [
        f"SELECT COUNT(*) FROM {TABLE} WHERE game_date >= $date AND points % {CHECKS} = {k}"
        for k in range(CHECKS)
    ]

    def per_check() -> None:
        con = duckdb.connect(str(path), read_only=True)
        try:
            last["baseline"] = [
                con.execute(sql, {"date": DATE}).fetchone()[0]  # type: ignore[index]
                for sql in baseline_sql
            ]
        finally:
            con.close()

    t_one, t_base = _interleaved(one_query, per_check)
    runbook = _verify_runbook(tmp / "verify-duckdb.yaml", f"{{backend: duckdb, path: '{path}'}}")
    step_times = [_step_seconds(runbook, tmp / "rv") for _ in range(3)]
    t_step = statistics.median(t for t, _ in step_times)
    step_counts = list(step_times[-1][1].values())
    same = last["counts"] == last["baseline"] == step_counts and not last["errors"]
    note = "" if same else f"; counts differ: {last['counts']} vs {last['baseline']}"
    rows.append(
        [
            f"verify, {CHECKS} checks on a {DUCKDB_ROWS // 1_000_000}M-row DuckDB table",
            f"{t_one * 1000:.0f} ms, {last['queries']} query (as a step: {t_step * 1000:.0f} ms)"
            + note,
            f"{t_base * 1000:.0f} ms ({CHECKS} COUNT queries, one connection)",
            f"{t_one / t_base:.2f}x",
            TARGET,
            same and last["queries"] == 1 and t_one <= t_base,
        ]
    )
    path.unlink(missing_ok=True)


SORTED_ROWS = 50_000_000
SORTED_DAYS = 100
PRUNE_TARGET = "≤ 1.2x"


def bench_pruned(tmp: Path, rows: list[list[object]], n_rows: int = SORTED_ROWS) -> None:
    """Three checks, one with coverage, on a date-sorted table against the same by hand.

    The table is written in date order, so DuckDB's zone maps skip every row group of other
    dates when (and only when) the date filter sits in a scan's WHERE.
    """
    import duckdb

    from agent.warehouse import CountCheck
    from agent.warehouse.duckdb import DuckDBWarehouse

    path = tmp / "sorted.duckdb"
    path.unlink(missing_ok=True)
    per_day = n_rows // SORTED_DAYS
    con = duckdb.connect(str(path))
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute("CREATE SCHEMA bench")
        con.execute(
            f"CREATE TABLE {TABLE} AS SELECT i AS id,"
            f" DATE '2026-01-01' + CAST(i // {per_day} AS INTEGER) AS game_date,"
            " 'T' || CAST(i % 30 AS VARCHAR) AS team_abbr,"
            " CAST(i % 120 AS INTEGER) AS points"
            f" FROM range({n_rows}) t(i) ORDER BY i"
        )
        # 31 teams expected, 30 play: coverage names one missing key.
        con.execute(
            "CREATE TABLE bench.teams AS SELECT 'T' || CAST(i AS VARCHAR) AS team_abbr"
            " FROM range(31) t(i)"
        )
    finally:
        con.close()
    params = {"date": DATE}
    day = "game_date = @date"
    checks = [
        CountCheck("day", TABLE, day),
        CountCheck("high", TABLE, f"{day} AND points >= 100"),
        CountCheck("teams", TABLE, day, ("team_abbr",), "SELECT team_abbr FROM bench.teams"),
    ]
    last: dict[str, Any] = {}

    def verify() -> None:
        wh = DuckDBWarehouse(path)
        outcomes = wh.count(checks, params, {})
        last["step"] = [(o.count, o.expected_total, o.missing_total) for o in outcomes]
        last["errors"] = [o.error for o in outcomes if o.error]

    where = "game_date = $date"
    expected = "SELECT DISTINCT team_abbr FROM bench.teams"
    missing = f"{expected} EXCEPT SELECT team_abbr FROM {TABLE} WHERE {where}"

    def by_hand() -> None:
        con = duckdb.connect(str(path), read_only=True)
        try:

            def one(sql: str, bound: bool = True) -> Any:
                return con.execute(sql, {"date": DATE} if bound else None).fetchone()[0]  # type: ignore[index]

            counts = [
                one(f"SELECT COUNT(*) FROM {TABLE} WHERE {where}"),
                one(f"SELECT COUNT(*) FROM {TABLE} WHERE {where} AND points >= 100"),
                one(f"SELECT COUNT(*) FROM {TABLE} WHERE {where}"),
            ]
            total = one(f"SELECT COUNT(*) FROM ({expected})", bound=False)
            gone = one(f"SELECT COUNT(*) FROM ({missing})")
            con.execute(f"SELECT * FROM ({missing}) ORDER BY 1 LIMIT 20", {"date": DATE})
            con.fetchall()
            last["hand"] = [
                (counts[0], None, None),
                (counts[1], None, None),
                (counts[2], total, gone),
            ]
        finally:
            con.close()

    t_step, t_hand = _interleaved(verify, by_hand, repeat=9)
    same = last["step"] == last["hand"] and not last["errors"]
    note = "" if same else f"; results differ: {last['step']} vs {last['hand']}"
    rows.append(
        [
            f"verify, 3 checks + coverage anti-join, date-sorted {n_rows / 1e6:g}M-row DuckDB",
            f"{t_step * 1000:.1f} ms" + note,
            f"{t_hand * 1000:.1f} ms (the same counts by hand, filtered statements)",
            f"{t_step / t_hand:.2f}x",
            PRUNE_TARGET,
            same and t_step / t_hand <= 1.2,
        ]
    )
    path.unlink(missing_ok=True)


def bench_emulator(tmp: Path, rows: list[list[object]]) -> None:
    """Ten checks on the BigQuery emulator: one job vs ten jobs, in the same run."""
    from bench import bqemu_start

    figure = f"verify, {CHECKS} checks on the BigQuery emulator ({EMULATOR_ROWS:,} rows)"
    try:
        emulator = bqemu_start.start(tmp / "bqemulator")
    except bqemu_start.EmulatorError as exc:
        rows.append([figure, f"emulator did not start: {exc}", "", "", EMULATOR_TARGET, False])
        return
    try:
        _bench_emulator(emulator, tmp, rows, figure)
    except Exception as exc:  # noqa: BLE001 - the table still prints
        rows.append(
            [figure, f"failed: {type(exc).__name__}: {exc}", "", "", EMULATOR_TARGET, False]
        )
    finally:
        bqemu_start.stop(emulator)


def _bench_emulator(emulator: Any, tmp: Path, rows: list[list[object]], figure: str) -> None:
    from agent.warehouse.bigquery import BigQueryWarehouse
    from bench import bqemu_start

    bq = bqemu_start.client(emulator)
    try:
        bq.create_dataset("bench", exists_ok=True)
        bq.query(
            f"CREATE TABLE {TABLE} AS SELECT i AS id,"
            " DATE_ADD(DATE '2026-01-01', INTERVAL MOD(i, 31) DAY) AS game_date,"
            " CONCAT('T', CAST(MOD(i, 30) AS STRING)) AS team_abbr,"
            " MOD(i, 120) AS points"
            f" FROM UNNEST(GENERATE_ARRAY(0, {EMULATOR_ROWS - 1})) AS i"
        ).result()
        params = {"date": DATE}
        checks = _checks()
        labels = {"runbook": "bench", "step": "verify"}
        wh = BigQueryWarehouse(project=bqemu_start.PROJECT, endpoint=emulator.url)
        last: dict[str, Any] = {}

        def one_job() -> None:
            outcomes = wh.count(checks, params, labels)
            last["counts"] = [o.count for o in outcomes]
            last["errors"] = [o.error for o in outcomes if o.error]

        def per_check() -> None:
            last["baseline"] = [
                wh.scalar(f"SELECT COUNT(*) FROM {TABLE} WHERE {where}", params, labels)
                for where in _wheres()
            ]

        jobs0 = bqemu_start.count_jobs(bq)
        one_job()
        jobs1 = bqemu_start.count_jobs(bq)
        per_check()
        jobs2 = bqemu_start.count_jobs(bq)
        t_one, t_base = _interleaved(one_job, per_check, repeat=5)
        wh.close()
        runbook = _verify_runbook(
            tmp / "verify-bq.yaml", f"{{backend: bigquery, project: {bqemu_start.PROJECT}}}"
        )
        t_step, step_counts = _step_seconds(runbook, tmp / "rvb", endpoint=emulator.url)
    finally:
        bq.close()
    jobs_one, jobs_base = jobs1 - jobs0, jobs2 - jobs1
    same = last["counts"] == last["baseline"] == list(step_counts.values()) and not last["errors"]
    note = "" if same else f"; counts differ: {last['counts']} vs {last['baseline']}"
    rows.append(
        [
            figure,
            f"{t_one:.3f} s, {jobs_one} job (as a step: {t_step:.3f} s)" + note,
            f"{t_base:.3f} s ({jobs_base} jobs, one per check)",
            f"{t_one / t_base:.2f}x",
            EMULATOR_TARGET,
            same and jobs_one == 1 and t_one <= t_base,
        ]
    )


def bench_verify(tmp: Path, rows: list[list[object]]) -> None:
    """Add the verify rows to the benchmark table: DuckDB, then the BigQuery emulator.

    Args:
        tmp: a scratch folder.
        rows: the table; each row is [figure, measured, floor, ratio, target, met].
    """
    bench_pruned(tmp, rows)
    bench_duckdb(tmp, rows)
    bench_emulator(tmp, rows)


if __name__ == "__main__":
    import tempfile

    from tabulate import tabulate

    table: list[list[object]] = []
    with tempfile.TemporaryDirectory(prefix="runbook-bench-verify-") as d:
        bench_verify(Path(d), table)
    print(tabulate(table, headers=["figure", "measured", "floor", "ratio", "target", "met"]))
