"""The console's widgets: header, step outline, the step itself, block cards, output.

Attributes down, messages up: the app hands each widget the ``Progress`` and the
runbook and asks it to refresh; widgets never talk to the engine.
"""

from __future__ import annotations

import re
import time
from datetime import datetime

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.await_complete import AwaitComplete
from textual.containers import VerticalScroll
from textual.widgets import Log, Markdown, OptionList, Static, TabbedContent, TabPane
from textual.widgets.option_list import Option

from runbook.model import Block, Runbook, Step
from runbook.progress import DONE, FAILED, ICONS, PENDING, RUNNING, SKIPPED, UNKNOWN, Progress

CARD_LINES = 8
"""Lines of a block's command a card shows; the gate's dialog shows all of them."""
LOG_LINES = 5_000
"""Lines kept per output tab; the transcript keeps everything."""

STATUS_STYLE = {
    PENDING: "dim",
    RUNNING: "bold yellow",
    DONE: "green",
    FAILED: "bold red",
    SKIPPED: "magenta",
    UNKNOWN: "bold magenta",
}


def status_text(status: str) -> Text:
    return Text(f"{ICONS[status]} {status}", style=STATUS_STYLE[status])


class HeaderBar(Static):
    """Title, environment, operator, elapsed time, transcript, overall status."""

    def show(self, rb: Runbook, progress: Progress, env: str, operator: str, path: str) -> None:
        if progress.result:
            overall = Text(f" {progress.result.upper()} ", style="bold reverse")
            overall.stylize("green" if progress.result == "ok" else "red")
        elif progress.rolling_back:
            overall = Text(" ROLLING BACK ", style="bold reverse red")
        else:
            overall = Text(" RUNNING " if progress.running else " READY ", style="bold reverse")
        grid = Table.grid(expand=True, padding=(0, 2))
        grid.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        grid.add_column(justify="right", no_wrap=True)
        grid.add_row(
            Text.assemble((rb.title, "bold"), "  ", (env, "cyan")),
            Text.assemble(
                ("operator ", "dim"),
                operator,
                "  ",
                (_elapsed(progress.started), "bold"),
                "  ",
                overall,
            ),
        )
        grid.add_row(Text(f"transcript {path}", style="dim", overflow="ellipsis", no_wrap=True), "")
        self.update(grid)


def _elapsed(started: str | None) -> str:
    if not started:
        return "0:00:00"
    try:
        begun = datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return "--:--"
    seconds = max(0, int(time.time() - begun))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class StepOutline(OptionList):
    """Every step with its status icon; selecting one shows it."""

    def show(self, rb: Runbook, progress: Progress) -> None:
        highlighted = self.highlighted
        self.clear_options()
        for step in rb.steps:
            status = progress.step_status(step.index)
            label = Text.assemble((ICONS[status], STATUS_STYLE[status]), f" {step.index}. ")
            label.append(step.title, style="bold" if step.index == progress.current_step else "")
            self.add_option(Option(label, id=f"step-{step.index}"))
        if highlighted is not None:
            self.highlighted = highlighted


class BlockCard(Static):
    """One block: its command, its options as badges, its state, exit and duration."""

    def __init__(self, block: Block) -> None:
        super().__init__(id=f"card-{_ident(block.name)}", classes="card")
        self.block = block

    def show(self, progress: Progress, waiting: bool) -> None:
        b = progress.block(self.block.name)
        o = self.block.options
        badges = Text()
        for text, style in _badges(self.block):
            badges.append(f" {text} ", style=style)
            badges.append(" ")
        state = status_text(b.status)
        if waiting:
            state = Text("▸ next: n runs it, s skips it", style="bold cyan")
        extra = []
        if b.attempt > 1:
            extra.append(f"attempt {b.attempt}")
        if b.exit is not None:
            extra.append(f"exit {b.exit}")
        if b.duration is not None:
            extra.append(f"{b.duration:.1f}s")
        shown = b.detail and b.detail != f"exit {b.exit}"
        if shown and b.status in (SKIPPED, DONE, FAILED) and not b.hosts:
            extra.append(b.detail)
        head = Text.assemble((self.block.name, "bold"), "  ", state, "  ", " · ".join(extra))
        parts: list[object] = [head, badges]
        if b.hosts:
            hosts = Text()
            for host, status in b.hosts.items():
                hosts.append(f"{ICONS[status]} {host}  ", style=STATUS_STYLE[status])
            parts.append(hosts)
        lines = self.block.code.rstrip("\n").splitlines()
        code = Text("\n".join(lines[:CARD_LINES]), style="bright_white")
        if len(lines) > CARD_LINES:
            code.append(f"\n… {len(lines) - CARD_LINES} more lines (the gate shows all)", "dim")
        parts.append(code)
        self.set_class(o.rollback, "rollback")
        self.set_class(waiting, "waiting")
        self.update(Group(*parts))  # type: ignore[arg-type]


