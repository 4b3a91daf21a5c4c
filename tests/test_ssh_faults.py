"""Faults real sshd cannot stage, from an in-process asyncssh server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from conftest import run_cli
from runbook import launch
from runbook.engine.operator import Decision, ScriptedOperator
from runbook.record.chain import read_lines


class _NoAuth(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return False


class _Vanishing(_NoAuth):
    """Each session runs the command it is asked to run, then the connection is lost
    before the reply to the exec request goes out."""

    ran: list[str]

    def session_requested(self) -> asyncssh.SSHServerSession[bytes]:
        return _RunThenVanish(self.ran)


async def _drop_mid_output(process: asyncssh.SSHServerProcess[bytes]) -> None:
    process.stdout.write(b"partial output\n")
    await process.stdout.drain()
    process.channel.get_connection().abort()  # the network goes away mid-command


class _RunThenVanish(asyncssh.SSHServerSession[bytes]):
    def __init__(self, ran: list[str]) -> None:
        self.ran = ran

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self.chan = chan

    def exec_requested(self, command: str) -> bool:
        self.ran.append(command)
        self.chan.get_connection().abort()
        return True


@contextlib.contextmanager
def fault_server(
    tmp_path: Path, name: str, server: type[asyncssh.SSHServer] = _NoAuth, **options: Any
) -> Iterator[Path]:
    """An in-process asyncssh server on loopback; yields an ssh_config naming it ``name``."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    loop = asyncio.new_event_loop()
    listener = loop.run_until_complete(
        asyncssh.create_server(
            server, "127.0.0.1", 0, server_host_keys=[key], encoding=None, **options
        )
    )
    port = listener.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {key.export_public_key().decode()}")
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host {name}\n  HostName 127.0.0.1\n  Port {port}\n  User tester\n"
        f"  UserKnownHostsFile {known}\n"
    )
    try:
        yield config
    finally:
        loop.call_soon_threadsafe(listener.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)


@pytest.fixture
def dropper(tmp_path: Path) -> Iterator[Path]:
    """An SSH server that drops every connection mid-command."""
    with fault_server(tmp_path, "dropper", process_factory=_drop_mid_output) as config:
        yield config


@pytest.fixture
def vanisher(tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    """An SSH server that runs each command, then vanishes before replying; and what it ran."""
    ran: list[str] = []
    server = type("Server", (_Vanishing,), {"ran": ran})
    with fault_server(tmp_path, "vanisher", server) as config:
        yield config, ran


CHANGE = "---\nhosts:\n  edge: [{host}]\n---\n\n## Change\n\n```sh\n#| on: edge\n./change.sh\n```\n"


def _operator_marks_done(
    tmp_path: Path, host: str, config: Path
) -> tuple[str, list[dict[str, Any]], str]:
    """Run the one-block change on ``host``; the operator, asked, marks it done. The
    result, the events, and the question the operator was asked."""
    book = tmp_path / "book.md"
    book.write_text(CHANGE.format(host=host))
    operator = ScriptedOperator([("choose", Decision("mark-done", "checked by hand: applied"))])
    done = launch.run(
        str(book),
        assignments=(),
        runs=tmp_path / "runs",
        argv=[],
        announce=lambda _: None,
        operator=operator,
        ssh_config=config,
    )
    (kind, problem), *_ = operator.asked
    assert kind == "choose"
    evs = [line.event for line in read_lines(done.transcript)]
    decision = next(e for e in evs if e["type"] == "decision")
    assert (decision["kind"], decision["host"], decision["choice"]) == (
        "unknown",
        host,
        "mark-done",
    )
    return done.outcome.result, evs, problem


def test_a_lost_connection_is_an_unknown_outcome_the_operator_decides(
    dropper: Path, tmp_path: Path
) -> None:
    result, evs, problem = _operator_marks_done(tmp_path, "dropper", dropper)
    assert result == "ok"
    assert problem.startswith("dropper: the connection was lost while the command ran")
    starts = [e for e in evs if e["type"] == "block.start"]
    assert len(starts) == 1, "an unknown outcome is never re-run by itself"
    output = "".join(e.get("text", "") for e in evs if e["type"] == "output")
    # An aborted TCP connection may drop what was still in flight: whatever arrived is kept.
    assert "partial output\n".startswith(output)


def test_a_command_whose_start_was_never_confirmed_is_never_sent_again(
    vanisher: tuple[Path, list[str]], tmp_path: Path
) -> None:
    """The host ran it and the reply was lost: retrying would run it twice; the operator
    decides instead, as for a connection lost mid-command."""
    config, ran = vanisher
    result, _, problem = _operator_marks_done(tmp_path, "vanisher", config)
    assert len(ran) == 1 and "change.sh" in ran[0], ran
    assert problem.startswith("vanisher: the command was sent but its start was never confirmed")
    assert "outcome is unknown" in problem
    assert result == "ok"


def test_headless_an_unknown_outcome_stops_the_run_naming_the_host(
    vanisher: tuple[Path, list[str]], tmp_path: Path
) -> None:
    config, ran = vanisher
    book = tmp_path / "book.md"
    book.write_text(CHANGE.format(host="vanisher"))
    runs = tmp_path / "runs"
    done = run_cli("run", str(book), "--yes", "--ssh-config", str(config), "--runs-dir", str(runs))
    assert done.returncode == 1, done.stdout + done.stderr
    assert len(ran) == 1, ran
    said = done.stdout + done.stderr
    assert "vanisher" in said and "outcome unknown" in said, said
    assert "Traceback" not in said
    (transcript,) = runs.glob("*/transcript.jsonl")
    evs = [line.event for line in read_lines(transcript)]
    assert evs[-1]["type"] == "run.end" and evs[-1]["result"] == "aborted", evs[-1]
