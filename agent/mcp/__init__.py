"""The assistant interface: `runbook mcp`, the commands served over MCP (the `mcp` extra)."""
