"""Run a block on an SSH host with asyncssh, over a connection ``connections.py`` made.

Output is read as bytes. Variables never ride the exec request: the login shell sshd
starts holds that string in its argv, which any user of the host can read in ``ps`` or
``/proc/*/cmdline``, and sshd's AcceptEnv would filter ``env=``. Their values go on the
channel's stdin instead, as quoted ``export`` lines that a small wrapper reads and
evaluates with shell builtins before the command starts (the command's own stdin is
``/dev/null``, at EOF at once as before). The command runs as the leader of its own
session under ``setsid -w``, and the wrapper's first line of stdout names that process
group (``wrapper.py``), so that a timeout or an interrupt can stop the whole group over a
second channel: signal requests are refused for root sessions by OpenSSH 9.x, and closing
the channel leaves a ``sleep 600`` running.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, cast

import asyncssh

from runbook.format.model import Host, SSHDefaults
from runbook.transports.connections import SSHConnections
from runbook.transports.local import DEFAULT_GRACE, ExitStatus, OutputSink
from runbook.transports.problems import HostKeyRefused, SSHProblem
from runbook.transports.wrapper import Leader, env_payload, new_token, remote_command

__all__ = ["HostKeyRefused", "SSHProblem", "SSHTransport", "Stopped", "Unconfirmed"]

READ_SIZE = 256 * 1024


Stopped = Literal["ended", "detached", "unknown-group"]
"""How a stop ended: the command's channel closed, or was closed by us (see ``_stop``)."""


class Unconfirmed(Exception):
    """The exec request went out but its reply never came: the command may have run."""


class SSHTransport(SSHConnections):
    """One connection per host, reused by every block of the run; runs blocks on them."""

    def __init__(
        self,
        config: Path | None = None,
        defaults: SSHDefaults | None = None,
        *,
        connect_timeout: float = 10.0,
        keepalive: float = 5.0,
        grace: float = DEFAULT_GRACE,
    ) -> None:
        super().__init__(config, defaults, connect_timeout=connect_timeout, keepalive=keepalive)
        self.grace = grace

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
        token = new_token()
        # Made before anything is sent: a bad value sends nothing. Without variables there
        # is nothing to send, and the wrapper reads nothing (a packet fewer a host).
        payload = env_payload(variables) if variables else None
        size = len(payload) if payload else 0
        command = remote_command(script, shell=shell, cwd=cwd, token=token, payload_size=size)
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
        leader = Leader(token)
        pumps = [
            asyncio.create_task(_pump(proc.stdout, "stdout", on_output, leader)),
            asyncio.create_task(_pump(proc.stderr, "stderr", on_output)),
        ]
        done_task = asyncio.create_task(proc.wait_closed())
        stopper = asyncio.create_task((interrupt or asyncio.Event()).wait())
        timed_out = interrupted = False
        stopped: Stopped = "ended"
        try:
            finished, _ = await asyncio.wait(
                {done_task, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if done_task not in finished:
                interrupted = stopper in finished
                timed_out = not interrupted
                stopped = await self._stop(conn, proc, leader, done_task)
            if stopped == "ended":
                await asyncio.gather(*pumps)
            else:  # sshd keeps a channel open while its output is: record what came, no more
                _, pending = await asyncio.wait(pumps, timeout=self.grace)
                for pump in pending:
                    pump.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        except asyncio.CancelledError:  # the run is stopping: the command must not go on
            await asyncio.shield(self._stop(conn, proc, leader, done_task))
            raise
        finally:
            stopper.cancel()
        if stopped == "unknown-group":
            return ExitStatus(
                code=None,
                signal=None,
                duration=time.monotonic() - started,
                timed_out=timed_out,
                interrupted=interrupted,
                problem=(
                    "it could not be stopped: the host never said which process group it"
                    " runs in, and it may still be running there"
                ),
            )
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
            detached=stopped == "detached",
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
        self,
        conn: asyncssh.SSHClientConnection,
        proc: asyncssh.SSHClientProcess[bytes],
        leader: Leader,
        done: asyncio.Task[None],
    ) -> Stopped:
        """SIGINT, SIGTERM, SIGKILL to the command's process group, over a second channel.

        The group is the one the wrapper named on its first line (``Leader``); a stop that
        comes before that line waits for it as long as for a signal to work. If the channel
        is still open after SIGKILL, it is closed, so that the block ends, and the caller
        says why: the host never named the group (``unknown-group``), or a process outside
        the group holds the output open (``detached``, as a local block says it).
        """
        if not leader.said.is_set():  # not yet (or never: the wrapper did not start)
            said = asyncio.create_task(leader.said.wait())
            await asyncio.wait(
                {said, done}, timeout=self.grace, return_when=asyncio.FIRST_COMPLETED
            )
            said.cancel()
        for sig in ("INT", "TERM", "KILL"):
            if (kill := leader.kill(sig)) is None:
                break
            with contextlib.suppress(asyncssh.Error, OSError):
                await conn.run(kill, check=False)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(done), self.grace)
                return "ended"
        if done.done():
            return "ended"
        proc.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(done), self.grace)
        return "unknown-group" if leader.pgid is None else "detached"


async def _pump(
    stream: asyncssh.SSHReader[bytes], name: str, sink: OutputSink, leader: Leader | None = None
) -> None:
    try:
        while chunk := await _next_chunk(stream):
            if leader is not None:
                chunk = leader.feed(chunk)
            if chunk:
                sink(name, chunk)
            # Not held while other hosts run: 100 hosts each keeping their last 256 KiB
            # were a quarter of the peak memory of a 1 MB x 100 fan-out.
            del chunk
            await asyncio.sleep(0)  # a read of buffered data does not yield by itself
    finally:  # the stream ended, or its channel was given up on: nothing held is lost
        if leader is not None and (held := leader.end()):
            sink(name, held)


async def _next_chunk(stream: asyncssh.SSHReader[bytes]) -> bytes:
    try:
        return await stream.read(READ_SIZE)
    except (asyncssh.Error, OSError):
        return b""  # the connection went away; the missing exit status says so
