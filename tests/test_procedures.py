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

from agent.incident.importer.commands import shell_commands
from agent.incident.importer.procedure import import_procedure
from agent.incident.importer.shellgroups import group_commands, segments
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


@pytest.mark.parametrize(
    ("lines", "kind"),
    [
        # A value inside backticks cannot be quoted: the block is quoted for a person instead.
        (["```", "&", "0```", "<A0>", "0```"], "manual"),
        # `true` as an id would read back as a bool.
        (["```", "TRUE"], "run"),
    ],
)
def test_found_by_the_property_test(lines: list[str], kind: str, tmp_path: Path) -> None:
    text = import_procedure("\n".join(lines), source="docs/x.md").text
    validates(text, tmp_path)
    assert [x["kind"] for x in yaml.safe_load(text)["steps"]] == [kind]


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


# --- which lines of a shell block depend on each other -------------------------------------------


def groups(code: str) -> list[tuple[list[int], list[str]]]:
    return [(g.members, g.why) for g in group_commands([c.text for c in shell_commands(code)])]


def test_independent_one_line_commands_are_groups_of_one() -> None:
    assert groups("gcloud auth list\nbq ls nba_raw\ngsutil ls gs://b\n") == [
        ([0], []),
        ([1], []),
        ([2], []),
    ]


def test_a_variable_joins_its_assignment_to_its_last_use_only() -> None:
    code = (
        "gcloud auth list\n"
        "PROJECT=$(gcloud config get-value project)\n"
        'echo "project: $PROJECT"\n'
        'bq ls "${PROJECT}:nba_raw"\n'
        "gsutil ls gs://b\n"
    )
    assert groups(code) == [
        ([0], []),
        ([1, 2, 3], ["`$PROJECT` is set by an earlier line"]),
        ([4], []),
    ]


def test_an_unused_assignment_and_an_env_prefix_join_nothing() -> None:
    assert groups("X=1\nY=2 python a.py\necho $Y\n") == [([0], []), ([1], []), ([2], [])]


@pytest.mark.parametrize(
    ("first", "why"),
    [
        ("export PYTHONPATH=.", "`export` changes what the lines after it see"),
        ("source venv/bin/activate", "`source` changes what the lines after it see"),
        (". venv/bin/activate", "`.` changes what the lines after it see"),
        ("cd backfill_jobs", "`cd` changes what the lines after it see"),
        ("set -euo pipefail", "`set` changes what the lines after it see"),
    ],
)
def test_shell_state_holds_every_line_after_it(first: str, why: str) -> None:
    assert groups(f"bq ls\n{first}\npython a.py\npython b.py\n") == [
        ([0], []),
        ([1, 2, 3], [why]),
    ]


def test_if_then_else_fi_is_one_group_and_the_lines_around_it_are_not() -> None:
    code = 'bq ls\nif bq show t; then\n  echo "ok"\nelse\n  bq mk t\nfi\npython c.py\n'
    # A plain `echo` is no command (it titles the next one); the step keeps it from the source.
    assert groups(code) == [([0], []), ([1, 2, 3, 4], ["`if` ... `fi` spans lines"]), ([5], [])]
    s = yaml.safe_load(import_procedure(f"## If\n```bash\n{code}```\n", source="i.md").text)
    assert s["steps"][1]["command"] == 'if bq show t; then\n  echo "ok"\nelse\n  bq mk t\nfi'


def test_a_while_loop_with_a_redirect_is_one_group() -> None:
    code = 'while read -r t; do\n  bq rm -f "s.$t"\ndone < tables.txt\npython d.py\n'
    assert groups(code) == [([0, 1, 2], ["`while` ... `done` spans lines"]), ([3], [])]


def test_an_exit_status_read_joins_the_line_before() -> None:
    assert groups("python a.py\nbq ls\necho $?\n") == [
        ([0], []),
        ([1, 2], ["it reads the exit status or job of the line before it"]),
    ]


def test_here_docs_continuations_and_pipes_across_lines_are_one_command_each() -> None:
    code = (
        "cat <<SQL > q.sql\nSELECT 1\nSQL\n"
        "python f.py \\\n  --date 2024-11-20 \\\n  --force\n"
        "bq ls nba_raw |\n  grep games\n"
        "python g.py\n"
    )
    commands = shell_commands(code)
    assert [c.text for c in commands] == [
        "cat <<SQL > q.sql\nSELECT 1\nSQL",
        "python f.py --date 2024-11-20 --force",
        "bq ls nba_raw | grep games",
        "python g.py",
    ]
    assert groups(code) == [([0], []), ([1], []), ([2], []), ([3], [])]


