"""The Operator: whoever answers the session's questions.

The engine asks for every decision through this protocol and never knows who answers:
a person at a plain terminal, a headless ``--yes`` run (answers recorded as automatic),
a test script, and later the TUI.
"""

from __future__ import annotations

import base64
import select
import sys
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from runbook.format.model import Block, CheckItem, Step, Variable
from runbook.format.screen import RESET, inert, inert_bytes
from runbook.format.variables import VariableProblem, check_value, how_to_give
from runbook.notify.notices import warning as notice_warning
from runbook.record.transcript import CheckedOutput
from runbook.transports.local import CHUNK


class NeedsOperator(Exception):
    """A question came up that nobody can answer (headless run without --yes), or the run
    was stopped (a quit, a signal, input closed) while it was open."""


class NotAsked(NeedsOperator):
    """The run stopped before a question reached anyone: there is no answer to record."""


@dataclass(frozen=True)
class Decision:
    """What to do about a block: ``retry``, ``skip``, ``rollback``, ``abort`` (after a
    failure), or ``rerun``, ``mark-done``, ``skip`` (for a block a crash left unknown).
    Before a block runs: ``run``, ``skip``, ``skip-step``, or ``run-other`` with ``block``
    naming the block to run first (out of order, or again)."""

    choice: str
    reason: str = ""
    block: str | None = None


RUN = Decision("run")


class Operator(Protocol):
    name: str
    """Recorded in the transcript: who answered."""
    auto: bool
    """True when answers are automatic (``--yes``): recorded as ``by: auto``."""
    interactive: bool
    """True when a person answers, so values, ticks and decisions can be asked."""
    output_chunk: int
    """Most bytes of a local block's output read at once, so in one ``output`` event."""

    def show(self, event: dict[str, Any]) -> None:
        """Every recorded event, as it is recorded (already masked)."""

    async def confirm(self, prompt: str) -> bool: ...

    async def type_to_confirm(self, prompt: str, expected: str) -> str | None:
        """The text typed; ``None`` when the operator declines."""

    async def tick(self, step: Step, item: CheckItem) -> Decision:
        """``Decision("ticked")`` or ``Decision("skipped", reason)``."""

    async def ask_value(self, variable: Variable) -> str: ...

    async def choose(self, block: Block, problem: str, choices: Sequence[str]) -> Decision:
        """After a failure, a declined gate, or for a block a crash left unknown."""

    async def proceed(self, step: Step, block: Block) -> Decision:
        """Before a block runs; an operator who steps through the runbook says when."""


ON_FAILURE = ("abort", "rollback")
"""What a headless run does when a block fails: nobody is there to choose."""


class HeadlessOperator:
    """No person: ``--yes`` approves every gate (recorded as automatic); a failure aborts,
    or rolls back with ``on_failure="rollback"`` (where rolling back is a choice).

    ``on_failure`` None: the runbook's ``on-failure:`` decides (see :meth:`follow`).
    """

    interactive = False
    output_chunk = CHUNK

    def __init__(self, yes: bool, on_failure: str | None = None) -> None:
        if on_failure not in (None, *ON_FAILURE):
            raise ValueError(f"on_failure must be one of {ON_FAILURE}, not {on_failure!r}")
        self.policy = "--on-failure"
        self._screen = _Screen()
        self.auto = yes
        self.on_failure = on_failure
        self.name = "headless --yes" if yes else "headless"

    def show(self, event: dict[str, Any]) -> None:
        _show(event, _print, self._screen)

    async def confirm(self, prompt: str) -> bool:
        self._need(prompt)
        return True

    async def type_to_confirm(self, prompt: str, expected: str) -> str | None:
        self._need(prompt)
        return expected

    async def tick(self, step: Step, item: CheckItem) -> Decision:
        self._need(item.text)
        return Decision("ticked")

    async def ask_value(self, variable: Variable) -> str:
        raise NeedsOperator(f"variable {variable.name} has no value: {how_to_give(variable)}")

    def follow(self, on_failure: str | None) -> None:
        """The runbook's own ``on-failure:``, unless ``--on-failure`` was given."""
        if self.on_failure is None and on_failure is not None:
            self.on_failure, self.policy = on_failure, "the runbook's on-failure"

    async def choose(self, block: Block, problem: str, choices: Sequence[str]) -> Decision:
        if self.on_failure == "rollback" and "rollback" in choices:
            return Decision("rollback", f"{self.policy}: rollback (headless run)")
        return Decision("abort", "no operator to decide (headless run)")

    async def proceed(self, step: Step, block: Block) -> Decision:
        return RUN

    def _need(self, what: str) -> None:
        if not self.auto:
            raise NotAsked(f"{what!r} needs an operator: run in a terminal, or pass --yes")


