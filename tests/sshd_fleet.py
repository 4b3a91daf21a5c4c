"""A fleet of real OpenSSH sshd processes on loopback, for the SSH tests.

One sshd per host on 127.0.0.2, 127.0.0.3, ... (each its own address, free port and
generated host key), a generated client key, a known_hosts file and an OpenSSH client
config that names every host (``host1`` ...). ``stop`` kills exactly the processes that
``start`` started.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
PLAIN_USER = "runbook-test"
"""A non-root account every host also accepts (the tests' key), created if missing."""


@dataclass
class FleetHost:
    alias: str
    address: str
    port: int
    host_key: Path
    process: subprocess.Popen[bytes] | None = None


@dataclass
class Fleet:
    root: Path
    user: str
    client_key: Path
    known_hosts: Path
    ssh_config: Path
    hosts: list[FleetHost] = field(default_factory=list)

    def stop(self) -> None:
        for host in self.hosts:
            proc = host.process
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def available() -> str | None:
    """Why the fleet cannot start here, or ``None``."""
    if not os.path.exists(SSHD):
        return "sshd is not installed (apt-get install openssh-server)"
    if os.geteuid() != 0:
        return "the sshd fleet needs root (CI runs as root)"
    return None


def _free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
    )


def _authorize_plain_user(public_key: str) -> None:
    """The plain user's sshd reads keys as that user: they go in its own home."""
    home = Path(
        subprocess.run(
            ["sh", "-c", f"getent passwd {PLAIN_USER} | cut -d: -f6"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    keys = ssh_dir / "authorized_keys"
    keys.write_text(public_key)
    keys.chmod(0o600)
    shutil.chown(ssh_dir, PLAIN_USER, PLAIN_USER)
    shutil.chown(keys, PLAIN_USER, PLAIN_USER)


def start(root: Path, count: int, *, extra_config: str = "", plain_user: bool = True) -> Fleet:
    """``count`` hosts under ``root``. ``extra_config`` is appended to every sshd_config
    (``ForceCommand ...``, say). ``plain_user=False`` leaves the plain user's account and
    authorized_keys alone, so a second fleet does not replace the session fleet's key."""
    user = getpass.getuser()
    if plain_user:
        if subprocess.run(["id", PLAIN_USER], capture_output=True).returncode != 0:
            subprocess.run(
                ["useradd", "--create-home", "--shell", "/bin/sh", PLAIN_USER],
                check=True,
                capture_output=True,
            )
        # No password, but not locked: sshd (without PAM) refuses locked accounts even for keys.
        subprocess.run(["usermod", "--password", "*", PLAIN_USER], check=True, capture_output=True)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    client_key = root / "client_key"
    _keygen(client_key, "runbook-tests-client")
    authorized = root / "authorized_keys"
    authorized.write_bytes(client_key.with_suffix(".pub").read_bytes())
    authorized.chmod(0o600)
    if plain_user:
        _authorize_plain_user(client_key.with_suffix(".pub").read_text())
    fleet = Fleet(root, user, client_key, root / "known_hosts", root / "ssh_config")
    config, known = [], []
    for i in range(count):
        address = f"127.0.0.{i + 2}"
        host = FleetHost(f"host{i + 1}", address, _free_port(address), root / f"host{i + 1}_key")
        _keygen(host.host_key, f"runbook-tests-{host.alias}")
        sshd_config = root / f"sshd_{host.alias}.conf"
        sshd_config.write_text(
            f"ListenAddress {address}:{host.port}\n"
            f"HostKey {host.host_key}\n"
            f"PidFile {root / f'sshd_{host.alias}.pid'}\n"
            f"AuthorizedKeysFile {authorized} .ssh/authorized_keys\n"
            f"AllowUsers {user} {PLAIN_USER}\n"
            "PermitRootLogin prohibit-password\n"
            "AuthenticationMethods publickey\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            "StrictModes no\nUseDNS no\nMaxStartups 200\nMaxSessions 200\n"
            "PrintMotd no\nPrintLastLog no\nX11Forwarding no\nAcceptEnv NOTHING\n"
            f"{extra_config}"
        )
        host.process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(sshd_config)],
            stdout=subprocess.DEVNULL,
            stderr=open(root / f"sshd_{host.alias}.log", "wb"),  # noqa: SIM115
        )
        fleet.hosts.append(host)
        public = host.host_key.with_suffix(".pub").read_text().split()
        known.append(f"[{address}]:{host.port} {public[0]} {public[1]}\n")
        config.append(
            f"Host {host.alias}\n  HostName {address}\n  Port {host.port}\n  User {user}\n"
            f"  IdentityFile {client_key}\n  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {fleet.known_hosts}\n  ConnectTimeout 5\n\n"
        )
    fleet.known_hosts.write_text("".join(known))
    fleet.ssh_config.write_text("".join(config))
    deadline = time.monotonic() + 30
    for host in fleet.hosts:
        while True:
            try:
                socket.create_connection((host.address, host.port), timeout=1).close()
                break
            except OSError:
                assert host.process is not None
                if host.process.poll() is not None or time.monotonic() > deadline:
                    fleet.stop()
                    log = (root / f"sshd_{host.alias}.log").read_text(errors="replace")
                    raise RuntimeError(f"sshd for {host.alias} did not start:\n{log}") from None
                time.sleep(0.05)
    return fleet
