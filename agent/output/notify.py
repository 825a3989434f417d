"""Slack-compatible webhook summary when a run ends; a failed post never changes the run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent.output.facts import status_tally
from agent.record import RunRecord, Status

__all__ = ["Notifier", "payload", "post"]


def payload(record: RunRecord, run_dir: Path) -> dict[str, Any]:
    """The JSON body: a `text` line (Slack's minimum) plus blocks and the raw figures."""
    counts = {(s.value if s else "UNFINISHED"): n for s, n in status_tally(record.steps).items()}
    status = record.status.value if record.status else "UNKNOWN"
    mark = {"COMPLETE": ":white_check_mark:", "PARTIALLY COMPLETE": ":warning:"}.get(status, ":x:")
    steps = ", ".join(f"{n} {k.lower()}" for k, n in counts.items())
    report = run_dir / "report.md"
    short = [
        f"• {s.title}: {s.status.value}"
        for s in record.steps
        if s.status not in (Status.SUCCESS, Status.SKIPPED, None)
    ]
    text = f"{mark} {record.title}: {status} ({steps}). Report: {report}"
    return {
        "text": text,
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"*{record.title}*\n{status} ({steps})"},
            },
            *(
                [{"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(short)}}]
                if short
                else []
            ),
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"run `{record.run_id}` · {report}"}],
            },
        ],
        "run_id": record.run_id,
        "status": status,
        "counts": counts,
        "report": str(report),
    }


def post(url: str, body: dict[str, Any], *, timeout: float = 10.0) -> str | None:
    """POST JSON to `url`; return None on success, else one line saying what went wrong.

    The line never holds the URL: a webhook's path is its credential (Slack's `/services/...`).
    """
    if not url.startswith(("http://", "https://")):
        return "notification failed: the webhook URL does not start with http:// or https://"
    # Imported here: urllib.request (http.client, email, ssl) cost every run at start-up,
    # notification or not (python -X importtime, issue 15).
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode()
    # http(s) only, checked above, so neither Request nor urlopen can reach file: URLs.
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            if resp.status >= 300:
                return f"notification failed: HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return f"notification failed: HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = str(getattr(exc, "reason", exc)).replace(url, "<webhook URL>")
        return f"notification failed: {reason}"
    return None


class Notifier:
    """An event listener that posts the summary on `run_finished`."""

    def __init__(self, url: str, on_error: Any = None) -> None:
        self.url = url
        self.on_error = on_error
        self.error: str | None = None

    def __call__(self, event: Any) -> None:
        """Post when the run finishes; remember (and report) a failure."""
        if event.kind != "run_finished":
            return
        record: RunRecord = event.data["record"]
        run_dir: Path = event.data["run_dir"]
        self.error = post(self.url, payload(record, run_dir))
        if self.error:
            (run_dir / "notify.log").write_text(self.error + "\n", encoding="utf-8")
            if self.on_error:
                self.on_error(self.error)
