"""The console, driven with Textual's Pilot: every flow asserts on the transcript on disk and
on what the screen shows, waiting on the engine's state, never on a clock."""

from __future__ import annotations

import asyncio
import re
import types
from pathlib import Path
from typing import Any

import pytest
from textual.command import CommandList, CommandPalette
from textual.pilot import Pilot
from textual.widgets import Button, Input, Select, Static
from textual.widgets._markdown import MarkdownBlock
from tuikit import abort, events, finished, kinds, make_app, modal, shown, until, waiting

from conftest import RUNBOOKS, live_processes
from runbook import launch
from runbook.engine.operator import TerminalOperator
from runbook.record.chain import read_lines, verify
from runbook.record.progress import DONE, FAILED, SKIPPED
from runbook.record.report import render_run
from runbook.tui import screens
from runbook.tui.app import RunbookApp
from runbook.tui.screens import (
    TYPING_SECONDS,
    ChoiceScreen,
    ConfirmScreen,
    MarkdownScreen,
    TextScreen,
    TypeConfirmScreen,
    VariablesScreen,
)
from runbook.tui.widgets import Checklist, OutputPane, StepOutline

SIZE = (120, 40)


async def test_hello_runbook_from_form_to_done(tmp_path: Path) -> None:
    app = make_app(RUNBOOKS / "hello.md", tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, modal(app, VariablesScreen), "the start form")
        form = app.screen.query_one("#var-GREETING", Input)
        assert form.value == "hello from runbook"  # the default, filled in
        form.value = "hi from the console"
        await pilot.press("enter")
        await until(pilot, waiting(app, "proceed", "look-around-1"), "the first block")
        card = app.query_one("#card-look-around-1")
        await until(
            pilot, lambda: "▸ next" in shown(card), "the card marked next"
        )  # redrawn on a timer
        await pilot.press("n")
        await until(pilot, waiting(app, "tick"), "the checklist item")
        await pilot.press("space")
        await until(pilot, waiting(app, "proceed", "prepare-a-scratch-directory-1"), "block 2")
        checklist = app.query_one(Checklist)
        assert "[x] I have read what this step does" in shown(checklist)
        await pilot.press("n")
        await until(pilot, waiting(app, "proceed", "write-a-file-1"), "block 3")
        await pilot.press("n")
        await until(pilot, modal(app, ConfirmScreen), "the gate")
        assert "greeting.txt" in shown(app.screen.query_one(".prompt"))
        await pilot.press("y")
        await until(pilot, waiting(app, "proceed", "clean-up-1"), "the last block")
        await pilot.press("n")
        await until(pilot, finished(app), "the end")
        outline = app.query_one(StepOutline)
        assert all("✓" in str(outline.get_option_at_index(i).prompt) for i in range(4))
        await pilot.press("q")
    assert app.return_code == 0
    assert app.outcome is not None and app.outcome.result == "ok"
    var = kinds(app, "run.start")[0]
    assert var["variables"]["GREETING"] == "hi from the console"
    assert var["sources"]["GREETING"] == "form"
    assert var["operator"] == "tui"
    tick = kinds(app, "check.tick")[0]
    assert (tick["result"], tick["by"]) == ("ticked", "operator")
    gate = kinds(app, "gate.answer")[0]
    assert (gate["answer"], gate["accepted"]) == ("yes", True)
    output = b"".join(e["text"].encode() for e in kinds(app, "output"))
    assert b"hi from the console" in output
    assert verify(Path(app.session.writer.path)).complete  # type: ignore[union-attr]


FORM = """---
title: Form
variables:
  VERSION:
    prompt: Version
    pattern: 'v\\d+\\.\\d+'
  REGION:
    choices: [eu, us]
    default: eu
  TOKEN:
    secret: true
---

## Use them

```sh
test -n "$TOKEN" && echo "$VERSION in $REGION"
```
"""


async def test_start_form_checks_values_as_typed_and_masks_secrets(tmp_path: Path) -> None:
    """A field says what is wrong once edited (not before); choices are a list to pick from;
    ctrl+s starts from any field, and the footer says so."""
    book = tmp_path / "form.md"
    book.write_text(FORM)
    app = make_app(book, tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, modal(app, VariablesScreen), "the start form")
        screen = app.screen
        keys = {k: b.binding.description for k, b in screen.active_bindings.items()}
        assert keys.get("ctrl+s") == "Start" and keys.get("escape") == "Cancel"
        hint = [shown(h) for h in screen.query(".hint")][-1]
        assert "ctrl+s to start" in hint
        assert not shown(screen.query_one("#problem-VERSION")).strip(), "nothing typed yet"
        assert screen.query_one("#var-TOKEN", Input).password
        region = screen.query_one("#var-REGION", Select)
        assert region.value == "eu"  # the default, picked
        screen.query_one("#var-VERSION", Input).value = "latest"
        await pilot.pause()
        problem = shown(screen.query_one("#problem-VERSION"))
        assert "does not match the pattern" in problem
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, VariablesScreen)  # refused: nothing started
        assert app.session is None
        screen.query_one("#var-VERSION", Input).value = "v1.2"
        region.value = "us"
        screen.query_one("#var-TOKEN", Input).value = "s3cr3t-token"
        region.focus()
        await pilot.press("ctrl+s")
        await until(pilot, waiting(app, "proceed"), "the block")
        await pilot.press("n")
        await until(pilot, finished(app), "the end")
    start = kinds(app, "run.start")[0]
    assert start["variables"] == {"VERSION": "v1.2", "REGION": "us", "TOKEN": None}
    raw = Path(app.session.writer.path).read_bytes()  # type: ignore[union-attr]
    assert b"s3cr3t-token" not in raw
    assert b"v1.2 in us" in raw


SKIPS = """## Prepare

- [ ] Tell the on-call
- [ ] Freeze the deploy queue

```sh
echo prepare-ran
```

## Change

```sh
echo first-ran
```

```sh
echo second-ran
```

## After

```sh
echo after-ran
```
"""

BLOCKS_ONLY = SKIPS.replace("- [ ] Tell the on-call\n- [ ] Freeze the deploy queue\n", "")
"""SKIPS without its checklist: its blocks only."""


