"""Seed the demo warehouse with the state of 2026-01-25 before the backfill (deterministic)."""

from __future__ import annotations

import argparse
import csv
import tempfile
import zlib
from datetime import date, datetime, time, timedelta
from pathlib import Path

import duckdb

TEAMS = (
    "ATL",
    "BOS",
    "BKN",
    "CHA",
    "CHI",
    "CLE",
    "DAL",
    "DEN",
    "DET",
    "GSW",
    "HOU",
    "IND",
    "LAC",
    "LAL",
    "MEM",
    "MIA",
    "MIL",
    "MIN",
    "NOP",
    "NYK",
    "OKC",
    "ORL",
    "PHI",
    "PHX",
    "POR",
    "SAC",
    "SAS",
    "TOR",
    "UTA",
    "WAS",
)
WEST = {
    "DAL",
    "DEN",
    "GSW",
    "HOU",
    "LAC",
    "LAL",
    "MEM",
    "MIN",
    "NOP",
    "OKC",
    "PHX",
    "POR",
    "SAC",
    "SAS",
    "UTA",
}
# The incident day's eight games, (away, home), in tip-off order; tip-offs in UTC hours.
INCIDENT_GAMES = (
    ("BOS", "CHI"),
    ("GSW", "MIN"),
    ("NOP", "SAS"),
    ("LAL", "DAL"),
    ("MEM", "HOU"),
    ("SAC", "DET"),
    ("MIA", "PHX"),
    ("TOR", "POR"),
)
TIPOFF_HOURS = (20, 22, 23, 23, 24, 25, 26, 27)
# Games a changed world may add to the incident day (`--games 9`, `--games 10`).
MORE_GAMES = (("ATL", "NYK"), ("DEN", "OKC"))
MORE_TIPOFF_HOURS = (27, 28)
FIRST_GAME_SEQ = 650  # the incident day's first game is 0022500650
NO_BOXSCORE = {"SAC@DET", "MIA@PHX", "TOR@POR"}  # scraper never delivered these
NO_GAMEBOOK = {"SAC@DET", "TOR@POR"}
NO_PROPS = {"GSW@MIN", "SAC@DET"}  # so the player context processor skipped them
STALE_ROSTER_DAYS = {"GSW": 6, "SAC": 5, "PHX": 4, "POR": 4}
CLEAN = False  # --clean: no prediction for a player listed OUT (the validator's data_quality)
GAMES_PER_DAY = (10, 8, 9, 4, 11, 6, 6)  # other days; 296 games from day -30 to day +7
DAYS_BEFORE, DAYS_AFTER = 45, 14
# `--week`: the six days before the incident day get boxscores and gamebooks too, except for
# their last N games (day offset -> N): 2026-01-21 misses 1 of 6 games, 2026-01-23 1 of 10.
WEEK_GAPS = {-4: 1, -2: 1}
LINES_SNAPSHOT = time(4, 54)  # odds scraped 15.1 h before the first tip-off
FIRST = (
    "Aaron",
    "Bam",
    "Cade",
    "Darius",
    "Evan",
    "Franz",
    "Gary",
    "Herb",
    "Isaiah",
    "Jalen",
    "Kyle",
    "Luka",
    "Malik",
    "Naz",
    "Obi",
    "Paolo",
    "Quentin",
    "Rui",
    "Scottie",
    "Tyrese",
    "Victor",
    "Walker",
    "Xavier",
    "Zach",
)
LAST = (
    "Adams",
    "Brooks",
    "Carter",
    "Davis",
    "Ellis",
    "Fox",
    "Green",
    "Hill",
    "Ivey",
    "Jones",
    "King",
    "Lowry",
    "Mitchell",
    "Nance",
    "Okoro",
    "Porter",
    "Quinn",
    "Reed",
    "Smith",
    "Thomas",
    "Upshaw",
    "Vance",
    "White",
    "Young",
)
STATUSES = ("Questionable", "Doubtful", "Probable", "Out")
REASONS = (
    "Left Ankle; Sprain",
    "Right Knee; Soreness",
    "Illness",
    "Rest",
    "Left Hamstring; Strain",
    "Personal Reasons",
    "G League - Two-Way",
)

