"""A run told to stop by a signal: SIGTERM and SIGHUP do what Ctrl-C does, then end the run.

A terminal closing (SIGHUP), ``kill``, a supervisor or an ssh session to the controller
going away must not leave a run without its end, nor its commands running. The signal
sets :class:`Stop` and the interrupt: running blocks are stopped as for Ctrl-C (their
process groups get SIGINT, SIGTERM, SIGKILL) and recorded as interrupted; from then on no
question is asked and no attempt starts: each raises :class:`NeedsOperator`, which ends
the run as aborted with the signal's exit code (128 + its number). A prompt that is
waiting for a line is interrupted at once. A second signal changes nothing until the end
is on disk; after that it ends the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

from runbook.engine.operator import Decision, NotAsked, Operator
from runbook.format.model import Block, CheckItem, Step, Variable

SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@dataclass
class Stop:
    """Why the run is being stopped, once it is; shared by the session and its helpers."""

    reason: str | None = None
    code: int = 1
    ended: bool = False
    """The run's end is recorded: a second signal may end the process now."""

    def check(self) -> None:
        if self.reason is not None:
            raise NotAsked(self.reason)


class Guarded:
    """The operator, until the run is stopped: then every question ends the run instead.

    Asked before the question, so that a stopped run never prints a prompt nobody
    will answer (nor one that someone would answer, running more).
    """

    def __init__(self, operator: Operator, stop: Stop) -> None:
        self.inner = operator
        self.stop = stop
        self.name, self.auto, self.interactive = operator.name, operator.auto, operator.interactive
        self.output_chunk = operator.output_chunk

    @property
    def prompting(self) -> bool:
        """The operator is blocked reading a line (a plain terminal's prompt)."""
        return bool(getattr(self.inner, "prompting", False))

    def show(self, event: dict[str, Any]) -> None:
        self.inner.show(event)

    async def confirm(self, prompt: str) -> bool:
        self.stop.check()
        return await self.inner.confirm(prompt)

    async def type_to_confirm(self, prompt: str, expected: str) -> str | None:
        self.stop.check()
        return await self.inner.type_to_confirm(prompt, expected)

    async def tick(self, step: Step, item: CheckItem) -> Decision:
        self.stop.check()
        return await self.inner.tick(step, item)

    async def ask_value(self, variable: Variable) -> str:
        self.stop.check()
        return await self.inner.ask_value(variable)

    async def choose(self, block: Block, problem: str, choices: Sequence[str]) -> Decision:
        self.stop.check()
        return await self.inner.choose(block, problem, choices)

    async def proceed(self, step: Step, block: Block) -> Decision:
        self.stop.check()
        return await self.inner.proceed(step, block)


@contextlib.contextmanager
def stop_on_signals(
    loop: asyncio.AbstractEventLoop,
    stop: Stop,
    interrupt: asyncio.Event,
    operator: Guarded | None = None,
) -> Iterator[None]:
    """SIGTERM and SIGHUP stop the run while inside; the old handlers come back after.

    A Python-level handler, not ``loop.add_signal_handler``: a plain-terminal prompt
    blocks the loop's thread in ``input()``, and only an exception raised by the handler
    gets it out (as Ctrl-C does). Elsewhere the handler wakes the loop to set the interrupt.
    """

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.reason is not None:
            if stop.ended:
                os._exit(128 + signum)
            return  # already stopping: the end is not on disk yet
        stop.reason = f"stopped by {signal.Signals(signum).name}"
        stop.code = 128 + signum
        loop.call_soon_threadsafe(interrupt.set)
        if operator is not None and operator.prompting:
            raise KeyboardInterrupt  # out of input(); the session records the end

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
