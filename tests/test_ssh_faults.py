"""Faults real sshd cannot stage, from an in-process asyncssh server on loopback."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from runbook import launch
from runbook.engine.operator import Decision, ScriptedOperator
from runbook.record.transcript import read_lines


class _NoAuth(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return False


async def _drop_mid_output(process: asyncssh.SSHServerProcess[bytes]) -> None:
    process.stdout.write(b"partial output\n")
    await process.stdout.drain()
    process.channel.get_connection().abort()  # the network goes away mid-command


@pytest.fixture
def dropper(tmp_path: Path) -> Iterator[Path]:
    """An SSH server that drops every connection mid-command; yields an ssh_config for it."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(
        asyncssh.create_server(
            _NoAuth,
            "127.0.0.1",
            0,
            server_host_keys=[key],
            process_factory=_drop_mid_output,
            encoding=None,
        )
    )
    port = server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {key.export_public_key().decode()}")
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host dropper\n  HostName 127.0.0.1\n  Port {port}\n  User tester\n"
        f"  UserKnownHostsFile {known}\n"
    )
    yield config
    loop.call_soon_threadsafe(server.close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)


def test_a_lost_connection_is_an_unknown_outcome_the_operator_decides(
    dropper: Path, tmp_path: Path
) -> None:
    book = tmp_path / "book.md"
    book.write_text(
        "---\nhosts:\n  edge: [dropper]\n---\n\n## Change\n\n```sh\n#| on: edge\n./change.sh\n```\n"
    )
    operator = ScriptedOperator([("choose", Decision("mark-done", "checked by hand: applied"))])
    done = launch.run(
        str(book),
        assignments=(),
        runs=tmp_path / "runs",
        argv=[],
        announce=lambda _: None,
        operator=operator,
        ssh_config=dropper,
    )
    assert done.outcome.result == "ok"
    kind, problem = operator.asked[0]
    assert kind == "choose"
    assert problem.startswith("dropper: the connection was lost while the command ran")
    evs: list[dict[str, Any]] = [line.event for line in read_lines(done.transcript)]
    starts = [e for e in evs if e["type"] == "block.start"]
    assert len(starts) == 1, "an unknown outcome is never re-run by itself"
    decision = next(e for e in evs if e["type"] == "decision")
    assert (decision["kind"], decision["host"], decision["choice"]) == (
        "unknown",
        "dropper",
        "mark-done",
    )
    output = "".join(e.get("text", "") for e in evs if e["type"] == "output")
    # An aborted TCP connection may drop what was still in flight: whatever arrived is kept.
    assert "partial output\n".startswith(output)
