"""Durations as people write and read them: settings (`10m`) and elapsed times (`3m 05s`)."""

from __future__ import annotations

__all__ = ["elapsed", "setting"]


def setting(seconds: float) -> str:
    """A configured duration the way a runbook writes it: `2h`, `10m`, `90s`, `0.5s`.

    Args:
        seconds: the duration.

    Returns:
        The largest whole unit that states it exactly.
    """
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def elapsed(seconds: float) -> str:
    """A measured time: `8.2s`, `3m 05s`, `2h 01m 05s`, `1d 02h 03m`.

    Args:
        seconds: the duration (negative values read as 0).

    Returns:
        Tenths of a second under a minute, then whole seconds, minutes, hours and days.
    """
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h {minutes:02d}m"
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    return f"{minutes}m {secs:02d}s"
