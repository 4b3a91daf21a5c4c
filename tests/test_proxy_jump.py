"""ProxyJump and ProxyCommand: the hops are read from the run's config and checked like any host."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from conftest import run_on, wait_for
from runbook.format.hosts import parse_host
from runbook.transports.problems import HostKeyRefused, SSHProblem
from runbook.transports.ssh import SSHTransport


def logins(fleet, alias: str) -> int:  # type: ignore[no-untyped-def]
    """How many logins the host's sshd accepted so far."""
    return (fleet.root / f"sshd_{alias}.log").read_text().count("Accepted publickey")


def jumping(fleet, home: Path, **jumps: str) -> str:  # type: ignore[no-untyped-def]
    """The fleet's config, each ``alias=hops`` given a ``ProxyJump hops``."""
    text = fleet.ssh_config.read_text()
    for alias, hops in jumps.items():
        text = text.replace(f"Host {alias}\n", f"Host {alias}\n  ProxyJump {hops}\n")
    return text


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home whose ~/.ssh holds nothing: no config, no known_hosts, no key."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    return tmp_path


def test_hops_are_read_from_the_runs_config_as_ssh_f_does(fleet, home: Path) -> None:  # type: ignore[no-untyped-def]
    """``--ssh-config FILE`` names the hop by an alias only that file defines: asyncssh,
    left to dial it, looked it up in ~/.ssh/config ("Name or service not known"). A chain
    (``host1,host3``) and a hop with a hop of its own go the same way; closing the host's
    connection closes its hops."""
    config = home / "fleet_config"
    config.write_text(jumping(fleet, home, host2="host1", host4="host1,host3", host3="host5"))
    before = {alias: logins(fleet, alias) for alias in ("host1", "host3", "host5")}
    status, out = run_on(SSHTransport(config=config), "host2", "echo through", variables={})
    assert (status.code, bytes(out["stdout"])) == (0, b"through\n")
    assert logins(fleet, "host1") == before["host1"] + 1
    status, out = run_on(SSHTransport(config=config), "host4", "echo chained", variables={})
    assert (status.code, bytes(out["stdout"])) == (0, b"chained\n")
    after = {alias: logins(fleet, alias) for alias in ("host1", "host3", "host5")}
    # host4 through host1, then host3, whose own hop is host5 (but host3 is reached
    # through host1 here, as ssh does: a chain's later hops go through the earlier ones).
    assert after == {
        "host1": before["host1"] + 2,
        "host3": before["host3"] + 1,
        "host5": before["host5"],
    }
    log = fleet.root / "sshd_host1.log"
    closed = re.compile(r"Disconnected from user|Received disconnect")
    wait_for(lambda: len(closed.findall(log.read_text())) >= 2, 10, "host1's sessions to close")


def test_a_hops_host_key_is_checked_even_where_the_config_says_none(fleet, home: Path) -> None:  # type: ignore[no-untyped-def]
    """~/.ssh/config's hop says ``UserKnownHostsFile none``: asyncssh, dialling it itself,
    checked no key at all. As for any host, the default file counts instead (empty here),
    so the hop is refused before it is logged into, and the message names it."""
    text = jumping(fleet, home, host2="host1").replace(
        "Host host1\n", "Host host1\n  UserKnownHostsFile none\n"
    )
    (home / ".ssh" / "config").write_text(text)
    before = logins(fleet, "host1"), logins(fleet, "host2")
    with pytest.raises(SSHProblem) as refused:
        run_on(SSHTransport(), "host2", "echo never", variables={})
    assert refused.value.kind == "host-key-jump"
    assert "ProxyJump" in str(refused.value) and "host1" in str(refused.value)
    assert (logins(fleet, "host1"), logins(fleet, "host2")) == before


def test_a_hop_that_cannot_be_reached_or_loops_is_named(fleet, home: Path) -> None:  # type: ignore[no-untyped-def]
    """A dead hop says which hop; hops that name each other end with a message, not a
    recursion error or a hang."""
    config = home / "fleet_config"
    config.write_text(jumping(fleet, home, host2="root@127.0.0.1:1"))
    with pytest.raises(SSHProblem, match=r"host2: ProxyJump root@127\.0\.0\.1:1: ") as dead:
        run_on(SSHTransport(config=config), "host2", "true", variables={})
    assert dead.value.kind == "unreachable"
    config.write_text(jumping(fleet, home, host2="host1", host1="host2"))
    with pytest.raises(SSHProblem, match="more than 8 ProxyJump hops"):
        run_on(SSHTransport(config=config), "host2", "true", variables={})


RELAY = """import selectors, socket, sys
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])))
sel = selectors.DefaultSelector()
sel.register(sys.stdin.buffer, selectors.EVENT_READ)
sel.register(sock, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        if key.fileobj is sock:
            data = sock.recv(65536)
            if not data:
                sys.exit(0)
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            data = sys.stdin.buffer.read1(65536)
            if not data:
                sock.shutdown(socket.SHUT_WR)
                sel.unregister(sys.stdin.buffer)
            else:
                sock.sendall(data)
"""


