"""One writer per run: an exclusive lock on the run directory while a run is alive.

``flock`` on ``run.lock`` in the run directory, taken before anything of the run is read
or written and held until the run has recorded its end. The kernel frees it when the
holder's process dies however it dies (SIGKILL, a crash, a reboot), so a stale lock needs
no cleanup and never blocks a resume. The file says who holds it (pid, user, host, since),
for the message a second process gets. The descriptor is close-on-exec: the blocks a run
starts never hold its lock.

The limit: ``flock`` is advisory and local to one machine (on NFS it may not be honoured
across clients); it keeps out ``runbook`` processes, not an editor.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LOCK = "run.lock"


class RunBusy(Exception):
    """Another live process holds the run's lock; the message names it."""


class RunLock:
    """The held lock on a run directory; ``release`` (or the process ending) frees it."""

    def __init__(self, directory: Path, user: str) -> None:
        path = directory / LOCK
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        self.fd: int | None = os.open(path, flags, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(self.fd)
            self.release()
            raise RunBusy(f"{directory}: the run is live in another process ({holder})") from None
        except BaseException:
            self.release()
            raise
        since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        info = {"pid": os.getpid(), "user": user, "host": socket.gethostname(), "since": since}
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, (json.dumps(info) + "\n").encode(), 0)

    @contextlib.contextmanager
    def released_on_error(self) -> Iterator[RunLock]:
        """Hold the lock through what follows; an exception there releases it (the run
        never started), success hands it on to whoever keeps the lock (the session)."""
        try:
            yield self
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)  # closing the only descriptor frees the flock
            self.fd = None


def _holder(fd: int) -> str:
    """Who holds the lock, as its file says (written just after it was taken)."""
    try:
        info: Any = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or "pid" not in info:
        return "it has not said who it is yet"
    return (
        f"pid {info.get('pid')}, user {info.get('user')} on {info.get('host')},"
        f" since {info.get('since')}"
    )
