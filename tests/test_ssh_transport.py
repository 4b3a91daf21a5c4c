"""The SSH transport against real OpenSSH sshd processes on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
from pathlib import Path

import pytest

from conftest import live_processes, run_on, wait_gone
from runbook.format.hosts import parse_host
from runbook.format.model import SSHDefaults
from runbook.transports.ssh import HostKeyRefused, SSHProblem, SSHTransport


def test_exit_status_and_streams(fleet) -> None:  # type: ignore[no-untyped-def]
    transport = SSHTransport(config=fleet.ssh_config)
    status, out = run_on(transport, "host1", "echo out; echo err >&2; exit 7", variables={})
    assert (status.code, status.signal) == (7, None)
    assert out["stdout"] == b"out\n" and out["stderr"] == b"err\n"


def test_ten_megabytes_of_random_bytes_arrive_exactly(fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "random.bin"
    data.write_bytes(__import__("os").urandom(10_000_000))
    transport = SSHTransport(config=fleet.ssh_config)
    status, out = run_on(transport, "host2", f"cat {data}", variables={})
    assert status.code == 0
    assert hashlib.sha256(out["stdout"]).digest() == hashlib.sha256(data.read_bytes()).digest()


def test_variables_arrive_unchanged_and_uninterpreted(fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pwned = tmp_path / "pwned"
    value = f'it\'s "quoted" $(touch {pwned}) `touch {pwned}` ; touch {pwned}\nsecond line'
    transport = SSHTransport(config=fleet.ssh_config)
    status, out = run_on(transport, "host3", 'printf "%s" "$V"', variables={"V": value})
    assert status.code == 0
    assert out["stdout"].decode() == value
    assert not pwned.exists()


def test_timeout_stops_the_remote_process_group(fleet) -> None:  # type: ignore[no-untyped-def]
    transport = SSHTransport(config=fleet.ssh_config, grace=1.0)
    status, _ = run_on(
        transport, "host1", "trap '' INT; sleep 600.25 & sleep 600.25", variables={}, timeout=1.0
    )
    assert status.timed_out
    assert live_processes("sleep 600.25") == []


def test_an_unknown_host_key_is_refused_with_its_fingerprint(fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    transport = SSHTransport(config=fleet.ssh_config, defaults=SSHDefaults(known_hosts=str(empty)))
    with pytest.raises(HostKeyRefused) as refused:
        run_on(transport, "host1", "true", variables={})
    expected = subprocess.run(
        ["ssh-keygen", "-lf", str(fleet.hosts[0].host_key.with_suffix(".pub"))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[1]
    assert refused.value.kind == "host-key-unknown"
    assert refused.value.seen == expected
    assert "not in known_hosts" in str(refused.value)


def test_a_changed_host_key_is_refused_naming_both_fingerprints(fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    host = fleet.hosts[1]
    wrong = tmp_path / "known_hosts"
    public = other.with_suffix(".pub").read_text().split()
    wrong.write_text(f"[{host.address}]:{host.port} {public[0]} {public[1]}\n")
    transport = SSHTransport(config=fleet.ssh_config, defaults=SSHDefaults(known_hosts=str(wrong)))
    with pytest.raises(HostKeyRefused) as refused:
        run_on(transport, "host2", "true", variables={})
    assert refused.value.kind == "host-key-changed"
    assert "HOST KEY CHANGED" in str(refused.value)
    assert len(refused.value.expected) == 1 and refused.value.expected[0] != refused.value.seen


def test_an_unreachable_host(fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "ssh_config"
    config.write_text(
        fleet.ssh_config.read_text() + "Host nowhere\n  HostName 127.0.0.250\n  Port 9\n"
    )
    transport = SSHTransport(config=config, connect_timeout=3)
    with pytest.raises(SSHProblem) as problem:
        run_on(transport, "nowhere", "true", variables={})
    assert problem.value.kind == "unreachable"
    assert "cannot connect" in str(problem.value)


def test_a_changed_key_in_the_default_known_hosts_is_never_offered_as_new(
    fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """No UserKnownHostsFile anywhere: asyncssh reads ~/.ssh/known_hosts, and so must we."""
    host = fleet.hosts[2]
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    public = other.with_suffix(".pub").read_text().split()
    (home / ".ssh" / "known_hosts").write_text(f"{host.address} {public[0]} {public[1]}\n")
    monkeypatch.setenv("HOME", str(home))
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host plain\n  HostName localhost-ip\n  Port {host.port}\n  User {fleet.user}\n"
        f"  IdentityFile {fleet.client_key}\n  IdentitiesOnly yes\n".replace(
            "localhost-ip", host.address
        )
    )
    known = home / ".ssh" / "known_hosts"
    known.write_text(f"[{host.address}]:{host.port} {public[0]} {public[1]}\n")
    transport = SSHTransport(config=config)
    with pytest.raises(HostKeyRefused) as refused:
        run_on(transport, "plain", "true", variables={})
    assert refused.value.kind == "host-key-changed"
    assert refused.value.key is None, "a changed key is never offered for acceptance"


def test_a_key_revoked_for_its_port_is_refused_as_revoked_never_offered(
    fleet, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """``@revoked [host]:port KEY`` as the host's only line: asyncssh's match() looks again
    without the port and drops what it found revoked, so the key seemed unknown and was
    offered for acceptance."""
    host = fleet.hosts[2]
    public = host.host_key.with_suffix(".pub").read_text().split()
    known = tmp_path / "known_hosts"
    known.write_text(f"@revoked [{host.address}]:{host.port} {public[0]} {public[1]}\n")
    transport = SSHTransport(config=fleet.ssh_config, defaults=SSHDefaults(known_hosts=str(known)))
    with pytest.raises(HostKeyRefused) as refused:
        run_on(transport, "host3", "true", variables={})
    assert refused.value.kind == "host-key-revoked", refused.value
    assert refused.value.key is None, "a revoked key is never offered for acceptance"


def test_a_background_job_neither_holds_the_block_nor_outlives_it(fleet) -> None:  # type: ignore[no-untyped-def]
    transport = SSHTransport(config=fleet.ssh_config, grace=1.0)
    status, out = run_on(transport, "host1", "sleep 601.5 & echo started", variables={})
    assert status.code == 0 and out["stdout"] == b"started\n"
    assert status.duration < 10
    assert wait_gone("sleep 601.5")


def test_a_stop_before_the_wrapper_said_its_group_still_stops_it(fleet) -> None:  # type: ignore[no-untyped-def]
    """The process group comes on the wrapper's first line of stdout; a timeout that fires
    before that line has arrived waits for it, then stops the group. The line itself is
    never output, and no file is left on the host (there was a pid file before)."""
    import glob

    before = set(glob.glob("/tmp/.runbook-*"))
    transport = SSHTransport(config=fleet.ssh_config, grace=2.0)
    status, out = run_on(transport, "host2", "echo one; sleep 602.5", variables={}, timeout=0.001)
    assert status.timed_out, status
    assert out["stdout"] in (b"", b"one\n") and b"runbook-" not in out["stdout"], out
    assert wait_gone("sleep 602.5")
    status, out = run_on(transport, "host2", "echo two", variables={})
    assert (status.code, bytes(out["stdout"])) == (0, b"two\n")
    assert set(glob.glob("/tmp/.runbook-*")) <= before


def test_known_hosts_are_parsed_once_a_run_and_still_checked(
    fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """asyncssh given paths parses known_hosts at every connection, N x N keys on a fleet;
    the transport parses the files once while they stay the same. The parsed copy must
    check as the files do: a host missing from them is refused, a key added or taken out
    while the run goes on counts at the next connection, a key the operator accepts too."""
    import asyncssh

    missing = fleet.hosts[-1]
    known = tmp_path / "known_hosts"
    known.write_text(
        "".join(
            line
            for line in fleet.known_hosts.read_text().splitlines(keepends=True)
            if f"[{missing.address}]" not in line
        )
    )
    parsed: list[object] = []
    real = asyncssh.SSHKnownHosts.load

    def counting(self, data):  # type: ignore[no-untyped-def]
        parsed.append(data)
        return real(self, data)

    monkeypatch.setattr(asyncssh.SSHKnownHosts, "load", counting)
    transport = SSHTransport(config=fleet.ssh_config, defaults=SSHDefaults(known_hosts=str(known)))
    aliases = [f"host{i + 1}" for i in range(len(fleet.hosts))]

    async def every_host() -> list[object]:
        try:
            return list(
                await asyncio.gather(
                    *(
                        transport.run(
                            parse_host(alias),
                            "echo ok",
                            shell="sh",
                            variables={},
                            on_output=lambda *_: None,
                        )
                        for alias in aliases
                    ),
                    return_exceptions=True,
                )
            )
        finally:
            await transport.close()

    results = asyncio.run(every_host())
    assert all(getattr(r, "code", None) == 0 for r in results[:-1]), results
    assert isinstance(results[-1], HostKeyRefused) and results[-1].kind == "host-key-unknown"
    # One parse for the run (not one a host), and one more where the refusal reads the
    # file afresh to say what it holds for that host.
    assert len(aliases) >= 3 and len(parsed) == 2, parsed

    # The file changes while the run goes on: the next connections read it again.
    everyone = fleet.known_hosts.read_text()
    known.write_text(everyone)  # the missing host's key is added (say, by an earlier block)
    status, _ = run_on(transport, aliases[-1], "true", variables={})
    assert status.code == 0
    known.write_text(everyone.replace(f"[{fleet.hosts[0].address}]", "[192.0.2.1]"))
    with pytest.raises(HostKeyRefused) as gone:  # and host1's is taken out
        run_on(transport, aliases[0], "true", variables={})
    assert gone.value.kind == "host-key-unknown"
    # The operator accepts a key: the run's next connection trusts it.
    transport.trust(parse_host(aliases[0]), gone.value.key, save=False)
    status, _ = run_on(transport, aliases[0], "true", variables={})
    assert status.code == 0


@pytest.fixture
def own_config(fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The fleet's entries in the operator's own ~/.ssh/config (no ``--ssh-config``), in a
    home whose ~/.ssh has a default key the fleet does not accept, and no known_hosts."""
    import asyncssh

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "agent.sock"))
    (tmp_path / ".ssh").mkdir()
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(tmp_path / ".ssh" / "id_ed25519")
    config = tmp_path / ".ssh" / "config"
    config.write_text(fleet.ssh_config.read_text())
    return config