# choice -> (key, how the menu shows it)
MENU = {
    "retry": ("r", "[r]etry"),
    "skip": ("s", "[s]kip"),
    "rollback": ("b", "roll [b]ack"),
    # Not `a`: in the console that adds a note; a destructive choice gets a key of its own.
    "abort": ("x", "abort [x]"),
    "rerun": ("r", "[r]e-run"),
    "mark-done": ("m", "[m]ark done"),
    "go-on": ("g", "[g]o on"),
}


class TerminalOperator:
    """Plain prompts on a terminal: a confirm defaults to No, secrets are read without echo."""

    name = "terminal"
    auto = False
    interactive = True
    output_chunk = CHUNK

    def __init__(
        self, read: Callable[[str], str] = input, read_secret: Callable[[str], str] | None = None
    ) -> None:
        self.prompting = False
        """Waiting in ``input()``: a signal that stops the run must interrupt the read."""
        self._read = read
        self._screen = _Screen()
        self._read_secret = read_secret or _getpass

    def show(self, event: dict[str, Any]) -> None:
        _show(event, _print, self._screen)

    async def _ask(self, prompt: str, secret: bool = False) -> str:
        # In the main thread on purpose: Ctrl-C must interrupt the prompt itself, and no
        # block runs while the operator is being asked.
        reader = self._read_secret if secret else self._read
        prompt = inert(prompt)  # it may hold a captured value, a host's words
        self.prompting = True
        try:
            if reader is input and _console():
                # A signal that lands between the prompt being written and input() starting
                # its read would wait for ever (the handler runs only between bytecodes):
                # wait for the line here, where handlers get their turn.
                print(prompt, end="", flush=True)
                prompt = ""
                while not select.select([sys.stdin], [], [], 0.2)[0]:
                    pass
            return reader(prompt).strip()
        except EOFError:  # Ctrl-D, or the input closed: nobody will answer
            print()
            raise NeedsOperator("the operator's input ended (Ctrl-D) at a prompt") from None
        finally:
            self.prompting = False

    async def confirm(self, prompt: str) -> bool:
        answer = await self._ask(f"{prompt} [y/N] ")
        return answer.lower() in ("y", "yes")

    async def type_to_confirm(self, prompt: str, expected: str) -> str | None:
        while True:
            typed = await self._ask(f"{prompt}\nType {expected!r} to go on (empty to decline): ")
            if typed == "" or typed == expected:
                return typed or None
            print(f"That is not {expected!r}.")

    async def tick(self, step: Step, item: CheckItem) -> Decision:
        while True:
            answer = await self._ask(f"[ ] {item.text}\n    done? [y = ticked, s = skip] ")
            if answer.lower() in ("y", "yes"):
                return Decision("ticked")
            if answer.lower() in ("s", "skip"):
                return Decision("skipped", await self._reason())

    async def ask_value(self, variable: Variable) -> str:
        prompt = variable.prompt or variable.name
        hints = []
        if variable.choices:
            hints.append("/".join(variable.choices))
        if variable.default is not None:
            hints.append(f"default {variable.default}")
        suffix = f" ({', '.join(hints)})" if hints else ""
        while True:
            value = await self._ask(f"{prompt}{suffix}: ", secret=variable.secret)
            if value == "" and variable.default is not None:
                value = variable.default
            try:
                check_value(variable, value)
            except VariableProblem as e:
                print(inert(str(e)))
                continue
            return value

    async def choose(self, block: Block, problem: str, choices: Sequence[str]) -> Decision:
        menu = ", ".join(MENU[c][1] for c in choices)
        by_key = {MENU[c][0]: c for c in choices} | {c: c for c in choices}
        while True:
            choice = by_key.get((await self._ask(f"{problem}\n{menu}? ")).lower())
            if choice is None:
                continue
            reason = await self._reason() if choice in ("skip", "mark-done") else ""
            return Decision(choice, reason)

    async def proceed(self, step: Step, block: Block) -> Decision:
        return RUN  # a plain terminal runs straight on; gates are where it stops

    async def _reason(self) -> str:
        while True:
            reason = await self._ask("    reason (recorded): ")
            if reason:
                return reason


