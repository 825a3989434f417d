"""The v1 runbook format as pydantic models: one model per step kind, a union keyed on `kind`."""

from __future__ import annotations

import datetime as dt
import math
import re
import typing
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    GetJsonSchemaHandler,
    Tag,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

__all__ = [
    "EXPECT_COVERAGE",
    "KINDS",
    "SHORTFALL_NAMES",
    "SHORTFALL_STATUSES",
    "SHORTFALL_TAGS",
    "STEP_CLASSES",
    "Capture",
    "Check",
    "CommandStep",
    "Coverage",
    "Defaults",
    "Detail",
    "ExportStep",
    "Incident",
    "Lesson",
    "Levels",
    "ManualStep",
    "PartitionRange",
    "Partitions",
    "ReportSection",
    "Retries",
    "RunStep",
    "Runbook",
    "Shortfall",
    "ShortfallByCause",
    "Step",
    "TemplateField",
    "ValidateStep",
    "VarSpec",
    "VerifyStep",
    "WaitStep",
    "Warehouse",
    "parse_duration",
    "parse_positive_duration",
    "step_templates",
    "strings",
]

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
VAR_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
RESERVED_NAMES = ("steps", "env", "run")  # what templates see besides the vars
TABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*){1,2}$"
_NUM = r"(\d+(?:\.\d+)?)"
_DURATION = re.compile(rf"^\s*(?:{_NUM}\s*h)?\s*(?:{_NUM}\s*m)?\s*(?:{_NUM}\s*s)?\s*$")
_DURATION_STRING: dict[str, Any] = {
    "type": "string",
    "pattern": rf"^\s*(\d+(\.\d+)?|({_NUM}\s*h)?\s*({_NUM}\s*m)?\s*({_NUM}\s*s)?)\s*$",
}
_DURATION_SCHEMA = {
    "anyOf": [{"type": "number", "minimum": 0, "description": "seconds"}, _DURATION_STRING]
}


def parse_duration(value: Any) -> Any:
    """Turn `90s`, `10m`, `2h`, `1h30m` or a number of seconds into seconds (a float).

    Args:
        value: what the YAML holds.

    Returns:
        Seconds, or `value` unchanged when it is of another type (pydantic then reports it).
    """
    if isinstance(value, bool):  # pydantic turns only ValueError into a located problem
        raise ValueError(  # noqa: TRY004
            "a duration is a number of seconds or a string such as 90s, 10m, 2h"
        )
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("a duration must be a finite number of seconds")
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        if re.fullmatch(r"\s*\d+(\.\d+)?\s*", value):
            return float(value)
        m = _DURATION.match(value)
        if not value.strip() or m is None or not any(m.groups()):
            raise ValueError(f"invalid duration '{value}': use a number of seconds or 90s, 10m, 2h")
        h, mi, s = (float(g) if g else 0.0 for g in m.groups())
        return h * 3600 + mi * 60 + s
    return value


def parse_positive_duration(value: Any) -> Any:
    """Like `parse_duration`, for a timeout or a poll interval: 0 is not a duration here.

    Args:
        value: what the YAML holds.

    Returns:
        Seconds, more than 0.
    """
    seconds = parse_duration(value)
    if isinstance(seconds, float) and seconds <= 0:
        raise ValueError("the duration must be more than 0 seconds")
    return seconds


_POSITIVE_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": 0, "description": "seconds"},
        {**_DURATION_STRING, "not": {"pattern": r"^[\s0.hms]*$"}},
    ]
}


@dataclass(frozen=True)
class OrShortForm:
    """JSON Schema: the model's own schema, or a short form (`retries: 2`, `capture: 'regex'`).

    Built only when a schema is asked for, so importing the model stays cheap.
    """

    short: tuple[tuple[str, Any], ...]

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"anyOf": [dict(self.short), handler(core_schema)]}


Duration = Annotated[float, BeforeValidator(parse_duration), WithJsonSchema(_DURATION_SCHEMA)]
PositiveDuration = Annotated[
    float, BeforeValidator(parse_positive_duration), WithJsonSchema(_POSITIVE_DURATION_SCHEMA)
]
Template = str
StepId = Annotated[str, Field(pattern=ID_PATTERN)]
VarName = Annotated[str, Field(pattern=VAR_PATTERN)]


class _Strict(BaseModel):
    """Unknown keys are errors: a misspelt `timeout` during an incident is dangerous."""

    # defer_build: the schema is built on first use, once, for Runbook as a whole, instead of
    # once per class at import (which cost ~0.1 s of every CLI start).
    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)


