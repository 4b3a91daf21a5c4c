"""What the console's tests share: an app factory, waits on conditions, the transcript."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from textual.geometry import Region
from textual.pilot import Pilot
from textual.widget import Widget

from runbook import launch
from runbook.engine.operator import Operator
from runbook.engine.session import Session
from runbook.format.inputs import load_runbook, parse_vars
from runbook.record.chain import read_lines
from runbook.tui.app import Launch, RunbookApp


def make_app(
    book: Path,
    runs: Path,
    *,
    assignments: Sequence[str] = (),
    ssh_config: Path | None = None,
    resume: Path | None = None,
) -> RunbookApp:
    """The console as ``runbook FILE`` (or ``runbook resume``) builds it, recording in ``runs``."""
    rb, _ = load_runbook(str(book))
    given = parse_vars(assignments)

    def start(operator: Operator, entered: Mapping[str, str]) -> tuple[Session, Sequence[Any]]:
        if resume is not None:
            session, previous = launch.prepare_resume(
                str(resume),
                allow_changed=False,
                assignments=assignments,
                argv=["runbook", "resume", str(resume)],
                announce=lambda _: None,
                operator=operator,
                ssh_config=ssh_config,
            )
            return session, previous.history
        session = launch.prepare_run(
            str(book),
            assignments=assignments,
            runs=runs,
            argv=["runbook", str(book)],
            announce=lambda _: None,
            operator=operator,
            ssh_config=ssh_config,
            entered=entered,
        )
        return session, []

    ask = () if resume else tuple(v for v in rb.variables if v.name not in given)
    return RunbookApp(Launch(rb, start, ask))


async def until(
    pilot: Pilot[Any], condition: Callable[[], object], what: str, timeout: float = 20
) -> None:
    """Let the app run until ``condition()`` holds: a wait with a deadline, not a sleep."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await pilot.pause(0.01)


def waiting(app: RunbookApp, kind: str, name: str | None = None) -> Callable[[], bool]:
    """The engine is parked on the operator: ``proceed`` (before a block) or ``tick``."""

    def check() -> bool:
        w = app.waiting
        if w is None or w.kind != kind:
            return False
        return name is None or getattr(w.item, "name", getattr(w.item, "text", None)) == name

    return check


def modal(app: RunbookApp, cls: type, text: str | None = None) -> Callable[[], bool]:
    """A modal of type ``cls`` (whose prompt shows ``text``) is on top and laid out."""

    def check() -> bool:
        screen = app.screen
        if not isinstance(screen, cls):
            return False
        dialogs = screen.query(".dialog")
        if not dialogs or dialogs.first().size.height == 0:
            return False
        return text is None or text in shown(screen.query_one(".prompt"))

    return check


def finished(app: RunbookApp) -> Callable[[], bool]:
    return lambda: app.outcome is not None


def events(app: RunbookApp) -> list[dict[str, Any]]:
    """Every event of the app's transcript, as recorded on disk."""
    assert app.session is not None
    return [line.event for line in read_lines(Path(app.session.writer.path))]


def kinds(app: RunbookApp, type_: str) -> list[dict[str, Any]]:
    return [e for e in events(app) if e["type"] == type_]


def shown(widget: Widget) -> str:
    """The text a widget shows on screen now, as its lines are drawn."""
    size = widget.outer_size  # with its border and padding: `size` is the content's
    region = Region(0, 0, size.width, size.height)
    return "\n".join(strip.text for strip in widget.render_lines(region))


async def abort(pilot: Pilot[Any], app: RunbookApp) -> None:
    """Abort from a failure menu: its key, then the confirmation it asks for."""
    from runbook.tui.screens import ConfirmScreen

    await pilot.press("x")
    await until(pilot, modal(app, ConfirmScreen, "Abort"), "the abort confirmation")
    await pilot.press("y")
