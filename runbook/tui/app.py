"""The operator's console: a thin Textual shell over a Session.

The engine runs in a worker and asks its questions through :class:`TUIOperator`; events
come back through ``record``, fold into a :class:`Progress`, and reach the screen on a
timer in batches, so megabytes of output never starve the keyboard.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from textual import on, work
from textual.app import ComposeResult
from textual.await_complete import AwaitComplete
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.driver import Driver
from textual.drivers.linux_driver import LinuxDriver
from textual.notifications import SeverityLevel
from textual.screen import ModalScreen, Screen
from textual.widgets import OptionList

from runbook.engine.operator import Decision, NeedsOperator, NotAsked, Operator
from runbook.engine.session import Outcome, Session
from runbook.engine.stopping import SIGNALS as STOP_SIGNALS
from runbook.format.inputs import BadUsage, Refused
from runbook.format.model import Block, CheckItem, Runbook, Step, Variable
from runbook.format.screen import inert
from runbook.notify.notices import warning as notice_warning
from runbook.record import events as ev
from runbook.record.progress import Progress
from runbook.tui.actions import ConsoleKeys, Waiting
from runbook.tui.bridge import TUIOperator
from runbook.tui.driver import HangupSafeDriver
from runbook.tui.follow import Follow
from runbook.tui.footer import Footer
from runbook.tui.screens import (
    ConfirmScreen,
    VariablesScreen,
)
from runbook.tui.widgets import (
    LOG_LINES,
    HeaderBar,
    HostStrip,
    OutputPane,
    StepOutline,
    StepView,
)

T = TypeVar("T")
Starter = Callable[[Operator, Mapping[str, str]], tuple[Session, Sequence[dict[str, Any]]]]


@dataclass
class Launch:
    """What the console starts: the runbook, the variables to ask, and how to start."""

    rb: Runbook
    start: Starter
    ask: tuple[Variable, ...] = ()
    """Variables without a value from ``--var``: the start form asks them."""
    transcript: str = ""


class RunbookApp(ConsoleKeys):
    CSS_PATH = "runbook.tcss"
    TITLE = "runbook"

    def __init__(self, launch: Launch) -> None:
        super().__init__()
        self.launch = launch
        self.rb = launch.rb
        self.operator = TUIOperator(self)
        self.progress = Progress(self.rb)
        self.session: Session | None = None
        self.outcome: Outcome | None = None
        self.waiting: Waiting | None = None
        self.to_reveal: str | None = None
        """The block whose card is to be scrolled into view once it is laid out."""
        self.last_gate: dict[str, Any] | None = None
        self.ticks: dict[tuple[int, int], str] = {}
        self.viewed: int | None = None
        self.wanted: int | None = None
        self.follow = Follow(keep=LOG_LINES)
        self.view_lock = asyncio.Lock()
        self.dirty = True
        self.quitting = False
        self.quit_dialog: ConfirmScreen | None = None
        self.display_error = False
        self.dialogs_closed = asyncio.Event()
        self.asking = False
        """A question of the run's is open (the header says the run waits for the operator)."""
        self.stopped = asyncio.Event()
        """Set once the run is being stopped: an open question ends unanswered."""

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        with Horizontal(id="body"):
            yield StepOutline(id="outline")
            with Vertical(id="main"):
                yield StepView()
                yield HostStrip(id="hosts")
                yield OutputPane()
        yield Footer()

    def get_driver_class(self) -> type[Driver]:
        driver = super().get_driver_class()
        return HangupSafeDriver if driver is LinuxDriver else driver

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """Every toast is plain text, its controls escaped: most quote a host, a server, a
        note; none may drive the terminal or be read as markup."""
        super().notify(
            inert(message), title=inert(title), severity=severity, timeout=timeout, markup=False
        )

    def on_mount(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            with contextlib.suppress(ValueError, RuntimeError):  # not the main thread
                loop.add_signal_handler(sig, self.signalled, sig)
        self.call_after_refresh(self.set_interval, 1 / 15, self.refresh_screen)
        self.query_one(StepOutline).show(self.rb, self.progress)
        if self.rb.steps:
            self.show_step(self.rb.steps[0].index)
        if self.launch.ask:
            self.push_screen(
                VariablesScreen(self.launch.ask, title=f"{self.rb.title}: variables"),
                self.begin,
            )
        else:
            self.begin({})

    def on_unmount(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(sig)

    # ------------------------------------------------------------------ the run

    def begin(self, values: Mapping[str, str] | None) -> None:
        if values is None:
            self.exit(
                return_code=1, message="runbook: cancelled at the start form; nothing was run"
            )
            return
        try:
            self.session, history = self.launch.start(self.operator, values)
        except (Refused, BadUsage) as e:
            self.exit(return_code=1, message=f"runbook: {e}")
            return
        self.launch.transcript = _shortest(Path(self.session.writer.path))
        self.rb = self.session.rb  # the runbook as the session runs it
        self.progress = Progress(self.rb)
        self.viewed = None
        for event in history:
            self.record(event)
        self.progress.stopped()
        if history:
            self.follow.resumed()
            self.notify(
                f"Resumed: {len(history)} earlier events replayed; the output pane shows the"
                " end of the earlier output, the earlier transcript files all of it.",
                title="Resumed run",
                timeout=8,
            )
        if self.rb.steps:
            self.show_step(self.progress.current_step or self.rb.steps[0].index)
        self.drive()

    @work(exclusive=True, exit_on_error=False, group="session")
    async def drive(self) -> None:
        assert self.session is not None
        try:
            self.outcome = await self.session.run()
        except Exception as e:  # the engine records its own errors; this is a bug of ours
            self.outcome = Outcome("error", 1, f"the console failed: {e!r}")
            self.notify(str(self.outcome.message), title="Error", severity="error", timeout=60)
        self.waiting = None
        self.dirty = True
        self.refresh_screen()
        if self.quitting:
            self.exit(return_code=self.outcome.exit_code)
            return
        self.notify(
            f"{self.outcome.result}: {self.outcome.message.rstrip('.')}. o: the report, q: quit",
            title="The run ended",
            severity="information" if self.outcome.result == "ok" else "warning",
            timeout=30,
        )
        self.refresh_bindings()

    async def wait_for(self, kind: str, step: Step, item: CheckItem | Block) -> Decision:
        """Park the engine until the operator presses the key for ``kind``."""
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self.waiting = Waiting(kind, step, item, future)
        self.dirty = True
        self.show_step(step.index)
        self.refresh_bindings()
        try:
            return await future
        finally:
            self.waiting = None
            self.dirty = True
            self.refresh_bindings()

    async def ask(self, screen: ModalScreen[T]) -> T:
        """A question from the engine, once whatever the operator has open is closed.

        A note being typed, an interrupt being confirmed, the palette, help: keys meant
        for them must never answer the engine's question, so the question waits.
        """
        told = False
        while self.screen is not self.screen_stack[0]:
            if not told:
                self.notify("The run has a question for you: it opens when this closes.")
                told = True
            self.dialogs_closed.clear()
            await self.dialogs_closed.wait()
        if self.quitting:  # the dialog it waited for was the quit
            raise NotAsked(self.why_stopped())
        self.refresh_screen()  # the output so far is on screen before the question covers it
        answer = self.push_screen(cast(Screen[Any], screen), wait_for_dismiss=True)
        stopped = asyncio.ensure_future(self.stopped.wait())
        self.asking = True
        try:
            await asyncio.wait({answer, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.asking = False
            stopped.cancel()
        if answer.done():
            return cast(T, answer.result())
        # Stopped (a confirmed quit, a signal) while the question was open: it ends
        # unanswered, at once, and nothing more runs.
        answer.cancel()
        while screen in self.screen_stack:
            await self.pop_screen()
        raise NeedsOperator(self.why_stopped())

    def pop_screen(self) -> AwaitComplete:
        """Any screen closed: a question waiting in ``ask`` looks again."""
        done = super().pop_screen()
        self.dialogs_closed.set()
        if self.to_reveal is not None:
            self.call_after_refresh(self._scroll_to_revealed)
        return done

    # ------------------------------------------------------------------ events in

    def record(self, event: dict[str, Any]) -> None:
        """Every event, as recorded: fold it and mark what must be redrawn."""
        kind = event["type"]
        if kind == ev.OUTPUT:
            self.follow.output(event)
            return
        self.progress.apply(event)
        self.dirty = True
        if kind == ev.NOTIFY:
            problem = notice_warning(event)
            if problem:
                self.notify(problem, title="Notification", severity="warning", timeout=10)
            return
        if kind == ev.NOTE and event.get("runbook_changed"):
            self.notify(event["text"], title="The runbook changed", severity="warning", timeout=600)
        elif kind == ev.STEP_ENTER:
            self.show_step(event["step"])
        elif kind == ev.CHECK_TICK:
            self.ticks[(event["step"], event["item"])] = event["result"]
        elif kind == ev.GATE_ASK:
            self.last_gate = event
            step = self.progress.step_of.get(event["block"])
            if step is not None:
                self.show_step(step)
        elif kind == ev.BLOCK_START:
            target = self.follow.started(event)
            if not event.get("bake"):  # a health check's rounds would jump a line being read
                self.query_one(OutputPane).home(event.get("host") or "local")
            self.focus_output(target)
            index = event.get("step")
            if index and self.viewed != index and not self.waiting:
                self.show_step(index)
        elif kind == ev.BLOCK_END:
            self.focus_output(self.follow.ended(event))
        elif kind == ev.RUN_END:
            self.refresh_bindings()

    def focus_output(self, target: str | None) -> None:
        if target is not None:
            self.call_later(self.query_one(OutputPane).focus_target, target)

    def display_failed(self, error: Exception) -> None:
        """The screen may be behind; the transcript is not."""
        if not self.display_error:
            self.display_error = True
            self.notify(
                f"The display failed ({error!r}); the run goes on and is recorded in full.",
                severity="error",
                timeout=60,
            )

    def refresh_screen(self) -> None:
        """Flush output in batches and redraw what changed; runs on a timer."""
        with contextlib.suppress(NoMatches):  # NoMatches: shutting down, the widgets are gone
            self._refresh()

    def _refresh(self) -> None:
        pane = self.query_one(OutputPane)
        now = time.monotonic()
        # Under a dialog the output waits (bounded, in its buffer): drawing it there would
        # only slow down the dialog the operator is looking at.
        covered = self.screen is not self.screen_stack[0]
        # A batch of more lines than the log keeps pushes the older ones out; clearing the
        # log first would reset its size and lay the whole screen out on every refresh.
        for target, buffer in () if covered else self.follow.pending.items():
            lines = buffer.drain(now)
            if lines:
                pane.log_for(target).write_lines(lines)
        header = self.query_one(HeaderBar)
        asking = self.waiting is not None or self.asking
        header.show(
            self.rb, self.progress, self.environment(), self.who(), self.launch.transcript, asking
        )
        if not self.dirty:
            return
        self.dirty = False
        self.query_one(StepOutline).show(self.rb, self.progress)
        self.redraw_step()

    def redraw_step(self) -> None:
        view = self.query_one(StepView)
        if view.step is None:
            return
        waiting, index = self.waiting, view.step.index
        ticks = {i: r for (s, i), r in self.ticks.items() if s == index}
        ticking = None
        if waiting and waiting.kind == "tick" and waiting.step.index == index:
            assert isinstance(waiting.item, CheckItem)
            ticking = view.step.checklist.index(waiting.item)
        gated = waiting.item.name if waiting and waiting.kind == "proceed" else None  # type: ignore[union-attr]
        if view.show_state(self.progress, ticks, gated, ticking) is not None:
            assert gated is not None
            self.reveal(gated)
        self.query_one(HostStrip).show(self.progress)

    def reveal(self, block: str) -> None:
        """Keep the card of ``block`` (the one a question is about) in view, once the
        layout is done: now, or when its step has loaded."""
        self.to_reveal = block
        self.call_after_refresh(self._scroll_to_revealed)

    async def bring_to_view(self, block: Block) -> None:
        """Show ``block``'s step with its card in view, and return once that is drawn: a
        dialog about the block opens over the screen as it will stay (the screen under a
        dialog is not reliably redrawn)."""
        if block.step is not None:
            self.wanted = block.step
            await self._load_step()
        drawn: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def scroll(before: object = None) -> None:
            # Until the card holds still between two refreshes: a step just mounted may
            # still be laying out (its card grows), and a scroll made before then would
            # stay wrong under the dialog, which is not redrawn beneath.
            cards = self.query_one(StepView).cards()
            card = next((c for c in cards if c.block.name == block.name), None)
            now = None if card is None else (card.virtual_region, card.size)
            if now is None or now == before:
                if now is None:  # not mounted (yet): scrolled to when its step loads
                    self.to_reveal = block.name
                if not drawn.done():
                    drawn.set_result(None)
                return
            self.to_reveal = block.name
            self._scroll_to_revealed()
            self.call_after_refresh(scroll, now)

        self.call_after_refresh(scroll)
        with contextlib.suppress(TimeoutError):  # shutting down: no more refreshes
            await asyncio.wait_for(drawn, 2.0)

    def _scroll_to_revealed(self) -> None:
        if self.screen is not self.screen_stack[0]:
            return  # a screen under a dialog is not redrawn: scrolled once the dialog closes
        view = self.query_one(StepView)
        for card in view.cards():
            if card.block.name == self.to_reveal:
                view.show_card(card)
                self.to_reveal = None

    def show_step(self, index: int) -> None:
        """Show step ``index``; the latest request wins, loads never interleave."""
        self.wanted = index
        self.run_worker(self._load_step(), group="view")

    async def _load_step(self) -> None:
        async with self.view_lock:
            index = self.wanted
            # A resumed run of a changed runbook (--allow-changed) may name steps it no
            # longer has: nothing to show for those.
            if index is None or index == self.viewed or not 1 <= index <= len(self.rb.steps):
                return
            await self.query_one(StepView).load(self.rb, self.rb.steps[index - 1])
            self.viewed = index
            self.dirty = True
            if self.to_reveal is not None:
                self.call_after_refresh(self._scroll_to_revealed)

    def who(self) -> str:
        """The operator as the record and the notifications name them (``user@host``);
        the transcript's ``operator`` field says through what: ``tui``."""
        return self.session.operator_name if self.session else ""

    def environment(self) -> str:
        values = self.session.values if self.session else {}
        for name in ("ENVIRONMENT", "ENV", "TARGET"):
            if values.get(name):
                return f"env {values[name]}"
        groups = ", ".join(g.name for g in self.rb.hosts)
        return f"hosts {groups}" if groups else "local"

    @on(OptionList.OptionSelected, "#outline")
    def outline_selected(self, event: OptionList.OptionSelected) -> None:
        assert event.option.id is not None
        self.show_step(int(event.option.id.removeprefix("step-")))


def _shortest(path: Path) -> str:
    """The path to show: relative to the working directory when it is under it."""
    absolute = path.resolve()
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)
