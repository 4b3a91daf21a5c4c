"""One writer per run: a live run holds its directory's lock; resume beside it refuses."""

from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import events, run_cli, start_cli, wait_for
from runbook.record.lock import RunBusy, RunLock

WAITS = (
    "## Change\n\n```sh\necho started > '{started}'\n"
    "until [ -e '{go}' ]; do sleep 0.02; done\n```\n"
)


def _live_run(tmp_path: Path) -> tuple[subprocess.Popen[str], Path, Path]:
    """``runbook run`` in a second process, alive inside its block until ``go`` exists."""
    started, go = tmp_path / "started", tmp_path / "go"
    book = tmp_path / "book.md"
    book.write_text(WAITS.format(started=started, go=go))
    runner = start_cli("run", str(book), "--yes", "--runs-dir", str(tmp_path))
    wait_for(started.exists, what="the block to start")
    (transcript,) = tmp_path.glob("*/transcript.jsonl")
    return runner, transcript, go


def test_resume_beside_a_live_run_refuses_naming_the_holder(tmp_path: Path) -> None:
    runner, transcript, go = _live_run(tmp_path)
    try:
        refused = run_cli("resume", str(transcript), "--yes")
    finally:
        go.touch()
        out, err = runner.communicate(timeout=60)
    assert refused.returncode != 0
    message = refused.stderr
    assert "cannot resume" in message and "the run is live in another process" in message
    assert f"pid {runner.pid}," in message, message
    assert f"user {getpass.getuser()} on {socket.gethostname()}" in message, message
    assert "since 20" in message and "Traceback" not in message, message
    assert not (transcript.parent / "transcript-2.jsonl").exists(), "nothing was written"
    assert runner.returncode == 0, out + err
    evs = events(transcript)
    assert [e["type"] for e in evs].count("block.start") == 1
    assert evs[-1]["type"] == "run.end" and evs[-1]["result"] == "ok"


def test_a_killed_run_frees_its_lock_without_cleanup(tmp_path: Path) -> None:
    runner, transcript, go = _live_run(tmp_path)
    runner.send_signal(signal.SIGKILL)
    runner.communicate(timeout=30)
    go.touch()  # the orphaned block ends too
    lock = RunLock(transcript.parent, "tester")  # the kernel freed it with the process
    lock.release()
    assert (transcript.parent / "run.lock").stat().st_mode & 0o777 == 0o600


def test_the_lock_is_exclusive_within_one_process_too(tmp_path: Path) -> None:
    """Two sessions in one process (the console and a test) are two writers as well."""
    first = RunLock(tmp_path, "one")
    with pytest.raises(RunBusy, match=rf"pid {os.getpid()}, user one on "):
        RunLock(tmp_path, "two")
    first.release()
    RunLock(tmp_path, "two").release()
