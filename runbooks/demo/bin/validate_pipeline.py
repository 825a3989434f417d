"""Per-table completeness for one date; always exits 0, like the real one (demo)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import date
from pathlib import Path

import duckdb

GAMES, TEAMS, ROWS = "count(DISTINCT game_id)", "count(DISTINCT team_abbr)", "count(*)"
# (table, what is counted, its unit, expected per scheduled game)
TABLES = (
    ("nba_raw.schedule", GAMES, "games", 1),
    ("nba_raw.nbac_team_boxscore", ROWS, "rows", 2),
    ("nba_raw.nbac_gamebook_player_stats", GAMES, "games", 1),
    ("nba_raw.bdl_player_boxscores", GAMES, "games", 1),
    ("nba_analytics.upcoming_player_game_context", TEAMS, "teams", 2),
    ("nba_analytics.upcoming_team_game_context", ROWS, "rows", 2),
    ("nba_analytics.team_defense_game_summary", ROWS, "rows", 2),
    ("nba_predictions.player_prop_predictions", GAMES, "games", 1),
    ("nba_api.tonight_all_players", GAMES, "games", 1),
)


def main() -> None:
    """Command line: validate_pipeline.py DATE [--format text|json]."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("date", type=date.fromisoformat)
    parser.add_argument("--format", choices=("text", "json"), default="text")
    args = parser.parse_args()
    path = Path(os.environ.get("WAREHOUSE_PATH", ".runbook/warehouse.duckdb"))
    if not path.is_file():
        print(f"Warehouse not found: {path}")
        sys.exit(0)
    results = []
    with duckdb.connect(str(path), read_only=True) as con:
        games = con.execute(
            "SELECT count(*) FROM nba_raw.schedule WHERE game_date = ?", [args.date]
        ).fetchone()[0]
        for table, counted, unit, per_game in TABLES:
            sql = f"SELECT {counted} FROM {table} WHERE game_date = ?"  # noqa: S608
            actual = con.execute(sql, [args.date]).fetchone()[0]
            results.append((table, actual, games * per_game, unit))
    if args.format == "json":
        keys = ("table", "actual", "expected", "unit")
        print(json.dumps([dict(zip(keys, r, strict=True)) for r in results], indent=2))
        return
    print(f"PIPELINE VALIDATION: {args.date} ({games} games scheduled)\n")
    for table, actual, expected, unit in results:
        pct = 100.0 * actual / expected if expected else 0.0
        status = "✓ Complete" if actual >= expected else "△ Partial" if actual else "○ Missing"
        print(f"  {status:<11} {table:<44} {actual:>3}/{expected:<3} {unit:<5} ({pct:.1f}%)")


if __name__ == "__main__":
    main()