def test_an_unknown_key_behind_a_proxycommand_is_read_through_it(fleet, home: Path) -> None:  # type: ignore[no-untyped-def]
    """A host reached only through its ``ProxyCommand`` (its HostName resolves nowhere)
    whose key is not yet known: the key the operator is asked about is read the way the
    refused connection went, through the run's config. Before, it was read with none of
    the host's options, and from ~/.ssh/config: "cannot read its host key", or read
    through whatever ProxyCommand the operator's own config had. Once accepted, the run
    connects through the ProxyCommand."""
    relay = home / "relay.py"
    relay.write_text(RELAY)
    target = fleet.hosts[1]
    empty = home / "known_hosts"
    empty.write_text("")
    text = fleet.ssh_config.read_text().replace(
        f"Host host2\n  HostName {target.address}\n",
        f"Host host2\n  HostName nowhere.invalid\n"
        f"  ProxyCommand {sys.executable} {relay} {target.address} {target.port}\n",
    )
    text = text.replace(f"UserKnownHostsFile {fleet.known_hosts}", f"UserKnownHostsFile {empty}")
    config = home / "fleet_config"
    config.write_text(text)
    (home / ".ssh" / "config").write_text("Host *\n  ProxyCommand /bin/false\n")
    transport = SSHTransport(config=config)
    with pytest.raises(HostKeyRefused) as refused:
        run_on(transport, "host2", "true", variables={})
    assert refused.value.kind == "host-key-unknown"
    public = target.host_key.with_suffix(".pub").read_text().split()
    assert refused.value.key.export_public_key().split()[1].decode() == public[1]
    transport.trust(parse_host("host2"), refused.value.key, save=False)
    status, out = run_on(transport, "host2", "echo through", variables={})
    assert (status.code, bytes(out["stdout"])) == (0, b"through\n")


def test_a_hop_only_a_match_final_block_names_is_checked_too(fleet, home: Path) -> None:  # type: ignore[no-untyped-def]
    """``connect`` evaluates a config with a ``Match final`` block again just before it
    dials: a ``ProxyJump`` that only that block sets was dialled by asyncssh itself, under
    the hop's own ``UserKnownHostsFile none``, with no key checked. It is dialled by
    runbook now, as every hop is, and refused (the default file is empty here)."""
    hop, target = fleet.hosts[0], fleet.hosts[1]
    text = fleet.ssh_config.read_text().replace(
        f"Host host1\n  HostName {hop.address}\n",
        f"Host host1\n  HostName {hop.address}\n  UserKnownHostsFile none\n",
    )
    config = home / "fleet_config"
    config.write_text(text + f"Match final host {target.address}\n  ProxyJump host1\n")
    before = logins(fleet, "host1"), logins(fleet, "host2")
    with pytest.raises(SSHProblem) as refused:
        run_on(SSHTransport(config=config), "host2", "echo never", variables={})
    assert refused.value.kind == "host-key-jump" and "host1" in str(refused.value)
    assert (logins(fleet, "host1"), logins(fleet, "host2")) == before


def test_the_specs_port_holds_under_a_match_final_block(fleet, home: Path) -> None:  # type: ignore[no-untyped-def]
    """``ADDRESS:PORT`` in the runbook is ``ssh -p``: it wins over the config. With a
    ``Match final`` block anywhere in the config, ``connect`` evaluated it again without
    the port and dialled port 22."""
    target = fleet.hosts[1]
    text = fleet.ssh_config.read_text().replace(
        f"Host host2\n  HostName {target.address}\n  Port {target.port}\n",
        f"Host {target.address}\n",
    )
    config = home / "fleet_config"
    config.write_text(text + "Match final host nothing.invalid\n  User nobody\n")
    spec = f"{target.address}:{target.port}"
    status, out = run_on(SSHTransport(config=config), spec, "echo here", variables={})
    assert (status.code, bytes(out["stdout"])) == (0, b"here\n")


def test_a_bad_value_in_a_match_final_block_is_the_hosts_config_problem(fleet, home: Path) -> None:  # type: ignore[no-untyped-def]
    """A ``Match final`` block is only evaluated as the host is dialled: a value there
    that is not SSH's was a ``ConfigParseError`` (a ``ValueError``) out of the run, a
    traceback. It is the host's recorded failure, naming the file and line."""
    config = home / "fleet_config"
    text = fleet.ssh_config.read_text() + "Match final\n  ConnectTimeout soon\n"
    config.write_text(text)
    with pytest.raises(SSHProblem) as bad:
        run_on(SSHTransport(config=config), "host2", "echo never", variables={})
    line = text.count("\n")
    assert bad.value.kind == "config"
    assert f"{config} line {line}" in str(bad.value) and "ConnectTimeout" in str(bad.value)