async def test_skip_items_blocks_and_steps_with_reasons_and_add_notes(tmp_path: Path) -> None:
    book = tmp_path / "skips.md"
    book.write_text(SKIPS)
    app = make_app(book, tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, waiting(app, "tick", "Tell the on-call"), "the first item")
        await pilot.press("space")
        await until(pilot, waiting(app, "tick", "Freeze the deploy queue"), "the second item")
        await pilot.press("s")
        await until(pilot, modal(app, TextScreen), "the reason")
        await pilot.press(*"no queue here", "enter")
        await until(pilot, waiting(app, "proceed", "prepare-1"), "the block")
        await pilot.press("s")
        await until(pilot, modal(app, TextScreen), "the reason")
        await pilot.press("enter")  # no reason yet: it says so, and takes nothing
        hint = app.screen.query_one("#text-hint", Static)
        await until(pilot, lambda: "Nothing typed" in shown(hint), "the hint")
        assert isinstance(app.screen, TextScreen) and not kinds(app, "block.skip")
        await pilot.press(*"done by hand", "enter")
        await until(pilot, waiting(app, "proceed", "change-1"), "step two")
        await pilot.press("a")
        await until(pilot, modal(app, TextScreen), "the note")
        await pilot.press(*"dashboards green", "enter")
        await until(pilot, lambda: app.progress.notes == 1, "the note recorded")
        await pilot.press("S")
        await until(pilot, modal(app, TextScreen), "the reason")
        await pilot.press(*"change window closed", "enter")
        await until(pilot, waiting(app, "proceed", "after-1"), "step three")
        assert app.progress.steps[2] == SKIPPED
        await pilot.press("n")
        await until(pilot, finished(app), "the end")
    ticks = [(e["text"], e["result"], e["reason"]) for e in kinds(app, "check.tick")]
    assert ticks == [
        ("Tell the on-call", "ticked", None),
        ("Freeze the deploy queue", "skipped", "no queue here"),
    ]
    skips = [(e["block"], e["reason"], e["by"]) for e in kinds(app, "block.skip")]
    assert skips == [
        ("prepare-1", "done by hand", "operator"),
        ("change-1", "change window closed", "operator"),
        ("change-2", "change window closed", "operator"),
    ]
    note = kinds(app, "note")[0]
    assert (note["text"], note["by"]) == ("dashboards green", "operator")
    ran = [e["block"] for e in kinds(app, "block.start")]
    assert ran == ["after-1"]
    report = render_run(Path(app.launch.transcript))
    assert "- [ ] Freeze the deploy queue (skipped: no queue here) (operator)" in report
    rows = [r for r in report.splitlines() if "| - | skipped |" in r]
    assert [r.split(" | ")[0:2] for r in rows] == [
        ["| 1", "`prepare-1`"],
        ["| 2", "`change-1`"],
        ["| 2", "`change-2`"],
    ]  # the timeline says what was skipped, not only what ran
    assert rows[0].endswith("| - | skipped | skipped by operator: done by hand |")
    end = kinds(app, "run.end")[0]  # an "ok" never hides what was skipped
    assert (end["result"], end["message"]) == (
        "ok",
        "every step is done (3 blocks skipped: prepare-1, change-1, change-2;"
        " 1 checklist item skipped)",
    )


FAILING = """## Deploy

```sh
echo deploying
```

```sh
#| rollback: true
echo rolling-back
```

## Verify

```sh
#| type-to-confirm: verify-now
echo checking; exit 3
```
"""


async def test_a_note_can_be_added_from_the_failure_menu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why the operator retries is best said before choosing: ``a`` adds a note there too,
    and the menu is back, still waiting for its answer, once the note is recorded."""
    now = [1000.0]
    monkeypatch.setattr(screens, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    ok = tmp_path / "ok"
    book = tmp_path / "book.md"
    book.write_text(
        f"## S\n\n```sh {{name=flaky}}\n[ -e {ok} ] || {{ touch {ok}; exit 3; }}\n```\n"
    )
    app = make_app(book, tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, waiting(app, "proceed", "flaky"), "the block")
        await pilot.press("n")
        await until(pilot, modal(app, ChoiceScreen), "the failure menu")
        await pilot.press("a")
        await until(pilot, modal(app, TextScreen), "the note")
        await pilot.press(*"db failover in progress", "enter")
        await until(pilot, lambda: kinds(app, "note"), "the note recorded")
        await until(pilot, modal(app, ChoiceScreen), "the menu again")
        now[0] += TYPING_SECONDS  # a letter right after typing is not an answer
        await pilot.press("r")
        await until(pilot, finished(app), "the end")
    assert [e["text"] for e in kinds(app, "note")] == ["db failover in progress"]
    assert [e["choice"] for e in kinds(app, "decision")] == ["retry"]


async def test_failure_menu_retry_then_roll_back_in_reverse(tmp_path: Path) -> None:
    book = tmp_path / "failing.md"
    book.write_text(FAILING)
    app = make_app(book, tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, waiting(app, "proceed", "deploy-1"), "deploy")
        await pilot.press("n")
        await until(pilot, waiting(app, "proceed", "verify-1"), "verify")
        await pilot.press("n")
        await until(pilot, modal(app, TypeConfirmScreen), "the typed confirmation")
        assert "exit 3" in shown(app.screen.query_one(".command Static"))
        await pilot.press(*"verify", "enter")  # not the exact text
        assert "That is not" in shown(app.screen.query_one("#problem"))
        await pilot.press(*"-now", "enter")
        await until(pilot, modal(app, ChoiceScreen), "the failure menu")
        assert "exit 3" in shown(app.screen.query_one(".prompt"))
        await pilot.press("r")  # retry
        await until(pilot, lambda: len(kinds(app, "block.end")) == 3, "the second attempt")
        await until(pilot, modal(app, ChoiceScreen), "the failure menu again")
        assert app.progress.step_status(2) == FAILED
        await pilot.press("b")  # roll back
        await until(pilot, modal(app, ConfirmScreen), "the rollback gate")
        await pilot.press("y")
        await until(pilot, finished(app), "the end")
    assert app.outcome is not None and app.outcome.result == "rolled-back"
    assert app.return_code is None or app.return_code == 1
    ends = [(e["block"], e["attempt"], e["exit"]) for e in kinds(app, "block.end")]
    assert ends == [("deploy-1", 1, 0), ("verify-1", 1, 3), ("verify-1", 2, 3), ("deploy-2", 1, 0)]
    typed = kinds(app, "gate.answer")[0]
    assert (typed["gate"], typed["answer"]) == ("type-to-confirm", "verify-now")
    assert [e["choice"] for e in kinds(app, "decision")] == ["retry", "rollback"]


async def test_a_gate_defaults_to_no_and_a_declined_gate_asks_what_next(tmp_path: Path) -> None:
    app = make_app(RUNBOOKS / "hello.md", tmp_path / "runs", assignments=["GREETING=hi"])
    async with app.run_test(size=SIZE) as pilot:
        for name in ("look-around-1",):
            await until(pilot, waiting(app, "proceed", name), name)
            await pilot.press("n")
        await until(pilot, waiting(app, "tick"), "the item")
        await pilot.press("space")
        await until(pilot, waiting(app, "proceed"), "block 2")
        await pilot.press("n")
        await until(pilot, waiting(app, "proceed", "write-a-file-1"), "the gated block")
        await pilot.press("n")
        await until(pilot, modal(app, ConfirmScreen), "the gate")
        assert app.screen.focused is app.screen.query_one("#no", Button)
        await pilot.press("enter")  # a reflexive Enter declines
        await until(pilot, modal(app, ChoiceScreen), "the declined menu")
        await abort(pilot, app)
        await until(pilot, finished(app), "the end")
    answer = kinds(app, "gate.answer")[0]
    assert (answer["answer"], answer["accepted"]) == ("no", False)
    assert app.outcome is not None and app.outcome.result == "aborted"
    assert not kinds(app, "block.start")[2:]  # the gated block never started


SLOW = """## Wait

