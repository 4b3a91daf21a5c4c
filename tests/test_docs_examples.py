"""The README's and the docs' examples of `runbook check` and `runbook plan` are what those
commands print today: each is run, and its output compared, so the docs cannot drift (as
cog or sqlite-utils' documentation tests do). A `...` line stands for any lines."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CHECKED = ("check", "plan")
"""Commands whose output depends only on the files: the ones an example can pin."""


def examples() -> list[tuple[str, str, list[str]]]:
    """(where, command, expected lines) for each `$ runbook check|plan …` in a console block."""
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for block in re.finditer(r"^```console\n(.*?)^```$", text, re.S | re.M):
            line = text.count("\n", 0, block.start()) + 2
            command: str | None = None
            where = line
            expected: list[str] = []
            for offset, row in enumerate([*block.group(1).splitlines(), "$ "]):
                if row.startswith("$ "):
                    if command is not None and shlex.split(command)[1] in CHECKED:
                        while expected and not expected[-1]:
                            expected.pop()
                        found.append((f"{doc.name}:{where}", command, expected))
                    command, expected, where = row[2:], [], line + offset
                    if not command.startswith("runbook ") or "…" in command or "[" in command:
                        command = None  # a synopsis or another tool: not an example
                else:
                    expected.append(row)
    return found


def matches(actual: list[str], expected: list[str]) -> bool:
    """``expected``'s runs of lines (split at `...`) appear in ``actual`` in order; without
    a `...` at either end, they start (or end) it."""
    runs: list[list[str]] = [[]]
    for row in expected:
        if row == "...":
            runs.append([])
        else:
            runs[-1].append(row)
    at = 0
    for index, run in enumerate(runs):
        if not run:
            continue
        anchored = index == 0
        for start in range(at, len(actual) - len(run) + 1):
            if actual[start : start + len(run)] == run:
                break
            if anchored:
                return False
        else:
            return False
        at = start + len(run)
    return bool(runs[-1]) is False or at == len(actual)


EXAMPLES = examples()


def test_the_docs_have_examples_to_check() -> None:
    commands = [command for _, command, _ in EXAMPLES]
    assert any(c.startswith("runbook plan ") for c in commands), commands
    assert any(c.startswith("runbook check ") for c in commands), commands


@pytest.mark.parametrize(("where", "command", "expected"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_an_example_prints_what_the_docs_say(where: str, command: str, expected: list[str]) -> None:
    runner = f"{shlex.quote(sys.executable)} -m runbook"
    proc = subprocess.run(
        ["bash", "-c", runner + command.removeprefix("runbook")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    actual = (proc.stdout + proc.stderr).rstrip("\n").splitlines()
    assert matches(actual, expected), (
        f"{where}: `{command}` prints something else now; paste its output:\n" + "\n".join(actual)
    )


def test_the_matcher_takes_elisions_and_anchors() -> None:
    assert matches(["a", "b", "c"], ["a", "...", "c"])
    assert matches(["a", "b", "c"], ["...", "b", "..."])
    assert not matches(["a", "b", "c"], ["b", "..."])  # must start with it
    assert not matches(["a", "b", "c"], ["...", "b"])  # must end with it
    assert not matches(["a", "b"], ["a", "b", "c"])
