"""The command line: a thin switchboard; each command calls one function and returns its code."""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec

import typer
from typer.core import TyperCommand

from agent import __version__
from agent.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    RunbookError,
    UsageError,
    ValidationError,
)

if TYPE_CHECKING:
    from agent.run.options import RunOptions

__all__ = ["app", "main"]


class _Command(TyperCommand):
    """A command whose help names values by what they are (FILE, NAME=VALUE, N), never by type.

    typer's own help shows an argument as `{file}` and `file <path>` and, from 0.15 on, an option
    without a metavar as `<list[str]>`; the usage line and the lists are written here from each
    parameter's metavar instead, so the help reads the same on every typer the bounds allow.
    """

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        """The usage line: `[OPTIONS]`, then each argument (`FILE...`, `[FILE]`)."""
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = _argument_name(param)
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        """The Arguments and Options lists, each argument under its metavar."""
        arguments: list[tuple[str, str]] = []
        options: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                arguments.append((_argument_name(param), record[1]))
            elif param.param_type_name == "option":
                options.append(record)
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _argument_name(param: Any) -> str:
    name = str(param.metavar or (param.name or "").upper())
    return name if param.nargs == 1 or name.endswith("...") else f"{name}..."


app = typer.Typer(
    name="runbook",
    help="Run incident runbooks for data pipelines and write their remediation reports.\n\n"
    "Example: runbook plan runbooks/demo/backfill-game-context.yaml --var date=2026-01-25",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
command = functools.partial(app.command, cls=_Command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"runbook {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    del version  # handled by its eager callback, before any command


def _complete_steps(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """The step ids of the runbook given before the option; none when it cannot be read."""
    file = _runbook_argument(ctx)
    if file is None:
        return []
    try:
        from agent.plan.loader import load_runbook

        steps = load_runbook(file).runbook.steps
    except Exception:  # noqa: BLE001 - a completion never fails aloud: no runbook, no ids
        return []
    chosen = set(ctx.params.get("only") or ())
    return [
        (s.id, str(s.title or s.kind))
        for s in steps
        if s.id.startswith(incomplete) and s.id not in chosen
    ]


def _runbook_argument(ctx: typer.Context) -> Path | None:
    """The command's FILE argument while the shell completes one of its options.

    click stops parsing at an option that still awaits its value (the one being completed) and
    leaves the arguments unset, so they are read from the words the shell passed: `COMP_WORDS`
    (bash) or `_TYPER_COMPLETE_ARGS` (zsh, fish, PowerShell).
    """
    import shlex

    if ctx.params.get("file"):
        return Path(str(ctx.params["file"]))
    line = os.environ.get("_TYPER_COMPLETE_ARGS") or os.environ.get("COMP_WORDS") or ""
    try:
        words = shlex.split(line)
    except ValueError:
        words = line.split()
    takes_value = {
        name
        for p in ctx.command.params
        if p.param_type_name == "option" and not getattr(p, "is_flag", False)
        for name in p.opts
    }
    rest = words[words.index(ctx.info_name) + 1 :] if ctx.info_name in words else []
    i = 0
    while i < len(rest):
        word = rest[i]
        if word == "--":
            return Path(rest[i + 1]) if i + 1 < len(rest) and rest[i + 1] else None
        if word.startswith("-"):
            i += 2 if word in takes_value else 1
            continue
        return Path(word) if word else None
    return None


def _completes(complete: Callable[[typer.Context, str], list[tuple[str, str]]]) -> dict[str, Any]:
    """The keyword that gives a parameter its completion, on every typer the bounds allow.

    typer 0.15 on takes `autocompletion` and deprecates `shell_complete`; older typer warns
    that `autocompletion` is deprecated and takes click's `shell_complete` (ctx, param,
    incomplete) quietly. Either warning would fail a run that treats warnings as errors.
    """
    major, minor = (int(x) for x in typer.__version__.split(".")[:2])
    if (major, minor) >= (0, 15):
        return {"autocompletion": complete}

    def shell_complete(ctx: typer.Context, param: Any, incomplete: str) -> list[str]:
        del param
        return [value for value, _ in complete(ctx, incomplete)]

    return {"shell_complete": shell_complete}


_STATUSES = {
    "complete": "every step succeeded",
    "partial": "partially complete: some steps fell short",
    "failed": "a step failed",
    "interrupted": "stopped before the end",
}


def _complete_status(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """The run statuses `history --status` takes."""
    del ctx
    return [(k, v) for k, v in _STATUSES.items() if k.startswith(incomplete.lower())]


VarOpt = Annotated[
    list[str] | None,
    typer.Option("--var", metavar="NAME=VALUE", help="Set a var (repeatable)."),
]
EndpointOpt = Annotated[
    str | None, typer.Option(metavar="URL", help="BigQuery API endpoint (emulator).")
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print no progress, only how the run ended.")
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Echo every output line.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Confirm manual steps.")]
ReportsOpt = Annotated[Path, typer.Option(metavar="DIR", help="Where run directories go.")]
RunbookArg = Annotated[Path, typer.Argument(metavar="FILE", help="The runbook.")]
RunDirArg = Annotated[
    Path, typer.Argument(metavar="RUN_DIR", help="A run directory (reports/<run-id>).")
]


FormatOpt = Annotated[str, typer.Option("--format", metavar="FORMAT", help="Output: text or json.")]


def _text_or_json(fmt: str) -> bool:
    """Whether `--format` asks for JSON; anything but text or json is a usage error."""
    if fmt not in ("text", "json"):
        raise UsageError(f"--format {fmt!r}: text or json")
    return fmt == "json"


def _announcer(path: Path) -> Callable[[Any], None]:
    """A listener that writes the run directory to `path` once the run has started.

    `runbook mcp` starts a run in its own process and learns its folder from this file.
    """
    from agent.record import write_atomic

    def listen(event: Any) -> None:
        if event.kind == "run_started":
            write_atomic(path, str(Path(event.data["run_dir"]).resolve()), sync=True)

    return listen


def _output(what: str) -> Any:
    return typer.Option(
        "-o", "--output", metavar="FILE", help=f"Write {what} here (default: stdout)."
    )


P = ParamSpec("P")


def _command(body: Callable[P, int]) -> Callable[P, None]:
    """The one error boundary of a command whose body returns its exit code.

    Known errors become one clear line and their exit code, Ctrl-C becomes 130, anything else
    a line and a traceback file (`_crash`). `functools.wraps` keeps the body's signature, which
    is what typer reads the command's arguments and options from.
    """

    @functools.wraps(body)
    def command(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            code = body(*args, **kwargs)
        except RunbookError as exc:
            typer.echo(str(exc) if isinstance(exc, ValidationError) else f"error: {exc}", err=True)
            code = exc.exit_code
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            code = EXIT_INTERRUPTED
        except Exception as exc:  # noqa: BLE001 - the boundary: one line, the traceback in a file
            code = _crash(exc)
        raise typer.Exit(code)

    return command


def _crash(exc: BaseException) -> int:
    """An unexpected error: one line for the user, the traceback in a new private file."""
    import os
    import tempfile
    import traceback

    fd, log = tempfile.mkstemp(prefix="runbook-crash-", suffix=".log")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("".join(traceback.format_exception(exc)))
    typer.echo(f"internal error: {exc!r} (traceback in {log}); please report it", err=True)
    return EXIT_FAILED


def _is_incident(path: Path) -> bool:
    """An incident file names the incident schema, or has top-level `actions:` and no `steps:`.

    Read as text with two patterns rather than parsed: a bomb of aliases must reach the
    loader, which refuses it with a located message.
    """
    import re

    try:
        with path.open("rb") as fh:
            text = fh.read(1 << 20)
    except OSError:
        return False
    if b"incident.schema.json" in text[:2048]:
        return True
    return bool(re.search(rb"(?m)^actions:", text)) and not re.search(rb"(?m)^steps:", text)


def _write(path: Path, text: str) -> None:
    """Write an output file the user named, making its folder first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@command()
@_command
def validate(
    files: Annotated[
        list[Path], typer.Argument(metavar="FILE...", help="Runbook or incident files to check.")
    ],
    fmt: Annotated[
        str, typer.Option("--format", metavar="FORMAT", help="Output: text or json.")
    ] = "text",
) -> int:
    """Check runbooks without running anything; each problem as FILE:LINE:COL: message.

    Example: runbook validate runbooks/*.yaml
    """
    from agent.plan.loader import load_runbook

    code = EXIT_OK
    # (file, warnings, problems): the JSON document is built only when asked for, since its
    # module (the facts layer behind it) is a tenth of validate's start-up.
    checked: list[tuple[Path, list[str], list[Any]]] = []
    for f in files:
        try:
            warnings: list[str] = []
            if _is_incident(f):
                from agent.incident.incident import load_incident

                load_incident(f)
            else:
                warnings = load_runbook(f).warning_lines()
            checked.append((f, warnings, []))
            if fmt != "json":
                typer.echo(f"{f}: ok")
                for line in warnings:
                    typer.echo(line, err=True)
        except ValidationError as exc:
            checked.append((f, [], list(exc.problems)))
            if fmt != "json":
                typer.echo(str(exc), err=True)
            code = EXIT_USAGE
    if fmt == "json":
        from agent.output.jsonout import validate_entry

        results = [validate_entry(f, warnings=w, problems=p) for f, w, p in checked]
        typer.echo(json.dumps(results, indent=2))
    return code


@command()
@_command
def plan(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE", help="The runbook, or markdown documents (a file or folder)."
        ),
    ],
    var: VarOpt = None,
    output: Annotated[Path | None, _output("the review")] = None,
    offline: Annotated[bool, typer.Option(help="Do not query the warehouse.")] = False,
    warehouse_endpoint: EndpointOpt = None,
    fmt: Annotated[
        str, typer.Option("--format", metavar="FORMAT", help="Output: markdown or json.")
    ] = "markdown",
) -> int:
    """Dry-run review: every rendered command, the order, what is missing; starts no command.

    Example: runbook plan runbooks/demo/backfill-game-context.yaml --var date=2026-01-25 -o plan.md
    """
    from agent.incident import is_markdown

    if is_markdown(file):
        return _plan_docs(file, output, fmt)
    from agent.output.review import render_review, review_plan
    from agent.plan.loader import load_runbook
    from agent.plan.vars import parse_var_args, resolve_vars

    loaded = load_runbook(file)
    for line in loaded.warning_lines():
        typer.echo(line, err=True)
    values = resolve_vars(loaded.runbook, parse_var_args(var or []))
    review = review_plan(loaded, values, offline=offline, endpoint=warehouse_endpoint)
    if fmt == "json":
        from agent.output.jsonout import dumps, plan_document

        text = dumps(plan_document(review))
    else:
        text = render_review(review)
    _show_plan(text, output)
    return EXIT_OK if review.ok else EXIT_PARTIAL


def _show_plan(text: str, output: Path | None) -> None:
    """The plan to its file (saying where) or to stdout."""
    if output:
        _write(output, text)
        typer.echo(f"plan written to {output}", err=True)
    else:
        typer.echo(text, nl=False)


def _plan_docs(path: Path, output: Path | None, fmt: str) -> int:
    """`plan` of markdown documents: each imported in memory, the scripts it names looked up."""
    from agent.incident.docreview import docs_review_json, render_docs_review, review_docs

    review = review_docs([path])
    text = (
        json.dumps(docs_review_json(review), indent=2) + "\n"
        if fmt == "json"
        else render_docs_review(review)
    )
    _show_plan(text, output)
    return EXIT_OK if review.ok else EXIT_PARTIAL


def _install_signals(stop: threading.Event) -> None:
    from agent.output.prompt import watch_interrupts

    def handler(signum: int, frame: Any) -> None:
        del frame
        stop.set()
        typer.echo(f"\nstopping ({signal.Signals(signum).name}): finishing the record", err=True)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    watch_interrupts()  # a prompt's wait ends on them, however close to its start they come


def _confirm(listeners: list[Callable[..., None]]) -> Callable[[str], bool | None]:
    """Ask on the terminal (the live view paused meanwhile); None when interrupted."""

    def ask(question: str) -> bool | None:
        from agent.output.console import LiveConsole
        from agent.output.prompt import ask_yes_no

        live = next((x for x in listeners if isinstance(x, LiveConsole)), None)
        with live.paused() if live is not None else contextlib.nullcontext():
            return ask_yes_no(question)

    return ask


def _listeners(quiet: bool, verbose: bool) -> list[Callable[..., None]]:
    from agent.output.console import make_console

    return [make_console(quiet=quiet, verbose=verbose)]


def _options(
    var: list[str] | None, *, yes: bool, quiet: bool, verbose: bool, **more: Any
) -> RunOptions:
    """The RunOptions `run` and `resume` share: vars, the console, signals, prompts."""
    from agent.plan.vars import parse_var_args
    from agent.run.options import RunOptions

    stop = threading.Event()
    _install_signals(stop)
    listeners = _listeners(quiet, verbose)
    return RunOptions(
        overrides=parse_var_args(var or []),
        yes=yes,
        interactive=sys.stdin.isatty(),
        confirm=_confirm(listeners),
        listeners=listeners,
        stop=stop,
        every_line=verbose,
        **more,
    )


@command()
@_command
def run(
    file: RunbookArg,
    var: VarOpt = None,
    reports: ReportsOpt = Path("reports"),
    parallel: Annotated[
        int, typer.Option(min=1, metavar="N", help="Steps run at once when needs allow.")
    ] = 1,
    yes: YesOpt = False,
    only: Annotated[
        list[str] | None,
        typer.Option(
            metavar="STEP", **_completes(_complete_steps), help="Run only this step (repeatable)."
        ),
    ] = None,
    from_: Annotated[
        str | None,
        typer.Option(
            "--from", metavar="STEP", **_completes(_complete_steps), help="Start at this step."
        ),
    ] = None,
    partition: Annotated[
        list[str] | None,
        typer.Option("--partition", metavar="VALUE", help="Run only this partition (repeatable)."),
    ] = None,
    warehouse_endpoint: EndpointOpt = None,
    max_log_bytes: Annotated[
        int | None, typer.Option(metavar="BYTES", help="Cap each step's log file.")
    ] = None,
    junit: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Also write JUnit XML here.")
    ] = None,
    notify: Annotated[
        str | None, typer.Option(metavar="URL", help="Post a summary to this Slack-style webhook.")
    ] = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    fmt: FormatOpt = "text",
    started_file: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", hidden=True, help="Write the run directory here once it started."
        ),
    ] = None,
) -> int:
    """Execute a runbook; writes report.md, run.json, journal.jsonl and logs/ under --reports.

    Example: runbook run runbooks/demo/backfill-game-context.yaml --var date=2026-01-25
    """
    from agent.workflow import run_runbook

    as_json = _text_or_json(fmt)
    if only and from_:
        raise UsageError("--only and --from cannot be combined: name the steps with --only")
    options = _options(
        var,
        yes=yes,
        quiet=quiet,
        verbose=verbose,
        reports_dir=reports,
        parallel=parallel,
        only=only or [],
        start_from=from_,
        partitions=partition or [],
        warehouse_endpoint=warehouse_endpoint,
        max_log_bytes=max_log_bytes,
        notify_url=notify,
    )
    if started_file is not None:
        options.listeners.append(_announcer(started_file))
    outcome = run_runbook(file, options, junit=junit)
    _warn([*options.warnings, *outcome.warnings])
    _print_run(outcome.record, outcome.run_dir, outcome.report, as_json=as_json, kind="run")
    return outcome.exit_code


def _warn(warnings: list[str]) -> None:
    """What a run tells the user that did not change its result: a failed notification, a
    lock that had to live elsewhere. Never silent."""
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)


def _print_run(record: Any, run_dir: Path, report: Path, *, as_json: bool, kind: str) -> None:
    """How `run` and `resume` end on stdout: the report's path, or the run's JSON document."""
    if as_json:
        from agent.output.jsonout import dumps, run_document

        typer.echo(dumps(run_document(record, run_dir, kind=kind)), nl=False)
    else:
        typer.echo(str(report))


@command()
@_command
def resume(
    run_dir: RunDirArg,
    force: Annotated[
        bool, typer.Option(help="Resume although the runbook or a script changed.")
    ] = False,
    var: Annotated[
        list[str] | None,
        typer.Option(
            "--var",
            metavar="NAME=VALUE",
            help="Give a secret var again (repeatable; secrets are never stored).",
        ),
    ] = None,
    yes: YesOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    fmt: FormatOpt = "text",
) -> int:
    """Continue an interrupted or crashed run; finished steps are kept, not re-run.

    Example: runbook resume reports/20260126T051432Z-backfill-game-context-1a2b
    """
    from agent.workflow import resume_runbook

    as_json = _text_or_json(fmt)
    options = _options(var, yes=yes, quiet=quiet, verbose=verbose)
    outcome = resume_runbook(run_dir, options, force=force)
    _warn([*options.warnings, *outcome.warnings])
    _print_run(outcome.record, outcome.run_dir, outcome.report, as_json=as_json, kind="resume")
    return outcome.exit_code


@command()
@_command
def report(
    run_dir: RunDirArg,
    template: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Render with this Jinja2 template instead.")
    ] = None,
    output: Annotated[Path | None, _output("the report")] = None,
    fmt: FormatOpt = "text",
) -> int:
    """Render a run's report again from its run.json.

    Example: runbook report reports/<run-id> -o report.md
    """
    from agent.output.report import render_report
    from agent.record import load_record

    as_json = _text_or_json(fmt)
    if not (run_dir / "run.json").is_file():
        raise RunbookError(f"{run_dir} is not a run directory (no run.json)")
    import jinja2

    if template is not None and not template.is_file():
        raise UsageError(f"--template {template}: no such file")
    record = load_record(run_dir)
    try:
        text = render_report(record, template=template)
    except jinja2.TemplateSyntaxError as exc:
        raise UsageError(f"{exc.filename or template}:{exc.lineno}: {exc.message}") from None
    except jinja2.TemplateError as exc:
        raise UsageError(
            f"{template}: {exc} (a template sees `r`, the report's view of the run; "
            "templates/remediation-report.md.j2 shows its fields)"
        ) from None
    if output:
        _write(output, text)
    if as_json:
        from agent.output.jsonout import dumps, report_document

        written = output or (run_dir / "report.md" if template is None else None)
        path = written if written is not None and written.is_file() else None
        typer.echo(dumps(report_document(text, run_dir, path)), nl=False)
    elif not output:
        typer.echo(text, nl=False)
    return EXIT_OK


@command()
@_command
def schema() -> int:
    """Print the JSON Schema of the runbook format (for editors).

    Example: runbook schema > runbooks/runbook.schema.json
    """
    from agent.plan.schema import schema_text

    typer.echo(schema_text(), nl=False)
    return EXIT_OK


@command()
@_command
def demo(
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            metavar="DIR",
            help="Lay the demo out here (default: a new temporary folder).",
        ),
    ] = None,
    quiet: QuietOpt = False,
    incident: Annotated[
        bool,
        typer.Option(
            "--incident", help="Run the whole incident (three actions) and write its postmortem."
        ),
    ] = False,
    week: Annotated[
        bool,
        typer.Option(
            "--range",
            help="Backfill the week up to the incident day, one partition per date, each "
            "graded by its coverage of the scheduled games.",
        ),
    ] = False,
) -> int:
    """Run the bundled incident demo end to end on the embedded DuckDB warehouse.

    Example: runbook demo --dir /tmp/runbook-demo
    """
    if incident and week:
        raise UsageError("choose one of --incident and --range")
    from agent.demo import run_demo

    if incident:
        from agent.demo import run_incident_demo
        from agent.incident.postmortem import postmortem as render

        folder = run_incident_demo(directory)
        out = folder / "reports" / "postmortem.md"
        out.write_text(render(folder / "incident.yaml", folder / "reports"), encoding="utf-8")
        typer.echo(f"\nPostmortem: {out}")
        return EXIT_OK

    stop = threading.Event()
    _install_signals(stop)
    record, run_dir = run_demo(directory, listeners=_listeners(quiet, False), stop=stop, week=week)
    status = record.status.value if record.status else "unfinished"
    what = "backfill of the week" if week else "incident run"
    typer.echo(
        f"\nThe demo's {what} ended {status} (`runbook run` would exit "
        f"{record.exit_code}): the incident is only partly fixable, on purpose."
    )
    typer.echo(f"Report: {run_dir / 'report.md'}")
    # The demo did its job when the run finished, whatever the incident's status; only an
    # interrupted run (130) is the command's own failure.
    return EXIT_INTERRUPTED if record.exit_code == EXIT_INTERRUPTED else EXIT_OK


@command()
@_command
def history(
    reports: Annotated[Path, typer.Option(metavar="DIR", help="The reports folder.")] = Path(
        "reports"
    ),
    runbook: Annotated[
        str | None, typer.Option(metavar="ID", help="Only runs of this runbook id.")
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(
            metavar="STATUS",
            **_completes(_complete_status),
            help="Only runs with this status: complete, partial, failed or interrupted.",
        ),
    ] = None,
    since: Annotated[
        str | None, typer.Option(metavar="WHEN", help="Only runs since: 2h, 3d or an ISO time.")
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", metavar="FORMAT", help="Output: table or json.")
    ] = "table",
) -> int:
    """List past runs, newest first.

    Example: runbook history --runbook backfill-game-context --since 3d
    """
    from agent.output.history import find_runs, history_table, parse_since
    from agent.record import utcnow

    statuses = ("COMPLETE", "PARTIAL", "PARTIALLY COMPLETE", "FAILED", "INTERRUPTED")
    if status and status.upper() not in statuses:
        raise UsageError(f"--status {status!r}: one of complete, partial, failed, interrupted")
    try:
        when = parse_since(since, utcnow()) if since else None
    except ValueError:
        raise UsageError(
            f"--since {since!r}: write 30m, 2h, 3d or an ISO date such as 2026-01-25"
        ) from None
    rows = find_runs(reports, runbook=runbook, status=status, since=when)
    if fmt == "json":
        from agent.output.jsonout import dumps, history_runs

        typer.echo(dumps(history_runs(rows)), nl=False)
    elif rows:
        typer.echo(history_table(rows))
    else:
        filtered = runbook or status or since
        typer.echo(f"no runs {'match' if filtered else 'under ' + str(reports)}", err=True)
    return EXIT_OK


@command()
@_command
def show(run_dir: RunDirArg, fmt: FormatOpt = "text") -> int:
    """Print one run's summary: status, vars, and each step's status and time.

    Example: runbook show reports/<run-id>
    """
    from agent.output.history import summary_text
    from agent.record import load_record

    as_json = _text_or_json(fmt)
    record = load_record(run_dir)
    if as_json:
        from agent.output.jsonout import dumps, run_document

        typer.echo(dumps(run_document(record, run_dir, kind="show")), nl=False)
    else:
        typer.echo(summary_text(record, run_dir), nl=False)
    return EXIT_OK


_SCHEMA_LINE = "# yaml-language-server: $schema="


def _checkout_schema(folder: Path) -> Path | None:
    """The nearest runbook schema of a folder or the folders above it, if any.

    A checkout of this repository keeps it in `runbooks/`; a project may keep its own there
    (`runbook schema > runbooks/runbook.schema.json`) or beside its runbooks.
    """
    folder = folder.resolve()
    if (folder / "runbook.schema.json").is_file():
        return folder / "runbook.schema.json"
    for d in (folder, *folder.parents):
        if (d / "runbooks" / "runbook.schema.json").is_file():
            return d / "runbooks" / "runbook.schema.json"
    return None


def _bundled_schema() -> Path:
    """The schema the installed package carries (`agent/_data/`), else the source tree's copy."""
    package = Path(__file__).resolve().parent
    bundled = package / "_data" / "runbook.schema.json"
    return bundled if bundled.is_file() else package.parent / "runbooks" / "runbook.schema.json"


def _schema_reference(target: Path) -> str:
    """What a runbook written at `target` names in its `$schema` line (`init`, `import`).

    The schema of the checkout or project around it, relative to its folder, so the line holds
    on another machine; else the installed package's copy, by its absolute path.
    """
    folder = target.resolve().parent
    found = _checkout_schema(folder)
    if found is None:
        return str(_bundled_schema())
    return os.path.relpath(found, folder)


@command()
@_command
def init(
    path: Annotated[
        Path, typer.Argument(metavar="FILE", help="Where to write the starter runbook.")
    ] = Path("runbook.yaml"),
) -> int:
    """Write a commented starter runbook that validates.

    Example: runbook init runbooks/my-backfill.yaml
    """
    from agent.output.report import templates_dir

    if path.exists():
        raise UsageError(f"{path} exists; choose another name")
    starter = (templates_dir() / "starter-runbook.yaml").read_text(encoding="utf-8")
    # The starter's first line names the schema; it is pointed at one that exists, not copied.
    _, rest = starter.split("\n", 1)
    _write(path, f"{_SCHEMA_LINE}{_schema_reference(path)}\n{rest}")
    nxt = f"runbook validate {path} && runbook plan {path} --var date=YYYY-MM-DD"
    typer.echo(f"wrote {path}; next: {nxt}")
    return EXIT_OK


@command("import")
@_command
def import_(
    plan_file: Annotated[Path, typer.Argument(metavar="PLAN.md", help="A markdown action plan.")],
    action: Annotated[
        str | None,
        typer.Option(metavar="ACTION", help="Import one action: 3, 'Action 3' or its title."),
    ] = None,
    output: Annotated[Path | None, _output("the draft")] = None,
    workdir: Annotated[
        str | None,
        typer.Option(metavar="DIR", help="The draft's workdir (default: the document's git top)."),
    ] = None,
) -> int:
    """Draft a runbook from a markdown procedure or action plan; review it, then validate it.

    Example: runbook import docs/incidents/PLAN.md --action 3 -o runbooks/incident/action-3.yaml
    """
    from agent.incident.importer import DEFAULT_SCHEMA_PATH, PlanImportError, import_plan
    from agent.incident.importer.procedure import git_root, import_procedure

    try:
        text = plan_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {plan_file}: {exc}") from None
    # On stdout the draft's place is unknown: in a checkout it is meant for runbooks/<folder>/
    # (the importer's default); elsewhere the package's schema is named by its absolute path.
    if output is not None:
        schema = _schema_reference(output)
    elif _checkout_schema(Path.cwd()) is not None:
        schema = DEFAULT_SCHEMA_PATH
    else:
        schema = str(_bundled_schema())
    try:
        draft = import_plan(text, source=str(plan_file), action=action, schema_path=schema)
    except PlanImportError:
        if action is not None:
            raise
        # Not an action plan: any procedure (headings, lists, shell and SQL blocks) drafts.
        root = git_root(plan_file.parent)
        where = workdir or (str(root) if root is not None else ".")
        done = import_procedure(text, source=str(plan_file), workdir=where, schema_path=schema)
        draft = done.text
        s = "" if done.todos == 1 else "s"
        typer.echo(f"{done.todos} TODO(import) comment{s} to decide in the draft", err=True)
    if output is None:
        sys.stdout.write(draft)
    else:
        _write(output, draft)
        typer.echo(f"draft written to {output}; next: runbook validate {output}", err=True)
    return EXIT_OK


@command()
@_command
def postmortem(
    incident: Annotated[Path, typer.Argument(metavar="INCIDENT.yaml", help="The incident file.")],
    reports: Annotated[
        Path, typer.Option(metavar="DIR", help="Where the actions' runs are.")
    ] = Path("reports"),
    output: Annotated[Path | None, _output("the postmortem")] = None,
) -> int:
    """The post-incident report over all the incident's runs (blameless form).

    Example: runbook postmortem runbooks/demo/incident.yaml --reports reports -o postmortem.md
    """
    from agent.incident.postmortem import postmortem as render

    text = render(incident, reports)
    if output:
        _write(output, text)
        typer.echo(f"postmortem written to {output}", err=True)
    else:
        typer.echo(text, nl=False)
    return EXIT_OK


@command()
@_command
def followup(
    run_dir: Annotated[
        Path,
        typer.Argument(metavar="RUN_DIR", help="The run directory of a run that fell short."),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            metavar="FILE",
            help="Write the follow-up here (default: beside the runbook, <name>.followup.yaml).",
        ),
    ] = None,
    fmt: FormatOpt = "text",
) -> int:
    """Write a runbook of what fell short in a run, ready to run when the data arrives.

    Example: runbook followup reports/<run-id> && runbook run runbooks/x.followup.yaml
    """
    from agent.incident.followup import write_followup

    as_json = _text_or_json(fmt)
    path = write_followup(run_dir, output)
    if as_json:
        from agent.output.jsonout import dumps, followup_document

        text = path.read_text(encoding="utf-8")
        typer.echo(dumps(followup_document(path, text, run_dir)), nl=False)
    else:
        typer.echo(str(path))
    return EXIT_OK


@command()
@_command
def mcp(
    root: Annotated[
        Path,
        typer.Option(
            metavar="DIR", help="The folder the assistant works in; paths outside it are refused."
        ),
    ] = Path(),
    allow_run: Annotated[
        bool, typer.Option("--allow-run", help="Let the assistant start runs (read-only if not).")
    ] = False,
) -> int:
    """Serve the commands to an AI assistant as an MCP server over stdio.

    Example: runbook mcp --root . --allow-run
    """
    if not root.is_dir():
        raise UsageError(f"--root {root}: no such folder")
    try:
        from agent.mcp.server import serve
    except ImportError as exc:
        # The [mcp] extra brings the SDK and anyio; a user without it gets the one line.
        if exc.name is None or exc.name.split(".")[0] not in ("mcp", "anyio"):
            raise
        raise UsageError(
            "runbook mcp needs the MCP SDK: pip install 'runbook-agent[mcp]'"
        ) from None
    serve(root, allow_run=allow_run)
    return EXIT_OK


skill_app = typer.Typer(
    help="Assistant skills: teach an assistant to use runbook instead of a shell.",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(skill_app, name="skill")


@skill_app.command("install", cls=_Command)
@_command
def skill_install(
    directory: Annotated[
        Path,
        typer.Argument(metavar="DIR", help="The repository to install it in (default: here)."),
    ] = Path(),
    force: Annotated[bool, typer.Option(help="Overwrite an existing SKILL.md.")] = False,
) -> int:
    """Write .claude/skills/runbook/SKILL.md: how an assistant runs action plans with runbook.

    Example: runbook skill install ~/src/pipeline
    """
    from agent.output.templates import templates_dir

    target = directory / ".claude" / "skills" / "runbook" / "SKILL.md"
    if target.exists() and not force:
        raise UsageError(f"{target} exists; --force overwrites it")
    _write(target, (templates_dir() / "runbook-skill.md").read_text(encoding="utf-8"))
    typer.echo(f"wrote {target}")
    return EXIT_OK


def tune_gc() -> None:
    """Collect cycles less often: a runbook's objects are long-lived and hardly ever cyclic.

    With CPython's default thresholds (700, 10, 10) the collector walked the loaded runbook
    again and again while it was built: `plan --offline` of 5,000 steps spent a third of its
    loading time in collections. What the imports made is frozen out of every collection.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def main() -> int:
    """Run the CLI and return its exit code."""
    tune_gc()
    try:
        code = app(standalone_mode=False, prog_name="runbook")
    except typer.Exit as exc:
        return exc.exit_code
    except SystemExit as exc:  # click's own exits (e.g. --help)
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
    except typer.Abort:  # Ctrl-C or end of input while typer's parser prompted
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - usage errors of typer's bundled click, or a bug
        # Newer typer bundles its own click, older typer uses click's: their usage errors share
        # no public class across those versions, so they are recognised by shape: a usage
        # error can show itself and carries an exit code.
        show = getattr(exc, "show", None)
        if callable(show) and isinstance(getattr(exc, "exit_code", None), int):
            show()
            return EXIT_USAGE
        return _crash(exc)
    # With standalone_mode off, click returns the code of a typer.Exit instead of raising it.
    return code if isinstance(code, int) else EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
