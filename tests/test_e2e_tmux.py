"""End to end: the installed ``runbook`` console in a real terminal (tmux), hello.md to the end.

Keys go in with ``send-keys``; before each one the test polls ``capture-pane`` for the screen
state that proves the console is ready for it. Never a fixed sleep.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from conftest import RUNBOOKS

BINARY = Path(sys.executable).parent / "runbook"
DEADLINE = 30.0
FORWARD = ("look-around-1", "prepare-a-scratch-directory-1", "write-a-file-1", "clean-up-1")


class Terminal:
    """One pane, 120x40, on a private tmux server."""

    def __init__(self, tmp_path: Path) -> None:
        self.socket = f"runbook-e2e-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.config = tmp_path / "tmux.conf"
        self.config.write_text("set -g default-terminal xterm-256color\nset -g remain-on-exit on\n")
        drop = ("TMUX", "TMUX_PANE", "COLUMNS", "LINES")
        self.env = {k: v for k, v in os.environ.items() if k not in drop}
        self.socket_path = ""

    def tmux(self, *args: str) -> str:
        argv = ["tmux", "-L", self.socket, "-f", str(self.config), *args]
        done = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=10)
        assert done.returncode == 0, f"{shlex.join(argv)}: {done.stderr}"
        return done.stdout

    def start(self, cwd: Path, command: str) -> None:
        self.tmux(
            "new-session", "-d", "-s", "e2e", "-x", "120", "-y", "40", "-c", str(cwd), command
        )
        self.socket_path = self.tmux("display-message", "-p", "#{socket_path}").strip()

    def screen(self, history: bool = False) -> str:
        """The pane as text, wrapped lines joined; ``history``: the scrollback too."""
        return self.tmux("capture-pane", "-p", "-J", "-t", "e2e", *(["-S", "-"] if history else []))

    def wait(self, what: str, *texts: str) -> str:
        """The screen once it shows every one of ``texts``; fail at the deadline."""
        deadline = time.monotonic() + DEADLINE
        while True:
            screen = self.screen()
            if all(t in screen for t in texts):
                return screen
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {DEADLINE}s waiting for {what}:\n{screen}")
            time.sleep(0.05)

    def press(self, key: str) -> None:
        self.tmux("send-keys", "-t", "e2e", key)

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10)
        if self.socket_path:  # tmux 3.3 leaves its socket file behind
            Path(self.socket_path).unlink(missing_ok=True)


@pytest.fixture
def terminal(tmp_path: Path):  # type: ignore[no-untyped-def]
    if shutil.which("tmux") is None:
        if os.environ.get("CI"):
            pytest.fail("tmux is not installed: in CI this end-to-end test must run")
        pytest.skip("tmux is not installed (CI installs it)")
    term = Terminal(tmp_path)
    try:
        yield term
    finally:
        term.kill()


def test_hello_runbook_in_a_real_terminal(terminal: Terminal, tmp_path: Path) -> None:
    assert BINARY.is_file(), f"no installed runbook script next to {sys.executable}: {BINARY}"
    runs, rc = tmp_path / "runs", tmp_path / "rc"
    book = RUNBOOKS / "hello.md"
    run = shlex.join([str(BINARY), str(book), "--runs-dir", str(runs)])
    terminal.start(tmp_path, f"sh -c {shlex.quote(f'{run}; echo $? > {rc}')}")

    def ready(block: str) -> str:
        return terminal.wait(f"{block} to be next", f"{block}  ▸ next: n runs it")

    terminal.wait("the start form", "(GREETING)", "hello from runbook", "Start")
    terminal.press("Enter")
    ready("look-around-1")
    terminal.press("n")
    terminal.wait("the checklist item", "[ ] I have read what this step does", "space: tick")
    terminal.press("Space")
    screen = ready("prepare-a-scratch-directory-1")
    assert "[x] I have read what this step does" in screen
    terminal.press("n")
    ready("write-a-file-1")
    terminal.press("n")
    terminal.wait("the confirm gate", "Yes (y)", "No (n)", "greeting.txt?")
    terminal.press("y")
    ready("clean-up-1")
    terminal.press("n")
    terminal.wait("the end of the run", "The run ended", " OK ")
    terminal.press("q")

    deadline = time.monotonic() + DEADLINE
    while not (rc.exists() and rc.read_text().endswith("\n")):
        assert time.monotonic() < deadline, f"runbook did not exit:\n{terminal.screen()}"
        time.sleep(0.05)
    after = terminal.screen(history=True)  # tmux's "Pane is dead" line scrolls the top one off
    assert rc.read_text().strip() == "0", f"exit status {rc.read_text()!r}:\n{after}"
    [path] = runs.glob("*/transcript.jsonl")
    assert "runbook: ok: every step is done" in after, after
    assert f"runbook: transcript {path}" in after, after

    verify = subprocess.run(
        [str(BINARY), "transcript", "verify", str(path)], capture_output=True, text=True, timeout=60
    )
    verdict = verify.stdout.partition("\n")[0]
    assert verify.returncode == 0 and verdict.endswith(" events, complete"), verify.stdout

    events = [json.loads(line) for line in path.read_text().splitlines()]

    def of(kind: str) -> list[dict[str, Any]]:
        return [e for e in events if e["type"] == kind]

    start = of("run.start")[0]
    assert start["operator"] == "tui"
    assert start["variables"]["GREETING"] == "hello from runbook"
    assert [(t["result"], t["by"]) for t in of("check.tick")] == [("ticked", "operator")]
    assert [(g["answer"], g["accepted"]) for g in of("gate.answer")] == [("yes", True)]
    assert [(e["block"], e["exit"]) for e in of("block.end")] == [(b, 0) for b in FORWARD]
    assert [e["result"] for e in of("run.end")] == ["ok"]
    output = b"".join(
        e["text"].encode() if "text" in e else base64.b64decode(e["b64"])
        for e in of("output")
        if e["block"] == "write-a-file-1"
    )
    assert b"hello from runbook" in output


def test_closing_the_terminal_stops_the_block_and_records_the_end(
    terminal: Terminal, tmp_path: Path
) -> None:
    """The terminal goes away (the tmux server is killed: the console gets SIGHUP) while a
    block runs: the block's processes are stopped and the run's end is recorded."""
    from conftest import live_processes

    long, started, runs = "sleep 300.75", tmp_path / "started", tmp_path / "runs"
    book = tmp_path / "book.md"
    book.write_text(f"## Work\n\n```sh\ntouch {started}\n{long} &\n{long}\n```\n")
    terminal.start(tmp_path, shlex.join([str(BINARY), str(book), "--runs-dir", str(runs)]))
    terminal.wait("the block to be next", "work-1  ▸ next: n runs it")
    terminal.press("n")
    deadline = time.monotonic() + DEADLINE
    while len(live_processes(long)) < 3:  # the shell and both sleeps
        assert time.monotonic() < deadline, f"the block never started:\n{terminal.screen()}"
        time.sleep(0.05)
    terminal.kill()

    [path] = runs.glob("*/transcript.jsonl")

    def ended() -> list[dict[str, Any]]:
        events = [json.loads(line) for line in path.read_text().splitlines()]
        return events if events[-1]["type"] == "run.end" else []

    deadline = time.monotonic() + DEADLINE
    while not (events := ended()):
        assert time.monotonic() < deadline, path.read_text()[-2000:]
        time.sleep(0.05)
    assert live_processes(long) == [], "the block's processes outlived the console"
    end, block_end = events[-1], events[-2]
    assert (end["result"], end["exit_code"]) == ("aborted", 129), end
    assert end["message"].startswith("stopped by SIGHUP"), end
    assert block_end["type"] == "block.end" and block_end["interrupted"] is True


def test_a_confirmed_quit_at_a_gate_ends_the_process_and_runs_nothing(
    terminal: Terminal, tmp_path: Path
) -> None:
    """The installed console at a gate: ctrl+q, y ends the process within 2 s; the gated
    block never ran and the gate's answer is the quit."""
    runs, rc, deployed = tmp_path / "runs", tmp_path / "rc", tmp_path / "deployed"
    book = tmp_path / "book.md"
    book.write_text(
        f'## Deploy\n\n```sh {{name=deploy confirm="Deploy it?"}}\ntouch {deployed}\n```\n'
    )
    run = shlex.join([str(BINARY), str(book), "--runs-dir", str(runs)])
    terminal.start(tmp_path, f"sh -c {shlex.quote(f'{run}; echo $? > {rc}')}")
    terminal.wait("the block to be next", "deploy  ▸ next: n runs it")
    terminal.press("n")
    terminal.wait("the gate", "Deploy it?", "Yes (y)")
    terminal.press("C-q")
    terminal.wait("the quit dialog", "Quit and record the run as aborted?")
    terminal.press("y")
    deadline = time.monotonic() + 2.0
    while not (rc.exists() and rc.read_text().endswith("\n")):
        assert time.monotonic() < deadline, (
            f"still running 2 s after the quit:\n{terminal.screen()}"
        )
        time.sleep(0.05)
    terminal.press("y")  # a late answer meant for the gate reaches only the shell
    assert rc.read_text().strip() == "1"
    assert not deployed.exists()
    [path] = runs.glob("*/transcript.jsonl")
    events = [json.loads(line) for line in path.read_text().splitlines()]
    answers = [(e["answer"], e["accepted"]) for e in events if e["type"] == "gate.answer"]
    assert answers == [("stopped", False)]
    assert not [e for e in events if e["type"] == "block.start"]
    assert (events[-1]["type"], events[-1]["result"]) == ("run.end", "aborted")
