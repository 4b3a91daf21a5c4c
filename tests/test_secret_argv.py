"""A remote block's variables never appear on a host's command line (issue 13, item 4).

sshd runs the exec request as ``$SHELL -c REQUEST``: that string sits in the login shell's
argv, which every user of the host can read in ``ps`` or ``/proc/*/cmdline``. The values
travel on the channel's stdin instead, read by the wrapper before the script starts.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import events, require_sshd, wait_for
from runbook import launch
from runbook.engine.operator import HeadlessOperator
from runbook.format.hosts import parse_host
from runbook.transports.ssh import SSHTransport, Unconfirmed
from runbook.transports.wrapper import ENV_END, LOOP_BYTES, env_payload, remote_command

# Quotes of both kinds, newlines (a trailing one too), $, backslashes, spaces, a tab,
# non-ASCII, and the payload's own end marker: all must arrive byte for byte.
NASTY = (
    "it's \"quoted\" '' \\' \\\\ $HOME ${HOME} $(touch pwned) `touch pwned` ; & | > <\n"
    f"\tsecond line  {ENV_END}\n'{ENV_END}\n"
    "naïve café — 日本語 🎉 \\n not a newline\n\n"
)


def secret() -> str:
    return f"s3cret-{secrets.token_hex(16)}"


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def cmdlines_holding(needle: bytes) -> list[tuple[int, bytes]]:
    """Every live process whose command line holds ``needle``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile, or a kernel thread
            continue
        if needle in cmdline:
            found.append((int(entry.name), cmdline))
    return found