def test_the_operators_own_config_cannot_turn_host_key_checks_off(fleet, own_config: Path) -> None:  # type: ignore[no-untyped-def]
    """``UserKnownHostsFile none`` in ~/.ssh/config: options built without naming the
    config read none of it, and connect, reading it last, checked no key at all. Now the
    default file counts, as with ``--ssh-config``: no file yet, so the key is unknown."""
    text = own_config.read_text().replace("Host host1\n", "Host host1\n  UserKnownHostsFile none\n")
    own_config.write_text(text)
    log = fleet.root / "sshd_host1.log"
    before = log.read_text().count("Accepted publickey")
    with pytest.raises(HostKeyRefused) as refused:
        run_on(SSHTransport(), "host1", "true", variables={})
    assert refused.value.kind == "host-key-unknown"
    assert log.read_text().count("Accepted publickey") == before


def test_the_operators_own_config_chooses_the_key(fleet, own_config: Path) -> None:  # type: ignore[no-untyped-def]
    """Its ``IdentityFile`` with ``IdentitiesOnly yes``: the default key read without the
    config used to be handed to connect instead, and the login failed."""
    status, out = run_on(SSHTransport(), "host2", "echo in", variables={})
    assert (status.code, bytes(out["stdout"])) == (0, b"in\n")


