"""Bytes between an SSH channel and a local child process, both ways.

Output goes to the channel as it comes (so a rollout streams); once the client is gone
the child's output is still read, and dropped, so that it never blocks on a full pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import asyncssh

from runbook.demo.procs import process_groups

READ_SIZE = 64 * 1024


async def pump(source: asyncio.StreamReader, sink: asyncssh.SSHWriter[bytes]) -> None:
    """Child output to the channel; once the client is gone, read on and drop it, as the
    command must not block on a full pipe."""
    connected = True
    while chunk := await source.read(READ_SIZE):
        if not connected:
            continue
        try:
            sink.write(chunk)
            await sink.drain()
        except (OSError, asyncssh.Error):
            connected = False


async def feed(
    process: asyncssh.SSHServerProcess[bytes], child: asyncio.subprocess.Process
) -> None:
    """The channel's stdin to the child (closed at EOF); a signal request goes to the
    process groups of the child and its descendants, as the command may have moved on."""
    stdin = child.stdin
    assert stdin is not None
    try:
        while True:
            try:
                data = await process.stdin.read(READ_SIZE)
            except asyncssh.SignalReceived as e:
                number = signal.Signals.__members__.get(f"SIG{e.signal}")
                if number is not None:
                    for group in process_groups([child.pid]):
                        with contextlib.suppress(OSError):
                            os.killpg(group, number)
                continue
            except (asyncssh.BreakReceived, asyncssh.TerminalSizeChanged):
                continue
            if not data:
                break
            stdin.write(data)
            await stdin.drain()
    except (OSError, asyncssh.Error):
        pass  # the child closed its stdin, or the client went away
    finally:
        stdin.close()
