"""Signatures of the transcript's head, made and checked with OpenSSH's ``ssh-keygen -Y``.

The hash chain proves order and continuity, but whoever can write the file can also
recompute it. A signature of the chain's head (``seq`` and the SHA-256 of that line, which
chains every line before it, across resumed files too) made with the operator's SSH key
cannot be recomputed without that key. Signatures sit beside each transcript file, in
``<file>.sig``: one JSON line per signature (``seq``, ``sha256``, ``key``, ``signature``).

Signing uses ``ssh-keygen -Y sign -n runbook``, as git does with SSH keys: the key is a
private key file, or a public key whose private half is in the ssh-agent. It runs in a
thread beside the run, signing the newest head it was given (heads that arrive while one is
being signed are folded into the next), so a rollout never waits for it; the run's last
head is signed before the transcript is closed. Checking uses ``ssh-keygen -Y
find-principals`` and ``-Y verify`` against an ``allowed_signers`` file.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbook.record.transcript import open_exclusive

NAMESPACE = "runbook"
SUFFIX = ".sig"
_TIMEOUT = 60.0
_KEY = re.compile(r"with (\S+) key (SHA256:\S+)")


class SigningError(Exception):
    """A signature cannot be made (the key, the agent, ssh-keygen)."""


def head_message(run_id: str, seq: int, sha256: str) -> bytes:
    """What is signed: the run and its chain's head at line ``seq``."""
    return f"runbook transcript head\nrun {run_id}\nseq {seq}\nsha256 {sha256}\n".encode()


def sig_path(transcript: Path) -> Path:
    return transcript.with_name(transcript.name + SUFFIX)


@functools.cache
def _keygen() -> str:
    import shutil  # with tempfile, only to sign: a run without a key does not load them

    found = shutil.which("ssh-keygen")
    if found is None:
        raise SigningError("ssh-keygen (OpenSSH) is not installed")
    return found


def _run(args: list[str], data: bytes) -> subprocess.CompletedProcess[bytes]:
    # A session of its own: no controlling terminal, so a key with a passphrase fails
    # instead of prompting over the console's screen.
    try:
        return subprocess.run(
            [_keygen(), *args],
            input=data,
            capture_output=True,
            timeout=_TIMEOUT,
            start_new_session=True,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SigningError(f"ssh-keygen: {e}") from None


def _why(done: subprocess.CompletedProcess[bytes]) -> str:
    lines = [
        line
        for line in done.stderr.decode(errors="replace").splitlines()
        if line.strip() and not line.startswith("Signing data on standard input")
    ]
    return lines[-1] if lines else f"ssh-keygen exited {done.returncode}"


def sign(key: Path, message: bytes) -> str:
    """The armored SSH signature of ``message`` by ``key`` (namespace ``runbook``)."""
    done = _run(["-Y", "sign", "-f", str(key), "-n", NAMESPACE], message)
    text = done.stdout.decode(errors="replace")
    if done.returncode != 0 or "BEGIN SSH SIGNATURE" not in text:
        why = _why(done)
        if "passphrase" in why.lower() or "incorrect" in why.lower():
            why += " (a key with a passphrase must be in the ssh-agent: `ssh-add KEY`)"
        raise SigningError(why)
    return text


def key_of(signature: str, message: bytes) -> str:
    """``ED25519 SHA256:…``: the key a signature was made with, checked against nothing."""
    with _signature_file(signature) as path:
        done = _run(["-Y", "check-novalidate", "-n", NAMESPACE, "-s", str(path)], message)
    found = _KEY.search(done.stdout.decode(errors="replace"))
    if done.returncode != 0 or found is None:
        raise SigningError(f"the signature does not check: {_why(done)}")
    return f"{found.group(1)} {found.group(2)}"


def probe(key: Path) -> str:
    """Sign once before the run starts: a key that cannot sign refuses the run, not a line."""
    if not key.exists():
        raise SigningError(f"{key}: no such key file")
    message = head_message("probe", 0, "0" * 64)
    return key_of(sign(key, message), message)


@contextlib.contextmanager
def _signature_file(signature: str) -> Iterator[Path]:
    """A signature in a private temporary file, for ``ssh-keygen -s``; removed after."""
    import tempfile

    fd, name = tempfile.mkstemp(prefix="runbook-", suffix=".sig")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(signature)
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


@dataclass(frozen=True)
class SigningKey:
    """A key that signed a probe just now: what ``--signing-key`` names, checked."""

    path: Path
    key_id: str
    """``ED25519 SHA256:…``, recorded in ``run.start`` and beside each signature."""

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        return cls(path, probe(path))

    def signer(self, transcript: Path, run_id: str) -> Signer:
        return Signer(self.path, self.key_id, transcript, run_id)


class Signer:
    """Signs one transcript file's heads into ``<file>.sig``, in a thread beside the run."""

    def __init__(self, key: Path, key_id: str, transcript: Path, run_id: str) -> None:
        self.key = key
        self.key_id = key_id
        self.run_id = run_id
        self.path = sig_path(transcript)
        self._fd = open_exclusive(self.path)
        self._cond = threading.Condition()
        self._wanted: tuple[int, str] | None = None
        self.signed: tuple[int, str] | None = None
        """``seq`` and hash of the newest head signed and on disk."""
        self.failed: SigningError | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._work, name="runbook-signer", daemon=True)
        self._thread.start()

    def request(self, seq: int, sha256: str) -> None:
        """Sign this head (or a newer one) soon; returns at once."""
        with self._cond:
            self._wanted = (seq, sha256)
            self._cond.notify()

    def wait(self, seq: int) -> SigningError | None:
        """Block until a head at or past ``seq`` is signed (or signing failed)."""
        with self._cond:
            while self.failed is None and (self.signed is None or self.signed[0] < seq):
                self._cond.wait()
        return self.failed

    def close(self, seq: int, sha256: str) -> None:
        """Sign the final head, wait for it, stop the thread; ``failed`` says if it could not."""
        with self._cond:
            self._wanted = (seq, sha256)
            self._closing = True
            self._cond.notify()
        self._thread.join()
        os.close(self._fd)

    def _work(self) -> None:
        while True:
            with self._cond:
                while self._wanted in (None, self.signed) and not self._closing:
                    self._cond.wait()
                wanted, closing = self._wanted, self._closing
            if wanted is not None and wanted != self.signed and self.failed is None:
                try:
                    self._sign(*wanted)
                except SigningError as e:
                    self.failed = e
            with self._cond:
                self._cond.notify_all()  # wait() callers
                if closing and (self._wanted == self.signed or self.failed is not None):
                    return

    def _sign(self, seq: int, sha256: str) -> None:
        signature = sign(self.key, head_message(self.run_id, seq, sha256))
        record = {"seq": seq, "sha256": sha256, "key": self.key_id, "signature": signature}
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        try:
            os.write(self._fd, line)
            os.fsync(self._fd)
        except OSError as e:
            raise SigningError(f"cannot write {self.path}: {e.strerror or e}") from None
        self.signed = (seq, sha256)


