"""The run's questions to the operator: gates and decisions, each recorded as asked and as
answered (fsynced), so the record shows what was put to whom and what they said.

A failure decision also tells the webhooks at once. A run that is stopping (Ctrl-C in a
run nobody answers, a signal, a quit) asks and tells nothing: it ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from runbook.engine.operator import Decision, NeedsOperator, NotAsked
from runbook.format.hosts import describe, resolve_targets
from runbook.format.hosts import where as hosts_where
from runbook.format.model import Block, Host
from runbook.format.values import ValueProblem, expand
from runbook.record import events as ev
from runbook.transports.problems import HostKeyRefused

if TYPE_CHECKING:
    from runbook.engine.context import Context

# Decisions that mean something went wrong: people watching are told at once.
FAILURE_KINDS = frozenset({"failure", "unknown", "bake"})


async def block_gates(ctx: Context, block: Block) -> bool:
    """The block's own gates (``confirm``, ``type-to-confirm``): False if one is declined."""
    opts = block.options
    if opts.confirm is not None and not await gate(
        ctx, block, "confirm", expand(opts.confirm, ctx.values)
    ):
        return False
    if opts.type_to_confirm is not None:
        # A value captured from output may hold a secret: mask what the operator sees.
        expected = ctx.journal.masker.text(expand(opts.type_to_confirm, ctx.values))
        prompt = f"{block.name} needs typed confirmation."
        ctx.journal.emit(
            ev.GATE_ASK,
            durable=True,
            block=block.name,
            gate="type-to-confirm",
            prompt=prompt,
            expected=expected,
            command=block.code,
            where=where(ctx, block),
        )
        with _unanswered(ctx, block, "type-to-confirm"):
            typed = await ctx.operator.type_to_confirm(prompt, expected)
        ctx.journal.emit(
            ev.GATE_ANSWER,
            durable=True,
            block=block.name,
            gate="type-to-confirm",
            answer=typed,
            accepted=typed == expected,
            by=ctx.journal.by,
        )
        if typed != expected:
            return False
    return True


def where(ctx: Context, block: Block) -> str:
    """``on web1, web2`` or ``locally``: every gate names where it will run, resolved (a
    re-run after a crash: without the hosts it had finished on)."""
    done = ctx.finished.get(block.name)
    if done:
        with contextlib.suppress(ValueProblem):
            hosts = resolve_targets(expand(block.options.on, ctx.values), ctx.rb.hosts)
            rest = [h for h in hosts if h.spec not in done]
            return f"{describe(rest)} (done before: {', '.join(sorted(done))})"
    return hosts_where(block.options.on, ctx.values, ctx.rb.hosts)


@contextlib.contextmanager
def _unanswered(ctx: Context, block: Block, gate: str, **where: Any) -> Iterator[None]:
    """A gate the run stopped at (a confirmed quit, a signal, input closed): its answer is
    that, on the record, before the run ends; nothing it guards runs."""
    try:
        yield
    except NeedsOperator as e:
        ctx.journal.emit(
            ev.GATE_ANSWER,
            durable=True,
            block=block.name,
            **where,
            gate=gate,
            answer="stopped",
            accepted=False,
            reason=str(e),
            by=ctx.journal.by,
        )
        raise


async def gate(ctx: Context, block: Block, gate: str, prompt: str, on: str | None = None) -> bool:
    """A yes/no gate, recorded as asked (with where it runs: ``on``, or all the block's
    hosts) and as answered."""
    ctx.journal.emit(
        ev.GATE_ASK,
        durable=True,
        block=block.name,
        gate=gate,
        prompt=prompt,
        command=block.code,
        where=on or where(ctx, block),
    )
    with _unanswered(ctx, block, gate):
        yes = await ctx.operator.confirm(ctx.journal.masker.text(prompt))
    ctx.journal.emit(
        ev.GATE_ANSWER,
        durable=True,
        block=block.name,
        gate=gate,
        answer="yes" if yes else "no",
        accepted=yes,
        by=ctx.journal.by,
    )
    return yes


async def choose(
    ctx: Context,
    block: Block,
    kind: str,
    problem: str,
    choices: Sequence[str],
    host: str | None = None,
) -> Decision:
    """A decision (after a failure, a declined gate, an unknown outcome, a bake), recorded."""
    ctx.stop.check()  # a stopped run decides nothing, and tells no one of a failure
    if kind in FAILURE_KINDS:
        ctx.alert("failure", step=block.step, block=block.name, host=host, message=problem)
    try:
        decision = await ctx.operator.choose(block, ctx.journal.masker.text(problem), choices)
    except NotAsked:
        raise
    except NeedsOperator as e:  # stopped at the menu: the run aborts here, on the record
        decision = Decision("abort", str(e))
        stopped: NeedsOperator | None = e
    else:
        stopped = None
    if decision.choice not in choices:  # an operator must not invent a way out
        decision = Decision("abort", f"unexpected answer {decision.choice!r}")
    ctx.journal.emit(
        ev.DECISION,
        durable=True,
        block=block.name,
        kind=kind,
        **({} if host is None else {"host": host}),
        problem=problem,
        choice=decision.choice,
        reason=decision.reason or None,
        by=ctx.journal.by,
        **({} if stopped is None else {"stopped": True}),
    )
    if stopped is not None:
        raise stopped
    return decision


async def trust_host_key(ctx: Context, block: Block, host: Host, refused: HostKeyRefused) -> bool:
    """Like ssh's StrictHostKeyChecking=ask: a person, never --yes, may trust a new key."""
    if not ctx.operator.interactive or ctx.ssh is None or refused.key is None:
        return False
    prompt = (
        f"{host.spec} presents a host key that is not in known_hosts: {refused.seen}."
        " Compare it with the key on the host (ssh-keygen -lf /etc/ssh/ssh_host_*.pub)."
    )
    ctx.journal.emit(
        ev.GATE_ASK,
        durable=True,
        block=block.name,
        host=host.spec,
        gate="host-key",
        prompt=prompt,
        expected="yes",
        fingerprint=refused.seen,
    )
    with _unanswered(ctx, block, "host-key", host=host.spec):
        typed = await ctx.operator.type_to_confirm(prompt, "yes")
    accepted = typed == "yes"
    ctx.journal.emit(
        ev.GATE_ANSWER,
        durable=True,
        block=block.name,
        host=host.spec,
        gate="host-key",
        answer=typed,
        accepted=accepted,
        fingerprint=refused.seen,
        by=ctx.journal.by,
    )
    if not accepted:
        return False
    path = ctx.ssh.known_hosts_file(host)
    save = await gate(ctx, block, "known-hosts", f"Add {host.spec}'s key to {path}?")
    ctx.ssh.trust(host, refused.key, save)
    return True
