"""Bake time: after a batch of a rollout, hold while the step's health checks run.

A block with ``bake`` holds after each batch but the last. Every ``health-interval`` (the
last wait cut short to end with the bake) it runs each ``health: true`` block of its step
once, without retries: the next round is the retry. Each health run is recorded as a
block attempt whose events carry ``bake`` {block, batch, round}, with the round as its
attempt number, so that a resumed run never takes it for the check's own run in the walk.
A failed check ends the bake after the rest of its round; an interrupt ends it at once.
Either way the operator decides, and the next batch starts only after a bake that passed
or that the operator chose to cut short.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runbook.engine.attempt import execute
from runbook.engine.questions import choose
from runbook.engine.stopping import pause
from runbook.format.hosts import resolve_targets
from runbook.format.model import Block, Host
from runbook.format.values import ValueProblem, expand
from runbook.record import events as ev
from runbook.transports.local import ExitStatus

if TYPE_CHECKING:
    from runbook.engine.context import Context

FAILED_CHOICES = ("retry", "rollback", "abort")
INTERRUPTED_CHOICES = ("go-on", "retry", "rollback", "abort")


@dataclass(frozen=True)
class Baked:
    """How one bake ended: ``ok``, ``failed`` or ``interrupted``, after how many rounds."""

    result: str
    rounds: int
    elapsed: float
    failed: Mapping[str, str] = field(default_factory=dict)
    """``check on target`` -> how it failed, for a failed bake."""


@dataclass(frozen=True)
class Stop:
    """The operator ended the rollout at a bake: ``rollback`` or ``abort``, and why."""

    choice: str
    reason: str


async def bake(
    ctx: Context,
    block: Block,
    number: int,
    split: Sequence[tuple[Host, ...]],
    ok: Sequence[str],
) -> Stop | None:
    """Hold after batch ``number``: ``None`` to go on to the next batch, else how to stop."""
    while True:
        baked = await _bake_once(ctx, block, number, split, ok)
        if baked.result == "ok":
            return None
        problem = _problem(block, number, len(split), baked)
        choices = INTERRUPTED_CHOICES if baked.result == "interrupted" else FAILED_CHOICES
        decision = await choose(ctx, block, "bake", problem, choices)
        if decision.choice == "go-on":
            return None
        if decision.choice != "retry":
            why = f"{problem.rstrip('.')}; {decision.reason}" if decision.reason else problem
            return Stop(decision.choice, why)


async def _bake_once(
    ctx: Context,
    block: Block,
    number: int,
    split: Sequence[tuple[Host, ...]],
    ok: Sequence[str],
) -> Baked:
    opts = block.options
    assert opts.bake is not None and block.step is not None
    checks = ctx.rb.steps[block.step - 1].health_checks(block)
    batch = split[number - 1]
    passed = [h for h in batch if h.spec in ok]
    # Without a check there is nothing to do between rounds: one wait, the whole bake.
    interval = opts.health_interval.seconds if checks else opts.bake.seconds
    ctx.stop.check()  # the press that stopped the run may be the one cleared next
    ctx.interrupt.clear()  # a Ctrl-C answered already must not cut this bake short
    ctx.journal.emit(
        ev.BAKE_START,
        durable=True,
        block=block.name,
        batch=number,
        of=len(split),
        hosts=[h.spec for h in passed],
        seconds=opts.bake.seconds,
        interval=opts.health_interval.seconds,
        checks=[c.name for c in checks],
    )
    if checks and not any(_targets(ctx, c, batch, passed) for c in checks):
        ctx.journal.emit(
            ev.NOTE,
            text=f"the bake of {block.name} after batch {number} checks nothing: no host of the"
            " batch succeeded (max-fail allowed it), so it only waits",
            by="runbook",
        )
    started = time.monotonic()
    deadline = started + opts.bake.seconds
    rounds = 0
    failed: dict[str, str] = {}
    while not failed and not ctx.interrupt.is_set():
        left = deadline - time.monotonic()
        if rounds and left <= 0:
            break
        if await pause(ctx.interrupt, min(interval, max(0.0, left))):
            break
        rounds += 1
        tag = {"block": block.name, "batch": number, "round": rounds}
        for check in checks:
            failed |= await _check(ctx, check, batch, passed, tag)
    result = "interrupted" if ctx.interrupt.is_set() else "failed" if failed else "ok"
    elapsed = time.monotonic() - started
    ctx.journal.emit(
        ev.BAKE_END,
        durable=True,
        block=block.name,
        batch=number,
        result=result,
        rounds=rounds,
        elapsed=round(elapsed, 6),
        **({"failed": failed} if result == "failed" else {}),
    )
    return Baked(result, rounds, elapsed, failed if result == "failed" else {})


async def _check(
    ctx: Context,
    check: Block,
    batch: Sequence[Host],
    passed: Sequence[Host],
    tag: Mapping[str, Any],
) -> dict[str, str]:
    """One round of one health check on its targets for this batch: what failed, by target."""
    try:
        targets = _targets(ctx, check, batch, passed)
    except ValueProblem as e:
        return {check.name: str(e)}
    limit = asyncio.Semaphore(max(1, ctx.forks))

    async def one(host: Host | None) -> ExitStatus | None:
        async with limit:
            if ctx.interrupt.is_set():
                return None
            status, _ = await execute(ctx, check, tag["round"], host, bake=tag)
            return status

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(h)) for h in targets]
    except BaseExceptionGroup as failure:  # the first reason, as the rollout does
        raise failure.exceptions[0] from None
    failed: dict[str, str] = {}
    for host, task in zip(targets, tasks, strict=True):
        status = task.result()
        if status is None or status.ok or check.options.continue_on_error:
            continue
        failed[f"{check.name} on {host.spec if host else 'local'}"] = status.describe()
    return failed


def _targets(
    ctx: Context, check: Block, batch: Sequence[Host], passed: Sequence[Host]
) -> list[Host | None]:
    """Where a health check runs in a bake: its targets in the batch that passed; all its
    targets when none is in the batch (a check from a load balancer); else locally."""
    own = resolve_targets(expand(check.options.on, ctx.values), ctx.rb.hosts)
    if not own:
        return [None]
    in_batch = {h.spec for h in batch}
    if not any(h.spec in in_batch for h in own):
        return list(own)
    kept = {h.spec for h in passed}
    return [h for h in own if h.spec in kept]


def _problem(block: Block, number: int, total: int, baked: Baked) -> str:
    rounds = f"{baked.rounds} round{'s' * (baked.rounds != 1)}"
    if baked.result == "interrupted":
        return (
            f"The bake of {block.name} after batch {number}/{total} was interrupted after"
            f" {rounds} ({baked.elapsed:.0f}s of {block.options.bake}). Go on ends the bake"
            " here; retry bakes this batch again."
        )
    failed = ", ".join(f"{target} ({why})" for target, why in baked.failed.items())
    return (
        f"{block.name}: a health check failed while baking after batch {number}/{total},"
        f" in round {baked.rounds}: {failed}. The next batch has not started; retry bakes"
        " this batch again."
    )