# ---------------------------------------------------------------- checking


@dataclass(frozen=True)
class Signature:
    seq: int
    sha256: str
    key: str
    signature: str
    line: int
    """Its line in the ``.sig`` file."""


def read_signatures(path: Path) -> Iterator[Signature | str]:
    """Each signature of a ``.sig`` file, or a problem (text) for a line that is not one."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                record: Any = json.loads(raw)
                yield Signature(
                    int(record["seq"]),
                    str(record["sha256"]),
                    str(record.get("key", "?")),
                    str(record["signature"]),
                    number,
                )
            except (ValueError, KeyError, TypeError, OverflowError, RecursionError):
                yield f"{path.name}:{number}: not a signature record"


def principals(
    signature: str, message: bytes, allowed: Path, when: str | None = None
) -> tuple[str, str]:
    """Who made ``signature`` of ``message``, per ``allowed`` (and with which key), or raise.

    ``when``, the signed line's time, is passed as ``verify-time``: a key later retired in the
    ``allowed_signers`` file (``valid-before``) still checks what it signed while valid.
    """
    with _signature_file(signature) as path:
        found = _run(["-Y", "find-principals", "-s", str(path), "-f", str(allowed)], b"")
        names = found.stdout.decode(errors="replace").split()
        if found.returncode != 0 or not names:
            raise SigningError(f"made by a key {allowed} does not list ({_why(found)})")
        check = ["-Y", "verify", "-f", str(allowed), "-I", names[0], "-n", NAMESPACE]
        if when:  # 2026-12-03T12:07:08.123456Z -> 20261203120708Z
            check.append("-Overify-time=" + re.sub(r"\D", "", when[:19]) + "Z")
        done = _run([*check, "-s", str(path)], message)
    out = done.stdout.decode(errors="replace")
    if done.returncode != 0 or not out.startswith("Good"):
        raise SigningError(_why(done) or "the signature does not verify")
    key = _KEY.search(out)
    return names[0], f"{key.group(1)} {key.group(2)}" if key else "?"
