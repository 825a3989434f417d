"""Tests of agent/output/facts.py: every derived number of a run record, with exact values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from agent.output import facts
from agent.output.mermaid import gantt_time, label
from agent.record import Baseline, CheckResult, RunRecord, Status, StepResult

T0 = datetime(2026, 1, 26, 5, 14, 32, tzinfo=UTC)


def step(sid: str = "s", status: Status | None = Status.SUCCESS, **kw: Any) -> StepResult:
    """A step result of kind command."""
    return StepResult(id=sid, kind="command", title=sid.upper(), status=status, **kw)


def record(**kw: Any) -> RunRecord:
    """A run record started at T0."""
    fields: dict[str, Any] = {
        "run_id": "r1",
        "runbook_id": "rb",
        "runbook_path": "rb.yaml",
        "runbook_sha256": "",
        "title": "T",
        "operator": "op",
        "host": "h",
        "tool_version": "0",
        "started_at": T0,
    }
    fields.update(kw)
    return RunRecord(**fields)


# --------------------------------------------------------------------------- values and time


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "no match"),
        (True, "yes"),
        (False, "no"),
        (1 / 3, "0.333333"),
        (25, "25"),
        (["a", 2], "a — 2"),
        ({"x": 1, "y": None}, "x: 1, y: no match"),
    ],
)
def test_value_text(value: Any, text: str) -> None:
    assert facts.value_text(value) == text


def test_is_number_excludes_booleans() -> None:
    assert [facts.is_number(v) for v in (1, 2.5, True, "3", None)] == [
        True,
        True,
        False,
        False,
        False,
    ]


def test_utc_and_timestamp() -> None:
    naive = datetime(2026, 1, 26, 5, 0, 0)  # naive: taken as UTC
    plus2 = datetime(2026, 1, 26, 7, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    assert facts.utc(naive) == datetime(2026, 1, 26, 5, 0, 0, tzinfo=UTC)
    assert facts.timestamp(plus2) == "2026-01-26 05:00:00"


def test_run_seconds() -> None:
    assert facts.run_seconds(record()) is None
    assert facts.run_seconds(record(ended_at=T0 + timedelta(seconds=90.5))) == 90.5


def test_duration_text() -> None:
    assert facts.duration_text(None) == ""
    assert facts.duration_text(3.0) == "3.0s"


# --------------------------------------------------------------------------- words and numbers


@pytest.mark.parametrize(
    ("value", "text", "signed"),
    [(62.5, "62.5%", "+62.5%"), (100.0, "100%", "+100%"), (-4.04, "-4%", "-4%"), (0, "0%", "+0%")],
)
def test_percent_texts(value: float, text: str, signed: str) -> None:
    assert facts.percent_text(value) == text
    assert facts.signed_percent_text(value) == signed


@pytest.mark.parametrize(
    ("word", "n", "text"),
    [
        ("game", 1, "1 game"),
        ("game", 3, "3 games"),
        ("match", 2, "2 matches"),
        ("entry", 2, "2 entries"),
        ("day", 2, "2 days"),
        ("box", 0, "0 boxes"),
    ],
)
def test_counted(word: str, n: int, text: str) -> None:
    assert facts.counted(n, word) == text


@pytest.mark.parametrize(
    ("column", "noun"),
    [
        ("game_id", "game"),
        ("team_abbr", "team"),
        ("Player_Lookup", "player"),
        ("game_date", "game date"),
        ("_id", " id"),  # a bare suffix is not stripped
    ],
)
def test_key_noun(column: str, noun: str) -> None:
    assert facts.key_noun(column) == noun


# --------------------------------------------------------------------------- statuses


def test_marks_are_one_table() -> None:
    assert facts.STATUS_MARK[Status.NOT_FOUND] == "⚠️"
    assert facts.STATUS_MARK[None] == "⏳"
    assert set(facts.STATUS_MARK) == {*Status, None}


def test_status_words() -> None:
    assert facts.status_words(Status.NOT_FOUND) == "NOT FOUND"
    assert facts.status_words(None) == "NOT FINISHED"


def test_status_tally_keeps_first_seen_order() -> None:
    steps = [step("a", Status.PARTIAL), step("b"), step("c", Status.PARTIAL), step("d", None)]
    assert list(facts.status_tally(steps).items()) == [
        (Status.PARTIAL, 2),
        (Status.SUCCESS, 1),
        (None, 1),
    ]


@pytest.mark.parametrize(
    ("skipped_by", "on_purpose"),
    [("when", True), ("selection", True), ("needs", False), ("manual", False), (None, False)],
)
def test_skipped_on_purpose(skipped_by: str | None, on_purpose: bool) -> None:
    skipped = step(status=Status.SKIPPED, skipped_by=skipped_by)
    assert facts.skipped_on_purpose(skipped) is on_purpose
    assert not facts.skipped_on_purpose(step(status=Status.FAILED, skipped_by="when"))


def test_priority_rank() -> None:
    assert [facts.priority_rank(p) for p in ("CRITICAL", "LOW", "someday")] == [0, 3, 4]


# --------------------------------------------------------------------------- checks


def test_checks_of_one_table_and_named_checks_keep_distinct_names() -> None:
    checks = [
        ("nba.ctx", CheckResult(table="nba.ctx")),
        ("nba.ctx#2", CheckResult(table="nba.ctx")),
        ("home teams", CheckResult(table="nba.ctx")),
        ("raw.games", CheckResult(table="raw.games")),
    ]
    assert facts.display_names(checks) == {
        "nba.ctx": "ctx",
        "nba.ctx#2": "ctx#2",
        "home teams": "home teams",
        "raw.games": "games",
    }


def test_two_tables_of_one_short_name_keep_their_datasets() -> None:
    checks = [("a.t", CheckResult(table="a.t")), ("b.t", CheckResult(table="b.t"))]
    assert facts.display_names(checks) == {"a.t": "a.t", "b.t": "b.t"}


def test_figures_of_an_exact_count() -> None:
    c = CheckResult(table="t", actual=10, expected=16, total=16, percent=62.5)
    assert facts.check_total(c) == 16
    assert facts.check_percent(c) == 62.5
    assert facts.fraction(c) == "10/16"
    assert facts.check_figure(c) == "10/16 (62.5%)"
    assert facts.expected_text(c) == "16"
    assert facts.missing_count(c) == 6
    assert facts.missing_phrase(c) == "6 records missing"


def test_percent_is_computed_when_the_record_has_none() -> None:
    c = CheckResult(table="t", actual=1, expected=3)
    assert facts.check_percent(c) == pytest.approx(33.333333)
    assert facts.check_figure(c) == "1/3 (33.3%)"


def test_a_minimum_is_not_a_total() -> None:
    c = CheckResult(table="t", actual=212, minimum=1, ok=True)
    assert facts.check_total(c) is None
    assert facts.check_percent(c) is None
    assert facts.fraction(c) == "212"
    assert facts.check_figure(c) == "212 (≥ 1)"
    assert facts.expected_text(c) == "≥ 1"
    assert facts.missing_count(c) == 0


def test_a_ratio() -> None:
    c = CheckResult(table="t", actual=15, ratio=0.95, total=16, percent=93.8)
    assert facts.expected_text(c) == "≥ 95% of 16"
    assert facts.check_figure(c) == "15/16 (93.8%)"


def test_nothing_expected_and_nothing_counted() -> None:
    c = CheckResult(table="t")
    assert facts.expected_text(c) == "—"
    assert facts.fraction(c) == "n/a"
    assert facts.check_figure(c) == "not measured"
    assert facts.check_figure(CheckResult(table="t", error="no table")) == "error: no table"
    assert facts.check_percent(CheckResult(table="t", actual=0, expected=0)) is None


def test_missing_keys_grouped_by_their_first_column() -> None:
    keys = [
        {"game_id": "g1", "team_abbr": "GSW"},
        {"game_id": "g1", "team_abbr": "MIN"},
        {"game_id": "g2", "team_abbr": "SAC"},
    ]
    c = CheckResult(table="t", actual=13, expected=16, key=["game_id", "team_abbr"])
    c.missing_keys = keys
    assert facts.key_groups(c) == {"g1": ["GSW", "MIN"], "g2": ["SAC"]}
    assert facts.missing_count(c) == 3
    assert facts.missing_phrase(c) == "3 team records missing (2 games)"
    c.missing_total = 5  # more missing than the keys listed
    assert facts.missing_count(c) == 5
    assert facts.missing_phrase(c) == "5 team records missing (at least 2 games)"


def test_three_key_columns_join_the_rest() -> None:
    c = CheckResult(table="t", key=["game_id", "team_abbr", "player"])
    c.missing_keys = [{"game_id": 1, "team_abbr": "GSW", "player": "x"}]
    assert facts.key_groups(c) == {"1": ["GSW/x"]}


def test_one_key_column() -> None:
    c = CheckResult(table="t", key=["team_abbr"], missing_keys=[{"team_abbr": "GSW"}])
    assert facts.missing_phrase(c) == "1 team missing"


# --------------------------------------------------------------------------- before and after


def test_value_changes_against_the_baseline() -> None:
    baseline = Baseline(measured_at=T0, captures={"issues": 25, "warnings": 48, "gone": 3})
    s = step(captures={"issues": 19, "warnings": 48, "label": "x"}, baseline=baseline)
    changes = facts.value_changes(s)
    assert [(c.name, c.before, c.after) for c in changes] == [
        ("issues", 25, 19),
        ("warnings", 48, 48),
        ("gone", 3, None),
    ]
    assert [c.delta for c in changes] == [-6, 0, None]
    assert changes[0].percent == -24.0
    assert [c.measured for c in changes] == [True, True, False]
    assert facts.value_changes(step(captures={"issues": 1})) == []


def test_a_change_from_zero_has_no_percentage() -> None:
    assert facts.Change("n", 0, 5).percent is None
    assert facts.Change("n", 0, 5).delta == 5


def test_list_diff() -> None:
    assert facts.list_diff(["a", "b", "c"], ["b", "c", "d", "e"]) == (["a"], ["d", "e"], 2)


def test_coverage_changes() -> None:
    before = CheckResult(table="t", actual=0, expected=16, total=16, percent=0.0)
    after = CheckResult(table="t", actual=10, expected=16, total=16, percent=62.5)
    assert facts.count_change(before, after) == 10
    assert facts.percent_change(before, after) == 62.5
    assert facts.count_change(None, after) is None
    assert facts.percent_change(before, CheckResult(table="t", actual=3)) is None


# --------------------------------------------------------------------------- mermaid


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("Run: validation; #1", "Run  validation   1"),
        ('say "hi" [now]', "say  hi   now"),
        ("\x1b[31mred\x1b[0m (ok)", "red (ok)"),
        (":::", "-"),
        ("x" * 90, "x" * 80),
    ],
)
def test_one_mermaid_label_rule(text: str, escaped: str) -> None:
    assert label(text) == escaped


def test_gantt_time() -> None:
    at = T0 + timedelta(microseconds=123456)
    assert gantt_time(at, millis=True) == "2026-01-26T05:14:32.123"
    assert gantt_time(at, millis=False) == "2026-01-26T05:14:32"


def test_numbers_in_context_and_gap_attribution() -> None:
    from agent.output import facts
    from agent.record import CheckResult, Item

    zero = CheckResult(table="t", actual=0, expected=0, total=0, ok=True)
    assert facts.check_statement("t", zero) == "t: 0 expected: nothing scheduled"
    more = CheckResult(table="t", actual=18, expected=16, total=16)
    assert facts.check_statement("t", more) == (
        "t: 18 rows for 16 expected: 2 more than expected (duplicates?)"
    )
    assert facts.coverage_text(more) == "2 more than expected"
    assert facts.points_text(62.5) == "+62.5 pp"
    gap_check = CheckResult(
        table="p",
        key=["game_id", "team_abbr"],
        missing_keys=[{"game_id": "g1", "team_abbr": t} for t in ("GSW", "MIN")],
    )
    gap = facts.Gap(1, "v", "p", gap_check, ["g1", "GSW", "MIN"], facts.key_groups(gap_check))
    items = [
        Item(capture="c", message="GSW@MIN: Missing teams"),
        Item(capture="c", message="Curry (GSW): out"),  # one team code alone is any game's
        Item(capture="c", message="GSWX@MINY: other"),
    ]
    attributions, rest = facts.attribute_items(items, [gap])
    assert [a.subjects for a in attributions] == [["GSW@MIN"]]
    assert [i.message for i in rest] == ["Curry (GSW): out", "GSWX@MINY: other"]
    assert facts.item_tally([Item(capture="c", message="x", severity="issue")] * 2) == "2 issues"
