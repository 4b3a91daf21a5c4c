"""What a run's record proves beyond its hash chain: signatures, witnesses, the snapshot.

The chain (``transcript.verify``) shows that no line was changed, removed or reordered
*unless the whole chain was recomputed*. What a forger with write access cannot recompute:

- **signatures** of the head by the operator's SSH key (``signing.py``), checked against an
  ``allowed_signers`` file: every line up to the newest signature is what the key holder
  signed; lines after it are not signed, which fails the check;
- **witnesses**: hashes copied elsewhere while the run went on (the line ``run`` printed at
  the end, the head every chat message carries), given as ``--expect [SEQ:]HASH``;
- **the snapshot**: ``runbook.md`` must hash to what ``run.start`` recorded.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runbook.record.chain import Verdict, read_lines
from runbook.record.signing import (
    Signature,
    SigningError,
    head_message,
    principals,
    read_signatures,
    sig_path,
)
from runbook.record.transcript import SNAPSHOT, TRANSCRIPT

_REMOVED = ": the signatures were removed"
"""The end of the one signature finding that fails even without ``--allowed-signers``."""
_EXPECT = re.compile(r"(?:(\d+):)?([0-9a-fA-F]{64})\Z")


class BadWitness(ValueError):
    """An ``--expect`` value that is not ``HASH`` or ``SEQ:HASH``."""


@dataclass(frozen=True)
class Witness:
    sha256: str
    seq: int | None = None
    """``None``: the run's last line."""


def parse_witness(text: str) -> Witness:
    found = _EXPECT.match(text.strip())
    if found is None:
        raise BadWitness(
            f"--expect {text!r}: give the 64-hex-digit sha256 of the last line, or SEQ:SHA256"
        )
    return Witness(found.group(2).lower(), int(found.group(1)) if found.group(1) else None)


@dataclass
class Proof:
    """Findings, in order; ``ok`` is false once any of them fails the record."""

    ok: bool = True
    lines: list[str] = field(default_factory=list)

    def good(self, text: str) -> None:
        self.lines.append(text)

    def bad(self, text: str) -> None:
        self.ok = False
        self.lines.append(text)


@dataclass(frozen=True)
class _File:
    path: Path
    first_seq: int
    last_seq: int

    def line_of(self, seq: int) -> int:
        return seq - self.first_seq + 1


def _files(verdicts: Sequence[tuple[Path, Verdict]]) -> list[_File]:
    return [_File(p, v.last_seq - v.lines + 1, v.last_seq) for p, v in verdicts]


def _lines_at(path: Path, numbers: set[int]) -> dict[int, tuple[str, dict[str, Any]]]:
    """The hash and event of each wanted line of ``path``, read in one pass."""
    found: dict[int, tuple[str, dict[str, Any]]] = {}
    if not numbers:
        return found
    last = max(numbers)
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if number in numbers:
                try:
                    event = json.loads(raw)
                except (ValueError, RecursionError):
                    event = {}
                found[number] = (hashlib.sha256(raw).hexdigest(), event)
            if number >= last:
                break
    return found


def check_snapshot(directory: Path, first_event: dict[str, Any], proof: Proof) -> None:
    """``runbook.md`` beside the transcript must be the runbook ``run.start`` recorded."""
    book = first_event.get("runbook")
    recorded = book.get("sha256") if isinstance(book, dict) else None
    snapshot = directory / SNAPSHOT
    if not isinstance(recorded, str):
        proof.bad(f"{SNAPSHOT}: run.start records no sha256 of the runbook to check it against")
        return
    try:
        actual = hashlib.sha256(snapshot.read_bytes()).hexdigest()
    except OSError as e:
        proof.bad(f"{SNAPSHOT}: the runbook as run cannot be read ({e.strerror or e})")
        return
    if actual != recorded:
        proof.bad(
            f"{SNAPSHOT}: CHANGED after the run started: its sha256 is {actual},"
            f" run.start recorded {recorded}"
        )
    else:
        proof.good(f"{SNAPSHOT}: the runbook as run (sha256 {recorded}, as recorded)")


def check_witnesses(
    verdicts: Sequence[tuple[Path, Verdict]], witnesses: Sequence[Witness], proof: Proof
) -> None:
    """Each witness hash must be the hash of its line (the last one, or line ``seq``)."""
    files = _files(verdicts)
    for w in witnesses:
        if w.seq is None:
            actual, where = verdicts[-1][1].last_hash, f"the last line (seq {files[-1].last_seq})"
        else:
            home = next((f for f in files if f.first_seq <= w.seq <= f.last_seq), None)
            if home is None:
                proof.bad(f"--expect {w.seq}:{w.sha256[:12]}…: there is no line with seq {w.seq}")
                continue
            number = home.line_of(w.seq)
            actual = _lines_at(home.path, {number})[number][0]
            where = f"{home.path.name}:{number} (seq {w.seq})"
        if actual == w.sha256:
            proof.good(f"--expect: {where} hashes to {w.sha256}, as witnessed")
        else:
            proof.bad(
                f"--expect: {where} hashes to {actual}, NOT the witnessed {w.sha256}:"
                " the record differs from what was seen during the run"
            )


