"""Follow-up runbooks: from a run that fell short, a runbook that finishes the job later."""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from agent.errors import RunbookError, ValidationError
from agent.incident import emit
from agent.plan import templating
from agent.plan.loader import LoadedRunbook, load_runbook, load_text
from agent.plan.model import CommandStep
from agent.plan.vars import resolve_vars
from agent.proc.preflight import lookup
from agent.record import (
    FOLLOWUP_SUFFIX,
    RunRecord,
    Status,
    StepResult,
    load_record,
    write_atomic,
)
from agent.run.context import build_context

__all__ = ["FOLLOWUP_SUFFIX", "default_followup_path", "followup", "write_followup"]

SHOWN_PARTITIONS = 10  # partitions a comment names one by one (the `values:` list has them all)
WAIT_EVERY = "5m"
WAIT_TIMEOUT = "2h"
_SCHEMA_LINE = re.compile(r"^#\s*yaml-language-server:\s*\$schema=(\S+)\s*$")
_TEMPLATE_KEYS_EXPR = {"when", "expect"}
_NOT_TEMPLATED = {"id", "kind", "needs", "capture", "details", "checks", "resume"}


def _literal(text: str) -> str:
    """Text that must reach the report as written, even if it holds template syntax."""
    if templating.is_template(text):
        return "{% raw %}" + text.replace("{% endraw %}", "") + "{% endraw %}"
    return text


def _fine(step: StepResult) -> bool:
    """Succeeded, or skipped on purpose (a false `when`, or left out by --only/--from)."""
    return step.status == Status.SUCCESS or (
        step.status == Status.SKIPPED and step.skipped_by in ("when", "selection")
    )


def _strings(value: Any, key: str | None = None) -> Iterator[tuple[str | None, str]]:
    if isinstance(value, str):
        yield key, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, str(k) if key is None else key)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v, key)


def _references(raw_step: dict[str, Any]) -> set[str]:
    """The steps a step's templates and expressions read (`steps.<id>`), and those it needs."""
    refs: set[str] = set(raw_step.get("needs") or [])
    for key, text in _strings(raw_step):
        if key in _NOT_TEMPLATED:
            continue
        try:
            refs |= templating.step_references(text, expression=key in _TEMPLATE_KEYS_EXPR)
        except templating.TemplateError:
            continue
    return refs


def default_followup_path(run_dir: Path) -> Path:
    """Where a run's follow-up runbook goes by default: next to the runbook the run ran.

    Args:
        run_dir: The run directory (holding run.json).

    Returns:
        ``<runbook folder>/<runbook stem>.followup.yaml`` (the stem without an earlier
        ``.followup``, so a follow-up of a follow-up replaces it).
    """
    return _default_path(load_record(run_dir))


def _default_path(record: RunRecord) -> Path:
    original = Path(record.runbook_path)
    stem = original.name.removesuffix(".yaml").removesuffix(".yml").removesuffix(".followup")
    return original.with_name(f"{stem}.followup.yaml")


def _wait_condition(
    loaded: LoadedRunbook, sid: str, results: list[StepResult], partition_var: str | None
) -> str | None:
    """What the wait in front of a short step polls: the template when it reads only vars
    (and the partition var, bound anew in each partition), else the condition as rendered,
    when every short result rendered it the same."""
    step = next(s for s in loaded.runbook.steps if s.id == sid)
    template = step.on_shortfall.wait_for if step.on_shortfall else None
    rendered = {str(w).strip() for r in results if (w := (r.shortfall or {}).get("wait_for"))}
    if template:
        try:
            names = templating.template_names(template)
        except templating.TemplateError:
            names = {"?"}
        known = set(loaded.runbook.vars) | {"env"} | ({partition_var} if partition_var else set())
        if names <= known:
            return template.strip()
    # One partition's rendered condition would be the wrong one for the others.
    return _literal(rendered.pop()) if len(rendered) == 1 else None


def _still_missing(
    result: StepResult, loaded: LoadedRunbook, values: dict[str, Any]
) -> tuple[bool, list[str]]:
    """Is the program a NOT_FOUND step named still missing? And the closest files now."""
    if not result.command:
        return True, list(result.alternatives)
    try:
        context = build_context(loaded, values)
        found = lookup(list(result.command), workdir=context.workdir, env=context.env)
    except (RunbookError, OSError):
        return True, list(result.alternatives)
    if found is None or found.found:
        return False, []
    return True, list(found.alternatives or result.alternatives)


