"""The remote wrapper: the command line sent to sshd, the variables it reads on stdin, and
the line it says first, which names the process group a timeout or an interrupt stops.

Nothing here imports asyncssh: the wrapper is plain POSIX sh, run by the login shell sshd
starts (the demo's in-process servers run it with the local ``sh``).
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
from collections.abc import Mapping

from runbook.format.values import IDENTIFIER

# What follows ``runbook-TOKEN `` in the line, and what may still follow it at the end of a
# chunk: compiled once, not per host (a pattern holding the token cost 0.1 ms a command).
_GROUP = re.compile(rb"([0-9]{1,19})\r?\n")
_GROUP_SO_FAR = re.compile(rb"[0-9]{0,19}\r?")

ENV_END = "# runbook-env-end"
"""The payload's last line. Outside quotes, ``#`` can only be this line (``shlex.quote``
always quotes a value holding one), so a payload that ends with it outside quotes is whole."""


LOOP_BYTES = 2048
"""Up to this many bytes of payload the wrapper reads its variables with the shell's own
``read`` (no process); a larger payload with ``cat``, one process (about 2 ms of a host's
CPU, the break-even). ``read`` takes a byte a system call, and the loop copies all it has
read on every line: 100 KB on one line cost 84 ms against ``cat``'s 10 ms, 40,000 lines
11.3 s against 22 ms (``bench/payload_cost.py``)."""


def new_token() -> str:
    """A command's token, which no startup file or command can know in advance: 64 random
    bits. The wrapper gets it as ``$0``; its first line is ``runbook-TOKEN PGID``."""
    return os.urandom(8).hex()


def env_payload(variables: Mapping[str, str]) -> bytes:
    """What the wrapper reads on stdin: one quoted ``export NAME='value'`` line per
    variable, then ``ENV_END``. The values never appear on any command line."""
    bad = [name for name in variables if not IDENTIFIER.match(name)]
    if bad:  # names are validated upstream; this guards the wrapper's shell itself
        raise ValueError(f"not a variable name: {bad[0]!r}")
    held = [name for name, value in variables.items() if "\0" in value]
    if held:  # refused upstream too: no environment variable can hold a NUL byte
        raise ValueError(f"variable {held[0]} holds a NUL byte")
    lines = [f"export {name}={shlex.quote(value)}\n" for name, value in variables.items()]
    return "".join([*lines, ENV_END, "\n"]).encode("utf-8")


def remote_command(
    script: str, *, shell: str, cwd: str | None, token: str, payload_size: int
) -> str:
    """The command line sent to sshd: the script, verbatim, in its own session (``setsid
    -w`` waits and passes its exit status on). Before anything else the wrapper prints
    ``runbook-TOKEN PGID`` on a line of stdout: the session's process group, which
    ``Leader`` takes out of the output. The command line itself never holds that text (a
    ForceCommand or startup file that echoes it cannot pass for the line). It holds no
    variable's value: the wrapper reads them from stdin (``env_payload``) and starts the
    script only once it has all of them, with its stdin on ``/dev/null``; a payload that is
    not whole, or does not evaluate, is exit 125 and the script never runs.
    ``payload_size``: the bytes of ``env_payload`` the wrapper will read (``LOOP_BYTES``
    decides how); 0 (a block without variables): the wrapper reads nothing."""
    q = shlex.quote
    chdir = f"cd {q(cwd)} && " if cwd else ""

    # The group id goes out on the channel, not into a pid file: no file to create, read
    # or remove (an `rm` was a process a host), and nothing left behind by a kill -9.
    # A small payload is read line by line with `read` (a builtin: no `cat` process per
    # host), a large one whole by `cat` (the `.` keeps the newlines `$(...)` would strip);
    # no value is on any argv either way. A last line without its newline is never added
    # by `read`, and by `cat` leaves the text not ending with the end line: a payload cut
    # short is never taken for whole. They are set with `command eval` (`command` keeps a
    # syntax error from ending the wrapper before it says why). `__runbook_p` is not
    # exported, so the script never sees it. When the script is done, its leftover
    # background jobs (same group) get SIGTERM, so they can neither outlive the block nor
    # hold its output open. "$rc" is quoted: IFS may be a variable.
    def refuse(why: str) -> str:
        return f'echo "runbook: {why}: not run" >&2; exit 125'

    if payload_size > LOOP_BYTES:
        # `command`: an exported shell function named cat (bash imports those even as
        # sh) must not stand between the channel and the values.
        take = (
            "__runbook_p=$(command cat && echo .) || "
            f"{{ {refuse('cat could not read the variables')}; }}; "
            "__runbook_p=${__runbook_p%.}; "
        )
    else:
        take = (
            "__runbook_p=; "
            'while IFS= read -r __runbook_l; do __runbook_p="$__runbook_p$__runbook_l\n"; done; '
        )
    cut = refuse("the variables did not arrive whole")
    read = (
        take + f'case "$__runbook_p" in *{q(ENV_END + chr(10))}) ;; *) {cut};; esac; '
        f'command eval "$__runbook_p" || {{ {cut}; }}; '
    )
    inner = (
        'echo "runbook-$0 $$"; ' + (read if payload_size else "") + '"$@" </dev/null; rc=$?; '
        "trap '' TERM; kill -TERM 0 2>/dev/null; exit \"$rc\""
    )
    # In a session of its own, always: not in the one sshd made for the login shell, which
    # also holds whatever the shell's startup files left running, and may own a terminal
    # (RequestTTY). Skipping setsid under sshd saved 0.6 ms a host and was given up for that.
    return f"{chdir}exec setsid -w sh -c {q(inner)} {q(token)} {q(shell)} -c {q(script)}"


def kill_command(token: str, pgid: int, sig: str) -> str:
    """``kill -SIG -PGID``, sent only while the group's leader is still this command's
    wrapper (its arguments hold the token): once the wrapper has exited, its number may be
    another process's, and a block whose channel something else still holds open must not
    signal that. The leader's arguments come from ``/proc``, else ``ps`` (BSD, macOS).
    No ``--`` before the group: dash, many users' login shell, rejects it."""
    assert pgid > 1 and re.fullmatch(r"[0-9a-f]+", token), (pgid, token)
    return (
        f"a=$(tr '\\0' ' ' </proc/{pgid}/cmdline 2>/dev/null ||"
        f" ps -ww -o args= -p {pgid} 2>/dev/null); "
        f'case " $a " in *" {token} "*) kill -{sig} "-{pgid}" 2>/dev/null;; esac'
    )


