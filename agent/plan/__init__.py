"""The runbook as written: model, vars, graph, templates, loading and checking."""
