"""The verify kind: row counts and key coverage in the warehouse, one query per step."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agent.plan import templating
from agent.plan.model import Check, VerifyStep
from agent.record import Baseline, CheckResult, Status
from agent.steps.base import (
    StepContext,
    StepKind,
    StepReview,
    register,
    sql_params,
    write_evidence,
)
from agent.steps.command import evaluate_expectations
from agent.warehouse.base import CountCheck, CountOutcome, WarehouseError

__all__ = ["VerifyKind", "check_key", "measure"]


def check_key(step: VerifyStep, index: int) -> str:
    """The name a check's result is kept under: its `name`, else its table (made unique)."""
    check = step.checks[index]
    if check.name:
        return check.name
    same = [i for i, c in enumerate(step.checks) if c.table == check.table and not c.name]
    return check.table if same[0] == index else f"{check.table}#{same.index(index) + 1}"


def _as_int(value: Any, what: str) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise templating.TemplateError(f"{what} must be a whole number, got '{value}'") from None


def _expectation(
    check: Check, ctx: StepContext, outcome: CountOutcome | None = None
) -> dict[str, Any]:
    """What a check expects, as CheckResult fields.

    `expect: coverage` (or no `expect` beside a coverage query) expects the outcome's count of
    expected keys; without an outcome (a dry run before counting) that number is left out.
    """
    out: dict[str, Any] = {}
    exp = check.expect
    if check.expects_coverage:
        out["expected_source"] = "coverage"
        if outcome is not None and outcome.expected_total is not None:
            out["expected"] = outcome.expected_total
    elif isinstance(exp, dict):
        if "min" in exp:
            out["minimum"] = _as_int(ctx.render(str(exp["min"])), "expect.min")
        if "ratio" in exp:
            out["ratio"] = float(ctx.render(str(exp["ratio"])))
    elif exp is not None:
        out["expected"] = _as_int(ctx.render(str(exp)), "expect")
        out["expected_source"] = "var"
    if check.expect_total is not None:
        out["total"] = _as_int(ctx.render(str(check.expect_total)), "expect_total")
    elif "expected" in out:
        out["total"] = out["expected"]
    # A minimum is a floor, not a total: no percentage is computed against it.
    return out


def _judge(result: CheckResult) -> None:
    n = result.actual
    if n is None:
        result.ok = False
        return
    if result.total:
        result.percent = round(100.0 * n / result.total, 1)
    ok = True
    if result.expected is not None:
        ok = n == result.expected
    if result.minimum is not None:
        ok = ok and n >= result.minimum
    if result.ratio is not None:
        ok = ok and result.total is not None and n >= result.ratio * result.total
    if result.key and result.missing_total:
        ok = False
    if result.levels is not None:
        result.level = _level(result)
        # The level decides a shortfall; more rows than expected is still a finding.
        total = result.total if result.total is not None else result.expected
        ok = result.level == "ok" and (total is None or n <= total)
    result.ok = ok


def _found_share(r: CheckResult) -> tuple[int, int] | None:
    """The expected records found and their total: the covered keys when the coverage query
    named them, else the rows counted (at most the total)."""
    total = r.total if r.total is not None else r.expected
    if total is None or r.actual is None:
        return None
    if r.missing_total is not None:
        return max(total - r.missing_total, 0), total
    return min(r.actual, total), total


def _level(r: CheckResult) -> str | None:
    """The level a check with `levels` reached: "ok", "warn" or "fail"."""
    share = _found_share(r)
    if share is None or r.levels is None:
        return None
    found, total = share
    ratio = 1.0 if total == 0 else found / total
    # A small tolerance: 9 of 10 is 0.9 whatever the float rounding says.
    if ratio + 1e-9 >= r.levels["ok"]:
        return "ok"
    return "warn" if ratio + 1e-9 >= r.levels["warn"] else "fail"


def _sql(source: str | None, ctx: StepContext) -> str | None:
    """A SQL field, rendered: `{{ }}` may write numbers only; other values are `@params`."""
    return None if source is None else templating.render_sql(source, ctx.template_context())


