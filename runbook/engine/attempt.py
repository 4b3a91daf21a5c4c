"""One attempt of a block, locally or on a host: its recorded start, output and end.

The start is on disk (fsynced) before the command runs; output is recorded as it comes,
masked; the end carries the exit status, how long it took and how much it printed. A
captured value is set only from an attempt that succeeded.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runbook.engine.operator import NotAsked
from runbook.engine.questions import trust_host_key
from runbook.engine.recorder import CAPTURE_LIMIT, Recorder
from runbook.engine.stopping import Section, ctrl_c_sets
from runbook.format.model import Block, Host, Runbook
from runbook.format.plan import shell_for
from runbook.record import events as ev
from runbook.transports.local import ExitStatus
from runbook.transports.problems import HostKeyRefused, SSHProblem

if TYPE_CHECKING:
    from runbook.engine.context import Context


async def run_attempt(
    ctx: Context, block: Block, attempt: int, host: Host | None = None
) -> ExitStatus:
    """One attempt, and its capture: output that cannot be captured fails the attempt."""
    status, recorder = await execute(ctx, block, attempt, host)
    names = (block.options.capture, *block.keeps) if block.options.capture else block.keeps
    for name in names if status.ok else ():
        problem = capture(ctx, block, recorder, name)
        if problem is not None:
            # On disk before anyone is asked: the block.end said exit 0, and a resume must
            # not take the block as done with its value missing.
            ctx.journal.emit(
                ev.NOTE, durable=True, text=problem, by="runbook", capture_failed=block.name
            )
            return dataclasses.replace(status, code=None, problem=problem)
    return status


async def execute(
    ctx: Context,
    block: Block,
    attempt: int,
    host: Host | None = None,
    *,
    bake: Mapping[str, Any] | None = None,
    stop: asyncio.Event | None = None,
    started: asyncio.Event | None = None,
) -> tuple[ExitStatus, Recorder]:
    """One attempt of a block, locally or on ``host``: recorded start, output and end.

    ``bake`` marks a health check run by a bake (``{block, batch, round}``) on every event
    of the attempt, so that it is never taken for the check's own run in the walk.
    ``stop``: a background block's own interrupt (Ctrl-C is for the blocks in front);
    ``started`` is set once its start is on disk.
    """
    ctx.stop.check()  # a stopped run starts nothing: a retry, a bake's check, a background block
    opts = block.options
    shell = shell_for(ctx.rb, block)
    cwd = opts.cwd or ctx.rb.cwd  # on a host: a path there, as written
    if host is None:
        cwd = _resolve_cwd(ctx.rb, cwd)
    timeout = opts.timeout.seconds if opts.timeout else None
    where: dict[str, Any] = {} if host is None else {"host": host.spec}
    if bake is not None:
        where["bake"] = dict(bake)
    ctx.journal.emit(
        ev.BLOCK_START,
        block=block.name,
        step=block.step,
        attempt=attempt,
        target=host.spec if host else "local",
        **where,
        command=block.code,
        shell=shell,
        cwd=cwd,
        timeout=timeout,
    )
    keep = bool(opts.capture or block.keeps)
    recorder = Recorder(ctx.journal, block.name, attempt, capture=keep, where=where)
    try:
        await ctx.journal.durable()  # on disk before the command runs
        ctx.stop.check()  # stopped while the start was made durable: the command never starts
    except (asyncio.CancelledError, KeyboardInterrupt, NotAsked):
        # Stopped (Ctrl-C, its batch cancelled) before the command started: the record
        # says so, and never holds a start without an end, which reads as "it may have run".
        recorder.abandon()
        _record_end(ctx, block, attempt, where, NOT_STARTED, recorder, continued=False)
        raise
    if started is not None:
        started.set()
    ctrl_c = None
    try:
        if host is not None:
            status = await _execute_remote(ctx, block, host, recorder, shell, cwd, timeout)
        else:
            status, ctrl_c = await _execute_local(ctx, block, recorder, shell, cwd, timeout, stop)
    except BaseException:
        recorder.abandon()
        raise
    recorder.finish()
    if status.detached:
        ctx.journal.emit(
            ev.NOTE,
            text=f"{block.name}: a process outside the block's process group (setsid?) still"
            " holds its output open; it was not stopped and its later output is not recorded",
            by="runbook",
        )
    continued = not status.ok and opts.continue_on_error
    _record_end(ctx, block, attempt, where, status, recorder, continued)
    if ctrl_c is not None:  # once the block's end is recorded
        ctrl_c.unheard(acted=status.interrupted)
    await ctx.journal.durable()
    return status, recorder


NOT_STARTED = ExitStatus(
    code=None, signal=None, duration=0.0, interrupted=True, problem="not started: the run stopped"
)


def _record_end(
    ctx: Context,
    block: Block,
    attempt: int,
    where: Mapping[str, Any],
    status: ExitStatus,
    recorder: Recorder,
    continued: bool,
) -> None:
    ctx.journal.emit(
        ev.BLOCK_END,
        block=block.name,
        attempt=attempt,
        **where,
        exit=status.code,
        signal=signal.Signals(status.signal).name if status.signal else None,
        status=status.describe(),
        timed_out=status.timed_out,
        interrupted=status.interrupted,
        detached=status.detached,
        continued=continued,
        duration=round(status.duration, 6),
        bytes=recorder.raw_bytes,
        recorded=recorder.offsets,
    )


async def _execute_local(
    ctx: Context,
    block: Block,
    recorder: Recorder,
    shell: str,
    cwd: str | None,
    timeout: float | None,
    stop: asyncio.Event | None = None,
) -> tuple[ExitStatus, Section | None]:
    if stop is None:
        ctx.interrupt.clear()
    section = (
        contextlib.nullcontext()
        if stop is not None
        else ctrl_c_sets(ctx.interrupt, ctx.operator, ctx.stop)
    )
    with section as ctrl_c:
        try:
            status = await ctx.transport.run(
                block.code,
                shell=shell,
                env={**os.environ, **ctx.values},
                cwd=cwd,
                timeout=timeout,
                on_output=recorder,
                interrupt=stop or ctx.interrupt,
            )
        except OSError as e:  # the shell or the directory does not exist
            where = f"cwd {cwd} is not a directory" if cwd and not os.path.isdir(cwd) else ""
            recorder.error(f"cannot start {shell}: {where or e.strerror or e}\n")
            status = ExitStatus(code=127, signal=None, duration=0.0)
    return status, ctrl_c


async def _execute_remote(
    ctx: Context,
    block: Block,
    host: Host,
    recorder: Recorder,
    shell: str,
    cwd: str | None,
    timeout: float | None,
) -> ExitStatus:
    """The caller (the rollout) owns Ctrl-C: one interrupt stops every host."""
    if ctx.ssh is None:
        return ExitStatus(code=None, signal=None, duration=0.0, problem="no SSH transport")
    started = time.monotonic()
    while True:
        try:
            return await ctx.ssh.run(
                host,
                block.code,
                shell=shell,
                variables=ctx.values,
                cwd=cwd,
                timeout=timeout,
                on_output=recorder,
                interrupt=ctx.interrupt,
            )
        except HostKeyRefused as e:
            if e.kind == "host-key-unknown" and await trust_host_key(ctx, block, host, e):
                continue  # nothing ran yet: connect again with the accepted key
            problem = e.reason
        except SSHProblem as e:
            problem = e.reason  # the block's end names the host
        return ExitStatus(
            code=None, signal=None, duration=time.monotonic() - started, problem=problem
        )


def capture(ctx: Context, block: Block, recorder: Recorder, name: str) -> str | None:
    """Set the captured variable ``name``; the problem when the output cannot be one."""
    value = bytes(recorder.captured or b"").decode("utf-8", "replace").strip()
    if recorder.raw_bytes["stdout"] > CAPTURE_LIMIT:
        return (
            f"capture {name}: {block.name} printed {recorder.raw_bytes['stdout']:,} bytes;"
            f" a captured value must be under {CAPTURE_LIMIT // 1024} KiB"
        )
    if "\0" in value:
        return f"capture {name}: {block.name} printed a NUL byte, which no command can be given"
    ctx.values[name] = value
    ctx.journal.emit(ev.CAPTURE, durable=True, block=block.name, name=name, value=value)
    return None


def _resolve_cwd(rb: Runbook, cwd: str | None) -> str | None:
    """A relative ``cwd`` is relative to the runbook's own directory."""
    if cwd is None:
        return None
    path = Path(os.path.expanduser(cwd))
    return str(path if path.is_absolute() else Path(rb.path).resolve().parent / path)
