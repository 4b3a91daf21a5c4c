"""The run's side of ``notify:``: which webhooks are on, what they are sent, what happened.

Messages are built from the run's own (masked) facts, masked once more as a whole, and
handed to a :class:`~runbook.webhook.Courier`; every delivery attempt comes back here and
is recorded as a ``notify`` event. Nothing in here waits for a webhook, except
:meth:`Notices.finish` at the end of the run, for at most one timeout and its retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from runbook.format.model import Runbook
from runbook.format.values import expand
from runbook.format.webhooks import check_url, origin
from runbook.notify.messages import body, with_head
from runbook.record import events as ev
from runbook.record.events import RunState
from runbook.record.transcript import TranscriptWriter

if TYPE_CHECKING:  # the HTTP client (and ssl) only for a runbook with webhooks
    from runbook.notify.webhook import Attempt, Courier

FINAL = frozenset({"delivered", "failed", "abandoned"})
QUIET_WAIT = 1.0
"""At the end, how long the last messages may take before the operator is told of the wait."""


class Masks(Protocol):
    def deep(self, obj: Any) -> Any: ...


class Log(Protocol):
    """What the notices need of the run's record (the engine's journal)."""

    @property
    def writer(self) -> TranscriptWriter: ...
    @property
    def state(self) -> RunState: ...
    @property
    def masker(self) -> Masks: ...

    def emit(self, type_: str, durable: bool = False, **fields: Any) -> dict[str, Any]: ...


def warning(event: dict[str, Any]) -> str | None:
    """What the operator is told of a ``notify`` event: only what went wrong."""
    if event["result"] == "off":
        return f"webhook {event['hook']} (line {event['line']}) is off: {event['error']}"
    if event["result"] in ("failed", "abandoned"):
        what = f"notification {event['event']} to {event['to']}"
        return f"{what} {event['result']}: {event['error']}"
    return None


class Notices:
    """One run's notifications: set up when its values are known, closed at its end."""

    def __init__(
        self,
        log: Log,
        rb: Runbook,
        values: dict[str, str],
        *,
        operator: str,
        resumed: bool,
        attended: bool,
    ) -> None:
        self.log, self.rb, self.values = log, rb, values
        self.operator, self.resumed = operator, resumed
        self.attended = attended
        """Whether a person answers the gates (with --yes nobody is kept waiting)."""
        self.courier: Courier | None = None
        self.sent = 0
        self.unsettled: set[tuple[int, int]] = set()
        """(hook, message) of messages without a final attempt on record yet."""
        self._inbox: deque[Attempt] = deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.wait = 0.0
        """How long the end of the run waits for deliveries in flight."""
        self.failed: set[str] = set()
        self.skipped: dict[int, list[str]] = {}
        """Per step, its blocks that were skipped ("revoke, after failing"): a step with
        these is not simply done, and the chat must not say so."""

    def start(self) -> None:
        """Expand each webhook with the run's values; one that cannot be used is off."""
        targets = []
        for index, hook in enumerate(self.rb.notify, start=1):
            url = expand(hook.url, self.values, unknown="").strip()
            why = "its URL is empty" if not url else check_url(url)
            headers = tuple((name, expand(v, self.values)) for name, v in hook.headers)
            if why is None and any("\r" in v or "\n" in v for _, v in headers):
                why = "a header value holds a line break"
            if why is not None:
                self.log.emit(ev.NOTIFY, hook=index, line=hook.line, result="off", error=why)
                continue
            from runbook.notify.webhook import Target

            targets.append(
                Target(
                    index, url, origin(url), frozenset(hook.events), headers,
                    hook.timeout.seconds, hook.retries,
                )
            )  # fmt: skip
        if targets:
            from runbook.notify.webhook import FIRST_RETRY_DELAY, Courier

            self._loop = asyncio.get_running_loop()
            self.wait = max(t.timeout + FIRST_RETRY_DELAY * (2**t.retries - 1) for t in targets)
            self.courier = Courier(targets, self._arrived)

    def send(self, event: str, **fields: Any) -> None:
        """Queue a message about ``event``; returns at once."""
        courier = self.courier
        if courier is None:
            return
        wanted = [t for t in courier.targets if event in t.events]
        if not wanted:
            return
        s = self.log
        self.sent += 1  # numbered among the messages sent, so the record has no gaps
        for target in wanted:
            self.unsettled.add((target.index, self.sent))
        context = {
            "run": s.state.run_id,
            "resumed": self.resumed,
            "operator": self.operator,
            "transcript": str(s.writer.path.resolve()),
        }
        # Masked before the text is built: escaping `&<>` for Slack could split a secret.
        masked = {k: s.masker.deep(v) for k, v in fields.items()}
        message = s.masker.deep(body(event, self.rb, context, **masked))
        # The chain's head now, after masking (a short secret must not mask a hash): a copy
        # outside the run's files that a later forgery cannot match (`verify --expect`).
        with_head(message, s.writer.seq, s.writer.prev)
        courier.send(self.sent, event, json.dumps(_text(message), ensure_ascii=False).encode())

    def observe(self, event: dict[str, Any]) -> None:
        """Tell the webhooks what people away from the keyboard want to know of an event."""
        kind = event["type"]
        if kind == ev.GATE_ASK and self.attended:  # --yes keeps nobody waiting
            block = next((b for b in self.rb.blocks if b.name == event["block"]), None)
            self.send(
                "gate-waiting",
                step=block.step if block else None,
                block=event["block"],
                host=event.get("host"),
                message=event["prompt"],
            )
        elif kind == ev.BLOCK_END and not event.get("continued") and event.get("exit") != 0:
            self.failed.add(event["block"])
        elif kind == ev.BLOCK_SKIP:
            block = next((b for b in self.rb.blocks if b.name == event["block"]), None)
            if block is not None and block.step is not None:
                after = ", after failing" if block.name in self.failed else ""
                self.skipped.setdefault(block.step, []).append(f"{block.name}{after}")
        elif kind == ev.STEP_DONE:
            skipped = self.skipped.pop(event["step"], [])
            message = f"skipped: {'; '.join(skipped)}" if skipped else None
            self.send("step-done", step=event["step"], message=message)
        elif kind == ev.ROLLBACK_START:
            self.send("rollback", message=event["reason"])

    async def finish(self, status: str, message: str) -> None:
        """The run-end message, then up to ``wait`` seconds for what is still in flight."""
        if self.courier is None:
            return
        self.send("run-end", status=status, message=message)
        quick = min(QUIET_WAIT, self.wait)
        settled = await asyncio.wrap_future(self.courier.settled(quick))
        if not settled and self.wait > quick:
            self._flush()
            count = len(self.unsettled)
            self.log.emit(
                ev.NOTE,
                text=f"waiting up to {self.wait - quick:g}s more for {count} notification"
                f"{'s' * (count != 1)} to be delivered",
                by="runbook",
            )
        # A Ctrl-C here cancels only this wait; abandon() then ends the courier at once.
        await asyncio.shield(asyncio.wrap_future(self.courier.drain(self.wait - quick)))
        self.courier.close(0)  # the thread has stopped or is about to: join it
        self._flush()

    def abandon(self) -> None:
        """The run is stopping now (Ctrl-C): record what was not delivered, wait for nothing."""
        if self.courier is not None:
            self.courier.close(0)
            self._flush()

    def _arrived(self, attempt: Attempt) -> None:
        """In the courier's thread: hand the attempt to the run's loop to be recorded."""
        with self._lock:
            self._inbox.append(attempt)
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the run's loop is gone: abandon() flushes
                self._loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        s = self.log
        while True:
            with self._lock:
                if not self._inbox:
                    return
                a = self._inbox.popleft()
            if a.result in FINAL:
                self.unsettled.discard((a.hook, a.message))
            if s.writer.closed or s.state.result is not None:
                continue
            s.emit(
                ev.NOTIFY,
                hook=a.hook,
                to=a.to,
                message=a.message,
                event=a.event,
                attempt=a.attempt,
                result=a.result,
                status=a.status,
                error=a.error,
                seconds=round(a.seconds, 3),
            )


def _text(value: Any) -> Any:
    """Strings made UTF-8: a path that is not (``dir\\xff``) is shown with its bytes escaped."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return {k: _text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_text(v) for v in value]
    return value
