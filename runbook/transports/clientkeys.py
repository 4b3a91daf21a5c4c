"""The client's keys: read once for every host whose config names the same key files.

asyncssh reads a host's keys (its config's ``IdentityFile``, or the default ``~/.ssh/id_*``)
at every connection, and cryptography checks an RSA private key each time it is loaded:
0.13 s of CPU for a 3072-bit key on a 2-core machine (``bench/ssh_options_cost.py --key
rsa``). A batch of 100 hosts spent 13 s on the event loop reading the same file before its
last host could start to connect. Here the keys asyncssh reads for one host are handed to
``connect`` for every other host whose config names the same files, and read again, by
asyncssh, whenever one of those files changes (see ``stamp``), as the parsed known_hosts
are.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import asyncssh

Stamp = tuple[int, int, int, int, int]

READ_THEM: dict[str, Any] = {"client_keys": ()}
"""For ``connect``: read the keys the config names, as asyncssh does by default."""


def derived(
    options: asyncssh.SSHClientConnectionOptions, **changed: Any
) -> asyncssh.SSHClientConnectionOptions:
    """``options`` with ``changed``, and the config as ``options`` applied it.

    Given its paths again, asyncssh would parse the files once more on top of the options
    it copied (not deeply), and append every ``IdentityFile`` a second time, to both: each
    key read, and offered, twice. Given none, the copy says it loaded no file, and the
    next options built from it (``connect``'s own) read ``~/.ssh/config`` on top of it:
    its ``User``, ``Port`` and keys over those of ``--ssh-config FILE``. So the copy says
    what ``options`` loaded. A config with a ``Match final`` block is read again instead:
    a copy would lose the mark that makes ``connect`` evaluate that block."""
    if options.config.has_match_final():
        again = {k: v for k, v in options.kwargs.items() if k != "last_config"}
        return asyncssh.SSHClientConnectionOptions(**{**again, **changed})
    built = asyncssh.SSHClientConnectionOptions(options=options, config=(), **changed)
    built.config.loaded = options.config.loaded
    return built


def evaluated_again(options: asyncssh.SSHClientConnectionOptions) -> bool:
    """Whether ``connect`` evaluates the config again (for the canonical name, or for a
    ``Match final`` block), from what it is given rather than from ``options``."""
    return options.config.has_match_final() or bool(
        options.canonicalize_hostname and options.canonical_domains
    )


def stamp(st: os.stat_result) -> Stamp:
    """What changes when a file is replaced, appended to or rewritten: the status change
    time too, for a rewrite in place that kept the size and put the old mtime back."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class ClientKeys:
    """The keys read so far, by the key settings of the config that named them."""

    def __init__(self) -> None:
        self._read: dict[tuple[Any, ...], tuple[tuple[Any, ...], dict[str, Any]]] = {}

    def for_connect(self, options: asyncssh.SSHClientConnectionOptions) -> dict[str, Any]:
        """What ``connect`` is given for the client's keys, with ``options`` built with
        ``client_keys=None`` (the config applied, no key read): the keys already read for
        the same files, else what asyncssh reads for them now."""
        config = options.config
        if evaluated_again(options):
            return READ_THEM  # the keys of the config connect reads again are the ones that count
        settings = tuple(
            _hashable(config.get(name))
            for name in ("IdentityFile", "CertificateFile", "IdentitiesOnly")
        )
        stamps = tuple((path, stamp_of(path)) for path in _files(settings[0], settings[1]))
        known = self._read.get(settings)
        if known is None or known[0] != stamps:
            read = derived(options, client_keys=())
            known = self._read[settings] = (stamps, _loaded_keys(read) or READ_THEM)
        given = known[1]
        if given.get("client_keys"):
            # A copy of each key for each connection: asyncssh records on the key the
            # signature algorithm the server took (and a certificate's name), so one host
            # would choose for the next (rsa-sha2-256 offered to a server that takes only
            # rsa-sha2-512, or only ssh-rsa).
            given = {**given, "client_keys": [copy.copy(k) for k in given["client_keys"]]}
        return given


def _loaded_keys(options: asyncssh.SSHClientConnectionOptions) -> dict[str, Any]:
    """The client keys ``options`` read from their files, for ``connect``: the same keys,
    with the certificates they already carry (no ``CertificateFile`` again, which would put
    the certificate on the plain key too) and the agent identities they selected. Nothing
    when no key was read or no agent identity was selected: an empty list means "the
    default files" or "any agent key" to ``connect``, not "none"."""
    if not options.client_keys or options.agent_identities == []:
        return {}
    return {
        "client_keys": list(options.client_keys),
        "client_certs": [],
        "agent_identities": options.agent_identities,
    }


def _files(identity: Any, certificates: Any) -> list[str]:
    """Every file asyncssh may read for these settings: each ``IdentityFile`` with its
    ``.pub`` and ``-cert.pub``, each ``CertificateFile``; with no ``IdentityFile``, the
    files it tries by default, all named ``~/.ssh/id_*`` (a file added there counts)."""
    if identity:
        keys = [os.path.expanduser(p) for p in identity]
        found = [f"{k}{suffix}" for k in keys for suffix in ("", ".pub", "-cert.pub")]
    else:
        home = os.path.expanduser("~/.ssh")
        try:
            names = sorted(n for n in os.listdir(home) if n.startswith("id_"))
        except OSError:
            names = []
        found = [home, *(os.path.join(home, n) for n in names)]
    return found + [os.path.expanduser(p) for p in certificates or ()]


def stamp_of(path: str) -> Stamp | None:
    """``path``'s stamp, or ``None`` while it does not exist or cannot be stat'ed."""
    try:
        return stamp(os.stat(path))
    except OSError:
        return None


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
