"""Run a block on the operator's machine, in its own session and process group.

Output is streamed as raw bytes (never assumed to be UTF-8). A timeout or an interrupt
escalates SIGINT -> SIGTERM -> SIGKILL to the whole group with a grace period between
signals, and when the block's shell exits, whatever it left running in its group is
stopped the same way: nothing outlives its block.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

READ_SIZE = 1024 * 1024
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

    @property
    def ok(self) -> bool:
        return self.code == 0

    def describe(self) -> str:
        why = " (timed out)" if self.timed_out else " (interrupted)" if self.interrupted else ""
        if self.signal is not None:
            return f"killed by {signal.Signals(self.signal).name}{why}"
        return f"exit {self.code}{why}"


class LocalTransport:
    """Runs scripts with ``SHELL -c SCRIPT``; variables arrive only through ``env``."""

    def __init__(self, grace: float = DEFAULT_GRACE) -> None:
        self.grace = grace

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
        proc = await asyncio.create_subprocess_exec(
            shell,
            "-c",
            script,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
            limit=READ_SIZE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        pumps = [
            asyncio.create_task(_pump(proc.stdout, "stdout", on_output)),
            asyncio.create_task(_pump(proc.stderr, "stderr", on_output)),
        ]
        # proc.wait() also waits for the pipes to close, which a background job can hold
        # open forever; the shell's own exit is what ends the block.
        exited = _exit_of(proc)
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
                for pump in pumps:
                    if pump in done and pump.exception() is not None:
                        raise pump.exception()  # type: ignore[misc]
                if exited in done:
                    break
                interrupted = stopper in done
                timed_out = not done
                if interrupted or timed_out:
                    await self._stop_group(proc.pid, exited)
                    break
            # Whatever the shell left running in its group must not outlive the block.
            await self._stop_group(proc.pid, None)
            await asyncio.gather(*pumps)
            code = await proc.wait()
        except BaseException:
            await self._stop_group(proc.pid, exited)
            for task in pumps:
                task.cancel()
            raise
        finally:
            stopper.cancel()
            exited.cancel()
        return ExitStatus(
            code=code if code >= 0 else None,
            signal=-code if code < 0 else None,
            duration=time.monotonic() - started,
            timed_out=timed_out,
            interrupted=interrupted,
        )

    async def _stop_group(self, pgid: int, waiter: asyncio.Future[None] | None) -> None:
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


def _exit_of(proc: asyncio.subprocess.Process) -> asyncio.Future[None]:
    """A future done when the process exits, without reaping it (asyncio does that)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    try:
        fd = os.pidfd_open(proc.pid)
    except ProcessLookupError:
        done.set_result(None)
        return done
    except (AttributeError, OSError):  # no pidfd (old kernel, not Linux): poll instead
        return asyncio.ensure_future(_poll_exit(proc))
    open_fd: list[int] = [fd]

    def release(_: object = None) -> None:
        if open_fd:
            loop.remove_reader(open_fd[0])
            os.close(open_fd.pop())

    def on_exit() -> None:
        release()
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, on_exit)
    done.add_done_callback(release)
    return done


async def _poll_exit(proc: asyncio.subprocess.Process) -> None:
    while proc.returncode is None:
        await asyncio.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is still in the group."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
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


async def _pump(stream: asyncio.StreamReader, name: str, sink: OutputSink) -> None:
    while chunk := await stream.read(READ_SIZE):
        sink(name, chunk)
