"""The run's journal: every fact masked, written to the transcript, folded into the state
and shown, in that order; and one fsync for everyone who asks in the same moment.

This is the one door to the record the engine's helpers get (they never see the session),
so what is written, and when it is durable, is decided in one place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from runbook.engine.masking import Masker
from runbook.engine.operator import Operator
from runbook.record import events as ev
from runbook.record.events import RunState
from runbook.record.transcript import TranscriptError, TranscriptWriter

# Fields that carry what commands printed or people typed: masked for secrets. Names, paths,
# hashes and commands are the runbook's own text and stay exact (resume matches on them).
MASKED_FIELDS = frozenset(
    {
        "value",
        "variables",
        "argv",
        "prompt",
        "expected",
        "answer",
        "text",
        "reason",
        "problem",
        "message",
        "error",
        "to",
    }
)


class Journal:
    """Writes the run's events; shows them to the operator; tells the observers."""

    def __init__(
        self, writer: TranscriptWriter, operator: Operator, masker: Masker, state: RunState
    ) -> None:
        self.writer = writer
        self.operator = operator
        self.masker = masker
        self.state = state
        self.by = "auto" if operator.auto else "operator"
        """Who a decision is recorded as made by."""
        self.observers: list[Callable[[dict[str, Any]], None]] = []
        """Called with every event after it is written (the notices)."""
        self.display_lost = False
        self._commit: asyncio.Future[None] | None = None

    def emit(self, type_: str, durable: bool = False, **fields: Any) -> dict[str, Any]:
        masked = {k: self.masker.deep(v) if k in MASKED_FIELDS else v for k, v in fields.items()}
        event = self.writer.append(type_, durable=durable, **masked)
        self.state.apply(event)
        self.show(event)
        for observe in self.observers:
            observe(event)
        return event

    def output(self, data: bytes, **fields: Any) -> None:
        """Already-masked output: the fast path, which does not change the state."""
        self.show(self.writer.append_output(data, **fields))

    @property
    def closed(self) -> bool:
        """Whether the run has ended: nothing more may be recorded."""
        return self.writer.closed or self.state.result is not None

    async def durable(self) -> None:
        """fsync what was written, once for everyone who asks in the same moment.

        The hosts of a batch each record their start and end; one fsync covers them all
        (group commit) instead of one per host, which dominated a 50-host rollout. With a
        signing key, it also waits for the signature of that head: a block start is
        signed before its command runs, and a key that stopped signing stops the run.
        """
        if self._commit is None:
            self._commit = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(self._sync_now)
        await asyncio.shield(self._commit)

    def _sync_now(self) -> None:
        commit, self._commit = self._commit, None
        assert commit is not None
        try:
            self.writer.sync()
        except TranscriptError as e:
            commit.set_exception(e)
            return
        signer = self.writer.signer
        if signer is None:
            commit.set_result(None)
            return
        # Signed too, before anything runs on the strength of it: one wait for the group.
        loop = asyncio.get_running_loop()
        waited = loop.run_in_executor(None, signer.wait, self.writer.synced[0])

        def signed(done: asyncio.Future[Exception | None]) -> None:
            failed = done.result()
            if failed is None:
                commit.set_result(None)
            else:
                commit.set_exception(self.writer.unsigned(failed))

        waited.add_done_callback(signed)

    def show(self, event: dict[str, Any]) -> None:
        """Display an event; a display that went away (``| head``) must not stop the run."""
        if self.display_lost:
            return
        try:
            self.operator.show(event)
        except OSError as e:
            self.display_lost = True
            if event["type"] == ev.RUN_END:  # nothing may follow the end, not even this
                return
            text = f"the display failed ({e.strerror or e}); the run goes on, recorded here"
            self.state.apply(self.writer.append(ev.NOTE, text=text, by="runbook"))
