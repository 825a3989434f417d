"""The kinds that run a command: run, validate, export (captures, details, expect, retries)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from agent.plan import templating
from agent.plan.durations import setting
from agent.plan.model import Capture, CommandStep
from agent.proc.process import run_process
from agent.record import (
    Attempt,
    Baseline,
    DetailLine,
    ExpectResult,
    Item,
    Status,
    StepResult,
    utcnow,
)
from agent.steps.base import (
    Event,
    StepContext,
    StepKind,
    StepReview,
    display,
    note_stopped,
    program_missing,
    register,
    review_program,
    step_env,
    step_timeout,
)

__all__ = ["CommandKind", "CrashWatch", "Scanner", "convert_capture", "severity"]

MAX_DETAILS = 50
MAX_ALL = 1000
# The pipeline's log prefix: `2026-01-26 05:14:35,123 - name - INFO - message`.
_LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d[ T][\d:,.]+\s+-\s+[\w.]+\s+-\s+[A-Z]+\s+-\s+")
_MARKS = re.compile(r"^\s*(?:✓|✅|⚠️|⚠|❌|✗|△|○|•)\ufe0f?\s*")
TRACEBACK = "Traceback (most recent call last):"
# A line that may be a heading over a validator's items: it ends with a colon, or from its
# start (or a log prefix's last "- ") it has capitals and no lowercase letter. A superset of
# `_heading` on the raw line, so that a chunk it does not match holds no heading and can be
# skipped. Possessive quantifiers: a long line of capitals must not cost quadratic time.
_HEADING_HINT = r":[^\S\n]*+$|(?:^|- )[^a-zA-Z\n]*+[A-Z][^a-z\n]*+$"
_ISSUE_WORDS = re.compile(r"(?i)\b(?:issue|error|fail|problem)")
_WARNING_WORDS = re.compile(r"(?i)\bwarn")
MAX_HEADING = 120  # longer lines are prose, not headings


def convert_capture(spec: Capture, raw: Any) -> Any:
    """Type a captured string (or tuple of groups) as the capture says."""
    if isinstance(raw, tuple):
        return [convert_capture(spec, r) for r in raw]
    if raw is None:
        return None
    text = str(raw).strip()
    kind = spec.type
    try:
        if kind == "int":
            return int(text.replace(",", ""))
        if kind == "float":
            return float(text.replace(",", ""))
        if kind == "bool":
            return text.lower() in ("true", "yes", "1", "ok", "success")
        if kind == "auto":
            if re.fullmatch(r"-?\d+", text):
                return int(text)
            if re.fullmatch(r"-?\d+\.\d*", text):
                return float(text)
    except ValueError:
        return None
    return text


class CrashWatch:
    """Watches output lines for a crash: a Python traceback's exception, or a `fatal` line."""

    def __init__(self, fatal: list[str]) -> None:
        self.fatal = [re.compile(f) for f in fatal]
        # A traceback is read to its exception line; the step crashed when that line ends the
        # output or the program exited non-zero (an exception logged and survived is not one).
        self.in_traceback = False
        self.exception: str | None = None
        self.exception_last = False
        self.fatal_line: str | None = None

    def __call__(self, line: str) -> None:
        """Take one non-blank output line."""
        if line.startswith(TRACEBACK):
            self.in_traceback = True
        elif self.in_traceback and not line[:1].isspace():
            # The first line at the margin after the frames is the exception itself.
            self.in_traceback = False
            self.exception = _LOG_PREFIX.sub("", line).strip()
            self.exception_last = True
            return
        if not self.in_traceback:
            self.exception_last = False
        if self.fatal_line is None and any(rx.search(line) for rx in self.fatal):
            self.fatal_line = line.strip()

    def crash(self, exit_code: int | None) -> str | None:
        """The line that shows the program crashed, if one does.

        A traceback counts when the program exited non-zero (its buffered stdout may still
        follow the traceback) or when nothing but the traceback came after its exception.
        """
        if self.fatal_line is not None:
            return self.fatal_line
        if self.exception is not None and (exit_code not in (0, None) or self.exception_last):
            return self.exception
        return None