def _schema_line(original: Path, text: str, target: Path) -> str | None:
    first = text.splitlines()[0] if text else ""
    m = _SCHEMA_LINE.match(first)
    if m is None:
        return None
    schema = m.group(1)
    if "://" in schema or Path(schema).is_absolute():
        return first
    resolved = (original.parent / schema).resolve()
    return f"# yaml-language-server: $schema={os.path.relpath(resolved, target.parent.resolve())}"


def _rebase(workdir: str, original: Path, target: Path) -> str:
    """The runbook's workdir, relative to the follow-up's folder instead of the original's."""
    if Path(workdir).is_absolute() or original.parent.resolve() == target.parent.resolve():
        return workdir
    base = os.path.relpath(original.parent.resolve(), target.parent.resolve())
    return base if workdir in ("", ".") else f"{base}/{workdir}"


def _describe(result: StepResult, record: RunRecord) -> str:
    status = result.status.value if result.status else "NOT FINISHED"
    reason = f": {' '.join(result.reason.split())}" if result.reason else ""
    return f"{result.id}: {status} in run {record.run_id}{reason}"


def _statuses(results: list[StepResult]) -> str:
    """The statuses of some results, each once, in the order they first come."""
    seen = (r.status.value if r.status else "NOT FINISHED" for r in results)
    return "/".join(dict.fromkeys(seen))


def _listed(keys: list[str]) -> str:
    """Partitions as a comment names them: the first few, then how many more."""
    more = len(keys) - SHOWN_PARTITIONS
    return ", ".join(keys[:SHOWN_PARTITIONS]) + (f", ... ({more} more)" if more > 0 else "")


def _describe_partitions(pairs: list[StepResult], record: RunRecord) -> str:
    """A step's shortfall over a partitioned run: where it fell short, and the first reason."""
    short = [r for r in pairs if not _fine(r)]
    first = short[0]
    where = _listed([str(r.partition) for r in short])
    reason = f"; {first.partition}: {' '.join(first.reason.split())}" if first.reason else ""
    return (
        f"{first.id}: {_statuses(short)} in {len(short)} of {len(pairs)} partitions of run "
        f"{record.run_id} ({where}){reason}"
    )


def followup(run_dir: Path, *, out: Path | None = None) -> str:
    """Write the follow-up runbook of a run: what did not succeed, ready to run when data arrives.

    The follow-up keeps the original runbook's vars (with the run's values as defaults; secret
    vars stay required), env, secrets, workdir, warehouse, defaults and incident. Its steps, in
    the original order: every step that did not succeed, every verify step (they measure the
    result), and every step those need or read; a step whose ``on_shortfall.wait_for`` names a
    condition gets a ``wait`` step in front of it that it needs. A step whose program was
    NOT_FOUND and is still missing stays as written, NOT_FOUND again until it exists, with the
    closest existing scripts in a comment. A partitioned run's follow-up runs over only the
    partitions where some step fell short, as ``partitions.values`` (var, parallel and order
    as written). The text passes ``runbook validate``.

    Args:
        run_dir: The run directory (holding run.json); the runbook it ran must still exist.
        out: Where the follow-up will be written (default: `default_followup_path`); relative
            paths (workdir, the schema comment) are rewritten for that folder.

    Returns:
        The follow-up runbook as YAML text.

    Raises:
        RunbookError: when the run completed (nothing to follow up) or its runbook is gone.
    """
    record = load_record(run_dir)
    return _followup(record, out if out is not None else _default_path(record))