@pytest.mark.parametrize("where", ["ssh-config", "home"])
def test_a_config_evaluated_again_keeps_the_hosts_settings(
    fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:  # type: ignore[no-untyped-def]
    """``CanonicalizeHostname`` and ``Match final`` make connect evaluate the config again,
    for the canonical name: given options and no file, it kept nothing of the config and
    dialled port 22 as the local user. And an ``IdentityFile`` given only under ``Match
    final`` was never offered. (No DNS here: the canonical name is resolved in-process.)"""
    import asyncio
    import socket

    real = asyncio.base_events.BaseEventLoop.getaddrinfo

    async def resolve(self, host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host == "host2.corp":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, host, (fleet.hosts[1].address, port))]
        return await real(self, host, port, *args, **kwargs)

    monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "getaddrinfo", resolve)
    monkeypatch.setenv("HOME", str(tmp_path))
    text = fleet.ssh_config.read_text()
    key = f"  IdentityFile {fleet.client_key}\n"
    canonical = "CanonicalizeHostname yes\nCanonicalDomains corp\n" + text.replace(
        "Host host2\n", "Host host2 host2.corp\n"
    )
    final = text.replace(key, "") + f"Match final\n{key}"
    for config in (canonical, final):
        path = tmp_path / ".ssh" / "config" if where == "home" else tmp_path / "fleet_config"
        path.parent.mkdir(exist_ok=True)
        path.write_text(config)
        transport = SSHTransport(config=None if where == "home" else path)
        status, out = run_on(transport, "host2", "echo $USER", variables={})
        assert (status.code, bytes(out["stdout"])) == (0, f"{fleet.user}\n".encode())


