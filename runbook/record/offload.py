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
    """One thread, started at the first job, fsyncing one group at a time.

    One at a time: a group waits for the one before it (a slow disk slows the run instead
    of piling up groups that a power cut would take with it), and the writer waits for the
    helper to be idle before its own fsync. Linux reports a writeback error to one fsync
    of a file only, and the next one returns 0 on lost data: two fsyncs in flight at once
    could each hear "fine" for the other's failure. After a failure, nothing is ever
    reported on disk again.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Job | None] | None = None
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition()
        self._busy = False
        self.error: OSError | None = None
        """The first fsync that failed here; the writer raises it at its next event."""

    def fsync(self, fd: int, seq: int, head: str, synced: Synced) -> None:
        """fsync ``fd`` here, then ``synced(seq, head)``: the lines up to ``seq`` are on disk."""
        self.drain()
        if self.error is not None:
            return
        if self._jobs is None:  # most runs never get here: no import, no thread
            import queue

            self._jobs = queue.SimpleQueue()
            self._thread = threading.Thread(
                target=self._work, args=(self._jobs,), name="runbook-fsync", daemon=True
            )
            self._thread.start()
        with self._idle:
            self._busy = True
        self._jobs.put((fd, seq, head, synced))

    def drain(self) -> None:
        """Wait until no fsync of ours is running (before the writer fsyncs, or closes)."""
        with self._idle:
            while self._busy:
                self._idle.wait()

    def close(self) -> None:
        """Finish the fsync asked, then stop: the file may be closed after this."""
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
            else:
                if self.error is None:
                    synced(seq, head)
            finally:
                with self._idle:
                    self._busy = False
                    self._idle.notify_all()