class VarSpec(_Strict):
    """A typed parameter of the runbook; `--var name=value` overrides its default."""

    type: Literal["string", "int", "float", "bool", "date", "list"] = Field(
        default="string",
        description="The value's type: string, int, float, bool (true/false), date (YYYY-MM-DD) "
        "or list (comma-separated on the command line).",
    )
    required: bool = Field(
        default=False, description="The run does not start unless `--var name=value` gives it."
    )
    default: Any = Field(
        default=None, description="The value when no `--var` gives one, of the var's type."
    )
    description: str | None = Field(
        default=None, description="What the var means; `runbook plan` shows it beside the value."
    )
    secret: bool = Field(
        default=False,
        description="Mask the value as *** in every output; it is never stored, so "
        "`runbook resume` needs it again.",
    )
    choices: list[Any] | None = Field(default=None, description="The only values allowed.")


class Incident(_Strict):
    """The incident this runbook answers; printed in the report's header and footer."""

    reference: str | None = Field(
        default=None, description="The action plan or ticket the runbook answers (path or URL)."
    )
    action: str | None = Field(
        default=None, description="Which action of the plan this runbook carries out: Action 3."
    )
    plan: str | None = Field(default=None, description="The plan's name.")


class Warehouse(_Strict):
    """Where verify and wait steps query."""

    backend: Literal["duckdb", "bigquery"] = Field(
        default="duckdb",
        description="duckdb (an embedded database file, the default) or bigquery.",
    )
    path: str = Field(
        default=".runbook/warehouse.duckdb",
        description="duckdb: the database file, relative to the workdir.",
    )
    project: str | None = Field(
        default=None, description="bigquery: the Google Cloud project the queries run in."
    )
    location: str | None = Field(
        default=None, description="bigquery: where the jobs run, such as US or EU (optional)."
    )


class Retries(_Strict):
    """How many times a failing command is tried, and the pause between tries."""

    attempts: int = Field(
        default=1, ge=1, le=100, description="Tries in all, 1 to 100 (1: no retry)."
    )
    backoff: Duration = Field(
        default=0.0,
        description="The pause before the second try: seconds, or a duration such as 5s or 2m.",
    )
    factor: float = Field(
        default=1.0,
        ge=1.0,
        description="Backoff multiplier per attempt: each pause is the one before times this.",
    )


def _retries(value: Any) -> Any:
    # `retries: 2` means two attempts in all, like `retries: {attempts: 2}`; 0 means one attempt.
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("retries cannot be negative (0 means one attempt)")
        return {"attempts": max(value, 1)}
    return value


RetriesField = Annotated[
    Retries,
    BeforeValidator(_retries),
    OrShortForm((("type", "integer"), ("minimum", 0))),
]


class Defaults(_Strict):
    """Applied to every step that does not set its own."""

    timeout: PositiveDuration | None = Field(
        default=None,
        description="The timeout of every step that sets none: seconds, or 90s, 10m, 2h "
        "(default: 1h).",
    )
    retries: RetriesField | None = Field(
        default=None,
        description="The retries of every step that sets none: a number of attempts, or "
        "{attempts, backoff, factor}.",
    )


def _compiles(value: str) -> str:
    with warnings.catch_warnings():
        # Python warns (FutureWarning) of a pattern whose meaning a later version changes,
        # such as `[[` (a nested set): refused here rather than printed mid-run.
        warnings.simplefilter("error", FutureWarning)
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
        except FutureWarning as exc:
            raise ValueError(
                f"ambiguous regular expression: {exc} (escape the character)"
            ) from None
    return value


Regex = Annotated[str, AfterValidator(_compiles)]
"""A string that must compile as a Python regular expression."""


class Capture(_Strict):
    """A named value read from a step's output by a regular expression."""

    pattern: Regex = Field(
        description="A Python regular expression searched in every output line; its group is the "
        "value (several groups: a list of them). The last matching line wins."
    )
    type: Literal["int", "float", "string", "bool", "auto"] = Field(
        default="auto",
        description="How the matched text is read: int, float, string, bool, or auto (a number "
        "when it reads as one, else the text).",
    )
    all: bool = Field(
        default=False, description="Keep every match as a list (up to 1,000), not only the last."
    )
    default: Any = Field(
        default=None, description="The value when no line matches (without it: null)."
    )
    required: bool = Field(
        default=False,
        description="The pattern must match: when no line does, the step is not SUCCESS, "
        "even after exit 0 (without it, an unmatched capture's default stands after exit 0).",
    )