class ScriptedOperator:
    """Answers from a script, in order; any unexpected question fails loudly (for tests)."""

    name = "script"
    auto = False
    interactive = True
    output_chunk = CHUNK

    def __init__(self, answers: Iterable[tuple[str, Any]]) -> None:
        self.answers: deque[tuple[str, Any]] = deque(answers)
        self.asked: list[tuple[str, str]] = []
        self.shown: list[dict[str, Any]] = []

    def show(self, event: dict[str, Any]) -> None:
        self.shown.append(event)

    def _next(self, kind: str, about: str) -> Any:
        self.asked.append((kind, about))
        if not self.answers:
            raise AssertionError(f"unscripted question: {kind} {about!r}")
        expected, answer = self.answers.popleft()
        if expected != kind:
            raise AssertionError(f"script expected {expected!r} but was asked {kind} {about!r}")
        return answer

    async def confirm(self, prompt: str) -> bool:
        return bool(self._next("confirm", prompt))

    async def type_to_confirm(self, prompt: str, expected: str) -> str | None:
        answer = self._next("type", prompt)
        return None if answer is None else str(answer)

    async def tick(self, step: Step, item: CheckItem) -> Decision:
        answer = self._next("tick", item.text)
        return answer if isinstance(answer, Decision) else Decision("ticked")

    async def ask_value(self, variable: Variable) -> str:
        return str(self._next("value", variable.name))

    async def choose(self, block: Block, problem: str, choices: Sequence[str]) -> Decision:
        answer = self._next("choose", problem)
        assert isinstance(answer, Decision) and answer.choice in choices, (answer, choices)
        return answer

    async def proceed(self, step: Step, block: Block) -> Decision:
        """``run`` unless the script's next answer is a ``proceed`` one."""
        if self.answers and self.answers[0][0] == "proceed":
            answer = self._next("proceed", block.name)
            assert isinstance(answer, Decision)
            return answer
        return RUN


def _getpass(prompt: str) -> str:
    import getpass  # with termios: loaded only when a secret is asked for

    return getpass.getpass(prompt)


def _print(text: str) -> None:
    print(inert(text), flush=True)


@dataclass
class _Screen:
    """What a plain display remembers between events."""

    line_start: dict[tuple[str, str], bool] = field(default_factory=dict)
    """Per host and stream: whether the next output begins a line (gets ``host | ``)."""
    tty: dict[str, bool] = field(default_factory=dict)
    """Per stream: whether it is a terminal (asked once, not once per chunk)."""


