"""known_hosts: which files a host's key is checked against, as OpenSSH reads them, and
what they say of a key (for the message that says why a key was refused)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import asyncssh

USER_KNOWN_HOSTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
GLOBAL_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")
"""OpenSSH's defaults for ``UserKnownHostsFile`` and ``GlobalKnownHostsFile``."""


def known_hosts_line(address: str, port: int, key: Any) -> str:
    """The line that trusts ``key`` for ``address`` (and ``port``), as ``ssh`` writes it."""
    pattern = address if port == 22 else f"[{address}]:{port}"
    return f"{pattern} {key.export_public_key().decode().strip()}\n"


def listed(known: Any) -> list[str]:
    """The known_hosts files of an option value: a path, or a list of paths."""
    if isinstance(known, (str, Path)):
        return [str(known)]
    if isinstance(known, (list, tuple)):
        return [str(p) for p in known if isinstance(p, (str, Path))]
    return []


def known_files(known: Any) -> list[str]:
    """The known_hosts files asyncssh checks: the configured ones, else its defaults.

    Classifying a refused key must read the same files asyncssh read, or a changed key
    (trusted in the default file) would look merely unknown and be offered for acceptance.
    """
    paths = listed(known) or [*USER_KNOWN_HOSTS, *GLOBAL_KNOWN_HOSTS]
    return [p for p in (os.path.expanduser(p) for p in paths) if os.path.exists(p)]


def known_hosts_files(config: Any) -> tuple[list[str], list[str]]:
    """The user's and the global known_hosts files a host's config names, as OpenSSH reads
    them: every one of both (asyncssh alone reads the global ones instead of the user's
    defaults when a config names only ``GlobalKnownHostsFile``, and never OpenSSH's global
    defaults), the defaults where the config names none. ``UserKnownHostsFile none`` gets
    the user's defaults: nothing turns checking off."""
    users = config.get("UserKnownHostsFile") or list(USER_KNOWN_HOSTS)
    globals_ = config.get("GlobalKnownHostsFile")
    if globals_ is None:
        globals_ = list(GLOBAL_KNOWN_HOSTS)
    return [os.path.expanduser(p) for p in users], [os.path.expanduser(p) for p in globals_]


def revoked(known: asyncssh.SSHKnownHosts, name: str, ip: str, port: int) -> list[Any]:
    """The keys known_hosts revokes for the host. asyncssh's ``match`` looks again without
    the port when nothing is trusted for ``[host]:port``, and returns that second look's
    revoked keys: a host whose only line is ``@revoked [host]:port`` would seem merely
    unknown, and be offered for acceptance. Its ``[host]:port`` lines are read here."""
    revoked = list(known.match(name, ip, port)[2])
    if port != 22:
        for bracketed in {f"[{name}]:{port}", *([f"[{ip}]:{port}"] if ip else [])}:
            revoked += known.match(bracketed, "", None)[2]
    return revoked


def resolved(host: str, port: int) -> list[str]:
    """The IP addresses a host name resolves to: known_hosts may list a host by address."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except OSError:
        return []
    return sorted({str(info[4][0]) for info in infos})


def parse_known(text: str) -> asyncssh.SSHKnownHosts:
    """known_hosts ``text`` as ``ssh`` reads it: a line it cannot parse is skipped, the
    others count (asyncssh refuses the whole file for one bad line, and a caller that
    then let ``connect`` choose the files could end up with none checked)."""
    try:
        return asyncssh.import_known_hosts(text)
    except (ValueError, asyncssh.Error):
        good = []
        for line in text.splitlines(keepends=True):
            try:
                asyncssh.import_known_hosts(line)
            except (ValueError, asyncssh.Error):
                continue
            good.append(line)
        return asyncssh.import_known_hosts("".join(good))


def read_lines(path: str) -> str:
    """A known_hosts file's text, ending with a newline; empty when it cannot be read."""
    try:
        text = Path(os.path.expanduser(path)).read_text()
    except OSError:
        return ""
    return text if text.endswith("\n") or not text else text + "\n"