SCHEMA = """
CREATE SCHEMA nba_raw; CREATE SCHEMA nba_analytics; CREATE SCHEMA nba_reference;
CREATE SCHEMA nba_predictions; CREATE SCHEMA nba_api;
CREATE TABLE nba_reference.nba_teams (team_abbr VARCHAR, conference VARCHAR);
CREATE TABLE nba_raw.schedule (game_id VARCHAR, game_date DATE, game_datetime_utc TIMESTAMP,
  season_year INTEGER, home_team VARCHAR, away_team VARCHAR, game_status VARCHAR);
CREATE TABLE nba_raw.espn_team_rosters (roster_date DATE, team_abbr VARCHAR,
  player_lookup VARCHAR, player_name VARCHAR, jersey_number INTEGER, position VARCHAR);
CREATE TABLE nba_raw.nbac_injury_report (report_date DATE, team_abbr VARCHAR,
  player_lookup VARCHAR, player_name VARCHAR, injury_status VARCHAR, reason VARCHAR);
CREATE TABLE nba_raw.betting_lines (game_id VARCHAR, game_date DATE, bookmaker VARCHAR,
  market_key VARCHAR, home_value DOUBLE, away_value DOUBLE, snapshot_time TIMESTAMP);
CREATE TABLE nba_raw.bettingpros_player_points_props (game_id VARCHAR, game_date DATE,
  player_lookup VARCHAR, team_abbr VARCHAR, bookmaker VARCHAR, points_line DOUBLE);
CREATE TABLE nba_raw.nbac_team_boxscore (game_id VARCHAR, game_date DATE, team_abbr VARCHAR,
  opponent_team_abbr VARCHAR, is_home BOOLEAN, points INTEGER, fg_made INTEGER,
  fg_attempted INTEGER, three_made INTEGER, three_attempted INTEGER, ft_made INTEGER,
  ft_attempted INTEGER, rebounds INTEGER, assists INTEGER, turnovers INTEGER);
CREATE TABLE nba_raw.nbac_gamebook_player_stats (game_id VARCHAR, game_date DATE,
  team_abbr VARCHAR, player_lookup VARCHAR, minutes INTEGER, steals INTEGER, blocks INTEGER,
  defensive_rebounds INTEGER);
CREATE TABLE nba_raw.bdl_player_boxscores (game_id VARCHAR, game_date DATE, team_abbr VARCHAR,
  player_lookup VARCHAR, steals INTEGER, blocks INTEGER, defensive_rebounds INTEGER);
CREATE TABLE nba_raw.bigdataball_shot_zones (game_id VARCHAR, game_date DATE,
  team_abbr VARCHAR, shot_zone VARCHAR, attempts INTEGER, made INTEGER);
CREATE TABLE nba_analytics.upcoming_player_game_context (player_lookup VARCHAR,
  player_name VARCHAR, game_id VARCHAR, game_date DATE, team_abbr VARCHAR,
  opponent_team_abbr VARCHAR, home_game BOOLEAN, has_prop_line BOOLEAN,
  current_points_line DOUBLE, injury_status VARCHAR, processed_at TIMESTAMP);
CREATE TABLE nba_analytics.upcoming_team_game_context (game_id VARCHAR, game_date DATE,
  team_abbr VARCHAR, opponent_team_abbr VARCHAR, home_game BOOLEAN, days_rest INTEGER,
  is_back_to_back BOOLEAN, games_in_last_7_days INTEGER, games_in_last_14_days INTEGER,
  game_spread DOUBLE, game_total DOUBLE, team_moneyline DOUBLE, players_out INTEGER,
  players_questionable INTEGER, travel_miles INTEGER, processed_at TIMESTAMP);
CREATE TABLE nba_analytics.team_defense_game_summary (game_id VARCHAR, game_date DATE,
  team_abbr VARCHAR, opponent_team_abbr VARCHAR, opp_points INTEGER, opp_fg_made INTEGER,
  opp_fg_attempted INTEGER, opp_three_made INTEGER, opp_three_attempted INTEGER,
  opp_turnovers INTEGER, steals INTEGER, blocks INTEGER, defensive_rebounds INTEGER,
  opp_paint_attempts INTEGER, opp_mid_range_attempts INTEGER, defensive_source VARCHAR,
  data_quality_tier VARCHAR, processed_at TIMESTAMP);
CREATE TABLE nba_predictions.player_prop_predictions (game_id VARCHAR, game_date DATE,
  player_lookup VARCHAR, team_abbr VARCHAR, line_value DOUBLE, predicted_points DOUBLE,
  recommendation VARCHAR, created_at TIMESTAMP);
CREATE TABLE nba_api.tonight_all_players (game_id VARCHAR, game_date DATE,
  player_lookup VARCHAR, player_name VARCHAR, team_abbr VARCHAR, points_line DOUBLE,
  predicted_points DOUBLE, exported_at TIMESTAMP);
"""


