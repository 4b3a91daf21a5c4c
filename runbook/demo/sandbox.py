"""The files of the demo fleet: each host's sandbox, the client key, known_hosts, ssh_config.

Written the way an operator's own setup would be, so the run takes the same path as
against real hosts: OpenSSH config aliases, a key file, host keys pinned in known_hosts.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import asyncssh

SEEDED_RELEASE = "v2.4.0"
"""The release every host serves when the demo starts."""

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


@dataclass(frozen=True)
class Seed:
    """How one host starts: where its app lives, whether it serves, and what it routes."""

    host: str
    app_dir: str = "."
    """The app's directory in the sandbox (``.``: the sandbox itself)."""
    broken: bool = False
    """Its health check fails whatever it runs: the db pool is exhausted."""
    bad_release: str | None = None
    """The release whose health check fails here (it breaks the host once deployed)."""
    serving: bool = True
    """web.service is running (an idle colour's is stopped)."""
    live: str | None = None
    """On a load balancer: the colour that gets the live traffic."""


def seed_sandbox(sandbox: Path, seed: Seed, standins: Mapping[str, str]) -> None:
    """A fresh host: the seeded release live behind ``current``, the site's tools in ``bin/``.

    Any earlier state of this sandbox is removed, so every demo starts the same way.
    ``standins`` maps a tool's name in ``bin/`` to its script.
    """
    if sandbox.is_symlink() or sandbox.is_file():
        sandbox.unlink()
    elif sandbox.exists():
        shutil.rmtree(sandbox)
    sandbox.mkdir(parents=True)
    (sandbox / "bin").mkdir()
    (sandbox / "var").mkdir()
    for name, text in {"healthcheck": HEALTHCHECK, **standins}.items():
        tool = sandbox / "bin" / name
        tool.write_text(text)
        tool.chmod(0o755)
    if seed.live is not None:
        (sandbox / "var" / "router-live").write_text(f"{seed.live}\n")
        return
    app = sandbox / seed.app_dir
    release = app / "releases" / SEEDED_RELEASE
    (release / "bin").mkdir(parents=True)
    (release / "VERSION").write_text(f"{SEEDED_RELEASE}\n")
    web = release / "bin" / "web"
    web.write_text(f'#!/bin/sh\necho "shop-web {SEEDED_RELEASE}"\n')
    web.chmod(0o755)
    (app / "current").symlink_to(f"releases/{SEEDED_RELEASE}")
    (sandbox / "var" / "web.service").write_text("active\n" if seed.serving else "inactive\n")
    (sandbox / "var" / "web.version").write_text(f"{SEEDED_RELEASE}\n")
    if seed.broken:
        (sandbox / "var" / "db-pool-exhausted").write_text("64/64 connections in use\n")
    if seed.bad_release is not None:
        (sandbox / "var" / "bad-release").write_text(f"{seed.bad_release}\n")


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
