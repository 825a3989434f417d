"""Is the program a command names there (script, `python -m` module, PATH)? And what is closest."""

from __future__ import annotations

import ast
import difflib
import functools
import json
import os
import re
import shutil
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from agent.proc.process import run_captured

__all__ = ["GENERIC_WORDS", "Lookup", "closest_files", "list_files", "lookup"]

GENERIC_WORDS: frozenset[str] = frozenset(
    {
        "data", "file", "files", "script", "scripts", "run", "main", "test", "tests", "util",
        "utils", "new", "old", "tmp", "bin", "the", "a", "an", "to", "of", "all", "get", "set",
        "do", "and", "or", "for", "in", "on", "by", "with", "from", "is", "init", "py", "sh",
    }
)  # fmt: skip
"""Words too common in file names to make two names alike on their own."""

MAX_FILES = 20_000
"""The walk of the workdir stops after this many files."""

_SKIP_DIRS = frozenset(
    {".git", ".venv", "venv", "node_modules", "__pycache__", ".runbook", "reports"}
)
_PYTHON_RE = re.compile(r"^(?:python|pypy)(?:\d+(?:\.\d+)*)?$")
_SHELLS = frozenset({"bash", "sh", "dash", "zsh", "ksh"})
_PY_FLAGS_WITH_VALUE = frozenset("WX")
_PY_LONG_WITH_VALUE = frozenset({"--check-hash-based-pycs"})
_PY_NOTHING_TO_RUN = frozenset("hV?")
_SH_LONG_WITH_VALUE = frozenset({"--rcfile", "--init-file"})
_SYS_PATH_PROBE = (
    "import json, site, sys; "
    "print(json.dumps({'path': sys.path, 'user': site.getusersitepackages()}))"
)
_FAMILIES: dict[str, str] = {
    ".py": "python", ".pyw": "python", ".pyc": "python",
    ".sh": "shell", ".bash": "shell", ".zsh": "shell", ".ksh": "shell",
}  # fmt: skip
_CODE_SUFFIXES = frozenset(
    {
        ".py", ".pyw", ".sh", ".bash", ".zsh", ".ksh", ".rb", ".pl", ".js", ".mjs", ".ts",
        ".go", ".r", ".sql", ".jl", ".php", ".lua", ".ps1", ".awk", ".ipynb",
    }
)  # fmt: skip
_WORD_RE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_PACKAGE_FILES = frozenset({"__init__", "__main__"})


@dataclass(frozen=True)
class Lookup:
    """What a command names, whether it is there, and what exists that is closest.

    Attributes:
        found: The script, module or program exists (and the interpreter running it).
        kind: ``"script"``, ``"module"`` or ``"program"``.
        target: What was looked for, as the command wrote it.
        resolved: The path found, or None.
        alternatives: When not found, up to three files under workdir (relative, closest first).
        message: One line for the user.
    """

    found: bool
    kind: str
    target: str
    resolved: str | None
    alternatives: list[str]
    message: str


def _is_file(path: Path) -> bool:
    """Path.is_file, also False for a name the OS refuses (too long: ENAMETOOLONG, ...)."""
    try:
        return path.is_file()
    except OSError:
        return False


def _is_dir(path: Path) -> bool:
    """Path.is_dir, also False for a name the OS refuses."""
    try:
        return path.is_dir()
    except OSError:
        return False


def lookup(
    argv: list[str],
    *,
    workdir: Path,
    env: Mapping[str, str],
    files: Sequence[str] | None = None,
) -> Lookup | None:
    """Look for the script, module or program that a command names, without running it.

    ``python [flags] x.py`` and ``bash x.sh`` name a file (relative to workdir), ``python -m a.b``
    a module (a file under workdir, PYTHONPATH or the interpreter's own sys.path; nothing is
    imported), an ``argv[0]`` with a ``/`` an executable file, anything else a program on
    ``env["PATH"]``. The interpreter itself must be on PATH too.

    Args:
        argv: The command's arguments, after templating.
        workdir: The folder the command runs in.
        env: The command's environment (PATH and PYTHONPATH are read from it).
        files: Files under workdir from `list_files`, to reuse one walk across many lookups.

    Returns:
        The lookup, or None when there is nothing to look up (an empty argv, ``python -c``,
        ``bash -c``) and the interpreter exists.
    """
    if not argv:
        return None
    program = argv[0]
    name = PurePosixPath(program).name
    if _PYTHON_RE.match(name):
        interpreter = _find_program(program, workdir, env, None, suggest=False)
        if not interpreter.found:
            return interpreter
        return _lookup_python(argv, interpreter, workdir, env, files)
    if name in _SHELLS:
        interpreter = _find_program(program, workdir, env, None, suggest=False)
        if not interpreter.found:
            return interpreter
        return _lookup_shell_script(argv, workdir, env, files)
    return _find_program(program, workdir, env, files)


