"""Tests of importing any markdown procedure, and of `runbook plan` over a folder of them.

The corpus is written here, one document per shape the importer recognises; each is pinned to
its golden draft in ``tests/golden/procedures/``. After an intended change, regenerate and review::

    UPDATE_GOLDEN=1 /work/venv/bin/python -m pytest tests/test_procedures.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.incident.importer.procedure import import_procedure
from agent.plan.loader import load_text
from tests.procs import run_cli

GOLDEN = Path(__file__).parent / "golden" / "procedures"

CORPUS: dict[str, str] = {
    "numbered-steps": """\
# Daily Operations Runbook

1. Check the scheduler is healthy:

```bash
gcloud scheduler jobs list --location=us-west2
```

2. Run the morning validation:

```bash
PYTHONPATH=. python scripts/validate_tonight_data.py --date 2024-11-20
```

3. Post the result in #ops.
""",
    "phases": """\
# Player Game Summary Backfill

## Phase 1: Raw boxscores

```bash
# backfill the raw boxscores first
python backfill_jobs/phase1/run_phase1.py --start-date 2024-11-01 --end-date 2024-11-20
```

## Phase 2: Analytics

```bash
python backfill_jobs/phase2/run_phase2.py --start-date 2024-11-01 --end-date 2024-11-20 --dry-run
python backfill_jobs/phase2/run_phase2.py --start-date 2024-11-01 --end-date 2024-11-20
```
""",
    "task-list": """\
# Betting Lines Incident Plan

- [ ] Task #1: Check the scraper logs in Cloud Logging
- [ ] Task #2: Count today's lines

```sql
SELECT COUNT(*) FROM nba_raw.odds_api_props WHERE game_date = '2024-11-20'
```

Decision point: IF scrapers didn't run -> Task #5

- [ ] Task #5: Manual trigger betting scrapers

```bash
gcloud run jobs execute betting-scrapers --region=us-west2 --args="--date=<DATE>"
```
""",
    "continued-and-comments": """\
# Dead Letter Queue Recovery

## Replay the messages

```bash
# pull what is stuck
gcloud pubsub subscriptions pull dlq-sub \\
  --limit=100 \\
  --auto-ack
# replay them
./bin/replay_dlq.sh --since YYYY-MM-DD
```
""",
    "dependent-lines": """\
# Restore From Backup

## Restore each table

```bash
cd /home/naji/code/nba-stats-scraper
for table in games players; do
  python scripts/bq_restore.py --table "$table"
done
```
""",
    "sql-blocks": """\
# Verify the Backfill

## Counts

```sql
-- how many rows landed
SELECT COUNT(*) FROM nba_analytics.player_game_summary
WHERE game_date BETWEEN '2024-11-01' AND '2024-11-20';
UPDATE nba_analytics.flags SET done = TRUE WHERE id = 1;
```
""",
    "prose-only": """\
# On-call Handover

1. Read the incident channel from the last 24 hours.
2. Confirm the pager is routed to you.
""",
    "destructive": """\
# Clean Up Staging

## Drop the temp tables

```bash
bq rm -f -t nba_staging.tmp_games
gsutil rm gs://nba-staging/tmp/{START_DATE}/*
```

