"""Print pip constraints pinning every dependency of pyproject.toml to its lower bound.

`python .ci/lowest.py > lowest.txt; pip install -c lowest.txt '.[test]'` installs the lowest
versions the project claims to support (what `uv pip install --resolution lowest-direct` does,
with pip alone); .ci/run then runs the suite there, so a bound that is not true fails CI.

Usage: python .ci/lowest.py [--extra NAME ...] [pyproject.toml]
Every dependency must carry a `>=` bound: one without is an error, not silently left latest.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

# name, optional [extras], then the specifier list; environment markers are not used here.
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*)")
_LOWER = re.compile(r">=\s*([0-9][^,\s]*)")


def lower_bounds(requirements: list[str], project: str) -> list[str]:
    """Return `name==lower` for each requirement (self-references such as `pkg[test]` skipped).

    Args:
        requirements: PEP 508 strings as pyproject lists them.
        project: the project's own name.

    Returns:
        The constraint lines.

    Raises:
        SystemExit: a requirement has no `>=` lower bound.
    """
    lines = []
    for req in requirements:
        match = _REQUIREMENT.match(req)
        if not match:
            raise SystemExit(f"lowest.py: cannot read the requirement {req!r}")
        name, _, spec = match.groups()
        if name.lower() == project.lower():
            continue
        lower = _LOWER.search(spec)
        if not lower:
            raise SystemExit(f"lowest.py: {req!r} has no lower bound (>=): give it one")
        lines.append(f"{name}=={lower.group(1)}")
    return lines


def main(argv: list[str]) -> int:
    """Print the constraints for the project's dependencies and the extras named by --extra."""
    extras: list[str] = []
    paths: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg == "--extra":
            extras.append(next(args))
        else:
            paths.append(arg)
    path = Path(paths[0] if paths else Path(__file__).resolve().parent.parent / "pyproject.toml")
    project = tomllib.loads(path.read_text(encoding="utf-8"))["project"]
    requirements = list(project.get("dependencies", []))
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    print("\n".join(lower_bounds(requirements, project["name"])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
