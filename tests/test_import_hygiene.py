"""The core never imports the TUI toolkit: the engine must stay usable headless."""

from __future__ import annotations

import os
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


def test_a_local_run_loads_neither_asyncssh_nor_textual(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """asyncssh is a third of the start-up, and a local-only run never uses it, nor the
    rollout, the webhook client (without `notify:`), the signer (without a key) or the
    transcript's reader (only a resume reads one back); a run with hosts loads asyncssh
    and the rollout (the same run, one block on a literal host)."""
    local = tmp_path / "local.md"
    local.write_text("## S\n\n```sh\necho local\n```\n")
    remote = tmp_path / "remote.md"
    remote.write_text("## S\n\n```sh\n#| on: nobody@127.0.0.1:1\necho remote\n```\n")
    code = (
        "import sys\nfrom runbook.cli import main\n"
        "main(['run', sys.argv[1], '--yes', '--runs-dir', sys.argv[2]])\n"
        "lazy = {'asyncssh', 'textual', 'runbook.notify.webhook', 'runbook.engine.rollout',"
        " 'runbook.record.signing', 'runbook.record.chain', 'getpass'}\n"
        "print(sorted(m for m in lazy if m in sys.modules), file=sys.stderr)"
    )
    runs = str(tmp_path / "runs")
    with_hosts = "['asyncssh', 'getpass', 'runbook.engine.rollout']"  # asyncssh's getpass
    for book, loaded in ((local, "[]"), (remote, with_hosts)):
        env = {k: v for k, v in os.environ.items() if k != "RUNBOOK_SIGNING_KEY"}
        proc = subprocess.run(
            [sys.executable, "-c", code, str(book), runs], capture_output=True, text=True, env=env
        )
        assert proc.stderr.strip().splitlines()[-1] == loaded, proc.stderr


def test_importing_the_ssh_side_prints_no_warning() -> None:
    """A library's deprecation notices at import (asyncssh's DSA types under cryptography
    51) must not reach the operator's terminal, headless or before the console opens."""
    code = "import runbook.transports.ssh, runbook.demo.fleet"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (proc.returncode, proc.stderr) == (0, "")
