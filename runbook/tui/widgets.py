"""The console's widgets: header, step outline, the step itself, block cards, output.

Attributes down, messages up: the app hands each widget the ``Progress`` and the
runbook and asks it to refresh; widgets never talk to the engine.
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime

from rich.console import Group
from rich.padding import Padding
from rich.table import Table
from rich.text import Text
from textual.await_complete import AwaitComplete
from textual.containers import VerticalScroll
from textual.timer import Timer
from textual.widgets import Log, Markdown, OptionList, Static, TabbedContent, TabPane
from textual.widgets.option_list import Option

from runbook.format.hosts import describe, resolve_targets
from runbook.format.model import Block, Runbook, Step
from runbook.format.screen import inert
from runbook.format.values import ValueProblem, expand
from runbook.record.progress import (
    DONE,
    FAILED,
    ICONS,
    PENDING,
    ROLLED_BACK,
    RUNNING,
    SKIPPED,
    UNKNOWN,
    BakeProgress,
    HealthRun,
    Progress,
)
from runbook.tui.plain import plain

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
    ROLLED_BACK: "yellow",
}


def status_text(status: str) -> Text:
    return Text(f"{ICONS[status]} {status}", style=STATUS_STYLE[status])


class Said(Static):
    """A ``Static`` redrawn only when what it says changes: each ``update`` lays the whole
    screen out again, and under a dialog redraws the dimmed screen behind it, while the
    console's timer and every event (on a fan-out, each host's) ask for a redraw."""

    said: object = None

    def changed(self, said: object) -> bool:
        """Whether ``said`` (what would be drawn, or what it is drawn from) is new; noted."""
        if said == self.said:
            return False
        self.said = said
        return True


class HeaderBar(Said):
    """Title, environment, operator, elapsed time, transcript, overall status; drawn again
    when one of them changes (the elapsed time once a second), not on every tick."""

    def show(
        self,
        rb: Runbook,
        progress: Progress,
        env: str,
        operator: str,
        path: str,
        asking: bool = False,
    ) -> None:
        """``asking``: the run waits for the operator (a question open, a key awaited)."""
        if progress.result:
            overall = Text(f" {progress.result.upper()} ", style="bold reverse")
            overall.stylize("green" if progress.result == "ok" else "red")
        elif asking and not progress.running:
            what = " ROLLBACK? " if progress.rolling_back else " WAITING "
            overall = Text(what, style="bold reverse yellow")
        elif progress.rolling_back and not progress.rollback_ran:
            overall = Text(" ROLLBACK NEXT ", style="bold reverse red")
        elif progress.rolling_back:
            overall = Text(" ROLLING BACK ", style="bold reverse red")
        elif progress.baking and not progress.running:
            overall = Text(" BAKING ", style="bold reverse yellow")
        else:
            overall = Text(" RUNNING " if progress.running else " READY ", style="bold reverse")
        elapsed = _elapsed(progress.started)
        if not self.changed((rb.title, env, operator, path, elapsed, overall.markup)):
            return
        status = Text.assemble((elapsed, "bold"), "  ", overall)
        who = Text.assemble(("operator ", "dim"), plain(operator)) if operator else ""
        grid = Table.grid(expand=True, padding=(0, 2))
        grid.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        grid.add_column(justify="right", no_wrap=True)
        grid.add_row(Text.assemble(plain(rb.title, "bold"), "  ", plain(env, "cyan")), status)
        where = Text(inert(f"transcript {path}"), style="dim", overflow="ellipsis", no_wrap=True)
        grid.add_row(where, who)
        self.update(Padding(grid, (0, 1)))


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
        """Redraw the lines that changed, in place: the list is not rebuilt for every
        event, which scrolled it back to the highlighted step and laid it out again."""
        labels = []
        for step in rb.steps:
            status = progress.step_status(step.index)
            label = Text.assemble((ICONS[status], STATUS_STYLE[status]), f" {step.index}. ")
            label.append(plain(step.title, "bold" if step.index == progress.current_step else ""))
            labels.append(label)
        if len(labels) == self.option_count:
            for index, (label, option) in enumerate(zip(labels, self.options, strict=True)):
                if label != option.prompt:
                    self.replace_option_prompt_at_index(index, label)
            return
        highlighted = self.highlighted
        self.set_options(
            Option(label, id=f"step-{step.index}")
            for step, label in zip(rb.steps, labels, strict=True)
        )
        if highlighted is not None and highlighted < len(labels):
            self.highlighted = highlighted


class BlockCard(Said):
    """One block: its command, its options as badges, its state, exit and duration; while
    its rollout bakes, a countdown that a timer redraws every second."""

    def __init__(self, block: Block) -> None:
        super().__init__(id=f"card-{_ident(block.name)}", classes="card")
        self.block = block
        self.shown: tuple[Progress, bool] | None = None
        self.ticker: Timer | None = None

    def where(self, progress: Progress) -> str:
        """Where it runs: the hosts ``on:`` names with the values known now (``on $IDLE``
        said nothing); unresolved, as written."""
        on = self.block.options.on
        try:
            return describe(resolve_targets(expand(on, dict(progress.values)), progress.rb.hosts))
        except ValueProblem:
            return f"on {on}"

    def show(self, progress: Progress, waiting: bool) -> None:
        self.shown = (progress, waiting)
        b = progress.block(self.block.name)
        baking = b.bake is not None and b.bake.active
        if baking and self.ticker is None and self.is_mounted:
            self.ticker = self.set_interval(1, self.tick)
        elif not baking and self.ticker is not None:
            self.ticker.stop()
            self.ticker = None
        o = self.block.options
        badges = Text()
        for text, style in _badges(self.block, self.where(progress)):
            badges.append(plain(f" {text} ", style=style))
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
        head = Text.assemble(
            plain(self.block.name, "bold"), "  ", state, "  ", plain(" · ".join(extra))
        )
        parts = [head, badges]
        if b.hosts:
            hosts = Text()
            for host, status in b.hosts.items():
                hosts.append(plain(f"{ICONS[status]} {host}  ", style=STATUS_STYLE[status]))
            parts.append(hosts)
        if b.bake is not None:
            parts.append(bake_text(b.bake))
        lines = self.block.code.rstrip("\n").splitlines()
        code = plain("\n".join(lines[:CARD_LINES]), style="bright_white")
        if len(lines) > CARD_LINES:
            code.append(f"\n… {len(lines) - CARD_LINES} more lines (the gate shows all)", "dim")
        parts.append(code)
        if self.block.expected:  # a pasted session: what its author saw, never run
            seen = self.block.expected.rstrip("\n").splitlines()
            output = plain("\n".join(seen[:CARD_LINES]), style="dim italic")
            parts.append(Text.assemble(("expected output (not run):", "dim"), "\n", output))
        self.set_class(o.rollback, "rollback")
        self.set_class(waiting, "waiting")
        if self.changed(tuple(part.markup for part in parts)):
            self.update(Group(*parts))

    def tick(self) -> None:
        """Once a second while baking: the countdown moves even when no event comes."""
        if self.shown is not None:
            self.show(*self.shown)


def clock() -> float:
    """Now, for the bake countdown; tests pin it, as they pin the elapsed time."""
    return time.time()


HISTORY_ROUNDS = 5
"""Rounds of health history a card shows; the transcript and the report have them all."""


def bake_text(bake: BakeProgress) -> Text:
    """The bake's countdown (or how it ended) and its health history, round by round."""
    where = f"after batch {bake.batch}/{bake.of}"
    every = f"health every {_span(bake.interval)}" if bake.checks else "no health check"
    if bake.active:
        left = _countdown(bake.started, bake.seconds)
        text = plain(f"baking {where} · {left} left · {every}", style="bold yellow")
    else:
        rounds = f"{bake.rounds} round{'s' * (bake.rounds != 1)}"
        how = {
            "ok": (f"ok after {rounds}", "green"),
            "failed": (f"failed in round {bake.rounds}", "bold red"),
            "interrupted": (f"interrupted after {rounds}", "magenta"),
        }.get(bake.result or "", (f"{bake.result} after {rounds}", "bold magenta"))
        text = Text.assemble((f"bake {where}: {how[0]}", how[1]), f" · {every}")
    by_round: dict[int, list[HealthRun]] = {}
    for run in bake.runs.values():
        by_round.setdefault(run.round, []).append(run)
    shown = sorted(by_round)[-HISTORY_ROUNDS:]
    if len(by_round) > len(shown):
        earlier = len(by_round) - len(shown)
        text.append(f"\n  … {earlier} earlier round{'s' * (earlier != 1)}", style="dim")
    named = len(bake.checks) > 1
    for number in shown:
        text.append(f"\n  round {number:<3}", style="dim")
        for run in by_round[number]:
            label = f"{run.check} {run.target}" if named else run.target
            failed = f" ({run.detail})" if run.status == FAILED and run.detail else ""
            text.append(plain(f" {ICONS[run.status]} {label}{failed} ", STATUS_STYLE[run.status]))
    return text