def book(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "book.md"
    path.write_text(
        "---\nhosts:\n  web: [host1]\nvariables:\n  TOKEN:\n    secret: true\n---\n\n"
        f"## Use the token\n\n```sh\n#| on: host1\n#| timeout: 60s\n{body}```\n"
    )
    return path


def run_book(path: Path, ssh_config: Path, token: str) -> launch.Finished:
    return launch.run(
        str(path),
        assignments=(f"TOKEN={token}",),
        runs=path.parent / "runs",
        argv=[],
        announce=lambda _: None,
        operator=HeadlessOperator(yes=True),
        ssh_config=ssh_config,
    )


def stdout_of(done: launch.Finished) -> str:
    return "".join(e["text"] for e in events(done.transcript) if e["type"] == "output")


def test_a_secret_is_on_no_command_line_while_its_block_runs(fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    token = secret()
    started, go = tmp_path / "started", tmp_path / "go"
    path = book(
        tmp_path,
        f"touch {started}\n"
        f"while [ ! -e {go} ]; do sleep 0.02; done\n"
        'printf %s "$TOKEN" | sha256sum\n',
    )
    seen: list[tuple[int, bytes]] = []
    while_waiting: list[tuple[int, bytes]] = []
    running = threading.Event()
    running.set()

    def watch() -> None:  # the whole run long: catches even a moment's exposure
        while running.is_set():
            seen.extend(cmdlines_holding(token.encode()))

    def scan_then_release() -> None:
        try:
            wait_for(started.exists, what="the block to start on host1")
            while_waiting.extend(cmdlines_holding(token.encode()))
        finally:
            go.touch()  # never leave the block waiting

    watcher = threading.Thread(target=watch, daemon=True)
    releaser = threading.Thread(target=scan_then_release, daemon=True)
    watcher.start()
    releaser.start()
    try:
        done = run_book(path, fleet.ssh_config, token)
    finally:
        running.clear()
        watcher.join()
        releaser.join()
    assert done.outcome.result == "ok", done.outcome
    assert while_waiting == [] and seen == []
    assert sha256(token) in stdout_of(done)  # the block saw the value
    assert token.encode() not in done.transcript.read_bytes()


@pytest.fixture(scope="module")
def forced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One sshd whose ForceCommand logs every exec request, then runs it as sent: the
    fleet, and the log."""

    import sshd_fleet

    require_sshd()
    root = tmp_path_factory.mktemp("forced")
    log = root / "exec-requests.log"
    script = root / "log-then-run"
    script.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$SSH_ORIGINAL_COMMAND" >> {log}\n'
        'exec sh -c "$SSH_ORIGINAL_COMMAND"\n'
    )
    script.chmod(0o755)
    fleet = sshd_fleet.start(
        root / "fleet", 1, extra_config=f"ForceCommand {script}\n", plain_user=False
    )
    yield fleet, log
    fleet.stop()


def test_the_exec_request_itself_carries_no_value(forced, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fleet, log = forced
    token = secret()
    log.write_bytes(b"")
    path = book(tmp_path, 'printf %s "$TOKEN" | sha256sum\n')
    done = run_book(path, fleet.ssh_config, token)
    assert done.outcome.result == "ok", done.outcome
    logged = log.read_bytes()
    assert b"sha256sum" in logged, "the ForceCommand saw the block's exec request"
    assert token.encode() not in logged
    assert sha256(token) in stdout_of(done)


def run_direct(fleet: Any, script: str, variables: dict[str, str]) -> tuple[Any, bytes]:
    out = bytearray()

    def sink(stream: str, chunk: bytes) -> None:
        if stream == "stdout":
            out.extend(chunk)

    async def go() -> Any:
        transport = SSHTransport(config=fleet.ssh_config)
        try:
            return await transport.run(
                parse_host("host2"), script, shell="sh", variables=variables, on_output=sink
            )
        finally:
            await transport.close()

    return asyncio.run(go()), bytes(out)


def test_values_arrive_byte_exact_many_and_empty(fleet) -> None:  # type: ignore[no-untyped-def]
    variables = {f"V{i}": f"value {i} {NASTY[: i % len(NASTY)]}" for i in range(300)}
    variables["NASTY"] = NASTY
    variables["EMPTY"] = ""
    variables["BIG"] = "x'\n" * 40_000  # 120 KB: many SSH packets, under one env string's cap
    names = list(variables)
    script = (
        "printf '%s\\0' "
        + " ".join(f'"${name}"' for name in names)
        + '\nprintf "%s\\0" "${EMPTY+set}"\nread -r line; echo "stdin: $? [$line]"\n'
    )
    status, out = run_direct(fleet, script, variables)
    assert (status.code, status.signal) == (0, None), status
    *values, empty_is_set, rest = out.split(b"\0")
    assert [v.decode() for v in values] == [variables[n] for n in names]
    assert empty_is_set == b"set"
    assert rest == b"stdin: 1 []\n", "the block's own stdin is at EOF at once, as before"


def test_no_variables_at_all(fleet) -> None:  # type: ignore[no-untyped-def]
    status, out = run_direct(fleet, "echo ran; exit 3", {})
    assert (status.code, out) == (3, b"ran\n")


def test_a_large_payload_is_read_by_cat_itself_or_not_at_all(tmp_path: Path) -> None:
    """Over LOOP_BYTES the wrapper reads with `cat`. Where sh is bash, an exported function
    named cat (bash imports those even as sh) must not rewrite the values on their way;
    without any cat on PATH the wrapper says so and runs nothing."""
    bash, setsid = shutil.which("bash"), shutil.which("setsid")
    assert bash and setsid, "bash and setsid (util-linux) are on every machine CI runs on"
    value = "naïve café 日本 " * 200  # over LOOP_BYTES; `cat -v` would spell it otherwise
    payload = env_payload({"A": value})
    assert len(payload) > LOOP_BYTES
    ran = tmp_path / "ran"
    command = remote_command(
        f'printf %s "$A" > {ran}', shell="sh", cwd=None, token="ca7", payload_size=len(payload)
    )
    as_bash = tmp_path / "bash-as-sh"
    as_bash.mkdir()
    (as_bash / "sh").symlink_to(bash)  # the wrapper's inner `sh`: bash in sh mode
    env = {
        "PATH": f"{as_bash}:{os.environ['PATH']}",
        "BASH_FUNC_cat%%": "() { command cat -v; }",
    }
    done = subprocess.run([bash, "-c", command], input=payload, capture_output=True, env=env)
    assert done.returncode == 0, done
    assert ran.read_text() == value

    ran.unlink()
    bare = tmp_path / "no-cat"
    bare.mkdir()
    for tool in ("sh", "setsid"):
        (bare / tool).symlink_to(shutil.which(tool) or tool)
    done = subprocess.run(
        ["sh", "-c", command], input=payload, capture_output=True, env={"PATH": str(bare)}
    )
    assert (done.returncode, ran.exists()) == (125, False), done
    assert b"cat could not read the variables: not run" in done.stderr, done


def test_remote_command_holds_no_value_and_run_sends_them_on_stdin(tmp_path: Path) -> None:
    token = secret()
    variables = {"TOKEN": token, "NASTY": NASTY, "EMPTY": ""}
    command = remote_command("true", shell="sh", cwd="/srv/app dir", token="0a", payload_size=1)
    sent: list[tuple[str, bytes]] = []

    async def fake_start(self: SSHTransport, host: Any, command: str, payload: bytes) -> Any:
        sent.append((command, payload))
        raise Unconfirmed("stopped by the test before anything went out")

    transport = SSHTransport()
    transport._start = fake_start.__get__(transport)  # type: ignore[method-assign]
    status = asyncio.run(
        transport.run(parse_host("host1"), "true", shell="sh", variables=variables, on_output=print)
    )
    assert status.lost
    [(command, payload)] = sent
    for value in (token, "quoted", "naïve", "pwned"):
        assert value not in command
    assert token.encode() in payload and payload.endswith(f"{ENV_END}\n".encode())
    with pytest.raises(ValueError, match="NUL"):
        env_payload({"X": "a\0b"})
    with pytest.raises(ValueError, match="not a variable name"):
        env_payload({"X;rm": "a"})


@pytest.mark.parametrize("size", [1, LOOP_BYTES + 1], ids=["read-loop", "cat"])
def test_the_wrapper_runs_nothing_on_a_payload_cut_short(tmp_path: Path, size: int) -> None:
    """Every prefix of the payload, as if the channel went away mid-way: exit 125, the
    script never runs. Only the whole payload runs it, exactly. Either way the wrapper's
    first line names its process group, which leads a session of its own. The same for
    both ways of reading it (a payload's size picks one)."""
    ran = tmp_path / "ran"
    variables = {"A": NASTY, "B": "", "C": "plain", "D": "x'y"}
    script = f'printf "%s|%s|%s|%s" "$A" "$B" "$C" "$D" > {ran}; ps -o pgid= -o sid= -p $$'
    # The local shell stands in for the login shell sshd starts.
    command = remote_command(script, shell="sh", cwd=str(tmp_path), token="7e57", payload_size=size)
    assert ("$(command cat" in command) == (size > LOOP_BYTES)
    payload = env_payload(variables)
    for cut in range(len(payload)):  # every prefix, even all but the final newline
        done = subprocess.run(["sh", "-c", command], input=payload[:cut], capture_output=True)
        assert (done.returncode, ran.exists()) == (125, False), (cut, payload[:cut], done)
        assert re.fullmatch(rb"runbook-7e57 [0-9]+\n", done.stdout), done
    # Ends with the end line, but does not evaluate: refused the same way, nothing run.
    bad = f"export A='x\nif then\n{ENV_END}\n".encode()
    done = subprocess.run(["sh", "-c", command], input=bad, capture_output=True)
    assert (done.returncode, ran.exists()) == (125, False), done
    assert b"did not arrive whole" in done.stderr, done
    done = subprocess.run(["sh", "-c", command], input=payload, capture_output=True)
    assert done.returncode == 0, done
    assert ran.read_bytes().decode() == "|".join(variables.values())
    said, group = done.stdout.decode().splitlines()
    pgid = said.split()[1]
    assert said == f"runbook-7e57 {pgid}" and group.split() == [pgid, pgid], done.stdout