def _heading(line: str) -> str | None:
    """The line as a heading (log prefix and marks stripped), or None when it is not one."""
    text = _MARKS.sub("", _LOG_PREFIX.sub("", line)).strip()
    if not text or len(text) > MAX_HEADING or not any(ch.isalpha() for ch in text):
        return None
    if text.endswith(":") or (not any(ch.islower() for ch in text) and re.search("[A-Z]{3}", text)):
        return text
    return None


def severity(heading: str | None) -> Literal["issue", "warning"] | None:
    """What a heading says its items are: issues, warnings, or (saying neither) None.

    When it names both, the word that comes first decides.
    """
    if heading is None:
        return None
    issue, warning = _ISSUE_WORDS.search(heading), _WARNING_WORDS.search(heading)
    if issue and (warning is None or issue.start() < warning.start()):
        return "issue"
    return "warning" if warning else None


def _item(name: str, groups: tuple[str | None, ...], section: str | None) -> Item:
    """An item from a match's groups: `[stage] message` with two or more, a message with one."""
    stage, message = (groups[0], groups[1]) if len(groups) > 1 else (None, groups[0])
    return Item(
        capture=name,
        stage=stage.strip() if stage else None,
        message=(message or "").strip(),
        section=section,
        severity=severity(section),
    )


class Scanner:
    """Reads a step's output line by line: captures (last match wins), items, details, crashes."""

    def __init__(self, step: CommandStep) -> None:
        self.captures = {name: (re.compile(c.pattern), c) for name, c in step.capture.items()}
        # Every match of an `all: true` capture with groups is also an item, under the heading
        # the output last printed above it (the nearest line that looks like one).
        self.itemized = {n for n, (rx, c) in self.captures.items() if c.all and rx.groups}
        self.sections: dict[str, str] = {}
        self.items: list[Item] = []
        self._item_counts = dict.fromkeys(self.itemized, 0)
        self.details = [(re.compile(d.match), d.mark) for d in step.details]
        self.crashes = CrashWatch(step.fatal)
        # Each pattern first searches a whole chunk (MULTILINE, at C speed); only a chunk in
        # which one can match is split into lines and matched line by line (line semantics).
        # The patterns are not joined into one: inline flags such as (?i) and backreferences
        # would break or change meaning.
        patterns = [c.pattern for c in step.capture.values()] + [d.match for d in step.details]
        patterns += step.fatal
        # Only these need every line decoded; a traceback is looked for in the text decoded
        # anyway (the newest lines of each chunk) and, at the end, in the tail.
        self.needs_every_line = bool(patterns)
        # Unanchored: a literal is found at C speed (0.3 ms per MiB), while "^" in MULTILINE
        # mode tries every position (5 ms per MiB); CrashWatch checks the line's start itself.
        patterns.append(re.escape(TRACEBACK))
        if self.itemized:
            patterns.append(_HEADING_HINT)
        self.prefilters = [re.compile(p, re.MULTILINE) for p in patterns]
        self.values: dict[str, Any] = {}
        self.lists: dict[str, list[Any]] = {n: [] for n, (_, c) in self.captures.items() if c.all}
        self.detail_lines: list[DetailLine] = []
        self.last_line = ""

    def block(self, text: str, start: int, end: int) -> None:
        """Take the complete lines text[start:end] of one chunk of output."""
        # The last line that is not blank, found from the end: a chunk ending in an empty
        # line still shows its last words.
        stop = end
        while stop > start:
            nl = text.rfind("\n", start, stop)
            last = text[(nl + 1 if nl >= 0 else start) : stop].strip()
            if last:
                self.last_line = last
                break
            stop = nl
        if not self.crashes.in_traceback and not any(
            rx.search(text, start, end) for rx in self.prefilters
        ):
            if stop > start:
                self.crashes.exception_last = False  # output went on after the exception
            return
        for line in text[start:end].split("\n"):
            self(line)

    def __call__(self, line: str) -> None:
        """Take one output line."""
        if line.strip():
            self.last_line = line
            self.crashes(line)
        for name, (rx, spec) in self.captures.items():
            m = rx.search(line)
            if m is None:
                if name in self.itemized and line.strip():
                    heading = _heading(line)
                    if heading is not None:
                        self.sections[name] = heading
                continue
            raw: Any = (
                m.groups() if len(m.groups()) > 1 else (m.group(1) if m.groups() else m.group(0))
            )
            if spec.all:
                if len(self.lists[name]) < MAX_ALL:
                    self.lists[name].append(convert_capture(spec, raw))
                if name in self.itemized and self._item_counts[name] < MAX_ALL:
                    self._item_counts[name] += 1
                    self.items.append(_item(name, m.groups(), self.sections.get(name)))
            else:
                # The last match wins: a processor's closing summary beats its progress lines.
                self.values[name] = convert_capture(spec, raw)
        if self.details and len(self.detail_lines) < MAX_DETAILS:
            for rx, mark in self.details:
                if rx.search(line):
                    text = _MARKS.sub("", _LOG_PREFIX.sub("", line)).strip()
                    self.detail_lines.append(DetailLine(mark=mark, text=text))
                    break

    @property
    def unmatched(self) -> list[str]:
        """The captures no line matched."""
        return [
            n
            for n, (_, spec) in self.captures.items()
            if not (self.lists[n] if spec.all else n in self.values)
        ]

    def result(self) -> dict[str, Any]:
        """The captures, with defaults for those that never matched."""
        out: dict[str, Any] = {}
        for name, (_, spec) in self.captures.items():
            if spec.all:
                out[name] = self.lists[name]
            else:
                out[name] = self.values.get(name, spec.default)
        return out