def test_segments_see_command_words_outside_quotes_and_substitutions() -> None:
    assert segments("X=$(date +%F; echo a) && echo 'a; b' | grep \"$X\" # note") == [
        ["X=$(date +%F; echo a)"],
        ["echo", "'a; b'"],
        ["grep", '"$X"'],
    ]


SHAPES = """\
# Shapes

## Project
```bash
gcloud auth list
PROJECT=$(gcloud config get-value project)
bq ls "$PROJECT:nba_raw"
gsutil ls gs://nba-backups
```

## Here-doc
```bash
cat <<SQL > /tmp/q.sql
SELECT 1
SQL
python scripts/e.py
```

## Environment
```bash
python scripts/first.py
export PYTHONPATH=.
python scripts/a.py
```
"""


def test_a_block_splits_into_steps_where_its_lines_are_independent() -> None:
    s = yaml.safe_load(import_procedure(SHAPES, source="s.md").text)["steps"]
    assert [(x["id"], x["command"], x.get("shell", False)) for x in s] == [
        ("project", "gcloud auth list", False),
        (
            "project_2",
            'PROJECT=$(gcloud config get-value project)\nbq ls "$PROJECT:nba_raw"',
            True,
        ),
        ("project_3", "gsutil ls gs://nba-backups", False),
        ("here_doc", "cat <<SQL > /tmp/q.sql\nSELECT 1\nSQL", True),
        ("here_doc_2", "python scripts/e.py", False),
        ("environment", "python scripts/first.py", False),
        ("environment_2", "export PYTHONPATH=.\npython scripts/a.py", True),
    ]
    text = import_procedure(SHAPES, source="s.md").text
    assert (
        "  # its lines depend on each other (`$PROJECT` is set by an earlier line): one shell"
        in text.splitlines()
    )


# --- code blocks under one list item --------------------------------------------------------------


def test_several_blocks_under_one_item_are_its_steps_in_order() -> None:
    doc = """\
# Restore

## Restore the table

1. Snapshot, then restore:

   ```bash
   bq cp nba.games nba.games_snap
   ```

   ```bash
   python scripts/restore.py --table games
   python scripts/check.py --table games
   ```

2. Tell the channel.

## Next heading

```bash
python scripts/after.py
```
"""
    s = yaml.safe_load(import_procedure(doc, source="r.md").text)["steps"]
    assert [(x["title"], x.get("command", "")) for x in s] == [
        ("Snapshot, then restore", "bq cp nba.games nba.games_snap"),
        ("Snapshot, then restore", "python scripts/restore.py --table games"),
        ("Snapshot, then restore", "python scripts/check.py --table games"),
        ("Tell the channel", ""),
        ("Next heading", "python scripts/after.py"),
    ]


def test_unindented_blocks_after_an_item_are_its_until_prose_at_the_margin() -> None:
    doc = """\
# Run

1. Load:

```bash
python scripts/load.py
```

```bash
python scripts/load_more.py
```

Then, whatever happened:

```bash
python scripts/report.py
```
"""
    s = yaml.safe_load(import_procedure(doc, source="r.md").text)["steps"]
    # No heading: the block after the prose is titled by its command.
    assert [x["title"] for x in s] == ["Load", "Load", "python scripts/report.py"]


# --- decision points ----------------------------------------------------------------------------


DECISIONS = """\
# Scraper Incident

- [ ] Task #1: Count the scraped games

```sql
SELECT COUNT(*) FROM nba_raw.games WHERE game_date = '2024-11-20'
```

- [ ] Task #2: Check the odds feed

```bash
python scripts/check_odds.py --date 2024-11-20
```

Decision point: IF Task #1 found the games -> Task #3

- [ ] Task #3: Export the day

```bash
python bin/export_day.py --date 2024-11-20
python bin/publish_day.py --date 2024-11-20
```

IF the export is stale -> Task #1
"""