def num(key: str, low: int, high: int) -> int:
    """A deterministic pseudo-random integer in [low, high] for a key."""
    return low + zlib.crc32(key.encode()) % (high - low + 1)


def day_pairs(offset: int, count: int) -> list[tuple[str, str]]:
    """(away, home) pairs for an ordinary day: one round of a circle-method round robin."""
    others = TEAMS[1:]
    r = offset % len(others)
    ring = [TEAMS[0], *others[r:], *others[:r]]
    slots = [(offset * 4 + i) % 15 for i in range(count)]
    pairs = [(ring[i], ring[len(ring) - 1 - i]) for i in slots]
    return [(b, a) if (offset + i) % 2 else (a, b) for i, (a, b) in enumerate(pairs)]


def schedule_rows(day: date) -> list[tuple]:
    """All games from DAYS_BEFORE before to DAYS_AFTER after the incident day."""
    days: list[tuple[int, list[tuple[str, str]], list[int]]] = []
    for offset in range(-DAYS_BEFORE, DAYS_AFTER + 1):
        if offset == 0:
            days.append((0, list(INCIDENT_GAMES), list(TIPOFF_HOURS)))
        else:
            count = GAMES_PER_DAY[(offset + 30 - (offset > 0)) % len(GAMES_PER_DAY)]
            days.append((offset, day_pairs(offset, count), [23 + i % 4 for i in range(count)]))
    seq = FIRST_GAME_SEQ - sum(len(p) for o, p, _ in days if o < 0)
    rows = []
    for offset, pairs, hours in days:
        game_date = day + timedelta(days=offset)
        status = "Final" if offset <= 0 else "Scheduled"
        for (away, home), hour in zip(pairs, hours, strict=True):
            tip = datetime.combine(game_date, time()) + timedelta(hours=hour)
            rows.append((f"00225{seq:05d}", game_date, tip, 2025, home, away, status))
            seq += 1
    return rows


def rosters() -> dict[str, list[tuple[str, str]]]:
    """(player_lookup, player_name) per team; covered teams hold 212 players in all."""
    covered = covered_teams()
    result = {}
    for t, team in enumerate(TEAMS):
        size = (18 if covered.index(team) < 8 else 17) if team in covered else 17 + t % 2
        players = []
        for i in range(size):
            g = t * 18 + i
            name = f"{FIRST[g % 24]} {LAST[(g + g // 24) % 24]}"
            players.append((name.lower().replace(" ", ""), name))
        result[team] = players
    return result


def covered_teams() -> list[str]:
    """Teams of the games that have player props, in game order."""
    return [t for a, h in INCIDENT_GAMES if f"{a}@{h}" not in NO_PROPS for t in (a, h)]


def injury_rows(day: date, roster: dict[str, list[tuple[str, str]]]) -> list[tuple]:
    """79 injury report entries: 11 players OUT who still have a prop line among them."""
    picks: list[tuple[str, int, str]] = []
    covered = covered_teams()
    for k, team in enumerate(covered):
        picks.append((team, k % 9 if k < 11 else 16, "Out"))
        for j in range(1, 3 if k in (1, 3, 5, 7, 9) else 4):
            picks.append((team, 8 + j + k % 4, STATUSES[(k + j) % 4]))
    for t, team in enumerate(x for x in TEAMS if x not in covered):
        picks.append((team, t % 9, STATUSES[t % 4]))
        picks.append((team, 9 + t % 7, STATUSES[(t + 1) % 4]))
    rows = []
    for n, (team, index, status) in enumerate(picks):
        lookup, name = roster[team][index]
        rows.append((day, team, lookup, name, status, REASONS[n % len(REASONS)]))
    return rows


