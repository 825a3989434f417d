"""The JSON Schema of the runbook format, as `runbook schema` prints it."""

from __future__ import annotations

import json

from agent.plan.model import Runbook

__all__ = ["schema_text"]


def schema_text() -> str:
    """The schema as stable, indented JSON text ending with a newline."""
    schema = Runbook.model_json_schema()
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/runbook-agent/runbook/runbooks/runbook.schema.json",
        **schema,
    }
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