def _countdown(started: str | None, seconds: float) -> str:
    try:
        begun = datetime.fromisoformat((started or "").replace("Z", "+00:00")).timestamp()
    except ValueError:
        return "--:--"
    left = max(0, math.ceil(begun + seconds - clock()))
    return f"{left // 60}:{left % 60:02d}"


def _span(seconds: float) -> str:
    """``300ms``, ``15s``, ``1m30s``: an interval as an author would write it."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    minutes, rest = divmod(seconds, 60)
    if not minutes:
        return f"{rest:g}s"
    return f"{minutes:.0f}m" + (f"{rest:g}s" if rest else "")


def _badges(block: Block, where: str) -> list[tuple[str, str]]:
    o = block.options
    found: list[tuple[str, str]] = [(where, "reverse cyan")]
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
    if o.background:
        found.append(("background", "reverse blue"))
    if o.continue_on_error:
        found.append(("continue on error", "reverse"))
    if o.bake:
        found.append((f"bake {o.bake}", "reverse yellow"))
    if o.health:
        found.append(("health check", "reverse green"))
    return found


def _ident(name: str) -> str:
    """A widget id for a block or host name, one to one (`a:b` and `a_b` differ)."""
    return re.sub(r"[^A-Za-z0-9-]", lambda m: f"_{ord(m.group()):x}_", name)


class Checklist(Static):
    """Checklist items written together (a step may have one list before its block and
    one after): ticked, skipped, or waiting for the operator."""

    def __init__(self, indexes: list[int]) -> None:
        super().__init__(classes="checklist")
        self.indexes = indexes
        """Which of the step's items, by their index in ``step.checklist``."""

    def show(self, step: Step, answers: dict[int, str], waiting: int | None) -> None:
        text = Text()
        for index in self.indexes:
            item = step.checklist[index]
            answer = answers.get(index)
            mark = {"ticked": "[x]", "skipped": "[-]"}.get(answer or "", "[ ]")
            style = "green" if answer == "ticked" else "magenta" if answer else ""
            if index == waiting:
                style = "bold reverse cyan"
            text.append(plain(f"{mark} {item.text}", style=style))
            if index == waiting:
                # on a line of its own: after the item, a wrap broke it anywhere
                text.append("\n    space: tick · s: skip with a reason", style="cyan")
            text.append("\n")
        self.update(text)