def _followup(record: RunRecord, target: Path) -> str:
    original = Path(record.runbook_path)
    if not original.is_file():
        raise RunbookError(f"the runbook of run {record.run_id} is gone: {original}")
    short = [s for s in record.steps if not _fine(s)]
    if not short:
        raise RunbookError(
            f"run {record.run_id} ended {record.status.value if record.status else 'unfinished'}"
            " with every step succeeded: there is nothing to follow up"
        )
    text = original.read_text(encoding="utf-8")
    loaded = load_runbook(original)
    raw: dict[str, Any] = yaml.safe_load(text)
    raw_steps: dict[str, dict[str, Any]] = {s["id"]: s for s in raw["steps"]}
    # A partitioned run has one result per (step, partition): each step's pairs, and the one
    # that speaks for the step (its first that fell short, else its first).
    pairs: dict[str, list[StepResult]] = {}
    for r in record.steps:
        pairs.setdefault(r.id, []).append(r)
    results = {sid: next((r for r in rs if not _fine(r)), rs[0]) for sid, rs in pairs.items()}
    partitioned = record.partition_var is not None
    short_keys = {s.partition for s in short}
    short_partitions = [k for k in record.partitions if k in short_keys]
    secret = {n for n, spec in loaded.runbook.vars.items() if spec.secret}
    overrides = {k: str(v) for k, v in record.vars.items() if k not in secret and v is not None}
    overrides = {k: v for k, v in overrides.items() if k in loaded.runbook.vars}
    values = resolve_vars(loaded.runbook, overrides, require=False)

    short_ids = {s.id for s in short}
    included = short_ids | {s.id for s in loaded.runbook.steps if s.kind == "verify"}
    reasons: dict[str, str] = {}
    while True:
        more = set()
        for sid in included:
            for ref in _references(raw_steps[sid]):
                if ref in raw_steps and ref not in included:
                    more.add(ref)
                    reasons.setdefault(ref, sid)
        if not more:
            break
        included |= more

    steps: list[tuple[list[str], dict[str, Any]]] = []
    used_ids = set(raw_steps)
    models = {s.id: s for s in loaded.runbook.steps}
    for sid in [s["id"] for s in raw["steps"]]:
        if sid not in included:
            continue
        step = copy.deepcopy(raw_steps[sid])
        result = results.get(sid)
        comments: list[str] = []
        if result is not None and sid in short_ids:
            comments.append(
                _describe_partitions(pairs[sid], record)
                if partitioned
                else _describe(result, record)
            )
        elif result is not None and sid in reasons:
            comments.append(
                f"{sid}: {result.status.value if result.status else 'not run'} in run "
                f"{record.run_id}; re-run because '{reasons[sid]}' needs or reads it"
            )
        elif result is not None:
            status = result.status.value if result.status else "not run"
            comments.append(f"{sid}: {status} in run {record.run_id}; measures the result again")
        if (
            result is not None
            and result.status == Status.NOT_FOUND
            and isinstance(models[sid], CommandStep)
        ):
            missing, alternatives = _still_missing(result, loaded, values)
            if missing:
                # It stays the step it was: NOT_FOUND again until the script exists, so no
                # confirmation (--yes) can turn the follow-up COMPLETE while it is missing.
                comments.append(f"{result.missing} is still missing: fix the command to run")
                comments += [f"  closest existing: {a}" for a in alternatives]
            else:
                comments.append(f"{result.missing} exists now: the step runs as written")
        if result is not None and sid in short_ids:
            short_pairs = [r for r in pairs[sid] if not _fine(r)]
            condition = _wait_condition(loaded, sid, short_pairs, record.partition_var)
            if condition:
                wait_id = f"wait_{sid}"
                n = 2
                while wait_id in used_ids:
                    wait_id, n = f"wait_{sid}_{n}", n + 1
                used_ids.add(wait_id)
                wait: dict[str, Any] = {
                    "id": wait_id,
                    "kind": "wait",
                    "title": f"Wait for upstream data: {raw_steps[sid].get('title') or sid}",
                    "until": condition,
                    "every": WAIT_EVERY,
                    "timeout": WAIT_TIMEOUT,
                }
                steps.append(([f"{wait_id}: on_shortfall.wait_for of {sid}"], wait))
                step["needs"] = [*(step.get("needs") or []), wait_id]
                step = _move_after(step, "kind", "needs")
        steps.append((comments, step))

    document: dict[str, Any] = {"version": 1}
    base_id = re.sub(rf"{FOLLOWUP_SUFFIX}$", "", str(raw["id"]))
    document["id"] = base_id + FOLLOWUP_SUFFIX
    title = str(raw["title"])
    document["title"] = title if title.startswith("Follow-up: ") else f"Follow-up: {title}"
    if "incident" in raw:
        document["incident"] = raw["incident"]
    if partitioned:
        fell_short = ", ".join(
            f"{results[sid].title} ({_statuses(rs)} in {_listed([str(r.partition) for r in rs])})"
            for sid in dict.fromkeys(r.id for r in short)
            if (rs := [r for r in pairs[sid] if not _fine(r)])
        )
    else:
        fell_short = ", ".join(
            f"{r.title} ({r.status.value if r.status else 'unfinished'})" for r in short
        )
    document["summary"] = _literal(
        f"Finish what run {record.run_id} of {raw['id']} left short "
        f"({record.status.value if record.status else 'unfinished'}): {fell_short}."
    )
    document["vars"] = _vars(raw.get("vars") or {}, record, secret)
    for key in ("env", "secrets"):
        if key in raw:
            document[key] = raw[key]
    document["workdir"] = _rebase(str(raw.get("workdir", ".")), original, target)
    for key in ("warehouse", "defaults", "notify"):
        if key in raw:
            document[key] = raw[key]
    if partitioned and isinstance(raw.get("partitions"), dict):
        # Only the partitions that fell short, as values: the run's own keys, bound as it bound
        # them (a range's dates and a query's rows alike); the var and scheduling as written.
        parts = raw["partitions"]
        document["partitions"] = {
            "var": parts["var"],
            "values": short_partitions,
            **{k: parts[k] for k in ("parallel", "order") if k in parts},
        }
    report = _report(raw.get("report"), {s["id"] for _, s in steps})

    header = [
        line
        for line in (
            _schema_line(original, text, target),
            f"# Follow-up of run {record.run_id} of {original.name}",
            f"# ({record.status.value if record.status else 'unfinished'}), "
            "written by `runbook followup`.",
            "# It re-runs what fell short, waits first where the runbook says what to wait for",
            "# (on_shortfall.wait_for), and measures again with the runbook's verify steps.",
            (
                f"# It covers the {_plural(len(short_partitions), 'partition')} of "
                f"{len(record.partitions)} that fell short: {_listed(short_partitions)}."
                if partitioned
                else None
            ),
        )
        if line
    ]
    if loaded.sha256 != record.runbook_sha256:
        header.append(
            f"# Note: {original.name} changed since the run; steps are taken from it now."
        )
    result_text = emit.dump(
        emit.Document(
            header=header,
            head=[emit.Data(document)],
            steps=[emit.Step(comments, emit.Data(step)) for comments, step in steps],
            tail=[emit.Data({"report": report})] if report else [],
        )
    )
    try:
        load_text(result_text, target)
    except ValidationError as exc:  # a bug here, not the user's: say what the check found
        raise RunbookError(f"the follow-up runbook does not validate:\n{exc}") from None
    return result_text


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _move_after(step: dict[str, Any], anchor: str, key: str) -> dict[str, Any]:
    """Put `key` right after `anchor` so the reader sees what a step waits for near its top."""
    value = step.pop(key)
    out: dict[str, Any] = {}
    for k, v in step.items():
        out[k] = v
        if k == anchor:
            out[key] = value
    if key not in out:
        out[key] = value
    return out


