"""A run told to stop by a signal: SIGTERM and SIGHUP do what Ctrl-C does, then end the run.

A terminal closing (SIGHUP), ``kill``, a supervisor or an ssh session to the controller
going away must not leave a run without its end, nor its commands running. The signal
sets :class:`Stop` and the interrupt: running blocks are stopped as for Ctrl-C (their
process groups get SIGINT, SIGTERM, SIGKILL) and recorded as interrupted; from then on no
question is asked and no attempt starts: each raises :class:`NeedsOperator`, which ends
the run as aborted with the signal's exit code (128 + its number). A prompt that is
waiting for a line is interrupted at once. Ctrl-C outside a block ends the run at once
(the session's task is cancelled); inside one, :func:`ctrl_c_sets` gives it to the block,
and in a headless run also stops the run as SIGTERM does (nobody is there to decide).
A second signal changes nothing until the record is closed; after that it ends the
process, with the exit code on record.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Callable, Iterator, Sequence
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
    recorded: int | None = None
    """The exit code ``run.end`` holds, once it is written: signals are ignored while the
    record is being closed (its last line fsynced and signed), never cut short."""
    ended: bool = False
    """The record is closed: a signal now ends the process, with the code on record."""

    def check(self) -> None:
        if self.reason is not None:
            raise NotAsked(self.reason)

    def halt(self, reason: str, code: int) -> bool:
        """Stop the run for ``reason``, unless it is stopping already or its end is
        written (then nothing changes): True when this call stopped it."""
        if self.reason is not None or self.recorded is not None:
            return False
        self.reason, self.code = reason, code
        return True


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


CTRL_C = "interrupted by the operator"
"""Why a run that Ctrl-C stopped ended: at a prompt, outside a block, or nobody answering."""


@contextlib.contextmanager
def stop_on_signals(
    loop: asyncio.AbstractEventLoop,
    stop: Stop,
    interrupt: asyncio.Event,
    operator: Guarded | None = None,
    cancel: Callable[[bool], object] | None = None,
    until_exit: bool = False,
) -> Iterator[None]:
    """SIGTERM and SIGHUP stop the run while inside, and so does Ctrl-C when ``cancel``
    (which ends the session's run at once) is given; the old handlers come back after.

    Python-level handlers, not ``loop.add_signal_handler``: a plain-terminal prompt
    blocks the loop's thread in ``input()``, and only an exception raised by the handler
    gets it out. Anywhere else the handler only hands the stop to the loop: an exception
    raised between two bytecodes of the loop's own code (as Python's default Ctrl-C does)
    can land in a callback or a ``finally`` and leave the run with no end and the process
    waiting for ever. While a block runs, :func:`ctrl_c_sets` gives Ctrl-C to that block
    instead. A Ctrl-C that the process was started to ignore (``nohup``, a script's ``&``)
    stays ignored. ``until_exit`` (the command line, whose process ends with the run):
    once the record is closed, these signals are ignored for the little that is left (the
    last lines printed), so the exit status is the one on record, not Python's 130 or -2.
    """

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.ended:  # nothing is left to record: exit as the record says
            os._exit(stop.recorded if stop.recorded is not None else 128 + signum)
        ctrl_c = signum == signal.SIGINT
        if not stop.halt(
            CTRL_C if ctrl_c else f"stopped by {signal.Signals(signum).name}", 128 + signum
        ):
            return  # already stopping, or the end is written and being closed
        loop.call_soon_threadsafe(interrupt.set)
        if operator is not None and operator.prompting:
            raise KeyboardInterrupt  # out of input(); the session records the end
        if cancel is not None:
            loop.call_soon_threadsafe(cancel, ctrl_c)

    signals = list(SIGNALS)
    if cancel is not None and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signals.append(signal.SIGINT)
    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        with _woken_by_signals(loop):
            yield
    finally:
        for s, old in previous.items():
            # Ignored, not the handler: the interpreter's own exit resets handlers (a
            # signal then kills the process, -2), but leaves an ignored signal ignored.
            signal.signal(s, signal.SIG_IGN if until_exit and stop.ended else old)


@contextlib.contextmanager
def _woken_by_signals(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """A signal wakes the loop, whichever thread the kernel gave it to.

    A Python-level handler runs on the main thread, between two bytecodes. When the
    signal lands on another thread (the webhook courier's, the fsync helper's), the
    loop's thread sleeps on in its selector: a SIGTERM while the end waited 29 s for a
    webhook waited the 29 s (one run in three, in a full test run). The wakeup fd is
    written by whichever thread takes the signal, and the loop watches it, as asyncio's
    own ``add_signal_handler`` does."""
    try:
        reader, writer = socket.socketpair()
    except OSError:
        yield
        return
    with reader, writer:
        reader.setblocking(False)
        writer.setblocking(False)
        try:
            before = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        except ValueError:  # not the main thread: signals are not ours to wait for
            yield
            return
        loop.add_reader(reader.fileno(), _drain, reader)
        try:
            yield
        finally:
            loop.remove_reader(reader.fileno())
            signal.set_wakeup_fd(before)


def _drain(reader: Any) -> None:
    with contextlib.suppress(OSError):
        while reader.recv(4096):
            pass


@dataclass(eq=False)
class Section:
    """One open :func:`ctrl_c_sets`: its event, and whether a Ctrl-C reached it."""

    event: asyncio.Event
    pressed: bool = False
    alone: bool = False
    """Set at its close: no other section was still open, so Ctrl-C is the run's again."""

    def unheard(self, acted: bool) -> None:
        """A press that came and that nothing ``acted`` on (it came as the block's shell
        had already exited) goes to the run, as if it came now: it is not lost, and the
        next block does not start. Inside another section it stays that one's event."""
        if self.pressed and self.alone and not acted:
            signal.raise_signal(signal.SIGINT)


_ctrl_c: dict[asyncio.AbstractEventLoop, tuple[Any, list[Section]]] = {}


@contextlib.contextmanager
def ctrl_c_sets(
    event: asyncio.Event, operator: object = None, stop: Stop | None = None
) -> Iterator[Section]:
    """While inside, Ctrl-C sets ``event`` (a running block is interrupted and the operator
    decides what next); after, Ctrl-C does what it did before, whatever that was.

    An ``operator`` that is not a person (headless) decides nothing: there Ctrl-C also
    stops the run (``stop``), as SIGTERM does, so no retry, rollback or batch follows it.
    A question the ``operator`` is asked meanwhile (a rollout's next batch, a host key)
    still ends the run at Ctrl-C: the handler before gets the signal then. Sections nest
    and overlap (a bake's local check inside a rollout): the newest one still open gets
    Ctrl-C. A Python-level handler, as in :func:`stop_on_signals`, and not
    ``loop.add_signal_handler``, whose removal installs Python's default handler: that
    one raises ``KeyboardInterrupt`` wherever the loop happens to be.
    """
    loop = asyncio.get_running_loop()
    if loop not in _ctrl_c:
        before = signal.getsignal(signal.SIGINT)
        sections: list[Section] = []
        waiting: list[bool] = []  # a press handed to the loop and not yet delivered

        def deliver() -> None:
            waiting.clear()
            if sections:
                sections[-1].event.set()

        def handler(signum: int, frame: FrameType | None) -> None:
            # Handlers run between any two bytecodes, a running handler's included: under
            # a flood of signals only the first schedules anything, or they nest until
            # the interpreter's recursion limit. The section is marked here, not in the
            # loop: one that closes before the loop delivers still knows of the press.
            if sections and not getattr(operator, "prompting", False):
                if stop is not None and not getattr(operator, "interactive", True):
                    stop.halt(CTRL_C, 128 + signum)  # the run's, before the block sees it
                sections[-1].pressed = True
                if not waiting:
                    waiting.append(True)
                    loop.call_soon_threadsafe(deliver)
            elif callable(before):
                before(signum, frame)
            else:
                raise KeyboardInterrupt

        if before is not signal.SIG_IGN:  # started to ignore it (nohup): it stays ignored
            signal.signal(signal.SIGINT, handler)
        _ctrl_c[loop] = (before, sections)
    before, sections = _ctrl_c[loop]
    section = Section(event)
    sections.append(section)
    try:
        yield section
    finally:
        sections.remove(section)
        if not sections:
            section.alone = True
            del _ctrl_c[loop]
            signal.signal(signal.SIGINT, before)


async def pause(interrupt: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds`` (a retry delay, a bake's interval), or less when Ctrl-C or a signal
    sets ``interrupt``: never an unstoppable sleep. Whether it was set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(interrupt.wait(), seconds)
    return interrupt.is_set()
