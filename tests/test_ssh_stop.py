"""A timeout stops a remote command's whole process group, and nothing else, against real
sshd: under a pty (the wrapper's line ends in CR LF), behind a ForceCommand that echoes
the command line and floods the output first, and never a group whose number a finished
command's wrapper has given up to someone else."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import live_processes, require_sshd, run_on, wait_for, wait_gone
from runbook.format.hosts import parse_host
from runbook.transports.ssh import SSHTransport


def run(transport: SSHTransport, alias: str, script: str, **kwargs: Any) -> tuple[Any, bytes]:
    status, out = run_on(transport, alias, script, variables={}, **kwargs)
    return status, bytes(out["stdout"])


WRAPPER_LINE = re.compile(rb"runbook-[0-9a-f]{16} [0-9]+")


def test_under_a_pty_the_line_is_read_and_a_timeout_stops_the_group(
    fleet: Any, tmp_path: Path
) -> None:
    config = tmp_path / "ssh_config"
    config.write_text("Host *\n  RequestTTY force\n\n" + fleet.ssh_config.read_text())
    transport = SSHTransport(config=config, grace=0.5)
    status, out = run(transport, "host1", "echo started; sleep 613.5", timeout=1.0)
    assert status.timed_out and status.problem is None, status
    # A pty merges stderr in: setsid's own word on the signal may follow.
    assert out.replace(b"\r", b"").startswith(b"started\n"), out
    assert not WRAPPER_LINE.search(out), out
    assert wait_gone("sleep 613.5")


@pytest.fixture(scope="module")
def loud(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One sshd whose ForceCommand says what it runs, then prints 70,000 bytes without a
    newline, then runs it: the command line (with the command's token) and a flood come
    before the wrapper's line. A command that says "jailed" gets a sleep instead."""
    import sshd_fleet

    require_sshd()
    root = tmp_path_factory.mktemp("loud")
    script = root / "say-then-run"
    script.write_text(
        '#!/bin/sh\ncase "$SSH_ORIGINAL_COMMAND" in *jailed*) exec sleep 617.5;; esac\n'
        'echo "running: $SSH_ORIGINAL_COMMAND"\n'
        "head -c 70000 /dev/zero | tr '\\0' x\n"
        'exec sh -c "$SSH_ORIGINAL_COMMAND"\n'
    )
    script.chmod(0o755)
    fleet = sshd_fleet.start(
        root / "fleet", 1, extra_config=f"ForceCommand {script}\n", plain_user=False
    )
    yield fleet
    fleet.stop()


def test_what_a_force_command_prints_first_is_recorded_whole(loud: Any) -> None:
    transport = SSHTransport(config=loud.ssh_config, grace=0.5)
    status, out = run(transport, "host1", "echo hi")
    assert status.code == 0, status
    said, rest = out.split(b"\n", 1)
    assert said.startswith(b"running: ") and b"exec setsid" in said, said[:200]
    assert rest == b"x" * 70_000 + b"hi\n", rest[-100:]
    assert not WRAPPER_LINE.search(said)  # the command line never holds the line's text

    status, out = run(transport, "host1", "echo started; sleep 614.5", timeout=1.0)
    assert status.timed_out and status.problem is None, status
    assert out.endswith(b"x" * 70_000 + b"started\n") and not WRAPPER_LINE.search(out)
    assert wait_gone("sleep 614.5")


def test_a_command_whose_wrapper_never_speaks_ends_at_its_timeout_saying_so(loud: Any) -> None:
    """A ForceCommand that runs something else: no line ever names a group. The timeout
    still ends the block (the channel is closed), and the record says the command could
    not be stopped, not that it was."""
    transport = SSHTransport(config=loud.ssh_config, grace=0.3)
    try:
        status, out = run(transport, "host1", "echo jailed", timeout=0.5)
        assert status.timed_out and status.code is None and status.signal is None, status
        assert status.problem is not None and "could not be stopped" in status.problem
        assert out == b""
    finally:
        for pid in live_processes("sleep 617.5"):
            os.kill(pid, 9)


def test_a_finished_wrappers_group_number_is_never_signalled(fleet: Any) -> None:
    """The script ends at once but leaves a process of its own session holding stdout, so
    the channel stays open until the timeout. By then the wrapper (the group's leader) has
    exited, and its number is given to a bystander that leads a group of its own (the
    next pid is set through /proc/sys/kernel/ns_last_pid, as root). The timeout must not
    signal the bystander; the block ends, saying something outside its group held on."""
    transport = SSHTransport(config=fleet.ssh_config, grace=0.5)
    bystander: subprocess.Popen[bytes] | None = None
    go = f"/tmp/runbook-test-go-{os.getpid()}-{time.monotonic_ns()}"  # any host user sees /tmp

    async def scenario() -> Any:
        nonlocal bystander
        task = asyncio.create_task(
            transport.run(
                parse_host("host3"),
                # The script ends once the test has seen its wrapper, not after a guess.
                f"setsid sleep 615.5 & while [ ! -e {go} ]; do sleep 0.01; done; exit 0",
                shell="sh",
                variables={},
                on_output=lambda *_: None,
                timeout=2.0,
            )
        )
        leader = await asyncio.to_thread(
            wait_for, lambda: _wrapper_pid("sleep 615.5"), 10, "the wrapper"
        )
        open(go, "w").close()
        await asyncio.to_thread(wait_for, lambda: not os.path.exists(f"/proc/{leader}"), 10)
        for _ in range(20):  # the next pid can be taken by someone else first: try again
            with open("/proc/sys/kernel/ns_last_pid", "w") as f:
                f.write(str(leader - 1))
            candidate = subprocess.Popen(["setsid", "sleep", "616.5"])
            if candidate.pid == leader:
                bystander = candidate
                break
            candidate.kill()
            candidate.wait()
        assert bystander is not None, "could not give the wrapper's number to the bystander"
        try:
            return await task
        finally:
            await transport.close()

    try:
        status = asyncio.run(scenario())
        assert bystander is not None and bystander.poll() is None, "the bystander was signalled"
        assert status.code == 0 and status.timed_out and status.detached, status
    finally:
        if bystander is not None:
            bystander.kill()
            bystander.wait()
        for pid in live_processes("sleep 615.5"):
            os.kill(pid, 9)
        if os.path.exists(go):
            os.unlink(go)


def _wrapper_pid(needle: str) -> int | None:
    """The wrapper (``sh -c ... TOKEN sh -c SCRIPT``) of the command holding ``needle``."""
    for pid in live_processes(needle):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile
            continue
        if cmdline[:2] == [b"sh", b"-c"] and b"runbook-$0" in cmdline[2]:
            return pid
    return None
