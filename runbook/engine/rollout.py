"""A block on many hosts: canary and batches, a gate between them, the failure budget.

Hosts of a batch run concurrently (at most ``forks`` at once), each with the block's own
retries. After each batch the failed hosts are counted against ``max-fail``; beyond it
the rollout stops and the operator decides: retry only the failed hosts, skip, roll back
or abort. A block with ``bake`` then holds while health checks run (``bake.py``).
Between batches the operator confirms the next one. Ctrl-C stops every host
of the running batch. When the rollout is over a ``block.done`` event settles the block;
until then a crash leaves it unknown, so a resumed run asks instead of re-running hosts.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from runbook.engine.attempt import run_attempt
from runbook.engine.bake import bake
from runbook.engine.questions import choose, gate
from runbook.engine.stopping import ctrl_c_sets, pause
from runbook.format.hosts import batches
from runbook.format.model import Block, Host
from runbook.record import events as ev
from runbook.transports.local import ExitStatus

if TYPE_CHECKING:
    from runbook.engine.context import Context


class RolloutStopped(Exception):
    """The operator chose ``skip``, ``rollback`` or ``abort``; ``choice`` says which."""

    def __init__(self, choice: str, reason: str) -> None:
        super().__init__(reason)
        self.choice = choice


async def rollout(
    ctx: Context,
    block: Block,
    hosts: Sequence[Host],
    choices: Sequence[str],
    forks: int,
    before: frozenset[str] = frozenset(),
) -> None:
    """Run ``block`` on ``hosts`` in its batches. ``before``: hosts it finished on before
    the run was resumed; it goes on with the others (batches and gates anew for them)."""
    opts = block.options
    ok: list[str] = [h.spec for h in hosts if h.spec in before]
    hosts = [h for h in hosts if h.spec not in before]
    tolerated = opts.max_fail.of(len(hosts) + len(ok))  # of the block's hosts, all of them
    split = batches(hosts, opts.serial) if hosts else []
    base = ctx.journal.state.attempts.get(block.name, 0)  # a resumed block goes on counting
    tries = {h.spec: base for h in hosts}
    limit = asyncio.Semaphore(max(1, forks))
    failed: dict[str, str] = {}
    ctx.interrupt.clear()
    with ctrl_c_sets(ctx.interrupt, ctx.operator, ctx.stop):
        for number, batch in enumerate(split, start=1):
            if number > 1 and not await _next_batch(ctx, block, number, split, ok, failed):
                return
            todo = list(batch)
            while todo:
                ctx.interrupt.clear()  # a Ctrl-C answered already must not stop the next hosts
                # A TaskGroup: if one host stops the run, the others are cancelled (and their
                # remote commands stopped), never left running unrecorded.
                try:
                    async with asyncio.TaskGroup() as group:
                        tasks = [
                            group.create_task(_host(ctx, block, h, tries[h.spec] + 1, limit))
                            for h in todo
                        ]
                except BaseExceptionGroup as failure:  # the first reason, as the caller expects
                    raise failure.exceptions[0] from None
                results = [t.result() for t in tasks]
                for host, (status, last) in zip(todo, results, strict=True):
                    tries[host.spec] = last
                    if status.ok or opts.continue_on_error:
                        ok.append(host.spec)
                        failed.pop(host.spec, None)
                    else:
                        failed[host.spec] = status.describe()
                todo = []
                if len(failed) > tolerated:
                    todo = await _over_budget(ctx, block, hosts, failed, tolerated, choices)
            if opts.bake is not None and not opts.rollback and number < len(split):
                stop = await bake(ctx, block, number, split, ok)
                if stop is not None:
                    raise RolloutStopped(stop.choice, stop.reason)
    ctx.journal.emit(ev.BLOCK_DONE, durable=True, block=block.name, ok=ok, failed=failed)


async def _host(
    ctx: Context, block: Block, host: Host, attempt: int, limit: asyncio.Semaphore
) -> tuple[ExitStatus, int]:
    """One host: its attempts until success or its retries are used up, and the last one."""
    async with limit:
        if ctx.interrupt.is_set():  # Ctrl-C while this host waited for a slot
            return ExitStatus(code=None, signal=None, duration=0.0, interrupted=True), attempt - 1
        failures = 0
        while True:
            status = await run_attempt(ctx, block, attempt, host)
            if status.lost:  # never assumed, never re-run by itself: the operator decides
                decision = await choose(
                    ctx,
                    block,
                    "unknown",
                    f"{host.spec}: {status.problem}. Check the host, then decide.",
                    ("rerun", "mark-done", "abort"),
                    host=host.spec,
                )
                if decision.choice == "abort":
                    raise RolloutStopped("abort", f"{block.name} on {host.spec}: outcome unknown")
                if decision.choice == "mark-done":
                    return ExitStatus(code=0, signal=None, duration=status.duration), attempt
                attempt += 1
                continue
            failures += 0 if status.ok else 1
            # Retries are for the command (a health check polling); a host that cannot be
            # reached, trusted or logged into is the operator's call, not a loop's.
            not_run = status.problem is not None
            if status.ok or failures > block.options.retries or status.interrupted or not_run:
                return status, attempt
            if await pause(ctx.interrupt, block.options.retry_delay.seconds):
                return dataclasses.replace(status, interrupted=True), attempt  # no more tries
            attempt += 1


async def _next_batch(
    ctx: Context,
    block: Block,
    number: int,
    split: list[tuple[Host, ...]],
    ok: list[str],
    failed: dict[str, str],
) -> bool:
    hosts = ", ".join(h.spec for h in split[number - 1])
    so_far = f"{len(ok)} ok" + (f", {len(failed)} failed" if failed else "")
    prompt = f"{block.name}: {so_far}. Go on with batch {number}/{len(split)}: {hosts}?"
    if await gate(ctx, block, "batch", prompt, on=f"on {hosts}"):
        return True
    decision = await choose(
        ctx,
        block,
        "declined",
        f"Batch {number} of {block.name} was declined.",
        ("skip", "rollback", "abort"),
    )
    if decision.choice == "skip":  # the session records the skip, with this reason
        raise RolloutStopped("skip", decision.reason or f"stopped before batch {number}")
    raise RolloutStopped(decision.choice, f"{block.name}: batch {number} declined")


async def _over_budget(
    ctx: Context,
    block: Block,
    hosts: Sequence[Host],
    failed: dict[str, str],
    tolerated: int,
    choices: Sequence[str],
) -> list[Host]:
    """The failed hosts to run again, or raise to skip, roll back or abort."""
    names = ", ".join(f"{h} ({why})" for h, why in failed.items())
    budget = block.options.max_fail  # a percentage also says what it comes to
    allows = f"{budget} allows" + (f" ({tolerated})" if budget.percent else "")
    problem = (
        f"{block.name} failed on {len(failed)} host{'s' * (len(failed) != 1)}, more than max-fail"
        f" {allows}: {names}."
    )
    decision = await choose(ctx, block, "failure", problem, choices)
    if decision.choice == "retry":
        return [h for h in hosts if h.spec in failed]
    why = f"{problem.rstrip('.')}; {decision.reason}" if decision.reason else problem
    raise RolloutStopped(decision.choice, why)
