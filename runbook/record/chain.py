"""Reading a transcript back, and verifying its hash chain: that every line is whole,
in order, unchanged, and goes on from the file before it (a resumed run).

Kept apart from the writer (``transcript.py``): a run writes, and only a resume, ``verify``
and the report read; a local run's start does not load this.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from runbook.record.events import BLOCK_START, FIELDS, OUTPUT, RUN_END, RUN_START
from runbook.record.transcript import GENESIS


@dataclass(frozen=True)
class Line:
    number: int
    raw: bytes
    event: dict[str, Any]


@dataclass(frozen=True)
class Verdict:
    """Result of :func:`verify`: ``ok``, how many lines are intact, and the first problem."""

    ok: bool
    lines: int
    complete: bool
    problem: str | None = None
    bad_line: int | None = None
    last_hash: str = GENESIS
    truncated: bool = False
    """Broken only by a last line cut short (the writer stopped mid-write, a full disk)."""
    run_id: str | None = None
    last_seq: int = 0
    """The run and ``seq`` of the last intact line: where a next file must go on."""

    def describe(self, path: str, continued_in: str | None = None) -> str:
        """One line; ``continued_in``: the file a resume went on in (this one has no end)."""
        if self.ok:
            state = (
                "complete"
                if self.complete
                else f"stopped here, continued in {continued_in}"
                if continued_in
                else "INCOMPLETE (no run end: the run stopped or is running)"
            )
            return f"{path}: intact, {self.lines} events, {state}"
        return f"{path}:{self.bad_line}: broken: {self.problem}"


def read_lines(path: Path) -> Iterator[Line]:
    """Each line of a transcript, parsed; a line that is not a JSON object yields ``{}``."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                event = json.loads(raw)
            except (ValueError, RecursionError, OverflowError):
                event = {}
            yield Line(number, raw, event if isinstance(event, dict) else {})


def verify(
    path: Path,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    follows: Verdict | None = None,
) -> Verdict:
    """Check JSON, ``seq``, the hash chain, one run id, nothing after run end, output offsets.

    ``follows``: the verdict of the file this one continues (a resume's file). Its first
    line must then be a ``run.start`` of the same run, ``seq`` one past that file's last,
    and its ``prev`` that file's last hash; without it, a file starts its own chain (zeros,
    or the ``resumed_from`` it claims, when checked alone).

    A changed line breaks the chain at the line after it; one line of lookahead tells
    whether the line before was changed or this line's own ``prev``, so the verdict names
    the line that was actually touched. ``on_event`` receives each event that verified, in
    order (one line behind, so a line found changed later is never passed on): callers that
    replay or report a transcript read it only once.
    """
    chain = _Chain(follows)
    lines = read_lines(path)
    cur = next(lines, None)
    if cur is None:
        return Verdict(False, 0, False, "the transcript is empty", 1)
    held: dict[str, Any] | None = None
    while cur is not None:
        nxt = next(lines, None)
        problem = chain.add(cur, nxt)
        if problem is not None:
            why, number = problem
            if held is not None and on_event is not None and number == cur.number:
                on_event(held)
            truncated = nxt is None and not cur.raw.endswith(b"\n")
            intact = number - 1
            return Verdict(
                False,
                intact,
                chain.ended,
                why,
                number,
                chain.last_hash,
                truncated,
                chain.run_id,
                chain.seq or 0,
            )
        if held is not None and on_event is not None:
            on_event(held)
        held = cur.event
        cur = nxt
    if held is not None and on_event is not None:
        on_event(held)
    return Verdict(
        True,
        chain.count,
        chain.ended,
        last_hash=chain.last_hash,
        run_id=chain.run_id,
        last_seq=chain.seq or 0,
    )


