"""What does building a host's connection options cost the client, per host of a fan-out?

What runbook pays (`SSHTransport.options`: the operator's OpenSSH config read and applied
for that host; then the keys `connect` is given, read once for all the hosts whose config
names the same files), timed against asyncssh's options with no config and a key loaded
once (the reference, what a script that hard-codes everything pays), a config load alone,
asyncssh reading the config and the key again for every host (what runbook paid before
it kept the keys it read), and runbook with asyncssh splitting every line of the config
again for every host (what it paid before it kept the splits, ``configlines``).
Self-contained: a config like the shared fleet's (13 lines, or more with --pad) and a key
(ed25519, or a 3072-bit RSA with --key rsa) in a scratch directory; nothing connects.
CPU time, best of the rounds, per host; rows interleaved.
Usage: python bench/ssh_options_cost.py [--hosts 100] [--rounds 5] [--pad 0] [--key rsa]
"""

from __future__ import annotations

import argparse
import shlex
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from runbook.format.model import Host  # first: runbook quiets asyncssh's DSA warnings
from runbook.transports import configlines
from runbook.transports.ssh import SSHTransport

STAND_IN = configlines._Shlex()  # what SSHTransport installs: each line split once a process

CONFIG = """Host 127.0.0.*
    Port 2222
    User benchfan
    IdentityFile {key}
    IdentitiesOnly yes
    UserKnownHostsFile {known}
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    BatchMode yes
    ControlMaster no
    ControlPath none
    LogLevel ERROR
    KexAlgorithms curve25519-sha256
"""

# A block of a longer, real-looking config that matches none of the fleet's hosts.
PAD = """Host bastion-{i} bastion-{i}.example.internal
    HostName 10.{i}.0.1
    User ops
    ForwardAgent no
    ServerAliveInterval 30
"""


def per_host(names: list[str], start: Callable[[], Callable[[str], object]]) -> float:
    """CPU a host of ``start()``'s build over ``names``: a run's, from a cold transport."""
    started = time.process_time()
    build = start()
    for name in names:
        build(name)
    return (time.process_time() - started) / len(names)


def runbook_row(config: Path, split_once: bool = True) -> Callable[[str], object]:
    """A new run's transport: its first host reads the key, the next ones reuse it; each
    line of the config split once a process, or (``split_once=False``) for every host."""
    transport = SSHTransport(config=config)
    configlines._split.cache_clear()  # as a new run's process starts: its first host splits
    splitting(kept=split_once)
    return lambda h: transport._keys.for_connect(transport.options(Host(spec=h, hostname=h)))


def splitting(kept: bool) -> None:
    """asyncssh's config parser splits each line with runbook's stand-in, or with shlex."""
    import asyncssh.config

    asyncssh.config.shlex = STAND_IN if kept else shlex  # type: ignore[attr-defined]


def plain(row: Callable[[], Callable[[str], object]]) -> Callable[[], Callable[[str], object]]:
    """``row`` with the config split as asyncssh splits it, line by line for every host."""

    def start() -> Callable[[str], object]:
        splitting(kept=False)
        return row()

    return start


def main(hosts: int, rounds: int, pad: int, kind: str) -> None:
    import asyncssh
    from asyncssh.config import SSHClientConfig

    with tempfile.TemporaryDirectory() as tmp:
        key_path, known = Path(tmp, "key"), Path(tmp, "known_hosts")
        key = (
            asyncssh.generate_private_key("ssh-rsa", key_size=3072)
            if kind == "rsa"
            else asyncssh.generate_private_key("ssh-ed25519")
        )
        key.write_private_key(str(key_path))
        key.write_public_key(f"{key_path}.pub")
        known.write_text("")
        config = Path(tmp, "ssh_config")
        text = CONFIG.format(key=key_path, known=known)
        config.write_text(text + "".join(PAD.format(i=i) for i in range(pad)))
        lines = len(config.read_text().splitlines())
        loaded = asyncssh.read_private_key(str(key_path))
        names = [f"127.0.0.{2 + i % 250}" for i in range(hosts)]
        rows: dict[str, Callable[[], Callable[[str], object]]] = {
            "asyncssh options, no config, key loaded once (reference)": lambda: (
                lambda h: asyncssh.SSHClientConnectionOptions(
                    host=h, config=None, client_keys=[loaded], known_hosts=None
                )
            ),
            "the config's load alone (asyncssh's split)": plain(
                lambda: (
                    lambda h: SSHClientConfig.load(
                        None, [str(config)], False, False, False, "root", "", h, 2222
                    )
                )
            ),
            "asyncssh, the config and the key read for each host": plain(
                lambda: lambda h: asyncssh.SSHClientConnectionOptions(host=h, config=[str(config)])
            ),
            "runbook, keys once, each line split for each host": lambda: runbook_row(
                config, split_once=False
            ),
            "runbook: options, then the keys for connect": lambda: runbook_row(config),
        }
        best = {label: float("inf") for label in rows}
        for _ in range(rounds):
            for label, start in rows.items():
                best[label] = min(best[label], per_host(names, start))
    ref = best[next(iter(rows))]
    print(
        f"{hosts} hosts, a {lines}-line config, an {kind} key; best of {rounds} rounds, CPU a host:"
    )
    for label, seconds in best.items():
        print(f"  {label:<58} {seconds * 1000:6.3f} ms  {seconds / ref:5.2f}x")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--pad", type=int, default=0, help="unrelated Host blocks to add")
    ap.add_argument("--key", choices=("ed25519", "rsa"), default="ed25519")
    args = ap.parse_args()
    main(args.hosts, args.rounds, args.pad, args.key)
