"""The TUI's Operator: every question of the engine becomes a screen or a key to press.

The session runs in a Textual worker on the app's own event loop, so these coroutines
can await modal screens (``push_screen_wait``) and futures the key bindings resolve.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from textual.screen import ModalScreen

from runbook.engine.operator import Decision, NeedsOperator, NotAsked
from runbook.format.model import Block, CheckItem, Step, Variable
from runbook.record.progress import Progress
from runbook.tui.screens import ChoiceScreen, ConfirmScreen, TypeConfirmScreen, VariablesScreen

T = TypeVar("T")


class Console(Protocol):
    """What the operator needs of the app (``RunbookApp``), so this module never imports it."""

    quitting: bool
    last_gate: dict[str, Any] | None
    viewed: int | None
    progress: Progress

    def record(self, event: dict[str, Any]) -> None: ...
    def display_failed(self, error: Exception) -> None: ...
    async def ask(self, screen: ModalScreen[T]) -> T: ...
    async def wait_for(self, kind: str, step: Step, item: CheckItem | Block) -> Decision: ...
    async def bring_to_view(self, block: Block) -> None: ...


QUIT = "quit from the console"


class TUIOperator:
    name = "tui"
    auto = False
    interactive = True
    output_chunk = 64 * 1024
    """Smaller than a headless run's: the console draws each event on the loop that reads
    keys (bench/tui_responsiveness.py, median key press while streaming: 54 ms at 64 KiB,
    88 ms at 256 KiB)."""

    def __init__(self, app: Console) -> None:
        self.app = app

    def show(self, event: dict[str, Any]) -> None:
        try:
            self.app.record(event)
        except Exception as e:  # a display bug must not stop a run that is being recorded
            self.app.display_failed(e)

    def _quitting(self) -> None:
        """After a quit, every question ends the run (recorded as aborted)."""
        if self.app.quitting:
            raise NotAsked(QUIT)

    async def confirm(self, prompt: str) -> bool:
        self._quitting()
        gate = self.app.last_gate or {}
        titles = {
            "batch": "Next batch",
            "rollback": "Rollback",
            "optional": "Optional block",
            "known-hosts": "known_hosts",
        }
        title = titles.get(gate.get("gate", ""), "Confirm")
        if gate.get("where") and gate.get("gate") != "known-hosts":
            title = f"{title} · {gate['where']}"
        # Between batches the output matters more than the command: the dialog sits on top.
        command = gate.get("command") if gate.get("gate") not in ("known-hosts", "batch") else None
        screen = ConfirmScreen(prompt, command, title)
        screen.set_class(gate.get("gate") == "batch", "top")
        yes = await self.app.ask(screen)
        return bool(yes)

    async def type_to_confirm(self, prompt: str, expected: str) -> str | None:
        self._quitting()
        gate = self.app.last_gate or {}
        command = gate.get("command") if gate.get("gate") == "type-to-confirm" else None
        if gate.get("where") and gate.get("gate") == "type-to-confirm":
            prompt = f"{prompt} It runs {gate['where']}."
        answer = await self.app.ask(TypeConfirmScreen(prompt, expected, command))
        return answer if isinstance(answer, str) else None

    async def tick(self, step: Step, item: CheckItem) -> Decision:
        self._quitting()
        return await self.app.wait_for("tick", step, item)

    async def ask_value(self, variable: Variable) -> str:
        self._quitting()
        values = await self.app.ask(
            VariablesScreen([variable], title=f"A value for {variable.name}")
        )
        if not isinstance(values, dict):
            raise NeedsOperator(f"no value for {variable.name}: the operator cancelled")
        return str(values[variable.name])

    async def choose(self, block: Block, problem: str, choices: Sequence[str]) -> Decision:
        self._quitting()
        title = "Outcome unknown" if "mark-done" in choices else f"{block.name}: what now?"
        await self.app.bring_to_view(block)
        ends = "rollback-incomplete" if self.app.progress.rolling_back else "aborted"
        answer = await self.app.ask(ChoiceScreen(title, problem, choices, ends))
        return answer if isinstance(answer, Decision) else Decision("abort", "no answer")

    async def proceed(self, step: Step, block: Block) -> Decision:
        self._quitting()
        return await self.app.wait_for("proceed", step, block)