def test_a_hop_only_the_canonical_name_has_is_never_dialled_unchecked(fleet, home: Path) -> None:  # type: ignore[no-untyped-def]
    """``CanonicalizeHostname``: asyncssh resolves the canonical name inside ``connect``
    and evaluates the config again for it; a ``ProxyJump`` that only that name's block
    sets was dialled by asyncssh itself, under the hop's ``UserKnownHostsFile none``: no
    key checked. runbook does not follow it (the host is dialled directly, its key
    checked as always), and the hop is never logged into. ``127.0.0`` canonicalizes to
    the target's address through the domain ``3``, with no DNS."""
    hop, target = fleet.hosts[0], fleet.hosts[1]
    text = fleet.ssh_config.read_text()
    block = text.split("Host host2\n", 1)[1].split("\n\n", 1)[0].splitlines()
    settings = "".join(
        f"{line}\n" for line in block if "HostName" not in line and "Port" not in line
    )
    text = text.replace(
        f"Host host1\n  HostName {hop.address}\n",
        f"Host host1\n  HostName {hop.address}\n  UserKnownHostsFile none\n",
    )
    prefix, _, last = target.address.rpartition(".")
    text += (
        f"Host {prefix}\n  CanonicalizeHostname yes\n  CanonicalDomains {last}\n"
        f"  CanonicalizeMaxDots 3\n{settings}\n"
        f"Host {target.address}\n  Port {target.port}\n{settings}  ProxyJump host1\n"
    )
    config = home / "fleet_config"
    config.write_text(text)
    before = logins(fleet, "host1")
    status, out = run_on(SSHTransport(config=config), prefix, "echo direct", variables={})
    assert (status.code, bytes(out["stdout"])) == (0, b"direct\n")
    assert logins(fleet, "host1") == before


def test_a_known_hosts_line_that_cannot_be_parsed_leaves_every_other_line_checked(
    fleet, home: Path
) -> None:  # type: ignore[no-untyped-def]
    """One line asyncssh cannot parse made runbook leave the files to ``connect``, which,
    evaluating a ``Match final`` block, took its ``UserKnownHostsFile none``: the host
    was logged into and ran the command with no key checked. As ``ssh`` does, the bad
    line is skipped and the others count: host2's key is not among them, so it is
    unknown, and host1's, which is, still lets host1 in."""
    hop = fleet.hosts[0]
    known = home / "known_hosts"
    lines = fleet.known_hosts.read_text().splitlines(keepends=True)
    known.write_text("junk-line\n" + "".join(ln for ln in lines if f"[{hop.address}]" in ln))
    text = fleet.ssh_config.read_text().replace(
        f"UserKnownHostsFile {fleet.known_hosts}", f"UserKnownHostsFile {known}"
    )
    config = home / "fleet_config"
    config.write_text("Match final originalhost host2\n  UserKnownHostsFile none\n" + text)
    before = logins(fleet, "host2")
    with pytest.raises(HostKeyRefused) as refused:
        run_on(SSHTransport(config=config), "host2", "echo unchecked", variables={})
    assert refused.value.kind == "host-key-unknown"
    assert logins(fleet, "host2") == before
    status, _ = run_on(SSHTransport(config=config), "host1", "true", variables={})
    assert status.code == 0


def test_a_proxyjump_the_first_pass_set_is_kept_over_a_match_final_one(fleet, home: Path) -> None:  # type: ignore[no-untyped-def]
    """As ``ssh`` keeps the first value it obtained, a ``ProxyJump`` that the host's own
    block sets holds, whatever a ``Match final`` block earlier in the file says (asyncssh
    evaluates the file afresh for it, so there the earlier block would win): the bastion
    is never bypassed."""
    config = home / "fleet_config"
    config.write_text(
        "Match final originalhost host2\n  ProxyJump none\n" + jumping(fleet, home, host2="host1")
    )
    before = logins(fleet, "host1")
    status, out = run_on(SSHTransport(config=config), "host2", "echo through", variables={})
    assert (status.code, bytes(out["stdout"])) == (0, b"through\n")
    assert logins(fleet, "host1") == before + 1


def test_a_key_accepted_beside_a_known_hosts_line_that_cannot_be_parsed_lets_the_host_in(
    fleet, home: Path
) -> None:  # type: ignore[no-untyped-def]
    """The files plus the accepted key are read as ``ssh`` reads them too: the bad line
    no longer fails the host as "its SSH config" once the operator has said yes."""
    known = home / "known_hosts"
    known.write_text("junk-line\n")
    text = fleet.ssh_config.read_text().replace(
        f"UserKnownHostsFile {fleet.known_hosts}", f"UserKnownHostsFile {known}"
    )
    config = home / "fleet_config"
    config.write_text(text)
    transport = SSHTransport(config=config)
    with pytest.raises(HostKeyRefused) as refused:
        run_on(transport, "host2", "true", variables={})
    transport.trust(parse_host("host2"), refused.value.key, save=False)
    status, out = run_on(transport, "host2", "echo in", variables={})
    assert (status.code, bytes(out["stdout"])) == (0, b"in\n")