class _Chain:
    """The state of :func:`verify` between lines."""

    def __init__(self, follows: Verdict | None = None) -> None:
        self.expected_prev: str | None = None
        self.run_id: str | None = None
        self.seq: int | None = None
        self.ended = False
        self.offsets: dict[tuple[str, int, str, str], int] = {}
        self.count = 0
        self.last_hash = GENESIS
        self.follows = follows
        if follows is not None:
            self.run_id, self.seq = follows.run_id, follows.last_seq
            self.expected_prev = self.last_hash = follows.last_hash

    def add(self, cur: Line, nxt: Line | None) -> tuple[str, int] | None:
        """Check one line; the problem and the line to blame, or ``None``."""
        ev, here = cur.event, cur.number
        if not cur.raw.endswith(b"\n"):
            return "the last line is cut short (the writer died in the middle of it)", here
        if not ev:
            return "not a JSON object", here
        for key in ("seq", "time", "mono", "run", "type", "prev"):
            if key not in ev:
                return f"no `{key}` field", here
        if not all(isinstance(ev[key], str) for key in ("run", "type", "prev")):
            return "`run`, `type` and `prev` must be text", here
        if self.ended:
            return "an event after the run's end", here
        if self.follows is not None and self.count == 0:
            problem = _continues(ev, self.follows)
            if problem:
                return f"does not continue the file before it: {problem}", here
        if self.seq is not None and ev["seq"] != self.seq + 1:
            how = "repeated" if ev["seq"] == self.seq else "out of order, or a line was removed"
            return f"`seq` is {ev['seq']}, expected {self.seq + 1} ({how})", here
        if self.run_id is not None and ev["run"] != self.run_id:
            return f"run id {ev['run']!r} differs from {self.run_id!r}", here
        if self.expected_prev is None:
            self.expected_prev = _chain_start(ev)
        own_hash = hashlib.sha256(cur.raw).hexdigest()
        if ev["prev"] != self.expected_prev:
            if self.count == 0 or (nxt is not None and nxt.event.get("prev") != own_hash):
                return "this line was changed: its `prev` is not the hash of the line before", here
            return f"this line was changed: its hash is not the `prev` of line {here}", here - 1
        problem = _check_event(ev, self.offsets)
        if problem:
            return problem, here
        self.seq, self.run_id = ev["seq"], ev["run"]
        self.expected_prev = self.last_hash = own_hash
        self.ended = ev["type"] == RUN_END
        self.count += 1
        return None


def _continues(first: dict[str, Any], before: Verdict) -> str | None:
    """Why ``first`` (a file's first event) does not go on from ``before``, if it does not."""
    resumed = first.get("resumed_from")
    if first["type"] != RUN_START or not isinstance(resumed, dict):
        return "its first line is not the run.start of a resume"
    if first["run"] != before.run_id:
        return f"run id {first['run']!r} differs from {before.run_id!r}"
    if first["seq"] != before.last_seq + 1:
        return f"`seq` is {first['seq']}, expected {before.last_seq + 1}"
    if first["prev"] != before.last_hash or resumed.get("last_hash") != before.last_hash:
        return f"its `prev` is not the hash of that file's last line ({before.last_hash})"
    return None


def _chain_start(first: dict[str, Any]) -> str:
    """The ``prev`` a file's first line must carry: zeros, or the hash it resumes from."""
    resumed = first.get("resumed_from")
    if isinstance(resumed, dict) and isinstance(resumed.get("last_hash"), str):
        return str(resumed["last_hash"])
    return GENESIS


def _check_event(ev: dict[str, Any], offsets: dict[tuple[str, int, str, str], int]) -> str | None:
    if not isinstance(ev["seq"], int) or not isinstance(ev["time"], str):
        return "`seq` must be a number and `time` text"
    try:
        datetime.fromisoformat(ev["time"].replace("Z", "+00:00"))
    except ValueError:
        return f"`time` {ev['time']!r} is not a timestamp"
    for name, kind in FIELDS.get(ev["type"], {}).items():
        if name not in ev:
            return f"a `{ev['type']}` event without `{name}`"
        if not isinstance(ev[name], kind) or (isinstance(ev[name], bool) and kind is int):
            return f"`{name}` of a `{ev['type']}` event has the wrong type"
    attempt = ev.get("attempt", 1)
    if ev["type"] in (OUTPUT, BLOCK_START) and not isinstance(attempt, int):
        return "`attempt` must be a number"
    if ev["type"] == OUTPUT:
        if not isinstance(ev.get("text", ev.get("b64")), str):
            return "output without its `text` or `b64`"
        key = (str(ev.get("block")), attempt, str(ev.get("host")), str(ev.get("stream")))
        expected = offsets.get(key, 0)
        if ev.get("offset") != expected:
            got = ev.get("offset")
            return f"output offset {got} where {expected} was expected (output missing or repeated)"
        size = ev.get("size")
        if not isinstance(size, int):
            return "output without a `size`"
        offsets[key] = expected + size
    elif ev["type"] == BLOCK_START:
        for stream in ("stdout", "stderr"):
            offsets[(str(ev.get("block")), attempt, str(ev.get("host")), stream)] = 0
    return None