def _count_checks(step: VerifyStep, ctx: StepContext) -> list[CountCheck]:
    return [
        CountCheck(
            name=check_key(step, i),
            table=c.table,
            where=_sql(c.where, ctx),
            coverage_key=tuple(c.coverage.key) if c.coverage else (),
            coverage_expected=_sql(c.coverage.expected, ctx) if c.coverage else None,
        )
        for i, c in enumerate(step.checks)
    ]


def measure(step: VerifyStep, ctx: StepContext) -> dict[str, CheckResult]:
    """Count every check in one warehouse query and judge each against its expectation.

    Args:
        step: the verify step.
        ctx: the step's context (vars, warehouse).

    Returns:
        One CheckResult per check, keyed by `check_key`.

    Raises:
        TemplateError: a SQL field that cannot be rendered (a value that is not a number).
        WarehouseError: the warehouse cannot be queried.
    """
    checks = _count_checks(step, ctx)
    labels = {"runbook": ctx.loaded.runbook.id, "run": ctx.run_id, "step": step.id}
    warehouse = ctx.open_warehouse()
    try:
        outcomes = warehouse.count(checks, sql_params(ctx.vars), labels)
    finally:
        warehouse.close()
    results: dict[str, CheckResult] = {}
    for c, check, outcome in zip(checks, step.checks, outcomes, strict=True):
        results[c.name] = _result(check, c, outcome, ctx)
    write_evidence(ctx, _evidence(checks, results, sql_params(ctx.vars)))
    return results


def _evidence(
    checks: list[CountCheck],
    results: Mapping[str, CheckResult],
    params: Mapping[str, Any],
    *,
    partitions: int = 1,
) -> list[str]:
    """What the verify step asked the warehouse and what the warehouse returned."""
    shown = ", ".join(f"{k}={v}" for k, v in params.items()) or "none"
    over = f" for {partitions} partitions" if partitions > 1 else ""
    lines = [f"--- one count query over {len(checks)} check(s){over}; parameters: {shown}"]
    for c in checks:
        r = results[c.name]
        lines.append(f"check {c.name}: rows of {c.table}")
        if c.where:
            lines.append(f"  where {c.where}")
        if c.coverage_key:
            expected = " ".join((c.coverage_expected or "").split())
            lines.append(f"  coverage of ({', '.join(c.coverage_key)}) over: {expected}")
        if r.error:
            lines.append(f"  error: {r.error}")
            continue
        source = " (the coverage query's expected keys)" if r.expected_source == "coverage" else ""
        lines.append(
            f"  rows: {r.actual}; expected: {r.expected if r.expected is not None else '-'}{source}"
        )
        if r.missing_total is not None:
            lines.append(f"  expected keys missing: {r.missing_total}")
            lines += [f"    {dict(k)}" for k in r.missing_keys]
    return lines


def _result(
    check: Check, counted: CountCheck, outcome: CountOutcome, ctx: StepContext
) -> CheckResult:
    result = CheckResult(
        table=check.table,
        where=counted.where,
        actual=outcome.count,
        key=list(check.coverage.key) if check.coverage else [],
        missing_keys=outcome.missing_keys,
        missing_total=outcome.missing_total,
        levels=check.levels.model_dump() if check.levels else None,
        error=outcome.error,
    )
    try:
        for k, v in _expectation(check, ctx, outcome).items():
            setattr(result, k, v)
    except (templating.TemplateError, ValueError) as exc:
        result.error = str(exc)
    _judge(result)
    return result


def _current(step: VerifyStep, outcomes: Sequence[CountOutcome]) -> str:
    """A partition's counts now: ``boxscores 10/12 (83.3%, level warn), team_defense 0/12``."""
    parts = []
    for check, o in zip(step.checks, outcomes, strict=True):
        if o.error is not None:
            parts.append(f"{o.name}: {o.error}")
        elif o.expected_total is not None and o.missing_total is not None:
            found = o.expected_total - o.missing_total
            share = found / o.expected_total if o.expected_total else 1.0
            level = ""
            if check.levels is not None:
                grade = _level(
                    CheckResult(
                        table=check.table,
                        actual=o.count,
                        total=o.expected_total,
                        missing_total=o.missing_total,
                        levels=check.levels.model_dump(),
                    )
                )
                level = f", level {grade}"
            pct = f"{100 * share:.1f}".removesuffix(".0")
            parts.append(f"{o.name} {found}/{o.expected_total} ({pct}%{level})")
        else:
            parts.append(f"{o.name} {o.count} rows")
    return ", ".join(parts)


