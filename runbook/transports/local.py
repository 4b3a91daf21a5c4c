"""Run a block on the operator's machine, in its own session and process group.

Output is streamed as raw bytes (never assumed to be UTF-8). A timeout or an interrupt
escalates SIGINT -> SIGTERM -> SIGKILL to the whole group with a grace period between
signals, and when the block's shell exits, whatever it left running in its group is
stopped the same way: nothing outlives its block.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

READ_SIZE = 1024 * 1024
"""The pipe's buffer: a fast producer rarely waits for us."""
CHUNK = 256 * 1024
"""Bytes read at most per turn of the event loop, so per ``output`` event: recording is
fastest at 256 KiB (bench/transcript_cost.py: 200 MB of ``yes`` 0.87 s at 64 KiB, 0.73 s
here, 1.0 s at 1 MiB, where the copies outgrow the CPU's cache). A console on the same
loop asks for less (``Operator.output_chunk``)."""
DEFAULT_GRACE = 5.0
OutputSink = Callable[[str, bytes], None]


@dataclass(frozen=True)
class ExitStatus:
    """How a block ended: an exit code, or the signal that ended it, and why it was stopped."""

    code: int | None
    signal: int | None
    duration: float
    timed_out: bool = False
    interrupted: bool = False
    problem: str | None = None
    """Why a block that exited 0 still failed (its capture could not be taken, say)."""
    detached: bool = False
    """The shell exited but something outside its group kept its output open (setsid)."""
    lost: bool = False
    """The connection to the host was lost while the command ran: the outcome is unknown."""

    @property
    def ok(self) -> bool:
        return self.code == 0 and self.problem is None

    def describe(self) -> str:
        if self.problem:
            return self.problem
        why = " (timed out)" if self.timed_out else " (interrupted)" if self.interrupted else ""
        if self.signal is not None:
            return f"killed by {signal.Signals(self.signal).name}{why}"
        return f"exit {self.code}{why}"


class LocalTransport:
    """Runs scripts with ``SHELL -c SCRIPT``; variables arrive only through ``env``."""

    def __init__(self, grace: float = DEFAULT_GRACE, chunk: int = CHUNK) -> None:
        self.grace = grace
        self.chunk = chunk

    async def run(
        self,
        script: str,
        *,
        shell: str,
        env: Mapping[str, str],
        on_output: OutputSink,
        cwd: str | None = None,
        timeout: float | None = None,
        interrupt: asyncio.Event | None = None,
    ) -> ExitStatus:
        started = time.monotonic()
        # Our own pipes, not asyncio's: the block ends when its shell exits, even if a
        # process that escaped its group still holds the write ends, and we can close ours.
        out_r, out_w = _pipe()
        err_r, err_w = _pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                shell,
                "-c",
                script,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out_w,
                stderr=err_w,
                cwd=cwd,
                env=dict(env),
                start_new_session=True,
            )
        except BaseException:
            for fd in (out_r, err_r):
                os.close(fd)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        pumps = [
            asyncio.create_task(_pump(out_r, "stdout", on_output, self.chunk)),
            asyncio.create_task(_pump(err_r, "stderr", on_output, self.chunk)),
        ]
        exited = asyncio.create_task(proc.wait())
        stopper = asyncio.create_task((interrupt or asyncio.Event()).wait())
        timed_out = interrupted = False
        deadline = None if timeout is None else started + timeout
        try:
            # A pump fails when its output cannot be recorded: the block must stop then.
            watched: set[asyncio.Future[Any]] = {exited, stopper, *pumps}
            while not exited.done():
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                done, watched = await asyncio.wait(
                    watched, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                _raise_failed(pumps)
                if exited in done:
                    break
                interrupted = stopper in done
                timed_out = not done
                if interrupted or timed_out:
                    await self._stop_group(proc.pid, exited)
                    break
            # Whatever the shell left running in its group must not outlive the block.
            await self._stop_group(proc.pid, None)
            # Only a process that left the group (setsid) can still hold the pipes open:
            # stop reading after the grace period rather than wait for it forever.
            _, held_open = await asyncio.wait(pumps, timeout=self.grace)
            _raise_failed(pumps)
            for pump in held_open:
                pump.cancel()
            code = await exited
        except BaseException:
            await self._stop_group(proc.pid, exited)
            for task in pumps:
                task.cancel()
            raise
        finally:
            stopper.cancel()
        return ExitStatus(
            code=code if code >= 0 else None,
            signal=-code if code < 0 else None,
            duration=time.monotonic() - started,
            timed_out=timed_out,
            interrupted=interrupted,
            detached=bool(held_open),
        )

    async def _stop_group(self, pgid: int, waiter: asyncio.Future[int] | None) -> None:
        """SIGINT, then SIGTERM, then SIGKILL, until the shell and its whole group are gone."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if not _group_alive(pgid) and (waiter is None or waiter.done()):
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
            deadline = time.monotonic() + (self.grace if sig != signal.SIGKILL else 30.0)
            while time.monotonic() < deadline:
                if waiter is not None and not waiter.done():
                    await asyncio.wait({waiter}, timeout=0.05)
                elif _group_alive(pgid):
                    await asyncio.sleep(0.05)  # nothing to wait on for processes we did not start
                else:
                    return


def _group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is still in the group."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False  # nothing at all in the group: what nearly every block leaves
    except PermissionError:
        pass  # someone's in it whom we may not signal (a setuid program, say)
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    # Something is in the group, perhaps only zombies: /proc says which (all of it is
    # read, 7 ms with 300 processes, so only when the signal says there is someone).
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def _pipe() -> tuple[int, int]:
    """A pipe with room for 1 MiB where Linux allows it: fewer, larger reads."""
    read_end, write_end = os.pipe()
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(read_end, fcntl.F_SETPIPE_SZ, READ_SIZE)
    return read_end, write_end


def _raise_failed(pumps: list[asyncio.Task[None]]) -> None:
    for pump in pumps:
        if pump.done() and not pump.cancelled() and pump.exception() is not None:
            raise pump.exception()  # type: ignore[misc]


async def _readable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def _pump(fd: int, name: str, sink: OutputSink, size: int) -> None:
    """Read a pipe until EOF; closing our end when done (or cancelled) is what lets a
    writer that outlived its block see EPIPE instead of filling a pipe nobody reads."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    try:
        while True:
            try:
                chunk = os.read(fd, size)
            except BlockingIOError:
                await _readable(loop, fd)
                continue
            if not chunk:
                return
            sink(name, chunk)
            del chunk  # not held while the rest of the loop runs
            await asyncio.sleep(0)  # let the rest of the loop (keys, other hosts) run
    finally:
        os.close(fd)
