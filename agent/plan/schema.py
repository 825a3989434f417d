"""The JSON Schema of the runbook format, as `runbook schema` prints it."""

from __future__ import annotations

import json

from pydantic import BaseModel

from agent.plan.model import Runbook

__all__ = ["schema_text"]


def schema_text(model: type[BaseModel] = Runbook, name: str = "runbook") -> str:
    """The schema of `model` (the runbook's by default) as stable, indented JSON text ending with
    a newline; `name` names the committed file, runbooks/<name>.schema.json."""
    schema = model.model_json_schema()
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://github.com/runbook-agent/runbook/runbooks/{name}.schema.json",
        **schema,
    }
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