def _vars(raw_vars: dict[str, Any], record: RunRecord, secret: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, given in raw_vars.items():
        spec = dict(given or {})
        if name in secret:
            spec.pop("default", None)
            spec["required"] = True
        elif record.vars.get(name) is not None:
            spec["default"] = record.vars[name]
            spec.pop("required", None)
        out[name] = spec
    return out


def _report(raw: Any, steps: set[str]) -> dict[str, Any]:
    """The report prose whose conditions read only steps the follow-up has."""
    if not isinstance(raw, dict):
        return {}

    def keep(item: Any) -> bool:
        refs: set[str] = set()
        entries = item.items() if isinstance(item, dict) else [("text", item)]
        for key, text in entries:
            if isinstance(text, str):
                try:
                    refs |= templating.step_references(text, expression=key == "when")
                except templating.TemplateError:
                    return False
        return refs <= steps

    out: dict[str, Any] = {}
    lessons = [x for x in raw.get("lessons") or [] if keep(x)]
    if lessons:
        out["lessons"] = lessons
    next_steps = {
        h: kept
        for h, items in (raw.get("next_steps") or {}).items()
        if (kept := [x for x in items if keep(x)])
    }
    if next_steps:
        out["next_steps"] = next_steps
    return out


def write_followup(run_dir: Path, out: Path | None = None) -> Path:
    """Write the follow-up runbook of a run to `out` (default: next to the original runbook).

    Args:
        run_dir: The run directory.
        out: The file to write; parent folders are created.

    Returns:
        The path written.
    """
    record = load_record(run_dir)
    target = out if out is not None else _default_path(record)
    write_atomic(target, _followup(record, target))
    return target
