"""runbook: run incident action plans written as YAML and write their remediation reports."""

__version__ = "0.1.0"
