"""The core never imports the TUI toolkit: the engine must stay usable headless."""

from __future__ import annotations

import subprocess
import sys

CORE = [
    "runbook",
    "runbook.cli",
    "runbook.format.parser",
    "runbook.format.lint",
    "runbook.format.plan",
    "runbook.engine.session",
    "runbook.record.transcript",
    "runbook.record.report",
    "runbook.launch",
    "runbook.engine.attempt",
    "runbook.record.progress",
    "runbook.engine.operator",
    "runbook.engine.rollout",
    "runbook.engine.bake",
    "runbook.record.runs",
    "runbook.demo",
]


def test_core_does_not_import_textual() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in CORE)
        + "print(sorted(m for m in sys.modules if m.split('.')[0] == 'textual'))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"
