"""The engine: runs a runbook's steps and blocks, asking an Operator for every decision.

UI-free and async. Every fact is written to the transcript (fsynced when it is a decision
or a block start) before it is shown: :meth:`Journal.emit` masks, writes, folds into the
state and shows; output takes a faster path that is masked at the byte level and does not
change the state. If the transcript cannot be written the run stops before anything else
runs (fail closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runbook import __version__
from runbook.engine.attempt import run_attempt
from runbook.engine.background import Background
from runbook.engine.context import Context
from runbook.engine.journal import Journal
from runbook.engine.masking import Masker
from runbook.engine.operator import Decision, NeedsOperator, Operator
from runbook.engine.questions import block_gates, choose, gate
from runbook.engine.stopping import CTRL_C, Guarded, Stop, pause
from runbook.format.hosts import DEFAULT_FORKS, describe, resolve_targets
from runbook.format.model import Block, CheckItem, Host, Runbook, Step
from runbook.format.values import ValueProblem, expand
from runbook.notify.notices import Notices
from runbook.record import events as ev
from runbook.record.events import RunState
from runbook.record.lock import RunLock
from runbook.record.transcript import TranscriptError, TranscriptWriter
from runbook.transports.local import LocalTransport

if TYPE_CHECKING:  # asyncssh is loaded only by a run that has hosts (launch.py)
    from runbook.transports.ssh import SSHTransport

FAILURE_CHOICES = ("retry", "skip", "rollback", "abort")
ROLLBACK_FAILURE_CHOICES = ("retry", "skip", "abort")
INCOMPLETE = "rollback-incomplete"
EXIT_INCOMPLETE = 3
"""A rollback that did not undo everything: neither the change nor its undo is whole."""
UNKNOWN_CHOICES = ("rerun", "mark-done", "skip", "abort")
DECLINED_CHOICES = ("skip", "abort")


@dataclass(frozen=True)
class Outcome:
    """How a run ended: ``ok``, ``aborted``, ``rolled-back``, ``rollback-incomplete``, or
    ``error`` (not recordable)."""

    result: str
    exit_code: int
    message: str


class _Abort(Exception):
    pass


class _Rollback(Exception):
    pass


class Session:
    def __init__(
        self,
        rb: Runbook,
        operator: Operator,
        writer: TranscriptWriter,
        *,
        values: Mapping[str, str],
        sources: Mapping[str, str],
        transport: LocalTransport | None = None,
        ssh: SSHTransport | None = None,
        forks: int = DEFAULT_FORKS,
        state: RunState | None = None,
        start_fields: Mapping[str, Any] | None = None,
        lock: RunLock | None = None,
    ) -> None:
        self.rb = rb
        self.stop = Stop()
        self.operator = Guarded(operator, self.stop)
        self.writer = writer
        self.values = dict(values)
        self.sources = dict(sources)
        self.transport = transport or LocalTransport(chunk=operator.output_chunk)
        self.ssh = ssh
        self.forks = forks
        self.secret_names = {v.name for v in rb.variables if v.secret}
        self.masker = Masker(self.values[n] for n in self.secret_names if n in self.values)
        self.start_fields = dict(start_fields or {})
        self._source_seen: str | None = rb.sha256
        self.lock = lock
        self.interrupt = asyncio.Event()
        self._ending: tuple[str, str] | None = None
        """The end being recorded (``("ok", "every step is done")``), while its last waits run."""
        self._running = False
        """``_run`` is going on: a Ctrl-C may cancel it (``cancel``)."""
        self._task: asyncio.Task[Any] | None = None
        self._rerun: set[str] = set()
        """Unknown blocks the operator chose to re-run: asked once, not again while another
        block is run from the palette before it."""
        self.journal = Journal(writer, self.operator, self.masker, state or RunState())
        self.state = self.journal.state
        self.by = self.journal.by
        self.emit = self.journal.emit
        self.durable = self.journal.durable
        self.notices = Notices(
            self.journal,
            rb,
            self.values,
            operator=self.operator_name,
            resumed="resumed_from" in self.start_fields,
            attended=not operator.auto,
        )
        self.journal.observers.append(self.notices.observe)
        self.ctx = Context(
            rb,
            self.journal,
            self.operator,
            self.values,
            self.interrupt,
            self.stop,
            self.transport,
            ssh,
            forks,
            self.notices.send,
        )
        self.background = Background(self.ctx)

    # ------------------------------------------------------------------ recording

    @property
    def operator_name(self) -> str:
        """Who runs it, as people watching know them: ``user@host``."""
        user, host = self.start_fields.get("user"), self.start_fields.get("host")
        return f"{user}@{host}" if user and host else self.operator.name

    # ------------------------------------------------------------------ the run

    async def run(self) -> Outcome:
        self._task = asyncio.current_task()
        try:
            try:
                self._running = True
                try:
                    return await self._run()
                finally:
                    self._running = False
            except (KeyboardInterrupt, asyncio.CancelledError):
                # Outside the clauses of _run, so that a Ctrl-C while a run that already
                # failed is being ended (its notices, its background blocks) still ends it.
                return await self._interrupted()
        finally:
            try:
                self.notices.abandon()  # idempotent: only an unexpected error gets here with some
                with contextlib.suppress(TranscriptError):
                    await self.background.stop_all()  # nothing is left running, whatever happened
                self.writer.close()
                if self.lock is not None:
                    self.lock.release()  # after the end is recorded: now it may be resumed
            finally:
                self.stop.ended = True
            if self.ssh is not None:
                await self.ssh.close()

    def cancel(self, ctrl_c: bool = True) -> None:
        """Ctrl-C: end the run now, as aborted; another signal only once every step is over
        (the end waiting for notifications or background blocks: a block stops through its
        interrupt, never cut off unrecorded). Only while ``_run`` goes on: once the run is
        recording its end and closing the record, it is left to finish."""
        if self._running and self._task is not None and (ctrl_c or self._ending is not None):
            self._task.cancel()

    async def _run(self) -> Outcome:
        try:
            # Nested, so that what stops a rollback (a quit, nobody to answer) is handled
            # by the same clauses below and still ends the record.
            try:
                self._start()
                await self._ask_values()
                self.notices.start()
                self.notices.send("run-start")
                if self.state.rollback_reason is None:  # a resumed rollback goes on
                    await self._forward()
                    return await self._end("ok", 0, "every step is done" + self._skipped())
                raise _Rollback(self.state.rollback_reason)
            except _Rollback as e:
                try:
                    await self._rollback(str(e))
                except (_Abort, NeedsOperator) as abort:
                    message = f"rollback stopped: {str(abort).rstrip('.')}{self._not_rolled_back()}"
                    return await self._end(INCOMPLETE, EXIT_INCOMPLETE, message)
                if self.state.rollback_skipped:
                    message = f"rollback incomplete after: {str(e).rstrip('.')}"
                    message += self._not_rolled_back()
                    return await self._end(INCOMPLETE, EXIT_INCOMPLETE, message)
                return await self._end("rolled-back", 1, f"rolled back after: {e}")
        except _Abort as e:
            return await self._end("aborted", 1, str(e))
        except NeedsOperator as e:
            return await self._end("aborted", 1, str(e))
        except TranscriptError as e:
            self.notices.abandon()
            return Outcome("error", 1, str(e))

    async def _interrupted(self) -> Outcome:
        """Ctrl-C or a cancel: the run ends now, as aborted (or, in a rollback, as
        incomplete), with what was still running stopped and what was not delivered
        recorded so."""
        result, message = "aborted", self.stop.reason or CTRL_C
        if self._ending is not None:  # the post-mortem still learns how the steps ended
            result, message = self._cut_short(message)
        elif self.state.rollback_started:  # neither the change nor its undo is whole
            result = INCOMPLETE
            message = f"rollback stopped: {message}{self._not_rolled_back()}"
        with contextlib.suppress(TranscriptError):
            self.notices.abandon()
            await self.background.stop_all()
            return self._record_end(result, 130, message)
        return Outcome(result, 130, message)

    def _start(self) -> None:
        known = {v.name: (None if v.secret else self.values.get(v.name)) for v in self.rb.variables}
        self.emit(
            ev.RUN_START,
            durable=True,
            version=__version__,
            runbook={
                "path": self.rb.path,
                "abspath": str(Path(self.rb.path).resolve()),
                "sha256": self.rb.sha256,
                "title": self.rb.title,
            },
            variables=known,
            sources={k: v for k, v in self.sources.items() if k in known},
            secrets=sorted(self.secret_names),
            operator=self.operator.name,
            **self.start_fields,
        )

    async def _end(self, result: str, code: int, message: str) -> Outcome:
        self._ending = (result, message)
        failed = await self.background.stop_all()
        if failed:  # never an "ok" that hides a background block's failure
            message += f" (but background block {'; '.join(failed)}, on its own)"
            self._ending = (result, message)
        await self.notices.finish(result, message)
        return self._record_end(result, code, message)

    def _skipped(self) -> str:
        """An "ok" never hides what the operator skipped (the report says why)."""
        background = {b.name for b in self.rb.blocks if b.options.background}
        restarted = self.state.restarted & background  # ran after its skip; stopped at the end
        names = [n for n in self.state.skipped if n not in restarted]
        items = self.state.items_skipped
        said = []
        if names:
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" * (len(names) > 5))
            said.append(f"{len(names)} block{'s' * (len(names) != 1)} skipped: {shown}")
        if items:
            said.append(f"{items} checklist item{'s' * (items != 1)} skipped")
        return f" ({'; '.join(said)})" if said else ""

    def _cut_short(self, reason: str) -> tuple[str, str]:
        """A stop that came once every step was over, while the end waited: how the steps
        ended stays on record (a rollback that was whole stays so); "ok" no longer holds."""
        assert self._ending is not None
        ended, how = self._ending
        return (
            "aborted" if ended == "ok" else ended,
            f"{reason} as the run was ending ({ended}: {how})",
        )

    def _record_end(self, result: str, code: int, message: str) -> Outcome:
        if self.stop.reason is not None and result == "ok":  # it came as the run was ending
            result, message = self._cut_short(self.stop.reason)
        if self.stop.reason is not None:  # a signal stopped it
            code = self.stop.code
            if self.stop.reason not in message:  # said once, wherever the message has it
                message = f"{self.stop.reason}: {message}"
        self.emit(ev.RUN_END, durable=True, result=result, exit_code=code, message=message)
        self.stop.recorded = code
        return Outcome(result, code, message)

    async def _ask_values(self) -> None:
        for var in self.rb.variables:
            if var.name in self.values:
                continue
            value = await self.operator.ask_value(var)
            self.values[var.name] = value
            if var.secret:
                self.masker.add(value)
            self.emit(
                ev.VAR_SET,
                durable=True,
                name=var.name,
                source="prompt",
                secret=var.secret,
                value=None if var.secret else value,
                by=self.by,
            )

    async def _forward(self) -> None:
        for step in self.rb.steps:
            if step.index in self.state.steps_done:
                await self._unknown_in_a_done_step(step)
                continue
            self.stop.check()
            self._watch_source()
            if step.index not in self.state.steps_entered:
                self.emit(
                    ev.STEP_ENTER,
                    durable=True,
                    step=step.index,
                    title=step.title,
                    line=step.line,
                    alerts=[{"kind": a.kind, "text": a.text} for a in step.alerts],
                )
            skipping: str | None = None  # the reason, once the operator skipped the step
            for item in _in_written_order(step):
                if skipping is not None:
                    self._skip_item(step, item, skipping)
                elif isinstance(item, CheckItem):
                    await self._tick(step, item)
                else:
                    skipping = await self._forward_block(step, item)
            self.stop.check()  # a step a signal cut short (its block went on) is not done
            self.emit(ev.STEP_DONE, durable=True, step=step.index)

    async def _unknown_in_a_done_step(self, step: Step) -> None:
        """A block of a step already done, run again from the palette, that failed or that
        a crash cut short: offered again, its outcome asked, as in its own step; passed
        over, the run could end "ok" with it failed or unknown."""
        for block in step.blocks:
            if not block.options.run or block.options.rollback:
                continue
            # A forward block re-run and failed, or cut short; an optional one cut short.
            tried = block.name in self.state.attempts  # not one a changed runbook added
            walked = block.runs_forward and tried and block.name not in self.state.blocks_settled
            if walked or block.name in self.state.running:
                await self._forward_block(step, block)

    def _watch_source(self) -> None:
        """Before each step: the runbook file on disk edited since the run started is told
        (once per change, with both hashes). What runs stays the runbook as it started."""
        now = _sha256_of(self.rb.path)
        if now == self._source_seen:
            return
        self._source_seen = now
        where = "is gone" if now is None else "changed on disk"
        self.emit(
            ev.NOTE,
            durable=True,
            text=(
                f"{self.rb.path} {where} since the run started; the run goes on with the"
                " runbook as it started (runbook.md in the run directory)"
            ),
            by="runbook",
            runbook_changed={"recorded_sha256": self.rb.sha256, "now_sha256": now},
        )

    def _skip_item(self, step: Step, item: CheckItem | Block, reason: str) -> None:
        if isinstance(item, Block):
            if item.name not in self.state.blocks_settled:
                self.skip(item, reason)
        elif (step.index, step.checklist.index(item)) not in self.state.ticked:
            self._record_tick(step, item, Decision("skipped", reason))

    def note(self, text: str) -> bool:
        """An operator's note, recorded at once (the TUI adds them while blocks run);
        False once the run has ended and its transcript is closed."""
        if self.journal.closed:
            return False
        self.emit(ev.NOTE, durable=True, text=text, by="operator")
        return True

    async def _tick(self, step: Step, item: CheckItem) -> None:
        if (step.index, step.checklist.index(item)) not in self.state.ticked:
            self._record_tick(step, item, await self.operator.tick(step, item))

    def _record_tick(self, step: Step, item: CheckItem, decision: Decision) -> None:
        self.emit(
            ev.CHECK_TICK,
            durable=True,
            step=step.index,
            item=step.checklist.index(item),
            text=item.text,
            result=decision.choice,
            reason=decision.reason or None,
            by=self.by,
        )

    async def _settled(self, block: Block) -> bool:
        """Whether the block needs no running: done before, or, if a crash left it
        unknown, marked done or skipped by the operator now."""
        if block.name in self.state.blocks_settled:
            return True
        if block.name not in self.state.running or block.name in self._rerun:
            return False
        problem = f"Block {block.name} was running when the run stopped: its outcome is unknown."
        finished = self.state.hosts_finished.get(block.name, set())
        started = self.state.hosts_started.get(block.name, set())
        if block.options.on and (finished or started):
            problem = _unknown_on_hosts(
                block.name, [h.spec for h in self._hosts(block)], finished, started
            )
        decision = await choose(self.ctx, block, "unknown", problem, UNKNOWN_CHOICES)
        if decision.choice == "abort":
            raise _Abort(f"{block.name}: outcome unknown, and nobody decided what to do")
        if decision.choice == "rerun":
            self.ctx.finished[block.name] = frozenset(finished)
            self._rerun.add(block.name)
            return False
        kind = ev.BLOCK_MARK if decision.choice == "mark-done" else ev.BLOCK_SKIP
        self.emit(kind, durable=True, block=block.name, reason=decision.reason, by=self.by)
        return True

    async def _forward_block(self, step: Step, block: Block) -> str | None:
        """Run a block of the walk; the reason when the operator skips the rest of the step."""
        while not await self._settled(block):
            decision = await self.operator.proceed(step, block)
            if decision.choice == "run":
                await self._gated_run(block)
            elif decision.choice == "skip":
                self.skip(block, decision.reason or "skipped by the operator")
            elif decision.choice == "skip-step":
                reason = decision.reason or "step skipped by the operator"
                self.skip(block, reason)
                return reason
            elif decision.choice == "run-other":
                await self._run_chosen(block, decision)
                continue
            return None
        return None

    async def _run_chosen(self, pending: Block, decision: Decision) -> None:
        """A block the operator picked to run before ``pending``: ahead of order, or again."""
        chosen = next(
            (b for b in self.rb.blocks if b.name == decision.block and b.runs_forward), None
        )
        if chosen is None:
            raise _Abort(f"no block {decision.block!r} to run")
        self.emit(
            ev.DECISION,
            durable=True,
            block=chosen.name,
            kind="run-chosen",
            problem=f"run before {pending.name}",
            choice="run",
            reason=decision.reason or None,
            by=self.by,
        )
        self.ctx.finished.pop(chosen.name, None)  # chosen to run again: on every host
        await self._gated_run(chosen)

    async def _gated_run(self, block: Block) -> None:
        if block.options.manual and self.operator.auto:
            # Runme's excludeFromRunAll: it runs when a person chooses it, and --yes
            # chooses nothing.
            self.skip(block, "optional (excludeFromRunAll): runs only when an operator chooses it")
            return
        if block.options.manual and not await gate(
            self.ctx, block, "optional", f"Run the optional block {block.name}?"
        ):
            self.skip(block, "not chosen")
            return
        if not await block_gates(self.ctx, block):
            decision = await choose(
                self.ctx,
                block,
                "declined",
                f"The gate of {block.name} was declined.",
                DECLINED_CHOICES,
            )
            if decision.choice == "abort":
                raise _Abort(f"gate of {block.name} declined")
            self.skip(block, decision.reason)
            return
        await self._run_block(block, FAILURE_CHOICES)

    def _hosts(self, block: Block) -> tuple[Host, ...]:
        """The block's hosts for the values known now (empty: it runs locally)."""
        try:
            return resolve_targets(expand(block.options.on, self.values), self.rb.hosts)
        except ValueProblem as e:
            raise _Abort(f"{block.name}: {e}") from None

    def skip(self, block: Block, reason: str) -> None:
        self.emit(ev.BLOCK_SKIP, durable=True, block=block.name, reason=reason, by=self.by)

    async def _run_block(self, block: Block, choices: Sequence[str]) -> None:
        if block.options.background:
            await self.background.start(block)
            return
        hosts = self._hosts(block)
        if hosts:
            from runbook.engine.rollout import RolloutStopped, rollout  # with bakes: hosts only

            try:
                before = self.ctx.finished.pop(block.name, frozenset())
                await rollout(self.ctx, block, hosts, choices, self.forks, before)
            except RolloutStopped as stop:
                if stop.choice == "rollback":
                    raise _Rollback(str(stop)) from None
                if stop.choice == "skip":
                    self.skip(block, str(stop))
                    return
                raise _Abort(str(stop)) from None
            return
        attempt = self.state.attempts.get(block.name, 0)
        failures_in_a_row = 0
        while True:
            attempt += 1
            status = await run_attempt(self.ctx, block, attempt)
            if status.ok:
                return
            if block.options.continue_on_error and not block.options.rollback:
                return
            failures_in_a_row += 1
            if failures_in_a_row <= block.options.retries and not status.interrupted:
                await pause(self.interrupt, block.options.retry_delay.seconds)
                continue  # a stopped run starts no retry: the attempt says so
            decision = await choose(
                self.ctx,
                block,
                "failure",
                f"Block {block.name} failed: {status.describe()}.",
                choices,
            )
            if decision.choice == "retry":
                failures_in_a_row = 0
                continue
            if decision.choice == "skip":
                self.skip(block, decision.reason)
                return
            if decision.choice == "rollback":
                raise _Rollback(f"{block.name} failed ({status.describe()})")
            raise _Abort(f"{block.name} failed ({status.describe()})")

    async def _rollback(self, reason: str) -> None:
        if not self.state.rollback_started:
            self.emit(ev.ROLLBACK_START, durable=True, reason=reason)
        for block in self._rollback_scope():
            if await self._settled(block):
                continue
            where = describe(self._hosts(block))  # one that does not resolve stops it here
            prompt = (
                f"Run rollback block {block.name} {where}?"
                " (No: you choose next whether to skip it or to stop the rollback)"
            )
            if not await gate(self.ctx, block, "rollback", prompt) or not await block_gates(
                self.ctx, block
            ):
                await self._declined_in_rollback(block, where)
                continue
            await self._run_block(block, ROLLBACK_FAILURE_CHOICES)
        self.emit(ev.ROLLBACK_END, durable=True)

    def _rollback_scope(self) -> list[Block]:
        """The rollback blocks that undo what ran, latest step first."""
        started = self.state.attempts
        steps = [
            s
            for s in self.rb.steps
            if s.index in self.state.steps_done or any(b.name in started for b in s.forward_blocks)
        ]
        return [b for step in reversed(steps) for b in step.rollback_blocks if b.runs]

    async def _declined_in_rollback(self, block: Block, where: str) -> None:
        """A rollback block declined: skipped (the rollback goes on, and ends incomplete)
        or the rollback stopped here; never a silent skip."""
        decision = await choose(
            self.ctx,
            block,
            "declined",
            f"Rollback block {block.name} {where} was declined. Skip it and go on with the"
            " rest of the rollback, or abort: stop the rollback here? Either way the run ends"
            " rollback-incomplete.",
            DECLINED_CHOICES,
        )
        if decision.choice == "abort":
            raise _Abort(f"rollback block {block.name} declined")
        self.skip(block, decision.reason or "declined")

    def _not_rolled_back(self) -> str:
        """``; not rolled back: a, b``: skipped, declined, or never reached."""
        skipped, settled = self.state.rollback_skipped, self.state.blocks_settled
        left = [
            b.name for b in self._rollback_scope() if b.name in skipped or b.name not in settled
        ]
        return f"; not rolled back: {', '.join(left)}" if left else ""


def _in_written_order(step: Step) -> list[CheckItem | Block]:
    """A step's checklist items and forward blocks, in the order the author wrote them."""
    items: list[CheckItem | Block] = [*step.checklist]
    items += [b for b in step.forward_blocks if b.runs]
    return sorted(items, key=lambda i: i.line)


def _sha256_of(path: str) -> str | None:
    """The SHA-256 of the file at ``path`` now; ``None`` when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def _unknown_on_hosts(block: str, hosts: list[str], finished: set[str], started: set[str]) -> str:
    """Where a rollout a crash cut short stands, host by host: done, unknown, not begun."""
    unknown = [h for h in hosts if h in started and h not in finished]
    never = [h for h in hosts if h not in started and h not in finished]
    parts = [f"it finished on {', '.join(h for h in hosts if h in finished)}"] if finished else []
    if unknown:
        parts.append(f"on {', '.join(unknown)} its outcome is unknown")
    if never:
        parts.append(f"{', '.join(never)} had not started")
    again = [*unknown, *never]
    rerun = f" Re-run runs it on {', '.join(again)} only." if finished and again else ""
    return f"Block {block} was running on hosts when the run stopped: {'; '.join(parts)}.{rerun}"
