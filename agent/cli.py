"""The command line: a thin switchboard over the package's functions."""

from __future__ import annotations


def main() -> int:
    """Run the CLI and return its exit code."""
    return 0