def _shortfall_text(name: str, r: CheckResult) -> str:
    share = _found_share(r)
    if r.level in ("warn", "fail") and r.levels is not None and share is not None:
        found, total = share
        pct = f"{100.0 * found / total:.1f}".removesuffix(".0") if total else "100"
        edge = "ok" if r.level == "warn" else "warn"
        return (
            f"{name}: {found} of {total} expected records ({pct}%), "
            f"below the {edge} level {r.levels[edge]:.0%}"
        )
    if r.expected is not None and r.actual != r.expected:
        text = f"{name}: {r.actual} of {r.expected}"
    elif r.minimum is not None and (r.actual or 0) < r.minimum:
        text = f"{name}: {r.actual}, below the minimum {r.minimum}"
    elif r.ratio is not None and r.total:
        text = f"{name}: {r.actual} of {r.total}, below {r.ratio:.0%}"
    else:
        text = f"{name}: {r.actual}"
    if r.missing_total:
        text += f", {r.missing_total} expected keys missing"
    return text


@register("verify")
class VerifyKind(StepKind):
    """Count rows; PARTIAL when a count or coverage falls short, FAILED when a check cannot run."""

    def take_baseline(self, step: VerifyStep, ctx: StepContext, base: Baseline) -> None:
        """Count every check once before the run."""
        base.counts = measure(step, ctx)

    def review(self, step: VerifyStep, ctx: StepContext) -> StepReview:
        """Say what each check counts; with a warehouse at hand, what it counts now."""
        review = StepReview()
        try:
            checks = _count_checks(step, ctx)
        except templating.TemplateError as exc:
            # The run would fail here: a problem for the preflight, not a remark.
            review.missing.append(f"cannot render the checks' SQL: {exc}")
            return review
        for i, (c, counted) in enumerate(zip(step.checks, checks, strict=True)):
            exp = _expectation(c, ctx)
            want = (
                "as many rows as the coverage query's expected keys"
                if exp.get("expected_source") == "coverage"
                else f"exactly {exp['expected']}"
                if "expected" in exp
                else f"at least {exp['minimum']}"
                if "minimum" in exp
                else f"at least {exp['ratio']:.0%} of {exp.get('total')}"
                if "ratio" in exp
                else "any count"
            )
            where = f" where `{counted.where}`" if counted.where else ""
            cov = f"; coverage of ({', '.join(c.coverage.key)})" if c.coverage else ""
            if c.levels:
                cov += f"; passes at {c.levels.ok:.0%}, warns at {c.levels.warn:.0%}"
            review.lines.append(f"check {i + 1}: `{c.table}`{where}: expects {want}{cov}")
        if ctx.offline:
            return review
        try:
            warehouse = ctx.open_warehouse()
            try:
                missing = warehouse.missing_tables(sorted({c.table for c in checks}))
                for t in missing:
                    review.missing.append(f"table {t} does not exist")
                present = [c for c in checks if c.table not in missing]
                if present:
                    outcomes = warehouse.count(present, sql_params(ctx.vars), {})
                    for o in outcomes:
                        if o.error is not None:
                            review.missing.append(f"check `{o.name}`: {o.error}")
                            continue
                        line = f"`{o.name}`: {o.count} rows"
                        if o.missing_total:
                            line += f", {o.missing_total} expected keys missing"
                        review.warehouse.append(line)
                    est = warehouse.estimate_bytes(present, sql_params(ctx.vars))
                    if est is not None:
                        review.warehouse.append(f"the query would process {est:,} bytes")
            finally:
                warehouse.close()
        except WarehouseError as exc:
            review.missing.append(f"warehouse: {exc}")
        return review

    batches_partitions = True

    def review_partitions(
        self, step: VerifyStep, ctxs: Mapping[str, StepContext], var: str
    ) -> list[tuple[str, str]]:
        """Each partition's current coverage, counted for all partitions in one statement."""
        if len(ctxs) == 0:
            return []
        try:
            checks = [_count_checks(step, ctx) for ctx in ctxs.values()]
        except templating.TemplateError:
            return []
        if any(c != checks[0] for c in checks):
            return []  # the SQL differs by partition: not one statement
        first = next(iter(ctxs.values()))
        try:
            warehouse = first.open_warehouse()
            try:
                if warehouse.missing_tables(sorted({c.table for c in checks[0]})):
                    return []  # the step's own review names the missing tables
                params = [sql_params(ctx.vars) for ctx in ctxs.values()]
                found = warehouse.count_partitions(checks[0], params, var, {})
            finally:
                warehouse.close()
        except WarehouseError:
            return []  # the step's own review says what the warehouse answered
        return [(p, _current(step, outcomes)) for p, outcomes in zip(ctxs, found, strict=True)]

    def run_partitions(
        self, step: VerifyStep, ctxs: Sequence[StepContext], var: str | None
    ) -> None:
        """Measure every partition's checks in one warehouse statement, then judge each."""
        if var is None or len(ctxs) < 2:
            for ctx in ctxs:
                self.run(step, ctx)
            return
        try:
            checks = [_count_checks(step, ctx) for ctx in ctxs]
        except templating.TemplateError:
            checks = []
        if not checks or any(c != checks[0] for c in checks):
            # The SQL differs by partition ({{ }} numbers): each partition asks on its own.
            for ctx in ctxs:
                self.run(step, ctx)
            return
        first = ctxs[0]
        labels = {"runbook": first.loaded.runbook.id, "run": first.run_id, "step": step.id}
        params = [sql_params(ctx.vars) for ctx in ctxs]
        try:
            warehouse = first.open_warehouse()
            try:
                outcomes = warehouse.count_partitions(checks[0], params, var, labels)
            finally:
                warehouse.close()
        except WarehouseError as exc:
            for ctx in ctxs:
                ctx.result.status, ctx.result.reason = Status.FAILED, f"warehouse: {exc}"
            return
        for ctx, p, found in zip(ctxs, params, outcomes, strict=True):
            try:
                results = {
                    c.name: _result(check, c, outcome, ctx)
                    for c, check, outcome in zip(checks[0], step.checks, found, strict=True)
                }
            except templating.TemplateError as exc:
                ctx.result.status, ctx.result.reason = Status.FAILED, str(exc)
                continue
            write_evidence(ctx, _evidence(checks[0], results, p, partitions=len(ctxs)))
            self._judge_step(step, ctx, results)

    def run(self, step: VerifyStep, ctx: StepContext) -> None:
        """Measure, then judge the step."""
        res = ctx.result
        try:
            counts = measure(step, ctx)
        except WarehouseError as exc:
            res.status, res.reason = Status.FAILED, f"warehouse: {exc}"
            return
        except templating.TemplateError as exc:
            res.status, res.reason = Status.FAILED, str(exc)
            return
        self._judge_step(step, ctx, counts)

    def _judge_step(
        self, step: VerifyStep, ctx: StepContext, counts: dict[str, CheckResult]
    ) -> None:
        res = ctx.result
        res.counts = counts
        errors = [f"{k}: {r.error}" for k, r in res.counts.items() if r.error]
        if errors:
            res.status, res.reason = Status.FAILED, "; ".join(errors)
            return
        counts_view = {k: r.model_dump() for k, r in res.counts.items()}
        res.expectations = evaluate_expectations(
            step.expect, ctx.template_context(counts=counts_view)
        )
        short = [k for k, r in res.counts.items() if not r.ok]
        failed = [e.expr for e in res.expectations if not e.ok]
        below = [k for k, r in res.counts.items() if r.level == "fail"]
        if below:
            res.status = Status.FAILED
            res.reason = "below the warn level: " + "; ".join(
                _shortfall_text(k, res.counts[k]) for k in below
            )
        elif short or failed:
            res.status = Status.PARTIAL
            parts = [_shortfall_text(k, r) for k, r in res.counts.items() if not r.ok]
            if failed:
                parts.append("expectation not met: " + "; ".join(failed))
            res.reason = "short: " + "; ".join(parts)
        else:
            res.status = Status.SUCCESS
