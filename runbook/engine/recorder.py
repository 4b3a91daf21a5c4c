"""Turning a block attempt's output into transcript events: masked, offset-numbered, text
when it is UTF-8 (a character split across reads is kept whole), base64 otherwise.

Bytes the masker holds back (they could begin a secret) are released after ``QUIET``
seconds without new output on their stream, so a block that prints and then waits is seen
(and recorded, should the runner be killed) while it waits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from runbook.record.transcript import TranscriptError

if TYPE_CHECKING:
    from runbook.engine.journal import Journal

# A captured value travels in the environment, where one string may not exceed 128 KiB.
CAPTURE_LIMIT = 64 * 1024
QUIET = 0.05
"""Seconds without output after which the bytes held back on a stream are released."""


class Recorder:
    """Turns one block attempt's output into masked, offset-numbered ``output`` events."""

    def __init__(
        self,
        journal: Journal,
        block: str,
        attempt: int,
        *,
        capture: bool,
        where: Mapping[str, Any] | None = None,
    ) -> None:
        self.journal = journal
        self.block = block
        self.attempt = attempt
        self.where = dict(where or {})
        """Fields every output event carries besides the block: ``host``, ``bake``."""
        self.masks = {s: journal.masker.stream() for s in ("stdout", "stderr")}
        self.pending = {"stdout": b"", "stderr": b""}
        self.offsets = {"stdout": 0, "stderr": 0}
        self.raw_bytes = {"stdout": 0, "stderr": 0}
        self.captured: bytearray | None = bytearray() if capture else None
        try:  # the transports call it from the event loop; without one, no quiet release
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._timers: dict[str, asyncio.TimerHandle | None] = {"stdout": None, "stderr": None}
        self._last = {"stdout": 0.0, "stderr": 0.0}
        self._finished = False

    def __call__(self, stream: str, chunk: bytes) -> None:
        self.raw_bytes[stream] += len(chunk)
        if self.captured is not None and stream == "stdout":
            self.captured += chunk[: max(0, CAPTURE_LIMIT + 1 - len(self.captured))]
        mask = self.masks[stream]
        self._record(stream, mask.feed(chunk), final=False)
        if self._loop is not None and mask.holding:
            self._last[stream] = self._loop.time()
            if self._timers[stream] is None:
                self._timers[stream] = self._loop.call_later(QUIET, self._quiet, stream)

    def error(self, message: str) -> None:
        self._record("stderr", message.encode(), final=True)

    def finish(self) -> None:
        self.abandon()
        for stream, mask in self.masks.items():
            self._record(stream, mask.flush(), final=True)

    def abandon(self) -> None:
        """No more output from this attempt: the quiet timers must never write later
        (an attempt cancelled with its batch leaves what was held unrecorded)."""
        self._finished = True
        for stream, timer in self._timers.items():
            if timer is not None:
                timer.cancel()
            self._timers[stream] = None

    def _quiet(self, stream: str) -> None:
        """The timer: release what is held once the stream has been quiet for ``QUIET``
        (a timer re-armed on every chunk would cost a handle per chunk)."""
        self._timers[stream] = None
        if self._finished or self.journal.closed or self._loop is None:
            return  # nothing may be written after the run's end
        idle = self._loop.time() - self._last[stream]
        if idle < QUIET:
            self._timers[stream] = self._loop.call_later(QUIET - idle, self._quiet, stream)
            return
        with contextlib.suppress(TranscriptError):  # kept by the writer: raised at next write
            self._record(stream, self.masks[stream].flush(), final=False)

    def _record(self, stream: str, data: bytes, *, final: bool) -> None:
        data = self.pending[stream] + data
        cut = len(data) if final else _utf8_boundary(data)
        data, self.pending[stream] = data[:cut], data[cut:]
        if not data:
            return
        self.journal.output(
            data,
            block=self.block,
            attempt=self.attempt,
            **self.where,
            stream=stream,
            offset=self.offsets[stream],
            size=len(data),
        )
        self.offsets[stream] += len(data)


def _utf8_boundary(data: bytes) -> int:
    """Where to cut so a UTF-8 character split across reads is not split across events."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # a lead byte (or ASCII)
            need = 2 if byte >= 0xC0 else 1
            need = 3 if byte >= 0xE0 else need
            need = 4 if byte >= 0xF0 else need
            return len(data) - back if need > back else len(data)
    return len(data)
