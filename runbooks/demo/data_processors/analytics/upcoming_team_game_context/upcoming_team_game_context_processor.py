"""UpcomingTeamGameContextProcessor: one row per team per scheduled game (demo)."""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta

from data_processors.common import connect, get_logger, pause, summary

LOG = get_logger("upcoming_team_game_context_processor")
LOOKBACK_DAYS, LOOKAHEAD_DAYS = 30, 7
MAX_LINES_AGE_HOURS = 12
WORKERS = 4


def team_rows(game: tuple, schedule: list[tuple], lines: dict, injuries: list[tuple]) -> list:
    """The two team-game rows of one game, from the schedule window, odds and injuries."""
    game_id, game_date, _, home, away = game
    pause(0.02)
    rows = []
    for team, opp, is_home in ((home, away, True), (away, home, False)):
        before = [g[1] for g in schedule if g[1] < game_date and team in (g[3], g[4])]
        rest = (game_date - max(before)).days - 1 if before else None
        side = 0 if is_home else 1
        spread, total, money = (
            lines.get((game_id, m), (None, None))[side] for m in ("spreads", "totals", "h2h")
        )
        status = [s for t, s in injuries if t == team]
        rows.append(
            (
                game_id,
                game_date,
                team,
                opp,
                is_home,
                rest,
                rest == 0,
                sum(d >= game_date - timedelta(days=7) for d in before),
                sum(d >= game_date - timedelta(days=14) for d in before),
                spread,
                total,
                money,
                status.count("Out"),
                status.count("Questionable"),
                None,
                datetime.now(),
            )
        )
    return rows


def run(start: date, end: date, backfill: bool, skip_trigger: bool) -> int:
    """Extract, transform and save; returns the number of records saved."""
    started = time.monotonic()
    con = connect()
    schedule = con.execute(
        "SELECT game_id, game_date, game_datetime_utc, home_team, away_team FROM nba_raw.schedule"
        " WHERE game_date BETWEEN ? AND ? ORDER BY game_datetime_utc",
        [start - timedelta(days=LOOKBACK_DAYS), end + timedelta(days=LOOKAHEAD_DAYS)],
    ).fetchall()
    LOG.info("✓ Extracted %d schedule records", len(schedule))
    pause()
    odds = con.execute(
        "SELECT game_id, market_key, home_value, away_value, snapshot_time"
        " FROM nba_raw.betting_lines WHERE game_date BETWEEN ? AND ?",
        [start, end],
    ).fetchall()
    LOG.info("✓ Extracted %d betting line records", len(odds))
    injuries = con.execute(
        "SELECT team_abbr, injury_status FROM nba_raw.nbac_injury_report"
        " WHERE report_date BETWEEN ? AND ?",
        [start, end],
    ).fetchall()
    LOG.info("✓ Extracted %d injury records", len(injuries))
    travel = con.execute(
        "SELECT count(*) FROM information_schema.tables"
        " WHERE table_schema = 'nba_reference' AND table_name = 'travel_distances'"
    ).fetchone()
    if not travel or not travel[0]:
        LOG.warning("Travel distances table not found: nba_reference.travel_distances")
    LOG.info("✓ Loaded 0 travel distance mappings")

    games = [g for g in schedule if start <= g[1] <= end]
    if odds and games:
        age = (min(g[2] for g in games) - max(o[4] for o in odds)).total_seconds() / 3600
        if age > MAX_LINES_AGE_HOURS and not backfill:
            LOG.error(
                "Stale dependency: odds_api_game_lines is %.1fh old (max %dh)",
                age,
                MAX_LINES_AGE_HOURS,
            )
            summary(0, 0, "FAILED", started)
            return 0
        if age > MAX_LINES_AGE_HOURS:
            LOG.info(
                "Backfill mode: skipping stale-data check for odds_api_game_lines (%.1fh old)", age
            )
    LOG.info("Processing %d games (%d team-game records)", len(games), 2 * len(games))
    teams = {t for g in games for t in g[3:5]}
    covered = {t for g in schedule if g[1] < start - timedelta(days=14) for t in g[3:5]}
    LOG.info("✓ Completeness check: %d teams across 2 windows (7d, 14d)", len(teams & covered))

    lines = {(o[0], o[1]): (o[2], o[3]) for o in odds}
    clock = time.monotonic()
    with ThreadPoolExecutor(WORKERS) as pool:
        chunks = pool.map(
            lambda g: team_rows((g[0], g[1], g[2], g[3], g[4]), schedule, lines, injuries), games
        )
        rows = [row for chunk in chunks for row in chunk]
    rate = len(games) / max(time.monotonic() - clock, 1e-6)
    LOG.info("✓ Parallel processing: %.1f games/sec with %d workers", rate, WORKERS)

    con.execute(
        "DELETE FROM nba_analytics.upcoming_team_game_context WHERE game_date BETWEEN ? AND ?",
        [start, end],
    )
    if rows:
        con.executemany(
            "INSERT INTO nba_analytics.upcoming_team_game_context VALUES"
            " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    LOG.info("✓ Saved %d records to nba_analytics.upcoming_team_game_context", len(rows))
    con.close()
    if skip_trigger:
        LOG.info("Skipping downstream trigger (--skip-downstream-trigger)")
    else:
        LOG.info("Published phase3 completion for %s..%s (simulated)", start, end)
    quality = sum(r[9] is None or r[10] is None for r in rows)
    summary(len(rows), quality, "SUCCESS", started)
    return len(rows)


def main() -> None:
    """Command line, with the underscore-style date flags of the real processor."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--start_date", type=date.fromisoformat, required=True)
    parser.add_argument("--end_date", type=date.fromisoformat, required=True)
    parser.add_argument("--backfill-mode", action="store_true")
    parser.add_argument("--skip-downstream-trigger", action="store_true")
    args = parser.parse_args()
    LOG.info(
        "Starting UpcomingTeamGameContextProcessor for %s to %s (backfill_mode=%s)",
        args.start_date,
        args.end_date,
        args.backfill_mode,
    )
    run(args.start_date, args.end_date, args.backfill_mode, args.skip_downstream_trigger)


if __name__ == "__main__":
    main()
