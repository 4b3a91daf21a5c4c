"""Modal screens: every question the engine asks, and the operator's own requests.

Each returns its answer with ``dismiss``; the operator bridge awaits it with
``push_screen_wait``. Confirmations default to No: Enter on a fresh gate declines.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import ClassVar, TypeVar

from rich.console import RenderableType
from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Markdown, Select, Static

from runbook.engine.operator import MENU, Decision
from runbook.format.model import Variable
from runbook.format.screen import inert
from runbook.format.variables import VariableProblem, check_value
from runbook.tui.footer import Footer
from runbook.tui.plain import plain

T = TypeVar("T")


COMMAND_LINES = 12


def command_view(command: str) -> ComposeResult:
    """The command exactly as it will run (no highlighter may reflow it; variables reach
    it through the environment, never by rewriting this text). A long one scrolls, and
    says so: the end of a command is often the part that matters."""
    lines = command.rstrip("\n").splitlines()
    with CommandView(len(lines)):
        yield Static(plain("\n".join(lines), style="bright_white"))
    hint = Static(
        f"{len(lines)} lines: scroll to read them all (mouse wheel, or tab to it and use"
        " the arrow keys)",
        classes="hint command-hint",
    )
    hint.display = len(lines) > COMMAND_LINES  # and when a small screen shrinks it: _fit
    yield hint


class CommandView(VerticalScroll):
    """A dialog's command, scrolling; it knows how many lines it has, so that a dialog
    that must cut it short can say so."""

    def __init__(self, total: int) -> None:
        super().__init__(classes="command")
        self.total = total


TYPING_SECONDS = 0.5
"""A one-letter answer right after other keys is someone typing text (a note meant for a
dialog that never opened): it is not taken as an answer."""


class Dialog(ModalScreen[T]):
    """A modal that answers once: a second key or click never dismisses another screen.

    ctrl+q quits from any dialog (shown in its footer); where letters answer, so does ``q``.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "app.quit_run", "Quit", key_display="^q", priority=True)
    ]

    def __init__(self) -> None:
        super().__init__(classes="modal")
        self.answered = False
        self.stray = 0.0
        """When a key this dialog has no use for was last pressed."""

    def on_resize(self) -> None:
        """A command in the dialog shrinks until the dialog fits (its buttons, its hints):
        on a small terminal the end of the dialog matters more than more of the script."""
        for dialog in self.query(".dialog"):
            for command in dialog.query(CommandView):
                command.styles.max_height = COMMAND_LINES
                dialog.query(".command-hint").set(display=command.total > COMMAND_LINES)
        self.call_after_refresh(self._fit)

    def _fit(self) -> None:
        for dialog in self.query(".dialog"):
            overflow = dialog.max_scroll_y
            for command in dialog.query(CommandView) if overflow > 0 else ():
                height = command.outer_size.height - overflow
                hints = dialog.query(".command-hint")
                if hints and not hints.first().display and command.total > height:
                    hint = hints.first()
                    hint.display = True  # it is cut now: say so, in the room it takes
                    height -= -(-len(str(hint.render())) // max(1, dialog.content_size.width))
                command.styles.max_height = max(3, height)

    def on_screen_suspend(self) -> None:
        """Another dialog opened on top (the reason for a skip, the quit): this one steps
        back rather than showing its edges around the new one."""
        self.query(".dialog").set(display=False)

    def on_screen_resume(self) -> None:
        self.query(".dialog").set(display=True)

    def answer(self, value: T) -> None:
        if self.answered or self.app.screen is not self:
            return
        self.answered = True
        self.dismiss(value)

    def note_stray(self, event: events.Key) -> None:
        """A printable key that answers nothing here: someone may be typing text."""
        self.stray = time.monotonic()

    def typing(self) -> bool:
        """Whether a letter that would answer should be ignored (see TYPING_SECONDS)."""
        if time.monotonic() - self.stray < TYPING_SECONDS:
            self.notify("Typing? Press the answer's key on its own.", severity="warning")
            self.stray = time.monotonic()
            return True
        return False


class ConfirmScreen(Dialog[bool]):
    """A yes/no gate; No is focused, so a reflexive Enter declines."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
        Binding("q", "app.quit_run", "Quit", show=False),
    ]

    def __init__(self, prompt: str, command: str | None = None, title: str = "Confirm") -> None:
        super().__init__()
        self.prompt, self.command, self.heading = prompt, command, title

    def compose(self) -> ComposeResult:
        yield Footer()
        with Vertical(classes="dialog"):
            yield Label(plain(self.heading), classes="dialog-title")
            yield Static(plain(self.prompt), classes="prompt")
            if self.command:
                yield from command_view(self.command)
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", id="yes", variant="warning")
                yield Button("No (n)", id="no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_answer(self, yes: bool) -> None:
        if not self.typing():
            self.answer(yes)

    def on_key(self, event: events.Key) -> None:
        if event.is_printable and event.character not in ("y", "n", "q"):
            self.note_stray(event)

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.answer(event.button.id == "yes")


class TypeConfirmScreen(Dialog[str | None]):
    """A typed confirmation: the exact text goes on, Escape declines."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "decline", "Decline")]

    def __init__(self, prompt: str, expected: str, command: str | None = None) -> None:
        super().__init__()
        self.prompt, self.expected, self.command = prompt, expected, command

    def compose(self) -> ComposeResult:
        yield Footer()
        with Vertical(classes="dialog"):
            yield Label("Typed confirmation", classes="dialog-title")
            yield Static(plain(self.prompt), classes="prompt")
            if self.command:
                yield from command_view(self.command)
            yield Static(Text.assemble("Type ", plain(self.expected, "bold"), " to go on:"))
            yield Input(placeholder=self.expected, id="typed")
            yield Static("", id="problem", classes="problem")
            yield Static("Enter to submit, Escape to decline", classes="hint")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        if event.value == self.expected:
            self.answer(event.value)
        else:
            self.query_one("#problem", Static).update(plain(f"That is not {self.expected!r}."))

    def action_decline(self) -> None:
        self.answer(None)


class ChoiceScreen(Dialog[Decision]):
    """After a failure, a declined gate or an unknown outcome: what now. Nothing is
    focused, so Enter chooses nothing: re-running or retrying takes its letter."""

    AUTO_FOCUS = ""  # "" focuses nothing (None would fall back to the first button)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "app.quit_run", "Quit", show=False),
        # why a retry, a skip or an abort: the moment to say it is before choosing
        Binding("a", "app.note", "Note"),
    ]

    def __init__(
        self, title: str, problem: str, choices: Sequence[str], ends: str = "aborted"
    ) -> None:
        super().__init__()
        self.heading, self.problem, self.choices = title, problem, tuple(choices)
        self.ends = ends
        """The run's result if the operator aborts here (during a rollback, incomplete)."""
        self.keys = {MENU[c][0]: c for c in self.choices}
        for key, choice in self.keys.items():  # shown in the footer; on_key answers them
            label = re.sub(r"\[(\w)\]", r"\1", re.sub(r"\s*\[\w\]$", "", MENU[choice][1]))
            self._bindings.bind(key, f"decide('{choice}')", label.capitalize())

    def compose(self) -> ComposeResult:
        yield Footer()
        with Vertical(classes="dialog danger"):
            yield Label(plain(self.heading), classes="dialog-title")
            yield Static(plain(self.problem), classes="prompt")
            with Horizontal(classes="buttons"):
                for choice in self.choices:
                    yield Button(Content(MENU[choice][1]), id=f"choice-{choice}")

    def on_key(self, event: events.Key) -> None:
        choice = self.keys.get(event.character or "")
        if choice is None:
            if event.is_printable:
                self.note_stray(event)
        else:
            event.stop()  # the answer's key must not also reach the app
            event.prevent_default()  # nor run its binding a second time
            if not self.typing():
                self.decide(choice)

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        assert event.button.id is not None
        self.decide(event.button.id.removeprefix("choice-"))

    def action_decide(self, choice: str) -> None:
        self.decide(choice)

    def decide(self, choice: str) -> None:
        if self.answered or self.app.screen is not self:
            return
        if choice == "abort":  # destructive: asked once more, No is focused

            def sure(yes: bool | None) -> None:
                if yes:
                    self.answer(Decision("abort"))

            prompt = f"Abort: run nothing more and record the run as {self.ends} here?"
            self.app.push_screen(ConfirmScreen(prompt, title="Abort"), sure)
            return
        if choice not in ("skip", "mark-done"):
            self.answer(Decision(choice))
            return

        def with_reason(reason: str | None) -> None:
            if reason:
                self.answer(Decision(choice, reason))

        what = re.sub(r"\[(\w)\]", r"\1", MENU[choice][1])  # "[s]kip": the key, not the word
        self.app.push_screen(TextScreen(f"Why {what}? (recorded)"), with_reason)


