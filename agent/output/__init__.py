"""What a run record becomes: facts, report, console, JUnit, notifications, history, plan review."""