```sql
DROP TABLE nba_staging.tmp_players;
```
""",
}

# The scripts the corpus names that the test repository lacks (and only those).
PLANTED_MISSING = {
    ("task-list.md", None),
    ("phases.md", "backfill_jobs/phase2/run_phase2.py"),
    ("continued-and-comments.md", "./bin/replay_dlq.sh"),
    ("dependent-lines.md", "scripts/bq_restore.py"),
}
EXISTING = [
    "scripts/validate_tonight_data.py",
    "backfill_jobs/phase1/run_phase1.py",
    "backfill_jobs/phase2/run_phase2_analytics.py",
    "bin/replay_dead_letters.sh",
    "scripts/bq_backup.py",
]


def draft(name: str) -> str:
    return import_procedure(CORPUS[name], source=f"docs/{name}.md").text


def validates(text: str, tmp_path: Path) -> None:
    path = tmp_path / "sub" / "x.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    loaded = load_text(text, path)
    assert loaded.runbook.steps


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_document_gives_its_golden_draft_which_validates(name: str, tmp_path: Path) -> None:
    text = draft(name)
    golden = GOLDEN / f"{name}.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")
    validates(text, tmp_path)


def steps(name: str) -> list[dict[str, object]]:
    data = yaml.safe_load(draft(name))
    assert isinstance(data, dict)
    out = data["steps"]
    assert isinstance(out, list)
    return out


def test_numbered_steps_env_dates_and_prose() -> None:
    s = steps("numbered-steps")
    assert [x["kind"] for x in s] == ["run", "run", "manual"]
    assert s[1]["env"] == {"PYTHONPATH": "."}
    assert s[1]["command"] == "python scripts/validate_tonight_data.py --date {{ date }}"
    assert s[2]["instructions"] == "Post the result in #ops."
    data = yaml.safe_load(draft("numbered-steps"))
    assert data["vars"] == {"date": {"type": "date", "default": "2024-11-20"}}


def test_a_start_end_pair_becomes_partitions_and_a_dry_run_twin_a_comment() -> None:
    text = draft("phases")
    data = yaml.safe_load(text)
    assert data["partitions"] == {
        "var": "date",
        "dates": {"from": "{{ start }}", "to": "{{ end }}"},
    }
    assert set(data["vars"]) == {"start", "end"}
    assert len(data["steps"]) == 2
    assert "# the document runs it with --dry-run first:" in text
    # One date per partition: the range's ends are the partition's date, with a TODO each.
    assert [x["command"] for x in data["steps"]] == [
        "python backfill_jobs/phase1/run_phase1.py --start-date {{ date }} --end-date {{ date }}",
        "python backfill_jobs/phase2/run_phase2.py --start-date {{ date }} --end-date {{ date }}",
    ]
    todo = (
        "  # TODO(import): it took the range; now once per date ({{ date }}): if it needs the "
        "whole range, use {{ start }}/{{ end }} and no partitions"
    )
    assert text.splitlines().count(todo) == 2


def test_task_list_decision_point_count_and_cloud_run_args() -> None:
    text = draft("task-list")
    s = steps("task-list")
    assert [x["kind"] for x in s] == ["manual", "verify", "run"]
    assert s[1]["checks"] == [
        {"table": "nba_raw.odds_api_props", "where": "game_date = @date", "expect": {"min": 1}}
    ]
    # "didn't run": task 5 runs when the count before the decision point fell short.
    assert s[2]["when"] == "steps.task_2_count_today_s_lines.status != 'SUCCESS'"
    assert (
        '  # TODO(import): when: "scrapers didn\'t run" -> Task 5: runs if '
        "task_2_count_today_s_lines did not succeed; confirm that step answers it"
    ) in text.splitlines()
    assert '--args="--date={{ date }}"' in str(s[2]["command"])


def test_dependent_lines_stay_one_shell_step_and_the_checkout_path_goes() -> None:
    (step,) = steps("dependent-lines")
    assert step["shell"] is True
    assert "/home/naji" not in str(step["command"])
    assert step["command"] == (
        'for table in games players; do\n  python scripts/bq_restore.py --table "$table"\ndone'
    )


def test_destructive_commands_get_an_approval_in_front() -> None:
    kinds = [(x["kind"], str(x["title"])[:8]) for x in steps("destructive")]
    assert kinds == [
        ("manual", "Approve:"),
        ("run", "Drop the"),
        ("manual", "Approve:"),
        ("run", "Drop the"),
        ("manual", "Approve:"),
        ("run", "Drop the"),
    ]


def test_each_destructive_step_needs_its_approval() -> None:
    s = steps("destructive")
    for approval, step in zip(s[::2], s[1::2], strict=True):
        assert step["needs"] == [approval["id"]]
    assert s[1]["needs"] == ["approve_drop_the_temp_tables"]


def test_a_range_verify_counts_each_date_and_run_sql_takes_the_date() -> None:
    verify = steps("sql-blocks")[0]
    assert verify["checks"][0]["where"] == "game_date = @date"
    doc = """\
# Rebuild

## Rebuild the range

```sql
INSERT INTO nba_analytics.x SELECT * FROM nba_raw.x
WHERE game_date BETWEEN '2024-11-01' AND '2024-11-20';
```

