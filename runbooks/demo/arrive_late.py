"""Simulate the data of the incident day that arrived late (demo): everything the backfill missed.

Adds the boxscores of the three games the scraper never delivered (SAC@DET, MIA@PHX, TOR@POR),
the gamebook of the two it lacked (SAC@DET, TOR@POR), player props, context and predictions for
GSW@MIN and SAC@DET, withdraws the predictions of players listed OUT (the prediction job re-ran
after the injury report), and refreshes the API export as the scheduled export job would.
After this, the demo runbook's follow-up completes. Idempotent: late rows are replaced.

    python arrive_late.py --warehouse .runbook/warehouse.duckdb [--date 2026-01-25]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
import seed  # the seed's generators, so late rows look like the on-time ones

LATE = {
    "box": ("nba_raw.nbac_team_boxscore", seed.NO_BOXSCORE),
    "gb": ("nba_raw.nbac_gamebook_player_stats", seed.NO_GAMEBOOK),
    "props": ("nba_raw.bettingpros_player_points_props", seed.NO_PROPS),
    "ctx": ("nba_analytics.upcoming_player_game_context", seed.NO_PROPS),
    "pred": ("nba_predictions.player_prop_predictions", seed.NO_PROPS),
}
EXPORT_SQL = """
INSERT INTO nba_api.tonight_all_players
SELECT c.game_id, c.game_date, c.player_lookup, c.player_name, c.team_abbr,
       c.current_points_line, p.predicted_points, now()
FROM nba_analytics.upcoming_player_game_context c
LEFT JOIN nba_predictions.player_prop_predictions p
  ON p.player_lookup = c.player_lookup AND p.game_date = c.game_date
WHERE c.game_date = ?
"""


@contextlib.contextmanager
def nothing_missing() -> Iterator[None]:
    """Let the seed's generators produce the rows it normally leaves out."""
    saved = (seed.NO_BOXSCORE, seed.NO_GAMEBOOK, seed.NO_PROPS)
    seed.NO_BOXSCORE, seed.NO_GAMEBOOK, seed.NO_PROPS = set(), set(), set()
    try:
        yield
    finally:
        seed.NO_BOXSCORE, seed.NO_GAMEBOOK, seed.NO_PROPS = saved


def late_rows(day: date) -> dict[str, list[tuple]]:
    """The rows of the games whose data was missing, per kind (see LATE)."""
    roster = seed.rosters()  # before the patch: roster sizes depend on who had props
    injuries = {r[2]: r[4] for r in seed.injury_rows(day, roster)}
    games = [g for g in seed.schedule_rows(day) if g[1] == day]
    labels = {g[0]: f"{g[5]}@{g[4]}" for g in games}
    with nothing_missing():
        rows = seed.incident_rows(day, games, roster)
    out: dict[str, list[tuple]] = {}
    for kind, (_, games_missing) in LATE.items():
        keep = [r for r in rows[kind] if labels[r[0] if kind != "ctx" else r[2]] in games_missing]
        if kind == "ctx":  # the injury status as the real report has it
            keep = [(*r[:9], injuries.get(r[0]), *r[10:]) for r in keep]
        if kind == "pred":  # no prediction for a player listed OUT
            keep = [r for r in keep if injuries.get(r[2]) != "Out"]
        out[kind] = keep
    return out


def arrive(path: Path, day: date) -> dict[str, int]:
    """Write the late data into the warehouse at `path`; returns rows added per table."""
    rows = late_rows(day)
    added: dict[str, int] = {}
    games = {g[0]: f"{g[5]}@{g[4]}" for g in seed.schedule_rows(day) if g[1] == day}
    with duckdb.connect(str(path)) as con:
        for kind, (table, games_missing) in LATE.items():
            late_ids = [i for i, label in games.items() if label in games_missing]
            marks = ", ".join("?" for _ in late_ids)
            con.execute(
                f"DELETE FROM {table} WHERE game_date = ? AND game_id IN ({marks})",  # noqa: S608
                [day, *late_ids],
            )
            seed.insert(con, table, rows[kind])
            added[table] = len(rows[kind])
        withdrawn = con.execute(
            "DELETE FROM nba_predictions.player_prop_predictions WHERE game_date = ? AND"
            " player_lookup IN (SELECT player_lookup FROM nba_raw.nbac_injury_report"
            " WHERE report_date = ? AND injury_status = 'Out') RETURNING player_lookup",
            [day, day],
        ).fetchall()
        added["withdrawn OUT predictions"] = len(withdrawn)
        con.execute("DELETE FROM nba_api.tonight_all_players WHERE game_date = ?", [day])
        con.execute(EXPORT_SQL, [day])
        exported = con.execute(
            "SELECT count(*) FROM nba_api.tonight_all_players WHERE game_date = ?", [day]
        ).fetchone()
        added["nba_api.tonight_all_players"] = exported[0] if exported else 0
    return added


def main() -> None:
    """Command line: arrive_late.py --warehouse PATH [--date D]."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse", type=Path, default=Path(".runbook/warehouse.duckdb"))
    parser.add_argument("--date", type=date.fromisoformat, default=date(2026, 1, 25))
    args = parser.parse_args()
    if not args.warehouse.is_file():
        sys.exit(f"Warehouse not found: {args.warehouse} (run seed.py first)")
    for table, n in arrive(args.warehouse, args.date).items():
        print(f"{table}: {n}")
    print(f"Late data for {args.date} arrived at {datetime.now():%H:%M:%S}")


if __name__ == "__main__":
    main()
