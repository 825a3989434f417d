"""Daily API export: tonight's players with lines and predictions to nba_api (demo)."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path

import duckdb

EXPORT_SQL = """
INSERT INTO nba_api.tonight_all_players
SELECT c.game_id, c.game_date, c.player_lookup, c.player_name, c.team_abbr,
       c.current_points_line, p.predicted_points, now()
FROM nba_analytics.upcoming_player_game_context c
LEFT JOIN nba_predictions.player_prop_predictions p
  ON p.player_lookup = c.player_lookup AND p.game_date = c.game_date
WHERE c.game_date = ?
"""


def main() -> None:
    """Command line: daily_export.py --date D."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--date", type=date.fromisoformat, default=date.today())
    args = parser.parse_args()
    path = Path(os.environ.get("WAREHOUSE_PATH", ".runbook/warehouse.duckdb"))
    if not path.is_file():
        sys.exit(f"Warehouse not found: {path}")
    with duckdb.connect(str(path)) as con:
        con.execute("DELETE FROM nba_api.tonight_all_players WHERE game_date = ?", [args.date])
        con.execute(EXPORT_SQL, [args.date])
        players, games = con.execute(
            "SELECT count(*), count(DISTINCT game_id) FROM nba_api.tonight_all_players"
            " WHERE game_date = ?",
            [args.date],
        ).fetchone() or (0, 0)
    print(f"Exported {players} players for {games} games to nba_api.tonight_all_players")


if __name__ == "__main__":
    main()