def check_signatures(
    verdicts: Sequence[tuple[Path, Verdict]], allowed: Path | None, proof: Proof
) -> None:
    """Who signed up to which line of each file; fails on an unsigned end or a bad signature.

    Only each file's newest signature is checked with ``ssh-keygen`` (it chains every line
    before it, the files before included); the others are compared with their lines'
    hashes, which needs no key. Without ``allowed`` nothing is checked or failed: what is
    there is said.
    """
    files = _files(verdicts)
    run_id = verdicts[0][1].run_id or ""
    covered_by: str | None = None  # a later file's good signature covers all before it
    per_file: list[list[tuple[bool, str]]] = []
    for file in reversed(files):
        found, signer = _check_file(file, run_id, allowed, covered_by)
        per_file.append(found)
        covered_by = covered_by or signer
    findings = [f for found in reversed(per_file) for f in found]
    if allowed is None:  # nothing checked: what is there is said; only a removal fails
        for passed, text in findings:
            if not passed and text.endswith(_REMOVED):
                proof.bad(text)
            elif any(sig_path(f.path).exists() for f in files):
                proof.good(text)
        return
    for passed, text in findings:
        (proof.good if passed else proof.bad)(text)


def _check_file(
    file: _File, run_id: str, allowed: Path | None, covered_by: str | None
) -> tuple[list[tuple[bool, str]], str | None]:
    """The findings for one file, and what its newest good signature covers (if any)."""
    name, last_line = file.path.name, file.line_of(file.last_seq)
    sigs, problems = _signatures_of(file.path)
    found: list[tuple[bool, str]] = [(False, p) for p in problems]
    claimed = first_event(file.path).get("signing_key")
    if claimed and not sig_path(file.path).exists():
        why = f"{name}: its run.start says it is signed by {claimed}, but there is no"
        return [
            *found,
            (False, f"{why} {sig_path(file.path).name}{_REMOVED}"),
        ], None
    if not sigs:
        if covered_by is not None:
            return [*found, (True, f"{name}: not signed itself; covered by {covered_by}")], None
        return [*found, (False, f"{name}: NOT SIGNED (no {sig_path(file.path).name})")], None
    inside = [s for s in sigs if file.first_seq <= s.seq <= file.last_seq]
    at = _lines_at(file.path, {file.line_of(s.seq) for s in inside})
    for s in sigs:
        if s not in inside:
            why = "lines after it were removed, or it belongs elsewhere"
            found.append((False, f"{name}: a signature of seq {s.seq}, not in the file ({why})"))
        elif at[file.line_of(s.seq)][0] != s.sha256:
            found.append((False, f"{name}:{file.line_of(s.seq)}: CHANGED after it was signed"
                          " (its hash is not the one signed)"))  # fmt: skip
    if not inside:
        return found, None
    newest = max(inside, key=lambda s: s.seq)
    number = file.line_of(newest.seq)
    who = _who(newest, run_id, allowed, at[number][1].get("time"))
    if isinstance(who, SigningError):
        return [*found, (False, f"{name}:{number}: the signature does not verify: {who}")], None
    if who is None:
        found.append((True, f"{name}: signed up to line {number} of {last_line} by key"
                      f" {newest.key} (not checked: give --allowed-signers FILE)"))  # fmt: skip
    else:
        found.append((True, f"{name}: signed by {who} up to line {number} of {last_line}"))
    if number < last_line:
        rest = f"lines {number + 1}-{last_line}"
        if covered_by is not None:
            found.append((True, f"{name}: {rest} not signed here; covered by {covered_by}"))
        else:
            found.append((False, f"{name}: {rest} come after the last signature: NOT SIGNED"
                          " (added later, or the run stopped before signing them)"))  # fmt: skip
    return found, (f"the signature of {name} by {who}" if who else None)


def _signatures_of(transcript: Path) -> tuple[list[Signature], list[str]]:
    path = sig_path(transcript)
    if not path.exists():
        return [], []
    sigs: list[Signature] = []
    problems: list[str] = []
    for item in read_signatures(path):
        (sigs.append if isinstance(item, Signature) else problems.append)(item)  # type: ignore[arg-type]
    return sigs, problems


def _who(sig: Signature, run_id: str, allowed: Path | None, when: Any) -> str | SigningError | None:
    if allowed is None:
        return None
    message = head_message(run_id, sig.seq, sig.sha256)
    try:
        time = when if isinstance(when, str) else None
        name, key = principals(sig.signature, message, allowed, time)
    except SigningError as e:
        return e
    return f"{name} ({key})"


def first_event(path: Path) -> dict[str, Any]:
    return next((line.event for line in read_lines(path)), {})


def check_identity(
    files: Sequence[Path], verdicts: Sequence[tuple[Path, Verdict]], proof: Proof
) -> None:
    """Which run this is, said; a run directory must hold its own run (its id is the
    directory's name): a whole signed run copied over another is not that run."""
    first = first_event(files[0])
    book = first.get("runbook")
    book = book if isinstance(book, dict) else {}
    run_id = verdicts[0][1].run_id
    proof.good(f"run {run_id}, started {first.get('time')}, runbook {book.get('path')!r}")
    if is_run_directory(files) and run_id != files[0].parent.name:
        proof.bad(
            f"the run id {run_id} is not the name of its directory {files[0].parent.name}:"
            " this transcript was moved here from another run"
        )


def check_end(
    verdicts: Sequence[tuple[Path, Verdict]], allowed: Path | None, allow_incomplete: bool,
    proof: Proof,
) -> None:  # fmt: skip
    """With signers given, an end that is not signed is a finding: cutting the record back
    to an earlier signature leaves every line signed, and only the missing end shows it."""
    if allowed is None or verdicts[-1][1].complete:
        return
    if allow_incomplete:
        proof.good("INCOMPLETE: no run end; accepted (--allow-incomplete)")
    else:
        proof.bad(
            "INCOMPLETE: the run has no signed end, so lines may have been cut after the last"
            " signature; for a run that is still going or crashed, give --allow-incomplete"
        )


def is_run_directory(files: Sequence[Path]) -> bool:
    """Whether these files are a run directory's (so its snapshot must be there)."""
    return bool(files) and files[0].name == TRANSCRIPT
