"""Upcoming team game context (phase 3)."""
