"""`runbook import`: a markdown incident action plan -> a draft runbook in YAML, by heuristics."""

from agent.incident.importer.assemble import PlanImportError
from agent.incident.importer.draft import DEFAULT_SCHEMA_PATH, import_plan

__all__ = ["DEFAULT_SCHEMA_PATH", "PlanImportError", "import_plan"]