def _badges(block: Block) -> list[tuple[str, str]]:
    o = block.options
    found: list[tuple[str, str]] = [(f"on {o.on}", "reverse cyan")]
    if o.serial:
        found.append(("batches " + " → ".join(str(a) for a in o.serial), "reverse blue"))
    if o.max_fail.value:
        found.append((f"max-fail {o.max_fail}", "reverse blue"))
    if o.confirm:
        found.append(("confirm", "reverse yellow"))
    if o.type_to_confirm:
        found.append(("typed confirm", "reverse red"))
    if o.timeout:
        found.append((f"timeout {o.timeout.text}", "reverse"))
    if o.retries:
        found.append((f"retries {o.retries}", "reverse"))
    if o.capture:
        found.append((f"capture {o.capture}", "reverse green"))
    if o.rollback:
        found.append(("rollback", "reverse magenta"))
    if o.manual:
        found.append(("optional", "reverse"))
    if o.continue_on_error:
        found.append(("continue on error", "reverse"))
    return found


def _ident(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


class Checklist(Static):
    """The step's checklist: ticked, skipped, or waiting for the operator."""

    def show(self, step: Step, answers: dict[int, str], waiting: int | None) -> None:
        text = Text()
        for index, item in enumerate(step.checklist):
            answer = answers.get(index)
            mark = {"ticked": "[x]", "skipped": "[-]"}.get(answer or "", "[ ]")
            style = "green" if answer == "ticked" else "magenta" if answer else ""
            if index == waiting:
                style = "bold reverse cyan"
            text.append(f"{mark} {item.text}", style=style)
            if index == waiting:
                text.append("   space: tick · s: skip with a reason", style="cyan")
            text.append("\n")
        self.update(text)


class StepView(VerticalScroll):
    """A step as written: its alerts first, then prose, checklist and block cards in order."""

    def __init__(self) -> None:
        super().__init__(id="step")
        self.step: Step | None = None

    async def load(self, rb: Runbook, step: Step) -> None:
        self.step = step
        await self.remove_children()
        lines = rb.source.splitlines()
        widgets: list[Static | Markdown | Checklist | BlockCard] = [
            Static(Text(f"{step.index}. {step.title}", style="bold underline"), id="step-title")
        ]
        for alert in step.alerts:
            kind = alert.kind.lower()
            widgets.append(
                Static(
                    Text(f"{alert.kind.upper()}: {_unwrap(alert.text)}"),
                    classes=f"alert alert-{kind}",
                )
            )
        skip = _alert_lines(step, lines)
        prose: list[str] = []
        placed_checklist = False

        def flush() -> None:
            if "".join(prose).strip():
                widgets.append(Markdown("\n".join(prose)))
            prose.clear()

        starts = {b.line: b for b in step.blocks}
        checklist_lines = {c.line for c in step.checklist}
        number = step.line + 1
        while number <= step.end_line:
            if number in starts:
                flush()
                block = starts[number]
                widgets.append(BlockCard(block))
                number = block.end_line + 1
                continue
            if number in checklist_lines:
                if not placed_checklist:
                    flush()
                    widgets.append(Checklist(id="checklist"))
                    placed_checklist = True
            elif number not in skip:
                prose.append(lines[number - 1])
            number += 1
        flush()
        await self.mount_all(widgets)
        self.scroll_home(animate=False)

    def cards(self) -> list[BlockCard]:
        return list(self.query(BlockCard))


def _unwrap(text: str) -> str:
    """Prose as written, re-flowed for the width on screen: paragraphs stay apart."""
    return "\n".join(" ".join(p.split()) for p in re.split(r"\n\s*\n", text))


def _alert_lines(step: Step, lines: list[str]) -> set[int]:
    """Source lines of the step's alerts (shown on their own, above the prose)."""
    found: set[int] = set()
    for alert in step.alerts:
        number = alert.line
        while number <= step.end_line and lines[number - 1].lstrip().startswith(">"):
            found.add(number)
            number += 1
    return found


class OutputPane(TabbedContent):
    """One tab per target (``local`` or a host), each a capped log of its output."""

    def __init__(self) -> None:
        super().__init__(id="output")
        self.logs: dict[str, Log] = {}
        self.mounting: dict[str, AwaitComplete] = {}

    def log_for(self, target: str) -> Log:
        log = self.logs.get(target)
        if log is None:
            log = Log(max_lines=LOG_LINES, id=f"log-{_ident(target)}", classes="output-log")
            self.logs[target] = log
            self.mounting[target] = self.add_pane(TabPane(target, log, id=f"tab-{_ident(target)}"))
        return log

    async def focus_target(self, target: str) -> None:
        """Show ``target``'s tab, once its pane is mounted."""
        self.log_for(target)
        mounting = self.mounting.pop(target, None)
        if mounting is not None:
            await mounting
        self.active = f"tab-{_ident(target)}"
