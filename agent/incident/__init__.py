"""After the run: incidents, postmortems, follow-up runbooks, and importing procedures."""

from pathlib import Path

# What `plan` and `import` read as markdown documents; kept here so that telling a document from a
# runbook imports none of the importer (plan of a runbook must start fast).
MARKDOWN_SUFFIXES = (".md", ".markdown")


def is_markdown(path: Path) -> bool:
    """True for a folder or a markdown file: what `plan` reviews as documents."""
    return path.is_dir() or path.suffix.lower() in MARKDOWN_SUFFIXES