```bash
python scripts/rebuild.py --end-date 2024-11-20
```
"""
    text = import_procedure(doc, source="d.md").text
    data = yaml.safe_load(text)
    assert data["partitions"]["dates"] == {"from": "{{ start }}", "to": "{{ end }}"}
    sql, one_end = data["steps"]
    assert sql["command"] == (
        'bq query --use_legacy_sql=false "INSERT INTO nba_analytics.x SELECT * FROM nba_raw.x '
        "WHERE game_date = '{{ date }}'\""
    )
    assert one_end["command"] == "python scripts/rebuild.py --end-date {{ date }}"
    assert (
        "  # TODO(import): it took an end of the range; now once per date ({{ date }}): if it "
        "needs the whole range, use {{ start }}/{{ end }} and no partitions"
    ) in text.splitlines()


def test_import_cli_uses_the_git_top_and_counts_todos(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "docs").mkdir()
    (repo / "docs" / "p.md").write_text(CORPUS["task-list"], encoding="utf-8")
    res = run_cli("import", "docs/p.md", "-o", "runbooks/p.yaml", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines()[0] == "2 TODO(import) comments to decide in the draft"
    data = yaml.safe_load((repo / "runbooks" / "p.yaml").read_text(encoding="utf-8"))
    assert data["workdir"] == str(repo.resolve())
    assert run_cli("validate", "runbooks/p.yaml", cwd=repo).returncode == 0


def _corpus_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    for rel in EXISTING:
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text("", encoding="utf-8")
    for name, text in CORPUS.items():
        (repo / "docs" / f"{name}.md").parent.mkdir(exist_ok=True)
        (repo / "docs" / f"{name}.md").write_text(text, encoding="utf-8")
    return repo


def test_plan_of_the_corpus_folder_names_exactly_the_planted_missing_scripts(
    tmp_path: Path,
) -> None:
    repo = _corpus_repo(tmp_path)
    res = run_cli("plan", "docs", "--offline", "--format", "json", cwd=repo)
    assert res.returncode == 3, res.stderr
    out = json.loads(res.stdout)
    found = {
        (Path(d["path"]).name, m["target"]): m["alternatives"]
        for d in out["documents"]
        for m in d["missing"]
    }
    assert set(found) == {x for x in PLANTED_MISSING if x[1] is not None}
    assert found["phases.md", "backfill_jobs/phase2/run_phase2.py"][0] == (
        "backfill_jobs/phase2/run_phase2_analytics.py"
    )
    assert "bin/replay_dead_letters.sh" in found["continued-and-comments.md", "./bin/replay_dlq.sh"]
    assert out["summary"] == "8 documents, 12 commands, 3 name a missing script in 3 documents"
    md = run_cli("plan", "docs", "--offline", cwd=repo)
    assert md.returncode == 3
    assert md.stdout.splitlines()[-1] == out["summary"]
    assert "| phase_2_analytics | `backfill_jobs/phase2/run_phase2.py` |" in md.stdout


def test_plan_of_a_clean_folder_exits_0(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "ok.md").write_text(CORPUS["prose-only"], encoding="utf-8")
    res = run_cli("plan", str(tmp_path), "--offline", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (
        res.stdout.splitlines()[-1]
        == "1 document, 0 commands, 0 name a missing script in 0 documents"
    )


_MD = st.lists(
    st.one_of(
        st.text(max_size=40),
        st.sampled_from(
            [
                "# T",
                "## Phase 1",
                "1. step",
                "- [ ] Task #2: x",
                "IF a -> Task #2",
                "```bash",
                "```sql",
                "```",
                "rm -rf /tmp/x",
                "X=1 python a.py 2024-13-40",
                "<DATE> {END_DATE}",
                "cd /home/u/code/r && ls",
                "SELECT COUNT(*) FROM t;",
                "\\",
                "for i in 1; do",
                "{{ x }}",
                "--dry-run",
                "{% raw %}",
                "'",
                '"',
                "`",
            ]
        ),
    ),
    max_size=25,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=_MD)
def test_import_never_crashes_and_every_draft_validates(lines: list[str], tmp_path: Path) -> None:
    text = import_procedure("\n".join(lines), source="docs/x.md").text
    validates(text, tmp_path)
