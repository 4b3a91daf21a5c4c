"""Run directories: create one for a new run, and replay one to resume it.

One run = one directory (0700) under the runs directory, holding the runbook as it was
run (``runbook.md``), the lock a live run holds (``run.lock``, see ``lock.py``) and its
transcript files: ``transcript.jsonl``, then one more per resume (``transcript-2.jsonl``,
...), each chained to the last valid hash of the one before.
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from runbook.record.events import RUN_START, RunState
from runbook.record.lock import RunLock
from runbook.record.place import runs_directory
from runbook.record.transcript import (
    SNAPSHOT,
    TRANSCRIPT,
    TranscriptError,
    TranscriptWriter,
    make_run_dir,
    new_run_id,
    write_private,
)

if TYPE_CHECKING:  # read back only to resume: a new run's start does not load the reader
    from runbook.record.chain import Verdict

ENV_RUNS_DIR = "RUNBOOK_RUNS_DIR"
DEFAULT_RUNS_DIR = "runbook-runs"
_RESUMED = re.compile(r"transcript-(\d+)\.jsonl\Z")


def runs_dir(option: str | None) -> Path:
    """``--runs-dir``, else ``$RUNBOOK_RUNS_DIR``, else ``./runbook-runs``."""
    return Path(option or os.environ.get(ENV_RUNS_DIR) or DEFAULT_RUNS_DIR)


class NewRun(NamedTuple):
    """A run just started: its lock, its transcript, and the real runs directory it is in."""

    lock: RunLock
    writer: TranscriptWriter
    runs: Path


def start_run(runs: Path, source: bytes, user: str) -> NewRun:
    """A fresh run directory, locked, with the runbook's snapshot and an empty transcript,
    under the real path of ``runs`` once it is checked to be the user's alone (place.py)."""
    real = runs_directory(runs)
    run_id = new_run_id()
    directory = make_run_dir(real, run_id)
    with RunLock(directory, user).released_on_error() as lock:
        write_private(directory / SNAPSHOT, source)
        return NewRun(lock, TranscriptWriter(directory / TRANSCRIPT, run_id), real)


def transcript_files(directory: Path) -> list[Path]:
    """The run's transcript files, in the order they were written."""
    files = [directory / TRANSCRIPT] if (directory / TRANSCRIPT).exists() else []
    resumed = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _RESUMED.match(p.name))]
    return files + [p for _, p in sorted(resumed)]


OUTPUT_TAIL = 256 * 1024
"""Characters of each target's earlier output a replay keeps for the console."""


def _chars(output: dict[str, Any]) -> int:
    return len(output.get("text") or output.get("b64") or "")


@dataclass
class Replay:
    """A run rebuilt from its transcripts: the state, and where a new file must chain on."""

    directory: Path
    files: list[Path]
    state: RunState
    last_hash: str
    warning: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    """Every event recorded, for displays that show where the run stands; of the output,
    only each target's last ``OUTPUT_TAIL`` characters (a console shows no more)."""

    def next_writer(self) -> TranscriptWriter:
        name = f"transcript-{len(self.files) + 1}.jsonl"
        assert self.state.run_id is not None
        return TranscriptWriter(
            self.directory / name,
            self.state.run_id,
            prev=self.last_hash,
            first_seq=self.state.last_seq + 1,
        )


def recorded_start(transcript: Path) -> dict[str, Any]:
    """The run's first event if it is its ``run.start`` (else empty), without verifying
    anything: what to show before the resume verifies the whole record."""
    from runbook.record.chain import read_lines

    try:
        files = transcript_files(transcript.resolve().parent)
        first = next((line.event for line in read_lines(files[0])), {}) if files else {}
    except (OSError, TranscriptError):
        return {}
    return first if first.get("type") == RUN_START else {}


def recorded_runbook(transcript: Path) -> str | None:
    """The runbook a run recorded in its first event, without verifying anything."""
    first = recorded_start(transcript)
    book = first.get("runbook")
    path = book.get("abspath") or book.get("path") if isinstance(book, dict) else None
    return path if isinstance(path, str) else None


def verify_run(
    files: list[Path], on_event: Callable[[dict[str, Any]], None] | None = None
) -> list[tuple[Path, Verdict]]:
    """Each transcript file of a run, in order, each checked to continue the one before:
    the same run id, ``seq`` going on by one, and its first ``prev`` the hash of the last
    intact line before it. A file after a broken one is not checked (nothing can chain
    onto a break), and a missing file in the numbering breaks the run there."""
    from runbook.record.chain import Verdict, verify

    verdicts: list[tuple[Path, Verdict]] = []
    before: Verdict | None = None
    for i, path in enumerate(files):
        expected = TRANSCRIPT if i == 0 else f"transcript-{i + 1}.jsonl"
        if path.name != expected and (i > 0 or _RESUMED.match(path.name)):
            missing = Verdict(False, 0, False, f"{expected}, which it continues, is missing", 1)
            return [*verdicts, (path, missing)]
        if before is not None and not before.ok and not before.truncated:
            why = f"not checked: {files[i - 1].name}, which it continues, is broken"
            return [*verdicts, (path, Verdict(False, 0, False, why, 1))]
        before = verify(path, on_event=on_event, follows=before)
        verdicts.append((path, before))
    return verdicts


def replay(transcript: Path) -> Replay:
    """Verify and fold every transcript file of the run that ``transcript`` belongs to.

    A last line cut short (the writer died in the middle of a write) is left out; any
    other break means the record cannot be trusted, and resuming is refused.
    """
    directory = transcript.resolve().parent
    files = transcript_files(directory)
    if not files:
        raise TranscriptError(f"{directory}: no transcript.jsonl here")
    state = RunState()
    history: list[dict[str, Any] | None] = []
    tails: dict[str, tuple[deque[int], list[int]]] = {}  # target: (indexes, [characters])

    def apply(event: dict[str, Any]) -> None:
        state.apply(event)
        history.append(event)
        if event.get("type") != "output":
            return
        indexes, size = tails.setdefault(event.get("host") or "local", (deque(), [0]))
        indexes.append(len(history) - 1)
        size[0] += _chars(event)
        while size[0] > OUTPUT_TAIL and len(indexes) > 1:  # bounded, however much was printed
            index = indexes.popleft()
            old = history[index]
            assert old is not None
            size[0] -= _chars(old)
            history[index] = None

    verdicts = verify_run(files, on_event=apply)
    warning = None
    for i, (path, verdict) in enumerate(verdicts):
        if verdict.truncated:  # a crash mid-write; a resume chained on the line before it
            if i == len(files) - 1:
                warning = (
                    f"{path}: its last line was cut short when the run stopped; it is left out"
                )
        elif not verdict.ok:
            raise TranscriptError(verdict.describe(str(path)))
    last_hash = verdicts[-1][1].last_hash
    kept = [event for event in history if event is not None]
    return Replay(directory, files, state, last_hash, warning, kept)
