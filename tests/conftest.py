"""Shared paths and helpers for the test suite."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Tests press Ctrl-C by sending SIGINT to this process (a run, a bake). Started in the
# background by a non-interactive shell (`pytest &`), the suite inherits SIGINT ignored,
# which runbook leaves alone by design (as `nohup` asks): those tests then waited out a
# ten-minute bake. An operator's terminal delivers it; so does the suite, whatever started it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
RUNBOOKS = ROOT / "runbooks"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CORPUS = Path(__file__).resolve().parent / "corpus"


def run_cli(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """The installed-module CLI in a real subprocess, as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "runbook", *args],
        capture_output=True,
        text=True,
        input=None if input is None else input.decode(),
        cwd=ROOT,
        timeout=120,
    )


def run_inline(  # type: ignore[no-untyped-def]
    tmp_path: Path,
    text: str,
    operator=None,
    *,
    vars: tuple[str, ...] = (),
    grace: float = 0.3,
    transport=None,
):
    """Run ``text`` as ``book.md`` in ``tmp_path`` (headless --yes unless told otherwise)."""
    from runbook import launch
    from runbook.engine.operator import HeadlessOperator
    from runbook.transports.local import LocalTransport

    path = tmp_path / "book.md"
    path.write_text(text, encoding="utf-8")
    return launch.run(
        str(path),
        assignments=vars,
        runs=tmp_path / "runs",
        argv=["runbook", "run", str(path)],
        announce=lambda _: None,
        operator=operator or HeadlessOperator(yes=True),
        transport=transport or LocalTransport(grace=grace),
    )


def events(path: Path) -> list[dict[str, Any]]:
    """Every event of a transcript file, as recorded."""
    from runbook.record.chain import read_lines

    return [line.event for line in read_lines(path)]


def start_cli(*args: str) -> subprocess.Popen[str]:
    """``runbook ARGS`` in a subprocess that runs on while the test acts on it."""
    return subprocess.Popen(
        [sys.executable, "-m", "runbook", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def signal_on_line(args: list[str], seen: str, sig: int) -> tuple[int, str, str]:
    """``runbook ARGS`` in a subprocess, sent ``sig`` once a line of its output holds
    ``seen``; its exit status and output. Never left running if the test fails."""
    runner = start_cli(*args)
    try:
        assert runner.stdout is not None
        for line in runner.stdout:
            if seen in line:
                break
        runner.send_signal(sig)
        out, err = runner.communicate(timeout=60)
    finally:
        runner.kill()
    return runner.returncode, out, err


def crash_mid_block(args: list[str], started: Path, orphan: str, also=None) -> None:  # type: ignore[no-untyped-def]
    """``runbook ARGS`` in a subprocess, killed with SIGKILL once ``started`` exists (and
    ``also()`` holds, if given): a crash, nothing more is recorded. Its block's process
    ``orphan`` is killed after it."""
    import os
    import signal

    runner = subprocess.Popen(
        [sys.executable, "-m", "runbook", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(started.exists, what=f"{started.name} to appear")
        if also is not None:
            wait_for(also, what="the moment to crash")
    finally:
        runner.send_signal(signal.SIGKILL)
        runner.wait()
    for pid in live_processes(orphan):  # the runner died; its block is an orphan
        os.kill(pid, signal.SIGKILL)


def resume_run(transcript: Path, operator, **options):  # type: ignore[no-untyped-def]
    """``runbook resume TRANSCRIPT`` in-process, answered by ``operator``; ``options`` are
    launch.resume's others (``allow_changed``, ``transport``, ``ssh_config``...)."""
    from runbook import launch

    options.setdefault("allow_changed", False)
    return launch.resume(
        str(transcript),
        assignments=(),
        argv=["runbook", "resume", str(transcript)],
        announce=lambda _: None,
        operator=operator,
        **options,
    )


def run_on_fleet(fleet, path: Path, operator):  # type: ignore[no-untyped-def]
    """Run ``path`` against the sshd fleet (its ssh_config), recording next to it."""
    from runbook import launch

    return launch.run(
        str(path),
        assignments=(),
        runs=path.parent / "runs",
        argv=[],
        announce=lambda _: None,
        operator=operator,
        ssh_config=fleet.ssh_config,
    )


@pytest.fixture
def write(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Write a runbook (text or bytes) into a temporary file and return its path."""

    def _write(content: str | bytes, name: str = "runbook.md") -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    return _write


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll until ``predicate()`` is true: a wait with a deadline, never a fixed sleep."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def live_processes(needle: str) -> list[int]:
    """PIDs of live (non-zombie) processes whose command line contains ``needle``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if needle in cmdline and state not in ("Z", "X"):
            pids.append(int(entry.name))
    return pids


def require_sshd() -> None:
    """Skip without OpenSSH's sshd, but fail in CI, where the SSH tests must run."""
    import os

    import sshd_fleet

    why = sshd_fleet.available()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the SSH tests: {why}")
        pytest.skip(why)


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Six real sshd hosts on loopback (``host1`` .. ``host6`` in ``fleet.ssh_config``)."""
    import sshd_fleet

    require_sshd()
    started = sshd_fleet.start(tmp_path_factory.mktemp("fleet"), 6)
    yield started
    started.stop()


@pytest.fixture
def webhook():  # type: ignore[no-untyped-def]
    """A chat webhook stand-in: a real HTTP server on 127.0.0.1 (see webhook_server.py)."""
    from webhook_server import WebhookServer

    server = WebhookServer()
    yield server
    server.close()


class OnPty:
    """``runbook ARGS`` on a real pseudo-terminal (its controlling terminal): what the
    operator sees, and keys typed as an operator types them."""

    def __init__(self, args: list[str], cwd: Path = ROOT) -> None:
        import fcntl
        import os
        import termios

        self.master, slave = os.openpty()

        def take_terminal() -> None:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runbook", *args],
            cwd=cwd,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=take_terminal,
        )
        os.close(slave)
        self.seen = b""

    def expect(self, text: str, timeout: float = 30.0) -> None:
        """Read the screen until ``text`` shows (a wait with a deadline)."""
        import os
        import select
        import time

        deadline = time.monotonic() + timeout
        while text.encode() not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} never showed; the screen: {self.seen[-2000:]!r}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the other side closed
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"{text!r} never showed: {self.seen[-2000:]!r}")
                self.seen += chunk

    def send(self, data: bytes) -> None:
        import os

        os.write(self.master, data)

    def wait(self, timeout: float = 60.0) -> int:
        """The exit code, reading the screen meanwhile so the runner never blocks on it."""
        import os
        import select
        import time

        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                with contextlib.suppress(OSError):
                    self.seen += os.read(self.master, 65536)
        code = self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        os.close(self.master)
        return code


def run_on(
    transport: Any, alias: str, script: str, **kwargs: Any
) -> tuple[Any, dict[str, bytearray]]:
    """``transport.run`` of ``script`` (with ``sh``) on the host ``alias``, then the
    transport closed: its status and what each stream printed."""
    import asyncio

    from runbook.format.hosts import parse_host

    out = {"stdout": bytearray(), "stderr": bytearray()}

    def sink(stream: str, chunk: bytes) -> None:
        out[stream] += chunk

    async def go() -> Any:
        try:
            return await transport.run(
                parse_host(alias), script, shell="sh", on_output=sink, **kwargs
            )
        finally:
            await transport.close()

    return asyncio.run(go()), out


def wait_gone(needle: str) -> bool:
    """Until no live process's command line holds ``needle`` (10 s at most)."""
    return bool(wait_for(lambda: live_processes(needle) == [], timeout=10, what=needle))
