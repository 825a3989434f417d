"""Tests of agent/incident/importer/: markdown action plans (tests/plans/*.md) -> draft runbooks.

The golden file ``tests/golden/import_orchestration_failures.yaml`` is the full draft of
``tests/plans/2026-01-25-orchestration-failures.md``. After an intended change to the importer,
regenerate it and review the diff::

    UPDATE_GOLDEN=1 /work/venv/bin/python -m pytest tests/test_importer.py
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.errors import UsageError
from agent.incident.importer import PlanImportError, import_plan
from agent.plan.loader import LoadedRunbook, load_runbook
from agent.plan.templating import render, render_command

HERE = Path(__file__).parent
PLANS = sorted((HERE / "plans").glob("*.md"))
ORCHESTRATION = HERE / "plans" / "2026-01-25-orchestration-failures.md"
PREDICTIONS = HERE / "plans" / "2026-01-28-prediction-gaps.md"
BOXSCORES = HERE / "plans" / "2026-02-03-boxscore-gap.md"
GOLDEN = HERE / "golden" / "import_orchestration_failures.yaml"
SOURCE = "docs/incidents/2026-01-25-ORCHESTRATION-FAILURES-ACTION-PLAN.md"


def draft(plan: Path, action: str | None = None, *, source: str = SOURCE) -> str:
    return import_plan(plan.read_text(encoding="utf-8"), source=source, action=action)


def load(text: str, tmp_path: Path) -> LoadedRunbook:
    """Write the draft one folder below tmp_path (as the schema comment expects) and load it."""
    path = tmp_path / "sub" / "x.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return load_runbook(path)


def steps_of(text: str) -> dict[str, dict[str, Any]]:
    data = yaml.safe_load(text)
    return {s["id"]: s for s in data["steps"]}


def step_block(text: str, step_id: str) -> str:
    """The YAML lines of one step, comments included, up to the next blank line."""
    start = text.index(f"  - id: {step_id}\n")
    end = text.find("\n\n", start)
    return text[start : end if end >= 0 else len(text)]


def action_numbers(plan: Path) -> list[str]:
    return re.findall(r"^#{3,4} Action (\d+):", plan.read_text(encoding="utf-8"), re.M)


# --- every plan, every action: the draft passes `runbook validate` -------------------------------


def test_there_are_at_least_three_plans() -> None:
    assert len(PLANS) >= 3


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: p.stem)
def test_every_draft_loads(plan: Path, tmp_path: Path) -> None:
    numbers = action_numbers(plan)
    assert numbers, "the plan has Action N headings"
    for action in [None, *numbers]:
        text = draft(plan, action)
        loaded = load(text, tmp_path)
        assert loaded.runbook.version == 1
        assert re.fullmatch(r"[a-z0-9][a-z0-9_-]*", loaded.runbook.id)
        assert text.startswith("# yaml-language-server: $schema=../runbook.schema.json\n")
        assert loaded.runbook.incident is not None
        assert loaded.runbook.incident.reference == SOURCE
        # Every string command splits into words as the executor will split it.
        for step in loaded.runbook.steps:
            command = getattr(step, "command", None)
            if command is not None:
                argv = render_command(command, {"date": "2026-01-25"}, shell=step.shell)
                assert argv and all(argv)


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: p.stem)
def test_all_actions_are_imported_in_order_with_prefixed_ids(plan: Path) -> None:
    ids = list(steps_of(draft(plan)))
    prefixes = [int(m.group(1)) for m in (re.match(r"a(\d+)_", i) for i in ids) if m]
    assert len(prefixes) == len(ids)
    assert prefixes == sorted(prefixes)
    assert sorted(set(prefixes)) == [int(n) for n in action_numbers(plan)]


# --- kinds ---------------------------------------------------------------------------------------


def test_kinds_are_guessed_from_the_commands() -> None:
    steps = steps_of(draft(ORCHESTRATION))
    kinds = {sid: s["kind"] for sid, s in steps.items()}
    assert kinds["a3_run_upcoming_team_game_context_processor"] == "run"
    assert kinds["a3_run_team_defense_game_summary_processor"] == "run"
    assert kinds["a3_verify_record_counts"] == "verify"
    assert kinds["a3_regenerate_api_exports"] == "export"
    assert kinds["a3_run_validation_script"] == "validate"
    assert kinds["a1_check_the_scheduler_job_state"] == "run"
    assert kinds["a4_check_the_alert_wiring_with_a_dry_run"] == "run"  # python -c over lines

    predictions = steps_of(draft(PREDICTIONS))
    assert predictions["a2_check_prediction_coverage"]["kind"] == "validate"  # check_*.py
    assert predictions["a3_run_the_daily_export"]["kind"] == "export"  # daily_export.py
    assert predictions["a3_trigger_the_scheduled_export_job_as_well"]["kind"] == "export"
    assert predictions["a3_trigger_the_scheduled_export_job_as_well"]["command"] == (
        "gcloud scheduler jobs run phase6-tonight-export --location=us-west2"
    )
    assert predictions["a3_trigger_the_scheduled_export_job_as_well_2"]["kind"] == "export"
    assert predictions["a2_trigger_phase_5_for_the_date"]["kind"] == "run"  # not an export topic


def test_validate_steps_accept_exit_1_and_suggest_the_usual_captures() -> None:
    text = draft(ORCHESTRATION, "3")
    step = steps_of(text)["run_validation_script"]
    assert step["ok_exit_codes"] == [0, 1]
    assert "capture" not in step  # left commented out for a person to keep or drop
    block = step_block(text, "run_validation_script")
    assert "    #   issues: {pattern: '(\\d+) ISSUES FOUND', type: int, default: 0}" in block


def test_one_step_per_command_with_comments_as_titles() -> None:
    steps = steps_of(draft(ORCHESTRATION))
    resume, run = steps["a1_resume_and_trigger_the_job"], steps["a1_resume_and_trigger_the_job_2"]
    assert resume["command"] == "gcloud scheduler jobs resume same-day-phase3 --location=us-west2"
    assert run["command"] == "gcloud scheduler jobs run same-day-phase3 --location=us-west2"
    assert run["title"] == "Resume and trigger the job (2)"
    # The comment before a command names the step; the id still comes from the caption.
    assert steps["a1_check_the_scheduler_job_state"]["title"] == "Inspect the job that timed out"
    predictions = steps_of(draft(PREDICTIONS))
    # `export X=Y` becomes env of the commands after it; an inline comment joins the caption.
    scraper = predictions["a1_re_run_the_props_scraper_for_the_2"]
    assert scraper["env"] == {"SCRAPER_ENV": "prod"}
    assert scraper["title"] == "Re-run the props scraper for the missing games (second market)"


def test_shell_only_where_the_command_needs_it() -> None:
    steps = steps_of(draft(ORCHESTRATION, "3"))
    team = steps["run_upcoming_team_game_context_processor"]
    # `PYTHONPATH=. python ...`: the assignment becomes env, no shell needed.
    assert team["env"] == {"PYTHONPATH": "."}
    assert "shell" not in team
    assert team["command"].startswith("python -m data_processors.analytics.upcoming_team_game")
    assert "\\" not in team["command"]  # continuation lines joined
    boxscores = steps_of(draft(BOXSCORES))
    assert boxscores["a1_list_the_gamebook_files_that_exist"]["shell"] is True  # a pipe
    # `a && b` of plain commands: two steps, the second needs the first.
    first = boxscores["a2_rebuild_phase_4_features_and_check_them"]
    second = boxscores["a2_rebuild_phase_4_features_and_check_them_2"]
    assert "shell" not in first
    assert second["needs"] == ["a2_rebuild_phase_4_features_and_check_them"]
    assert second["kind"] == "validate"
    # `cd DIR && cmd`: a workdir, no shell.
    export = steps_of(draft(PREDICTIONS))["a3_run_the_daily_export"]
    assert export["workdir"] == "/srv/nba-stats-scraper"
    assert "shell" not in export


# --- SQL -----------------------------------------------------------------------------------------


def test_a_simple_count_becomes_a_verify_check_with_the_date_var(tmp_path: Path) -> None:
    loaded = load(draft(ORCHESTRATION, "3"), tmp_path)
    verify = next(s for s in loaded.runbook.steps if s.id == "verify_record_counts")
    assert verify.kind == "verify"
    checks = [(c.table, c.where, c.expect) for c in verify.checks]  # type: ignore[union-attr]
    assert checks == [
        ("nba_analytics.upcoming_team_game_context", "game_date = @date", 16),
        ("nba_analytics.team_defense_game_summary", "game_date = @date", 16),
    ]
    # bq query with a simple count, in a bash block, too; "at least N" is {min: N}.
    predictions = steps_of(draft(PREDICTIONS))
    count = predictions["a1_count_the_props_loaded"]
    assert count["kind"] == "verify"
    assert count["checks"] == [
        {
            "table": "nba_raw.bettingpros_player_points_props",
            "where": "game_date = @date",
            "expect": {"min": 300},
        }
    ]
    # Backquoted table, `AS n`, a `--` comment and a trailing semicolon.
    box = steps_of(draft(BOXSCORES))["a1_check_the_boxscore_count"]
    assert box["checks"][0]["table"] == "nba_raw.nbac_team_boxscore"
    assert box["title"] == "Two rows per game are expected"


def test_other_sql_is_kept_as_a_bq_query_run_step() -> None:
    text = draft(ORCHESTRATION)
    step = steps_of(text)["a4_measure_coverage_by_team_for_the_last"]
    assert step["kind"] == "run"
    assert step["command"].startswith('bq query --use_legacy_sql=false "SELECT game_date,')
    assert "GROUP BY game_date" in step["command"]
    assert "BETWEEN '2026-01-19' AND '{{ date }}'" in step["command"]
    assert "  # SQL kept as a bq query command" in text
    argv = render_command(step["command"], {"date": "2026-01-25"})
    assert argv[:3] == ["bq", "query", "--use_legacy_sql=false"]
    assert len(argv) == 4 and argv[3].startswith("SELECT game_date")
    bq = steps_of(draft(PREDICTIONS))["a1_check_which_games_have_prop_lines"]
    assert bq["kind"] == "run" and "GROUP BY game_id" in bq["command"]


# --- dates ---------------------------------------------------------------------------------------


def test_the_plan_date_becomes_a_var() -> None:
    text = draft(ORCHESTRATION, "3")
    data = yaml.safe_load(text)
    assert data["vars"] == {
        "date": {
            "type": "date",
            "default": "2026-01-25",
            "description": "the date the plan's commands name",
        }
    }
    assert data["title"] == "Backfill Game Context Data for {{ date }}"
    commands = [s["command"] for s in data["steps"] if "command" in s]
    assert all("2026-01-25" not in c for c in commands)
    team = steps_of(text)["run_upcoming_team_game_context_processor"]["command"]
    assert "--start_date={{ date }} --end_date={{ date }}" in team
    defense = steps_of(text)["run_team_defense_game_summary_processor"]["command"]
    assert "--start-date={{ date }} --end-date={{ date }}" in defense


def test_only_the_same_date_is_templated() -> None:
    steps = steps_of(draft(BOXSCORES))
    backfill = steps["a1_run_the_bdl_boxscore_backfill"]["command"]
    # 2026-02-02 is the plan's date; 2026-02-01 (once) stays as written.
    assert "--start-date 2026-02-01 --end-date {{ date }}" in backfill
    assert yaml.safe_load(draft(BOXSCORES))["vars"]["date"]["default"] == "2026-02-02"


def test_no_date_no_var(tmp_path: Path) -> None:
    plan = (
        "# Cache Flush Plan\n\n## Executive Summary\n\nThe cache is stale.\n\n"
        "## Recommended Actions\n\n### IMMEDIATE\n\n#### Action 1: Flush the cache\n\n"
        "**Steps:**\n1. **Flush**\n   ```bash\n   python bin/flush_cache.py --all\n   ```\n\n"
        "**Validation:**\n- `nba_reference.cache_state` has 0 rows\n"
    )
    text = import_plan(plan, source="p.md")
    loaded = load(text, tmp_path)
    assert loaded.runbook.vars == {}
    checks = next(s for s in loaded.runbook.steps if s.kind == "verify").checks  # type: ignore[union-attr]
    assert checks[0].where is None and checks[0].expect == 0


# --- expected results ----------------------------------------------------------------------------


def test_expected_results_are_kept_as_comments_beside_expect() -> None:
    text = draft(ORCHESTRATION, "3")
    verify = step_block(text, "verify_record_counts")
    assert verify.endswith(
        "    expect: []\n"
        "    # expected: `nba_analytics.upcoming_team_game_context` has 16 records\n"
        "    # expected: `nba_analytics.team_defense_game_summary` has 16 records"
    )
    assert "        # the plan's validation results: ✗ 0/16 (0%)" in verify
    validation = step_block(text, "run_validation_script")
    assert validation.endswith("    expect: []\n    # expected: Validation script shows 0 issues")
    for step in steps_of(text).values():
        if step["kind"] != "manual":
            assert step["expect"] == []


def test_validation_counts_without_a_count_step_get_their_own_verify_step() -> None:
    text = draft(PREDICTIONS)
    step = steps_of(text)["a3_expected_counts"]
    assert step["kind"] == "verify"
    assert step["checks"] == [
        {"table": "api_export.tonight_predictions", "where": "game_date = @date", "expect": 9}
    ]
    assert "    # expected: `api_export.tonight_predictions` has 9 records" in step_block(
        text, "a3_expected_counts"
    )
    # A result that names no table goes beside the step it talks about.
    assert "    # expected: check_prediction_coverage.py exits 0" in step_block(
        text, "a2_check_prediction_coverage"
    )


# --- manual steps --------------------------------------------------------------------------------


def test_python_sketches_and_prose_become_manual_steps() -> None:
    steps = steps_of(draft(ORCHESTRATION))
    sketch = steps["a2_wrap_the_phase_trigger_in_a_retry_with"]
    assert sketch["kind"] == "manual"
    assert "command" not in sketch
    assert "Code sketch from the plan" in sketch["instructions"]
    assert (
        "    def trigger_phase(phase: str, game_date: str, attempts: int = 3) -> None:"
        in (sketch["instructions"])
    )
    prose = steps["a1_confirm_in_the_cloud_run_logs_that"]
    assert prose["kind"] == "manual"
    assert prose["instructions"] == (
        "Confirm in the Cloud Run logs that Phase 3 started "
        "(look for `Phase 3 triggered` within 5 minutes)"
    )
    doc = steps["a5_write_the_backfill_procedure_in_docs"]
    assert doc["instructions"] == (
        "Write the backfill procedure in docs/runbooks/backfill.md, naming the scripts that exist"
    )


# --- --action and dependencies -------------------------------------------------------------------


@pytest.mark.parametrize(
    "selector",
    [
        "3",
        "Action 3",
        "action 3",
        "Backfill Game Context Data",
        "Action 3: Backfill Game Context Data",
    ],
)
def test_action_selects_one_action(selector: str) -> None:
    text = draft(ORCHESTRATION, selector)
    data = yaml.safe_load(text)
    assert data["incident"] == {
        "reference": SOURCE,
        "action": "Action 3",
        "plan": "Orchestration Failures - Action Plan",
    }
    assert data["id"] == "orchestration-failures-action-plan-action-3"
    assert [s["id"] for s in data["steps"]] == [
        "run_upcoming_team_game_context_processor",
        "run_team_defense_game_summary_processor",
        "verify_record_counts",
        "regenerate_api_exports",
        "run_validation_script",
    ]
    assert all("needs" not in s for s in data["steps"])
    assert "  # depends on: Action 1: Restart Same-Day Phase 3 Scheduler (run it first)" in text


def test_unknown_action_names_the_plan_actions() -> None:
    with pytest.raises(
        PlanImportError,
        match="no action '9' in the plan; its actions: "
        "'Action 1: Restart Same-Day Phase 3 Scheduler'",
    ):
        draft(ORCHESTRATION, "9")
    assert issubclass(PlanImportError, UsageError)


def test_a_plan_without_actions_is_an_error() -> None:
    with pytest.raises(PlanImportError, match="no actions found"):
        import_plan("# Notes\n\nNothing to do.\n", source="notes.md")


def test_prose_dependencies_become_needs(tmp_path: Path) -> None:
    text = draft(ORCHESTRATION)
    loaded = load(text, tmp_path)
    graph = loaded.graph
    action1 = [s.id for s in loaded.runbook.steps if s.id.startswith("a1_")]
    action3 = [s.id for s in loaded.runbook.steps if s.id.startswith("a3_")]
    # "Action 1 -> Blocks: Action 3": the first step of Action 3 needs every step of Action 1.
    assert graph.needs[action3[0]] == action1
    assert graph.needs["a4_measure_coverage_by_team_for_the_last"] == action3
    assert graph.needs["a2_wrap_the_phase_trigger_in_a_retry_with"] == []
    assert "  # needs: Action 1 blocks Action 3 in the plan" in text
    # "**Depends on:** Action 1" and "Requires Action 1" in the action's own fields.
    predictions = steps_of(draft(PREDICTIONS))
    assert predictions["a2_trigger_phase_5_for_the_date"]["needs"][0] == (
        "a1_check_which_games_have_prop_lines"
    )
    boxscores = steps_of(draft(BOXSCORES))
    assert boxscores["a2_rebuild_the_summaries"]["needs"] == [
        "a1_list_the_gamebook_files_that_exist",
        "a1_run_the_bdl_boxscore_backfill",
        "a1_check_the_boxscore_count",
    ]


# --- header and report ---------------------------------------------------------------------------


def test_header_summary_and_report() -> None:
    text = draft(ORCHESTRATION)
    data = yaml.safe_load(text)
    assert data["version"] == 1
    assert data["id"] == "orchestration-failures-action-plan"
    assert data["title"] == "Orchestration Failures - Action Plan"
    assert data["incident"]["action"] == "Actions 1-5"
    assert data["summary"].startswith("Phase 3 orchestration failed overnight for {{ date }}:")
    assert data["summary"].endswith("for the 8 scheduled games.")
    assert data["warehouse"] == {"backend": "duckdb"}
    assert data["report"]["lessons"] == []
    assert data["report"]["next_steps"] == {
        "Success Criteria": [
            "All 8 games have team context (16 records in `upcoming_team_game_context`)",
            "Validation script reports 0 issues for {{ date }}",
            "Phase 3 scheduler completes without timeout on the next run",
        ]
    }
    assert "#   ✗ nba_analytics.upcoming_team_game_context: 0/16 (0%)" in text
    assert "  # - Backfill mode bypasses the stale-data check on odds lines" in text
    assert "  # - Notify the predictions team when Action 3 is complete" in text
    assert "  # note: Rollback: `gcloud scheduler jobs update http" in draft(PREDICTIONS)


def test_schema_path_is_a_parameter() -> None:
    text = import_plan(
        ORCHESTRATION.read_text(encoding="utf-8"),
        source="x.md",
        schema_path="../../runbooks/runbook.schema.json",
    )
    assert text.splitlines()[0] == (
        "# yaml-language-server: $schema=../../runbooks/runbook.schema.json"
    )


# --- awkward input -------------------------------------------------------------------------------


AWKWARD = """# Awkward: {{ braces }} Plan

