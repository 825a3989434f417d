"""JUnit XML from a run record: one testcase per step (per pair, partitioned), for CI systems."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from agent.output.facts import (
    capture_text,
    cause_text,
    defaulted,
    run_seconds,
    status_tally,
    step_label,
)
from agent.record import RunRecord, Status

__all__ = ["junit_xml", "write_junit"]

_FAILURES = {Status.PARTIAL, Status.NOT_FOUND, Status.TIMED_OUT}
_ERRORS = {Status.FAILED, Status.ABORTED}


def _clean(text: str) -> str:
    # XML 1.0 cannot carry most control characters, whatever the escaping.
    return "".join(c for c in text if c in "\t\n\r" or ord(c) >= 0x20)


def junit_xml(record: RunRecord) -> str:
    """The run as a JUnit XML document (a `testsuites` root with one `testsuite`).

    Args:
        record: the run.

    Returns:
        The XML text.
    """
    tally = status_tally(record.steps)
    failures = sum(tally.get(s, 0) for s in _FAILURES)
    errors = sum(tally.get(s, 0) for s in _ERRORS)
    skipped = tally.get(Status.SKIPPED, 0)
    total = run_seconds(record) or 0.0
    root = ET.Element(
        "testsuites",
        name=f"runbook {record.runbook_id}",
        tests=str(len(record.steps)),
        failures=str(failures),
        errors=str(errors),
        time=f"{total:.3f}",
    )
    suite = ET.SubElement(
        root,
        "testsuite",
        name=record.runbook_id,
        tests=str(len(record.steps)),
        failures=str(failures),
        errors=str(errors),
        skipped=str(skipped),
        time=f"{total:.3f}",
        timestamp=record.started_at.isoformat(),
        hostname=_clean(record.host),
    )
    props = ET.SubElement(suite, "properties")
    for name, value in (
        ("run_id", record.run_id),
        ("status", record.status.value if record.status else ""),
    ):
        ET.SubElement(props, "property", name=name, value=_clean(value))
    for step in record.steps:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"{record.runbook_id}.{step.kind}",
            name=_clean(f"{step_label(step)}: {step.title}"),
            time=f"{step.duration_s or 0.0:.3f}",
        )
        reason = step.reason or (step.status.value if step.status else "not finished")
        cause = cause_text(step)
        # The reason often starts with its cause already: say it once.
        reason = _clean(f"{cause}: {reason}" if cause and not reason.startswith(cause) else reason)
        if step.status in _FAILURES or step.status in _ERRORS or step.status is None:
            tag = "failure" if step.status in _FAILURES else "error"
            kind = step.status.value if step.status else "UNFINISHED"
            node = ET.SubElement(case, tag, message=reason, type=kind)
            node.text = _clean("\n".join(step.output_tail[-20:]))
        elif step.status == Status.SKIPPED:
            ET.SubElement(case, "skipped", message=reason)
        out = [f"{n}: {capture_text(step, n)}" for n in defaulted(step)]
        if step.log_path:
            out.append(f"log: {step.log_path}")
        if out:
            ET.SubElement(case, "system-out").text = _clean("\n".join(out))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(record: RunRecord, path: Path) -> None:
    """Write the JUnit XML of a run to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(junit_xml(record), encoding="utf-8")
