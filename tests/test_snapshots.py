"""Snapshots of the console at 80x24 and 160x50: the main screen, a gate, the failure menu.

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
from tuikit import make_app, modal, until, waiting

from runbook.tui import widgets
from runbook.tui.app import RunbookApp
from runbook.tui.screens import ChoiceScreen, ConfirmScreen

BOOK = Path(__file__).parent / "fixtures" / "console.md"
SIZES = [(80, 24), (160, 50)]
Snap = Callable[..., bool]


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RunbookApp:
    monkeypatch.setattr(widgets, "_elapsed", lambda started: "0:04:12")
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


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_gate_modal(snap_compare: Snap, app: RunbookApp, size: tuple[int, int]) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await _to_gate(pilot, app)
        await _settled(app, modal(app, ConfirmScreen))(pilot)

    assert snap_compare(app, terminal_size=size, run_before=before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_failure_menu(snap_compare: Snap, app: RunbookApp, size: tuple[int, int]) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await _to_gate(pilot, app)
        await until(pilot, modal(app, ConfirmScreen), "the gate")
        await pilot.press("y")
        await until(pilot, waiting(app, "proceed", "revoke"), "the failing block")
        await pilot.press("n")
        await _settled(app, lambda: modal(app, ChoiceScreen)() and not app.progress.running)(pilot)

    assert snap_compare(app, terminal_size=size, run_before=before)