## Executive Summary

Counts use `${#games[@]}` and {% raw %} text on 2026-03-01. Second sentence.

## Recommended Actions

### HIGH

#### Action 7: Shell "Things" & {#comments#}

**Priority:** P1 - HIGH

**Steps:**
1. **Count with a heredoc**
   ```bash
   python - <<'EOF'
   print({{'a': 1}})
   EOF
   ```
2. **Array length**
   ```sh
   games=(a b); echo "${#games[@]} games on 2026-03-01"
   ```
3. **Python -c with braces**
   ```bash
   python -c "d = {'x': 1}; print(f'{{d}} 2026-03-01')"
   ```
4. **Unlabelled output**
   ```
   Records saved: 16
   ```
5. **Unbalanced quote**
   ```bash
   echo "oops
   ```
"""


def test_awkward_text_is_escaped_and_still_loads(tmp_path: Path) -> None:
    text = import_plan(AWKWARD, source="weird: path #1.md")
    loaded = load(text, tmp_path)
    rb = loaded.runbook
    assert render(rb.title, {"date": "2026-03-01"}) == "Awkward: {{ braces }} Plan"
    assert rb.summary is not None
    assert render(rb.summary, {"date": "2026-03-09"}) == (
        "Counts use `${#games[@]}` and {% raw %} text on 2026-03-09. Second sentence."
    )
    one = load(import_plan(AWKWARD, source="p.md", action="7"), tmp_path).runbook
    assert render(one.title, {"date": "2026-03-09"}) == (
        'Shell "Things" & {#comments#} for 2026-03-09'
    )
    assert rb.incident is not None and rb.incident.reference == "weird: path #1.md"
    steps = {s.id: s for s in rb.steps}
    heredoc = steps["a7_count_with_a_heredoc"]
    assert heredoc.shell is True  # type: ignore[union-attr]
    argv = render_command(heredoc.command, {"date": "2026-03-01"}, shell=True)  # type: ignore[union-attr]
    assert argv[2] == "python - <<'EOF'\nprint({{'a': 1}})\nEOF"
    array = steps["a7_array_length"]
    argv = render_command(array.command, {"date": "2026-03-01"}, shell=True)  # type: ignore[union-attr]
    assert argv[2] == 'games=(a b); echo "${#games[@]} games on 2026-03-01"'
    braces = steps["a7_python_c_with_braces"]
    argv = render_command(braces.command, {"date": "2026-03-09"})  # type: ignore[union-attr]
    assert argv == ["python", "-c", "d = {'x': 1}; print(f'{{d}} 2026-03-09')"]
    assert steps["a7_unlabelled_output"].kind == "manual"
    assert steps["a7_unbalanced_quote"].kind == "manual"


# --- golden --------------------------------------------------------------------------------------


def test_golden_full_draft(tmp_path: Path) -> None:
    text = draft(ORCHESTRATION)
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8")
    load(text, tmp_path)


# --- markdown read as CommonMark (markdown-it-py) ------------------------------------------------


def _one_action(body: str, *, title: str = "# Plan\n\n## Recommended Actions\n\n") -> str:
    return f"{title}#### Action 1: Do it\n\n**Steps:**\n{body}"


def test_a_fence_with_an_info_string_does_not_close_a_block() -> None:
    plan = _one_action(
        "1. **Show the snippet**\n"
        "   ```bash\n"
        "   cat <<'EOF' > notes.md\n"
        "   ```bash\n"
        "   EOF\n"
        "   ```\n"
    )
    steps = steps_of(import_plan(plan, source="p.md"))
    assert list(steps) == ["a1_show_the_snippet"]
    step = steps["a1_show_the_snippet"]
    assert step["shell"] is True
    assert step["command"] == "cat <<'EOF' > notes.md\n```bash\nEOF"


def test_setext_headings_are_headings() -> None:
    plan = (
        "Cache Flush Plan\n================\n\n"
        "Executive Summary\n-----------------\n\nThe cache is stale.\n\n"
        "Recommended Actions\n-------------------\n\n"
        "#### Action 1: Flush the cache\n\n**Steps:**\n"
        "1. **Flush**\n   ```bash\n   python bin/flush_cache.py --all\n   ```\n"
    )
    data = yaml.safe_load(import_plan(plan, source="p.md"))
    assert data["title"] == "Cache Flush Plan"
    assert data["incident"]["plan"] == "Cache Flush Plan"
    assert data["summary"] == "The cache is stale."
    assert [s["id"] for s in data["steps"]] == ["a1_flush"]


def test_fences_inside_blockquotes_are_found() -> None:
    plan = _one_action("1. **Flush**\n\n> ```bash\n> python bin/flush_cache.py --all\n> ```\n")
    step = steps_of(import_plan(plan, source="p.md"))["a1_flush"]
    assert step["kind"] == "run"
    assert step["command"] == "python bin/flush_cache.py --all"