def list_files(workdir: Path) -> list[str]:
    """List the files under workdir that could be named by a command.

    Hidden folders, version control, virtualenvs, ``node_modules``, ``__pycache__``, ``.runbook``
    and ``reports`` are skipped, as are hidden files; the walk stops after `MAX_FILES` files.

    Args:
        workdir: The folder to walk.

    Returns:
        Relative POSIX paths, in a stable (sorted, walk) order.
    """
    found: list[str] = []
    for root, dirs, names in os.walk(workdir):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
        rel = Path(root).relative_to(workdir).as_posix()
        for file_name in sorted(names):
            if file_name.startswith(".") or file_name.endswith(".pyc"):
                continue
            found.append(file_name if rel == "." else f"{rel}/{file_name}")
            if len(found) >= MAX_FILES:
                return found
    return found


def closest_files(
    missing: str, workdir: Path, limit: int = 3, files: Sequence[str] | None = None
) -> list[str]:
    """Name the existing files a person would offer instead of a missing one.

    Names are compared first by the words they share (the stem split on ``_``, ``-``, ``.`` and
    camelCase; near spellings such as ``contxt``/``context`` count almost fully), words of the
    folders counting a little; then by spelling (difflib ratio of the stems); files of the same
    kind (Python, shell) are preferred. A generic word (see `GENERIC_WORDS`) alone is not a match:
    a candidate needs a specific shared word or a spelling ratio of at least 0.75. For a package's
    ``__main__.py`` the package folder is its name; ``__init__.py`` files are never offered, nor
    data or documents (``.csv``, ``.md``) in place of a missing script or program.

    Args:
        missing: The missing path (relative to workdir, or absolute), e.g. ``bin/export_api.py``.
        workdir: The folder whose files are candidates.
        limit: How many to return at most.
        files: Files under workdir from `list_files`; walked here when None.

    Returns:
        Up to ``limit`` relative paths, closest first.
    """
    if limit <= 0:
        return []
    target = _name_of(_relative(missing, workdir))
    matcher = difflib.SequenceMatcher(None, "", target.stem)  # the target is analysed once
    candidates = list_files(workdir) if files is None else files
    scored: list[tuple[float, str]] = []
    for path in candidates:
        if path == target.path:
            continue
        name = _name_of(path)
        if name.is_init:
            continue
        score = _score(target, name, matcher)
        if score is not None:
            scored.append((score, path))
    scored.sort(key=lambda item: (-item[0], item[1]))
    return [path for _, path in scored[:limit]]


# ---------------------------------------------------------------------------------------------
# What a command names


def _lookup_python(
    argv: list[str],
    interpreter: Lookup,
    workdir: Path,
    env: Mapping[str, str],
    files: Sequence[str] | None,
) -> Lookup | None:
    flags: set[str] = set()
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return _lookup_python_script(argv[i + 1], workdir, files) if i + 1 < len(argv) else None
        if arg == "-" or not arg.startswith("-"):
            return None if arg == "-" else _lookup_python_script(arg, workdir, files)
        if arg.startswith("--"):
            option = arg.split("=", 1)[0]
            if option.startswith("--help") or option == "--version":
                return None
            i += 2 if option in _PY_LONG_WITH_VALUE and "=" not in arg else 1
            continue
        i += 1
        for j, flag in enumerate(arg[1:], start=1):
            if flag == "c" or flag in _PY_NOTHING_TO_RUN:
                return None
            if flag == "m":
                module = arg[j + 1 :] or (argv[i] if i < len(argv) else "")
                if not module:
                    return None
                return _lookup_module(
                    module,
                    argv[0],
                    interpreter=interpreter,
                    flags=flags,
                    workdir=workdir,
                    env=env,
                    files=files,
                )
            if flag in _PY_FLAGS_WITH_VALUE:
                if j == len(arg) - 1:
                    i += 1
                break
            flags.add(flag)
    return None


