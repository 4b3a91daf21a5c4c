"""Rollouts over a real sshd fleet: canary and batches, gates, max-fail, trust, interrupt."""

from __future__ import annotations

import os
import pwd
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from conftest import events, live_processes, run_cli, signal_on_line, wait_for
from conftest import run_on_fleet as run
from runbook import launch
from runbook.engine.operator import Decision, ScriptedOperator
from runbook.record.chain import verify

HOSTS = "hosts:\n  web: [host1, host2, host3, host4, host5, host6]\n"


def book(tmp_path: Path, body: str, front: str = "") -> Path:
    path = tmp_path / "book.md"
    path.write_text(f"---\n{HOSTS}{front}---\n\n{body}")
    return path


def test_canary_then_batches_with_gates(fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = book(
        tmp_path,
        "## Roll out\n\n```sh\n#| on: web\n#| serial: 1, 50%, 100%\n"
        'echo "deployed via $SSH_CONNECTION"\n```\n',
    )
    operator = ScriptedOperator([("confirm", True), ("confirm", True)])
    done = run(fleet, path, operator)
    assert done.outcome.result == "ok", done.outcome
    assert [about for _, about in operator.asked] == [
        "roll-out-1: 1 ok. Go on with batch 2/3: host2, host3, host4?",
        "roll-out-1: 4 ok. Go on with batch 3/3: host5, host6?",
    ]
    evs = events(done.transcript)
    starts = [e["host"] for e in evs if e["type"] == "block.start"]
    assert starts[0] == "host1"
    assert sorted(starts[1:4]) == ["host2", "host3", "host4"]
    assert sorted(starts[4:]) == ["host5", "host6"]
    ends = {e["host"]: (e["attempt"], e["exit"]) for e in evs if e["type"] == "block.end"}
    assert ends == {f"host{i}": (1, 0) for i in range(1, 7)}, "attempts count per host"
    outputs = {e["host"]: e["text"] for e in evs if e["type"] == "output"}
    for i, host in enumerate(fleet.hosts, start=1):
        assert f" {host.address} {host.port}" in outputs[f"host{i}"]
    done_event = next(e for e in evs if e["type"] == "block.done")
    assert sorted(done_event["ok"]) == [f"host{i}" for i in range(1, 7)]
    assert verify(done.transcript).ok


def test_max_fail_stops_the_rollout(fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = fleet.hosts[2].address  # host3, in the second batch
    path = book(
        tmp_path,
        "## Roll out\n\n```sh\n#| on: web\n#| serial: 1, 50%\n#| max-fail: 0\n"
        f'case "$SSH_CONNECTION" in *" {bad} "*) echo broken >&2; exit 5;; esac\n```\n',
    )
    operator = ScriptedOperator([("confirm", True), ("choose", Decision("abort"))])
    done = run(fleet, path, operator)
    assert done.outcome.result == "aborted"
    assert operator.asked[-1][1].startswith("roll-out-1 failed on 1 host, more than max-fail 0")
    started = {e["host"] for e in events(done.transcript) if e["type"] == "block.start"}
    assert started == {"host1", "host2", "host3", "host4"}, "the last batch never starts"


def test_failed_hosts_can_be_retried_alone(fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    flag = tmp_path / "fixed"
    bad = fleet.hosts[1].address  # host2
    path = book(
        tmp_path,
        "## Roll out\n\n```sh\n#| on: host1, host2, host3\n"
        f'case "$SSH_CONNECTION" in *" {bad} "*) test -e {flag} || exit 1;; esac\n'
        f"touch {flag}.$(echo $SSH_CONNECTION | cut -d' ' -f3)\n```\n",
    )
    operator = _FixOnDecision([("choose", Decision("retry"))], flag)
    done = run(fleet, path, operator)
    assert done.outcome.result == "ok"
    runs = [
        (e["host"], e["attempt"]) for e in events(done.transcript) if e["type"] == "block.start"
    ]
    assert sorted(runs[:3]) == [("host1", 1), ("host2", 1), ("host3", 1)]
    assert runs[3:] == [("host2", 2)]


class _FixOnDecision(ScriptedOperator):
    """Fixes the broken host (creates the flag) when asked what to do about the failure."""

    def __init__(self, answers: list[tuple[str, Any]], flag: Path) -> None:
        super().__init__(answers)
        self.flag = flag

    async def choose(self, block, problem, choices):  # type: ignore[no-untyped-def]
        self.flag.touch()
        return await super().choose(block, problem, choices)


def test_an_unknown_host_key_declined_fails_that_host(fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    path = book(
        tmp_path, "## Go\n\n```sh\n#| on: host1\ntrue\n```\n", f"ssh:\n  known_hosts: {empty}\n"
    )
    operator = ScriptedOperator([("type", None), ("choose", Decision("abort"))])
    done = run(fleet, path, operator)
    assert empty.read_text() == ""
    end = next(e for e in events(done.transcript) if e["type"] == "block.end")
    assert "is not in known_hosts (unknown host)" in end["status"]
    assert "SHA256:" in end["status"]


def test_interrupt_stops_every_host(fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = book(
        tmp_path,
        "## Wait\n\n```sh\n#| on: host1, host2, host3\n#| timeout: 60s\nsleep 600.75\n```\n",
    )

    def interrupt() -> None:
        try:
            wait_for(lambda: len(live_processes("sleep 600.75")) >= 3, what="three remote sleeps")
        finally:  # never leave the run waiting on a sleep 600
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    operator = ScriptedOperator([("choose", Decision("abort"))])
    done = run(fleet, path, operator)
    assert done.outcome.result == "aborted"
    ends = [e for e in events(done.transcript) if e["type"] == "block.end"]
    assert len(ends) == 3 and all(e["interrupted"] for e in ends)
    assert live_processes("sleep 600.75") == []


@pytest.mark.parametrize("bake", ["", "#| bake: 10m\n"], ids=["no-bake", "bake"])
def test_a_headless_ctrl_c_between_batches_starts_no_other_batch(  # type: ignore[no-untyped-def]
    fleet, tmp_path: Path, monkeypatch, bake: str
) -> None:
    """The press comes as the canary's command returns, before the next batch (or the
    bake after it): nobody answers a headless run's batch gate, so the press ends the run
    there; no health check, no bake, no other host."""
    from runbook.engine.operator import HeadlessOperator
    from runbook.transports.ssh import SSHTransport

    original = SSHTransport.run

    async def pressed_after_the_canary(self, host, *args, **kwargs):  # type: ignore[no-untyped-def]
        status = await original(self, host, *args, **kwargs)
        if host.spec == "host1":
            os.kill(os.getpid(), signal.SIGINT)  # handled before the next bytecode
        return status

    monkeypatch.setattr(SSHTransport, "run", pressed_after_the_canary)
    health = "```sh\n#| health: true\necho HEALTH-RAN\n```\n"
    body = f"## Roll out\n\n```sh\n#| on: web\n#| serial: 1, 100%\n{bake}echo deployed\n```\n\n"
    path = book(tmp_path, body + health)
    done = run(fleet, path, HeadlessOperator(yes=True))
    assert (done.outcome.result, done.outcome.exit_code) == ("aborted", 130), done.outcome
    evs = events(done.transcript)
    assert [e.get("host") for e in evs if e["type"] == "block.start"] == ["host1"]
    canary = next(e for e in evs if e["type"] == "block.end")
    assert (canary["exit"], canary["interrupted"]) == (0, False), canary
    assert evs[-1]["message"] == "interrupted by the operator"
    assert not any(e["type"] == "bake.start" for e in evs)
    assert verify(done.transcript).complete


def test_a_ctrl_c_during_a_hosts_retry_delay_cuts_it_short(fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A host waits out its retry delay inside the rollout: a headless Ctrl-C there ends the
    run now, not ten minutes later (the wait below would time out first)."""
    path = book(
        tmp_path,
        "## Roll out\n\n```sh\n#| on: host1\n#| retries: 2\n#| retry-delay: 10m\nexit 1\n```\n",
    )
    args = ["run", str(path), "--yes", "--runs-dir", str(tmp_path / "runs")]
    args += ["--ssh-config", str(fleet.ssh_config)]
    code, out, err = signal_on_line(args, "exit 1", signal.SIGINT)  # the delay begins
    assert code == 130, out + err
    (transcript,) = (tmp_path / "runs").glob("*/transcript.jsonl")
    evs = events(transcript)
    assert [e["attempt"] for e in evs if e["type"] == "block.start"] == [1]
    assert not any(e["type"] == "decision" for e in evs)
    assert verify(transcript).complete


def test_headless_output_names_its_host(fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = book(tmp_path, "## Hi\n\n```sh\n#| on: host1, host2\necho one; echo two\n```\n")
    proc = run_cli(
        "run",
        str(path),
        "--yes",
        "--runs-dir",
        str(tmp_path / "r"),
        "--ssh-config",
        str(fleet.ssh_config),
    )
    assert proc.returncode == 0, proc.stderr
    for host in ("host1", "host2"):
        assert f"{host} | one\n{host} | two\n" in proc.stdout


def test_an_unknown_host_key_accepted_by_typing_yes(fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    known = tmp_path / "known_hosts"
    known.write_text("")
    path = book(
        tmp_path, "## Go\n\n```sh\n#| on: host4\necho in\n```\n", f"ssh:\n  known_hosts: {known}\n"
    )
    operator = ScriptedOperator([("type", "yes"), ("confirm", True)])
    done = run(fleet, path, operator)
    assert done.outcome.result == "ok"
    asked = operator.asked[0][1]
    assert "host4 presents a host key that is not in known_hosts: SHA256:" in asked
    assert operator.asked[1] == ("confirm", f"Add host4's key to {known}?")
    host = fleet.hosts[3]
    saved = known.read_text().split()
    assert saved[0] == f"[{host.address}]:{host.port}"
    assert saved[2] == host.host_key.with_suffix(".pub").read_text().split()[1]
    answer = next(
        e for e in events(done.transcript) if e["type"] == "gate.answer" and e["gate"] == "host-key"
    )
    assert (answer["answer"], answer["accepted"], answer["by"]) == ("yes", True, "operator")
    assert answer["fingerprint"].startswith("SHA256:")


def test_headless_yes_never_trusts_a_new_host_key(fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    known = tmp_path / "known_hosts"
    known.write_text("")
    path = book(
        tmp_path, "## Go\n\n```sh\n#| on: host5\ntrue\n```\n", f"ssh:\n  known_hosts: {known}\n"
    )
    proc = run_cli(
        "run",
        str(path),
        "--yes",
        "--runs-dir",
        str(tmp_path / "r"),
        "--ssh-config",
        str(fleet.ssh_config),
    )
    assert proc.returncode == 1
    assert "is not in known_hosts (unknown host)" in proc.stdout
    assert known.read_text() == ""


def test_interrupt_stops_every_host_for_a_plain_user(fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from sshd_fleet import PLAIN_USER

    hosts = ", ".join(f"{PLAIN_USER}@host{i}" for i in (4, 5, 6))
    body = f"## Wait\n\n```sh\n#| on: {hosts}\n#| timeout: 60s\nsleep 600.625\n```\n"
    path = book(tmp_path, body)
    owners: set[int] = set()

    def interrupt() -> None:
        # Only once the sleeps run: a SIGINT sent after a timed-out wait would stop pytest
        # itself; without it, the block's own 60 s timeout ends the run and the test fails.
        pids = wait_for(
            lambda: live_processes("sleep 600.625")[2:] and live_processes("sleep 600.625")
        )
        owners.update(Path(f"/proc/{pid}").stat().st_uid for pid in pids)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    done = run(fleet, path, ScriptedOperator([("choose", Decision("abort"))]))
    ends = [e for e in events(done.transcript) if e["type"] == "block.end"]
    why = [(e.get("host"), e.get("status"), e.get("exit")) for e in ends]
    assert len(ends) == 3 and all(e["interrupted"] for e in ends), why
    assert live_processes("sleep 600.625") == []
    assert owners == {pwd.getpwnam(PLAIN_USER).pw_uid}


def test_ten_megabytes_from_a_host_are_recorded_exactly(fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import base64
    import hashlib

    data = tmp_path / "random.bin"
    data.write_bytes(os.urandom(10_000_000))
    path = book(tmp_path, f"## Dump\n\n```sh\n#| on: host2\ncat {data}\n```\n")
    done = run(fleet, path, ScriptedOperator([]))
    assert done.outcome.result == "ok"
    recorded = b"".join(
        base64.b64decode(e["b64"]) if "b64" in e else e["text"].encode()
        for e in events(done.transcript)
        if e["type"] == "output" and e["host"] == "host2"
    )
    assert hashlib.sha256(recorded).digest() == hashlib.sha256(data.read_bytes()).digest()
    assert verify(done.transcript).ok


def test_an_unreachable_host_is_not_retried_by_itself(fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "ssh_config"
    config.write_text(
        fleet.ssh_config.read_text() + "Host gone\n  HostName 127.0.0.250\n  Port 9\n"
    )
    path = tmp_path / "book.md"
    path.write_text(
        "---\nhosts:\n  edge: [gone]\n---\n\n"
        "## Go\n\n```sh\n#| on: edge\n#| retries: 3\ntrue\n```\n"
    )
    done = launch.run(
        str(path),
        assignments=(),
        runs=tmp_path / "runs",
        argv=[],
        announce=lambda _: None,
        operator=ScriptedOperator([("choose", Decision("abort"))]),
        ssh_config=config,
    )
    ends = [e for e in events(done.transcript) if e["type"] == "block.end"]
    assert len(ends) == 1 and "cannot connect" in ends[0]["status"]


def test_ctrl_c_at_a_question_during_a_rollout_ends_the_run(fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The rollout gives Ctrl-C to its hosts' commands; a question it asks meanwhile (the
    next batch, a host key asked from a host's own task) still ends the run at Ctrl-C."""
    from conftest import OnPty

    known = tmp_path / "known_hosts"
    host1 = fleet.hosts[0]
    known.write_text(
        f"[{host1.address}]:{host1.port} "
        + " ".join(host1.host_key.with_suffix(".pub").read_text().split()[:2])
        + "\n"
    )
    path = book(
        tmp_path,
        "## Go\n\n```sh\n#| on: host1, host2\n#| serial: 1\necho in\n```\n",
        f"ssh:\n  known_hosts: {known}\n",
    )
    runs = tmp_path / "runs"
    args = ["run", str(path), "--runs-dir", str(runs), "--ssh-config", str(fleet.ssh_config)]
    for question in ("Go on with batch 2/2", "presents a host key that is not in known_hosts"):
        on = OnPty(args)
        if question.startswith("presents"):
            on.expect("Go on with batch 2/2")
            on.send(b"y\n")
        on.expect(question)
        on.send(b"\x03")
        assert on.wait() == 130, on.seen.decode(errors="replace")
        assert b"Traceback" not in on.seen and b"KeyboardInterrupt" not in on.seen
        transcript = max(runs.glob("*/transcript.jsonl"), key=lambda p: p.stat().st_mtime)
        end = events(transcript)[-1]
        assert (end["type"], end["result"], end["exit_code"]) == ("run.end", "aborted", 130)
        assert verify(transcript).complete
    assert len(known.read_text().splitlines()) == 1  # host2's key was not added