@pytest.mark.parametrize("case", ["global-default-revokes", "user-default-revokes", "known_hosts2"])
def test_every_known_hosts_file_ssh_reads_is_read(
    fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:  # type: ignore[no-untyped-def]
    """As ``ssh`` does, the user's files and the global ones, the defaults of each where the
    config names none. asyncssh alone never read /etc/ssh/ssh_known_hosts, and read only
    the global file where a config named ``GlobalKnownHostsFile`` alone: a key ``@revoked``
    there was taken, and a key trusted only in ~/.ssh/known_hosts2 refused. (The global
    default is a file here instead of /etc/ssh/ssh_known_hosts.)"""
    import runbook.transports.knownhosts as knownhosts

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    host_global = tmp_path / "ssh_known_hosts"
    monkeypatch.setattr(knownhosts, "GLOBAL_KNOWN_HOSTS", (str(host_global),))
    line = next(
        x for x in fleet.known_hosts.read_text().splitlines() if fleet.hosts[0].address in x
    )
    text = fleet.ssh_config.read_text()
    config = tmp_path / "fleet_config"
    if case == "global-default-revokes":
        host_global.write_text(f"@revoked {line}\n")
        config.write_text(text)  # the fleet's UserKnownHostsFile trusts host1
    elif case == "user-default-revokes":
        (tmp_path / ".ssh" / "known_hosts").write_text(f"@revoked {line}\n")
        config.write_text(text.replace("UserKnownHostsFile", "GlobalKnownHostsFile"))
    else:
        (tmp_path / ".ssh" / "known_hosts2").write_text(f"{line}\n")
        config.write_text(text.replace(f"  UserKnownHostsFile {fleet.known_hosts}\n", ""))
    transport = SSHTransport(config=config)
    if case == "known_hosts2":
        status, _ = run_on(transport, "host1", "true", variables={})
        assert status.code == 0
        # An accepted key is saved where ssh saves it: the first user file, never a global one.
        assert transport.known_hosts_file(parse_host("host1")) == tmp_path / ".ssh" / "known_hosts"
        return
    with pytest.raises(HostKeyRefused) as refused:
        run_on(transport, "host1", "true", variables={})
    assert refused.value.kind == "host-key-revoked"