def _lookup_python_script(script: str, workdir: Path, files: Sequence[str] | None) -> Lookup:
    path = _under(workdir, script)
    if _is_file(path) or _is_file(path / "__main__.py"):
        return Lookup(True, "script", script, str(path), [], f"script {script} found at {path}")
    if _is_dir(path):
        message = f"script {script} is a folder without __main__.py"
    else:
        message = f"script {script} does not exist"
    return Lookup(False, "script", script, None, _alternatives(script, workdir, files), message)


def _lookup_shell_script(
    argv: list[str], workdir: Path, env: Mapping[str, str], files: Sequence[str] | None
) -> Lookup | None:
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if arg == "-":
            return None
        if arg.startswith("--"):
            i += 2 if arg in _SH_LONG_WITH_VALUE else 1
            continue
        if arg[:1] in "-+" and len(arg) > 1:
            cluster = arg[1:]
            if "c" in cluster or "s" in cluster:
                return None
            i += 1 + sum(1 for flag in cluster if flag in "oO")
            continue
        break
    if i >= len(argv):
        return None
    script = argv[i]
    path = _under(workdir, script)
    if _is_file(path):
        return Lookup(True, "script", script, str(path), [], f"script {script} found at {path}")
    if "/" not in script:  # bash (and POSIX sh may) search PATH for a bare script name
        on_path = shutil.which(script, mode=os.F_OK, path=_search_path(workdir, env))
        if on_path is not None and _is_file(Path(on_path)):
            message = f"script {script} found at {on_path}"
            return Lookup(True, "script", script, on_path, [], message)
    message = f"script {script} does not exist"
    return Lookup(False, "script", script, None, _alternatives(script, workdir, files), message)


def _find_program(
    program: str,
    workdir: Path,
    env: Mapping[str, str],
    files: Sequence[str] | None,
    *,
    suggest: bool = True,
) -> Lookup:
    """An executable named by path (relative to workdir) or found on PATH. Files under workdir
    are offered only with ``suggest``: they are no substitute for a missing interpreter."""
    if "/" in program:
        path = _under(workdir, program)
        if not _is_file(path):
            message = f"program {program} does not exist"
        elif not os.access(path, os.X_OK):
            message = f"program {program} is not executable"
        else:
            return Lookup(
                True, "program", program, str(path), [], f"program {program} found at {path}"
            )
        alternatives = _alternatives(program, workdir, files) if suggest else []
        return Lookup(False, "program", program, None, alternatives, message)
    found = shutil.which(program, path=_search_path(workdir, env))
    if found is not None:
        return Lookup(True, "program", program, found, [], f"program {program} found at {found}")
    message = f"program {program} not found on PATH"
    alternatives = _alternatives(program, workdir, files) if suggest else []
    return Lookup(False, "program", program, None, alternatives, message)


def _search_path(workdir: Path, env: Mapping[str, str]) -> str:
    """PATH as the child sees it: relative entries are relative to its cwd, the workdir."""
    entries = env.get("PATH", os.defpath).split(os.pathsep)
    return os.pathsep.join(str(workdir / entry) for entry in entries)


# ---------------------------------------------------------------------------------------------
# python -m, without importing anything


def _lookup_module(
    module: str,
    program: str,
    *,
    interpreter: Lookup,
    flags: set[str],
    workdir: Path,
    env: Mapping[str, str],
    files: Sequence[str] | None,
) -> Lookup:
    parts = module.split(".")
    as_file = "/".join(parts) + ".py"
    if all(part.isidentifier() for part in parts):
        package_only: Path | None = None
        for base in _module_bases(parts, interpreter.resolved or program, flags, workdir, env):
            for candidate in (
                base.with_name(f"{parts[-1]}.py"),
                base / "__main__.py",
                base.with_name(f"{parts[-1]}.pyc"),
            ):
                if _is_file(candidate):
                    message = f"module {module} found at {candidate}"
                    return Lookup(True, "module", module, str(candidate), [], message)
            if package_only is None and _is_file(base / "__init__.py"):
                package_only = base
        if package_only is not None:
            message = f"module {module} is a package without __main__.py ({package_only})"
            alternatives = _alternatives(as_file, workdir, files)
            return Lookup(False, "module", module, None, alternatives, message)
    message = (
        f"module {module} not found under {workdir} or PYTHONPATH, nor installed for {program}"
    )
    return Lookup(False, "module", module, None, _alternatives(as_file, workdir, files), message)