def _short_form(key: str) -> Any:
    """A plain string stands for {key: string} (`capture: 'regex'`, `lessons: [text]`)."""

    def expand(value: Any) -> Any:
        return {key: value} if isinstance(value, str) else value

    return expand


CaptureField = Annotated[
    Capture,
    BeforeValidator(_short_form("pattern")),
    OrShortForm((("type", "string"),)),
]


class Detail(_Strict):
    """Output lines matching `match` are quoted under "Details" in the report with a mark."""

    match: Regex = Field(
        description="A Python regular expression; every output line it matches is quoted."
    )
    mark: Literal["ok", "warn", "error", "info"] = Field(
        default="info", description="The mark beside the line: ok, warn, error or info."
    )


class Shortfall(_Strict):
    """What the report's "Remaining Issues" says when the step is not SUCCESS."""

    priority: Literal["CRITICAL", "HIGH", "MEDIUM", "LOW"] = Field(
        default="MEDIUM",
        description="Where the issue is listed: CRITICAL, HIGH, MEDIUM or LOW.",
    )
    issue: Template = Field(
        description="What is wrong, in one line (a template: it also sees the step's captures, "
        "`missing` and `cause`)."
    )
    impact: Template | None = Field(
        default=None, description="What the shortfall means for the data's users (a template)."
    )
    action: Template | list[Template] | None = Field(
        default=None, description="What to do about it: one line or a list (templates)."
    )
    wait_for: Template | None = Field(
        default=None, description="SQL condition a follow-up runbook waits for before re-running"
    )


SHORTFALL_STATUSES = ("PARTIAL", "FAILED", "NOT_FOUND", "TIMED_OUT", "SKIPPED")
"""The statuses `on_shortfall` may be keyed by (besides the causes and `default`)."""


class ShortfallByCause(_Strict):
    """`on_shortfall` keyed by why the step fell short: its cause, else its status, else default.

    The keys are the record's causes (`agent.record.CAUSES`), the statuses in
    SHORTFALL_STATUSES and `default`. A step skipped because of a need or left unconfirmed gets
    only an entry named by its cause or SKIPPED, never the default: a plain Shortfall is not
    given for skipped steps either.
    """

    crashed: Shortfall | None = Field(
        default=None,
        description="The program crashed: a Python traceback or a `fatal` line in its output.",
    )
    exit_code: Shortfall | None = Field(
        default=None, description="The command exited with a code not in `ok_exit_codes`."
    )
    error: Shortfall | None = Field(
        default=None,
        description="The step could not run or be judged: an error instead of an exit code.",
    )
    timed_out: Shortfall | None = Field(
        default=None, description="The step ran out of its `timeout`."
    )
    not_found: Shortfall | None = Field(
        default=None, description="The script, module or program the command names does not exist."
    )
    expectation: Shortfall | None = Field(default=None, description="An `expect` did not hold.")
    coverage: Shortfall | None = Field(
        default=None,
        description="A verify check's count fell short (its coverage names the missing keys).",
    )
    needs: Shortfall | None = Field(
        default=None, description="SKIPPED: a step it `needs` did not succeed."
    )
    unconfirmed: Shortfall | None = Field(
        default=None, description="SKIPPED: a manual step nobody confirmed."
    )
    interrupted: Shortfall | None = Field(
        default=None, description="The run was interrupted while the step ran (ABORTED)."
    )
    PARTIAL: Shortfall | None = Field(
        default=None, description="Any PARTIAL result without an entry for its cause."
    )
    FAILED: Shortfall | None = Field(
        default=None, description="Any FAILED result without an entry for its cause."
    )
    NOT_FOUND: Shortfall | None = Field(
        default=None, description="Any NOT_FOUND result without an entry for its cause."
    )
    TIMED_OUT: Shortfall | None = Field(
        default=None, description="Any TIMED_OUT result without an entry for its cause."
    )
    SKIPPED: Shortfall | None = Field(
        default=None,
        description="Any SKIPPED result without an entry for its cause (never `default`).",
    )
    default: Shortfall | None = Field(
        default=None, description="Any other result that is not SUCCESS and not SKIPPED."
    )

    def pick(self, cause: str | None, status: str) -> tuple[str, Shortfall] | None:
        """The entry for a result: by its cause, then its status, then `default`.

        Args:
            cause: the result's cause (`StepResult.cause`), if any.
            status: the result's status.

        Returns:
            (the key that matched, its Shortfall), or None when no entry applies.
        """
        keys = [k for k in (cause, status) if k]
        if status != "SKIPPED":
            keys.append("default")
        for key in keys:
            entry = getattr(self, key, None) if key in type(self).model_fields else None
            if isinstance(entry, Shortfall):
                return key, entry
        return None

    @property
    def wait_for(self) -> str | None:
        """The first `wait_for` among the entries (default first): for a follow-up runbook."""
        entries = [self.default, *(getattr(self, k) for k in type(self).model_fields)]
        return next((e.wait_for for e in entries if e is not None and e.wait_for), None)


