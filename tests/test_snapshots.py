"""Snapshots of the console at 80x24 and 160x50: the main screen and every dialog.

What changes from run to run (the clock, the transcript's path) is pinned, so a snapshot
changes only when the screen does. Update with ``pytest tests/test_snapshots.py
--snapshot-update`` and look at the report before committing new ones.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input
from tuikit import make_app, modal, shown, until, waiting

from runbook.tui import widgets
from runbook.tui.app import RunbookApp
from runbook.tui.screens import (
    ChoiceScreen,
    ConfirmScreen,
    MarkdownScreen,
    TextScreen,
    TypeConfirmScreen,
    VariablesScreen,
)

BOOK = Path(__file__).parent / "fixtures" / "console.md"
SIZES = [(80, 24), (160, 50)]
Snap = Callable[..., bool]


@pytest.fixture
def pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(widgets, "_elapsed", lambda started: "0:04:12")
    monkeypatch.setattr(RunbookApp, "who", lambda self: "alice@laptop")


@pytest.fixture
def app(tmp_path: Path, pinned: None) -> RunbookApp:
    return make_app(BOOK, tmp_path / "runs", assignments=["ENVIRONMENT=production"])


def _settled(app: RunbookApp, ready: Callable[[], bool]) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def run_before(pilot: Pilot[Any]) -> None:
        await until(pilot, ready, "the screen to snapshot")
        app.launch.transcript = "runbook-runs/20261126T101500Z-5f0c2a/transcript.jsonl"
        for block in app.progress.blocks.values():
            if block.duration is not None:
                block.duration = 0.0
        app.dirty = True
        app.refresh_screen()
        for screen in app.screen_stack:  # a screen under a modal may be drawn stale
            for field in screen.query(Input):  # a blinking cursor is drawn on or off
                field.cursor_blink = False
            for widget in screen.query("*"):
                widget.refresh()
        await until(pilot, _still(app), "the screen to settle")

    return run_before


def _still(app: RunbookApp) -> Callable[[], bool]:
    """The screen drew the same thing twice in a row: scrolling and layout are done."""
    last: list[str] = []

    def check() -> bool:
        now = app.export_screenshot()
        same = last == [now]
        last[:] = [now]
        return same

    return check


async def _ticked(pilot: Pilot[Any], app: RunbookApp) -> None:
    for item in ("The change ticket is approved", "#payments-oncall knows a rotation is starting"):
        await until(pilot, waiting(app, "tick", item), item)
        await pilot.press("space")


async def _to_gate(pilot: Pilot[Any], app: RunbookApp) -> None:
    await _ticked(pilot, app)
    await until(pilot, waiting(app, "proceed"), "the first block")
    await pilot.press("n")


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_main_screen(snap_compare: Snap, app: RunbookApp, size: tuple[int, int]) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await _ticked(pilot, app)
        await _settled(app, waiting(app, "proceed", "announce-1"))(pilot)

    assert snap_compare(app, terminal_size=size, run_before=before)


async def _to_failure(pilot: Pilot[Any], app: RunbookApp) -> None:
    await _to_gate(pilot, app)
    await until(pilot, modal(app, ConfirmScreen), "the gate")
    await pilot.press("y")
    await until(pilot, waiting(app, "proceed", "revoke"), "the failing block")
    await pilot.press("n")
    await until(pilot, lambda: modal(app, ChoiceScreen)() and not app.progress.running, "menu")


async def _press(pilot: Pilot[Any], *keys: str) -> None:
    await pilot.press(*keys)


async def _main(pilot: Pilot[Any], app: RunbookApp) -> None:
    await _ticked(pilot, app)
    await until(pilot, waiting(app, "proceed", "announce-1"), "the first block")


async def _to_typed_gate(pilot: Pilot[Any], app: RunbookApp) -> None:
    await _to_failure(pilot, app)
    await pilot.press("s")
    await until(pilot, modal(app, TextScreen), "the reason")
    await pilot.press(*"in use", "enter")
    await until(pilot, waiting(app, "proceed", "publish"), "the typed gate's block")
    await pilot.press("n")


def _then(
    first: Callable[[Pilot[Any], RunbookApp], Awaitable[None]], key: str
) -> Callable[[Pilot[Any], RunbookApp], Awaitable[None]]:
    async def go(pilot: Pilot[Any], app: RunbookApp) -> None:
        await first(pilot, app)
        await pilot.press(key)

    return go


# Every dialog the console opens: how to get there, and the dialog then on top.
DIALOGS: dict[str, tuple[Callable[[Pilot[Any], RunbookApp], Awaitable[None]], type, str]] = {
    "start-form": (lambda pilot, app: _press(pilot), VariablesScreen, "variables"),
    "gate": (_to_gate, ConfirmScreen, "Start the rotation"),
    "typed-gate": (_to_typed_gate, TypeConfirmScreen, "publish"),
    "quit": (_then(_main, "q"), ConfirmScreen, "Quit"),
    "note": (_then(_main, "a"), TextScreen, ""),
    "help": (_then(_main, "question_mark"), MarkdownScreen, ""),
    "failure-menu": (_to_failure, ChoiceScreen, "failed"),
    "skip-reason": (_then(_to_failure, "s"), TextScreen, ""),
    "abort": (_then(_to_failure, "x"), ConfirmScreen, "Abort"),
    "rollback-gate": (_then(_to_failure, "b"), ConfirmScreen, "restore"),
}


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("dialog", DIALOGS)
def test_dialog(
    snap_compare: Snap, tmp_path: Path, size: tuple[int, int], dialog: str, pinned: None
) -> None:
    """Each dialog whole at 80x24 (its buttons, its hints, its footer) and at 160x50."""
    go, cls, text = DIALOGS[dialog]
    app = _app_for(dialog, tmp_path)

    async def before(pilot: Pilot[Any]) -> None:
        await go(pilot, app)
        await _settled(app, lambda: modal(app, cls)() and text in _prompt(app))(pilot)

    assert snap_compare(app, terminal_size=size, run_before=before)


def _app_for(dialog: str, tmp_path: Path) -> RunbookApp:
    """The console on the fixture; the start form shows only while a value is missing."""
    assignments = [] if dialog == "start-form" else ["ENVIRONMENT=production"]
    return make_app(BOOK, tmp_path / "runs", assignments=assignments)


def _prompt(app: RunbookApp) -> str:
    prompts = app.screen.query(".prompt, .dialog-title")
    return " ".join(shown(p) for p in prompts) if prompts else ""


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("dialog", DIALOGS)
async def test_each_dialog_is_whole(
    tmp_path: Path, size: tuple[int, int], dialog: str, pinned: None
) -> None:
    """Its title, prompt, every button and its footer's keys are on screen, uncut."""
    go, cls, text = DIALOGS[dialog]
    app = _app_for(dialog, tmp_path)
    async with app.run_test(size=size) as pilot:
        await go(pilot, app)
        await until(pilot, lambda: modal(app, cls)() and text in _prompt(app), "the dialog")
        await until(pilot, _still(app), "the screen to settle")
        screen = app.screen
        for dialog in screen.query(".dialog"):
            whole = dialog.content_region
            assert screen.region.contains_region(dialog.region), dialog
            hints = [h for h in dialog.query(".hint") if h.display]
            for widget in [*dialog.query(".dialog-title"), *dialog.query(".prompt"),
                           *dialog.query("Button"), *dialog.query("Input"), *hints]:  # fmt: skip
                assert widget.region.area and whole.contains_region(widget.region), widget
            for command in dialog.query(".command"):  # a script cut short says so
                assert not command.max_scroll_y or any("scroll" in shown(h) for h in hints)
        footer = app.export_screenshot()
        assert "^q" in footer and "Quit" in footer
