"""Partitions: one runbook over many dates, with real processes and a real DuckDB file."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.errors import UsageError, ValidationError
from agent.incident.followup import write_followup
from agent.output.review import PlanReview, render_review, review_json, review_plan
from agent.plan.loader import load_runbook, load_text
from agent.plan.vars import resolve_vars
from agent.record import Journal, RunRecord, RunStatus, Status, load_record
from agent.run.executor import CRASH_AT_ENV
from agent.run.options import RunOptions
from agent.workflow import run_runbook

PY = sys.executable
Write = Callable[..., Path]
START = dt.date(2026, 1, 1)
DAYS = [START + dt.timedelta(days=i) for i in range(30)]
GAPS = {dt.date(2026, 1, 3): ["g2"], dt.date(2026, 1, 7): ["g1", "g2"]}


def _warehouse(tmp_path: Path) -> Path:
    """30 days of schedule (two games a day) and game rows, with gaps on known days."""
    import duckdb

    db = tmp_path / "wh.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE SCHEMA raw")
        con.execute("CREATE TABLE raw.schedule (game_date DATE, game_id VARCHAR)")
        con.execute("CREATE TABLE raw.games (game_date DATE, game_id VARCHAR)")
        for day in DAYS:
            for g in ("g1", "g2"):
                con.execute("INSERT INTO raw.schedule VALUES (?, ?)", [day, g])
                if g not in GAPS.get(day, []):
                    con.execute("INSERT INTO raw.games VALUES (?, ?)", [day, g])
    return db


def _runbook(
    write_runbook: Write,
    db: Path,
    *,
    order: str = "phase",
    parallel: int = 4,
    on_shortfall: str = "",
) -> Path:
    return write_runbook(f"""
        version: 1
        id: backfill
        title: Backfill {{{{ start }}}} to {{{{ end }}}}
        vars:
          start: {{type: date, default: "2026-01-01"}}
          end: {{type: date, default: "2026-01-30"}}
        warehouse: {{backend: duckdb, path: {db}}}
        partitions:
          var: date
          dates: {{from: "{{{{ start }}}}", to: "{{{{ end }}}}"}}
          parallel: {parallel}
          order: {order}
        steps:
          - id: load
            kind: run
            command: >-
              {PY} -c "open('effects.txt', 'a').write('load:{{{{ date }}}}\\n'); print('n=2')"
            capture: {{n: 'n=(\\d+)'}}
          - id: verify
            kind: verify
            needs: [load]
            checks:
              - table: raw.games
                where: game_date = @date
                coverage:
                  key: [game_id]
                  expected: SELECT game_id FROM raw.schedule WHERE game_date = @date
            {on_shortfall}
          - id: publish
            kind: run
            needs: [load]
            command: >-
              {PY} -c "open('effects.txt', 'a')
              .write('publish:{{{{ date }}}}:{{{{ steps.load.captures.n }}}}\\n')"
    """)


def _effects(tmp_path: Path) -> Counter[str]:
    path = tmp_path / "effects.txt"
    return Counter(path.read_text().split()) if path.exists() else Counter()


def _run(path: Path, **kw: object) -> RunRecord:
    options = RunOptions(reports_dir=Path("reports"), **kw)  # type: ignore[arg-type]
    return run_runbook(path, options).record


@pytest.mark.parametrize("order", ["phase", "partition"])
def test_thirty_dates_with_gaps_in_both_orders(
    write_runbook: Write, tmp_path: Path, order: str
) -> None:
    rb = _runbook(write_runbook, _warehouse(tmp_path), order=order)
    record = _run(rb)
    keys = [d.isoformat() for d in DAYS]
    assert record.partition_var == "date"
    assert record.partitions == keys
    assert len(record.steps) == 90
    assert [(r.id, r.partition) for r in record.steps[:2]] == [
        ("load", "2026-01-01"),
        ("load", "2026-01-02"),
    ]
    effects = _effects(tmp_path)
    assert all(effects[f"load:{k}"] == 1 for k in keys)
    assert all(effects[f"publish:{k}:2"] == 1 for k in keys)  # steps.load: the same partition
    short = {r.partition: r for r in record.steps if r.id == "verify" and r.status != "SUCCESS"}
    assert set(short) == {"2026-01-03", "2026-01-07"}
    assert short["2026-01-03"].status == Status.PARTIAL
    assert short["2026-01-03"].missing_values() == {"game_id": ["g2"]}
    assert short["2026-01-07"].missing_values() == {"game_id": ["g1", "g2"]}
    assert record.status == RunStatus.PARTIALLY_COMPLETE
    assert record.exit_code == 3
    run_dir = Path(record.run_dir or "")
    assert (run_dir / "logs" / "load@2026-01-05.log").is_file()
    # Journal lines name their partition.
    finished = [e for e in Journal.read(run_dir / "journal.jsonl") if e["event"] == "step_finished"]
    assert len({(e["step"], e["partition"]) for e in finished}) == 90
    if order == "phase":  # every load before any verify
        ids = [e["step"] for e in finished]
        assert ids.index("verify") > max(i for i, s in enumerate(ids) if s == "load")
        # One statement answered every partition of the verify step.
        log = (run_dir / "logs" / "verify@2026-01-01.log").read_text()
        assert "for 30 partitions" in log
    report = (run_dir / "report.md").read_text()
    assert "28 of 30 dates complete; 2 partial: 2026-01-03, 2026-01-07" in report
    assert "Ran 3 steps over 30 partitions (90 step runs) of runbook" in report


def test_one_statement_for_every_partition(
    write_runbook: Write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.warehouse.duckdb import DuckDBWarehouse

    db = _warehouse(tmp_path)
    calls: list[str] = []
    original = DuckDBWarehouse._execute

    def counting(self: DuckDBWarehouse, con: object, sql: str, *a: object, **k: object) -> object:
        calls.append(sql)
        return original(self, con, sql, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(DuckDBWarehouse, "_execute", counting)
    rb = write_runbook(f"""
        version: 1
        id: v
        title: V
        warehouse: {{backend: duckdb, path: {db}}}
        partitions: {{var: date, values: [2026-01-02, "2026-01-03", 2026-01-03, 2026-01-07]}}
        steps:
          - id: verify
            kind: verify
            checks:
              - table: raw.games
                where: game_date = @date
                expect: 2
    """)
    record = _run(rb)
    assert record.partitions == ["2026-01-02", "2026-01-03", "2026-01-07"]  # duplicates once
    assert len(calls) == 1
    assert [r.counts["raw.games"].actual for r in record.steps] == [2, 1, 0]
    assert [r.status for r in record.steps] == [Status.SUCCESS, Status.PARTIAL, Status.PARTIAL]


def test_partition_option_and_query_partitions(write_runbook: Write, tmp_path: Path) -> None:
    db = _warehouse(tmp_path)
    rb = write_runbook(f"""
        version: 1
        id: q
        title: Q
        vars:
          start: {{type: date, default: "2026-01-05"}}
        warehouse: {{backend: duckdb, path: {db}}}
        partitions:
          var: day
          query: >-
            SELECT DISTINCT game_date FROM raw.schedule
            WHERE game_date BETWEEN @start AND DATE '2026-01-08' ORDER BY 1
        steps:
          - id: echo
            kind: run
            command: {PY} -c "open('effects.txt', 'a').write('echo:{{{{ day }}}}\\n')"
    """)
    record = _run(rb)
    assert record.partitions == ["2026-01-05", "2026-01-06", "2026-01-07", "2026-01-08"]
    assert record.status == RunStatus.COMPLETE
    (tmp_path / "effects.txt").unlink()
    record = _run(rb, partitions=["2026-01-06"])
    assert record.partitions == ["2026-01-06"]
    assert _effects(tmp_path) == Counter({"echo:2026-01-06": 1})
    with pytest.raises(UsageError, match="unknown partition"):
        _run(rb, partitions=["2027-01-01"])


def test_empty_query_gives_zero_partitions_and_exits_zero(
    write_runbook: Write, tmp_path: Path
) -> None:
    db = _warehouse(tmp_path)
    rb = write_runbook(f"""
        version: 1
        id: q
        title: Q
        warehouse: {{backend: duckdb, path: {db}}}
        partitions: {{var: day, query: "SELECT game_date FROM raw.schedule WHERE game_id = 'none'"}}
        steps:
          - {{id: echo, kind: run, command: "true"}}
    """)
    record = _run(rb)
    assert record.partitions == [] and record.steps == []
    assert record.exit_code == 0
    assert "0 partitions" in (Path(record.run_dir or "") / "report.md").read_text()


def test_loader_problems_are_located(write_runbook: Write) -> None:
    rb = write_runbook("""
        version: 1
        id: bad
        title: T
        vars:
          date: {type: date}
        partitions:
          var: date
          dates: {from: "2026-01-05", to: "2026-01-03"}
          parallel: 0
        steps:
          - {id: a, kind: run, command: "echo {{ date }} {{ day }}"}
    """)
    with pytest.raises(ValidationError) as info:
        load_runbook(rb)
    text = str(info.value)
    assert "rb.yaml:7:8: partitions: var 'date' is also declared under vars (line 5)" in text
    assert "rb.yaml:8:35: partitions: the range ends (2026-01-03) before it starts" in text
    assert (
        "rb.yaml:9:13: 'parallel' of 'partitions': input should be greater than or equal to 1"
        in text
    )
    assert "undefined name 'day'" in text
    rb = write_runbook("""
        version: 1
        id: bad
        title: T
        partitions: {var: day, query: "DELETE FROM raw.x"}
        steps:
          - {id: a, kind: run, command: "echo {{ day }}"}
    """)
    with pytest.raises(
        ValidationError,
        match=r"rb.yaml:4:31: 'query' of 'partitions': a partitions query must be a SELECT",
    ):
        load_runbook(rb)
    rb = write_runbook("""
        version: 1
        id: bad
        title: T
        partitions: {var: day, values: [1], dates: {from: "2026-01-01", to: "2026-01-02"}}
        steps:
          - {id: a, kind: run, command: "echo {{ day }}"}
    """)
    with pytest.raises(ValidationError, match="exactly one of 'dates', 'values' or 'query'"):
        load_runbook(rb)


def test_a_range_too_long_is_refused(write_runbook: Write) -> None:
    rb = write_runbook("""
        version: 1
        id: long
        title: T
        partitions: {var: day, dates: {from: "2000-01-01", to: "2099-12-31"}}
        steps:
          - {id: a, kind: run, command: "true"}
    """)
    with pytest.raises(UsageError, match="36,525 dates, more than the 10,000 allowed"):
        _run(rb)


def test_kill_mid_range_then_resume_runs_no_finished_pair_again(
    write_runbook: Write, tmp_path: Path
) -> None:
    rb = _runbook(write_runbook, _warehouse(tmp_path), parallel=1)
    env = {**os.environ, CRASH_AT_ENV: "finished:publish@2026-01-10"}
    proc = subprocess.run(
        [PY, "-m", "agent", "run", str(rb), "--reports", "reports"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL
    before = _effects(tmp_path)
    assert sum(v for k, v in before.items() if k.startswith("publish:")) == 10
    (run_dir,) = (tmp_path / "reports").glob("*-backfill-*")
    env.pop(CRASH_AT_ENV)
    proc = subprocess.run(
        [PY, "-m", "agent", "resume", str(run_dir)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 3, proc.stderr
    after = _effects(tmp_path)
    assert all(n == 1 for n in after.values()), after  # no finished pair ran again
    assert len(after) == 60
    record = load_record(run_dir)
    assert record.status == RunStatus.PARTIALLY_COMPLETE
    assert len([r for r in record.steps if r.status is not None]) == 90


# --- plan and follow-up -----------------------------------------------------------------------


def _review(path: Path, *, offline: bool = False, **overrides: str) -> PlanReview:
    loaded = load_runbook(path)
    return review_plan(loaded, resolve_vars(loaded.runbook, overrides), offline=offline)


def test_plan_shows_the_partitions_and_the_step_runs(write_runbook: Write, tmp_path: Path) -> None:
    rb = _runbook(write_runbook, _warehouse(tmp_path))
    review = _review(rb)
    assert review.ok, review.missing
    text = render_review(review)
    assert (
        "## Partitions\n"
        "\n"
        "- **Var:** `date` (bound in every step's templates, and as `@date` in its SQL)\n"
        "- **Partitions:** 30 dates, one a day from 2026-01-01 to 2026-01-30\n"
        "- **Step runs:** 3 steps x 30 partitions = 90 step runs\n"
        "- **Order:** phase (each step runs for every partition before the next step starts), "
        "4 partitions at a time\n"
        "- **Shown for:** the steps below are rendered for the first partition, `2026-01-01`\n"
        "\n"
        "## Order\n"
    ) in text
    assert "load:2026-01-01" in text  # the steps, as the first partition runs them
    # What each date holds now, in one statement: the gap days by their own numbers.
    assert (
        "- Now, by partition (one statement for all):\n  - `2026-01-01`: raw.games 2/2 (100%)\n"
        in text
    )
    assert "  - `2026-01-03`: raw.games 1/2 (50%)\n" in text
    assert "  - `2026-01-07`: raw.games 0/2 (0%)\n" in text
    assert text.count("raw.games 2/2 (100%)") == 28
    steps = review_json(review)["steps"]
    assert steps[1]["by_partition"][6] == {"partition": "2026-01-07", "now": "raw.games 0/2 (0%)"}
    assert "by partition" not in render_review(_review(rb, offline=True))
    data = review_json(review)["partitions"]
    assert data["values"] == [d.isoformat() for d in DAYS]
    assert (data["count"], data["steps"], data["step_runs"]) == (30, 3, 90)
    assert (data["var"], data["source"], data["parallel"], data["order"]) == (
        "date",
        "dates",
        4,
        "phase",
    )
    assert not (tmp_path / "effects.txt").exists()  # the plan started nothing
    # A week of it, by --var, in partition order.
    rb = _runbook(write_runbook, tmp_path / "wh.duckdb", order="partition", parallel=1)
    review = _review(rb, start="2026-01-03", end="2026-01-09")
    text = render_review(review)
    assert "- **Step runs:** 3 steps x 7 partitions = 21 step runs\n" in text
    assert "partition (each partition runs all its steps in turn), 1 partition at a time" in text
    assert "  - `2026-01-03`: raw.games 1/2 (50%)\n" in text


def test_plan_runs_a_partitions_query_unless_offline(write_runbook: Write, tmp_path: Path) -> None:
    db = _warehouse(tmp_path)
    rb = write_runbook(f"""
        version: 1
        id: q
        title: Q
        warehouse: {{backend: duckdb, path: {db}}}
        partitions:
          var: day
          query: >-
            SELECT DISTINCT game_date FROM raw.schedule
            WHERE game_date BETWEEN DATE '2026-01-05' AND DATE '2026-01-07' ORDER BY 1
        steps:
          - {{id: echo, kind: run, command: "echo {{{{ day }}}}"}}
    """)
    review = _review(rb)
    text = render_review(review)
    assert "- **Partitions:** 3 values from the query: 2026-01-05, 2026-01-06, 2026-01-07\n" in text
    assert "- **Step runs:** 1 step x 3 partitions = 3 step runs\n" in text
    assert "```sql\nSELECT DISTINCT game_date FROM raw.schedule" in text
    assert review_json(review)["partitions"]["values"] == ["2026-01-05", "2026-01-06", "2026-01-07"]
    review = _review(rb, offline=True)
    assert review.ok, review.missing
    text = render_review(review)
    assert "- **Partitions:** from the query, resolved at run time (offline: not queried)\n" in text
    assert "- **Step runs:** 1 step x the partitions the query returns (counted at run time)\n" in (
        text
    )
    assert "echo '<day>'" in text
    data = review_json(review)["partitions"]
    assert (data["values"], data["count"], data["step_runs"]) == (None, None, None)
    # What the run would refuse, the plan names as missing.
    rb = write_runbook("""
        version: 1
        id: long
        title: T
        partitions: {var: day, dates: {from: "2000-01-01", to: "2099-12-31"}}
        steps:
          - {id: a, kind: run, command: "echo {{ day }}"}
    """)
    review = _review(rb, offline=True)
    assert review.missing == [
        ("partitions", "the range holds 36,525 dates, more than the 10,000 allowed")
    ]


def test_plan_without_partitions_says_nothing_of_them(write_runbook: Write) -> None:
    rb = write_runbook("""
        version: 1
        id: flat
        title: T
        vars:
          date: {type: date, default: "2026-01-01"}
        steps:
          - {id: a, kind: run, command: "echo {{ date }}"}
    """)
    review = _review(rb, offline=True)
    assert review.partitions is None
    text = render_review(review)
    assert "## Partitions" not in text and "Step runs" not in text
    assert "partitions" not in review_json(review)


def test_followup_covers_only_the_short_days_and_then_completes(
    write_runbook: Write, tmp_path: Path
) -> None:
    import duckdb
    import yaml

    db = _warehouse(tmp_path)
    wait = (
        "on_shortfall: {issue: late games, wait_for: "
        '"SELECT COUNT(*) >= 2 FROM raw.games WHERE game_date = @date"}'
    )
    rb = _runbook(write_runbook, db, order="partition", on_shortfall=wait)
    record = _run(rb)
    assert record.status == RunStatus.PARTIALLY_COMPLETE
    target = tmp_path / "rb.followup.yaml"
    assert write_followup(Path(record.run_dir or ""), target) == target
    text = target.read_text()
    load_text(text, target)  # it validates
    doc = yaml.safe_load(text)
    assert doc["partitions"] == {
        "var": "date",
        "values": ["2026-01-03", "2026-01-07"],
        "parallel": 4,
        "order": "partition",
    }
    # The short step, what it needs, and the wait its on_shortfall names (per partition).
    assert [s["id"] for s in doc["steps"]] == ["load", "wait_verify", "verify"]
    assert doc["steps"][1]["until"] == wait.split('wait_for: "')[1].rstrip('"}')
    assert "It covers the 2 partitions of 30 that fell short: 2026-01-03, 2026-01-07." in text
    assert (
        "# verify: PARTIAL in 2 of 30 partitions of run " + record.run_id + " "
        "(2026-01-03, 2026-01-07); 2026-01-03: " in text
    )
    # The late data arrives; the follow-up runs only those two days and ends COMPLETE.
    with duckdb.connect(str(db)) as con:
        for day, games in GAPS.items():
            for g in games:
                con.execute("INSERT INTO raw.games VALUES (?, ?)", [day, g])
    (tmp_path / "effects.txt").unlink()
    again = _run(target)
    assert again.partitions == ["2026-01-03", "2026-01-07"]
    assert again.status == RunStatus.COMPLETE, [(r.id, r.partition, r.reason) for r in again.steps]
    assert again.exit_code == 0
    assert _effects(tmp_path) == Counter({"load:2026-01-03": 1, "load:2026-01-07": 1})


# --- the same verify on the BigQuery emulator -------------------------------------------------


def _mirror_to_bigquery(db: Path, client: Any) -> None:
    """Copy the DuckDB tables of `_warehouse` into the emulator (dataset `raw`), row for row."""
    import duckdb

    from tests.bqemu import TableData, load_bigquery

    types = {"DATE": "DATE", "VARCHAR": "STRING"}
    tables: dict[str, TableData] = {}
    with duckdb.connect(str(db), read_only=True) as con:
        for name in ("raw.schedule", "raw.games"):
            cur = con.execute(f"SELECT * FROM {name} ORDER BY ALL")
            cols = [d[0] for d in cur.description]
            kinds = [str(d[1]) for d in cur.description]
            rows = tuple(dict(zip(cols, r, strict=True)) for r in cur.fetchall())
            columns = tuple((c, types[k]) for c, k in zip(cols, kinds, strict=True))
            tables[name] = TableData(columns, rows)
    load_bigquery(client, tables)


def _verify_view(record: RunRecord) -> dict[str | None, tuple[Any, ...]]:
    """Per partition of the verify step: status, actual count, expected keys, missing keys."""
    view: dict[str | None, tuple[Any, ...]] = {}
    for r in record.steps:
        if r.id != "verify":
            continue
        c = r.counts["raw.games"]
        view[r.partition] = (r.status, c.actual, c.total, c.error, r.missing_values())
    return view


@pytest.mark.bigquery
def test_the_partitioned_verify_on_bigquery_matches_duckdb_in_one_job(
    write_runbook: Write, tmp_path: Path, bq_emulator: Any, bq_client: Any
) -> None:
    from tests.bqemu import PROJECT, count_jobs

    db = _warehouse(tmp_path)
    on_duckdb = _run(_runbook(write_runbook, db))
    _mirror_to_bigquery(db, bq_client)
    text = _runbook(write_runbook, db).read_text()
    duck = f"warehouse: {{backend: duckdb, path: {db}}}"
    assert duck in text
    rb = write_runbook(
        text.replace(duck, f"warehouse: {{backend: bigquery, project: {PROJECT}}}"), "bq.yaml"
    )

    def verify_jobs() -> list[Any]:
        jobs = bq_client.list_jobs(all_users=True, max_results=10_000)
        return [j for j in jobs if not getattr(j, "dry_run", False)]

    before_ids = {j.job_id for j in verify_jobs()}
    before = count_jobs(bq_client)
    on_bigquery = _run(rb, warehouse_endpoint=bq_emulator.url)
    new = [j for j in verify_jobs() if j.job_id not in before_ids]

    assert on_bigquery.warehouse["backend"] == "bigquery"
    assert on_duckdb.warehouse["backend"] == "duckdb"
    view = _verify_view(on_bigquery)
    assert view == _verify_view(on_duckdb)
    assert len(view) == 30
    assert {p: v[4] for p, v in view.items() if v[0] != Status.SUCCESS} == {
        "2026-01-03": {"game_id": ["g2"]},
        "2026-01-07": {"game_id": ["g1", "g2"]},
    }
    assert view["2026-01-07"][1:4] == (0, 2, None)
    assert all(v[3] is None for v in view.values())
    assert on_bigquery.status == on_duckdb.status == RunStatus.PARTIALLY_COMPLETE
    # One query job answered the verify step for all 30 partitions (no fallback per partition).
    assert count_jobs(bq_client) - before == 1, [(j.job_id, j.labels) for j in new]
    # The emulator's job list keeps no labels; the job's SQL shows it is the partitioned one.
    (job,) = new
    assert "runbook_partition" in job.query and "@date__p29" in job.query, job.query
    log = (Path(on_bigquery.run_dir or "") / "logs" / "verify@2026-01-01.log").read_text()
    assert "for 30 partitions" in log


def test_every_output_tells_the_pairs_apart(write_runbook: Write, tmp_path: Path) -> None:
    """JUnit, the gantt, the flowchart, show and history of the 30-day run with its 2 gap days."""
    from agent.output.history import find_runs, history_table, summary_text
    from agent.output.junit import junit_xml
    from agent.output.mermaid import run_flowchart, run_gantt

    rb = _runbook(write_runbook, _warehouse(tmp_path))
    result = run_runbook(rb, RunOptions(reports_dir=Path("reports")))
    record = result.record
    xml = junit_xml(record)
    names = re.findall(r'<testcase [^>]*name="([^"]+)"', xml)
    assert len(names) == len(set(names)) == 90
    assert "verify@2026-01-07: verify" in names
    assert re.search(r'name="verify@2026-01-03: verify"[^>]*>\s*<failure', xml)
    gantt = run_gantt(record)
    assert gantt is not None
    assert gantt.startswith("---\ndisplayMode: compact\n---\ngantt\n")
    sections = [line.strip() for line in gantt.splitlines() if "section" in line]
    assert sections == ["section 1. load", "section 2. verify", "section 3. publish"]
    bands = [line.split(":")[0].strip() for line in gantt.splitlines() if " :" in line]
    assert bands == [
        "2026-01-01 to 2026-01-30 (30) SUCCESS",
        "2026-01-01 to 2026-01-02 (2) SUCCESS",
        "2026-01-03 PARTIAL",
        "2026-01-04 to 2026-01-06 (3) SUCCESS",
        "2026-01-07 PARTIAL",
        "2026-01-08 to 2026-01-30 (23) SUCCESS",
        "2026-01-01 to 2026-01-30 (30) SUCCESS",
    ]
    flow = run_flowchart(record)
    assert '    s2["2. verify<br/>2 PARTIAL, 28 SUCCESS"]\n    class s2 partial' in flow
    assert flow.count('["') == 3
    shown = summary_text(record, result.run_dir)
    assert "partitions: 28 of 30 dates complete; 2 partial: 2026-01-03, 2026-01-07" in shown
    assert re.search(r"\| verify +\| 2026-01-07 +\| verify +\| PARTIAL", shown)
    table = history_table(find_runs(Path("reports")))
    assert "| partitions " in table and "| 28/30 complete " in table