_SHORTFALL_KEYS = frozenset(Shortfall.model_fields)
SHORTFALL_TAGS = ("one shortfall", "shortfall by cause")
"""The tags pydantic puts in an error's location under `on_shortfall` (skipped when placing it)."""


def _shortfall_form(value: Any) -> str:
    """Which form an `on_shortfall` is, so that a problem in it is named in the right terms.

    A mapping that uses a Shortfall key is one Shortfall; one that uses a cause or status key,
    or (misspelt) holds only mappings, is keyed by cause; anything else is one Shortfall.
    """
    if isinstance(value, ShortfallByCause):
        return SHORTFALL_TAGS[1]
    if not isinstance(value, dict) or not value or _SHORTFALL_KEYS & set(value):
        return SHORTFALL_TAGS[0]
    keyed = set(value) & set(ShortfallByCause.model_fields)
    if keyed or all(isinstance(v, dict) for v in value.values()):
        return SHORTFALL_TAGS[1]
    return SHORTFALL_TAGS[0]


ShortfallField = Annotated[
    Annotated[Shortfall, Tag(SHORTFALL_TAGS[0])]
    | Annotated[ShortfallByCause, Tag(SHORTFALL_TAGS[1])],
    Discriminator(_shortfall_form),
]


def _str_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


StrList = Annotated[
    list[str],
    BeforeValidator(_str_list),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}),
]


# --- the template fields of a step, as written ----------------------------------------------

KeyPath = tuple[str | int, ...]
TemplateMode = Literal["text", "sql", "expression", "command", "shell", "params", "pattern"]


@dataclass(frozen=True)
class TemplateField:
    """One string of a step as written, and how it is read: checked before any value exists.

    Taken from the raw data, not the model, so that the checks also run (and report alongside the
    model's errors) when the step does not validate; `source` is then of any type.
    """

    path: KeyPath  # below the step
    source: Any
    # text, sql: a template; expression: `when`, `expect`; command, shell: a command that must
    # split (or scan) before substitution; params: SQL whose `@name`s must be vars; pattern: a
    # regular expression that must have a group to read a value
    mode: TemplateMode
    key: str  # the field's name in messages
    part: str = ""  # the part of the step it is in, for messages: "check 2"
    after: bool = False  # read after the step ran: the step itself is earlier
    reads: frozenset[str] = frozenset()  # what it sees of the step's own outcome


def strings(value: Any, path: KeyPath = ()) -> Iterator[tuple[KeyPath, str]]:
    """Every string in `value`, walking mappings and lists, with its path.

    Args:
        value: raw data.
        path: where `value` is.

    Yields:
        (path, string) pairs.
    """
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from strings(v, (*path, i))


# Step keys whose strings are not Jinja2 templates (or that a kind reads in its own way).
_NOT_TEMPLATED = {
    "id",
    "kind",
    "needs",
    "when",
    "expect",
    "capture",
    "details",
    "until",
    "checks",
    "resume",
}


SHORTFALL_NAMES = ("missing", "cause")
"""What `on_shortfall` templates see of the step besides its captures: `missing` (each key
column's missing values, `StepResult.missing_values()`) and `cause` (`StepResult.cause`)."""


def _texts(raw: Mapping[Any, Any]) -> Iterator[TemplateField]:
    captures = raw.get("capture")
    own = frozenset({str(k) for k in captures} if isinstance(captures, dict) else set())
    for path, s in strings(raw):
        if path[0] == "on_shortfall":
            # Rendered after the step ended, over its own evidence.
            reads = own | set(SHORTFALL_NAMES)
            yield TemplateField(path, s, "text", "on_shortfall", after=True, reads=reads)
        elif path[0] not in _NOT_TEMPLATED:
            yield TemplateField(path, s, "text", str(path[0]))
    # `when` is decided before the step runs: it may read earlier steps only.
    yield TemplateField(("when",), raw.get("when"), "expression", "when")


