"""Every relative link in README.md and docs/*.md points at a file (or heading) that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_CODE = re.compile(r"`[^`\n]*`")
_INLINE = re.compile(r'!?\[(?:[^\]\\]|\\.)*\]\(\s*(?:<([^>]*)>|([^)\s]*))(?:\s+"[^"]*")?\s*\)')
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)


def _prose(text: str) -> str:
    """The text without code blocks and code spans, where brackets are not links."""
    return _CODE.sub("", _FENCE.sub("", text))


def links(text: str) -> list[str]:
    """Every link target of a markdown text: inline and reference-style, outside code."""
    prose = _prose(text)
    inline = [m.group(1) if m.group(1) is not None else m.group(2) for m in _INLINE.finditer(prose)]
    return inline + [m.group(1) for m in _REFERENCE.finditer(prose)]


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lowercase, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*]|<[^>]+>", "", heading).strip().lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a markdown file's headings (repeated ones get -1, -2, ...)."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for heading in _HEADING.findall(_FENCE.sub("", path.read_text(encoding="utf-8"))):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(doc: Path, root: Path = ROOT) -> list[str]:
    """The links of `doc` that do not point at a file or heading below `root` (the repository)."""
    out = []
    for target in links(doc.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
            continue  # http:, https:, mailto:: not files of the repository
        path_part, _, fragment = target.partition("#")
        if path_part.startswith("/"):
            out.append(f"{target}: an absolute path, not a file of the repository")
            continue
        dest = (doc.parent / path_part).resolve() if path_part else doc
        if not dest.exists():
            out.append(f"{target}: no such file")
        elif root not in (dest, *dest.parents):
            out.append(f"{target}: outside the repository")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            out.append(f"{target}: no heading '#{fragment}' in {dest.relative_to(root)}")
    return out


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_relative_links_point_at_existing_files(doc: Path) -> None:
    broken = broken_links(doc)
    assert not broken, f"{doc.relative_to(ROOT)}: broken links:\n" + "\n".join(broken)


def test_the_docs_are_found() -> None:
    names = {d.name for d in DOCS}
    assert {"README.md", "architecture.md", "format.md"} <= names


def test_link_finder_reads_markdown_as_a_reader_would(tmp_path: Path) -> None:
    text = (
        'See [a](a.md), [b](<b c.md> "title"), ![img](i.png) and [web](https://x.y/z).\n'
        "`[not](code.md)` and\n```\n[not](fenced.md)\n```\n[ref]: r.md\n"
    )
    assert links(text) == ["a.md", "b c.md", "i.png", "https://x.y/z", "r.md"]
    assert slug("Statuses, causes and exit codes") == "statuses-causes-and-exit-codes"
    assert slug("`on_shortfall`") == "on_shortfall"
    (tmp_path / "x.md").write_text(
        "# Top\n[up](#top) [gone](#nowhere) [f](missing.md) [abs](/etc/hosts) [out](../y.md)\n"
    )
    (tmp_path.parent / "y.md").write_text("")
    assert broken_links(tmp_path / "x.md", tmp_path.resolve()) == [
        "#nowhere: no heading '#nowhere' in x.md",
        "missing.md: no such file",
        "/etc/hosts: an absolute path, not a file of the repository",
        "../y.md: outside the repository",
    ]
