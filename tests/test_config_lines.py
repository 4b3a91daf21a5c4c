"""The operator's OpenSSH config, each line split once a process: the options every host
gets are the ones asyncssh's own split gives, an edit is seen, an error still names its
line, and a line is split only once however many hosts read it."""

from __future__ import annotations

import shlex
from pathlib import Path

import asyncssh
import asyncssh.config
import pytest
from asyncssh.config import SSHClientConfig

from runbook.transports import configlines
from runbook.transports.ssh import SSHTransport

# Lines whose split is not just whitespace: quotes, '=' in each of its places, escapes,
# comments, a Match, a no-split option, blocks that match and blocks that do not.
CONFIG = """# the operator's config
Host "web 1" web-*  !web-9
    User=deploy
    Port = 2201
    IdentityFile "~/.ssh/id with space"
    SendEnv LANG LC_\\*
    RemoteCommand echo "a  b" 'c'  # not a comment for ssh
Host db-?
    HostName %h.internal
    User    'dba'
    ServerAliveInterval=15
Match host web-3 user deploy
    ProxyJump jump@bastion:2022
Host *
    Port 22
    ConnectTimeout 7
"""


def load(path: Path, host: str, user: object = ()) -> dict[str, object]:
    """The options the config gives ``host`` (``()``: no user given, the config's)."""
    config = SSHClientConfig.load(None, [str(path)], False, False, False, "me", user, host, ())
    return dict(config._options)


def test_the_transport_installs_the_stand_in_once() -> None:
    SSHTransport()
    installed = asyncssh.config.shlex
    assert installed is not shlex
    SSHTransport()
    assert asyncssh.config.shlex is installed


@pytest.mark.parametrize("host", ["web 1", "web-3", "web-9", "db-1", "other"])
def test_every_host_gets_what_asyncssh_split_gives(tmp_path: Path, host: str) -> None:
    path = tmp_path / "config"
    path.write_text(CONFIG)
    SSHTransport()
    ours = [load(path, host, user) for user in ((), "deploy")]
    kept = asyncssh.config.shlex
    asyncssh.config.shlex = shlex  # type: ignore[attr-defined]
    try:
        theirs = [load(path, host, user) for user in ((), "deploy")]
    finally:
        asyncssh.config.shlex = kept  # type: ignore[attr-defined]
    assert ours == theirs
    assert ours[0]["Port"] == (2201 if host in ("web 1", "web-3") else 22)


def test_each_line_is_split_once_for_all_hosts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config"
    path.write_text(CONFIG)
    SSHTransport()
    configlines._split.cache_clear()
    calls: list[str] = []
    real = shlex.split

    def counted(s: str) -> list[str]:
        calls.append(s)
        return real(s)

    monkeypatch.setattr(shlex, "split", counted)
    load(path, "web-3")
    lines = [ln.strip() for ln in CONFIG.splitlines() if ln.strip() and ln.strip()[0] != "#"]
    assert sorted(calls) == sorted(set(lines))
    calls.clear()
    for host in ("web-4", "db-2", "other"):
        load(path, host)
    assert calls == []


def test_an_edit_between_two_hosts_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("Host *\n  Port 2201\n")
    SSHTransport()
    assert load(path, "a")["Port"] == 2201
    path.write_text("Host *\n  Port 2202\n")
    assert load(path, "b")["Port"] == 2202


def test_a_line_that_cannot_be_split_names_its_line_every_time(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text('Host *\n  User "unterminated\n')
    SSHTransport()
    for host in ("a", "b"):
        with pytest.raises(asyncssh.ConfigParseError, match=rf"{path} line 2"):
            load(path, host)


def test_a_call_with_options_gets_shlex_itself() -> None:
    SSHTransport()
    split = asyncssh.config.shlex.split  # type: ignore[attr-defined]
    assert split("a # b", comments=True) == ["a"]
    assert split("a # b") == ["a", "#", "b"]
    assert asyncssh.config.shlex.quote("a b") == "'a b'"  # type: ignore[attr-defined]
