"""SSH connections, made the way `ssh` would make them for the operator.

OpenSSH config (``~/.ssh/config``, or ``--ssh-config FILE``) and the agent are used as
``ssh`` uses them: aliases, ``User``, ``Port``, ``IdentityFile``, ``ProxyJump``,
``UserKnownHostsFile``. Host keys are always checked against known_hosts; nothing here
can turn checking off (an OpenSSH config that says ``UserKnownHostsFile none`` gets the
default file instead). A refused key says whether it is unknown, changed or revoked,
with the fingerprints, because asyncssh reports all three as "not trusted". Running a
block over these connections is ``ssh.py``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

import asyncssh

from runbook.format.model import Host, SSHDefaults
from runbook.transports.clientkeys import ClientKeys, Stamp, derived, evaluated_again, stamp_of
from runbook.transports.configlines import split_once
from runbook.transports.knownhosts import (
    known_files,
    known_hosts_files,
    known_hosts_line,
    listed,
    parse_known,
    read_lines,
    resolved,
    revoked,
)
from runbook.transports.problems import HostKeyRefused, SSHProblem

DEFAULT_CONFIG = "~/.ssh/config"
MAX_HOPS = 8
"""ProxyJump hops that name hops of their own, at most: a loop in the config ends here."""


class SSHConnections:
    """One connection per host, reused by every block of the run."""

    def __init__(
        self,
        config: Path | None = None,
        defaults: SSHDefaults | None = None,
        *,
        connect_timeout: float = 10.0,
        keepalive: float = 5.0,
    ) -> None:
        self.config = config
        self.defaults = defaults or SSHDefaults()
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self._connections: dict[str, asyncssh.SSHClientConnection] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._accepted: dict[str, Any] = {}
        self._known: dict[
            tuple[str, ...], tuple[tuple[Stamp | None, ...], asyncssh.SSHKnownHosts]
        ] = {}
        self._keys = ClientKeys()
        split_once()

    def options(self, host: Host) -> asyncssh.SSHClientConnectionOptions:
        """What asyncssh will use for ``host``: its config, then ours, then the spec's.
        No key is read (``client_keys=None``): ``connection`` hands ``connect`` the keys."""
        user = host.user or self.defaults.user
        port = host.port or self.defaults.port
        options = self._options(
            host.hostname,
            username=user or (),
            port=port or (),
            known_hosts=os.path.expanduser(self.defaults.known_hosts or "") or (),
        )
        accepted = self._accepted.get(host.spec)
        if accepted is not None:  # the files as they are, plus the key the operator accepted
            lines = [read_lines(path) for path in known_files(options.known_hosts)]
            lines.append(known_hosts_line(options.host, options.port, accepted))
            known = parse_known("".join(lines))
            options = derived(options, known_hosts=known)
        return options

    def _options(self, name: str, **given: Any) -> asyncssh.SSHClientConnectionOptions:
        """The config applied to ``name``, under ``given`` (``()``: the config's value).

        The config is always named: options built with none read none, and only
        ``connect`` reads ``~/.ssh/config`` then, after every rule here was applied to
        options without it (a ``UserKnownHostsFile none`` there turned checking off, and
        its ``IdentityFile`` was overridden by the default keys read here)."""
        options = asyncssh.SSHClientConnectionOptions(
            host=name,
            config=self._config_paths(),
            client_keys=None,
            connect_timeout=self.connect_timeout,
            keepalive_interval=self.keepalive,
            keepalive_count_max=3,
            **given,
        )
        if given.get("known_hosts", ()) == ():  # the config's files, all that ssh reads
            users, globals_ = known_hosts_files(options.config)
            files = [f for f in users + globals_ if os.path.exists(f)]
            known: Any = files or asyncssh.import_known_hosts("")  # none yet: all unknown
            if known != options.known_hosts:
                options = derived(options, known_hosts=known)
        return options

    def _config_paths(self) -> list[str]:
        return [str(self.config)] if self.config is not None else _default_config()

    def parsed_known_hosts(
        self, options: asyncssh.SSHClientConnectionOptions
    ) -> asyncssh.SSHKnownHosts | None:
        """The known_hosts files ``options`` name, parsed once while they stay the same.

        Given paths, asyncssh parses them at every connection: on a fleet whose known_hosts
        lists every host, N connections parse N x N keys (a seventh of the client's CPU
        at 50 hosts). Same files, read again whenever one of them changes (``stamp_of``:
        its inode, size, modification or status change time): a key revoked
        or added while the run goes on counts from the next connection, as before.
        Read as ``ssh`` reads them: a file that cannot be read counts as empty, a line that
        cannot be parsed is skipped. Never left to ``connect``: evaluating a ``Match
        final`` block again, it would take that block's ``UserKnownHostsFile none`` and
        check nothing. ``None``: already parsed (a key the operator accepted).
        """
        paths = listed(options.known_hosts)
        if not paths:
            return None
        files = tuple(os.path.expanduser(p) for p in paths)
        stamps = tuple(stamp_of(f) for f in files)
        cached = self._known.get(files)
        if cached is None or cached[0] != stamps:
            text = "".join(read_lines(f) for f in files)
            cached = self._known[files] = (stamps, parse_known(text))
        return cached[1]

    def known_hosts_file(self, host: Host) -> Path:
        """Where an accepted key is saved: the front matter's file, else the config's
        first ``UserKnownHostsFile``, as ``ssh`` saves it (never a global file)."""
        if self.defaults.known_hosts:
            return Path(os.path.expanduser(self.defaults.known_hosts))
        return Path(known_hosts_files(self.options(host).config)[0][0])

    def trust(self, host: Host, key: Any, save: bool) -> None:
        """Accept ``key`` for ``host`` for this run, and in known_hosts if ``save``."""
        options = self.options(host)
        if save:
            path = self.known_hosts_file(host)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a") as f:
                f.write(known_hosts_line(options.host, options.port, key))
        self._accepted[host.spec] = key

    async def connection(self, host: Host) -> asyncssh.SSHClientConnection:
        lock = self._locks.setdefault(host.spec, asyncio.Lock())
        async with lock:
            conn = self._connections.get(host.spec)
            if conn is not None and not conn.is_closed():
                return conn
            try:
                options = self.options(host)
            except (OSError, ValueError, asyncssh.Error) as e:  # unreadable, or not SSH's syntax
                raise SSHProblem(host.spec, "config", f"its SSH config: {_why(e)}") from None
            via = conn = None
            try:
                via = await self._through(host, options)
                conn = await self._dial(host.hostname, options, via)
            except asyncssh.HostKeyNotVerifiable:
                raise await self._classify(host, options, via) from None
            except asyncssh.PermissionDenied as e:
                raise SSHProblem(host.spec, "auth", f"authentication failed: {e.reason}") from None
            except ValueError as e:  # a `Match final` block is only evaluated here
                raise SSHProblem(host.spec, "config", f"its SSH config: {_why(e)}") from None
            except (TimeoutError, OSError, asyncssh.Error) as e:
                raise SSHProblem(host.spec, "unreachable", f"cannot connect: {_why(e)}") from None
            finally:
                if via is not None and conn is None:
                    via.close()
            self._connections[host.spec] = conn
            return conn

    async def _dial(
        self,
        name: str,
        options: asyncssh.SSHClientConnectionOptions,
        via: asyncssh.SSHClientConnection | None,
    ) -> asyncssh.SSHClientConnection:
        """``connect``, given the known_hosts and keys already read, through ``via`` (the
        last ProxyJump hop), which then closes with the connection, as asyncssh's own do."""
        # asyncssh.connect builds its own options from these and its keywords, so a
        # keyword costs nothing here; a second SSHClientConnectionOptions would.
        known = self.parsed_known_hosts(options)
        extra: dict[str, Any] = {} if known is None else {"known_hosts": known}
        extra.update(self._keys.for_connect(options))
        conn = await asyncssh.connect(
            name, options=options, **extra, **self._as_built(options, via)
        )
        if via is not None:
            conn.set_tunnel(via)
        return conn

    def _as_built(
        self,
        options: asyncssh.SSHClientConnectionOptions,
        via: asyncssh.SSHClientConnection | tuple[()] | None = (),
    ) -> dict[str, Any]:
        """What a call that builds its own options from ``options`` must be given too: it
        passes ``port=()`` on, which a config evaluated again would read as no port given,
        so the spec's port (``host:port``, like ``ssh -p``) is given again.

        ``via``, when dialling: the last hop runbook dialled, or ``None``, never the
        config's ``ProxyJump`` (``()``): asyncssh would dial that itself, under the hop's
        own config, where ``UserKnownHostsFile none`` checks no key. Every hop the config
        names is dialled by runbook (``_through``), those of a ``Match final`` block too;
        one that only the canonical name's block names (``CanonicalizeHostname``, which
        asyncssh resolves inside ``connect``) is not followed: the host is dialled
        directly, and its key checked as always."""
        extra: dict[str, Any] = {}
        if evaluated_again(options):  # given no file, it kept nothing of the config
            extra["config"] = self._config_paths()
        if (port := options.kwargs.get("port", ())) != ():
            extra["port"] = port
        if via != ():
            extra["tunnel"] = via
        return extra

    def _as_final(
        self, options: asyncssh.SSHClientConnectionOptions
    ) -> asyncssh.SSHClientConnectionOptions:
        """``options`` as ``connect`` will have them after a ``Match final`` block, as it
        evaluates the config again just before it dials: a ``ProxyJump`` that only that
        block sets would otherwise be dialled by asyncssh itself, under the hop's own
        config, where ``UserKnownHostsFile none`` checks no key at all."""
        if not options.config.has_match_final():
            return options
        final = asyncssh.SSHClientConnectionOptions(options=options, **self._as_built(options))
        final.update(host=final.orig_host, reload=True, canonical=False, final=True)
        return final

    async def _through(
        self, host: Host, options: asyncssh.SSHClientConnectionOptions, depth: int = 0
    ) -> asyncssh.SSHClientConnection | None:
        """The config's ProxyJump hops to ``options``' host, connected one through the
        other; ``None`` without any. Given as a string, asyncssh would dial them itself
        through the config paths given to ``connect``, which runbook never gives: with
        ``--ssh-config`` the hops were looked up in ``~/.ssh/config``. As ``ssh -F FILE``
        does, each hop is read from the run's config, and has the host's rules: its key
        always checked, the keys read once a run."""
        if options.tunnel is None:  # as ssh, a ProxyJump the first pass set is kept
            options = self._as_final(options)
        if not isinstance(options.tunnel, str):
            return None
        if depth >= MAX_HOPS:
            raise SSHProblem(host.spec, "unreachable", f"more than {MAX_HOPS} ProxyJump hops")
        conn: asyncssh.SSHClientConnection | None = None
        for hop in options.tunnel.split(","):
            user, _, address = hop.rpartition("@")
            name, _, port = address.rpartition(":") if ":" in address else (address, "", "")
            via, conn = conn, None
            try:
                hop_options = self._options(
                    name, username=user or (), port=int(port) if port else (), tunnel=via or ()
                )
                if via is None:  # the first hop may have hops of its own
                    via = await self._through(host, hop_options, depth + 1)
                conn = await self._dial(name, hop_options, via)
            except SSHProblem:
                raise
            except asyncssh.HostKeyNotVerifiable as e:
                problem = f"the host key of {hop} is not trusted: {_why(e)}"
                raise SSHProblem(host.spec, "host-key-jump", f"ProxyJump {problem}") from None
            except (TimeoutError, OSError, ValueError, asyncssh.Error) as e:
                raise SSHProblem(host.spec, "unreachable", f"ProxyJump {hop}: {_why(e)}") from None
            finally:
                if via is not None and conn is None:
                    via.close()
        return conn

    async def _classify(
        self,
        host: Host,
        options: asyncssh.SSHClientConnectionOptions,
        via: asyncssh.SSHClientConnection | None,
    ) -> HostKeyRefused:
        address, port = options.host, options.port
        try:  # as the refused connection went: its ProxyCommand, its hops (still open)
            key = await asyncssh.get_server_host_key(
                host.hostname, options=options, **self._as_built(options, via)
            )
        except (OSError, asyncssh.Error) as e:
            raise SSHProblem(host.spec, "unreachable", f"cannot read its host key: {e}") from None
        seen = key.get_fingerprint("sha256") if key is not None else "(none)"
        trusted: list[Any] = []
        refused: list[Any] = []
        name = options.host_key_alias or address
        for path in known_files(options.known_hosts):
            known = parse_known(read_lines(path))
            for ip in resolved(address, port) or [""]:
                trusted += known.match(name, ip, port)[0]
                refused += revoked(known, name, ip, port)
        if key is not None and any(k == key for k in refused):
            return HostKeyRefused(host.spec, "revoked", seen, [])
        if trusted:
            expected = list(dict.fromkeys(k.get_fingerprint("sha256") for k in trusted))
            return HostKeyRefused(host.spec, "changed", seen, expected)
        return HostKeyRefused(host.spec, "unknown", seen, [], key)

    async def close(self) -> None:
        for conn in self._connections.values():
            conn.close()
        for conn in self._connections.values():
            with contextlib.suppress(asyncssh.Error, OSError):
                await conn.wait_closed()
        self._connections.clear()


def _default_config() -> list[str]:
    """``~/.ssh/config`` when it can be read, as ``asyncssh.connect`` (and ``ssh``) would."""
    path = os.path.expanduser(DEFAULT_CONFIG)
    return [path] if os.access(path, os.R_OK) else []


def _why(e: BaseException) -> str:
    return getattr(e, "reason", None) or str(e) or type(e).__name__
