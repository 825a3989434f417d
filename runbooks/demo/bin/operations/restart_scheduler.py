"""Resume the paused Cloud Scheduler jobs of one pipeline phase (demo: prints what it resumes)."""

from __future__ import annotations

import argparse

JOBS = {
    2: ("phase2-raw-scrapers-hourly", "phase2-odds-api-lines"),
    3: (
        "phase3-upcoming-team-game-context",
        "phase3-team-defense-game-summary",
        "phase3-upcoming-player-game-context",
        "phase3-daily-export",
    ),
}


def main() -> None:
    """Command line: restart_scheduler.py --phase N [--location L]."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--phase", type=int, choices=sorted(JOBS), required=True)
    parser.add_argument("--location", default="us-west2")
    args = parser.parse_args()
    jobs = JOBS[args.phase]
    print(f"Resuming {len(jobs)} Cloud Scheduler jobs of phase {args.phase} in {args.location}")
    for job in jobs:
        print(f"✓ Resumed {job} (was PAUSED)")
    print(f"Jobs resumed: {len(jobs)}")


if __name__ == "__main__":
    main()
