"""Where a run stands, per step, block and host: a fold over events for displays.

``events.RunState`` is what the engine needs to resume; this is what a person needs to see:
a status per step (pending, running, done, failed, skipped, unknown), per block (with
its exit, duration and attempt) and per host of a multi-host block. The TUI folds live
events into it, and on resume it first folds every event recorded before.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from runbook.format.model import Runbook, Step
from runbook.record import events as ev

PENDING = "pending"
RUNNING = "running"
DONE = "done"
FAILED = "failed"
SKIPPED = "skipped"
UNKNOWN = "unknown"
ROLLED_BACK = "rolled-back"  # a step whose rollback block ran to the end

# Plain symbols, no emoji: terminals agree on their width.
ICONS = {
    PENDING: "○",
    RUNNING: "▸",
    DONE: "✓",
    FAILED: "✗",
    SKIPPED: "↷",
    UNKNOWN: "?",
    ROLLED_BACK: "↶",
}


@dataclass(frozen=True)
class HealthRun:
    """One health check run by a bake, on one target."""

    round: int
    check: str
    target: str
    status: str = RUNNING
    exit: int | None = None
    detail: str = ""
    time: str | None = None
    """When it started (the event's UTC time)."""


@dataclass
class BakeProgress:
    """One bake of a block after a batch: what it waits for and what its checks said."""

    batch: int
    of: int
    started: str | None
    """When it began (``bake.start``'s UTC time): the countdown runs from here."""
    seconds: float
    interval: float
    checks: list[str] = field(default_factory=list)
    runs: dict[tuple[int, str, str], HealthRun] = field(default_factory=dict)
    """(round, check, target) -> its run, in the order they started."""
    result: str | None = None
    """``None`` while it bakes; then ``ok``, ``failed``, ``interrupted`` or ``stopped``."""
    rounds: int = 0

    @property
    def active(self) -> bool:
        return self.result is None


@dataclass
class BlockProgress:
    status: str = PENDING
    attempt: int = 0
    exit: int | None = None
    duration: float | None = None
    detail: str = ""
    """How it ended, in words (``exit 1``, ``timed out after 30s``, a skip's reason)."""
    hosts: dict[str, str] = field(default_factory=dict)
    """host -> status, for a block on hosts, in the order the hosts started."""
    host_detail: dict[str, str] = field(default_factory=dict)
    bakes: list[BakeProgress] = field(default_factory=list)
    """Its bakes, one per batch held (and per retry), the latest last."""

    @property
    def bake(self) -> BakeProgress | None:
        return self.bakes[-1] if self.bakes else None


@dataclass
class Progress:
    rb: Runbook
    steps: dict[int, str] = field(default_factory=dict)
    blocks: dict[str, BlockProgress] = field(default_factory=dict)
    current_step: int | None = None
    current_block: str | None = None
    rolling_back: bool = False
    rollback_ran: bool = False
    """A rollback block has started: until then a rollback is decided, not running."""
    result: str | None = None
    message: str = ""
    started: str | None = None
    """The run's start time (ISO), for the elapsed clock."""
    notes: int = 0
    values: dict[str, str] = field(default_factory=dict)
    """The values known so far (secrets never arrive here): what ``on $IDLE`` resolves to."""

    def __post_init__(self) -> None:
        self.step_of = {b.name: b.step for b in self.rb.blocks}
        """The step each block belongs to, by name (events name blocks)."""
        self.undoes = {b.name for b in self.rb.blocks if b.options.rollback}
        for step in self.rb.steps:
            self.steps[step.index] = PENDING
            for block in step.blocks:
                self.blocks[block.name] = BlockProgress()

    def block(self, name: str) -> BlockProgress:
        return self.blocks.setdefault(name, BlockProgress())

    @property
    def running(self) -> bool:
        """Whether a command runs now (not: a rollout waits between two batches)."""
        return any(
            b.status == RUNNING and (not b.hosts or RUNNING in b.hosts.values())
            for b in self.blocks.values()
        )

    @property
    def baking(self) -> str | None:
        """The block whose rollout holds for its bake now, if any."""
        return next((n for n, b in self.blocks.items() if b.bake and b.bake.active), None)

    def apply(self, e: dict[str, Any]) -> None:
        kind = e.get("type")
        if kind in (ev.BLOCK_START, ev.BLOCK_END) and e.get("bake"):
            self._health_run(e)  # the bake's, not the check's own state
        elif kind == ev.BAKE_START:
            self.block(e["block"]).bakes.append(
                BakeProgress(
                    e["batch"],
                    e["of"],
                    e.get("time"),
                    e["seconds"],
                    e["interval"],
                    list(e.get("checks") or []),
                )
            )
        elif kind == ev.BAKE_END:
            bake = self.block(e["block"]).bake
            if bake is not None:
                bake.result, bake.rounds = e["result"], e.get("rounds", 0)
        elif kind == ev.RUN_START:
            self.started = self.started or e.get("time")
            known = e.get("variables") or {}
            self.values |= {k: v for k, v in known.items() if isinstance(v, str)}
        elif kind in (ev.VAR_SET, ev.CAPTURE) and isinstance(e.get("value"), str):
            if not e.get("secret"):
                self.values[e["name"]] = e["value"]
        elif kind == ev.STEP_ENTER:
            self.current_step = e["step"]
            self.steps[e["step"]] = RUNNING
        elif kind == ev.STEP_DONE:
            self.steps[e["step"]] = self._step_result(e["step"])
        elif kind == ev.BLOCK_START:
            self._start(e)
        elif kind == ev.BLOCK_END:
            self._end(e)
        elif kind == ev.BLOCK_DONE:
            b = self.block(e["block"])
            b.status = DONE
            self._undone(e["block"])
            self._ran_after_all(e["block"])
            failed = e.get("failed") or {}
            b.detail = f"{len(e.get('ok') or [])} ok" + (
                f", {len(failed)} failed" if failed else ""
            )
        elif kind == ev.BLOCK_SKIP:
            b = self.block(e["block"])
            b.status, b.detail = SKIPPED, e.get("reason") or ""
            self._touch_step(e["block"])
        elif kind == ev.BLOCK_MARK:
            b = self.block(e["block"])
            b.status, b.detail = DONE, f"marked done: {e.get('reason') or ''}".rstrip(": ")
        elif kind == ev.DECISION and e.get("kind") == "unknown":
            b = self.block(e["block"])
            if e.get("host"):
                b.hosts[e["host"]] = UNKNOWN
            else:
                b.status = UNKNOWN
        elif kind == ev.NOTE:
            self.notes += 1
        elif kind == ev.ROLLBACK_START:
            self.rolling_back = True
        elif kind == ev.RUN_END:
            self.result, self.message = e.get("result"), e.get("message") or ""
            for b in self.blocks.values():  # nothing runs after the end
                if b.status == RUNNING:
                    b.status = UNKNOWN
            self._stop_bakes()

    def stopped(self) -> None:
        """The recorded part of a resumed run is over: what was running is unknown."""
        self._stop_bakes()
        for b in self.blocks.values():
            if b.status == RUNNING:
                b.status = UNKNOWN
            for host, status in b.hosts.items():
                if status == RUNNING:
                    b.hosts[host] = UNKNOWN

    def _start(self, e: dict[str, Any]) -> None:
        self.rollback_ran = self.rollback_ran or self.rolling_back
        b = self.block(e["block"])
        b.status, b.attempt = RUNNING, e.get("attempt", 1)
        self.current_block = e["block"]
        host = e.get("host")
        if host is not None:
            if b.hosts.get(host) in (None, PENDING, DONE, FAILED, UNKNOWN):
                b.hosts[host] = RUNNING
        else:
            b.exit = b.duration = None
        self._touch_step(e["block"])

    def _end(self, e: dict[str, Any]) -> None:
        b = self.block(e["block"])
        ok = e.get("exit") == 0 or bool(e.get("continued"))
        status = DONE if ok else FAILED
        host = e.get("host")
        if host is not None:
            b.hosts[host] = status
            b.host_detail[host] = e.get("status") or ""
            if all(s != RUNNING for s in b.hosts.values()) and FAILED in b.hosts.values():
                b.status = FAILED
            return
        b.status, b.exit = status, e.get("exit")
        b.duration, b.detail = e.get("duration"), e.get("status") or ""
        if ok:
            self._undone(e["block"])
            self._ran_after_all(e["block"])

    def _ran_after_all(self, block: str) -> None:
        """A block of a step settled as skipped ran after all (chosen from the palette):
        the step is no longer skipped."""
        step = self.step_of.get(block)
        if step is not None and self.steps.get(step) == SKIPPED:
            self.steps[step] = self._step_result(step)

    def _undone(self, block: str) -> None:
        """A rollback block finished: its step is no longer done, it is rolled back."""
        step = self.step_of.get(block)
        if block in self.undoes and step is not None:
            self.steps[step] = ROLLED_BACK

    def _stop_bakes(self) -> None:
        """A bake without its end (a crash, a lost record) holds nothing any more."""
        for b in self.blocks.values():
            bake = b.bake
            if bake is not None and bake.active:
                bake.result = "stopped"
                for key, run in bake.runs.items():
                    if run.status == RUNNING:
                        bake.runs[key] = replace(run, status=UNKNOWN)

    def _health_run(self, e: dict[str, Any]) -> None:
        tag = e["bake"]
        bake = self.block(tag["block"]).bake
        if bake is None:
            return
        key = (tag["round"], e["block"], e.get("host") or "local")
        bake.rounds = max(bake.rounds, tag["round"])
        if e["type"] == ev.BLOCK_START:
            bake.runs[key] = HealthRun(*key, time=e.get("time"))
            return
        ok = e.get("exit") == 0 or bool(e.get("continued"))
        run = bake.runs.get(key, HealthRun(*key))
        bake.runs[key] = replace(
            run, status=DONE if ok else FAILED, exit=e.get("exit"), detail=e.get("status") or ""
        )

    def _touch_step(self, block: str) -> None:
        step = self.step_of.get(block)
        if step is not None and self.steps.get(step) == PENDING:
            self.steps[step] = RUNNING

    def _step(self, index: int) -> Step | None:
        """Step ``index``, if this runbook has it (a resumed run may record more)."""
        return self.rb.steps[index - 1] if 1 <= index <= len(self.rb.steps) else None

    def _step_result(self, index: int) -> str:
        step = self._step(index)
        if step is None:
            return DONE
        statuses = [self.block(b.name).status for b in step.blocks if b.runs_forward]
        if statuses and all(s == SKIPPED for s in statuses):
            return SKIPPED
        return DONE

    def step_status(self, index: int) -> str:
        """A step's status: its own, or failed/unknown while one of its blocks is."""
        status = self.steps.get(index, PENDING)
        if status != RUNNING:
            return status
        step = self._step(index)
        blocks = [self.block(b.name).status for b in step.blocks] if step else []
        for worst in (UNKNOWN, FAILED):
            if worst in blocks:
                return worst
        return RUNNING
