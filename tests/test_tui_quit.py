"""Quit at every kind of question the console asks: the question ends at once, recorded as
stopped by the quit, nothing it guards (nor anything after it) runs, and the run ends aborted.

Each case reaches its question for real (a failing block, a rollout on the sshd fleet, an
unknown host key, a bake), then quits with the key the dialog's footer shows: ``q`` where
letters answer, ``ctrl+q`` everywhere (also where a text field takes the letters)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from tuikit import events, finished, kinds, make_app, modal, until, waiting

from runbook.tui.app import Launch, RunbookApp
from runbook.tui.screens import (
    ChoiceScreen,
    ConfirmScreen,
    Dialog,
    TypeConfirmScreen,
    VariablesScreen,
)

SIZE = (120, 40)
Reach = Callable[[Any, RunbookApp], Awaitable[None]]


def footer_keys(app: RunbookApp) -> set[str]:
    return {k for k, b in app.screen.active_bindings.items() if b.binding.show}


async def quit_here(pilot: Any, app: RunbookApp, key: str, ends: str = "aborted") -> None:
    """The question is open: its footer offers quit; quit, confirm, and the run ends."""
    assert "ctrl+q" in footer_keys(app), f"the footer of {type(app.screen).__name__} shows no quit"
    question = app.screen
    await pilot.press(key)
    await until(pilot, modal(app, ConfirmScreen, f"record the run as {ends}?"), "the quit")
    await pilot.press("q")  # on the quit dialog itself: no second dialog
    assert sum(isinstance(s, ConfirmScreen) and s.heading == "Quit" for s in app.screen_stack) == 1
    await pilot.press("y")
    await until(pilot, finished(app), "the end of the run")
    assert question not in app.screen_stack, "the question stayed up after the quit"
    await pilot.press("y")  # meant for the question: there is none now


def stopped_answer(app: RunbookApp, gate: str) -> dict[str, Any]:
    answer = kinds(app, "gate.answer")[-1]
    assert (answer["gate"], answer["answer"], answer["accepted"]) == (gate, "stopped", False)
    assert answer["reason"] == "quit from the console"
    return answer


def ended_aborted(app: RunbookApp, result: str = "aborted") -> None:
    assert app.outcome is not None and app.outcome.result == result, app.outcome
    end = events(app)[-1]
    assert end["type"] == "run.end" and end["result"] == result
    assert "quit from the console" in end["message"]


async def first_block(pilot: Any, app: RunbookApp, name: str) -> None:
    await until(pilot, waiting(app, "proceed", name), f"block {name}")
    await pilot.press("n")


@pytest.mark.parametrize("key", ["q", "ctrl+q"])
async def test_quit_at_a_gate(tmp_path: Path, key: str) -> None:
    book = tmp_path / "book.md"
    book.write_text(
        f'# G\n\n## Deploy\n\n```sh {{name=deploy confirm="Deploy?"}}\ntouch {tmp_path}/ran\n```\n'
    )
    app = make_app(book, tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await first_block(pilot, app, "deploy")
        await until(pilot, modal(app, ConfirmScreen, "Deploy?"), "the gate")
        await quit_here(pilot, app, key)
    ended_aborted(app)
    assert stopped_answer(app, "confirm")["block"] == "deploy"
    assert not (tmp_path / "ran").exists() and not kinds(app, "block.start")


async def test_quit_at_a_typed_gate_takes_ctrl_q_and_q_is_a_letter(tmp_path: Path) -> None:
    book = tmp_path / "book.md"
    book.write_text(
        "# T\n\n## Deploy\n\n```sh\n#| name: deploy\n#| type-to-confirm: quiet\n"
        f"touch {tmp_path}/ran\n```\n"
    )
    app = make_app(book, tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await first_block(pilot, app, "deploy")
        await until(pilot, modal(app, TypeConfirmScreen), "the typed gate")
        await pilot.press("q")  # typed into the field: "quiet" starts with it
        assert isinstance(app.screen, TypeConfirmScreen)
        assert app.screen.query_one("Input").value == "q"  # type: ignore[attr-defined]
        await quit_here(pilot, app, "ctrl+q")
    ended_aborted(app)
    assert stopped_answer(app, "type-to-confirm")["block"] == "deploy"
    assert not (tmp_path / "ran").exists() and not kinds(app, "block.start")


def failing(tmp_path: Path, rollback: str = "") -> Path:
    book = tmp_path / "book.md"
    book.write_text(
        f"# F\n\n## Check\n\n```sh {{name=check}}\nexit 3\n```\n\n{rollback}"
        f"## After\n\n```sh {{name=after}}\ntouch {tmp_path}/after\n```\n"
    )
    return book


@pytest.mark.parametrize("key", ["q", "ctrl+q"])
async def test_quit_at_the_failure_menu(tmp_path: Path, key: str) -> None:
    rollback = f"```sh {{name=undo rollback=true}}\ntouch {tmp_path}/undone\n```\n\n"
    app = make_app(failing(tmp_path, rollback), tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await first_block(pilot, app, "check")
        await until(pilot, modal(app, ChoiceScreen), "the failure menu")
        await quit_here(pilot, app, key)
    ended_aborted(app)
    decision = kinds(app, "decision")[-1]
    assert (decision["block"], decision["choice"], decision["stopped"]) == ("check", "abort", True)
    assert decision["reason"] == "quit from the console"
    assert not (tmp_path / "after").exists() and not (tmp_path / "undone").exists()


UNDO = "```sh {{name=undo rollback=true}}\ntouch {tmp}/undone\n```\n\n"


async def to_the_rollback_gate(pilot: Any, app: RunbookApp) -> None:
    """`check` fails; roll back: the rollback block `undo` asks."""
    await first_block(pilot, app, "check")
    await until(pilot, modal(app, ChoiceScreen), "the failure menu")
    await pilot.press("b")
    await until(pilot, modal(app, ConfirmScreen, "Run rollback block undo"), "the gate")


async def test_quit_at_the_rollback_gate(tmp_path: Path) -> None:
    app = make_app(failing(tmp_path, UNDO.format(tmp=tmp_path)), tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await to_the_rollback_gate(pilot, app)
        await quit_here(pilot, app, "q", ends="rollback-incomplete")
    # The rollback was decided, then stopped: the record must not hide that it is not done.
    ended_aborted(app, "rollback-incomplete")
    assert stopped_answer(app, "rollback")["block"] == "undo"
    assert not (tmp_path / "undone").exists() and not (tmp_path / "after").exists()


async def test_quit_at_a_form_the_run_asks_for(tmp_path: Path) -> None:
    """A value asked while the run is on (here: no start form) ends with the quit."""
    book = tmp_path / "book.md"
    book.write_text(
        "---\nvariables:\n  TOKEN:\n    secret: true\n---\n# V\n\n## Use\n\n"
        f"```sh {{name=use}}\ntouch {tmp_path}/ran\n```\n"
    )
    made = make_app(book, tmp_path / "runs")
    app = RunbookApp(Launch(made.launch.rb, made.launch.start, ()))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, modal(app, VariablesScreen), "the form")
        await pilot.press("q")  # a letter of the value
        await quit_here(pilot, app, "ctrl+q")
    ended_aborted(app)
    assert not kinds(app, "var.set") and not kinds(app, "block.start")
    assert not (tmp_path / "ran").exists()


async def test_quit_at_the_start_form_runs_and_records_nothing(tmp_path: Path) -> None:
    book = tmp_path / "book.md"
    book.write_text(
        "---\nvariables:\n  VERSION: {}\n---\n# V\n\n## Use\n\n"
        f"```sh {{name=use}}\ntouch {tmp_path}/ran\n```\n"
    )
    app = make_app(book, tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, modal(app, VariablesScreen), "the start form")
        assert isinstance(app.screen, Dialog)
        assert "ctrl+q" in footer_keys(app)
        await pilot.press("ctrl+q")
        await until(pilot, lambda: app.return_code is not None, "the exit")
    assert app.return_code == 1 and app.session is None
    assert not (tmp_path / "runs").exists() and not (tmp_path / "ran").exists()


# ----------------------------------------------------------------- on the sshd fleet


def fleet_book(tmp_path: Path, body: str, front: str = "") -> Path:
    book = tmp_path / "book.md"
    book.write_text(
        f"---\nhosts:\n  web: [host1, host2]\n  other: [host4]\n{front}---\n# R\n\n{body}"
    )
    return book


async def test_quit_at_the_batch_gate(fleet: Any, tmp_path: Path) -> None:
    book = fleet_book(
        tmp_path,
        "## Roll out\n\n```sh\n#| name: deploy\n#| on: web\n#| serial: 1\necho deployed\n```\n",
    )
    app = make_app(book, tmp_path / "runs", ssh_config=fleet.ssh_config)
    async with app.run_test(size=SIZE) as pilot:
        await first_block(pilot, app, "deploy")
        await until(pilot, modal(app, ConfirmScreen, "batch 2/2"), "the next batch's gate")
        await quit_here(pilot, app, "q")
    ended_aborted(app)
    assert stopped_answer(app, "batch")["block"] == "deploy"
    assert [e["host"] for e in kinds(app, "block.start")] == ["host1"]


async def test_quit_at_an_unknown_host_key(fleet: Any, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    book = fleet_book(
        tmp_path,
        "## Go\n\n```sh\n#| name: go\n#| on: host4\necho in\n```\n",
        f"ssh:\n  known_hosts: {known}\n",
    )
    app = make_app(book, tmp_path / "runs", ssh_config=fleet.ssh_config)
    async with app.run_test(size=SIZE) as pilot:
        await first_block(pilot, app, "go")
        await until(pilot, modal(app, TypeConfirmScreen, "host4 presents"), "the host key")
        await quit_here(pilot, app, "ctrl+q")
    ended_aborted(app)
    answer = stopped_answer(app, "host-key")
    assert (answer["block"], answer["host"]) == ("go", "host4")
    assert known.read_text() == ""
    assert all(e.get("status") != "done" for e in kinds(app, "block.end"))


async def test_quit_while_baking_stops_the_bake_and_the_next_batch_never_runs(
    fleet: Any, tmp_path: Path
) -> None:
    book = fleet_book(
        tmp_path,
        "## Roll out\n\n```sh\n#| name: deploy\n#| on: web\n#| serial: 1\n#| bake: 10m\n"
        "#| health-interval: 5m\necho deployed\n```\n\n"
        "```sh\n#| name: healthy\n#| on: web\n#| health: true\ntrue\n```\n",
    )
    app = make_app(book, tmp_path / "runs", ssh_config=fleet.ssh_config)
    async with app.run_test(size=SIZE) as pilot:
        await first_block(pilot, app, "deploy")
        await until(pilot, lambda: app.progress.baking == "deploy", "the bake")
        await pilot.press("q")
        await until(pilot, modal(app, ConfirmScreen, "Quit and record"), "the quit dialog")
        await pilot.press("y")
        await until(pilot, finished(app), "the end of the run")
    ended_aborted(app)
    assert [e["result"] for e in kinds(app, "bake.end")] == ["interrupted"]
    assert [e["host"] for e in kinds(app, "block.start") if e["block"] == "deploy"] == ["host1"]
    assert not kinds(app, "decision"), "the bake's menu never opened: nothing answered it"


async def test_abort_after_a_declined_rollback_block_says_what_the_run_ends_as(
    tmp_path: Path,
) -> None:
    """Aborting inside a rollback asks once more, naming the result it records."""
    app = make_app(failing(tmp_path, UNDO.format(tmp=tmp_path)), tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await to_the_rollback_gate(pilot, app)
        await pilot.press("n")
        await until(pilot, modal(app, ChoiceScreen, "was declined"), "what now")
        await pilot.press("x")
        sure = "record the run as rollback-incomplete here?"
        await until(pilot, modal(app, ConfirmScreen, sure), "the abort's confirmation")
        await pilot.press("y")
        await until(pilot, finished(app), "the end of the run")
    assert app.outcome is not None and app.outcome.result == "rollback-incomplete"
    assert not (tmp_path / "undone").exists() and not (tmp_path / "after").exists()


@pytest.mark.parametrize(
    ("block", "seen"),
    [
        ("#| retries: 3\n#| retry-delay: 10m\nexit 1\n", "block.end"),  # between two attempts
        ("#| continue-on-error: true\nsleep 600.875\n", "block.start"),  # in the last block
    ],
    ids=["retry-delay", "continue-on-error"],
)
async def test_quit_where_nothing_is_asked_still_stops_the_run(
    tmp_path: Path, block: str, seen: str
) -> None:
    """No question comes after the quit (a retry waits out its delay; a block that goes on
    after a failure is the last): the run still stops there and ends as the quit's, never
    with another attempt and never as done."""
    book = tmp_path / "book.md"
    book.write_text(f"# Q\n\n## Last\n\n```sh\n#| name: last\n{block}```\n")
    app = make_app(book, tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await first_block(pilot, app, "last")
        await until(pilot, lambda: bool(kinds(app, seen)), f"the first {seen}")
        await pilot.press("q")
        await until(pilot, modal(app, ConfirmScreen, "Quit and record"), "the quit dialog")
        await pilot.press("y")
        await until(pilot, finished(app), "the end of the run")
    ended_aborted(app)
    assert len(kinds(app, "block.start")) == 1, "an attempt started after the quit"
    assert not kinds(app, "step.done")
