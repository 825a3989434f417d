"""The run context: vars, env, workdir and masks, built once per run or resume and handed on."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.plan import templating
from agent.plan.loader import LoadedRunbook
from agent.proc.redact import MASK, Redactor
from agent.record import StepResult
from agent.steps import REGISTRY
from agent.warehouse.base import Warehouse

__all__ = ["RunContext", "StepsView", "build_context", "hash_file", "secret_values"]


def secret_values(
    loaded: LoadedRunbook,
    values: Mapping[str, Any],
    env: Mapping[str, str],
    notify_url: str | None = None,
) -> list[str]:
    """What to mask: env vars named in `secrets`, `secret: true` vars, webhook URLs.

    A Slack-style webhook URL is itself a credential: whoever has it can post.
    """
    out = [env[name] for name in loaded.runbook.secrets if env.get(name)]
    out += [u for u in (notify_url, loaded.runbook.notify) if u and "{{" not in u]
    out += [
        str(values[n]) for n, spec in loaded.runbook.vars.items() if spec.secret and values.get(n)
    ]
    return out


def hash_file(path: Path) -> str | None:
    """The file's SHA-256, or None when it cannot be read."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class StepsView(Mapping[str, Any]):
    """`steps.<id>` as templates see it, built on access (a step reads a few, not all)."""

    def __init__(self, results: Mapping[str, StepResult]) -> None:
        self._results = results

    def __getitem__(self, sid: str) -> dict[str, Any]:
        r = self._results[sid]
        return {
            "status": r.status.value if r.status else None,
            "captures": dict(r.captures),
            "counts": {k: c.model_dump() for k, c in r.counts.items()},
            "exit_code": r.exit_code,
            "reason": r.reason,
        }

    def __iter__(self) -> Iterator[str]:
        return iter(self._results)

    def __len__(self) -> int:
        return len(self._results)


@dataclass(frozen=True)
class RunContext:
    """What every template, step, hash and piece of prose of one run sees: made once."""

    loaded: LoadedRunbook
    values: Mapping[str, Any]
    env: Mapping[str, str]  # the process environment for commands (os.environ + runbook env)
    workdir: Path
    redactor: Redactor

    def names(
        self,
        *,
        steps: Mapping[str, Any] | None = None,
        run: Mapping[str, Any] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Names visible to templates: vars, env, steps, run, plus `extra`."""
        return {
            **self.values,
            "env": dict(self.env),
            "steps": steps if steps is not None else {},
            "run": dict(run) if run is not None else {"id": ""},
            **extra,
        }

    def render(self, source: str, **names: Any) -> str:
        """Render one of the runbook's strings and mask what it must not show."""
        return self.redactor.redact(templating.render(source, self.names(**names)))

    def masked_var(self, name: str, value: Any) -> Any:
        """A var as the record shows it: a `secret: true` var is masked whatever its type."""
        spec = self.loaded.runbook.vars.get(name)
        if spec is not None and spec.secret and value is not None:
            return MASK
        return self.redactor.redact(value) if isinstance(value, str) else value

    def script_hashes(self) -> dict[str, str]:
        """Hashes of the script files the steps name, so `resume` can tell if they changed.

        Rendered with the run's own env: a script named through `{{ env.X }}` is hashed too.
        """
        out: dict[str, str] = {}
        names = self.names(**self.partition_placeholder())
        for step in self.loaded.runbook.steps:
            for arg in REGISTRY[step.kind].scripts(step, names):
                p = (self.workdir / arg) if not Path(arg).is_absolute() else Path(arg)
                if p.suffix in (".py", ".sh", ".bash", ".sql") and p.is_file():
                    h = hash_file(p)
                    if h:
                        out[arg] = h
        return out

    def partition_placeholder(self) -> dict[str, Any]:
        """The partition var bound to a stand-in value, for what is rendered once per run
        (script paths to hash): a command's script seldom depends on its partition."""
        spec = self.loaded.runbook.partitions
        if spec is None:
            return {}
        value: Any = dt.date(1970, 1, 1)
        if spec.values:
            value = spec.values[0]
        return {spec.var: value}

    def changed_scripts(self, hashes: Mapping[str, str]) -> list[str]:
        """The scripts of `hashes` whose content is not what it was."""
        changed = []
        for rel, old in hashes.items():
            p = Path(rel) if Path(rel).is_absolute() else self.workdir / rel
            if hash_file(p) != old:
                changed.append(rel)
        return changed

    def open_warehouse(self, endpoint: str | None) -> Warehouse:
        """Open the runbook's warehouse (imports the backend only now)."""
        from agent.warehouse import open_warehouse

        w = self.loaded.runbook.warehouse
        return open_warehouse(
            w.backend,
            workdir=self.workdir,
            path=w.path,
            project=w.project,
            location=w.location,
            endpoint=endpoint or os.environ.get("RUNBOOK_BIGQUERY_ENDPOINT"),
        )


def build_context(
    loaded: LoadedRunbook,
    values: Mapping[str, Any],
    *,
    extra_env: Mapping[str, str] | None = None,
    notify_url: str | None = None,
) -> RunContext:
    """Render the runbook's env over the process environment, find the workdir, make the masks."""
    env = dict(os.environ) | dict(extra_env or {})
    base = {**values, "env": env, "run": {"id": ""}}
    for k, v in loaded.runbook.env.items():
        env[k] = templating.render(v, {**base, "env": env})
    names = {**values, "env": env, "run": {"id": ""}}
    workdir = (loaded.base_dir / templating.render(loaded.runbook.workdir, names)).resolve()
    redactor = Redactor(secret_values(loaded, values, env, notify_url))
    return RunContext(
        loaded=loaded, values=dict(values), env=env, workdir=workdir, redactor=redactor
    )
