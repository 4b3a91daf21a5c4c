"""Turning a block attempt's output into transcript events: masked, offset-numbered, text
when it is UTF-8 (a character split across reads is kept whole), base64 otherwise."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runbook.engine.journal import Journal

# A captured value travels in the environment, where one string may not exceed 128 KiB.
CAPTURE_LIMIT = 64 * 1024


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

    def __call__(self, stream: str, chunk: bytes) -> None:
        self.raw_bytes[stream] += len(chunk)
        if self.captured is not None and stream == "stdout":
            self.captured += chunk[: max(0, CAPTURE_LIMIT + 1 - len(self.captured))]
        self._record(stream, self.masks[stream].feed(chunk), final=False)

    def error(self, message: str) -> None:
        self._record("stderr", message.encode(), final=True)

    def finish(self) -> None:
        for stream, mask in self.masks.items():
            self._record(stream, mask.flush(), final=True)

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