def _workdir(step: CommandStep, ctx: StepContext) -> Path:
    return (ctx.workdir / ctx.render(step.workdir)).resolve() if step.workdir else ctx.workdir


def render_argv(step: CommandStep, ctx: StepContext) -> list[str]:
    """The step's argv, rendered (a string command is split before substitution)."""
    return templating.render_command(step.command, ctx.template_context(), shell=step.shell)


@register("run", "validate", "export")
class CommandKind(StepKind):
    """Run a command, read its output, decide its status."""

    def scripts(self, step: CommandStep, names: Mapping[str, Any]) -> list[str]:
        """The interpreter's script argument (``python x.py``, ``bash x.sh``), as rendered."""
        try:
            argv = templating.render_command(step.command, dict(names), shell=step.shell)
        except templating.TemplateError:
            return []
        return argv[1:3]

    def captures(self, step: CommandStep) -> list[str]:
        """Each capture's name and pattern."""
        return [
            f"{k} = /{c.pattern}/" + (" (all)" if c.all else "") for k, c in step.capture.items()
        ]

    def take_baseline(self, step: CommandStep, ctx: StepContext, base: Baseline) -> None:
        """Run the command once before the run; its captures are the baseline."""
        self.run(step, ctx)
        base.captures = ctx.result.captures
        base.items = ctx.result.items
        base.status = ctx.result.status
        if ctx.result.status not in (Status.SUCCESS, Status.PARTIAL):
            base.error = ctx.result.reason

    def review(self, step: CommandStep, ctx: StepContext) -> StepReview:
        """Render the command and look up the program it names."""
        review = StepReview()
        argv = render_argv(step, ctx)
        review.command = display(argv, step.shell)
        review_program(review, argv, cwd=_workdir(step, ctx), env=step_env(step.env, ctx))
        return review

    def run(self, step: CommandStep, ctx: StepContext) -> None:
        """Run with retries; fill status, captures, details, expectations."""
        res = ctx.result
        # Every declared capture exists from the start (null, or its default), so later steps
        # and `when` can read it even when this step ends early (not found, failed to start).
        res.captures = {n: ([] if c.all else c.default) for n, c in step.capture.items()}
        try:
            argv = render_argv(step, ctx)
            env = step_env(step.env, ctx)
            cwd = _workdir(step, ctx)
        except templating.TemplateError as exc:
            res.status, res.reason = Status.FAILED, str(exc)
            return
        if program_missing(ctx, argv, step.shell, cwd=cwd, env=env):
            return
        log_path = ctx.log_path()
        assert log_path is not None
        res.log_path = str(log_path.relative_to(ctx.run_dir)) if ctx.run_dir else None
        retries = step.retries or ctx.loaded.runbook.defaults.retries
        attempts = retries.attempts if retries else 1
        backoff = retries.backoff if retries else 0.0
        timeout = step_timeout(step.timeout, ctx)
        for number in range(1, attempts + 1):  # at least one: the model refuses attempts < 1
            scanner = Scanner(step)

            def on_block(text: str, start: int, end: int, scanner: Scanner = scanner) -> None:
                scanner.block(text, start, end)
                # One event per chunk, not per line; the console shows its last line (and with
                # --verbose every line of the span). Lines reach here already masked: the
                # process output is redacted as it streams.
                ctx.emit(
                    Event(
                        "output",
                        res.id,
                        {"line": scanner.last_line, "text": text, "span": (start, end)},
                    )
                )

            attempt = Attempt(number=number, started_at=utcnow())
            res.attempts.append(attempt)
            proc = run_process(
                argv,
                cwd=cwd,
                env=env,
                timeout=timeout,
                log_path=log_path,
                on_block=on_block,
                # Captures and details read every line; otherwise only the newest matter.
                every_line=ctx.every_line or scanner.needs_every_line,
                redactor=ctx.redactor,
                max_log_bytes=ctx.max_log_bytes,
                stop_event=ctx.stop,
                on_spawn=ctx.on_spawn,
                header=f"--- attempt {number} of {attempts}: {res.command_display}\n".encode(),
                strays=ctx.strays,
            )
            stopped = note_stopped(ctx, proc)
            attempt.ended_at = proc.ended_at
            attempt.exit_code = proc.exit_code
            attempt.timed_out = proc.timed_out
            attempt.error = proc.error
            res.exit_code = proc.exit_code
            res.output_bytes += proc.output_bytes
            res.log_capped = res.log_capped or proc.log_capped
            res.output_tail = [ctx.redactor.redact(x) for x in proc.tail]
            if proc.interrupted:
                res.status, res.reason = Status.ABORTED, "the run was interrupted" + stopped
                break
            if proc.error and proc.exit_code is None and not proc.timed_out:
                res.status, res.reason = Status.FAILED, proc.error + stopped
            elif proc.timed_out:
                res.status = Status.TIMED_OUT
                res.reason = (
                    f"timed out after {setting(timeout)}; the process group was stopped" + stopped
                )
            elif proc.exit_code not in step.ok_exit_codes:
                res.status = Status.FAILED
                res.reason = f"exit code {proc.exit_code}" + _tail_hint(proc.tail)
            elif proc.error:
                res.status, res.reason = Status.FAILED, proc.error
            else:
                res.status = None
                break
            if number < attempts:
                delay = backoff * ((retries.factor if retries else 1.0) ** (number - 1))
                ctx.emit(
                    Event(
                        "retry",
                        res.id,
                        {
                            "attempt": number + 1,
                            "of": attempts,
                            "delay": delay,
                            "reason": res.reason,
                        },
                    )
                )
                if ctx.stop.wait(delay):
                    res.status, res.reason = Status.ABORTED, "interrupted during retry back-off"
                    break
        res.captures = {k: _redact_value(ctx, v) for k, v in scanner.result().items()}
        res.unmatched = scanner.unmatched
        res.items = [_redact_item(ctx, item) for item in scanner.items]
        res.details = [
            DetailLine(mark=d.mark, text=ctx.redactor.redact(d.text)) for d in scanner.detail_lines
        ]
        crash = scanner.crashes.crash(res.exit_code) or _tail_crash(proc.tail, res.exit_code)
        if crash is not None and res.status != Status.ABORTED:
            res.crash = ctx.redactor.redact(crash)
            # A crash is a failure whatever `ok_exit_codes` lets through.
            res.status, res.reason = Status.FAILED, f"crashed: {res.crash}"
        if res.status is not None:
            return
        _judge(step, res, ctx)


