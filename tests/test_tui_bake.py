"""The console while a rollout bakes, on real sshd hosts: the countdown on the block's card,
the health history, the failure menu after a failed check, and stopping a bake to go on.

The countdown's clock is pinned (as the snapshots pin the elapsed time), so what it shows
is exact; the bake itself runs on the real clock, and the tests wait on its events."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from tuikit import finished, kinds, make_app, modal, shown, until, waiting

from runbook.tui import widgets
from runbook.tui.app import RunbookApp
from runbook.tui.screens import ChoiceScreen, ConfirmScreen
from runbook.tui.widgets import BlockCard

SIZE = (120, 40)


def book(tmp_path: Path, bake: str, check: str) -> Path:
    path = tmp_path / "book.md"
    path.write_text(
        "---\nhosts:\n  web: [host1, host2]\n---\n\n## Roll out\n\n"
        f"```sh\n#| name: deploy\n#| on: web\n#| serial: 1\n{bake}echo deployed\n```\n\n"
        f"```sh\n#| name: healthy\n#| on: web\n#| health: true\n{check}\n```\n\n"
        "```sh\n#| rollback: true\necho undone\n```\n"
    )
    return path


class Clock:
    """The countdown's now, set by the test relative to when the bake began."""

    def __init__(self) -> None:
        self.now = 0.0

    def at(self, app: RunbookApp, seconds: float) -> None:
        bake = app.progress.block("deploy").bake
        assert bake is not None and bake.started is not None
        began = datetime.fromisoformat(bake.started.replace("Z", "+00:00")).timestamp()
        self.now = began + seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    pinned = Clock()
    monkeypatch.setattr(widgets, "clock", lambda: pinned.now)
    return pinned


def card(app: RunbookApp) -> str:
    return shown(app.query_one("#card-deploy", BlockCard))


def baking(app: RunbookApp) -> Any:
    return lambda: app.progress.baking == "deploy"


async def test_the_countdown_and_the_failure_menu_after_a_failed_check(
    fleet: Any, tmp_path: Path, clock: Clock
) -> None:
    broken = tmp_path / "broken"  # the check fails from the round after the test makes this
    path = book(tmp_path, "#| bake: 30s\n#| health-interval: 300ms\n", f"test ! -e {broken}")
    app = make_app(path, tmp_path / "runs", ssh_config=fleet.ssh_config)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, waiting(app, "proceed", "deploy"), "the deploy block")
        await pilot.press("n")
        await until(pilot, baking(app), "the bake")
        clock.at(app, 0.25)
        header = "baking after batch 1/2 · 0:30 left · health every 300ms"
        await until(pilot, lambda: header in card(app), "the countdown")
        clock.at(app, 12.5)
        await until(pilot, lambda: "· 0:18 left ·" in card(app), "the countdown to move")
        assert "BAKING" in app.export_screenshot()  # the header's status
        passed = re.compile(r"\n│   round \d+ +✓ host1 ")
        await until(pilot, lambda: passed.search(card(app)), "a round that passed")

        broken.touch()
        await until(pilot, modal(app, ChoiceScreen), "the failure menu")
        prompt = " ".join(shown(app.screen.query_one(".prompt")).split())
        assert "a health check failed while baking after batch 1/2" in prompt
        assert "healthy on host1 (exit 1)" in prompt
        buttons = [b.id for b in app.screen.query("Button")]
        assert buttons == ["choice-retry", "choice-rollback", "choice-abort"]
        bake = app.progress.block("deploy").bake
        assert bake is not None and bake.result == "failed"
        text = card(app)  # the result stays on the card, the countdown is gone
        assert f"bake after batch 1/2: failed in round {bake.rounds}" in text
        assert "left" not in text
        assert f"round {bake.rounds:<3} ✗ host1 (exit 1)" in text
        assert app.query_one("#card-deploy", BlockCard).ticker is None
        assert app.progress.block("deploy").hosts == {"host1": "done"}, "batch 2 never ran"

        await pilot.press("b")
        await until(pilot, modal(app, ConfirmScreen, "Run rollback block"), "the rollback gate")
        await pilot.press("y")
        await until(pilot, finished(app), "the end")
    assert app.outcome is not None and app.outcome.result == "rolled-back"
    decisions = kinds(app, "decision")
    assert [(d["kind"], d["choice"], d["by"]) for d in decisions] == [
        ("bake", "rollback", "operator")
    ]
    ends = kinds(app, "bake.end")
    assert [(e["result"], e["failed"]) for e in ends] == [
        ("failed", {"healthy on host1": "exit 1"})
    ]
    assert [e["host"] for e in kinds(app, "block.start") if e["block"] == "deploy"] == ["host1"]


async def test_the_countdown_ticks_without_events_and_a_stopped_bake_goes_on(
    fleet: Any, tmp_path: Path, clock: Clock
) -> None:
    # Nothing happens for five minutes: only the card's own timer can move the countdown.
    path = book(tmp_path, "#| bake: 10m\n#| health-interval: 5m\n", "true")
    app = make_app(path, tmp_path / "runs", ssh_config=fleet.ssh_config)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, waiting(app, "proceed", "deploy"), "the deploy block")
        await pilot.press("n")
        await until(pilot, baking(app), "the bake")
        clock.at(app, 1)
        await until(pilot, lambda: "· 9:59 left · health every 5m" in card(app), "the countdown")
        clock.at(app, 61.5)
        await until(pilot, lambda: "· 8:59 left ·" in card(app), "the timer to redraw it")
        assert app.query_one("#card-deploy", BlockCard).ticker is not None

        await pilot.press("i")
        await until(pilot, modal(app, ConfirmScreen, "Stop the bake of deploy?"), "the question")
        await pilot.press("y")
        await until(pilot, modal(app, ChoiceScreen), "what now")
        buttons = [b.id for b in app.screen.query("Button")]
        assert buttons == ["choice-go-on", "choice-retry", "choice-rollback", "choice-abort"]
        assert "bake after batch 1/2: interrupted after 0 rounds" in card(app)
        await pilot.press("g")
        await until(pilot, modal(app, ConfirmScreen, "batch 2/2"), "the next batch's gate")
        await pilot.press("y")
        await until(pilot, waiting(app, "proceed", "healthy"), "the health check's own turn")
        assert app.query_one("#card-deploy", BlockCard).ticker is None
        await pilot.press("n")
        await until(pilot, finished(app), "the end")
    assert app.outcome is not None and app.outcome.result == "ok"
    decision = kinds(app, "decision")[0]
    assert (decision["kind"], decision["choice"]) == ("bake", "go-on")
    assert [e["result"] for e in kinds(app, "bake.end")] == ["interrupted"]
    assert [e["host"] for e in kinds(app, "block.start") if e["block"] == "deploy"] == [
        "host1",
        "host2",
    ]
