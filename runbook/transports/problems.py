"""Why a host could not be used: raised by the SSH transport, handled by the engine.

Apart from the transport so that the engine can name them without importing asyncssh: a
runbook that runs only locally never loads it.
"""

from __future__ import annotations

from typing import Any


class SSHProblem(Exception):
    """A host could not be reached, trusted or logged into; the message says which and why."""

    def __init__(self, host: str, kind: str, message: str) -> None:
        super().__init__(f"{host}: {message}")
        self.host = host
        self.kind = kind
        self.reason = message
        """Without the host's name: what a record that names the host already says."""


class HostKeyRefused(SSHProblem):
    """The host's key is not in known_hosts (``unknown``), differs (``changed``) or is revoked."""

    def __init__(
        self, host: str, kind: str, seen: str, expected: list[str], key: Any = None
    ) -> None:
        if kind == "unknown":
            message = f"host key {seen} is not in known_hosts (unknown host)"
        elif kind == "revoked":
            message = f"host key {seen} is revoked in known_hosts: refused"
        else:
            message = (
                f"HOST KEY CHANGED: the host presents {seen}, known_hosts expects"
                f" {', '.join(expected)}. Refused: this may be an attack or a rebuilt host"
            )
        super().__init__(host, f"host-key-{kind}", message)
        self.seen = seen
        self.expected = expected
        self.key = key
        """The key the host presented (an ``asyncssh.SSHKey``), for the operator to accept."""