def _tail_crash(tail: list[str], exit_code: int | None) -> str | None:
    """A crash that only the output's tail shows (lines not otherwise decoded)."""
    watch = CrashWatch([])
    for line in tail:
        if line.strip():
            watch(line)
    return watch.crash(exit_code)


def _unknown(step: CommandStep, res: StepResult) -> set[str]:
    """Captures with no evidence: unmatched and required, or unmatched after a non-zero exit.

    After exit 0 an unmatched capture's default stands (a validator prints no warnings line
    when there are none); after any other exit the default is only a guess.
    """
    return {
        n
        for n in res.unmatched
        if step.capture[n].required or (res.exit_code != 0 and not step.capture[n].all)
    }


def _judge(step: CommandStep, res: StepResult, ctx: StepContext) -> None:
    """Judge a program that ran to its end: its expectations, on evidence only."""
    unknown = _unknown(step, res)
    names = ctx.template_context(
        **{k: (None if k in unknown else v) for k, v in res.captures.items()},
        exit_code=res.exit_code,
    )
    res.expectations = evaluate_expectations(step.expect, names)
    for e in res.expectations:
        try:
            blind = sorted(unknown & templating.expression_names(e.expr))
        except templating.TemplateError:
            blind = []  # its own error is already recorded
        if blind:
            e.ok = False
            e.error = "no evidence: " + ", ".join(f"`{n}`" for n in blind) + " did not match"
    failed = [e for e in res.expectations if not e.ok]
    missing = sorted(n for n in unknown if step.capture[n].required)
    if failed or missing:
        res.status = Status.PARTIAL
        parts = [f"no evidence: required capture `{n}` did not match" for n in missing]
        if failed:
            shown = [e.expr + (f" ({e.error})" if e.error else "") for e in failed]
            parts.insert(0, "expectation not met: " + "; ".join(shown))
        res.reason = "; ".join(parts)
    else:
        res.status = Status.SUCCESS


def evaluate_expectations(exprs: list[str], names: dict[str, Any]) -> list[ExpectResult]:
    """Evaluate `expect` expressions; an error or a null reads as not met."""
    out: list[ExpectResult] = []
    for expr in exprs:
        try:
            out.append(ExpectResult(expr=expr, ok=templating.evaluate_expectation(expr, names)))
        except templating.TemplateError as exc:
            out.append(ExpectResult(expr=expr, ok=False, error=str(exc)))
    return out


def _redact_value(ctx: StepContext, value: Any) -> Any:
    if isinstance(value, str):
        return ctx.redactor.redact(value)
    if isinstance(value, list):
        return [_redact_value(ctx, v) for v in value]
    return value


def _redact_item(ctx: StepContext, item: Item) -> Item:
    red = ctx.redactor.redact
    return item.model_copy(
        update={
            "stage": red(item.stage) if item.stage else None,
            "message": red(item.message),
            "section": red(item.section) if item.section else None,
        }
    )


def _tail_hint(tail: list[str]) -> str:
    lines = [t for t in tail if t.strip()][-3:]
    return (": " + " | ".join(x.strip()[:200] for x in lines)) if lines else ""
