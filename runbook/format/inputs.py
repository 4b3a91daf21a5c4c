"""What a command reads from its user before anything runs: the runbook file and --var.

Kept apart from the engine so that ``check`` and ``plan`` start without loading it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence

from runbook.format.model import Runbook
from runbook.format.parser import ParseResult, parse_bytes
from runbook.format.variables import VariableProblem, parse_assignment


class Refused(Exception):
    """The run does not start; the message says why (exit 1)."""


class BadUsage(Exception):
    """Bad command-line input (exit 2)."""


MAX_RUNBOOK_BYTES = 16 * 1024 * 1024
"""A runbook larger than this is refused: a file that size is not a runbook someone reads."""


def read_runbook(path: str) -> tuple[ParseResult, bytes]:
    """Parse the file at ``path``; an unreadable file is a usage error.

    Only a regular file is read (a FIFO would block for ever, ``/dev/zero`` never ends),
    checked on the opened descriptor so nothing can be swapped in between, and at most
    ``MAX_RUNBOOK_BYTES``.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except IsADirectoryError:
        raise BadUsage(f"{path}: is a directory, not a runbook") from None
    except OSError as e:
        raise BadUsage(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise BadUsage(f"{path}: is a directory, not a runbook")
        if not stat.S_ISREG(mode):
            raise BadUsage(f"{path}: is not a regular file ({_kind(mode)}), not a runbook")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_RUNBOOK_BYTES + 1)
    except OSError as e:
        raise BadUsage(f"{path}: cannot read: {e.strerror or e}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_RUNBOOK_BYTES:
        limit = MAX_RUNBOOK_BYTES // (1024 * 1024)
        raise BadUsage(f"{path}: larger than {limit} MiB, the most a runbook may be")
    return parse_bytes(data, path), data


def _kind(mode: int) -> str:
    kinds = [
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ]
    return next((name for test, name in kinds if test(mode)), "not a file")


def load_runbook(path: str) -> tuple[Runbook, bytes]:
    """A runbook to run: any error in it refuses the run."""
    result, data = read_runbook(path)
    errors = [d.format(path) for d in result.diagnostics if d.severity == "error"]
    if errors or result.runbook is None:
        raise Refused("\n".join([*errors, f"{path} has errors; `runbook check {path}` lists them"]))
    rb = result.runbook
    if not any(step.checklist or any(b.runs for b in step.forward_blocks) for step in rb.steps):
        # Never an "ok: every step is done" for a run in which nothing could run.
        loose = sum(b.runs for b in rb.loose_blocks)
        why = (
            f"its {loose} shell block{'s are' if loose != 1 else ' is'} outside any `##` step"
            f" (put {'them' if loose != 1 else 'it'} under a `##` heading)"
            if loose
            else "it has no shell block and no checklist in a step"
        )
        raise Refused(f"nothing to run in {path}: {why}")
    return rb, data


def parse_vars(assignments: Sequence[str]) -> dict[str, str]:
    given: dict[str, str] = {}
    try:
        for assignment in assignments:
            name, value = parse_assignment(assignment)
            if name in given:
                raise VariableProblem(f"--var {name} is given twice")
            given[name] = value
    except VariableProblem as e:
        raise BadUsage(str(e)) from None
    return given
