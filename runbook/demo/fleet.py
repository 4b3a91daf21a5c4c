"""An embedded fleet of SSH servers on 127.0.0.1 for ``runbook demo``.

Each host is an asyncssh server on a random loopback port with its own host key, in a
thread with its own event loop, so the run connects to it exactly as to real hosts: an
ssh_config alias, key authentication, a host key checked against known_hosts. A command
runs as ``/bin/sh -c COMMAND`` in the host's sandbox directory, in a session of its own;
``stop`` ends every process a command started, even one that ``setsid`` moved into a
session of its own (the SSH transport's wrapper does exactly that).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import re
import signal
import threading
from pathlib import Path
from types import TracebackType

import asyncssh

from runbook.demo.chat import ChatChannel
from runbook.demo.examples import DEFAULT, EXAMPLES, NEXT_RELEASE, Example
from runbook.demo.procs import alive_groups, process_groups
from runbook.demo.sandbox import (
    DemoFleetError,
    Seed,
    known_hosts_text,
    seed_sandbox,
    ssh_config_text,
    write_private,
)
from runbook.demo.standins import standins
from runbook.demo.streams import feed, pump

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
GRACE = 2.0
"""How long a command has to end after SIGTERM before SIGKILL."""
THREAD_NAME = "runbook-demo-fleet"
_HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


class DemoFleet:
    """An embedded fleet of asyncssh servers on 127.0.0.1, in a thread of its own.

    ``example`` says which hosts there are, which are broken, and which route traffic
    (default: the deploy example, web1 to web4, web3 broken).
    """

    def __init__(self, root: Path, example: Example | None = None) -> None:
        self.example = example = EXAMPLES[DEFAULT] if example is None else example
        hosts = example.hosts
        bad = [h for h in hosts if not _HOST_NAME.match(h)]
        if bad or not hosts or len(set(hosts)) != len(hosts):
            raise ValueError(f"host names must be distinct simple names, got {list(hosts)!r}")
        self.root = Path(root)
        self.hosts = tuple(hosts)
        self.ssh_config = self.root / "ssh_config"
        self.runbook = example.path or self.root / example.file
        """The runbook to run: a bundled example is copied next to the fleet's files."""
        self.known_hosts = self.root / "known_hosts"
        self.chat = ChatChannel(self.root / "chat")
        """Where the runbook's ``notify:`` goes in the demo (``$DEPLOYS_WEBHOOK``)."""
        self.identity = self.root / "id_ed25519"
        self.user = _user()
        self.ports: dict[str, int] = {}
        """Each host's listening port, once started."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._acceptors: list[asyncssh.SSHAcceptor] = []
        self._connections: set[asyncssh.SSHServerConnection] = set()
        self._children: set[asyncio.subprocess.Process] = set()
        self._groups: set[int] = set()
        self._authorized: asyncssh.SSHAuthorizedKeys | None = None
        self._stopping = False

    def sandbox(self, host: str) -> Path:
        """The directory that is ``host``: its commands run there, with it as ``$HOME``."""
        return self.root / "hosts" / host

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Write the keys and files, start every server; returns once all of them listen."""
        if self._thread is not None:
            raise DemoFleetError("the demo fleet is already running")
        self._stopping = False
        try:
            self._start()
        except BaseException as e:
            self.stop()
            if isinstance(e, (OSError, asyncssh.Error, TimeoutError, ValueError)):
                why = getattr(e, "reason", None) or str(e) or type(e).__name__
                raise DemoFleetError(f"the demo fleet could not start: {why}") from e
            raise

    def _start(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        client_key = asyncssh.generate_private_key("ssh-ed25519", comment="runbook-demo-client")
        write_private(self.identity, client_key.export_private_key())
        self.identity.with_name("id_ed25519.pub").write_bytes(client_key.export_public_key())
        self._authorized = asyncssh.import_authorized_keys(client_key.export_public_key().decode())
        host_keys = {
            h: asyncssh.generate_private_key("ssh-ed25519", comment=f"runbook-demo-{h}")
            for h in self.hosts
        }
        self._seed()
        loop = self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=THREAD_NAME, daemon=True)
        self._thread.start()
        listening = asyncio.run_coroutine_threadsafe(self._listen(host_keys), loop)
        self.ports = listening.result(timeout=START_TIMEOUT)
        pinned = {self.ports[h]: host_keys[h] for h in self.hosts}
        self.known_hosts.write_text(known_hosts_text(pinned))
        self.ssh_config.write_text(
            ssh_config_text(self.ports, self.user, self.identity, self.known_hosts)
        )

    def _seed(self) -> None:
        ex = self.example
        idle = {h for _, pool in ex.pools[1:] for h in pool}
        live = ex.pools[0][0] if ex.pools else None
        for host in self.hosts:
            router = host in ex.routers
            seed = Seed(
                host,
                app_dir=ex.app_dir,
                broken=host in ex.broken and not ex.breaks_release,
                bad_release=NEXT_RELEASE if host in ex.broken and ex.breaks_release else None,
                serving=host not in idle,
                live=live if router else None,
            )
            sandbox = self.sandbox(host)
            tools = standins(host, sandbox, ex.app_dir, ex.pools, router=router)
            seed_sandbox(sandbox, seed, tools)
        if ex.path is None:
            self.runbook.write_bytes(ex.source().read_bytes())

    def stop(self) -> None:
        """End every command, close every connection and server, stop the thread.

        Idempotent, and safe after a failed start.
        """
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if thread is None:
            if loop is not None:
                loop.close()
            return
        assert loop is not None
        with contextlib.suppress(RuntimeError):  # the loop may be gone already
            done = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            with contextlib.suppress(Exception):
                done.result(timeout=STOP_TIMEOUT)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=STOP_TIMEOUT)
        for group in self._groups:  # last resort, should the loop not have answered
            with contextlib.suppress(OSError):
                os.killpg(group, signal.SIGKILL)
        self._groups.clear()

    def __enter__(self) -> DemoFleet:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ the fleet's thread

    def _serve(self) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    async def _listen(self, host_keys: dict[str, asyncssh.SSHKey]) -> dict[str, int]:
        ports: dict[str, int] = {}
        for host in self.hosts:

            async def serve(process: asyncssh.SSHServerProcess[bytes], host: str = host) -> None:
                await self._exec(host, process)

            acceptor = await asyncssh.create_server(
                lambda: _Server(self),
                "127.0.0.1",
                0,
                server_host_keys=[host_keys[host]],
                process_factory=serve,
                encoding=None,
                allow_scp=False,
                agent_forwarding=False,
                x11_forwarding=False,
            )
            self._acceptors.append(acceptor)
            ports[host] = acceptor.get_port()
        await self.chat.start()
        return ports

    async def _exec(self, host: str, process: asyncssh.SSHServerProcess[bytes]) -> None:
        """One exec request: ``/bin/sh -c COMMAND`` in the sandbox, bytes both ways."""
        command = process.command
        if command is None or self._stopping:
            why = b"the fleet is stopping" if self._stopping else b"this host runs commands only"
            process.stderr.write(b"demo host %s: %s\n" % (host.encode(), why))
            process.exit(1)
            return
        sandbox = self.sandbox(host)
        env = {
            "HOME": str(sandbox),
            # The site's tools are stand-ins in the sandbox's bin/ (see standins.py).
            "PATH": f"{sandbox / 'bin'}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
            "LANG": "C.UTF-8",
            "USER": self.user,
            "LOGNAME": self.user,
            "RUNBOOK_DEMO_HOST": host,
        }
        pipe = asyncio.subprocess.PIPE
        try:
            child = await asyncio.create_subprocess_exec(
                "/bin/sh", "-c", command, cwd=sandbox, env=env,
                stdin=pipe, stdout=pipe, stderr=pipe, start_new_session=True,
            )  # fmt: skip
        except OSError as e:
            process.stderr.write(f"demo host {host}: cannot run /bin/sh: {e}\n".encode())
            process.exit(127)
            return
        self._children.add(child)
        self._groups.add(child.pid)
        feeder = asyncio.create_task(feed(process, child))
        try:
            assert child.stdout is not None and child.stderr is not None
            await asyncio.gather(
                pump(child.stdout, process.stdout), pump(child.stderr, process.stderr)
            )
            code = await child.wait()
        finally:
            feeder.cancel()
            self._children.discard(child)
            self._groups.discard(child.pid)
        with contextlib.suppress(OSError, asyncssh.Error):  # the client may be gone
            if code < 0:
                process.exit_with_signal(signal.Signals(-code).name.removeprefix("SIG"))
            else:
                process.exit(code)

    async def _shutdown(self) -> None:
        self._stopping = True
        await self.chat.stop()
        for acceptor in self._acceptors:
            acceptor.close()
        await self._end_commands()
        for conn in list(self._connections):
            conn.close()
        for conn in list(self._connections):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), GRACE)
        me = asyncio.current_task()
        rest = [t for t in asyncio.all_tasks() if t is not me]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)
        for acceptor in self._acceptors:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(acceptor.wait_closed(), GRACE)
        self._acceptors.clear()

    async def _end_commands(self) -> None:
        """SIGTERM, then SIGKILL, to the process groups of every command and its descendants."""
        children = list(self._children)
        groups = process_groups([c.pid for c in children])
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for group in groups:
                with contextlib.suppress(OSError):
                    os.killpg(group, sig)
            deadline = loop.time() + GRACE
            while alive_groups(groups) and loop.time() < deadline:
                await asyncio.sleep(0.02)
            if not alive_groups(groups):
                break
        for child in children:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(child.wait(), GRACE)


class _Server(asyncssh.SSHServer):
    """One client connection: only the fleet's user, only with the fleet's client key."""

    def __init__(self, fleet: DemoFleet) -> None:
        self._fleet = fleet
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._fleet._connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._fleet._connections.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        """Keys are trusted for the fleet's user only; anyone else has no way in."""
        authorized = self._fleet._authorized
        if self._conn is not None and authorized is not None and username == self._fleet.user:
            self._conn.set_authorized_keys(authorized)
        return True


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


__all__ = ["DemoFleet", "DemoFleetError"]
