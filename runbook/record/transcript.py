"""The audit transcript: append-only, hash-chained JSON Lines, one run per directory.

Every line is one event with ``seq`` (contiguous from 1), UTC and monotonic time, the run
id, its ``type`` and ``prev``: the SHA-256 of the previous line's bytes (its newline
included; 64 zeros for the first line of a new run, the last valid hash of the previous
file for a resumed one). Changing, removing, reordering or inserting any line breaks the
chain at that line, which ``chain.verify`` reports (reading back lives there).

Lines reach the file with one ``write`` each, so a crash of the runner loses nothing that
was emitted; ``durable`` events (decisions, block starts, ends) are also fsynced before the
caller goes on, output is fsynced in groups. Any write or fsync error raises
:class:`TranscriptError`, and the session stops before running anything else.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from runbook.record.events import OUTPUT
from runbook.record.offload import Offload


class HeadSigner(Protocol):
    """What signs the head at each fsync (``signing.Signer``); kept apart to avoid a cycle."""

    @property
    def failed(self) -> Exception | None: ...

    def request(self, seq: int, sha256: str) -> None: ...

    def wait(self, seq: int) -> Exception | None: ...

    def close(self, seq: int, sha256: str) -> None: ...


GENESIS = "0" * 64
TRANSCRIPT = "transcript.jsonl"
SNAPSHOT = "runbook.md"
FSYNC_BYTES = 8 * 1024 * 1024
FSYNC_SECONDS = 1.0
# The bytes the fast path takes: printable ASCII, newline, tab and carriage return (the
# rest json.dumps escapes as \uXXXX, or is not ASCII). Deleting them and finding nothing
# left is one C pass that writes almost nothing: twice as fast as deleting the others and
# comparing lengths.
_PLAIN = bytes([*range(0x20, 0x7F), *b"\n\t\r"])


class CheckedOutput(dict[str, Any]):
    """An ``output`` event whose bytes the writer found to be printable ASCII, newline, tab
    and carriage return only (its fast path), with those bytes as ``raw``. A display may
    take them as checked: the plain terminal then only looks for carriage returns, and
    writes ``raw`` as it is instead of encoding ``text`` again. A copy of the event is a
    plain ``dict``, which a display checks in full."""

    __slots__ = ("raw",)

    def __init__(self, event: dict[str, Any], raw: bytes) -> None:
        super().__init__(event)
        self.raw = raw


class TranscriptError(Exception):
    """The transcript cannot be written: the run must stop before the next command."""


def new_run_id() -> str:
    """Sortable and unique: UTC time plus randomness (``20261126T204900Z-3f9a1c``)."""
    # os.urandom is what secrets.token_hex reads; importing secrets costs a run 2 ms.
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + os.urandom(3).hex()


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def make_run_dir(runs_dir: Path, run_id: str) -> Path:
    """``runs_dir/run_id``, created 0700; refuses a symlinked or pre-existing directory."""
    try:
        runs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = runs_dir / run_id
        os.mkdir(path, 0o700)
        os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask
    except OSError as e:
        raise TranscriptError(f"cannot create the run directory under {runs_dir}: {e}") from e
    return path


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` 0600 with O_EXCL (never follows or overwrites anything) and write it."""
    fd = open_exclusive(path)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    except OSError as e:
        raise TranscriptError(f"cannot write {path}: {e}") from e
    finally:
        os.close(fd)


