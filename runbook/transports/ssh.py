"""Run a block on an SSH host with asyncssh, the way `ssh` would for the operator.

OpenSSH config (``~/.ssh/config``, or ``--ssh-config FILE``) and the agent are used as
``ssh`` uses them: aliases, ``User``, ``Port``, ``IdentityFile``, ``ProxyJump``,
``UserKnownHostsFile``. Host keys are always checked against known_hosts; nothing here
can turn checking off (an OpenSSH config that says ``UserKnownHostsFile none`` gets the
default file instead). A refused key says whether it is unknown, changed or revoked,
with the fingerprints, because asyncssh reports all three as "not trusted".

Output is read as bytes. Variables never ride the exec request: the login shell sshd
starts holds that string in its argv, which any user of the host can read in ``ps`` or
``/proc/*/cmdline``, and sshd's AcceptEnv would filter ``env=``. Their values go on the
channel's stdin instead, as quoted ``export`` lines that a small wrapper reads and
evaluates with shell builtins before the command starts (the command's own stdin is
``/dev/null``, at EOF at once as before). The command runs as the leader of its own
session under ``setsid -w``, its process id in a file, so that a timeout or an interrupt
can stop its whole process group over a second channel: signal requests are refused for
root sessions by OpenSSH 9.x, and closing the channel leaves a ``sleep 600`` running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shlex
import signal
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import asyncssh

from runbook.format.model import Host, SSHDefaults
from runbook.format.values import IDENTIFIER
from runbook.transports.local import DEFAULT_GRACE, ExitStatus, OutputSink
from runbook.transports.problems import HostKeyRefused, SSHProblem

READ_SIZE = 256 * 1024
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
GLOBAL_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"


class Unconfirmed(Exception):
    """The exec request went out but its reply never came: the command may have run."""


class SSHTransport:
    """One connection per host, reused by every block of the run."""

    def __init__(
        self,
        config: Path | None = None,
        defaults: SSHDefaults | None = None,
        *,
        connect_timeout: float = 10.0,
        keepalive: float = 5.0,
        grace: float = DEFAULT_GRACE,
    ) -> None:
        self.config = config
        self.defaults = defaults or SSHDefaults()
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self.grace = grace
        self._connections: dict[str, asyncssh.SSHClientConnection] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._accepted: dict[str, Any] = {}
        self._known: dict[tuple[str, ...], tuple[tuple[Stamp, ...], asyncssh.SSHKnownHosts]] = {}

    def options(self, host: Host) -> asyncssh.SSHClientConnectionOptions:
        """What asyncssh will use for ``host``: its config, then ours, then the spec's."""
        kwargs: dict[str, Any] = {
            "host": host.hostname,
            "connect_timeout": self.connect_timeout,
            "keepalive_interval": self.keepalive,
            "keepalive_count_max": 3,
        }
        if self.config is not None:
            kwargs["config"] = [str(self.config)]
        user = host.user or self.defaults.user
        port = host.port or self.defaults.port
        if user:
            kwargs["username"] = user
        if port:
            kwargs["port"] = port
        if self.defaults.known_hosts:
            kwargs["known_hosts"] = os.path.expanduser(self.defaults.known_hosts)
        options = asyncssh.SSHClientConnectionOptions(**kwargs)
        if options.known_hosts is None:  # "UserKnownHostsFile none" must not disable checks
            options = asyncssh.SSHClientConnectionOptions(
                options=options, known_hosts=os.path.expanduser(DEFAULT_KNOWN_HOSTS)
            )
        accepted = self._accepted.get(host.spec)
        if accepted is not None:  # the files as they are, plus the key the operator accepted
            lines = [_read(path) for path in _known_files(options.known_hosts)]
            lines.append(known_hosts_line(options.host, options.port, accepted))
            known = asyncssh.import_known_hosts("".join(lines))
            options = asyncssh.SSHClientConnectionOptions(options=options, known_hosts=known)
        return options

    def parsed_known_hosts(
        self, host: Host, options: asyncssh.SSHClientConnectionOptions
    ) -> asyncssh.SSHKnownHosts | None:
        """The known_hosts files ``options`` name, parsed once while they stay the same.

        Given paths, asyncssh parses them at every connection: on a fleet whose known_hosts
        lists every host, N connections parse N x N keys (a seventh of the client's CPU
        at 50 hosts). Same files, read the same way (``read_known_hosts``), and read again
        whenever one of them changes (its inode, size or modification time): a key revoked
        or added while the run goes on counts from the next connection, as before.
        ``None``: let asyncssh read them itself.
        """
        paths = _paths(options.known_hosts)
        if self._accepted.get(host.spec) is not None or not paths:
            return None
        files = tuple(os.path.expanduser(p) for p in paths)
        try:
            stamp = tuple(_stamp(os.stat(f)) for f in files)
            cached = self._known.get(files)
            if cached is None or cached[0] != stamp:
                cached = self._known[files] = (stamp, asyncssh.read_known_hosts(list(files)))
        except (OSError, ValueError, asyncssh.Error):
            return None  # asyncssh reads them itself, and says what is wrong
        return cached[1]

    def known_hosts_file(self, host: Host) -> Path:
        """Where an accepted key is saved: the first known_hosts file the host uses."""
        paths = _paths(self.options(host).known_hosts)
        return Path(os.path.expanduser(paths[0] if paths else DEFAULT_KNOWN_HOSTS))

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
            options = self.options(host)
            # asyncssh.connect builds its own options from these and its keywords, so a
            # keyword costs nothing here; a second SSHClientConnectionOptions would.
            known = self.parsed_known_hosts(host, options)
            extra: dict[str, Any] = {} if known is None else {"known_hosts": known}
            extra.update(_loaded_keys(options))
            try:
                conn = await asyncssh.connect(host.hostname, options=options, **extra)
            except asyncssh.HostKeyNotVerifiable:
                raise await self._classify(host, options) from None
            except asyncssh.PermissionDenied as e:
                raise SSHProblem(host.spec, "auth", f"authentication failed: {e.reason}") from None
            except (TimeoutError, OSError, asyncssh.Error) as e:
                why = getattr(e, "reason", None) or str(e) or type(e).__name__
                raise SSHProblem(host.spec, "unreachable", f"cannot connect: {why}") from None
            self._connections[host.spec] = conn
            return conn

    async def _classify(
        self, host: Host, options: asyncssh.SSHClientConnectionOptions
    ) -> HostKeyRefused:
        address, port = options.host, options.port
        try:
            tunnel: Any = options.tunnel  # ProxyJump: read the key through the same hop
            key = await asyncssh.get_server_host_key(address, port, tunnel=tunnel)
        except (OSError, asyncssh.Error) as e:
            raise SSHProblem(host.spec, "unreachable", f"cannot read its host key: {e}") from None
        seen = key.get_fingerprint("sha256") if key is not None else "(none)"
        trusted: list[Any] = []
        revoked: list[Any] = []
        name = options.host_key_alias or address
        for path in _known_files(options.known_hosts):
            for ip in _addresses(address, port) or [""]:
                known = asyncssh.read_known_hosts(path)
                trusted += known.match(name, ip, port)[0]
                revoked += _revoked(known, name, ip, port)
        if key is not None and any(k == key for k in revoked):
            return HostKeyRefused(host.spec, "revoked", seen, [])
        if trusted:
            expected = list(dict.fromkeys(k.get_fingerprint("sha256") for k in trusted))
            return HostKeyRefused(host.spec, "changed", seen, expected)
        return HostKeyRefused(host.spec, "unknown", seen, [], key)

    async def run(
        self,
        host: Host,
        script: str,
        *,
        shell: str,
        variables: Mapping[str, str],
        on_output: OutputSink,
        cwd: str | None = None,
        timeout: float | None = None,
        interrupt: asyncio.Event | None = None,
    ) -> ExitStatus:
        started = time.monotonic()
        pidfile = f"/tmp/.runbook-{secrets.token_hex(8)}.pid"
        command = remote_command(
            script, shell=shell, cwd=cwd, pidfile=pidfile, reads_variables=bool(variables)
        )
        # Made before anything is sent: a bad value sends nothing. Without variables there
        # is nothing to send, and the wrapper reads nothing (a packet fewer a host).
        payload = env_payload(variables) if variables else None
        try:
            conn, proc = await self._start(host, command, payload)
        except Unconfirmed as e:
            return ExitStatus(
                code=None,
                signal=None,
                duration=time.monotonic() - started,
                problem=(
                    f"the command was sent but its start was never confirmed ({e}):"
                    " it may have run; its outcome is unknown"
                ),
                lost=True,
            )
        pumps = [
            asyncio.create_task(_pump(proc.stdout, "stdout", on_output)),
            asyncio.create_task(_pump(proc.stderr, "stderr", on_output)),
        ]
        done_task = asyncio.create_task(proc.wait_closed())
        stopper = asyncio.create_task((interrupt or asyncio.Event()).wait())
        timed_out = interrupted = False
        try:
            finished, _ = await asyncio.wait(
                {done_task, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if done_task not in finished:
                interrupted = stopper in finished
                timed_out = not interrupted
                await self._stop(conn, pidfile, done_task)
            await asyncio.gather(*pumps)
        except asyncio.CancelledError:  # the run is stopping: the command must not go on
            await asyncio.shield(self._stop(conn, pidfile, done_task))
            raise
        finally:
            stopper.cancel()
        code, signal_name = proc.exit_status, proc.exit_signal
        if code is None and signal_name is None and not (timed_out or interrupted):
            self._connections.pop(host.spec, None)
            return ExitStatus(
                code=None,
                signal=None,
                duration=time.monotonic() - started,
                problem="the connection was lost while the command ran: its outcome is unknown",
                lost=True,
            )
        signal_number = None
        if signal_name is not None:
            signal_number = int(getattr(signal, f"SIG{signal_name[0]}", signal.SIGTERM))
        elif code is not None and code > 128 and (timed_out or interrupted):
            signal_number, code = code - 128, None
        return ExitStatus(
            code=code if signal_number is None else None,
            signal=signal_number,
            duration=time.monotonic() - started,
            timed_out=timed_out,
            interrupted=interrupted,
        )

    async def _start(
        self, host: Host, command: str, payload: bytes | None
    ) -> tuple[asyncssh.SSHClientConnection, asyncssh.SSHClientProcess[bytes]]:
        """Start the command, then send it its variables; a reused connection that died
        since is replaced once.

        Only a failure before the exec request went out is retried: connecting, or opening
        the session channel. Once the channel is open (asyncssh builds the session object
        then, and sends the exec request next, with nothing in between), the host may have
        run the command even if its reply never came, so the outcome is unknown.

        ``payload`` (see ``env_payload``) is written to the channel's stdin once the exec
        request is confirmed, then EOF. The wrapper does not start the command until it has
        read it all: a payload cut short (the channel or the connection lost while it was
        on its way) makes the wrapper exit 125 without running the command, never run it
        with half its variables. A write that fails because the channel is already closing
        is not an error here: whatever exit status the host sent says what happened, and
        none at all is an unknown outcome (``run`` reports the connection lost).
        """
        for fresh in (False, True):
            conn = await self.connection(host)
            sent = False

            def session() -> asyncssh.SSHClientProcess[bytes]:
                nonlocal sent
                sent = True
                return asyncssh.SSHClientProcess()

            try:
                _, made = await conn.create_session(session, command, encoding=None)
                proc = cast("asyncssh.SSHClientProcess[bytes]", made)
                if payload is not None:  # variables on stdin, never in the exec request
                    with contextlib.suppress(BrokenPipeError):  # the channel is closing
                        proc.stdin.write(payload)
                proc.stdin.write_eof()  # always: nothing on the host may wait for input
                return conn, proc
            except (asyncssh.Error, OSError) as e:
                self._connections.pop(host.spec, None)
                conn.close()
                why = getattr(e, "reason", None) or str(e) or type(e).__name__
                if sent:
                    raise Unconfirmed(why) from None
                if fresh:
                    raise SSHProblem(host.spec, "unreachable", f"cannot start: {why}") from None
        raise AssertionError("unreachable")

    async def _stop(
        self, conn: asyncssh.SSHClientConnection, pidfile: str, done: asyncio.Task[None]
    ) -> None:
        """SIGINT, SIGTERM, SIGKILL to the command's process group, over a second channel.

        ``kill -SIG -PGID`` without ``--``: dash, many users' login shell, rejects ``--``.
        """
        for sig in ("INT", "TERM", "KILL"):
            # Only a plain process id above 1 is trusted from the file (never `kill -9 -1`).
            kill = (
                f"pid=$(cat {shlex.quote(pidfile)} 2>/dev/null); "
                'case "$pid" in ""|*[!0-9]*|0|1) exit 0;; esac; '
                f'kill -{sig} "-$pid" 2>/dev/null'
            )
            with contextlib.suppress(asyncssh.Error, OSError):
                await conn.run(kill, check=False)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(done), self.grace)
                break
        # A wrapper killed by a signal cannot remove its own pid file.
        with contextlib.suppress(asyncssh.Error, OSError):
            await conn.run(f"rm -f {shlex.quote(pidfile)}", check=False)

    async def close(self) -> None:
        for conn in self._connections.values():
            conn.close()
        for conn in self._connections.values():
            with contextlib.suppress(asyncssh.Error, OSError):
                await conn.wait_closed()
        self._connections.clear()


Stamp = tuple[int, int, int, int]


def _stamp(st: os.stat_result) -> Stamp:
    """What changes when a known_hosts file is replaced, appended to or rewritten."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def known_hosts_line(address: str, port: int, key: Any) -> str:
    pattern = address if port == 22 else f"[{address}]:{port}"
    return f"{pattern} {key.export_public_key().decode().strip()}\n"


def _paths(known: Any) -> list[str]:
    """The known_hosts files of an option value: a path, or a list of paths."""
    if isinstance(known, (str, Path)):
        return [str(known)]
    if isinstance(known, (list, tuple)):
        return [str(p) for p in known if isinstance(p, (str, Path))]
    return []


def _known_files(known: Any) -> list[str]:
    """The known_hosts files asyncssh checks: the configured ones, else its defaults.

    Classifying a refused key must read the same files asyncssh read, or a changed key
    (trusted in the default file) would look merely unknown and be offered for acceptance.
    """
    paths = _paths(known) or [DEFAULT_KNOWN_HOSTS, GLOBAL_KNOWN_HOSTS]
    return [p for p in (os.path.expanduser(p) for p in paths) if os.path.exists(p)]


def _loaded_keys(options: asyncssh.SSHClientConnectionOptions) -> dict[str, Any]:
    """The client keys ``options`` already read from their files, for ``connect``: given
    paths again (the config's ``IdentityFile``), it would read and parse every key a second
    time, 0.4 ms a host. The same keys, certificates included, with the agent identities
    they selected. Nothing when no key was read, or no agent identity was selected: an
    empty list means "the default files" or "any agent key" to ``connect``, not "none"."""
    if not options.client_keys or options.agent_identities == []:
        return {}
    return {"client_keys": list(options.client_keys), "agent_identities": options.agent_identities}


def _revoked(known: asyncssh.SSHKnownHosts, name: str, ip: str, port: int) -> list[Any]:
    """The keys known_hosts revokes for the host. asyncssh's ``match`` looks again without
    the port when nothing is trusted for ``[host]:port``, and returns that second look's
    revoked keys: a host whose only line is ``@revoked [host]:port`` would seem merely
    unknown, and be offered for acceptance. Its ``[host]:port`` lines are read here."""
    revoked = list(known.match(name, ip, port)[2])
    if port != 22:
        for bracketed in {f"[{name}]:{port}", *([f"[{ip}]:{port}"] if ip else [])}:
            revoked += known.match(bracketed, "", None)[2]
    return revoked


def _addresses(host: str, port: int) -> list[str]:
    """The IP addresses a host name resolves to: known_hosts may list a host by address."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except OSError:
        return []
    return sorted({str(info[4][0]) for info in infos})


def _read(path: str) -> str:
    try:
        text = Path(os.path.expanduser(path)).read_text()
    except OSError:
        return ""
    return text if text.endswith("\n") or not text else text + "\n"


ENV_END = "# runbook-env-end"
"""The payload's last line. Outside quotes, ``#`` can only be this line (``shlex.quote``
always quotes a value holding one), so a payload that ends with it outside quotes is whole."""


def env_payload(variables: Mapping[str, str]) -> bytes:
    """What the wrapper reads on stdin: one quoted ``export NAME='value'`` line per
    variable, then ``ENV_END``. The values never appear on any command line."""
    bad = [name for name in variables if not IDENTIFIER.match(name)]
    if bad:  # names are validated upstream; this guards the wrapper's shell itself
        raise ValueError(f"not a variable name: {bad[0]!r}")
    held = [name for name, value in variables.items() if "\0" in value]
    if held:  # refused upstream too: no environment variable can hold a NUL byte
        raise ValueError(f"variable {held[0]} holds a NUL byte")
    lines = [f"export {name}={shlex.quote(value)}\n" for name, value in variables.items()]
    return "".join([*lines, ENV_END, "\n"]).encode("utf-8")


def remote_command(
    script: str, *, shell: str, cwd: str | None, pidfile: str, reads_variables: bool = True
) -> str:
    """The command line sent to sshd: the script, verbatim, in its own session (``setsid
    -w`` waits and passes its exit status on), the session's process group id in
    ``pidfile`` while it runs. It holds no variable's value: the wrapper reads them from
    stdin (``env_payload``) and starts the script only once it has all of them, with its
    stdin on ``/dev/null``; a payload that is not whole, or does not evaluate, is exit 125
    and the script never runs. ``reads_variables`` False (a block without any): the
    wrapper reads nothing and starts the script."""
    q = shlex.quote
    chdir = f"cd {q(cwd)} && " if cwd else ""
    # The wrapper removes its pid file itself: no second channel per command.
    # set -C: the pid file is created, never an existing file or link followed. The
    # variables are read line by line with `read` (a builtin: no `cat` process per host,
    # and no value on any argv) and set with `command eval` (`command` keeps a syntax
    # error from ending the wrapper before its rm). A last line without its newline is
    # never added, so a payload cut short cannot end with the end line.
    # `__runbook_p` is not exported, so the script never sees it. When the script is
    # done, its leftover background jobs (same group) get SIGTERM, so they can neither
    # outlive the block nor hold its output open. "$rc" is quoted: IFS may be a variable.
    refuse = 'rm -f "$0"; echo "runbook: the variables did not arrive whole: not run" >&2; exit 125'
    read = (
        "__runbook_p=; "
        'while IFS= read -r __runbook_l; do __runbook_p="$__runbook_p$__runbook_l\n"; done; '
        f'case "$__runbook_p" in *{q(ENV_END + chr(10))}) ;; *) {refuse};; esac; '
        f'command eval "$__runbook_p" || {{ {refuse}; }}; '
    )
    inner = (
        'set -C; echo $$ > "$0" || exit 125; set +C; '
        + (read if reads_variables else "")
        + '"$@" </dev/null; rc=$?; rm -f "$0"; '
        "trap '' TERM; kill -TERM 0 2>/dev/null; exit \"$rc\""
    )
    # In a session of its own, always: not in the one sshd made for the login shell, which
    # also holds whatever the shell's startup files left running, and may own a terminal
    # (RequestTTY). Skipping setsid under sshd saved 0.6 ms a host and was given up for that.
    return f"{chdir}exec setsid -w sh -c {q(inner)} {q(pidfile)} {q(shell)} -c {q(script)}"


async def _pump(stream: asyncssh.SSHReader[bytes], name: str, sink: OutputSink) -> None:
    while True:
        try:
            chunk = await stream.read(READ_SIZE)
        except (asyncssh.Error, OSError):
            return  # the connection went away; the missing exit status says so
        if not chunk:
            return
        sink(name, chunk)
        # Not held while other hosts run: 100 hosts each keeping their last 256 KiB were
        # a quarter of the peak memory of a 1 MB x 100 fan-out.
        del chunk
        await asyncio.sleep(0)  # a read of buffered data does not yield by itself
