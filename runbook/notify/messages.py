"""What a ``notify:`` webhook is sent: one JSON message per event of the run.

People who are not at the keyboard learn from these what a run is doing: it started, it
waits for someone at a gate, a step is done, something failed, it rolls back, it ended.
A message is JSON with a Slack-compatible ``text`` and structured fields (documented in
docs/format.md); delivery is :mod:`runbook.notify.webhook`'s job.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from runbook.format.model import Runbook

# What each event tells the people watching, as the body's `status`.
STATUS = {
    "run-start": "started",
    "gate-waiting": "waiting",
    "step-done": "running",
    "failure": "failed",
    "rollback": "rolling-back",
}
SYMBOL = {
    "run-start": "▶",
    "gate-waiting": "⏸",
    "step-done": "✔",
    "failure": "✖",
    "rollback": "↩",
    "ok": "✔",
}


def body(
    event: str,
    rb: Runbook,
    context: Mapping[str, Any],
    *,
    status: str | None = None,
    step: int | None = None,
    block: str | None = None,
    host: str | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    """The JSON a webhook receives; ``context`` holds run, transcript, operator, resumed.
    ``head`` is set by :func:`with_head`."""
    status = status or STATUS[event]
    at_step = next((s for s in rb.steps if s.index == step), None)
    step_field = (
        None
        if at_step is None
        else {"index": at_step.index, "title": at_step.title, "count": len(rb.steps)}
    )
    return {
        "text": _text(
            event,
            rb,
            context,
            status,
            f"{at_step.index}/{len(rb.steps)} “{at_step.title}”" if at_step else None,
            block,
            host,
            message,
        ),
        "event": event,
        "status": status,
        "runbook": {"title": rb.title, "path": rb.path, "sha256": rb.sha256},
        "run": context.get("run"),
        "resumed": bool(context.get("resumed")),
        "operator": context.get("operator"),
        "step": step_field,
        "block": block,
        "host": host,
        "message": message,
        "transcript": context.get("transcript"),
        "head": None,
        "at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


def with_head(message: dict[str, Any], seq: int, sha256: str) -> None:
    """Add the transcript's head (its last line's ``seq`` and sha256 when the message was
    made) to a message, as a field and at the end of its text: a witness of the record
    (``runbook transcript verify --expect SEQ:SHA256``)."""
    message["head"] = {"seq": seq, "sha256": sha256}
    message["text"] += f" · record `{seq}:{sha256}`"


def _text(
    event: str,
    rb: Runbook,
    context: Mapping[str, Any],
    status: str,
    step: str | None,
    block: str | None,
    host: str | None,
    message: str | None,
) -> str:
    """One line a person reads in a chat channel; ``&<>`` escaped as Slack requires."""
    where = "".join(
        [
            f" at step {step}" if step else "",
            f", block {block}" if block else "",
            f" on {host}" if host else "",
        ]
    )
    who = context.get("operator") or "someone"
    if event == "run-start":
        verb = "resumed" if context.get("resumed") else "started"
        line = f"{rb.title}: {verb} by {who} (run {context.get('run')})"
    elif event == "gate-waiting":
        line = f"{rb.title}: waiting for {who}{where}: {message}"
    elif event == "step-done" and message:  # not all of it ran: not "done" with a tick
        line = f"{rb.title}: step {step} finished, {message}"
    elif event == "step-done":
        line = f"{rb.title}: step {step} done"
    elif event == "failure":
        line = f"{rb.title}: failed{where}: {message}"
    elif event == "rollback":
        line = f"{rb.title}: rolling back: {message}"
    else:
        line = f"{rb.title}: run {status}: {message} (run {context.get('run')})"
    symbol = SYMBOL.get(event if event != "run-end" else status, "✖")
    if event == "step-done" and message:
        symbol = "↷"
    text = f"{symbol} {line}"
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