def _module_bases(
    parts: list[str], interpreter: str, flags: set[str], workdir: Path, env: Mapping[str, str]
) -> Iterator[Path]:
    """Where ``python -m a.b.c`` would look, as ``.../a/b/c`` paths, in the interpreter's order.

    The workdir (unless ``-I``/``-P``/PYTHONSAFEPATH), PYTHONPATH (unless ``-I``/``-E``), the
    interpreter's own sys.path, its user site-packages (unless ``-I``/``-s``/PYTHONNOUSERSITE)
    and packages that setuptools editable installs map by import hook.
    """
    isolated = "I" in flags
    use_env = not (isolated or "E" in flags)
    if not (isolated or "P" in flags or (use_env and env.get("PYTHONSAFEPATH"))):
        yield workdir.joinpath(*parts)
    if use_env and env.get("PYTHONPATH"):
        for entry in env["PYTHONPATH"].split(os.pathsep):
            yield _under(workdir, entry).joinpath(*parts)
    probe = _probe(interpreter, env)  # only asked when the module is not the user's own
    for entry in probe.paths:
        yield Path(entry).joinpath(*parts)
    no_user_site = isolated or "s" in flags or (use_env and env.get("PYTHONNOUSERSITE"))
    if probe.user_site and not no_user_site:
        yield Path(probe.user_site).joinpath(*parts)
    mapped = probe.editable.get(parts[0])
    if mapped is not None:
        yield Path(mapped).joinpath(*parts[1:])


@dataclass(frozen=True)
class _Probe:
    """What an interpreter searches: its isolated sys.path, user site, editable mappings."""

    paths: tuple[str, ...]
    user_site: str | None
    editable: Mapping[str, str]


_PROBES: dict[str, _Probe] = {}
_PROBES_LOCK = threading.Lock()


def _probe(interpreter: str, env: Mapping[str, str]) -> _Probe:
    """Ask the interpreter, once per process, for its sys.path (``-I``: no cwd, no PYTHONPATH,
    no user code imported); read the editable-install finders it has without running them."""
    with _PROBES_LOCK:
        cached = _PROBES.get(interpreter)
    if cached is not None:
        return cached
    try:
        done = run_captured([interpreter, "-I", "-c", _SYS_PATH_PROBE], env=env, timeout=30)
        answer = json.loads(done.stdout) if done.returncode == 0 else {}
    except (OSError, ValueError):  # cannot start, or did not answer in JSON: nothing to add
        answer = {}
    if not isinstance(answer, dict):
        answer = {}
    raw = answer.get("path")
    paths = tuple(
        p for p in (raw if isinstance(raw, list) else []) if isinstance(p, str) and _is_dir(Path(p))
    )
    user = answer.get("user")
    editable: dict[str, str] = {}
    for directory in reversed(paths):  # earlier sys.path entries win
        for finder in sorted(Path(directory).glob("__editable__*finder.py")):
            editable.update(_editable_mapping(finder))
    probe = _Probe(paths, user if isinstance(user, str) else None, editable)
    with _PROBES_LOCK:
        _PROBES[interpreter] = probe
    return probe


_MAPPING_RE = re.compile(r"^MAPPING\s*(?::[^=]*)?=\s*(\{.*\})\s*$", re.MULTILINE)


def _editable_mapping(finder: Path) -> dict[str, str]:
    """Read (never run) the ``MAPPING`` literal of a setuptools editable-install finder."""
    try:
        match = _MAPPING_RE.search(finder.read_text(encoding="utf-8", errors="replace"))
        value = ast.literal_eval(match.group(1)) if match else {}
    except (OSError, ValueError, SyntaxError):
        return {}
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


# ---------------------------------------------------------------------------------------------
# Closest files


@dataclass(frozen=True)
class _Name:
    """A path seen as a person reads it: the name's words, the folders' words, the kind."""

    path: str
    stem: str
    words: frozenset[str]
    folder_words: frozenset[str]
    suffix: str
    is_init: bool