def _expects(raw: Mapping[Any, Any], outcome: tuple[str, ...]) -> Iterator[TemplateField]:
    captures = raw.get("capture")
    reads = frozenset({str(k) for k in captures} if isinstance(captures, dict) else set())
    expect = raw.get("expect")
    items = enumerate(expect) if isinstance(expect, list) else [(None, expect)]
    for j, expr in items:
        path: KeyPath = ("expect",) if j is None else ("expect", j)
        yield TemplateField(
            path, expr, "expression", "expect", after=True, reads=reads | set(outcome)
        )


def _command(raw: Mapping[Any, Any]) -> Iterator[TemplateField]:
    command = raw.get("command")
    if isinstance(command, str) and command.strip():  # a list, or the model reports it
        mode: TemplateMode = "shell" if raw.get("shell") is True else "command"
        yield TemplateField(("command",), command, mode, "command")


class _StepBase(_Strict):
    id: StepId = Field(
        description="The step's name, unique in the runbook: [a-z0-9][a-z0-9_-]*; templates "
        "read it as steps.<id>."
    )
    title: Template | None = Field(
        default=None, description="The step's heading in the report (default: its id)."
    )
    description: Template | None = Field(
        default=None, description="What the step is for, for the people who read the runbook."
    )
    needs: list[str] | None = Field(
        default=None,
        description="Steps that must succeed first, else this one is SKIPPED. Without it a step "
        "follows the one before it whatever its status; [] makes it independent.",
    )
    when: str | None = Field(
        default=None,
        description="An expression over vars and earlier steps; when false the step is SKIPPED.",
    )
    timeout: PositiveDuration | None = Field(
        default=None,
        description="Stop the step (its whole process group) after this long: seconds, or 90s, "
        "10m, 2h, 1h30m (default: defaults.timeout, else 1h).",
    )
    retries: RetriesField | None = Field(
        default=None,
        description="Tries of a failing command (exit code, timeout), not of a PARTIAL result: a "
        "number of attempts, or {attempts, backoff, factor}.",
    )
    baseline: bool = Field(
        default=False,
        description="Also measure the step before the first step runs, so the report shows "
        "before and after.",
    )
    on_shortfall: ShortfallField | None = Field(
        default=None,
        description="The report's remaining issue when the step is not SUCCESS: one entry, or "
        "entries keyed by cause, by status, or default.",
    )
    resume: Literal["auto", "never"] = Field(
        default="auto",
        description="never: `runbook resume` stops at this step, if a crash left it unfinished, "
        "instead of running it again (unless --force).",
    )

    @property
    def label(self) -> str:
        """The title, or the id when there is none."""
        return self.title or self.id

    @classmethod
    def templates(cls, raw: Mapping[Any, Any]) -> Iterator[TemplateField]:
        """The template fields of a step of this kind as written, in the order they are checked.

        Args:
            raw: the step's mapping, validated or not.

        Yields:
            Each field to check, and how it is read.
        """
        yield from _texts(raw)
        yield from _expects(raw, ("counts",))


class CommandStep(_StepBase):
    """Fields shared by the kinds that run a command."""

    command: Template | list[Template] = Field(
        description="The program and its arguments: a string split like a shell splits words "
        "before values are substituted, or a list of arguments."
    )
    shell: bool = Field(
        default=False,
        description="Run the command as a bash script; every substituted value is quoted.",
    )
    env: dict[str, Template] = Field(
        default_factory=dict, description="Added to this step's environment (templated)."
    )
    workdir: str | None = Field(
        default=None,
        description="Where the command runs, relative to the runbook's workdir (default: it).",
    )
    ok_exit_codes: list[int] = Field(
        default_factory=lambda: [0], description="Exit codes that count as success."
    )
    capture: dict[str, CaptureField] = Field(
        default_factory=dict,
        description="Named values read from the output: a pattern, or {pattern, type, all, "
        "default, required}.",
    )
    details: list[Detail] = Field(
        default_factory=list,
        description="Output lines to quote under Details in the report, with a mark.",
    )
    expect: StrList = Field(
        default_factory=list,
        description="Expressions over vars, captures and exit_code: all true, or the step is "
        "PARTIAL. One reading null is false.",
    )
    fatal: list[Regex] = Field(
        default_factory=list,
        description="Output lines that mean the program crashed (a Python traceback always "
        "does): the step is FAILED whatever its exit code, with the line as its reason.",
    )

    @classmethod
    def templates(cls, raw: Mapping[Any, Any]) -> Iterator[TemplateField]:
        """As every step's, with the command (which must split) and the capture patterns."""
        yield from _texts(raw)
        yield from _command(raw)
        yield from _expects(raw, ("counts", "exit_code"))
        captures = raw.get("capture")
        for name, cap in captures.items() if isinstance(captures, dict) else ():
            if isinstance(cap, dict) and isinstance(cap.get("pattern"), str):
                yield TemplateField(
                    ("capture", name, "pattern"), cap["pattern"], "pattern", str(name)
                )
            elif isinstance(cap, str):
                yield TemplateField(("capture", name), cap, "pattern", str(name))

    @field_validator("command")
    @classmethod
    def _not_empty(cls, value: str | list[str]) -> str | list[str]:
        if (isinstance(value, str) and not value.strip()) or (
            isinstance(value, list) and not value
        ):
            raise ValueError("command is empty")
        return value