class Leader:
    """Takes the wrapper's ``runbook-TOKEN PGID`` line out of a host's stdout.

    What a login shell's startup files print comes before it, perhaps without a newline,
    so the line is looked for anywhere, across chunks; only the exact line counts (a pty
    ends it with CR LF), and every other byte is output, in order. Nothing is held back but
    a possible start of the line at the end of a chunk (some 50 bytes), until it is found.
    """

    def __init__(self, token: str) -> None:
        self.token = token
        self.prefix = f"runbook-{token} ".encode("ascii")
        self.pgid: int | None = None
        """The command's process group on the host, once its line has come."""
        self.said = asyncio.Event()
        """Set once the line was found or the stream ended: whoever must stop the command
        waits for it, and output passes untouched from then on."""
        self._held = b""

    @property
    def done(self) -> bool:
        return self.said.is_set()

    def feed(self, chunk: bytes) -> bytes:
        """The part of ``chunk`` (with what was held) that is the command's output."""
        if self.done:
            return chunk
        data = self._held + chunk
        at = data.find(self.prefix)
        while at != -1:
            found = _GROUP.match(data, at + len(self.prefix))
            if found is not None:
                group = int(found.group(1))
                self.pgid = group if group > 1 else None  # never `kill -1`, never group 0
                self.end()
                return data[:at] + data[found.end() :]
            at = data.find(self.prefix, at + 1)
        keep = self._possible_start(data)
        self._held = data[keep:]
        return data[:keep]

    def end(self) -> bytes:
        """No more is looked for (the line came, or the stream ended): what was held is
        output."""
        held, self._held = self._held, b""
        self.said.set()
        return held

    def kill(self, sig: str) -> str | None:
        """The command that sends ``sig`` to the group, once one was named."""
        return None if self.pgid is None else kill_command(self.token, self.pgid, sig)

    def _possible_start(self, data: bytes) -> int:
        """Where the line may begin at the end of ``data`` and go on in the next chunk, or
        ``len(data)``: the earliest such place among the last bytes."""
        longest = len(self.prefix) + 21  # the prefix, 19 digits, CR (LF would end it)
        for at in range(max(0, len(data) - longest), len(data)):
            tail = data[at:]
            head, rest = tail[: len(self.prefix)], tail[len(self.prefix) :]
            if self.prefix.startswith(head) and _GROUP_SO_FAR.fullmatch(rest):
                return at
        return len(data)
