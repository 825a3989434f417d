"""Durations as runbooks write them and as reports show them."""

from __future__ import annotations

import pytest

from agent.plan.durations import elapsed, setting


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(7200, "2h"), (600, "10m"), (90, "90s"), (0.5, "0.5s"), (3601, "3601s"), (0, "0s")],
)
def test_setting(seconds: float, text: str) -> None:
    assert setting(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (8.24, "8.2s"),
        (59.94, "59.9s"),
        (65, "1m 05s"),
        (3725, "1h 02m 05s"),
        (93780, "1d 02h 03m"),
        (-1, "0.0s"),
    ],
)
def test_elapsed(seconds: float, text: str) -> None:
    assert elapsed(seconds) == text