def incident_rows(
    day: date, games: list[tuple], roster: dict, no_boxscore: set[str] | None = None
) -> dict[str, list[tuple]]:
    """Lines, props, boxscores, gamebook, player context and predictions of the incident day
    (or of another day, with its own games missing their boxscores)."""
    no_boxscore = NO_BOXSCORE if no_boxscore is None else no_boxscore
    out: dict[str, list[tuple]] = {k: [] for k in ("lines", "props", "box", "gb", "ctx", "pred")}
    snapshot = datetime.combine(day, LINES_SNAPSHOT)
    injuries = {r[2]: r[4] for r in injury_rows(day, roster)}
    made = datetime.combine(day, time(6, 30))
    for game_id, _, _, _, home, away, _ in games:
        label = f"{away}@{home}"
        spread = num(game_id + "s", 1, 12) - 0.5
        total = 200 + num(game_id + "t", 0, 40) + 0.5
        out["lines"] += [
            (game_id, day, "draftkings", "spreads", -spread, spread, snapshot),
            (game_id, day, "draftkings", "totals", total, total, snapshot),
            (game_id, day, "draftkings", "h2h", -110 - 20 * spread, 90 + 15 * spread, snapshot),
        ]
        for team, opp, is_home in ((home, away, True), (away, home, False)):
            key = game_id + team
            if label not in no_boxscore:
                fga, fgm = num(key + "a", 82, 95), num(key + "m", 38, 48)
                tpa, tpm = num(key + "b", 30, 44), num(key + "n", 10, 17)
                fta = num(key + "c", 15, 30)
                ftm = fta - num(key, 2, 6)
                out["box"].append(
                    (
                        game_id,
                        day,
                        team,
                        opp,
                        is_home,
                        2 * fgm + tpm + ftm,
                        fgm,
                        fga,
                        tpm,
                        tpa,
                        ftm,
                        fta,
                        num(key + "r", 38, 52),
                        num(key + "s", 20, 31),
                        num(key + "v", 9, 18),
                    )
                )
            for i, (lookup, name) in enumerate(roster[team]):
                pkey = key + lookup
                if label not in NO_GAMEBOOK and i < 10:
                    out["gb"].append(
                        (
                            game_id,
                            day,
                            team,
                            lookup,
                            num(pkey, 12, 38),
                            num(pkey + "s", 0, 2),
                            num(pkey + "b", 0, 2),
                            num(pkey + "d", 0, 8),
                        )
                    )
                if label in NO_PROPS:
                    continue
                line = num(pkey + "l", 5, 29) + 0.5 if i < 9 else None
                out["ctx"].append(
                    (
                        lookup,
                        name,
                        game_id,
                        day,
                        team,
                        opp,
                        is_home,
                        line is not None,
                        line,
                        injuries.get(lookup),
                        made,
                    )
                )
                if line is not None and not (CLEAN and injuries.get(lookup) == "Out"):
                    predicted = line + (num(pkey + "p", 0, 70) - 35) / 10
                    out["props"].append((game_id, day, lookup, team, "bettingpros", line))
                    out["pred"].append(
                        (
                            game_id,
                            day,
                            lookup,
                            team,
                            line,
                            predicted,
                            "OVER" if predicted > line else "UNDER",
                            made,
                        )
                    )
    return out


def insert(con: duckdb.DuckDBPyConnection, table: str, rows: list[tuple]) -> None:
    """Bulk-load rows into one of the tables above through a CSV file (binding is slow)."""
    if not rows:
        return  # COPY cannot read an empty file; a world without games has no rows here
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.csv"
        with path.open("w", newline="") as f:
            csv.writer(f).writerows(["" if v is None else v for v in row] for row in rows)
        con.execute(f"COPY {table} FROM '{path}' (HEADER false, NULLSTR '')")


def week_rows(
    day: date, games: list[tuple], roster: dict, gaps: dict[int, int]
) -> dict[str, list[tuple]]:
    """Boxscores and gamebooks of the six days before `day`, each missing its last N games."""
    out: dict[str, list[tuple]] = {"box": [], "gb": []}
    for offset in range(-6, 0):
        other = day + timedelta(days=offset)
        todays = [g for g in games if g[1] == other]
        cut = len(todays) - gaps.get(offset, 0)
        missing = {f"{g[5]}@{g[4]}" for g in todays[max(cut, 0) :]}
        rows = incident_rows(other, todays, roster, no_boxscore=missing)
        out["box"] += rows["box"]
        out["gb"] += rows["gb"]
    return out


