"""The files of the demo fleet: each host's sandbox, the client key, known_hosts, ssh_config.

Written the way an operator's own setup would be, so the run takes the same path as
against real hosts: OpenSSH config aliases, a key file, host keys pinned in known_hosts.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import asyncssh

SEEDED_RELEASE = "v2.4.0"
"""The release every host serves when the demo starts."""
FAILING_HOST = "web3"
"""The host whose health check fails: the demo's reason to roll back."""

HEALTHCHECK = """\
#!/bin/sh
# Stands in for `curl -fsS http://127.0.0.1:8080/healthz` on a demo host.
cd "$HOME" || exit 1
release=$(cat current/VERSION 2>/dev/null) || release=unknown
if [ -e var/db-pool-exhausted ]; then
    echo "GET /healthz -> 503 Service Unavailable (db pool exhausted)"
    exit 1
fi
echo "GET /healthz -> 200 OK (shop-web $release)"
"""


class DemoFleetError(Exception):
    """The demo fleet could not start; the message says why, for the operator."""


def seed_sandbox(sandbox: Path, host: str) -> None:
    """A fresh host: the seeded release live behind ``current``, and ``bin/healthcheck``.

    Any earlier state of this sandbox is removed, so every demo starts the same way.
    """
    if sandbox.is_symlink() or sandbox.is_file():
        sandbox.unlink()
    elif sandbox.exists():
        shutil.rmtree(sandbox)
    release = sandbox / "releases" / SEEDED_RELEASE
    release.mkdir(parents=True)
    (release / "VERSION").write_text(f"{SEEDED_RELEASE}\n")
    (sandbox / "current").symlink_to(f"releases/{SEEDED_RELEASE}")
    (sandbox / "bin").mkdir()
    check = sandbox / "bin" / "healthcheck"
    check.write_text(HEALTHCHECK)
    check.chmod(0o755)
    (sandbox / "var").mkdir()
    if host == FAILING_HOST:
        (sandbox / "var" / "db-pool-exhausted").write_text("64/64 connections in use\n")


def write_private(path: Path, data: bytes) -> None:
    """A file only its owner can read (a private key), whatever was there before."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def known_hosts_text(host_keys: Mapping[int, asyncssh.SSHKey]) -> str:
    """One ``[127.0.0.1]:PORT KEY`` line per port: how OpenSSH pins a non-default port."""
    return "".join(
        f"[127.0.0.1]:{port} {key.export_public_key().decode().strip()}\n"
        for port, key in host_keys.items()
    )


def ssh_config_text(ports: Mapping[str, int], user: str, identity: Path, known_hosts: Path) -> str:
    """One ``Host`` block per host; readable by asyncssh and by ``ssh -F`` alike."""
    blocks = [
        "# The demo fleet: SSH servers on loopback inside `runbook demo`.\n"
        f"# Try: ssh -F {_config_path(identity.parent / 'ssh_config')} web1 ls\n"
    ]
    for name, port in ports.items():
        blocks.append(
            f"Host {name}\n"
            "  HostName 127.0.0.1\n"
            f"  Port {port}\n"
            f"  User {user}\n"
            f"  IdentityFile {_config_path(identity)}\n"
            "  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {_config_path(known_hosts)}\n"
            "  StrictHostKeyChecking yes\n"
            "  ConnectTimeout 5\n"
        )
    return "\n".join(blocks)


def _config_path(path: Path) -> str:
    """A path as an ssh_config argument: quoted, ``%`` escaped (both expand tokens)."""
    text = str(path)
    if any(c in text for c in '"\\\n\r') or "${" in text:
        raise DemoFleetError(f"{text}: this path cannot be written to an ssh_config")
    return '"' + text.replace("%", "%%") + '"'
