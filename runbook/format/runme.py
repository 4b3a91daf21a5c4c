"""Runme's ways of passing one cell's output to the next, as runbook runs them.

Runme keeps the stdout of the cell that ran last in ``$__``, and that of a cell named like
an environment variable (``GIT_BRANCHES``: upper case, digits and ``_``, at least three
characters) in ``$NAME`` too. Here both are kept as a ``capture:`` is, and only where a
later block reads them: recorded, given to later commands as a quoted environment
variable, and set only from an attempt that succeeded (Runme keeps a failed cell's too).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from runbook.format.model import Block
from runbook.format.values import variable_refs

ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_][A-Z0-9_]*[A-Z][A-Z0-9_]*\Z")
"""Runme's rule for a cell whose output is exported under its name (runner/service.go)."""
LAST_OUTPUT = "__"


def _reads(block: Block) -> set[str]:
    return {name for name, _ in variable_refs(block.code)}


def link_outputs(blocks: Sequence[Block]) -> list[Block]:
    """``blocks`` in document order, each Runme cell whose output a later block reads
    told the names to keep it under (``Block.keeps``). One pass from the end carries back
    what later blocks read and what the next block that runs reads."""
    out = list(blocks)
    read_later: set[str] = set()
    next_reads: set[str] = set()
    for i in range(len(out) - 1, -1, -1):
        block = out[i]
        # A background cell's output is not whole while the next one runs: never kept.
        if block.runme and block.runs and not block.options.background:
            named = ENV_NAME.match(block.name) and block.name != block.options.capture
            keeps = [block.name] if named and block.name in read_later else []
            keeps += [LAST_OUTPUT] if LAST_OUTPUT in next_reads else []
            if keeps:
                out[i] = dataclasses.replace(block, keeps=tuple(keeps))
        reads = _reads(block)
        read_later |= reads
        if block.runs:
            next_reads = reads
    return out