```sh
echo started; sleep 47.25; echo never
```
"""


async def test_interrupt_asks_first_then_stops_the_block(tmp_path: Path) -> None:
    book = tmp_path / "slow.md"
    book.write_text(SLOW)
    app = make_app(book, tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, waiting(app, "proceed"), "the block")
        await pilot.press("n")
        await until(pilot, lambda: live_processes("sleep 47.25"), "the block to run")
        await until(pilot, lambda: "started" in _log_text(app, "local"), "its output on screen")
        await pilot.press("i")
        await until(pilot, modal(app, ConfirmScreen), "the interrupt confirmation")
        await pilot.press("n")  # not yet
        await pilot.pause()
        assert app.progress.running and live_processes("sleep 47.25")
        await pilot.press("i")
        await until(pilot, modal(app, ConfirmScreen), "the interrupt confirmation")
        await pilot.press("y")
        await until(pilot, modal(app, ChoiceScreen), "the failure menu")
        assert not live_processes("sleep 47.25")
        await abort(pilot, app)
        await until(pilot, finished(app), "the end")
    end = kinds(app, "block.end")[0]
    assert end["interrupted"] is True


async def test_quit_while_running_asks_then_records_an_abort(tmp_path: Path) -> None:
    book = tmp_path / "slow.md"
    book.write_text(SLOW.replace("47.25", "48.25"))
    app = make_app(book, tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, waiting(app, "proceed"), "the block")
        await pilot.press("n")
        await until(pilot, lambda: live_processes("sleep 48.25"), "the block to run")
        await pilot.press("q")
        await until(pilot, modal(app, ConfirmScreen), "the quit confirmation")
        assert "is running" in shown(app.screen.query_one(".prompt"))
        await pilot.press("y")
        await until(pilot, lambda: app.return_code is not None, "the app to exit")
    assert not live_processes("sleep 48.25")
    end = kinds(app, "run.end")[0]
    assert (end["result"], end["exit_code"], end["message"]) == (
        "aborted",
        1,
        "quit from the console",
    )
    assert app.return_code == 1
    block = kinds(app, "block.end")[0]
    assert block["interrupted"] is True  # stopped, and the stop recorded


async def test_palette_jumps_to_a_step_and_runs_a_chosen_block(tmp_path: Path) -> None:
    book = tmp_path / "skips.md"
    book.write_text(BLOCKS_ONLY)
    app = make_app(book, tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, waiting(app, "proceed", "prepare-1"), "the first block")
        await palette(pilot, app, "Step 3: After")
        await until(pilot, lambda: app.viewed == 3, "step 3 shown")
        await palette(pilot, app, "Run block after-1")
        await until(pilot, lambda: app.progress.block("after-1").status == DONE, "after-1 ran")
        await until(pilot, waiting(app, "proceed", "prepare-1"), "back at the first block")
        await pilot.press("n")
        await until(pilot, waiting(app, "proceed", "change-1"), "change-1")
        await palette(pilot, app, "Re-run block prepare-1")
        again = app.progress.block("prepare-1")
        await until(pilot, lambda: again.attempt == 2 and again.status == DONE, "the re-run")
        await until(pilot, waiting(app, "proceed", "change-1"), "change-1 again")
        await pilot.press("n")
        await until(pilot, waiting(app, "proceed", "change-2"), "change-2")
        await pilot.press("n")
        await until(pilot, finished(app), "the end")
    starts = [(e["block"], e["attempt"]) for e in kinds(app, "block.start")]
    assert starts == [
        ("after-1", 1),
        ("prepare-1", 1),
        ("prepare-1", 2),
        ("change-1", 1),
        ("change-2", 1),
    ]
    chosen = [(e["block"], e["kind"]) for e in kinds(app, "decision")]
    assert chosen == [("after-1", "run-chosen"), ("prepare-1", "run-chosen")]


async def test_a_skipped_block_run_later_from_the_palette_is_reported_in_its_own_step(
    tmp_path: Path,
) -> None:
    """A block skipped, then run from the palette while the next step is open: the outline
    no longer calls its step skipped, and the report gives the run under its own step,
    after the skip (not under the step that was open, where an incident lead would not
    look for it). One run early, of a step not started yet, says whose it is."""
    book = tmp_path / "skips.md"
    book.write_text(BLOCKS_ONLY)
    app = make_app(book, tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, waiting(app, "proceed", "prepare-1"), "the first block")
        await pilot.press("s")
        await until(pilot, modal(app, TextScreen), "the reason")
        await pilot.press(*"later", "enter")
        await until(pilot, waiting(app, "proceed", "change-1"), "step two")
        assert app.progress.steps[1] == SKIPPED
        await palette(pilot, app, "Run block prepare-1 (skipped)")
        await until(pilot, lambda: app.progress.block("prepare-1").status == DONE, "the run")
        assert app.progress.steps[1] == DONE
        await until(pilot, waiting(app, "proceed", "change-1"), "back at change-1")
        await palette(pilot, app, "Run block after-1")
        await until(pilot, lambda: app.progress.block("after-1").status == DONE, "after-1")
        await until(pilot, waiting(app, "proceed", "change-1"), "back at change-1 again")
        await pilot.press("n")
        await until(pilot, waiting(app, "proceed", "change-2"), "change-2")
        await pilot.press("n")
        await until(pilot, finished(app), "the end")
    report = render_run(Path(app.launch.transcript))
    sections = {s.split("\n")[0]: s for s in report.split("\n## ")}
    prepare = sections["1. Prepare"]
    assert prepare.index("`prepare-1` skipped by operator: later") < prepare.index(
        "### `prepare-1`\n"
    )
    assert "### `after-1` (of step 3, run early)" in sections["2. Change"]
    assert "prepare-1" not in sections["2. Change"]
    assert "| 1 | `prepare-1` |" in report and "| 3 | `after-1` |" in report
    assert kinds(app, "run.end")[0]["message"] == "every step is done"  # it ran after all


async def test_a_re_run_of_a_done_step_cut_short_by_a_crash_is_asked_about_on_resume(
    tmp_path: Path,
) -> None:
    """A block of a done step, run again from the palette, and the run killed while it ran
    (the record cut right after its start, as ``kill -9`` leaves it): the resume asks its
    outcome, as in its own step. It used to pass over it, since its step was done, and
    could end "ok" with it unknown."""
    book = tmp_path / "skips.md"
    book.write_text(BLOCKS_ONLY)
    app = make_app(book, tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, waiting(app, "proceed", "prepare-1"), "the first block")
        await pilot.press("n")
        await until(pilot, waiting(app, "proceed", "change-1"), "step two")
        await palette(pilot, app, "Re-run block prepare-1")
        await until(pilot, lambda: app.progress.block("prepare-1").attempt == 2, "the re-run")
        await until(pilot, waiting(app, "proceed", "change-1"), "change-1 again")
        await pilot.press("q")
        await until(pilot, modal(app, ConfirmScreen, "Quit and record"), "the quit dialog")
        await pilot.press("y")
    transcript = Path(app.launch.transcript).resolve()
    lines = transcript.read_bytes().splitlines(keepends=True)
    cut = next(
        i
        for i, line in enumerate(lines)
        if b'"type":"block.start"' in line and b'"attempt":2' in line
    )
    transcript.write_bytes(b"".join(lines[: cut + 1]))
    again = make_app(book, tmp_path / "runs", resume=transcript)
    async with again.run_test(size=SIZE) as pilot:
        await until(pilot, modal(again, ChoiceScreen, "prepare-1"), "the unknown outcome")
        await pilot.press("m")
        await until(pilot, modal(again, TextScreen), "the reason")
        await pilot.press(*"saw it finish", "enter")
        for block in ("change-1", "change-2", "after-1"):
            await until(pilot, waiting(again, "proceed", block), block)
            await pilot.press("n")
        await until(pilot, finished(again), "the end")
    marks = [(e["block"], e["reason"]) for e in kinds(again, "block.mark")]
    assert marks == [("prepare-1", "saw it finish")]
    assert kinds(again, "run.end")[-1]["result"] == "ok"


@pytest.mark.parametrize("size", [SIZE, (80, 24)], ids=["default", "80x24"])
async def test_help_and_report_screens(tmp_path: Path, size: tuple[int, int]) -> None:
    book = tmp_path / "skips.md"
    book.write_text(SKIPS.split("## Change")[0].replace("- [ ] ", "- "))
    app = make_app(book, tmp_path / "runs")
    async with app.run_test(size=size) as pilot:
        await until(pilot, waiting(app, "proceed"), "the block")
        await pilot.press("question_mark")
        await until(pilot, modal(app, MarkdownScreen), "help")
        await pilot.press("escape")
        await pilot.press("n")
        await until(pilot, finished(app), "the end")
        await pilot.press("o")
        await until(pilot, modal(app, MarkdownScreen), "the report")
        text = app.screen.query_one("Markdown").source  # type: ignore[attr-defined]
        assert "prepare-ran" in text and "Run report" in text
        await pilot.pause()
        # The run's facts are a list on screen, so even at 80 columns no hash or label is
        # cut short (a squeezed table ends them with an ellipsis).
        drawn = "".join("".join(shown(b).split()) for b in app.screen.query(MarkdownBlock))
        sha = kinds(app, "run.start")[0]["runbook"]["sha256"]
        assert f"RunbookSHA-256:{sha}" in drawn and "Transcript:transcript.jsonlintact" in drawn
        await pilot.press("escape", "q")
    assert app.return_code == 0


async def palette(pilot: Pilot[Any], app: RunbookApp, command: str) -> None:
    """Run ``command`` from the command palette, once the palette offers it."""
    await pilot.press("ctrl+p")
    await until(pilot, lambda: isinstance(app.screen, CommandPalette), "the palette")
    await pilot.press(*command)

    def offered() -> bool:
        commands = app.screen.query_one(CommandList)
        index = commands.highlighted
        return index is not None and command in str(commands.get_option_at_index(index).prompt)

    await until(pilot, offered, f"the palette to offer {command!r}")
    await pilot.press("enter")


def _log_text(app: RunbookApp, target: str) -> str:
    pane = app.query_one(OutputPane)
    log = pane.logs.get(target)
    return "\n".join(log.lines) if log is not None else ""


async def test_the_outline_stays_where_the_operator_scrolled_it_as_steps_finish(
    tmp_path: Path,
) -> None:
    """Each event redraws the outline's changed lines in place; rebuilding the list scrolled
    it back to the highlighted step whenever a block started or ended."""
    book = tmp_path / "book.md"
    steps = [f"## Step {n}\n\n```sh\ntrue\n```\n" for n in range(1, 4)]
    steps += [f"## Read {n}\n\nNothing to run.\n" for n in range(4, 81)]
    book.write_text("# Long\n\n" + "\n".join(steps))
    app = make_app(book, tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, waiting(app, "proceed", "step-1-1"), "the first block")
        outline = app.query_one(StepOutline)
        outline.scroll_to(y=40, animate=False, immediate=True)
        await until(pilot, lambda: outline.scroll_y == 40, "the outline scrolled")
        await pilot.press("n")
        await until(pilot, waiting(app, "proceed", "step-2-1"), "the second block")
        await until(pilot, lambda: "✓ 1. Step 1" in str(outline.get_option_at_index(0).prompt), "1")
        assert outline.scroll_y == 40


async def test_output_past_what_the_log_keeps_leaves_its_newest_lines_in_order(
    tmp_path: Path,
) -> None:
    """The log keeps LOG_LINES lines: a batch of more pushes out everything before it
    (the first block's lines too), and what stays is the newest, whole and in order."""
    from runbook.tui.widgets import LOG_LINES

    book = tmp_path / "book.md"
    book.write_text(
        "## First\n\n```sh\necho first-block\n```\n\n## Count\n\n```sh\nseq 1 20000\n```\n"
    )
    app = make_app(book, tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        for name in ("first-1", "count-1"):
            await until(pilot, waiting(app, "proceed", name), name)
            await pilot.press("n")
        await until(pilot, finished(app), "the end")
        await until(pilot, lambda: "\n20000\n── " in _log_text(app, "local"), "the output")
        lines = app.query_one(OutputPane).logs["local"].lines
    assert len(lines) == LOG_LINES and "first-block" not in lines, lines[:3]
    assert lines[-1].startswith("── ") and lines[-1].endswith(" ──"), lines[-3:]
    numbers = [line for line in lines if line.isdigit()]
    assert numbers == [str(n) for n in range(20_001 - len(numbers), 20_001)]
    assert len(numbers) >= LOG_LINES - 3  # the block's marker lines, nothing else


@pytest.mark.parametrize("crash_point", ["mid-block"])
async def test_resume_opens_where_the_run_stopped(tmp_path: Path, crash_point: str) -> None:
    from test_resume import kill_mid_block

    book, log, transcript = kill_mid_block(tmp_path)
    app = make_app(book, tmp_path / "runs", resume=transcript)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, modal(app, ChoiceScreen), "the unknown-outcome question")
        assert app.progress.steps[1] == DONE  # step one, from the earlier transcript
        await until(pilot, lambda: app.viewed == 2, "step two shown")
        await pilot.press("m")
        await until(pilot, modal(app, TextScreen), "the reason")
        await pilot.press(*"checked the log by hand", "enter")
        await until(pilot, waiting(app, "proceed", "three-1"), "step three")
        await pilot.press("n")
        await until(pilot, finished(app), "the end")
    mark = kinds(app, "block.mark")[0]
    assert (mark["block"], mark["reason"]) == ("two-1", "checked the log by hand")
    assert log.read_text().splitlines() == ["one", "two", "three"]
    assert events(app)[0]["type"] == "run.start"


def _facts(events: list[dict[str, object]]) -> list[tuple[object, ...]]:
    """What a run did, without who, when and where it was recorded."""
    keys = ("type", "step", "item", "block", "attempt", "gate", "answer", "result", "exit")
    return [tuple(e.get(k) for k in keys) for e in events if e["type"] != "output"]


def test_the_console_records_what_runbook_run_records(tmp_path: Path) -> None:
    """Plain-terminal parity: the same answers give the same events."""
    answers = iter(["y", "y"])  # the checklist item, then the gate
    done = launch.run(
        str(RUNBOOKS / "hello.md"),
        assignments=["GREETING=parity"],
        runs=tmp_path / "plain",
        argv=[],
        announce=lambda _: None,
        operator=TerminalOperator(read=lambda prompt: next(answers)),
    )
    plain = [line.event for line in read_lines(done.transcript)]
    app = make_app(RUNBOOKS / "hello.md", tmp_path / "tui", assignments=["GREETING=parity"])
    asyncio.run(_hello_in_the_console(app))
    assert _facts(events(app)) == _facts(plain)
    assert kinds(app, "run.start")[0]["operator"] == "tui"
    assert plain[0]["operator"] == "terminal"


async def _hello_in_the_console(app: RunbookApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, waiting(app, "proceed"), "look-around")
        await pilot.press("n")
        await until(pilot, waiting(app, "tick"), "the item")
        await pilot.press("space")
        for name in ("prepare-a-scratch-directory-1", "write-a-file-1"):
            await until(pilot, waiting(app, "proceed", name), name)
            await pilot.press("n")
        await until(pilot, modal(app, ConfirmScreen), "the gate")
        await pilot.press("y")
        await until(pilot, waiting(app, "proceed", "clean-up-1"), "clean-up")
        await pilot.press("n")
        await until(pilot, finished(app), "the end")


async def test_ctrl_q_is_protected_like_q(tmp_path: Path) -> None:
    book = tmp_path / "slow.md"
    book.write_text(SLOW.replace("47.25", "49.25"))
    app = make_app(book, tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, waiting(app, "proceed"), "the block")
        await pilot.press("n")
        await until(pilot, lambda: live_processes("sleep 49.25"), "the block to run")
        await pilot.press("ctrl+q")
        await until(pilot, modal(app, ConfirmScreen), "the quit confirmation")
        await pilot.press("n")  # stay
        await pilot.pause()
        assert app.progress.running and app.return_code is None
        await pilot.press("ctrl+q")
        await until(pilot, modal(app, ConfirmScreen), "the quit confirmation")
        await pilot.press("y")
        await until(pilot, lambda: app.return_code is not None, "the app to exit")
    assert kinds(app, "run.end")[0]["result"] == "aborted"
    assert not live_processes("sleep 49.25")


async def test_keys_never_answer_the_wrong_question(tmp_path: Path) -> None:
    """An engine question waits for the operator's note; Enter chooses nothing in a
    failure menu; a double key answers once."""
    book = tmp_path / "fails.md"
    go = tmp_path / "go"  # the block fails once the test says so, however slow the machine
    book.write_text(
        f"## Fail\n\n```sh\necho started; until [ -e '{go}' ]; do sleep 0.02; done; exit 4\n```\n"
    )
    app = make_app(book, tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, waiting(app, "proceed"), "the block")
        await pilot.press("n")
        await until(pilot, lambda: app.progress.running, "the block to run")
        await pilot.press("a")  # a note, typed while the block fails
        await until(pilot, modal(app, TextScreen), "the note dialog")
        go.touch()
        await until(pilot, lambda: kinds(app, "block.end"), "the failure")
        await pilot.press(*"restarted web3")  # the "a" of "restarted" must not abort
        assert isinstance(app.screen, TextScreen)
        await pilot.press("enter")
        await until(pilot, modal(app, ChoiceScreen), "the failure menu, after the note")
        await pilot.press("enter")  # nothing is focused: Enter must not retry
        await pilot.pause()
        assert not kinds(app, "decision"), kinds(app, "decision")
        assert isinstance(app.screen, ChoiceScreen), app.screen_stack
        await pilot.press("s", "s")  # one reason dialog, not two
        await until(pilot, modal(app, TextScreen), "the reason")
        assert sum(isinstance(s, TextScreen) for s in app.screen_stack) == 1
        await pilot.press("backspace", *"known flaky", "enter", "enter")
        await until(pilot, finished(app), "the end")
    assert [(e["text"], e["by"]) for e in kinds(app, "note")] == [("restarted web3", "operator")]
    assert [(e["choice"], e["reason"]) for e in kinds(app, "decision")] == [("skip", "known flaky")]
    assert app.outcome is not None and app.outcome.result == "ok"


async def test_text_typed_into_a_gate_does_not_answer_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A note typed as the gate opened ('canary ok') must not decline or approve it.

    The dialog's clock is the test's: however slowly a loaded machine delivers the keys,
    they are typed in one instant, and the pause before the answer is exactly long enough.
    """
    now = [1000.0]
    monkeypatch.setattr(screens, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    app = make_app(RUNBOOKS / "hello.md", tmp_path / "runs", assignments=["GREETING=hi"])
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, waiting(app, "proceed"), "the first block")
        await pilot.press("n")
        await until(pilot, waiting(app, "tick"), "the item")
        await pilot.press("space")
        for name in ("prepare-a-scratch-directory-1", "write-a-file-1"):
            await until(pilot, waiting(app, "proceed", name), name)
            await pilot.press("n")
        await until(pilot, modal(app, ConfirmScreen), "the gate")
        await pilot.press(*"canary ok, everything ready")  # holds an n and a y
        assert isinstance(app.screen, ConfirmScreen) and not kinds(app, "gate.answer")
        now[0] += TYPING_SECONDS
        await pilot.press("y")
        await until(pilot, waiting(app, "proceed", "clean-up-1"), "the last block")
    assert [e["answer"] for e in kinds(app, "gate.answer")] == ["yes"]


async def test_a_question_waiting_behind_the_quit_dialog_is_never_asked(tmp_path: Path) -> None:
    book = tmp_path / "fails.md"
    go = tmp_path / "go"  # the block fails once the test says so, however slow the machine
    book.write_text(
        f"## Fail\n\n```sh\necho started; until [ -e '{go}' ]; do sleep 0.02; done; exit 4\n```\n"
    )
    app = make_app(book, tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, waiting(app, "proceed"), "the block")
        await pilot.press("n")
        await until(pilot, lambda: app.progress.running, "the block to run")
        await pilot.press("q")
        await until(pilot, modal(app, ConfirmScreen), "the quit dialog")
        go.touch()
        await until(pilot, lambda: kinds(app, "block.end"), "the failure, behind the dialog")
        await pilot.press("y")
        await until(pilot, lambda: app.return_code is not None, "the app to exit")
    assert not kinds(app, "decision")  # the failure menu never opened
    end = kinds(app, "run.end")[0]
    assert (end["result"], end["message"]) == ("aborted", "quit from the console")


async def test_a_runbook_edited_during_the_run_shows_a_banner(tmp_path: Path) -> None:
    book = tmp_path / "book.md"
    book.write_text(
        f"## One\n\n```sh\necho '# edited' >> '{tmp_path / 'book.md'}'\n```\n\n"
        "## Two\n\n```sh\necho two\n```\n"
    )
    app = make_app(book, tmp_path / "runs")
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, waiting(app, "proceed", "one-1"), "the first block")
        await pilot.press("n")
        await until(pilot, waiting(app, "proceed", "two-1"), "the second block")

        def toasts() -> list[str]:
            return [str(t.render()) for t in app.screen.query("Toast").results(Static)]

        await until(pilot, lambda: any("changed on disk" in t for t in toasts()), "the banner")
        await pilot.press("n")
        await until(pilot, finished(app), "the end")
    assert [e["by"] for e in kinds(app, "note")] == ["runbook"]


async def test_abort_in_the_failure_menu_has_a_key_of_its_own_and_asks_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`a` adds a note everywhere; in the menu it must not abort. Abort is `x`, shown in the
    footer with the other choices, and asks once more (No keeps the menu)."""
    book = tmp_path / "book.md"
    book.write_text(
        f"# Fail\n\n## One\n\n```sh\nexit 3\n```\n\n## Two\n\n```sh\ntouch {tmp_path}/two\n```\n"
    )
    now = [1000.0]  # the dialogs' clock: `a` is a stray key; `x` comes after a pause
    monkeypatch.setattr(screens, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    app = make_app(book, tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, waiting(app, "proceed"), "the first block")
        await pilot.press("n")
        await until(pilot, modal(app, ChoiceScreen), "the failure menu")
        keys = {k: b.binding.description for k, b in app.screen.active_bindings.items()}
        assert {"r", "s", "b", "x"} <= set(keys), keys
        assert keys["x"] == "Abort" and keys.get("a") != "Abort"
        await pilot.press("a")  # a note, not an answer
        assert app.outcome is None
        while not isinstance(app.screen, ChoiceScreen):  # close the note, if it opened
            await pilot.press("escape")
        now[0] += TYPING_SECONDS
        await pilot.press("x")
        await until(pilot, modal(app, ConfirmScreen, "Abort"), "the abort confirmation")
        await pilot.press("n")
        await until(pilot, modal(app, ChoiceScreen), "the failure menu again")
        assert app.outcome is None
        await abort(pilot, app)
        await until(pilot, finished(app), "the end")
    assert app.outcome is not None and app.outcome.result == "aborted"
    assert not (tmp_path / "two").exists()
    choice = kinds(app, "decision")[-1]
    assert (choice["kind"], choice["choice"]) == ("failure", "abort")


async def test_a_card_says_which_hosts_on_a_variable_means(tmp_path: Path) -> None:
    """Blue-green's `on: $IDLE` said nothing; the card names the hosts it resolves to."""
    from runbook.tui.widgets import BlockCard

    book = tmp_path / "book.md"
    book.write_text(
        "---\nhosts:\n  blue: [web1, web2]\n  green: [web3, web4]\nvariables:\n"
        "  IDLE:\n    default: green\n---\n# Switch\n\n## Bring up\n\n"
        "```sh {name=up on=$IDLE}\ntrue\n```\n"
    )
    app = make_app(book, tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, modal(app, VariablesScreen), "the start form")
        await pilot.press("enter")  # IDLE keeps its default, green
        await until(pilot, waiting(app, "proceed", "up"), "the block")
        card = app.query_one(BlockCard)
        await until(pilot, lambda: "on web3, web4" in shown(card), "the resolved hosts")
        assert "$IDLE" not in shown(card)


async def test_the_header_says_when_the_run_waits_and_when_a_rollback_really_runs(
    tmp_path: Path,
) -> None:
    """Not READY while a question waits; not ROLLING BACK before a rollback block ran."""
    from runbook.tui.widgets import HeaderBar

    book = tmp_path / "book.md"
    book.write_text(
        '# H\n\n## Deploy\n\n```sh {name=deploy confirm="Deploy?"}\ntrue\n```\n\n'
        "```sh {name=undo rollback=true}\ntrue\n```\n\n"
        "## Check\n\n```sh {name=check}\nexit 1\n```\n"
    )
    app = make_app(book, tmp_path / "runs")

    def header() -> str:
        return shown(app.query_one(HeaderBar))

    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, waiting(app, "proceed", "deploy"), "the block")
        await until(pilot, lambda: "WAITING" in header(), "the header to say so")
        await pilot.press("n")
        await until(pilot, modal(app, ConfirmScreen, "Deploy?"), "the gate")
        await until(pilot, lambda: "WAITING" in header(), "the header at the gate")
        await pilot.press("y")
        await until(pilot, waiting(app, "proceed", "check"), "the check")
        await pilot.press("n")
        await until(pilot, modal(app, ChoiceScreen), "the failure menu")
        await pilot.press("b")
        await until(
            pilot, modal(app, ConfirmScreen, "Run rollback block undo"), "the rollback gate"
        )
        await until(pilot, lambda: "ROLLBACK?" in header(), "rollback decided")
        assert "ROLLING BACK" not in header()
        await pilot.press("y")
        await until(pilot, finished(app), "the end")
        await until(pilot, lambda: "ROLLED-BACK" in header(), "the result")
        outline = shown(app.query_one(StepOutline))
        assert "↶ 1. Deploy" in outline, outline  # undone: no longer shown as done
        assert "✗ 2. Check" in outline, outline


async def test_the_header_is_drawn_again_only_when_what_it_says_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The console's timer ticks 15 times a second; redrawing the header on each tick laid
    the screen out again and, under a dialog, redrew the whole dimmed screen behind it: an
    idle console at a gate kept a core busy and answered keys late."""
    from runbook.tui import widgets
    from runbook.tui.widgets import HeaderBar

    now = [2_000_000_000.0]
    monkeypatch.setattr(widgets, "time", types.SimpleNamespace(time=lambda: now[0]))
    book = tmp_path / "book.md"
    book.write_text('# H\n\n## Deploy\n\n```sh {name=deploy confirm="Deploy?"}\ntrue\n```\n')
    app = make_app(book, tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, waiting(app, "proceed", "deploy"), "the block")
        await pilot.press("n")
        await until(pilot, modal(app, ConfirmScreen, "Deploy?"), "the gate")
        header = app.query_one(HeaderBar)
        app.refresh_screen()
        drawn: list[object] = []
        monkeypatch.setattr(header, "update", lambda content="": drawn.append(content))
        for _ in range(30):  # two seconds of ticks, with the clock standing still
            app.refresh_screen()
        assert drawn == []
        now[0] += 1
        app.refresh_screen()
        app.refresh_screen()
        assert len(drawn) == 1  # a second passed: the elapsed time moved, once
        monkeypatch.undo()
        await pilot.press("y")
        await until(pilot, finished(app), "the end")
        await until(pilot, lambda: " OK " in shown(header), "the result in the header")


async def test_a_card_is_drawn_again_only_when_what_it_says_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every event redraws the step (on a fan-out, each host's start and end): a card that
    says the same is not updated, since an update lays the whole screen out again."""
    from runbook.tui.widgets import BlockCard

    book = tmp_path / "book.md"
    book.write_text(
        "# H\n\n## Deploy\n\n```sh {name=build}\ntrue\n```\n\n"
        '```sh {name=deploy confirm="Deploy?"}\ntrue\n```\n'
    )
    app = make_app(book, tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, waiting(app, "proceed", "build"), "the first block")
        build, deploy = app.query(BlockCard)
        app.refresh_screen()  # what is waiting now is drawn
        drawn: list[str] = []
        for card in (build, deploy):
            monkeypatch.setattr(card, "update", lambda _, name=card.block.name: drawn.append(name))
        for _ in range(5):
            app.dirty = True
            app.refresh_screen()
        assert drawn == []
        await pilot.press("n")
        await until(pilot, waiting(app, "proceed", "deploy"), "the second block")
        app.refresh_screen()
        # build ran and ended (its state, exit, time); deploy became the one waiting
        assert set(drawn) == {"build", "deploy"}
        drawn.clear()
        for _ in range(5):
            app.dirty = True
            app.refresh_screen()
        assert drawn == []
        monkeypatch.undo()
        await pilot.press("n")
        await until(pilot, modal(app, ConfirmScreen, "Deploy?"), "the gate")
        await pilot.press("y")
        await until(pilot, finished(app), "the end")


async def test_the_checklist_hint_wraps_whole_or_not_at_all(tmp_path: Path) -> None:
    """On a narrow terminal the waiting item's hint moved to its own line whole: it had
    broken after "skip with a", leaving "reason" alone."""
    book = tmp_path / "book.md"
    book.write_text("## S\n\n- [ ] Tell the on-call we start\n")
    app = make_app(book, tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, waiting(app, "tick"), "the item")
        checklist = app.query_one(Checklist)

        def lines() -> list[str]:
            return [line.replace("\xa0", " ").strip() for line in shown(checklist).splitlines()]

        await until(pilot, lambda: "space" in "".join(lines()), "the hint drawn")
        assert "space: tick · s: skip with a reason" in lines(), lines()
        await pilot.press("space")
        await until(pilot, finished(app), "the end")


async def test_checklist_items_after_a_block_are_drawn_after_it_and_ticked_there(
    tmp_path: Path,
) -> None:
    """Blue-green's last step: items to check before its block, and after. Each list is
    drawn where the author wrote it, and the item waiting is the one shown, in view."""
    from runbook.tui.widgets import BlockCard, StepView

    book = tmp_path / "book.md"
    book.write_text(
        "# C\n\n## Retire\n\n- [ ] before one\n- [ ] before two\n\n"
        "```sh {name=retire}\necho retired\n```\n\nThen check:\n\n"
        "- [ ] after one\n\n- [ ] after two\n"
    )
    app = make_app(book, tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(StepView)
        for text in ("before one", "before two"):
            await until(pilot, waiting(app, "tick", text), text)
            await pilot.press("space")
        await until(pilot, waiting(app, "proceed", "retire"), "the block")
        order = [type(w).__name__ for w in view.children if type(w) in (Checklist, BlockCard)]
        assert order == ["Checklist", "BlockCard", "Checklist"]
        first, last = view.query(Checklist)
        assert "before two" in shown(first) and "after" not in shown(first)
        await pilot.press("n")
        for text in ("after one", "after two"):
            await until(pilot, waiting(app, "tick", text), text)
            await until(pilot, lambda t=text: _hinted(t, shown(last)), "shown")  # type: ignore[misc]
            await until(
                pilot,
                lambda: view.scrollable_content_region.overlaps(last.region),
                "the list in view",
            )
            await pilot.press("space")
        await until(pilot, finished(app), "the end")
        assert "[x] after one" in shown(last) and "[x] after two" in shown(last)
    ticks = [(e["item"], e["result"]) for e in kinds(app, "check.tick")]
    assert ticks == [(0, "ticked"), (1, "ticked"), (2, "ticked"), (3, "ticked")]
    order = [
        (e["type"], e.get("item"))
        for e in events(app)
        if e["type"] in ("check.tick", "block.start")
    ]
    assert order == [
        ("check.tick", 0),
        ("check.tick", 1),
        ("block.start", None),
        ("check.tick", 2),
        ("check.tick", 3),
    ]


def _hinted(item: str, drawn: str) -> bool:
    """``item`` is drawn waiting: the keys' hint on the line after it."""
    return re.search(rf"\[ \] {re.escape(item)} *\n *space: tick", drawn) is not None


async def test_a_long_output_line_can_be_scrolled_to_its_end(tmp_path: Path) -> None:
    """And the next block's output starts at its first column again: left scrolled to a
    long line's end, its short lines showed as a blank pane."""
    from textual.widgets import Log

    book = tmp_path / "book.md"
    book.write_text(
        "# L\n\n## Print\n\n```sh {name=p}\nprintf 'start-%0300d-END\\n' 7\n```\n\n"
        "```sh {name=short}\necho short-line\n```\n"
    )
    app = make_app(book, tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, waiting(app, "proceed", "p"), "the block")
        await pilot.press("n")
        await until(pilot, waiting(app, "proceed", "short"), "the next block")
        log = app.query(Log).first()
        await until(pilot, lambda: log.max_scroll_x > 200, "the line in the log, whole")
        log.focus()
        await pilot.press("right", "right")
        assert log.scroll_x == 2
        log.scroll_to(x=log.max_scroll_x, animate=False, immediate=True)
        await until(pilot, lambda: "-END" in shown(log), "the line's end on screen")
        await pilot.press("n")
        await until(pilot, finished(app), "the end")
        await until(pilot, lambda: "short-line" in shown(log), "the next block's line on screen")
        assert log.scroll_x == 0


async def test_a_resumed_run_shows_the_end_of_the_earlier_output(tmp_path: Path) -> None:
    """The output pane after a resume is not empty: the earlier output, then a line that
    says where the run stopped, then this run's."""
    from conftest import crash_mid_block

    mark = tmp_path / "mark"
    book = tmp_path / "book.md"
    book.write_text(
        "## One\n\n```sh\necho earlier-output-line\n```\n\n## Two\n\n"
        f"```sh\necho two-began\n[ -e {mark} ] || {{ touch {mark}; sleep 63.5; }}\n"
        "echo two-again\n```\n"
    )
    runs = tmp_path / "runs"

    def recorded() -> bool:  # output still in flight when SIGKILL comes is lost, by design
        return any(b"two-began" in p.read_bytes() for p in runs.glob("*/transcript.jsonl"))

    args = ["run", str(book), "--yes", "--runs-dir", str(runs)]
    crash_mid_block(args, mark, "sleep 63.5", also=recorded)
    transcript = next(runs.glob("*/transcript.jsonl"))
    app = make_app(book, runs, resume=transcript)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, modal(app, ChoiceScreen), "the unknown-outcome question")
        await until(pilot, lambda: "resumed" in _log_text(app, "local"), "the earlier output")
        earlier = _log_text(app, "local").splitlines()
        assert earlier[-1] == "── the run stopped here; resumed ──", earlier
        assert "earlier-output-line" in earlier and "two-began" in earlier
        await pilot.press("r")
        await until(pilot, waiting(app, "proceed"), "the block, to re-run")
        await pilot.press("n")
        await until(pilot, finished(app), "the end")
        await until(pilot, lambda: "two-again" in _log_text(app, "local"), "this run's output")
