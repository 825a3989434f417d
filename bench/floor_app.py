"""The floor of `runbook validate`: an empty typer command on the libraries validate needs.

It imports what validate imports (typer, pydantic, jinja2's sandbox, yaml) and parses the same
arguments, then does nothing. typer 0.29 coerces every parameter through a pydantic TypeAdapter,
which also imports importlib.metadata (pydantic's plugin lookup): part of this floor too.
"""

import jinja2.sandbox  # noqa: F401 - imported for its cost
import typer
import yaml  # noqa: F401 - imported for its cost
from pydantic import BaseModel  # noqa: F401 - imported for its cost

app = typer.Typer()


@app.command()
def validate(files: list[str], fmt: str = "text") -> None:
    """Accept the arguments validate accepts, and check nothing."""


@app.command()
def other() -> None:
    """A second command, so that typer builds a group as runbook's does."""


if __name__ == "__main__":
    app()
