"""The transcript writer's helper thread: the fsyncs of output groups.

An fsync holds no lock of ours and releases the GIL for as long as the disk takes, so on
its own thread it overlaps the event loop's reading, masking and escaping of the next
chunk of output (``bench/transcript_cost.py``: 200 MB of ``yes`` 0.76 s -> 0.68 s), and a
console on that loop does not freeze for it. What is on disk is never decided here: the
writer still writes each line itself, with one ``write``, before it goes on, so a ``kill
-9`` of runbook loses nothing that was recorded or shown; a durable event's fsync stays on
the writer's thread and is done when ``append`` returns. (Hashing here too was measured
and is slower: SHA-256 releases the GIL, but each line's hand-over needs it back while the
loop holds it in long C calls, and the next line must wait for the hash.)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import queue

Synced = Callable[[int, str], None]
Job = tuple[int, int, str, Synced]
"""The file, and the ``seq`` and hash its last line had when the fsync was asked."""


class Offload:
    """One thread, started at the first job, running fsyncs in the order they were asked."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Job | None] | None = None
        self._thread: threading.Thread | None = None
        self.error: OSError | None = None
        """The first fsync that failed here; the writer raises it at its next event."""

    def fsync(self, fd: int, seq: int, head: str, synced: Synced) -> None:
        """fsync ``fd`` here, then ``synced(seq, head)``: the lines up to ``seq`` are on disk."""
        if self._jobs is None:  # most runs never get here: no import, no thread
            import queue

            self._jobs = queue.SimpleQueue()
            self._thread = threading.Thread(
                target=self._work, args=(self._jobs,), name="runbook-fsync", daemon=True
            )
            self._thread.start()
        self._jobs.put((fd, seq, head, synced))

    def close(self) -> None:
        """Finish every fsync asked so far, then stop: the file may be closed after this."""
        if self._jobs is not None and self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._jobs = self._thread = None

    def _work(self, jobs: queue.SimpleQueue[Job | None]) -> None:
        while (job := jobs.get()) is not None:
            fd, seq, head, synced = job
            try:
                os.fsync(fd)
            except OSError as e:
                self.error = self.error or e
                continue
            synced(seq, head)
