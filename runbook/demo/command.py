"""What ``runbook demo`` decides before it runs: which runbook, which fleet, which values.

Also what it tells the operator (the hosts, where the files are, which host is broken,
the values it gives) and ``--serve``: the fleet alone, until Ctrl-C or SIGTERM, for a
``runbook run`` in another terminal.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType

from runbook.demo.examples import DEFAULT, EXAMPLES, NEXT_RELEASE, Example, for_runbook
from runbook.demo.fleet import DemoFleet
from runbook.engine.stopping import SIGNALS
from runbook.format.inputs import BadUsage, load_runbook, parse_vars
from runbook.format.model import Runbook
from runbook.format.values import did_you_mean


def choose(target: str | None, broken: Sequence[str] | None) -> tuple[Example, Runbook]:
    """The example named ``target`` (or a runbook file), with ``--break`` applied.

    An unknown name is a usage error that lists the examples.
    """
    name = target or DEFAULT
    if name in EXAMPLES:
        example = EXAMPLES[name]
        rb, _ = load_runbook(str(example.source()))
    elif os.sep in name or name.endswith(".md") or Path(name).exists():
        path = Path(name)
        rb, _ = load_runbook(name)
        try:
            example = for_runbook(path, rb)
        except ValueError as e:
            raise BadUsage(str(e)) from None
    else:
        raise BadUsage(
            f"no example `{name}`{did_you_mean(name, list(EXAMPLES))}; the examples are"
            f" {', '.join(EXAMPLES)} (`runbook demo --list`), or give the path of a runbook"
        )
    if broken is not None:
        hosts = () if list(broken) == ["none"] else tuple(broken)
        if "none" in hosts:
            raise BadUsage("--break none means no broken host; it cannot be combined with hosts")
        try:
            example = example.with_broken(hosts)
        except ValueError as e:
            raise BadUsage(str(e)) from None
    return example, rb


def assignments(
    example: Example, rb: Runbook, given: Sequence[str], webhook: str = ""
) -> list[str]:
    """The demo's own ``--var`` assignments for what ``rb`` declares and ``given`` (the
    user's, which win) does not; only these are ever printed."""
    mine = parse_vars(given)
    known = {k: v for k, v in example.values(rb, webhook).items() if k not in mine}
    return [f"{k}={v}" for k, v in known.items()]


def describe(fleet: DemoFleet, values: Sequence[str]) -> list[str]:
    """What the running demo provides, one line each."""
    ex = fleet.example
    colour = {h: c for c, pool in ex.pools for h in pool}
    hosts = ", ".join(
        f"{h} ({colour[h]})" if h in colour else f"{h} (router)" if h in ex.routers else h
        for h in fleet.hosts
    )
    lines = [
        f"runbook demo: {len(fleet.hosts)} SSH servers on 127.0.0.1: {hosts}",
        f"runbook demo: files in {fleet.root}: ssh_config, known_hosts, and hosts/HOST/,"
        " each host's home and working directory",
        "runbook demo: sudo, systemctl, curl, fetch-release, lb-drain, lb-enable, hostname"
        f"{' and router' if ex.routers else ''} are stand-ins in hosts/HOST/bin"
        " (nothing outside the demo's directory is touched)",
        "runbook demo: broken: "
        + (
            f"{', '.join(ex.broken)} (its health check answers 503"
            + (f" once it runs {NEXT_RELEASE}" if ex.breaks_release else "")
            + "; --break none for none)"
            if ex.broken
            else "none (--break HOST makes a host's health check fail)"
        ),
    ]
    if ex.pools:
        lines.append(f"runbook demo: the routers send live traffic to {ex.pools[0][0]}")
    if any(v.startswith("DEPLOYS_WEBHOOK=") for v in values):
        lines.append(f"runbook demo: #deploys stand-in: the notifications go to {fleet.chat.log}")
    if values:
        lines.append(f"runbook demo: the demo gives --var {' --var '.join(values)}")
    lines.append(f"runbook demo: runbook {fleet.runbook}")
    return lines


def channel(fleet: DemoFleet) -> list[str]:
    """What the #deploys stand-in received, as the channel would show it."""
    try:
        received = fleet.chat.log.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    if not received:
        return []
    return [f"#deploys received {len(received)} notifications:", *(f"  {m}" for m in received)]


def run_command(fleet: DemoFleet, values: Sequence[str]) -> str:
    """A ``runbook run`` command line, ready to paste, for this fleet's runbook."""
    source = fleet.example.source()
    try:
        shown = source.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        shown = source
    words = ["runbook", "run", str(shown), "--ssh-config", str(fleet.ssh_config)]
    for value in values:
        words += ["--var", value]
    return shlex.join([*words, "--yes"])


@contextlib.contextmanager
def cleaned_up_on_signals() -> Iterator[None]:
    """SIGTERM or SIGHUP while the fleet starts or stops (a run has its own handling) end
    the demo through its cleanup, not around it: no keys, sandboxes or servers left."""

    def stop(signum: int, frame: FrameType | None) -> None:
        ignore_signals()
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, stop) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def signals_noted(signals: Sequence[signal.Signals]) -> Iterator[Callable[[], int]]:
    """While open, ``signals`` are noted, not acted on; the function it gives returns the
    first that arrived, waiting for it if none has. For the demo's main thread, which has
    no other wakeup fd: on the way out there is none.

    The handler only appends to a list, and takes no lock: one that set a
    ``threading.Event`` could run between two bytecodes of that event's own ``wait``,
    while the main thread held the event's lock, and wait for it for ever. A signal that
    another thread takes wakes the wait through the wakeup fd, which the interpreter writes
    from that thread. Any bytecode may run a pending signal's handler, and the handlers
    before these may raise (Ctrl-C, the demo's SIGTERM): so what is given back comes from
    ``getsignal`` before anything changes, not from what a call returned."""
    noted: list[int] = []
    previous = {s: signal.getsignal(s) for s in signals}
    reader, writer = socket.socketpair()
    with reader, writer:
        writer.setblocking(False)
        try:
            for s in signals:
                signal.signal(s, lambda signum, frame: noted.append(signum))
            # Only now the fd: until these handlers, a raise could skip the line after.
            signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
            yield lambda: _first(reader, noted, signals)
        finally:
            signal.set_wakeup_fd(-1)  # first: this socket is about to close
            for s, handler in previous.items():
                signal.signal(s, handler)


def _first(reader: socket.socket, noted: list[int], signals: Sequence[signal.Signals]) -> int:
    """The first signal noted: by its handler (on the main thread), or, when another thread
    took it, by its byte on the wakeup fd (``recv`` retries after EINTR)."""
    while not noted:
        for number in reader.recv(64):
            if number in signals:
                return number
    return noted[0]


def ignore_signals() -> None:
    """For the cleanup, which must run to its end: Ctrl-C pressed again included."""
    for sig in (*SIGNALS, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)


def serve(fleet: DemoFleet, values: Sequence[str], say: Callable[[str], None]) -> None:
    """Print the fleet's ssh_config and a command for it, then wait for Ctrl-C or SIGTERM."""
    with signals_noted((signal.SIGINT, signal.SIGTERM)) as arrived:
        print(f"ssh_config: {fleet.ssh_config}", flush=True)
        print(f"run: {run_command(fleet, values)}", flush=True)
        say("runbook demo: serving until Ctrl-C (or SIGTERM)")
        arrived()
    say("runbook demo: stopping the fleet")
