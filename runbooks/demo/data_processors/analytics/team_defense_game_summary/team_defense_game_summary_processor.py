"""TeamDefenseGameSummaryProcessor: a team's defense is its opponent's offense (demo)."""

from __future__ import annotations

import argparse
import time
from datetime import date, datetime

from data_processors.common import connect, get_logger, pause, summary

LOG = get_logger("team_defense_game_summary_processor")
DEFENSE_SQL = """
SELECT game_id, team_abbr, sum(steals), sum(blocks), sum(defensive_rebounds)
FROM nba_raw.{table} WHERE game_date BETWEEN ? AND ? GROUP BY game_id, team_abbr
"""


def run(start: date, end: date, skip_trigger: bool) -> int:
    """Extract, merge and save; returns the number of records saved."""
    started = time.monotonic()
    con = connect()
    offense = con.execute(
        "SELECT game_id, game_date, team_abbr, opponent_team_abbr, points, fg_made, fg_attempted,"
        " three_made, three_attempted, turnovers FROM nba_raw.nbac_team_boxscore"
        " WHERE game_date BETWEEN ? AND ?",
        [start, end],
    ).fetchall()
    LOG.info("✓ Extracted %d opponent offense records from nbac_team_boxscore", len(offense))
    pause(0.1)
    defense = {
        (r[0], r[1]): (*r[2:], "gamebook")
        for r in con.execute(
            DEFENSE_SQL.format(table="nbac_gamebook_player_stats"), [start, end]
        ).fetchall()
    }
    gamebook_games = {game for game, _ in defense}
    LOG.info(
        "✓ Gamebook defensive actions: %d team-game records (%d games)",
        len(defense),
        len(gamebook_games),
    )
    scheduled = {
        r[0]
        for r in con.execute(
            "SELECT game_id FROM nba_raw.schedule WHERE game_date BETWEEN ? AND ?", [start, end]
        ).fetchall()
    }
    missing = scheduled - gamebook_games
    if missing:
        LOG.warning("Gamebook missing %d games, falling back to BDL", len(missing))
        bdl = {
            (r[0], r[1]): (*r[2:], "bdl")
            for r in con.execute(
                DEFENSE_SQL.format(table="bdl_player_boxscores"), [start, end]
            ).fetchall()
            if r[0] in missing
        }
        if bdl:
            LOG.info("✓ BDL fallback: %d team-game records", len(bdl))
        else:
            LOG.warning("BDL fallback also empty")
        defense.update(bdl)
    zones = con.execute(
        "SELECT count(*) FROM nba_raw.bigdataball_shot_zones WHERE game_date BETWEEN ? AND ?",
        [start, end],
    ).fetchone()
    if not zones or not zones[0]:
        LOG.warning("No shot zone data found (opp_paint_attempts/opp_mid_range_attempts NULL)")
    pause(0.1)

    rows = []
    for game_id, game_date, opp, team, *stats in offense:  # the opponent's offense row
        actions = defense.get((game_id, team))
        if actions is None:
            continue
        rows.append(
            (
                game_id,
                game_date,
                team,
                opp,
                *stats,
                *actions[:3],
                None,
                None,
                actions[3],
                "gold",
                datetime.now(),
            )
        )
    LOG.info("Merged %d complete defensive records", len(rows))
    con.execute(
        "DELETE FROM nba_analytics.team_defense_game_summary WHERE game_date BETWEEN ? AND ?",
        [start, end],
    )
    if rows:
        con.executemany(
            "INSERT INTO nba_analytics.team_defense_game_summary VALUES"
            " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    LOG.info("✅ MERGE completed: %d rows affected", len(rows))
    gold = sum(r[16] == "gold" for r in rows)
    LOG.info("✓ Gold quality records: %d/%d", gold, len(rows))
    con.close()
    if skip_trigger:
        LOG.info("Skipping downstream trigger (--skip-downstream-trigger)")
    summary(len(rows), len(rows) - gold, "SUCCESS", started)
    return len(rows)


def main() -> None:
    """Command line, with the dash-style date flags of the real processor."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--start-date", type=date.fromisoformat, required=True)
    parser.add_argument("--end-date", type=date.fromisoformat, required=True)
    parser.add_argument("--backfill-mode", action="store_true")
    parser.add_argument("--skip-downstream-trigger", action="store_true")
    args = parser.parse_args()
    LOG.info(
        "Starting TeamDefenseGameSummaryProcessor for %s to %s", args.start_date, args.end_date
    )
    run(args.start_date, args.end_date, args.skip_downstream_trigger)


if __name__ == "__main__":
    main()
