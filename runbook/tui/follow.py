"""Which target's output the console follows, and the output on its way to the screen.

Folding the events into "what to show" is kept apart from drawing it: the rules (follow
what runs now; after a failure, the first failed host's output is what matters) are
plain state, testable without a screen.
"""

from __future__ import annotations

import base64
from typing import Any

from runbook.tui.output import OutputBuffer


class Follow:
    """Output buffered per target (``local`` or a host) and the target worth showing."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.pending: dict[str, OutputBuffer] = {}
        self.block: str | None = None
        self.failed_shown = False
        self.live: set[str] = set()
        self.shown: str | None = None

    def buffer(self, target: str) -> OutputBuffer:
        buffer = self.pending.get(target)
        if buffer is None:
            buffer = self.pending[target] = OutputBuffer(keep=self.keep)
        return buffer

    def output(self, event: dict[str, Any]) -> None:
        text = event.get("text")
        if text is None:
            text = base64.b64decode(event["b64"]).decode("utf-8", "replace")
        self.buffer(event.get("host") or "local").add(text, event["stream"])

    def resumed(self) -> None:
        """The recorded part of a resumed run is replayed: what follows is this run's."""
        for buffer in self.pending.values():
            buffer.end_line()
            buffer.add("── the run stopped here; resumed ──\n")
        self.live.clear()

    def started(self, event: dict[str, Any]) -> str | None:
        """A block started on a target: the target to focus, if the screen should move."""
        target = event.get("host") or "local"
        attempt = f" (attempt {event['attempt']})" if event.get("attempt", 1) > 1 else ""
        if event.get("bake"):
            attempt = f" (bake round {event['bake']['round']})"
        buffer = self.buffer(target)
        buffer.end_line()
        buffer.add(f"── {event['block']}{attempt} on {event['target']} ──\n")
        if event["block"] != self.block:
            self.block, self.failed_shown = event["block"], False
        focus = None
        if self.shown not in self.live:  # follow what runs now
            self.shown = focus = target
        self.live.add(target)
        return focus

    def ended(self, event: dict[str, Any]) -> str | None:
        """A block ended on a target: the target to focus, if the screen should move."""
        target = event.get("host") or "local"
        buffer = self.buffer(target)
        buffer.end_line()
        buffer.add(f"── {event['status']} ──\n")
        self.live.discard(target)
        failed = event.get("exit") != 0 and not event.get("continued")
        if failed and target != "local" and not self.failed_shown:
            self.failed_shown = True  # the first failed host's output is what matters
            self.shown = target
            return target
        return None