class RunStep(CommandStep):
    """A processor or any command."""

    kind: Literal["run"] = Field(description="run: a processor or any command.")


class ValidateStep(CommandStep):
    """A command whose captured counts are compared with its baseline."""

    kind: Literal["validate"] = Field(
        description="validate: a command whose captured counts are compared with its baseline."
    )


class ExportStep(CommandStep):
    """A command whose missing script is NOT_FOUND with alternatives, and the run goes on."""

    kind: Literal["export"] = Field(
        description="export: a command whose missing script is NOT_FOUND with the nearest "
        "existing ones, and the run goes on."
    )


class Coverage(_Strict):
    """Name what is missing: the expected keys (SQL) that have no row in the table."""

    key: StrList = Field(
        description="The key column (or columns) of the table, as the expected query names them."
    )
    expected: str = Field(
        description="SQL that yields the expected keys; @name binds a var, {{ }} writes numbers."
    )


class Levels(_Strict):
    """Graded coverage: the shares of the expected records at which a check passes or warns."""

    ok: float = Field(
        gt=0, le=1, description="At or above this share of the expected records the check passes."
    )
    warn: float = Field(
        ge=0,
        le=1,
        description="At or above this share (and below `ok`) the check warns and the step is "
        "PARTIAL; below it the step is FAILED.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> Levels:
        if self.warn > self.ok:
            raise ValueError(f"levels: warn ({self.warn:g}) is above ok ({self.ok:g})")
        return self


EXPECT_COVERAGE = "coverage"
"""`expect: coverage`: a check expects as many rows as its coverage query's expected keys."""


class Check(_Strict):
    """One row count of a verify step."""

    table: str = Field(
        pattern=TABLE_PATTERN, description="The table: dataset.table or project.dataset.table."
    )
    where: str | None = Field(
        default=None,
        description="SQL condition on the rows counted; @name binds a var, {{ }} writes numbers.",
    )
    name: str | None = Field(
        default=None,
        description="The check's name in the report and in counts (default: its table).",
    )
    expect: int | Template | dict[str, Any] | None = Field(
        default=None,
        description="A number, a template, {min: N}, {ratio: R} of expect_total, or `coverage`: "
        "as many rows as the coverage query's expected keys (also when a check with coverage "
        "omits expect).",
    )
    expect_total: int | Template | None = Field(
        default=None, description="The number a {ratio: R} expectation is a ratio of."
    )
    coverage: Coverage | None = Field(
        default=None, description="Name the missing keys: {key, expected}."
    )
    levels: Levels | None = Field(
        default=None,
        description="Grade the share of the expected records found: {ok: 0.9, warn: 0.7}.",
    )

    @field_validator("expect")
    @classmethod
    def _expect_form(cls, value: Any) -> Any:
        if isinstance(value, dict):
            unknown = set(value) - {"min", "ratio"}
            if unknown or len(value) != 1:
                raise ValueError("expect is a number, a template, {min: N} or {ratio: R}")
        return value

    @model_validator(mode="after")
    def _ratio_total(self) -> Check:
        if isinstance(self.expect, dict) and "ratio" in self.expect and self.expect_total is None:
            raise ValueError("a ratio needs expect_total: the number it is a ratio of")
        if self.expect == EXPECT_COVERAGE and self.coverage is None:
            raise ValueError("expect: coverage needs a coverage query to count the expected keys")
        if self.levels is not None and (
            isinstance(self.expect, dict) or (self.expect is None and self.coverage is None)
        ):
            raise ValueError(
                "levels grade a share of the expected records: give the check a coverage query "
                "or an exact expect, not {min: N} or {ratio: R}"
            )
        return self

    @property
    def expects_coverage(self) -> bool:
        """Whether the expected number is the coverage query's count of expected keys."""
        return self.expect == EXPECT_COVERAGE or (self.expect is None and self.coverage is not None)


class VerifyStep(_StepBase):
    """Row counts and key coverage in the warehouse."""

    kind: Literal["verify"] = Field(
        description="verify: row counts and key coverage in the warehouse, one query per step."
    )
    checks: list[Check] = Field(min_length=1, description="The row counts to take, at least one.")
    expect: StrList = Field(
        default_factory=list,
        description="More expressions over vars and counts: all true, or the step is PARTIAL.",
    )

    @classmethod
    def templates(cls, raw: Mapping[Any, Any]) -> Iterator[TemplateField]:
        """As every step's, with each check's expectations and SQL."""
        yield from super().templates(raw)
        checks = raw.get("checks")
        for j, check in enumerate(checks) if isinstance(checks, list) else ():
            if not isinstance(check, dict):
                continue
            part, at = f"check {j + 1}", ("checks", j)
            for key in ("expect", "expect_total"):
                for path, s in strings(check.get(key), (*at, key)):
                    yield TemplateField(path, s, "text", key, part)
            for key in ("where", "coverage"):
                yield TemplateField((*at, key), check.get(key), "params", key, part)
            # SQL fields may write numbers with {{ }}; their names are checked like others.
            yield TemplateField((*at, "where"), check.get("where"), "sql", "where", part)
            coverage = check.get("coverage")
            if isinstance(coverage, dict):
                path = (*at, "coverage", "expected")
                yield TemplateField(
                    path, coverage.get("expected"), "sql", "coverage.expected", part
                )


class WaitStep(_StepBase):
    """Poll a SQL condition or a command until it holds or the timeout ends."""

    kind: Literal["wait"] = Field(
        description="wait: poll a SQL condition or a command until it holds or the timeout ends."
    )
    until: str | None = Field(
        default=None,
        description="SQL yielding one boolean, polled until true; @name binds a var. "
        "Give exactly one of until and command.",
    )
    command: Template | list[Template] | None = Field(
        default=None, description="A command polled until it exits 0; one of until and command."
    )
    every: PositiveDuration = Field(
        default=60.0, description="The pause between polls: seconds, or 30s, 5m (default 60s)."
    )
    shell: bool = Field(
        default=False,
        description="Run the command as a bash script; every substituted value is quoted.",
    )
    env: dict[str, Template] = Field(
        default_factory=dict, description="Added to the command's environment (templated)."
    )

    @classmethod
    def templates(cls, raw: Mapping[Any, Any]) -> Iterator[TemplateField]:
        """As every step's, with the command (which must split) or the SQL condition."""
        yield from _texts(raw)
        yield from _command(raw)
        yield from _expects(raw, ("counts",))
        yield TemplateField(("until",), raw.get("until"), "sql", "until")
        yield TemplateField(("until",), raw.get("until"), "params", "until")

    @model_validator(mode="after")
    def _one_condition(self) -> WaitStep:
        if (self.until is None) == (self.command is None):
            raise ValueError("a wait step needs exactly one of 'until' (SQL) or 'command'")
        return self


class ManualStep(_StepBase):
    """A human confirms: a prompt on a terminal, `--yes` otherwise."""

    kind: Literal["manual"] = Field(
        description="manual: a person confirms (on a terminal, or --yes); else it is SKIPPED."
    )
    instructions: Template | None = Field(
        default=None, description="What the person does, shown before the prompt and in the report."
    )
    prompt: Template | None = Field(
        default=None, description="The question asked (default: '<title>: done?')."
    )


Step = Annotated[
    RunStep | ValidateStep | ExportStep | VerifyStep | WaitStep | ManualStep,
    Field(discriminator="kind"),
]
KINDS = ("run", "verify", "validate", "export", "wait", "manual")
COMMAND_KINDS = ("run", "validate", "export")
STEP_CLASSES: dict[str, type[_StepBase]] = {
    typing.get_args(cls.model_fields["kind"].annotation)[0]: cls
    for cls in (RunStep, ValidateStep, ExportStep, VerifyStep, WaitStep, ManualStep)
}
"""The model of each kind, by the name its `kind` key holds."""


def step_templates(raw: Mapping[Any, Any]) -> Iterator[TemplateField]:
    """The template fields of a step as written: its kind's, or every step's for an unknown kind.

    Args:
        raw: the step's mapping, validated or not.

    Returns:
        Each field to check, and how it is read, in the order they are checked.
    """
    return STEP_CLASSES.get(str(raw.get("kind")), _StepBase).templates(raw)


class Lesson(_Strict):
    """A lesson for the report, shown only when its `when` holds against the run."""

    text: Template = Field(description="The lesson, or next step, in prose (a template).")
    when: str | None = Field(
        default=None,
        description="An expression over vars and steps: shown only when true (default: always).",
    )


LessonField = Annotated[
    Lesson,
    BeforeValidator(_short_form("text")),
    OrShortForm((("type", "string"),)),
]


class ReportSection(_Strict):
    """Prose the run cannot know by itself."""

    lessons: list[LessonField] = Field(
        default_factory=list, description="Lessons learned: text, or {text, when}."
    )
    next_steps: dict[str, list[LessonField]] = Field(
        default_factory=dict,
        description="Next steps under headings: heading -> list of text or {text, when}.",
    )


class PartitionRange(_Strict):
    """An inclusive range of dates, one partition a day."""

    from_: Template = Field(
        alias="from",
        description='The first date, YYYY-MM-DD (a template over the vars: "{{ start }}").',
    )
    to: Template = Field(
        description="The last date, included, YYYY-MM-DD (a template over the vars)."
    )


PARTITION_ORDERS = ("phase", "partition")


class Partitions(_Strict):
    """Run the steps once per partition value (a backfill over dates), as one run."""

    var: VarName = Field(
        description="The name each partition binds in templates and as a SQL @param; "
        "not also under vars."
    )
    dates: PartitionRange | None = Field(
        default=None,
        description="{from, to}: every date of an inclusive range, one partition a day "
        "(give one of dates, values, query).",
    )
    values: list[dt.date | str | int | float] | None = Field(
        default=None,
        description="An explicit list of partition values (YYYY-MM-DD strings are dates); "
        "duplicates run once.",
    )
    query: str | None = Field(
        default=None,
        description="A SELECT whose first column gives the partition values, run read-only on "
        "the warehouse; @name binds a var.",
    )
    parallel: int = Field(
        default=1, ge=1, description="How many partitions run at once (default 1)."
    )
    order: Literal["phase", "partition"] = Field(
        default="phase",
        description="phase (default): each step runs for every partition before the next "
        "step; partition: each partition runs all its steps in turn.",
    )

    @field_validator("query")
    @classmethod
    def _select(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^\s*(\(\s*)*(select|with)\b", value, re.I):
            raise ValueError("a partitions query must be a SELECT (it runs read-only)")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Partitions:
        given = [k for k in ("dates", "values", "query") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("partitions need exactly one of 'dates', 'values' or 'query'")
        return self


class Runbook(_Strict):
    """One action plan."""

    version: Literal[1] = Field(description="The format's version: 1.")
    id: StepId = Field(
        description="The runbook's name: [a-z0-9][a-z0-9_-]*; in run ids, locks and history."
    )
    title: Template = Field(description="The report's title (templated).")
    incident: Incident | None = Field(
        default=None, description="The incident it answers, for the report's header and footer."
    )
    summary: Template | None = Field(
        default=None, description="One paragraph on what the runbook does (templated)."
    )
    vars: dict[VarName, VarSpec] = Field(
        default_factory=dict,
        description="Typed parameters by name; `--var name=value` sets them.",
    )
    env: dict[str, Template] = Field(
        default_factory=dict,
        description="Added to every command's environment (templated; may read env.X).",
    )
    secrets: list[str] = Field(
        default_factory=list,
        description="Names of env vars whose values never appear in any output (masked ***).",
    )
    workdir: str = Field(
        default=".",
        description="Where commands run, relative to the runbook file's folder (templated).",
    )
    warehouse: Warehouse = Field(
        default_factory=Warehouse,
        description="The warehouse verify and wait steps query: DuckDB (default) or BigQuery.",
    )
    defaults: Defaults = Field(
        default_factory=Defaults, description="timeout and retries for every step without its own."
    )
    notify: str | None = Field(
        default=None,
        description="A Slack-compatible webhook URL that gets a summary when the run ends.",
    )
    partitions: Partitions | None = Field(
        default=None,
        description="Run the steps once per partition (a backfill over dates): {var, dates, "
        "values or query, parallel, order}.",
    )
    steps: list[Step] = Field(min_length=1, description="The steps, at least one, in file order.")
    report: ReportSection = Field(
        default_factory=ReportSection,
        description="Prose the run cannot know by itself: lessons and next steps.",
    )
