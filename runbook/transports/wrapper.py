"""The remote wrapper: the command line sent to sshd, the variables it reads on stdin, and
the line it says first, which names the process group a timeout or an interrupt stops.

Nothing here imports asyncssh: the wrapper is plain POSIX sh, run by the login shell sshd
starts (the demo's in-process servers run it with the local ``sh``).
"""

from __future__ import annotations

import asyncio
import os
import shlex
from collections.abc import Mapping

from runbook.format.values import IDENTIFIER

ENV_END = "# runbook-env-end"
"""The payload's last line. Outside quotes, ``#`` can only be this line (``shlex.quote``
always quotes a value holding one), so a payload that ends with it outside quotes is whole."""

LEADER_LIMIT = 64 * 1024
"""Output held back while looking for the wrapper's line; past it, the line is given up on
(a login shell's startup files printed that much first, or the wrapper never started)."""


def new_marker() -> str:
    """A token no startup file or command can know in advance: 64 random bits."""
    return f"runbook-{os.urandom(8).hex()}"


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
    script: str, *, shell: str, cwd: str | None, marker: str, reads_variables: bool = True
) -> str:
    """The command line sent to sshd: the script, verbatim, in its own session (``setsid
    -w`` waits and passes its exit status on). Before anything else the wrapper prints
    ``MARKER PGID`` on a line of stdout: the session's process group, which ``Leader``
    takes out of the output. It holds no variable's value: the wrapper reads them from
    stdin (``env_payload``) and starts the script only once it has all of them, with its
    stdin on ``/dev/null``; a payload that is not whole, or does not evaluate, is exit 125
    and the script never runs. ``reads_variables`` False (a block without any): the
    wrapper reads nothing and starts the script."""
    q = shlex.quote
    chdir = f"cd {q(cwd)} && " if cwd else ""
    # The group id goes out on the channel, not into a pid file: no file to create, read
    # or remove (an `rm` was a process a host), and nothing left behind by a kill -9.
    # The variables are read line by line with `read` (a builtin: no `cat` process per
    # host, and no value on any argv) and set with `command eval` (`command` keeps a
    # syntax error from ending the wrapper before it says why). A last line without its
    # newline is never added, so a payload cut short cannot end with the end line.
    # `__runbook_p` is not exported, so the script never sees it. When the script is
    # done, its leftover background jobs (same group) get SIGTERM, so they can neither
    # outlive the block nor hold its output open. "$rc" is quoted: IFS may be a variable.
    refuse = 'echo "runbook: the variables did not arrive whole: not run" >&2; exit 125'
    read = (
        "__runbook_p=; "
        'while IFS= read -r __runbook_l; do __runbook_p="$__runbook_p$__runbook_l\n"; done; '
        f'case "$__runbook_p" in *{q(ENV_END + chr(10))}) ;; *) {refuse};; esac; '
        f'command eval "$__runbook_p" || {{ {refuse}; }}; '
    )
    inner = (
        'echo "$0 $$"; ' + (read if reads_variables else "") + '"$@" </dev/null; rc=$?; '
        "trap '' TERM; kill -TERM 0 2>/dev/null; exit \"$rc\""
    )
    # In a session of its own, always: not in the one sshd made for the login shell, which
    # also holds whatever the shell's startup files left running, and may own a terminal
    # (RequestTTY). Skipping setsid under sshd saved 0.6 ms a host and was given up for that.
    return f"{chdir}exec setsid -w sh -c {q(inner)} {q(marker)} {q(shell)} -c {q(script)}"


class Leader:
    """Takes the wrapper's ``MARKER PGID`` line out of a host's stdout.

    What a login shell's startup files print comes before it, perhaps without a newline,
    so the marker is looked for anywhere, across chunks; everything around it is output,
    byte for byte. Until it is found, output is held back (it comes at once: it is the
    wrapper's first act), at most ``LEADER_LIMIT`` bytes, then passed on as it is.
    """

    def __init__(self, marker: str) -> None:
        self.marker = marker.encode("ascii") + b" "
        self.pgid: int | None = None
        """The command's process group on the host, once its line has come."""
        self.done = False
        """The line was found, or given up on: output now passes untouched."""
        self.said = asyncio.Event()
        """Set once ``done``: whoever must stop the command waits for it."""
        self._held = b""

    def feed(self, chunk: bytes) -> bytes:
        """The part of ``chunk`` (with what was held) that is the command's output."""
        if self.done:
            return chunk
        held = self._held + chunk
        start = held.find(self.marker)
        end = held.find(b"\n", start + len(self.marker)) if start >= 0 else -1
        if end < 0:
            if len(held) <= LEADER_LIMIT:
                self._held = held
                return b""
            self.done, self._held = True, b""  # given up: all of it is output
            self.said.set()
            return held
        digits = held[start + len(self.marker) : end]
        if digits.isdigit() and int(digits) > 1:  # never `kill -1`, never group 0
            self.pgid = int(digits)
        self.done, self._held = True, b""
        self.said.set()
        return held[:start] + held[end + 1 :]

    def end(self) -> bytes:
        """The stream ended: whatever was held is output."""
        held, self._held, self.done = self._held, b"", True
        self.said.set()
        return held