class StepView(VerticalScroll):
    """A step as written: its alerts first, then prose, checklist and block cards in order."""

    def __init__(self) -> None:
        super().__init__(id="step")
        self.step: Step | None = None

    async def load(self, rb: Runbook, step: Step) -> None:
        self.step = None  # until its widgets are mounted, nothing is drawn for either step
        await self.remove_children()
        lines = rb.source.splitlines()
        widgets: list[Static | Markdown | Checklist | BlockCard] = [
            Static(plain(f"{step.index}. {step.title}", style="bold underline"), id="step-title")
        ]
        for alert in step.alerts:
            kind = alert.kind.lower()
            widgets.append(
                Static(
                    plain(f"{alert.kind.upper()}: {_unwrap(alert.text)}"),
                    classes=f"alert alert-{kind}",
                )
            )
        skip = _alert_lines(step, lines)
        prose: list[str] = []
        group: Checklist | None = None  # the list being read, until prose or a block

        def flush() -> None:
            if "".join(prose).strip():
                widgets.append(Markdown(inert("\n".join(prose))))
            prose.clear()

        starts = {b.line: b for b in step.blocks}
        items = {c.line: i for i, c in enumerate(step.checklist)}
        number = step.line + 1
        while number <= step.end_line:
            if number in starts:
                flush()
                group = None
                block = starts[number]
                widgets.append(BlockCard(block))
                number = block.end_line + 1
                continue
            if number in items:
                if group is None or "".join(prose).strip():
                    flush()
                    group = Checklist([])
                    widgets.append(group)
                prose.clear()  # blank lines between items keep one list
                group.indexes.append(items[number])
            elif number not in skip:
                prose.append(lines[number - 1])
            number += 1
        flush()
        await self.mount_all(widgets)
        self.step = step
        self.scroll_home(animate=False)

    def show_card(self, card: BlockCard) -> None:
        """Scroll so that ``card`` shows with as much of the step above it as fits (its
        alerts first): the same place whatever was scrolled before, unlike
        ``scroll_visible``, which moves as little as it can."""
        top, bottom = card.virtual_region.y, card.virtual_region.bottom
        height = self.scrollable_content_region.height
        y = top if bottom - top > height else max(0, bottom - height)
        self.scroll_to(y=y, animate=False, immediate=True)
        # Textual moves the scrollbar only while it shows: a scroll made while the step was
        # reloading (too short for one) leaves its thumb where it was.
        self.vertical_scrollbar.position = self.scroll_y

    def cards(self) -> list[BlockCard]:
        return list(self.query(BlockCard))

    def show_state(
        self, progress: Progress, ticks: dict[int, str], next_block: str | None, ticking: int | None
    ) -> BlockCard | None:
        """Redraw the cards and the checklist; the card of ``next_block`` (the block a
        gate waits for) is highlighted and returned, to be scrolled into view."""
        found = None
        for card in self.cards():
            is_next = card.block.name == next_block
            card.show(progress, is_next)
            found = card if is_next else found
        if self.step is not None:
            for checklist in self.query(Checklist):
                checklist.show(self.step, ticks, ticking)
                if ticking in checklist.indexes:  # the item waiting is in view
                    self.call_after_refresh(checklist.scroll_visible, animate=False)
        return found


class HostStrip(Said):
    """Each host of the block running now, with its status."""

    def show(self, progress: Progress) -> None:
        name = progress.current_block
        hosts = progress.block(name).hosts if name else {}
        self.display = bool(hosts)
        if hosts:
            text = plain(f"{name}: ", style="bold")
            for host, status in hosts.items():
                text.append(plain(f" {ICONS[status]} {host} ", style=STATUS_STYLE[status]))
            if self.changed(text.markup):
                self.update(text)


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

    def home(self, target: str) -> None:
        """A block starts on ``target``: its log back at its first column. Left scrolled
        sideways to read a long line, the new block's short lines would show as blank."""
        log = self.logs.get(target)
        if log is not None:
            log.scroll_to(x=0, animate=False)

    async def focus_target(self, target: str) -> None:
        """Show ``target``'s tab, once its pane is mounted."""
        self.log_for(target)
        mounting = self.mounting.pop(target, None)
        if mounting is not None:
            await mounting
        self.active = f"tab-{_ident(target)}"
