"""What a command reads from its user before anything runs: the runbook file and --var.

Kept apart from the engine so that ``check`` and ``plan`` start without loading it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from runbook.format.model import Runbook
from runbook.format.parser import ParseResult, parse_bytes
from runbook.format.variables import VariableProblem, parse_assignment


class Refused(Exception):
    """The run does not start; the message says why (exit 1)."""


class BadUsage(Exception):
    """Bad command-line input (exit 2)."""


def read_runbook(path: str) -> tuple[ParseResult, bytes]:
    """Parse the file at ``path``; an unreadable file is a usage error."""
    try:
        data = Path(path).read_bytes()
    except IsADirectoryError:
        raise BadUsage(f"{path}: is a directory, not a runbook") from None
    except OSError as e:
        raise BadUsage(f"{path}: cannot read: {e.strerror or e}") from None
    return parse_bytes(data, path), data


def load_runbook(path: str) -> tuple[Runbook, bytes]:
    """A runbook to run: any error in it refuses the run."""
    result, data = read_runbook(path)
    errors = [d.format(path) for d in result.diagnostics if d.severity == "error"]
    if errors or result.runbook is None:
        raise Refused("\n".join([*errors, f"{path} has errors; `runbook check {path}` lists them"]))
    return result.runbook, data


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
