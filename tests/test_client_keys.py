"""The client's keys: read once for the hosts whose config names the same files, and
offered to each host exactly as asyncssh, reading them itself, would offer them."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from runbook.format.hosts import parse_host
from runbook.transports.ssh import SSHTransport

# What asyncssh.connect(host, options=..., **given) passes when it builds its own options.
CONNECT = {"config": (), "port": (), "tunnel": (), "family": (), "local_addr": ()}


def offered(o: asyncssh.SSHClientConnectionOptions) -> list[tuple[bytes, bool]]:
    """The keys a connection offers, in order, and whether each carries a certificate."""
    return [(k.key_public_data, k.public_data != k.key_public_data) for k in o.client_keys or []]


def key_at(path: Path, pub: bool = True, kind: str = "ssh-ed25519", **how: Any) -> asyncssh.SSHKey:
    key = asyncssh.generate_private_key(kind, **how)
    key.write_private_key(path)
    if pub:
        key.write_public_key(f"{path}.pub")
    return key


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home with no key but those a test makes, and no agent."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "agent.sock"))
    (tmp_path / ".ssh").mkdir()
    return tmp_path


def connects_with(transport: SSHTransport, name: str) -> asyncssh.SSHClientConnectionOptions:
    """The options asyncssh.connect builds from what the transport gives it for ``name``."""
    options = transport.options(parse_host(name))
    given = transport._keys.for_connect(options)
    return asyncssh.SSHClientConnectionOptions(options=options, host=name, **CONNECT, **given)


@pytest.mark.parametrize(
    "only, pub, has_key, cert, extra",
    [
        ("yes", True, True, False, ""),
        ("no", True, True, False, ""),
        ("yes", False, True, False, ""),
        ("no", False, False, False, ""),  # no IdentityFile: the default files
        ("yes", True, True, True, ""),  # CertificateFile: the cert, then the plain key
        ("no", True, True, True, ""),
        ("yes", True, True, False, "CanonicalizeHostname yes\n  CanonicalDomains example.org"),
        ("yes", True, True, False, "Match final\n  User someone"),
    ],
)
def test_connect_offers_what_asyncssh_reading_the_files_itself_would(
    home: Path, only: str, pub: bool, has_key: bool, cert: bool, extra: str
) -> None:
    """Certificates and the agent identities IdentitiesOnly selects included, in order,
    for the first host and for the next one, which is given the keys already read. A
    config that connect reads again for another name keeps the files."""
    key_at(home / ".ssh" / "id_ed25519")  # a default key, offered only with no IdentityFile
    lines = ["Host *", f"  IdentitiesOnly {only}"]
    if has_key:
        path = home / "id_fleet"
        key = key_at(path, pub)
        lines.append(f"  IdentityFile {path}")
        if cert:
            ca = asyncssh.generate_private_key("ssh-ed25519")
            ca.generate_user_certificate(key, "me", principals=["me"]).write_certificate(
                home / "fleet.cert"
            )
            lines.append(f"  CertificateFile {home / 'fleet.cert'}")
    config = home / "config"
    config.write_text("\n".join(lines) + "\n" + (f"{extra}\n" if extra else ""))
    transport = SSHTransport(config=config)
    for name in ("web1", "web2"):
        fast = connects_with(transport, name)
        slow = asyncssh.SSHClientConnectionOptions(host=name, config=[str(config)])
        assert offered(fast) and offered(fast) == offered(slow)
        if cert:
            assert [c for _, c in offered(slow)] == [True, False]
        assert fast.agent_identities == slow.agent_identities
        assert fast.agent_path == slow.agent_path
    given = transport._keys.for_connect(transport.options(parse_host("web3")))
    assert ("client_certs" in given) == (not extra)  # read once, or left to connect


def test_keys_are_read_once_for_many_hosts_and_again_when_a_file_changes(home: Path) -> None:
    """A 3072-bit RSA key took 0.13 s to load, at every host: it is read for the first
    host only. A key file replaced, or a key added where asyncssh looks by default, counts
    from the next connection, as it would for ``ssh``."""
    path = home / "id_fleet"
    first = key_at(path)
    config = home / "config"
    config.write_text(f"Host web*\n  IdentityFile {path}\n  IdentitiesOnly yes\n")
    transport = SSHTransport(config=config)

    def given(name: str) -> dict[str, Any]:
        return transport._keys.for_connect(transport.options(parse_host(name)))

    one, two = given("web1"), given("web2")
    # Read once: the same private key, in a copy of its own for each connection.
    assert one["client_keys"][0]._key is two["client_keys"][0]._key
    assert one["client_keys"][0] is not two["client_keys"][0]
    second = key_at(path)  # replaced between two connections
    assert connects_with(transport, "web3").client_keys[0].public_data == second.public_data
    assert second.public_data != first.public_data
    # Rewritten in place, same size, its old modification time put back (rsync
    # --inplace -t, touch -r): only the status change time tells.
    before, before_pub = os.stat(path), os.stat(f"{path}.pub")
    third = asyncssh.generate_private_key("ssh-ed25519")
    for name, data, st in (
        (path, third.export_private_key(), before),
        (Path(f"{path}.pub"), third.export_public_key(), before_pub),
    ):
        with open(name, "r+b") as f:
            f.write(data)
            f.truncate()
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == before.st_size
    assert connects_with(transport, "web4").client_keys[0].public_data == third.public_data

    # No IdentityFile: the default files under ~/.ssh, a key added there included.
    config.write_text("Host *\n  IdentitiesOnly no\n")
    assert offered(connects_with(transport, "db1")) == []
    added = key_at(home / ".ssh" / "id_ecdsa")
    assert [k for k, _ in offered(connects_with(transport, "db2"))] == [added.public_data]


def test_a_host_with_other_key_files_gets_its_own_keys(home: Path) -> None:
    """Hosts share keys only when their configs name the same files."""
    a, b = key_at(home / "id_a"), key_at(home / "id_b")
    config = home / "config"
    config.write_text(
        f"Host web*\n  IdentityFile {home / 'id_a'}\n"
        f"Host db*\n  IdentityFile {home / 'id_b'}\n"
        "Host *\n  IdentitiesOnly yes\n"
    )
    transport = SSHTransport(config=config)
    for name, key in (("web1", a), ("db1", b), ("web2", a), ("db2", b)):
        assert offered(connects_with(transport, name)) == [(key.public_data, False)]


def test_a_config_without_known_hosts_still_offers_each_key_once(home: Path) -> None:
    """``UserKnownHostsFile none`` gets the default file (never no checking): options built
    again from options. Given the config's paths again, asyncssh appended each
    ``IdentityFile`` a second time and offered its key twice."""
    key = key_at(home / "id_fleet")
    config = home / "config"
    config.write_text(
        f"Host *\n  IdentityFile {home / 'id_fleet'}\n  IdentitiesOnly yes\n"
        "  UserKnownHostsFile none\n"
    )
    (home / ".ssh" / "known_hosts").write_text("")
    transport = SSHTransport(config=config)
    options = transport.options(parse_host("web1"))
    assert options.known_hosts == [str(home / ".ssh" / "known_hosts")]
    assert options.config.get("IdentityFile") == [str(home / "id_fleet")]
    assert offered(connects_with(transport, "web1")) == [(key.public_data, False)]


def test_a_second_config_never_leaks_in_from_home(home: Path) -> None:
    """``--ssh-config FILE``, and a ~/.ssh/config with a ``User``, a ``Port`` and a key of
    its own: options built again from options (``UserKnownHostsFile none``, a host key the
    operator accepted) said they had loaded no file, and connect read ~/.ssh/config on top
    of FILE. Only FILE counts, as for ``ssh -F FILE``."""
    fleet, personal = key_at(home / "id_fleet"), key_at(home / ".ssh" / "id_personal")
    (home / ".ssh" / "config").write_text(
        f"Host *\n  IdentityFile {home}/.ssh/id_personal\n  Port 2200\n  User personal\n"
    )
    config = home / "fleet_config"
    config.write_text(f"Host web*\n  IdentityFile {home}/id_fleet\n  UserKnownHostsFile none\n")
    transport = SSHTransport(config=config)
    transport.trust(parse_host("web2"), personal, save=False)  # any key: its line is what counts
    for name in ("web1", "web2"):
        built = connects_with(transport, name)
        assert (built.username, built.port) == ("root", 22)
        assert offered(built) == [(fleet.public_data, False)]


def test_each_connection_signs_with_what_its_own_server_takes(home: Path) -> None:
    """One RSA key for hosts of which some take only rsa-sha2-256 signatures and others
    only rsa-sha2-512: asyncssh records the choice on the key object, so sharing one
    object let a host choose for another ("Key mismatch", half the hosts, every time).
    In-process asyncssh servers on loopback."""
    key = key_at(home / "id_fleet", kind="ssh-rsa", key_size=2048)
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    trusted = asyncssh.import_authorized_keys(key.export_public_key().decode())

    async def go() -> list[str]:
        servers, lines, known = [], [], []
        for i in range(6):
            server = await asyncssh.listen(
                f"127.0.0.{i + 2}",
                0,
                server_host_keys=[host_key],
                authorized_client_keys=trusted,
                signature_algs=["rsa-sha2-256" if i % 2 else "rsa-sha2-512"],
                password_auth=False,
                kbdint_auth=False,
            )
            port = server.sockets[0].getsockname()[1]
            servers.append(server)
            known.append(f"[127.0.0.{i + 2}]:{port} {host_key.export_public_key().decode()}")
            lines.append(f"Host h{i}\n  HostName 127.0.0.{i + 2}\n  Port {port}\n")
        (home / "known_hosts").write_text("".join(known))
        config = home / "fleet_config"
        config.write_text(
            "".join(lines) + f"Host *\n  User root\n  IdentityFile {home}/id_fleet\n"
            f"  IdentitiesOnly yes\n  UserKnownHostsFile {home}/known_hosts\n"
        )
        transport = SSHTransport(config=config)

        async def one(name: str) -> str:
            try:
                await transport.connection(parse_host(name))
                return "ok"
            except Exception as e:  # the message is the assertion's
                return str(e)

        try:
            return await asyncio.gather(*(one(f"h{i}") for i in range(6)))
        finally:
            await transport.close()
            for server in servers:
                server.close()

    assert asyncio.run(go()) == ["ok"] * 6
