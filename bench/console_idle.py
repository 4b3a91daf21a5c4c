"""How much CPU does the console use while it waits for the operator?

The console, as ``runbook FILE`` opens it, in a real terminal (a tmux window, 120x40),
on a one-block runbook whose block asks ``Deploy?``. For each state the operator can
leave it in, the console's own CPU time (``/proc/PID/stat``, user + system) over
``--seconds`` of wall time, as a share of one core:

- prompt: the block waits for ``n`` (no dialog);
- gate: ``n`` pressed, the ``Deploy?`` dialog open;
- help: the keys dialog open over the prompt.

Goal: a console nobody touches costs next to nothing (it used to redraw its whole screen 15
times a second under a dialog). ``--pythonpath DIR`` runs the ``runbook`` package in DIR
instead (an older tree, for a before/after in the same session).
Usage: python bench/console_idle.py [--seconds 10] [--rounds 3] [--pythonpath DIR]
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BOOK = '# Idle\n\n## Deploy\n\n```sh {name=deploy confirm="Deploy?"}\ntrue\n```\n'
TICK = os.sysconf("SC_CLK_TCK")


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"console_idle: timed out waiting for {what}")
        time.sleep(0.05)


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def one(state: str, seconds: float, pythonpath: str | None, tmp: Path, n: int) -> float:
    """The console's share of a core in ``state``, over ``seconds``."""
    session = f"runbook-idle-{os.getpid()}-{n}"
    env = f"PYTHONPATH={shlex.quote(pythonpath)} " if pythonpath else ""
    runs = tmp / f"runs{n}"
    python = shlex.quote(sys.executable)
    command = f"{env}exec {python} -m runbook {tmp / 'idle.md'} --runs-dir {runs}"
    tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40", "-c", str(tmp), command)
    try:
        pid = int(tmux("display-message", "-p", "-t", session, "#{pane_pid}").strip())

        def screen() -> str:
            return tmux("capture-pane", "-p", "-t", session)

        wait_for(lambda: "n runs it" in screen(), "the block's prompt")
        if state == "gate":
            tmux("send-keys", "-t", session, "n")
            wait_for(lambda: "Deploy?" in screen(), "the gate")
        elif state == "help":
            tmux("send-keys", "-t", session, "?")
            wait_for(lambda: "Keys" in screen() and "Close" in screen(), "the keys dialog")
        time.sleep(1.0)  # let the dialog's first frames settle: idle is what is measured
        c0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(seconds)
        return (cpu_seconds(pid) - c0) / (time.monotonic() - t0)
    finally:
        tmux("kill-session", "-t", session)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pythonpath", help="run the runbook package found in this directory")
    args = ap.parse_args()
    states = ("prompt", "gate", "help")
    shares: dict[str, list[float]] = {s: [] for s in states}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "idle.md").write_text(BOOK)
        n = 0
        for _ in range(args.rounds):
            for state in states:
                n += 1
                shares[state].append(one(state, args.seconds, args.pythonpath, tmp, n))
    where = args.pythonpath or "the installed runbook"
    print(f"{where}; {args.rounds} rounds of {args.seconds:g} s each, tmux 120x40")
    for state in states:
        got = ", ".join(f"{s:.1%}" for s in shares[state])
        print(f"  {state:<7} median {statistics.median(shares[state]):6.1%} of a core  ({got})")


if __name__ == "__main__":
    main()