def test_a_decision_naming_a_task_reads_that_task_and_holds_every_step_of_its_target() -> None:
    text = import_procedure(DECISIONS, source="d.md").text
    s = yaml.safe_load(text)["steps"]
    when = "steps.task_1_count_the_scraped_games.status == 'SUCCESS'"
    assert [x.get("when") for x in s] == [None, None, when, when]
    assert (
        '  # TODO(import): when: "Task #1 found the games" -> Task 3: runs if '
        "task_1_count_the_scraped_games succeeded; confirm that step answers it"
    ) in text.splitlines()


def test_a_decision_going_back_to_an_earlier_task_cannot_be_a_when() -> None:
    text = import_procedure(DECISIONS, source="d.md").text
    assert (
        '  # TODO(import): when: "the export is stale" -> Task 1 goes back to an earlier task: '
        "run it again by hand"
    ) in text.splitlines()
    doc = DECISIONS.replace("-> Task #1", "-> Task #2")
    s = yaml.safe_load(import_procedure(doc, source="d.md").text)["steps"]
    assert "when" not in s[1]  # not a placeholder on task 2: it would run on a guess


def test_a_decision_before_any_step_is_a_placeholder_on_the_step_before_its_target() -> None:
    doc = """\
# Plan

Decision point: IF the feed is down -> Task #2

- [ ] Task #1: Look at the dashboard
- [ ] Task #2: Page the vendor
"""
    text = import_procedure(doc, source="p.md").text
    s = yaml.safe_load(text)["steps"]
    assert s[1]["when"] == "steps.task_1_look_at_the_dashboard.status == 'SUCCESS'"
    assert (
        '  # TODO(import): when: a placeholder: "the feed is down" -> Task 2 reads no step '
        "before it: write the condition"
    ) in text.splitlines()


# --- a destructive step does not run without its approval -----------------------------------------


CLEANUP = """\
# Clean Up Staging

1. Mark the start:

```bash
touch before.marker
```

2. Remove the temp files:

```bash
sh bin/gsutil rm -r gs://nba-staging/tmp
```

3. Mark the end:

```bash
touch after.marker
```
"""


def _cleanup_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "docs").mkdir()
    (repo / "docs" / "cleanup.md").write_text(CLEANUP, encoding="utf-8")
    # A stand-in for gsutil: "deleting" leaves a file behind, so a run that deletes shows.
    (repo / "bin").mkdir()
    (repo / "bin" / "gsutil").write_text("touch deleted.marker\n", encoding="utf-8")
    res = run_cli("import", "docs/cleanup.md", "-o", "runbooks/cleanup.yaml", cwd=repo)
    assert res.returncode == 0, res.stderr
    return repo


def _run_steps(repo: Path) -> dict[str, dict[str, object]]:
    (run_json,) = (repo / "reports").glob("*/run.json")
    record = json.loads(run_json.read_text(encoding="utf-8"))
    return {s["id"]: s for s in record["steps"]}


def test_an_imported_destructive_step_is_skipped_when_its_approval_is(tmp_path: Path) -> None:
    repo = _cleanup_repo(tmp_path)
    res = run_cli("run", "runbooks/cleanup.yaml", "--reports", "reports", cwd=repo)
    assert res.returncode == 3, res.stderr
    assert not (repo / "deleted.marker").exists()
    assert (repo / "before.marker").exists() and (repo / "after.marker").exists()
    s = _run_steps(repo)
    assert (s["approve_remove_the_temp_files"]["status"], s["remove_the_temp_files"]["status"]) == (
        "SKIPPED",
        "SKIPPED",
    )
    assert s["remove_the_temp_files"]["skipped_by"] == "needs"
    assert s["remove_the_temp_files"]["reason"] == (
        "needs approve_remove_the_temp_files, which ended SKIPPED"
    )
    assert (
        "[remove_the_temp_files] ⏭️ SKIPPED in 0.0s: needs approve_remove_the_temp_files, "
        "which ended SKIPPED" in res.stderr
    )


def test_an_imported_destructive_step_runs_once_approved(tmp_path: Path) -> None:
    repo = _cleanup_repo(tmp_path)
    res = run_cli("run", "runbooks/cleanup.yaml", "--reports", "reports", "--yes", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert (repo / "deleted.marker").exists()
    assert _run_steps(repo)["remove_the_temp_files"]["status"] == "SUCCESS"