@functools.lru_cache(maxsize=65_536)
def _name_of(path: str) -> _Name:
    """Read a relative POSIX path as a `_Name` (cached: file lists are reused across steps)."""
    folder, _, base = path.rpartition("/")
    folders = [part for part in folder.split("/") if part]
    dot = base.rfind(".")
    stem, suffix = (base[:dot], base[dot:].lower()) if dot > 0 else (base, "")
    is_init = stem == "__init__"
    if stem in _PACKAGE_FILES and folders:  # a package's __main__ is named by its folder
        stem = folders.pop()
    words = _words(stem)  # the spelling is compared on the words, whatever their separators
    folder_words = frozenset(word for part in folders for word in _words(part))
    spelled = "_".join(words) or stem.lower()
    return _Name(path, spelled, frozenset(words), folder_words, suffix, is_init)


def _words(text: str) -> list[str]:
    return [w.lower() for part in re.split(r"[_\-.\s]+", text) for w in _WORD_RE.findall(part)]


def _is_generic(word: str) -> bool:
    return word in GENERIC_WORDS or len(word) < 2 or word.isdigit()


@functools.lru_cache(maxsize=65_536)
def _word_similarity(a: str, b: str) -> float:
    """1 for the same word; a near spelling (same first letter, ratio >= 0.8, or a shared stem
    of five letters or more such as validate/validation) counts a little less; else 0."""
    if a == b:
        return 1.0
    if min(len(a), len(b)) < 4 or a[0] != b[0]:
        return 0.0
    prefix = next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )
    if prefix >= 5 and prefix >= 0.7 * min(len(a), len(b)):
        return 0.9
    ratio = difflib.SequenceMatcher(None, a, b).ratio()
    return ratio if ratio >= 0.8 else 0.0


def _best(word: str, words: frozenset[str]) -> float:
    """How well one word is matched by any of a name's words (see `_word_similarity`)."""
    if word in words:
        return 1.0
    if len(word) < 4 or word.isdigit():
        return 0.0
    best = 0.0
    for other in words:
        if other[0] == word[0] and len(other) >= 4:
            best = max(best, _word_similarity(word, other))
    return best


def _score(target: _Name, name: _Name, matcher: difflib.SequenceMatcher[str]) -> float | None:
    """How close a candidate's name is to the target's, or None when it is no match at all."""
    if _is_code(target.suffix) and not _is_code(name.suffix):
        return None  # a CSV or a README is no substitute for a missing script
    words = 0.0  # the target's name words found in the candidate's name (1) or folders (0.5)
    specific = False  # a shared word that is not generic, seen from a name on either side
    for word in target.words:
        weight = max(_best(word, name.words), 0.5 * _best(word, name.folder_words))
        if _is_generic(word):
            words += 0.25 * weight
        elif weight > 0.0:
            words += weight
            specific = True
    folders = 0.0  # the target's folder words found anywhere in the candidate: a little
    for word in target.folder_words - target.words:
        to_name = _best(word, name.words)
        weight = max(to_name, _best(word, name.folder_words))
        if _is_generic(word):
            folders += 0.025 * weight
        else:
            folders += 0.1 * weight
            specific = specific or to_name > 0.0
    matcher.set_seq1(name.stem)
    if not specific and (matcher.real_quick_ratio() < 0.75 or matcher.quick_ratio() < 0.75):
        return None
    spelling = matcher.ratio()
    if not specific and spelling < 0.75:
        return None
    family = _FAMILIES.get(target.suffix)
    if family is not None and _FAMILIES.get(name.suffix) == family:
        kind = 0.4
    elif name.suffix:
        kind = 0.2 if name.suffix in _CODE_SUFFIXES else 0.0
    else:
        kind = 0.1
    return words + folders + 0.6 * spelling + kind


def _is_code(suffix: str) -> bool:
    """A file that could be run: a script or program suffix, or none (``bin/deploy``)."""
    return not suffix or suffix in _CODE_SUFFIXES


# ---------------------------------------------------------------------------------------------
# Paths


def _under(workdir: Path, path: str) -> Path:
    return workdir / path  # an absolute path stays as it is


def _relative(path: str, workdir: Path) -> str:
    pure = PurePosixPath(path)
    if pure.is_absolute():
        try:
            return Path(path).relative_to(workdir).as_posix()
        except ValueError:
            return pure.name
    return pure.as_posix()


def _alternatives(missing: str, workdir: Path, files: Sequence[str] | None) -> list[str]:
    return closest_files(missing, workdir, 3, files)
