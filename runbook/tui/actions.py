"""What the operator's keys and the command palette do in the console.

The base of :class:`~runbook.tui.app.RunbookApp`, kept apart from the run's plumbing: each
action is a decision for the engine (answered through ``answer``) or a dialog whose answer
becomes one, and a quit or a signal stops the run the one way ``stop_run`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.markup import escape
from textual.screen import Screen

from runbook.engine.operator import Decision, NeedsOperator
from runbook.engine.session import Outcome, Session
from runbook.format.model import Block, CheckItem, Runbook, Step
from runbook.format.screen import inert
from runbook.record.progress import PENDING, SKIPPED, Progress
from runbook.tui.bridge import QUIT
from runbook.tui.keys import help_text
from runbook.tui.screens import ConfirmScreen, MarkdownScreen, TextScreen


@dataclass
class Waiting:
    """The engine parked until the operator presses a key: ``tick`` or ``proceed``."""

    kind: str
    step: Step
    item: CheckItem | Block
    future: asyncio.Future[Decision] = field(repr=False)


class ConsoleKeys(App[int]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "run_next", "Run next", id="run-next"),
        Binding("space", "tick", "Tick", id="tick"),
        Binding("s", "skip", "Skip", id="skip"),
        Binding("S", "skip_step", "Skip step", id="skip-step"),
        Binding("a", "note", "Note", id="note"),
        Binding("i,ctrl+c", "interrupt", "Interrupt", id="interrupt"),
        Binding("o", "report", "Report", id="report"),
        Binding("question_mark,f1", "help", "Help", id="help"),
        Binding("q", "quit_run", "Quit", id="quit"),
    ]

    # Set by RunbookApp: the run these keys act on.
    rb: Runbook
    progress: Progress
    session: Session | None
    outcome: Outcome | None
    waiting: Waiting | None
    quitting: bool
    quit_dialog: ConfirmScreen | None
    stopped: asyncio.Event

    def show_step(self, index: int) -> None:
        raise NotImplementedError

    def answer(self, decision: Decision) -> None:
        """Answer the question the engine is parked on, if it still is."""
        if self.waiting is not None and not self.waiting.future.done():
            self.waiting.future.set_result(decision)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        waiting = self.waiting.kind if self.waiting else None
        live = self.session is not None and self.outcome is None
        allowed = {
            "run_next": waiting == "proceed",
            "tick": waiting == "tick",
            "skip": waiting is not None,
            "skip_step": waiting == "proceed",
            "note": live,
            "interrupt": live and (self.progress.running or bool(self.progress.baking)),
            "report": self.session is not None,
        }
        return allowed.get(action, True)

    def action_run_next(self) -> None:
        self.answer(Decision("run"))

    def action_tick(self) -> None:
        if self.waiting and self.waiting.kind == "tick":
            self.answer(Decision("ticked"))

    def action_skip(self) -> None:
        waiting = self.waiting
        if waiting is None:
            return
        what = "checklist item" if waiting.kind == "tick" else f"block {waiting.item.name}"  # type: ignore[union-attr]
        choice = "skipped" if waiting.kind == "tick" else "skip"
        self._ask_reason(f"Skip the {what}: why? (recorded)", choice)

    def action_skip_step(self) -> None:
        if self.waiting and self.waiting.kind == "proceed":
            self._ask_reason(f"Skip the rest of step {self.waiting.step.title}: why?", "skip-step")

    def _ask_reason(self, title: str, choice: str) -> None:
        asked = self.waiting  # the reason answers this question, not a later one

        def done(reason: str | None) -> None:
            if reason and self.waiting is asked:
                self.answer(Decision(choice, reason))

        self.push_screen(TextScreen(title, "the reason goes in the transcript"), done)

    def action_note(self) -> None:
        def done(text: str | None) -> None:
            if not text:
                return
            if self.session is not None and self.session.note(text):
                self.notify("Note recorded.", timeout=3)
            else:
                self.notify(
                    f"Not recorded: the run has ended. Your note: {text}",
                    severity="warning",
                    timeout=30,
                )

        self.push_screen(TextScreen("Add a note to the transcript", "what you saw or did"), done)

    def action_interrupt(self) -> None:
        name = self.progress.current_block or "the block"
        baking = self.progress.baking

        def done(yes: bool | None) -> None:
            stoppable = self.progress.running or self.progress.baking
            if yes and self.session is not None and stoppable:
                self.session.interrupt.set()

        prompt = (
            f"Interrupt {name}? Its processes get SIGINT, then SIGTERM and SIGKILL if they"
            " do not stop; then you decide what happens next."
        )
        if baking and not self.progress.running:
            prompt = (
                f"Stop the bake of {baking}? Then you decide: go on to the next batch,"
                " bake again, roll back or abort."
            )
        self.push_screen(ConfirmScreen(prompt, title="Interrupt"), done)

    def action_report(self) -> None:
        from runbook.record.report import render_run

        if self.session is None:
            return
        text = render_run(Path(self.session.writer.path))
        self.push_screen(MarkdownScreen("Report (runbook transcript render)", _listed(text)))

    def action_help(self) -> None:
        self.push_screen(MarkdownScreen("Keys", help_text()))

    async def action_quit(self) -> None:
        """ctrl+q and the palette's Quit go through the same protection as ``q``."""
        self.action_quit_run()

    def action_quit_run(self) -> None:
        if self.session is None or self.outcome is not None:
            self.exit(return_code=self.outcome.exit_code if self.outcome else 1)
            return
        if self.quitting:
            self.notify("Still stopping: the running commands get SIGTERM, then SIGKILL.")
            return
        if self.quit_dialog is not None and self.quit_dialog in self.screen_stack:
            return  # already asking

        def done(yes: bool | None) -> None:
            if yes and self.outcome is None:
                self.stop_run()

        running = self.progress.current_block if self.progress.running else None
        what = f"{running} is running: it will be stopped. " if running else ""
        ends = "rollback-incomplete" if self.progress.rolling_back else "aborted"
        self.quit_dialog = ConfirmScreen(f"{what}Quit and record the run as {ends}?", title="Quit")
        self.push_screen(self.quit_dialog, done)

    def stop_run(self) -> None:
        """Quit: stop what runs (each attempt ends and is recorded as interrupted); the run
        is stopped (``Stop``), so nothing starts after it (a retry, a bake, a next batch)
        and it ends as aborted, never as done. Never a cancel while steps run: that could
        abandon a process group while it is being stopped; only the end's last waits
        (notifications) are cut short."""
        assert self.session is not None
        self.session.stop.halt(QUIT, 1)  # a signal's stop, if one came first, stays
        self.session.cancel(ctrl_c=False)
        self.quitting = True
        self.stopped.set()
        self.session.interrupt.set()
        if self.waiting is not None and not self.waiting.future.done():
            self.waiting.future.set_exception(NeedsOperator(self.why_stopped()))
        if self.progress.running:
            self.notify("Stopping the running commands, then quitting.", timeout=30)

    def why_stopped(self) -> str:
        stop = self.session.stop.reason if self.session is not None else None
        return stop or QUIT

    def signalled(self, sig: signal.Signals) -> None:
        """SIGTERM, SIGHUP (the terminal closed): what a confirmed quit does, recorded as
        stopped by the signal."""
        if sig == signal.SIGHUP:  # the terminal is gone: draw into nothing, never block
            with contextlib.suppress(OSError):
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (1, 2):  # the input thread ends by itself on the hung-up pty
                    os.dup2(null, fd)
                os.close(null)
        if self.session is None or self.outcome is not None:
            self.exit(return_code=128 + sig)
            return
        stop = self.session.stop
        if stop.reason is None:  # once the end is recorded this halts nothing: a quit
            stop.halt(f"stopped by {sig.name}", 128 + sig)
            self.stop_run()

    # ------------------------------------------------------------------ palette

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        for step in self.rb.steps:
            yield SystemCommand(
                _shown(f"Step {step.index}: {step.title}"),
                "Show this step",
                lambda index=step.index: self.show_step(index),
            )
        if self.waiting and self.waiting.kind == "proceed":
            pending = self.waiting.item.name  # type: ignore[union-attr]
            for block in self.rb.blocks:
                if block.runs_forward:
                    status = self.progress.block(block.name).status
                    verb = "Run" if status in (PENDING, SKIPPED) else "Re-run"
                    said = f" ({status})" if status == SKIPPED else ""
                    yield SystemCommand(
                        _shown(f"{verb} block {block.name}{said}"),
                        "The next block: n runs it"
                        if block.name == pending
                        else _shown(f"Run it now, before {pending}"),
                        lambda name=block.name: self.answer(Decision("run-other", block=name)),
                    )
        yield SystemCommand("Add a note", "Recorded in the transcript", self.action_note)
        yield SystemCommand("Help", "Keys and what they do", self.action_help)
        yield from super().get_system_commands(screen)


def _listed(report: str) -> str:
    """The report's two-column tables (the run's facts) as lists: a grid squeezed into a
    terminal cuts a hash or a label short, a list item wraps."""
    out: list[str] = []
    lines = report.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.count("|") == 3 and i + 1 < len(lines) and lines[i + 1] == "|---|---|":
            title = line.strip("| ").strip()
            out += [f"**{title}**", ""] if title else []
            i += 2
            while i < len(lines) and lines[i].startswith("|") and lines[i].count("|") >= 3:
                key, _, value = lines[i].strip().strip("|").partition(" | ")
                out.append(f"- {key.strip()}: {value.strip()}")
                i += 1
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def _shown(text: str) -> str:
    """A palette entry, which Textual reads as markup: a name like `[/]` is text."""
    return escape(inert(text))
