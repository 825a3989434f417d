"""Entry point for `python -m agent` and the `runbook` script: Ctrl-C at any moment is one line."""

import sys


def main() -> int:
    """Import the CLI and run it; an interrupt while it still loads ends as the CLI's would."""
    try:
        from agent.cli import main as cli_main

        return cli_main()
    except KeyboardInterrupt:
        # The CLI turns Ctrl-C into "interrupted" once it runs; this covers the import before
        # it and the moments typer spends outside any command.
        sys.stderr.write("interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
