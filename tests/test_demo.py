"""`runbook demo`'s embedded fleet: the demo runbook end to end, real SSH, clean stop."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from conftest import events, live_processes, wait_for
from runbook import launch
from runbook.demo import DemoFleet, DemoFleetError
from runbook.demo.fleet import THREAD_NAME
from runbook.engine.operator import Decision, ScriptedOperator
from runbook.record.chain import verify
from runbook.transports.wrapper import env_payload, remote_command

HOSTS = ["web1", "web2", "web3", "web4"]


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[DemoFleet]:
    with DemoFleet(tmp_path / "demo") as fleet:
        yield fleet


def run_demo(fleet: DemoFleet, answers: list[tuple[str, Any]]) -> tuple[launch.Finished, Any]:
    operator = ScriptedOperator(answers)
    done = launch.run(
        str(fleet.runbook),
        assignments=(),
        runs=fleet.root / "runs",
        argv=[],
        announce=lambda _: None,
        operator=operator,
        ssh_config=fleet.ssh_config,
    )
    assert not operator.answers, f"questions never asked: {list(operator.answers)}"
    return done, operator


def output_of(evs: list[dict[str, Any]], block: str, host: str) -> str:
    return "".join(
        e.get("text", "")
        for e in evs
        if e["type"] == "output" and e.get("block") == block and e.get("host") == host
    )


def test_the_demo_deploys_in_batches_fails_on_web3_and_rolls_back(demo: DemoFleet) -> None:
    done, operator = run_demo(
        demo,
        [
            ("tick", Decision("ticked")),
            ("tick", Decision("ticked")),
            ("confirm", True),  # deploy's own gate
            ("confirm", True),  # batch 2: web2, web3
            ("confirm", True),  # batch 3: web4
            ("choose", Decision("rollback", "web3 is unhealthy")),
            ("confirm", True),  # the rollback block's gate
        ],
    )
    assert done.outcome.result == "rolled-back"
    assert verify(done.transcript).ok
    evs = events(done.transcript)

    # The deploy: web1 alone (the canary), then web2 and web3, then web4, a gate between.
    batches: list[list[str]] = [[]]
    for e in evs:
        if e["type"] == "gate.ask" and e["block"] == "deploy" and e["gate"] == "batch":
            batches.append([])
        elif e["type"] == "block.start" and e["block"] == "deploy":
            batches[-1].append(e["host"])
    assert batches == [["web1"], ["web2", "web3"], ["web4"]]
    gates = [e["where"] for e in evs if e["type"] == "gate.ask" and e["block"] == "deploy"]
    assert gates == ["on web1, web2, web3, web4", "on web2, web3", "on web4"]  # each batch's own
    ends = [e for e in evs if e["type"] == "block.end" and e["block"] == "deploy"]
    assert sorted(e["host"] for e in ends) == HOSTS
    assert all(e["exit"] == 0 for e in ends)
    assert "back in the load balancer" in output_of(evs, "deploy", "web4")

    # The health check: web3 fails every attempt (retries: 2), the others pass at once.
    checks = [e for e in evs if e["type"] == "block.end" and e["block"] == "health-check"]
    assert {e["host"] for e in checks if e["exit"] != 0} == {"web3"}
    assert [e["attempt"] for e in checks if e["host"] == "web3"] == [1, 2, 3]
    assert "503 Service Unavailable (db pool exhausted)" in output_of(evs, "health-check", "web3")
    assert "200 OK (shop-web v2.4.1)" in output_of(evs, "health-check", "web1")
    kind, problem = operator.asked[5]
    assert kind == "choose" and "web3" in problem and "web1" not in problem
    decision = next(e for e in evs if e["type"] == "decision")
    assert (decision["block"], decision["choice"]) == ("health-check", "rollback")

    # The rollback ran on every host, and the run says so.
    types = [e["type"] for e in evs]
    assert types.index("rollback.start") < types.index("rollback.end") < types.index("run.end")
    undone = [e for e in evs if e["type"] == "block.end" and e["block"] == "deploy-rollback"]
    assert sorted(e["host"] for e in undone) == HOSTS and all(e["exit"] == 0 for e in undone)
    assert not any(e["type"] == "block.start" and e["block"] == "announce" for e in evs)
    assert evs[-1]["type"] == "run.end" and evs[-1]["result"] == "rolled-back"

    # Each sandbox serves the old release again; the new one stays unpacked beside it.
    for host in HOSTS:
        sandbox = demo.sandbox(host)
        assert os.readlink(sandbox / "current") == "releases/v2.4.0", host
        assert (sandbox / "releases" / "v2.4.1" / "VERSION").read_text() == "v2.4.1\n"


def test_a_host_key_other_than_the_pinned_one_is_refused(demo: DemoFleet) -> None:
    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    lines = demo.known_hosts.read_text().splitlines()
    port = demo.ports["web1"]
    pinned = [
        f"[127.0.0.1]:{port} {impostor}" if line.startswith(f"[127.0.0.1]:{port} ") else line
        for line in lines
    ]
    assert pinned != lines
    demo.known_hosts.write_text("\n".join(pinned))
    done, operator = run_demo(
        demo,
        [
            ("tick", Decision("ticked")),
            ("tick", Decision("ticked")),
            ("confirm", True),
            ("choose", Decision("abort", "the canary's host key changed")),
        ],
    )
    assert done.outcome.result == "aborted"
    assert "HOST KEY CHANGED" in operator.asked[-1][1]
    evs = events(done.transcript)
    end = next(e for e in evs if e["type"] == "block.end" and e.get("host") == "web1")
    assert end["exit"] is None and "HOST KEY CHANGED" in end["status"]
    assert not any(e["type"] == "output" and e.get("host") == "web1" for e in evs)
    assert os.readlink(demo.sandbox("web1") / "current") == "releases/v2.4.0"


def test_only_the_fleet_client_key_and_user_get_in(demo: DemoFleet) -> None:
    async def attempt(**options: Any) -> None:
        async with asyncssh.connect("web1", config=[str(demo.ssh_config)], **options):
            pass

    asyncio.run(attempt())  # the generated key and user: in
    stranger = asyncssh.generate_private_key("ssh-ed25519")
    with pytest.raises(asyncssh.PermissionDenied):
        asyncio.run(attempt(client_keys=[stranger], agent_path=None))
    with pytest.raises(asyncssh.PermissionDenied):
        asyncio.run(attempt(username="someone-else"))


def test_commands_run_in_the_sandbox_with_bytes_stdin_exit_codes_and_signals(
    demo: DemoFleet,
) -> None:
    async def session() -> list[asyncssh.SSHCompletedProcess]:
        async with asyncssh.connect("web2", config=[str(demo.ssh_config)]) as conn:
            return [
                await conn.run('echo "$HOME|$RUNBOOK_DEMO_HOST|$LANG"; pwd', encoding=None),
                await conn.run("cat; echo oops >&2; exit 3", input=b"\xff\x00bytes", encoding=None),
                await conn.run("kill -TERM $$", encoding=None),
                await interrupted(conn),
            ]

    async def interrupted(conn: asyncssh.SSHClientConnection) -> asyncssh.SSHCompletedProcess:
        proc = await conn.create_process("echo go; exec sleep 7332", encoding=None)
        assert await proc.stdout.readline() == b"go\n"
        proc.send_signal("INT")  # a signal request goes to the command
        return await proc.wait()

    env, piped, killed, stopped = asyncio.run(session())
    sandbox = str(demo.sandbox("web2"))
    assert env.stdout == f"{sandbox}|web2|C.UTF-8\n{sandbox}\n".encode()
    assert (piped.stdout, piped.stderr, piped.exit_status) == (b"\xff\x00bytes", b"oops\n", 3)
    assert killed.exit_signal is not None and killed.exit_signal[0] == "TERM"
    assert stopped.exit_signal is not None and stopped.exit_signal[0] == "INT"


def test_stop_ends_every_command_thread_and_port(tmp_path: Path) -> None:
    fleet = DemoFleet(tmp_path / "demo")
    fleet.start()
    ports = list(fleet.ports.values())
    # The transport's own wrapper: the script ends up in a session of its own (setsid).
    command = remote_command(
        "echo ready; exec sleep 7331",
        shell="sh",
        cwd=None,
        token="de30",
        payload_size=len(env_payload({})),
    )

    async def scenario() -> asyncssh.SSHClientProcess[bytes]:
        async with asyncssh.connect("web1", config=[str(fleet.ssh_config)]) as conn:
            proc = await conn.create_process(command, encoding=None)
            proc.stdin.write(env_payload({}))  # the wrapper starts the script once it has them
            proc.stdin.write_eof()
            assert (await proc.stdout.readline()).startswith(b"runbook-de30 ")
            assert await proc.stdout.readline() == b"ready\n"
            wait_for(lambda: _sleepers("7331"), what="the remote sleep")
            await asyncio.to_thread(fleet.stop)  # while the client is still connected
            await asyncio.wait_for(proc.wait_closed(), 10)
            return proc

    asyncio.run(scenario())
    assert live_processes("sleep 7331") == []
    assert not [t for t in threading.enumerate() if t.name == THREAD_NAME]
    for port in ports:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    fleet.stop()  # idempotent


def test_a_fleet_that_cannot_start_says_why_and_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "not-a-directory"
    root.write_text("")
    with pytest.raises(DemoFleetError, match="could not start"):
        DemoFleet(root).start()
    assert not [t for t in threading.enumerate() if t.name == THREAD_NAME]


def _sleepers(seconds: str) -> list[int]:
    """Live processes that are exactly ``sleep SECONDS``."""
    want = f"sleep\0{seconds}\0".encode()
    found = []
    for pid in live_processes(f"sleep {seconds}"):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes() == want:
                found.append(pid)
        except OSError:
            continue
    return found


@pytest.mark.parametrize("moment", ["directory", "fleet", "run"])
def test_sigterm_leaves_no_demo_directory_behind(tmp_path: Path, moment: str) -> None:
    """Killed with SIGTERM as its directory appears, once the fleet is up, or mid-run: the
    demo's temporary directory (keys, sandboxes, ssh_config) is removed."""
    import signal
    import subprocess
    import sys

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    out = tmp_path / "out"
    with out.open("wb") as sink:
        runner = subprocess.Popen(
            [sys.executable, "-m", "runbook", "demo", "--yes", "--runs-dir", str(tmp_path / "r")],
            env={**os.environ, "TMPDIR": str(scratch)},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(lambda: ours(scratch), what="the demo's directory")
            if moment != "directory":
                wait_for(lambda: b"runbook demo: runbook " in out.read_bytes(), what="the fleet")
            if moment == "run":
                wait_for(lambda: b"deploy" in out.read_bytes().split(b"recording to")[-1],
                         what="the run to be under way")  # fmt: skip
            runner.send_signal(signal.SIGTERM)
            assert runner.wait(timeout=60) == 128 + signal.SIGTERM, out.read_text()
        finally:
            if runner.poll() is None:
                runner.kill()
    assert ours(scratch) == [], out.read_text()


def ours(scratch: Path) -> list[Path]:
    # Not what imports leave there (asyncssh's ctypes.util.find_library runs gcc).
    return list(scratch.glob("runbook-demo-*"))