def _show(event: dict[str, Any], out: Callable[[str], None], screen: _Screen) -> None:
    """What a plain terminal shows of an event: headings, commands, output, results."""
    kind = event["type"]
    if kind == "step.enter":
        out(f"\n== {event['step']}. {event['title']}")
        for alert in event.get("alerts") or []:
            lines = alert["text"].splitlines() or [""]
            out(f"!! {alert['kind']}: {lines[0]}")
            for line in lines[1:]:
                out(f"!! {line}")
    elif kind == "gate.ask" and event.get("gate") in ("batch", "host-key", "known-hosts"):
        pass  # the command was shown at its first gate; the canary's output stays in view
    elif kind == "gate.ask":
        where = f" {event['where']}" if event.get("where") else ""
        out(f"--- {event['block']} will run{where}:")
        for line in event.get("command", "").rstrip("\n").splitlines():
            out(f"    {line}")
    elif kind == "block.start":
        attempt = f" (attempt {event['attempt']})" if event.get("attempt", 1) > 1 else ""
        if event.get("bake"):
            attempt = f" (bake round {event['bake']['round']})"
        out(f"--> {event['block']} on {event['target']}{attempt}")
    elif kind == "output":
        # What the transcript's writer checked needs no second pass over every byte; a
        # carriage return could still rewrite the line, so it is looked for.
        if isinstance(event, CheckedOutput):
            raw, plain = event.raw, b"\r" not in event.raw
        else:
            data = event.get("text")
            raw = base64.b64decode(event["b64"]) if data is None else data.encode()
            plain = False
        host = event.get("host")
        if host is not None and raw:  # `host | line`, so interleaved hosts stay readable
            key = (host, event["stream"])
            prefix = f"{host} | ".encode()
            plain = plain and inert_bytes(prefix) == prefix
            head = prefix if screen.line_start.get(key, True) else b""
            ends = raw.endswith(b"\n")
            # One C pass (not a bytes object a line: 1 MB of base64 is 17,000 lines).
            body = (raw[:-1] if ends else raw).replace(b"\n", b"\n" + prefix)
            raw = head + body + (b"\n" if ends else b"")
            screen.line_start[key] = ends
        stream = sys.stdout.buffer if event["stream"] == "stdout" else sys.stderr.buffer
        # A command may colour its output on a terminal, no more.
        if (colour := screen.tty.get(event["stream"])) is None:
            colour = screen.tty[event["stream"]] = stream.isatty()
        if plain:
            stream.write(raw)
        else:
            shown = inert_bytes(raw, colour=colour)
            stream.write(shown + RESET if colour and b"\x1b[" in shown else shown)
        stream.flush()
    elif kind == "block.end":
        on = f" on {event['host']}" if event.get("host") else ""
        # The time apart: a status may be a sentence (why a host could not be used).
        out(f"<-- {event['block']}{on}: {event['status']} ({event['duration']:.1f}s)")
    elif kind == "bake.start":
        checks = ", ".join(event["checks"]) or "no health check: it only waits"
        out(
            f"~~~ {event['block']}: baking {event['seconds']:g}s after batch"
            f" {event['batch']}/{event['of']}, health every {event['interval']:g}s ({checks})"
        )
    elif kind == "bake.end":
        failed = "; ".join(f"{k}: {v}" for k, v in (event.get("failed") or {}).items())
        out(
            f"~~~ {event['block']}: bake after batch {event['batch']} {event['result']}"
            f" after {event['rounds']} round{'s' * (event['rounds'] != 1)}"
            + (f" ({failed})" if failed else "")
        )
    elif kind == "block.skip":
        out(f"--- {event['block']} skipped: {event['reason']}")
    elif kind == "note":
        out(f"note: {event['text']}")
    elif kind == "notify" and (problem := notice_warning(event)):
        out(f"warning: {problem}")
    elif kind == "run.end":
        out(f"\n== run {event['result']}: {event.get('message', '')}".rstrip(": "))


def _console() -> bool:
    """stdin is a terminal, read a line at a time (so select says when a line is there)."""
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError, OSError):
        return False