def seed(path: Path, date: str, *, week: dict[int, int] | None = None) -> None:
    """Create the warehouse at path as it was on the morning after `date`.

    With `week` (day offset -> games missing), the six days before it have raw boxscores and
    gamebooks too, for `runbook demo --range`; the incident day is seeded as without it.
    """
    day = datetime.strptime(date, "%Y-%m-%d").date()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    roster = rosters()
    games = schedule_rows(day)
    today = [g for g in games if g[1] == day]
    extra = incident_rows(day, today, roster)
    if week is not None:
        before = week_rows(day, games, roster, week)
        extra["box"] = before["box"] + extra["box"]
        extra["gb"] = before["gb"] + extra["gb"]
    con = duckdb.connect(str(path))
    try:
        con.execute(SCHEMA)
        insert(
            con, "nba_reference.nba_teams", [(t, "West" if t in WEST else "East") for t in TEAMS]
        )
        insert(con, "nba_raw.schedule", games)
        insert(
            con,
            "nba_raw.espn_team_rosters",
            [
                (
                    day - timedelta(days=STALE_ROSTER_DAYS.get(team, 0)),
                    team,
                    lookup,
                    name,
                    num(lookup, 0, 99),
                    ("G", "F", "C")[i % 3],
                )
                for team, players in roster.items()
                for i, (lookup, name) in enumerate(players)
            ],
        )
        insert(con, "nba_raw.nbac_injury_report", injury_rows(day, roster))
        insert(con, "nba_raw.betting_lines", extra["lines"])
        insert(con, "nba_raw.bettingpros_player_points_props", extra["props"])
        insert(con, "nba_raw.nbac_team_boxscore", extra["box"])
        insert(con, "nba_raw.nbac_gamebook_player_stats", extra["gb"])
        insert(con, "nba_analytics.upcoming_player_game_context", extra["ctx"])
        insert(con, "nba_predictions.player_prop_predictions", extra["pred"])
    finally:
        con.close()


def change_world(
    *,
    games: int | None = None,
    no_boxscore: set[str] | None = None,
    no_gamebook: set[str] | None = None,
    no_props: set[str] | None = None,
    clean: bool = False,
) -> None:
    """Seed another world than the incident's: other games missing data, more or fewer games."""
    global INCIDENT_GAMES, TIPOFF_HOURS, NO_BOXSCORE, NO_GAMEBOOK, NO_PROPS, CLEAN  # noqa: PLW0603
    CLEAN = clean
    if games is not None:
        pool = INCIDENT_GAMES + MORE_GAMES
        if not 0 <= games <= len(pool):
            raise SystemExit(f"--games must be between 0 and {len(pool)}")
        INCIDENT_GAMES = pool[:games]
        TIPOFF_HOURS = (TIPOFF_HOURS + MORE_TIPOFF_HOURS)[:games]
    NO_BOXSCORE = NO_BOXSCORE if no_boxscore is None else no_boxscore
    NO_GAMEBOOK = NO_GAMEBOOK if no_gamebook is None else no_gamebook
    NO_PROPS = NO_PROPS if no_props is None else no_props


def _gaps(text: str) -> dict[int, int]:
    gaps = {}
    for part in text.split(","):
        offset, _, n = part.partition("=")
        gaps[int(offset)] = int(n or 0)
    return gaps


def _matchups(text: str) -> set[str]:
    return {m.strip() for m in text.split(",") if m.strip()}


def main() -> None:
    """Command line: seed.py --warehouse PATH [--date D] [--games N] [--no-boxscore A@H,...]."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--warehouse", type=Path, default=Path(".runbook/warehouse.duckdb"))
    parser.add_argument("--date", default="2026-01-25")
    parser.add_argument("--games", type=int, help="games on the day (default: the incident's 8)")
    for name in ("no-boxscore", "no-gamebook", "no-props"):
        parser.add_argument(
            f"--{name}", type=_matchups, help="matchups (AWAY@HOME, comma-separated)"
        )
    parser.add_argument("--clean", action="store_true", help="no predictions for OUT players")
    parser.add_argument(
        "--week",
        nargs="?",
        const="",
        metavar="OFFSET=N,...",
        help="seed the six days before too; each OFFSET (-6..-1) misses its last N games "
        "(default: -4=1,-2=1)",
    )
    args = parser.parse_args()
    change_world(
        clean=args.clean,
        games=args.games,
        no_boxscore=args.no_boxscore,
        no_gamebook=args.no_gamebook,
        no_props=args.no_props,
    )
    week = None
    if args.week is not None:
        week = dict(WEEK_GAPS) if not args.week else _gaps(args.week)
    seed(args.warehouse, args.date, week=week)
    print(f"Seeded {args.warehouse} for {args.date}" + (" and the week before" if week else ""))


if __name__ == "__main__":
    main()
