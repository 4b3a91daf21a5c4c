"""The run's questions to the operator: gates and decisions, each recorded as asked and as
answered (fsynced), so the record shows what was put to whom and what they said.

A failure decision also tells the webhooks at once; a run nobody answers is never offered
a rollback after a Ctrl-C (stopping is not a failure to undo unattended).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from runbook.engine.operator import Decision
from runbook.format.model import Block
from runbook.format.values import expand
from runbook.record import events as ev

if TYPE_CHECKING:
    from runbook.engine.session import Session

# Decisions that mean something went wrong: people watching are told at once.
FAILURE_KINDS = frozenset({"failure", "unknown", "bake"})


async def block_gates(session: Session, block: Block) -> bool:
    """The block's own gates (``confirm``, ``type-to-confirm``): False if one is declined."""
    opts = block.options
    if opts.confirm is not None and not await gate(
        session, block, "confirm", expand(opts.confirm, session.values)
    ):
        return False
    if opts.type_to_confirm is not None:
        # A value captured from output may hold a secret: mask what the operator sees.
        expected = session.masker.text(expand(opts.type_to_confirm, session.values))
        prompt = f"{block.name} needs typed confirmation."
        session.emit(
            ev.GATE_ASK,
            durable=True,
            block=block.name,
            gate="type-to-confirm",
            prompt=prompt,
            expected=expected,
            command=block.code,
        )
        typed = await session.operator.type_to_confirm(prompt, expected)
        session.emit(
            ev.GATE_ANSWER,
            durable=True,
            block=block.name,
            gate="type-to-confirm",
            answer=typed,
            accepted=typed == expected,
            by=session.by,
        )
        if typed != expected:
            return False
    return True


async def gate(session: Session, block: Block, gate: str, prompt: str) -> bool:
    """A yes/no gate, recorded as asked and as answered."""
    session.emit(
        ev.GATE_ASK,
        durable=True,
        block=block.name,
        gate=gate,
        prompt=prompt,
        command=block.code,
    )
    yes = await session.operator.confirm(session.masker.text(prompt))
    session.emit(
        ev.GATE_ANSWER,
        durable=True,
        block=block.name,
        gate=gate,
        answer="yes" if yes else "no",
        accepted=yes,
        by=session.by,
    )
    return yes


async def choose(
    session: Session,
    block: Block,
    kind: str,
    problem: str,
    choices: Sequence[str],
    host: str | None = None,
) -> Decision:
    """A decision (after a failure, a declined gate, an unknown outcome, a bake), recorded."""
    if kind in FAILURE_KINDS:
        session.notices.send(
            "failure", step=block.step, block=block.name, host=host, message=problem
        )
    if session.interrupt.is_set() and not session.operator.interactive:
        # Ctrl-C is someone stopping the run, not a failure to undo unattended.
        choices = tuple(c for c in choices if c != "rollback")
    decision = await session.operator.choose(block, session.masker.text(problem), choices)
    if decision.choice not in choices:  # an operator must not invent a way out
        decision = Decision("abort", f"unexpected answer {decision.choice!r}")
    session.emit(
        ev.DECISION,
        durable=True,
        block=block.name,
        kind=kind,
        **({} if host is None else {"host": host}),
        problem=problem,
        choice=decision.choice,
        reason=decision.reason or None,
        by=session.by,
    )
    return decision
