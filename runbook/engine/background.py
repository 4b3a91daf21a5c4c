"""Blocks that run beside the run (Runme's ``background`` cells: a dev server, a port
forward, a log tail).

Each is started as any attempt is (its start on disk first, its output recorded as it
comes), then the run goes on. When the run ends, however it ends (done, failed, aborted,
quit, a signal), every one still running is stopped as an interrupted block is (SIGINT,
then SIGTERM and SIGKILL to its process group) and its end recorded before the run's.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from runbook.engine.attempt import execute
from runbook.engine.recorder import Recorder
from runbook.format.model import Block
from runbook.record import events as ev
from runbook.transports.local import ExitStatus

if TYPE_CHECKING:
    from runbook.engine.context import Context


class Background:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.running: list[
            tuple[Block, asyncio.Event, asyncio.Task[tuple[ExitStatus, Recorder]]]
        ] = []

    async def start(self, block: Block) -> None:
        """Start ``block`` and return once its start is recorded."""
        attempt = self.ctx.journal.state.attempts.get(block.name, 0) + 1
        stop, started = asyncio.Event(), asyncio.Event()
        task = asyncio.ensure_future(execute(self.ctx, block, attempt, stop=stop, started=started))
        self.running.append((block, stop, task))
        waiting = asyncio.ensure_future(started.wait())
        await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if task.done() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]

    async def stop_all(self) -> list[str]:
        """Stop every background block still running, and wait until each end is recorded.
        Returns how each that ended on its own, before the run, failed (``x: exit 3``).

        A cancel (Ctrl-C while the end waits) does not cut the stopping short: the blocks
        go on being stopped, and the next call waits for them again, so each still gets
        its ``block.end`` before ``run.end``."""
        for block, stop, task in self.running:
            if not task.done() and not stop.is_set():
                self.ctx.journal.emit(
                    ev.NOTE,
                    text=f"{block.name}: a background block, stopped as the run ends",
                    by="runbook",
                )
                stop.set()
        if self.running:
            await asyncio.wait([task for _, _, task in self.running])
        running, self.running = self.running, []
        failed = []
        for block, stop, task in running:
            if stop.is_set() or task.cancelled() or task.exception() is not None:
                continue  # stopped here, not ended on its own
            status, _ = task.result()
            if not status.ok:
                failed.append(f"{block.name}: {status.describe()}")
        for what in failed:
            self.ctx.journal.emit(
                ev.NOTE,
                text=f"background block {what}: it ended on its own while the run went on",
                by="runbook",
            )
        return failed
