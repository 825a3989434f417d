"""Validate tonight's player-level data end to end; exits 1 when it finds issues (demo)."""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from datetime import date
from pathlib import Path

import duckdb

RULE = "=" * 80
STALE_ROSTER_DAYS = 3
Findings = list[tuple[str, str]]
MESSAGES = {
    "predictions": "No predictions",
    "prop_lines": "No prop lines",
    "api_export": "No players in export",
}


def teams_repr(teams: set[str]) -> str:
    """A set of tricodes as Python prints it, but in a stable order."""
    return "{" + ", ".join(repr(t) for t in sorted(teams)) + "}" if teams else "set()"


def by_game(con: duckdb.DuckDBPyConnection, table: str, day: date) -> tuple[dict, int]:
    """Teams with at least one player row in a table, per game, and the number of rows."""
    found: dict[str, set[str]] = defaultdict(set)
    sql = f"SELECT game_id, team_abbr, count(*) FROM {table} WHERE game_date = ?"  # noqa: S608
    rows = con.execute(sql + " GROUP BY 1, 2", [day]).fetchall()
    for game_id, team, _ in rows:
        found[game_id].add(team)
    return found, sum(r[2] for r in rows)


def validate(con: duckdb.DuckDBPyConnection, day: date) -> tuple[Findings, Findings]:
    """Run every check, print one line each, and return (issues, warnings)."""
    issues: Findings = []
    warnings: Findings = []
    games = con.execute(
        "SELECT game_id, away_team, home_team FROM nba_raw.schedule"
        " WHERE game_date = ? ORDER BY game_id",
        [day],
    ).fetchall()
    teams = {t for _, away, home in games for t in (away, home)}
    mark = "✓" if games else "✗"
    print(f"{mark} Schedule: {len(games)} games ({len(teams)} teams)")
    if not games:
        issues.append(("schedule", f"No games scheduled for {day}"))
        return issues, warnings

    rosters = dict(
        con.execute(
            "SELECT team_abbr, max(roster_date) FROM nba_raw.espn_team_rosters"
            " WHERE roster_date <= ? GROUP BY team_abbr",
            [day],
        ).fetchall()
    )
    for team in sorted(teams):
        if team not in rosters:
            issues.append(("roster", f"{team}: No roster data"))
        elif (age := (day - rosters[team]).days) > STALE_ROSTER_DAYS:
            warnings.append(("roster", f"{team}: Roster is {age} days old ({rosters[team]})"))
    print(
        f"{'✓' if teams <= set(rosters) else '✗'} Roster: {len(teams & set(rosters))}/"
        f"{len(teams)} teams"
    )

    stages = [
        ("game_context", "Game context", "nba_analytics.upcoming_player_game_context"),
        ("predictions", "Predictions", "nba_predictions.player_prop_predictions"),
        ("prop_lines", "Prop lines", "nba_raw.bettingpros_player_points_props"),
        ("api_export", "API export", "nba_api.tonight_all_players"),
    ]
    for stage, title, table in stages:
        found, rows = by_game(con, table, day)
        for game_id, away, home in games:
            have = found.get(game_id, set())
            if stage == "game_context" and {away, home} - have:
                missing = teams_repr({away, home} - have)
                text = f"Missing teams {missing}, only have {teams_repr(have)}"
            elif not have:
                text = MESSAGES[stage]
            else:
                continue
            issues.append((stage, f"{away}@{home}: {text}"))
        covered = sum(bool(found.get(g[0])) for g in games)
        mark = "✓" if covered == len(games) else "✗"
        print(
            f"{mark} {title}: {rows} players, {sum(map(len, found.values()))}/{len(teams)}"
            f" teams, {covered}/{len(games)} games"
        )

    context = con.execute(
        "SELECT c.team_abbr, count(*), count(*) FILTER (WHERE NOT c.has_prop_line)"
        " FROM nba_analytics.upcoming_player_game_context c WHERE c.game_date = ?"
        " GROUP BY 1 ORDER BY 1",
        [day],
    ).fetchall()
    for team, players, no_line in context:
        if no_line:
            text = f"{team}: {no_line}/{players} players without prop lines"
            warnings.append(("prop_lines", text))

    flagged = con.execute(
        "SELECT c.player_name, c.team_abbr, i.injury_status, i.reason, p.player_lookup IS NOT NULL"
        " FROM nba_analytics.upcoming_player_game_context c"
        " JOIN nba_raw.nbac_injury_report i"
        "   ON i.player_lookup = c.player_lookup AND i.report_date = c.game_date"
        " LEFT JOIN nba_predictions.player_prop_predictions p"
        "   ON p.player_lookup = c.player_lookup AND p.game_date = c.game_date"
        " WHERE c.game_date = ? ORDER BY c.team_abbr, c.player_name",
        [day],
    ).fetchall()
    for name, team, status, reason, predicted in flagged:
        if status == "Out" and predicted:
            issues.append(
                ("data_quality", f"{name} ({team}): Listed OUT ({reason}) but has a prediction")
            )
        else:
            warnings.append(("data_quality", f"{name} ({team}): Listed {status} ({reason})"))
    bad = sum(s == "data_quality" for s, _ in issues)
    print(
        f"{'✓' if not bad else '✗'} Data quality: {len(flagged)} injured players in context,"
        f" {bad} OUT with predictions"
    )
    return issues, warnings


def main() -> None:
    """Command line: validate_tonight_data.py --date D."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--date", type=date.fromisoformat, default=date.today())
    args = parser.parse_args()
    path = Path(os.environ.get("WAREHOUSE_PATH", ".runbook/warehouse.duckdb"))
    if not path.is_file():
        sys.exit(f"Warehouse not found: {path}")
    print(f"{RULE}\nTONIGHT'S DATA VALIDATION: {args.date}\n{RULE}")
    with duckdb.connect(str(path), read_only=True) as con:
        issues, warnings = validate(con, args.date)
    print(RULE)
    if issues:
        print(f"❌ {len(issues)} ISSUES FOUND:")
        print("\n".join(f"  [{stage}] {text}" for stage, text in issues))
    if warnings:
        print(f"⚠️ {len(warnings)} WARNINGS:")
        print("\n".join(f"  [{stage}] {text}" for stage, text in warnings))
    if not issues and not warnings:
        print("✅ All checks passed!")
    sys.exit(1 if issues else 0)


if __name__ == "__main__":
    main()