class TextScreen(Dialog[str | None]):
    """One line of text: a reason or a note; Escape gives ``None``. Enter with nothing
    typed says so and stays open: closing then looked like the skip or note was taken."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, placeholder: str = "") -> None:
        super().__init__()
        self.heading, self.placeholder = title, placeholder

    def compose(self) -> ComposeResult:
        yield Footer()
        with Vertical(classes="dialog"):
            yield Label(plain(self.heading), classes="dialog-title")
            yield Input(placeholder=self.placeholder, id="text")
            yield Static("Enter to record, Escape to cancel", classes="hint", id="text-hint")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.answer(event.value.strip())
            return
        hint = self.query_one("#text-hint", Static)
        hint.update("Nothing typed: type it, then Enter; Escape cancels")
        hint.set_classes("problem")

    def action_cancel(self) -> None:
        self.answer(None)


class VariablesScreen(Dialog[dict[str, str] | None]):
    """The start form: one field per variable (a list to pick from where the runbook names
    the choices), checked as typed, secrets masked. A field says what is wrong with it only
    once it was edited, or Start was pressed: not before anyone typed."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "start", "Start"),
    ]

    def __init__(self, variables: Sequence[Variable], title: str = "Variables") -> None:
        super().__init__()
        self.variables, self.heading = tuple(variables), title
        self.touched: set[str] = set()

    def compose(self) -> ComposeResult:
        yield Footer()
        with VerticalScroll(classes="dialog form"):
            yield Label(plain(self.heading), classes="dialog-title")
            for var in self.variables:
                hints = [h for h in (var.description,) if h]
                if var.pattern:
                    hints.append(f"pattern: {var.pattern}")
                name = plain(var.prompt or var.name, "bold")
                yield Label(Text.assemble(name, f"  ({var.name})") if var.prompt else name)
                if hints:
                    yield Static(plain("; ".join(hints)), classes="hint")
                yield self._field(var)
                yield Static("", id=f"problem-{var.name}", classes="problem")
            yield Static(
                "ctrl+s to start (or Enter in a text field) · tab: the next field · escape: cancel",
                classes="hint",
            )
            with Horizontal(classes="buttons"):
                yield Button("Start", id="start", variant="primary")
                yield Button("Cancel", id="cancel")

    def _field(self, var: Variable) -> Input | Select[str]:
        if var.choices and not var.secret:
            default = var.default if var.default in var.choices else None
            return Select(
                [(plain(c), c) for c in var.choices],
                prompt=f"choose one of {len(var.choices)}",
                allow_blank=default is None,
                value=Select.NULL if default is None else default,
                id=f"var-{var.name}",
                classes="variable",
            )
        return Input(
            value=var.default or "",
            password=var.secret,
            id=f"var-{var.name}",
            classes="variable",
        )

    def on_mount(self) -> None:
        self.query(".variable").first().focus()

    def _value(self, var: Variable) -> str:
        field = self.query_one(f"#var-{var.name}")
        if isinstance(field, Select):
            return "" if field.value is Select.NULL else str(field.value)
        assert isinstance(field, Input)
        return field.value

    def _check(self, var: Variable, value: str) -> bool:
        problem = self.query_one(f"#problem-{var.name}", Static)
        try:
            check_value(var, value)
        except VariableProblem as e:
            if var.name in self.touched:
                problem.update(plain(str(e)))
            return False
        problem.update("")
        return True

    def _edited(self, field: Widget) -> None:
        var = next(v for v in self.variables if f"var-{v.name}" == field.id)
        self.touched.add(var.name)
        self._check(var, self._value(var))

    @on(Input.Changed)
    def changed(self, event: Input.Changed) -> None:
        self._edited(event.input)

    @on(Select.Changed)
    def chosen(self, event: Select.Changed) -> None:
        self._edited(event.select)

    @on(Input.Submitted)
    @on(Button.Pressed, "#start")
    def action_start(self) -> None:
        values = {v.name: self._value(v) for v in self.variables}
        self.touched.update(values)
        bad = [v for v in self.variables if not self._check(v, values[v.name])]
        if bad:
            self.query_one(f"#var-{bad[0].name}").focus()
            return
        self.answer(values)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.answer(None)


class MarkdownScreen(Dialog[None]):
    """The run's report (Markdown) or the keys (ready to draw): to read; Escape or q closes."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "close", "Close")]

    def __init__(self, title: str, body: str | RenderableType) -> None:
        super().__init__()
        self.heading, self.body = title, body

    def compose(self) -> ComposeResult:
        yield Footer()
        with VerticalScroll(classes="dialog reader"):
            yield Label(plain(self.heading), classes="dialog-title")
            if isinstance(self.body, str):
                yield Markdown(inert(self.body))
            else:
                yield Static(self.body)

    def action_close(self) -> None:
        self.answer(None)