def open_exclusive(path: Path) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_APPEND | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
        os.fchmod(fd, 0o600)
    except OSError as e:
        raise TranscriptError(f"cannot create {path}: {e}") from e
    return fd


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class TranscriptWriter:
    """Appends events to a new transcript file; the single place lines are made."""

    def __init__(self, path: Path, run_id: str, *, prev: str = GENESIS, first_seq: int = 1) -> None:
        self.path = path
        self.run_id = run_id
        self.prev = prev
        self.seq = first_seq - 1
        self._fd: int | None = open_exclusive(path)
        self._unsynced = self._grouped = 0
        self._last_sync = time.monotonic()
        self._offload = Offload()
        self.failed: TranscriptError | None = None
        self.synced = (self.seq, prev)
        """``seq`` and hash of the last line known to be on disk (fsynced)."""
        self._synced_lock = threading.Lock()
        self.signer: HeadSigner | None = None
        """Signs the head at every fsync (``signing.py``); its failure stops the run."""

    def append(self, type_: str, durable: bool = False, **fields: Any) -> dict[str, Any]:
        """Write one event; ``durable`` ones are on disk (fsynced) when this returns."""
        event = self._head(type_, fields)
        event["prev"] = self.prev
        self._commit((json.dumps(event, separators=(",", ":")) + "\n").encode("ascii"), durable)
        return event

    def append_output(self, data: bytes, **fields: Any) -> dict[str, Any]:
        """An ``output`` event carrying ``data`` as ``text`` (UTF-8) or ``b64`` (anything else).

        Printable ASCII, nearly all command output, is escaped at the byte level: the
        line is the same as ``json.dumps`` would make, at a fraction of the cost.
        """
        if data.translate(None, _PLAIN):
            try:
                return self.append(OUTPUT, **fields, text=data.decode("utf-8"))
            except UnicodeDecodeError:
                return self.append(OUTPUT, **fields, b64=base64.b64encode(data).decode())
        event = self._head(OUTPUT, fields)
        escaped = (
            data.replace(b"\\", b"\\\\")
            .replace(b'"', b'\\"')
            .replace(b"\n", b"\\n")
            .replace(b"\t", b"\\t")
            .replace(b"\r", b"\\r")
        )
        head = json.dumps(event, separators=(",", ":"))[:-1].encode("ascii")
        prev = self.prev.encode("ascii")
        line = b"".join((head, b',"text":"', escaped, b'","prev":"', prev, b'"}\n'))
        # A str subclass made from bytes costs 20 times what decoding to a str does.
        event["text"] = data.decode("ascii")
        event["prev"] = self.prev
        self._commit(line, durable=False)
        return CheckedOutput(event, data)

    def _head(self, type_: str, fields: dict[str, Any]) -> dict[str, Any]:
        if self.failed is None and self.signer is not None and self.signer.failed is not None:
            self.unsigned(self.signer.failed)
        if self.failed is None and self._offload.error is not None:
            self._fail(self._offload.error)
        if self.failed is not None:
            raise self.failed
        self.seq += 1
        return {
            "seq": self.seq,
            "time": utc_now(),
            "mono": round(time.monotonic(), 6),
            "run": self.run_id,
            "type": type_,
            **fields,
        }

    def _commit(self, line: bytes, durable: bool) -> None:
        assert self._fd is not None, "transcript is closed"
        try:
            _write_all(self._fd, line)
        except OSError as e:
            self._fail(e)
        self.prev = hashlib.sha256(line).hexdigest()  # the file's last line, synced or not
        self._unsynced += len(line)
        self._grouped += len(line)
        if durable:
            self.sync()
        elif self._grouped >= FSYNC_BYTES or time.monotonic() - self._last_sync >= FSYNC_SECONDS:
            # A group of output: fsynced beside the loop, which goes on reading. Until
            # the next sync here, ``_unsynced`` still counts it: a durable sync never
            # takes a group in flight for one on disk.
            self._offload.fsync(self._fd, self.seq, self.prev, self._on_disk)
            self._grouped = 0
            self._last_sync = time.monotonic()

    def sync(self) -> None:
        """fsync what was written so far, here and now (durable events, closing)."""
        self._offload.drain()  # never two fsyncs at once: see Offload
        if self._offload.error is not None and self.failed is None:
            self._fail(self._offload.error)
        if self.failed is not None:
            raise self.failed  # a later fsync's 0 would prove nothing
        if self._fd is None or self._unsynced == 0:
            return
        try:
            os.fsync(self._fd)
        except OSError as e:
            self._fail(e)
        self._unsynced = self._grouped = 0
        self._last_sync = time.monotonic()
        self._on_disk(self.seq, self.prev)

    def _on_disk(self, seq: int, sha256: str) -> None:
        """Lines up to ``seq`` are on disk: the newest such head is signed (either thread)."""
        with self._synced_lock:  # a late group fsync never moves the head back
            if seq <= self.synced[0] or self.failed is not None or self._offload.error:
                return  # nor forward after a failure: the next fsync's 0 proves nothing
            self.synced = (seq, sha256)
            if self.signer is not None:
                self.signer.request(seq, sha256)

    @property
    def closed(self) -> bool:
        return self._fd is None

    def close(self) -> None:
        if self._fd is None:
            return
        try:
            self._offload.close()  # its fsyncs use the file: they end before it is closed
            if self.failed is None:
                self.sync()
        finally:
            os.close(self._fd)
            self._fd = None
            if self.signer is not None:
                self.signer.close(*self.synced)

    def unsigned(self, why: Exception) -> TranscriptError:
        """Signing failed: like a failed write, nothing more may be recorded or run."""
        self.failed = TranscriptError(
            f"cannot sign the transcript {self.path}: {why}."
            " The run is stopped: nothing more runs without a signed record."
        )
        return self.failed

    def _fail(self, e: OSError) -> None:
        self.failed = TranscriptError(
            f"cannot write the transcript {self.path}: {e.strerror or e}."
            " The run is stopped: nothing more runs without a record."
        )
        raise self.failed
