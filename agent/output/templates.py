"""The Jinja environment of the bundled markdown templates (report, postmortem, plan document)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
from pathlib import Path
from typing import Any

import jinja2

import agent
from agent.output import markdown

__all__ = ["render_template", "template_environment", "templates_dir"]

_ENV_OPTIONS: dict[str, Any] = {
    "autoescape": False,  # markdown, escaped by the filters below
    "undefined": jinja2.StrictUndefined,
    "trim_blocks": True,
    "lstrip_blocks": True,
    "keep_trailing_newline": True,
}


def templates_dir() -> Path:
    """Return the folder of the bundled report templates.

    Returns:
        ``agent/_data/templates`` in an installed wheel, else ``<repo>/templates``.
    """
    bundled = Path(agent.__file__).resolve().parent / "_data" / "templates"
    if bundled.is_dir():
        return bundled
    return Path(agent.__file__).resolve().parent.parent / "templates"


def render_template(name: str, folder: Path | None = None, **context: Any) -> str:
    """Render a template of templates/ (or of `folder`, which may extend those by name).

    Args:
        name: The template's file name.
        folder: Another folder searched first.
        **context: The template's variables.

    Returns:
        The text, ending with a newline.
    """
    search = (str(folder), str(templates_dir())) if folder else (str(templates_dir()),)
    text = template_environment(search).get_template(name).render(**context)
    return text if text.endswith("\n") else text + "\n"


class _BytecodeCache(jinja2.FileSystemBytecodeCache):
    """Compiled templates kept between processes; a cache that cannot be used is skipped."""

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):
            super().load_bytecode(bucket)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


@functools.lru_cache(maxsize=1)
def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """The user's cache of compiled templates: compiling one cost `plan` about 30 ms (cProfile).

    The compiled code also depends on the environment's options and Jinja's version, which the
    cache's keys (template name, file, source) do not cover: they name the folder.
    """
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    tag = hashlib.sha256(repr((sorted(_ENV_OPTIONS.items()), jinja2.__version__)).encode())
    directory = Path(root) / "runbook" / f"templates-{tag.hexdigest()[:12]}"
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError:
        return None
    return _BytecodeCache(str(directory))


@functools.lru_cache(maxsize=16)
def template_environment(search_path: tuple[str, ...]) -> jinja2.Environment:
    """One environment per template search path per process; templates compile once, and are
    kept compiled between processes.

    Args:
        search_path: The folders templates are looked up in, first one first.

    Returns:
        The environment, with the markdown filters.
    """
    env = jinja2.Environment(  # noqa: S701 - markdown, escaped by its filters
        loader=jinja2.FileSystemLoader(list(search_path)),
        bytecode_cache=_bytecode_cache(),
        **_ENV_OPTIONS,
    )
    env.filters.update(
        md=markdown.inline,
        code=markdown.code,
        fence=markdown.fence,
        link=markdown.link,
        table=markdown.table,
        plain=markdown.plain,
    )
    return env
