"""The event vocabulary and the run's state as a fold over its events.

Every fact of a run is an event, written to the transcript before anything reacts to it;
``RunState.apply`` is the only place that turns events into state, so a live run, a
resumed run (replaying its transcript) and a report all see the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Event types. Fields of each are documented in docs/transcript.md.
RUN_START = "run.start"
VAR_SET = "var.set"
STEP_ENTER = "step.enter"
CHECK_TICK = "check.tick"
GATE_ASK = "gate.ask"
GATE_ANSWER = "gate.answer"
BLOCK_START = "block.start"
OUTPUT = "output"
BLOCK_END = "block.end"
BLOCK_DONE = "block.done"  # a block on hosts: the whole rollout is over
CAPTURE = "capture"
BLOCK_SKIP = "block.skip"
BLOCK_MARK = "block.mark"
DECISION = "decision"
NOTE = "note"
STEP_DONE = "step.done"
BAKE_START = "bake.start"  # a rollout holds after a batch while health checks run
BAKE_END = "bake.end"
ROLLBACK_START = "rollback.start"
ROLLBACK_END = "rollback.end"
RUN_END = "run.end"
NOTIFY = "notify"  # one attempt to deliver a message to a webhook

FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    RUN_START: {"runbook": dict, "variables": dict},
    VAR_SET: {"name": str},
    STEP_ENTER: {"step": int, "title": str},
    CHECK_TICK: {"step": int, "item": int, "result": str},
    GATE_ASK: {"block": str, "gate": str},
    GATE_ANSWER: {"block": str, "gate": str},
    BLOCK_START: {"block": str, "attempt": int, "target": str, "command": str},
    OUTPUT: {"block": str, "stream": str},
    BLOCK_END: {"block": str, "attempt": int, "status": str, "duration": (int, float)},
    BLOCK_DONE: {"block": str, "ok": list, "failed": dict},
    CAPTURE: {"block": str, "name": str},
    BLOCK_SKIP: {"block": str},
    BLOCK_MARK: {"block": str},
    DECISION: {"block": str, "kind": str, "choice": str},
    NOTE: {"text": str},
    STEP_DONE: {"step": int},
    BAKE_START: {"block": str, "batch": int, "of": int, "seconds": (int, float)},
    BAKE_END: {"block": str, "batch": int, "result": str},
    RUN_END: {"result": str, "exit_code": int, "message": str},
    NOTIFY: {"hook": int},
}
"""The fields every reader of an event may rely on, and their types: a transcript that
verifies has them, whoever wrote it."""


@dataclass
class RunState:
    """What has happened so far in a run, rebuilt from its events alone."""

    run_id: str | None = None
    runbook_path: str | None = None
    runbook_sha256: str | None = None
    values: dict[str, str] = field(default_factory=dict)
    """Known non-secret values (``--var``, defaults, answers, captures)."""
    steps_entered: set[int] = field(default_factory=set)
    steps_done: set[int] = field(default_factory=set)
    blocks_settled: set[str] = field(default_factory=set)
    """Blocks that need no more running: succeeded, continued on error, skipped or marked."""
    running: dict[str, int] = field(default_factory=dict)
    """Blocks started and not ended (name -> attempt): *unknown* after a crash."""
    attempts: dict[str, int] = field(default_factory=dict)
    """The last attempt number of every block that started."""
    hosts_finished: dict[str, set[str]] = field(default_factory=dict)
    """Per block on hosts whose rollout is not over: the hosts it succeeded on. A resume
    that re-runs the block runs it on the others only."""
    hosts_started: dict[str, set[str]] = field(default_factory=dict)
    """Per such block, the hosts it started on: the others had not started (not unknown)."""
    ticked: set[tuple[int, int]] = field(default_factory=set)
    """Checklist items (step, item) answered, ticked or skipped."""
    skipped: list[str] = field(default_factory=list)
    """Blocks skipped and not run to an end since (chosen from the palette, a run whose
    outcome is unknown still counts), in order: an "ok" run still says so."""
    restarted: set[str] = field(default_factory=set)
    """Skipped blocks started since: a background block never ends on its own, but ran."""
    ended_well: set[str] = field(default_factory=set)
    """Blocks one of whose runs ended well: a later run of one, skipped, undid nothing."""
    items_skipped: int = 0
    """Checklist items skipped: an "ok" run says how many."""
    rollback_started: bool = False
    rollback_reason: str | None = None
    """Set once a rollback was decided: a resumed run continues the rollback, not the steps."""
    rollback_skipped: list[str] = field(default_factory=list)
    """Blocks skipped once the rollback started (declined, or failed and skipped): a
    rollback with any is incomplete."""
    result: str | None = None
    end_message: str = ""
    last_seq: int = 0
    ssh: dict[str, Any] | None = None
    """The latest run.start's ``ssh`` (its config file and that file's sha256, its forks):
    a resume reuses them. ``None`` for a record from before they were recorded."""

    def _ran(self, block: str) -> None:
        """``block`` ran to an end that settles it (or was marked done): not skipped now."""
        if block in self.skipped:
            self.skipped.remove(block)
        self.restarted.discard(block)

    def apply(self, ev: dict[str, Any]) -> None:
        self.last_seq = int(ev.get("seq", self.last_seq))
        kind = ev.get("type")
        if kind in (BLOCK_START, BLOCK_END) and ev.get("bake") is not None:
            # A health check run by a bake is not the check's own run in the walk: it must
            # neither settle it nor leave it unknown after a crash.
            return
        if kind == RUN_START:
            self.run_id = ev.get("run")
            book = ev.get("runbook") or {}
            self.runbook_path = book.get("abspath") or book.get("path")
            self.runbook_sha256 = book.get("sha256")
            if isinstance(ev.get("ssh"), dict):
                self.ssh = ev["ssh"]
            for name, value in (ev.get("variables") or {}).items():
                if value is not None:
                    self.values[name] = value
        elif kind in (VAR_SET, CAPTURE):
            if ev.get("value") is not None and not ev.get("secret"):
                self.values[ev["name"]] = ev["value"]
        elif kind == STEP_ENTER:
            self.steps_entered.add(ev["step"])
        elif kind == CHECK_TICK:
            self.ticked.add((ev["step"], ev["item"]))
            if ev.get("result") == "skipped":
                self.items_skipped += 1
        elif kind == BLOCK_START:
            if ev["block"] in self.skipped:
                self.restarted.add(ev["block"])
            self.running[ev["block"]] = ev.get("attempt", 1)
            self.attempts[ev["block"]] = ev.get("attempt", 1)
            if ev.get("host") is not None:
                self.hosts_started.setdefault(ev["block"], set()).add(ev["host"])
        elif kind == BLOCK_END and ev.get("host") is not None:
            if ev.get("exit") == 0 or ev.get("continued"):
                self.hosts_finished.setdefault(ev["block"], set()).add(ev["host"])
        elif kind == BLOCK_END and ev.get("host") is None:
            if ev.get("attempt", 1) != self.running.get(ev["block"], ev.get("attempt", 1)):
                return  # an older attempt (a background block run again beside itself)
            self.running.pop(ev["block"], None)
            if ev.get("exit") == 0 or ev.get("continued"):
                self.blocks_settled.add(ev["block"])
                self.ended_well.add(ev["block"])
                self._ran(ev["block"])
        elif kind in (BLOCK_DONE, BLOCK_SKIP, BLOCK_MARK):
            # A block on hosts stays unknown after a crash until its whole rollout is done.
            self.running.pop(ev["block"], None)
            self.hosts_finished.pop(ev["block"], None)
            self.hosts_started.pop(ev["block"], None)
            self.blocks_settled.add(ev["block"])
            if kind == BLOCK_SKIP and self.rollback_started:
                self.rollback_skipped.append(ev["block"])
            elif kind == BLOCK_SKIP:
                if ev["block"] not in self.skipped and ev["block"] not in self.ended_well:
                    self.skipped.append(ev["block"])
                self.restarted.discard(ev["block"])
            else:
                self.ended_well.add(ev["block"])
                self._ran(ev["block"])
        elif kind == NOTE and isinstance(ev.get("capture_failed"), str):
            # Its end said exit 0, but what it printed could not be captured: it failed.
            self.blocks_settled.discard(ev["capture_failed"])
            self.ended_well.discard(ev["capture_failed"])
        elif kind == STEP_DONE:
            self.steps_done.add(ev["step"])
        elif kind == DECISION and ev.get("kind") == "run-chosen":
            self.blocks_settled.discard(ev["block"])  # chosen to run again: not settled now
            self.hosts_finished.pop(ev["block"], None)
            self.hosts_started.pop(ev["block"], None)
        elif kind == DECISION and ev.get("choice") == "rollback":
            self.rollback_reason = self.rollback_reason or f"{ev.get('block')}: {ev.get('problem')}"
        elif kind == ROLLBACK_START:
            self.rollback_started = True
            self.rollback_reason = ev.get("reason") or self.rollback_reason or "rollback"
        elif kind == RUN_END:
            self.result = ev.get("result")
            self.end_message = str(ev.get("message") or "")
