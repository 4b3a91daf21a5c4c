"""Does the console stay responsive while a block streams 50 MB? Measured with Pilot.

Every run is a fresh child process of this script (``--child``), so its peak memory is its
own. The child opens the console as ``runbook FILE`` does, under Pilot (``app.run_test(size=
(120, 40))``, headless); a typist thread plays the terminal's input thread: it sends keys
through the driver as Pilot and the Linux driver do (``driver.send_message``), on its own
clock, whatever the event loop is busy with. (``await pilot.press`` itself could not: it
runs on the loop it measures, so a key could only be pressed once a stall was over.) The
typist presses ``n`` to run the block, then, while it runs (``status == "running"``):

- help (closed loop): ``?``, until a frame shows the help modal (``MarkdownScreen``), then
  ``escape``, until a frame shows it gone; again every ``--interval`` seconds (+-25%);
- outline (open loop, a user who keeps typing): ``down`` on the focused step outline every
  ``--interval`` seconds; press i is on screen once a frame shows highlight start + i.

Latency: press -> the first frame painted with its effect, a frame being the compositor
update handed to ``App._display``, rendered here to the escape sequences a terminal gets
(the headless driver would drop it). Workloads, each probe in its own children:

- idle (reference): the block runs ``sleep``, streaming 0 bytes: same app, same probes;
- lines:  ``yes '<66-byte log line>' | head -c 52428800``;
- 1 line: 50 MiB without a newline (``head -c 52428800 /dev/zero | tr '\\0' x``).

A fast block gives few presses, so children repeat (``--max-rounds``, ``--budget``) until
each probe has ``--samples`` presses made while the block streamed. Also reported: peak
RSS (``ru_maxrss``) per workload against the idle child's; the block's time in the console
against ``runbook run FILE --yes`` headless (block.start -> block.end in each transcript);
that the console's transcript holds every stdout byte (the sum of the output events'
``size``); and the event loop's longest stall, as a 5 ms timer sees it, from ``n`` to the
end of the run.

Goals: median key press -> screen <= 100 ms while streaming; peak memory <= 300 MB.
Usage: python bench/tui_responsiveness.py [--mb 50] [--interval 0.2] [--samples 20]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

IDLE = "idle (reference)"
LINE = "line of shop-web log output 0123456789 abcdefghijklmnopqrstuvwxyz"
WORKLOADS = {
    IDLE: "sleep {seconds}",
    "lines": f"yes '{LINE}' | head -c {{size}}",
    "1 line": "head -c {size} /dev/zero | tr '\\0' x",
}
STEPS = 64
"""Steps in the runbook: the block's, then prose only, room for the outline to move down."""
OUTLINE_PRESSES = 60
PROBES = ("help", "outline")


def book(command: str) -> str:
    steps = [f"# Responsiveness\n\n## Stream\n\n```sh\n{command}\n```\n"]
    steps += [f"## Read {i}\n\nNothing to run here.\n" for i in range(2, STEPS + 1)]
    return "\n".join(steps)


SIZE = (120, 40)
CHILD_TIMEOUT = 300.0
"""Seconds a child may wait for anything; the parent kills it a minute later."""
PROBE_TIMEOUT = 60.0


# ---------------------------------------------------------------------------- the child


@dataclass
class Paint:
    at: float
    help_shown: bool
    highlighted: int | None


@dataclass
class ChildResult:
    help_open: list[float] = field(default_factory=list)
    help_close: list[float] = field(default_factory=list)
    outline: list[float] = field(default_factory=list)
    timeouts: int = 0
    paints: int = 0
    stall: float = 0.0
    peak_kib: int = 0
    transcript: str = ""


class Typist:
    """The terminal's input thread: keys go in through the driver as the user types them,
    whatever the event loop is busy with; frames come out through ``App._display``."""

    def __init__(self, app: Any, interval: float, want: int) -> None:
        from rich.console import Console

        self.app, self.interval, self.want = app, interval, want
        self.paints: list[Paint] = []
        self.fresh = threading.Condition()
        self.result = ChildResult()
        self.outline: Any = None
        self.terminal = Console(
            file=io.StringIO(), force_terminal=True, color_system="truecolor", width=SIZE[0]
        )
        self.deadline = time.monotonic() + CHILD_TIMEOUT
        self.display = app._display
        app._display = self.painted

    def painted(self, screen: Any, renderable: Any) -> None:
        """The frame rendered to the escape sequences a terminal gets (on the loop)."""
        from textual._compositor import CompositorUpdate

        from runbook.tui.screens import MarkdownScreen

        self.display(screen, renderable)
        if renderable is None or screen is not self.app.screen:
            return
        if isinstance(renderable, CompositorUpdate):
            renderable.render_segments(self.terminal)
        highlighted = self.outline.highlighted if self.outline is not None else None
        paint = Paint(time.perf_counter(), isinstance(screen, MarkdownScreen), highlighted)
        with self.fresh:
            self.paints.append(paint)
            self.fresh.notify_all()

    def pause(self) -> float:
        """``interval``, +-25%: a fixed period (200 ms is 12 frames at 60 fps) would lock
        onto the screen's update timer and time every press at the same phase of it."""
        return self.interval * random.uniform(0.75, 1.25)

    def send(self, key: str) -> float:
        from textual import events

        chars = {"n": "n", "question_mark": "?", "escape": "\x1b"}
        event = events.Key(key, chars.get(key))
        event.set_sender(self.app)
        t0 = time.perf_counter()
        driver = self.app._driver
        assert driver is not None
        driver.send_message(event)  # as Pilot and the Linux driver's input thread do
        return t0

    def painted_after(self, t0: float, seen: Callable[[Paint], bool]) -> float | None:
        """Seconds from ``t0`` to the first frame painted at or after it where ``seen``."""
        index = 0

        def found() -> Paint | None:
            nonlocal index
            while index < len(self.paints):
                paint = self.paints[index]
                index += 1
                if paint.at >= t0 and seen(paint):
                    return paint
            return None

        wait = max(0.0, min(PROBE_TIMEOUT, self.deadline - time.monotonic()))
        with self.fresh:
            paint = self.fresh.wait_for(found, timeout=wait)
        if paint is None:
            self.result.timeouts += 1
            return None
        return paint.at - t0

    def type(self, probe: str, stream: Any) -> None:
        """Press ``n``, then probe every ``interval`` seconds while the block runs."""
        self.send("n")
        deadline = time.monotonic() + 60
        while stream.status == "pending" and time.monotonic() < deadline:
            time.sleep(0.001)
        if probe == "help":
            self.probe_help(stream)
        else:
            self.probe_outline(stream)

    def probe_help(self, stream: Any) -> None:
        """Closed loop: ``?`` until the modal is on screen, ``escape`` until it is gone."""
        r = self.result
        while stream.status == "running" and len(r.help_open) < self.want:
            began = time.perf_counter()
            opened = self.painted_after(self.send("question_mark"), lambda p: p.help_shown)
            if opened is None:
                return
            r.help_open.append(opened)
            streaming = stream.status == "running"
            closed = self.painted_after(self.send("escape"), lambda p: not p.help_shown)
            if closed is None or not streaming:
                return  # a press after the block ended measures nothing here
            r.help_close.append(closed)
            time.sleep(max(0.0, self.pause() - (time.perf_counter() - began)))

    def probe_outline(self, stream: Any) -> None:
        """Open loop, as a user keeps typing: ``down`` every ``interval`` seconds whatever
        the screen shows; press i is on screen once a frame shows highlight start + i."""
        start = self.outline.highlighted or 0
        pressed: list[float] = []
        while (
            stream.status == "running"
            and len(pressed) < min(self.want, OUTLINE_PRESSES)
            and start + len(pressed) + 1 < STEPS
        ):
            pressed.append(self.send("down"))
            time.sleep(self.pause())

        def reached(level: int) -> Callable[[Paint], bool]:
            return lambda paint: (paint.highlighted or 0) >= level

        for i, t0 in enumerate(pressed, start=1):
            moved = self.painted_after(t0, reached(start + i))
            if moved is None:
                return  # later presses cannot be painted sooner
            self.result.outline.append(moved)


async def drive(book: Path, runs: Path, probe: str, want: int, interval: float) -> ChildResult:
    """Open the console on ``book``; a typist thread runs its first block and probes."""
    from runbook import launch
    from runbook.engine.operator import Operator
    from runbook.engine.session import Session
    from runbook.format.inputs import load_runbook
    from runbook.tui.app import Launch, RunbookApp
    from runbook.tui.widgets import StepOutline

    rb, _ = load_runbook(str(book))

    def start(operator: Operator, entered: Mapping[str, str]) -> tuple[Session, Sequence[Any]]:
        session = launch.prepare_run(
            str(book),
            assignments=(),
            runs=runs,
            argv=["runbook", str(book)],
            announce=lambda _: None,
            operator=operator,
            entered=entered,
        )
        return session, []

    app = RunbookApp(Launch(rb, start))
    typist = Typist(app, interval, want)
    result = typist.result

    async def until(condition: Callable[[], object], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
            await asyncio.sleep(0.005)

    async def ticker() -> None:
        """The longest the event loop went without running a 5 ms timer."""
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(0.005)
            result.stall = max(result.stall, time.perf_counter() - t0 - 0.005)

    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.waiting is not None, "the first block", 30)
        outline = app.query_one(StepOutline)
        outline.focus()
        outline.highlighted = 0
        typist.outline = outline
        await pilot.pause()
        watch = asyncio.create_task(ticker())
        stream = app.progress.block("stream-1")
        await asyncio.wait_for(asyncio.to_thread(typist.type, probe, stream), CHILD_TIMEOUT)
        await until(lambda: app.outcome is not None, "the end of the run", CHILD_TIMEOUT)
        watch.cancel()
        assert app.session is not None
        result.transcript = str(app.session.writer.path)
        result.paints = len(typist.paints)
        await pilot.press("q")
    result.peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return result


def child(args: argparse.Namespace) -> None:
    result = asyncio.run(
        drive(Path(args.book), Path(args.runs), args.probe, args.samples, args.interval)
    )
    print(json.dumps(result.__dict__))


# ---------------------------------------------------------------------------- the parent


def run_bounded(argv: list[str], timeout: float, *, stdout: bool = True) -> str:
    """Run ``argv`` in its own process group, its stdout returned (or sent to /dev/null); the
    group is killed if it outlives ``timeout``; a failure raises with the end of its output."""
    proc = subprocess.Popen(
        argv,
        start_new_session=True,
        text=True,
        stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise RuntimeError(f"{' '.join(argv[1:4])}...: killed after {timeout:.0f} s") from None
    if proc.returncode != 0:
        tail = " | ".join(((out or "") + err).strip().splitlines()[-3:])
        raise RuntimeError(f"{' '.join(argv[1:4])}... exited {proc.returncode}: {tail}")
    return out or ""


def block_facts(transcript: Path) -> tuple[float, int]:
    """The Stream block's seconds (block.start -> block.end) and its stdout bytes."""
    from runbook.record.chain import read_lines

    start = end = 0.0
    size = 0
    for line in read_lines(transcript):
        e = line.event
        if e.get("block") != "stream-1":
            continue
        if e["type"] == "block.start":
            start = e["mono"]
        elif e["type"] == "block.end":
            end = e["mono"]
        elif e["type"] == "output" and e.get("stream") == "stdout":
            size += e["size"]
    return end - start, size


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(values: Sequence[float]) -> str:
    if not values:
        return f"{'-':>7} {'-':>7} {'-':>7}"
    return " ".join(
        f"{v * 1000:7.1f}" for v in (statistics.median(values), pct(values, 0.9), max(values))
    )


@dataclass
class Rows:
    """Everything measured for one workload, over all its children."""

    help_open: list[float] = field(default_factory=list)
    help_close: list[float] = field(default_factory=list)
    outline: list[float] = field(default_factory=list)
    children: int = 0
    failed: list[str] = field(default_factory=list)
    timeouts: int = 0
    peak_kib: int = 0
    stall: float = 0.0
    tui_block: list[float] = field(default_factory=list)
    headless_block: list[float] = field(default_factory=list)
    stdout_bytes: list[int] = field(default_factory=list)

    def samples(self, probe: str) -> list[float]:
        return self.help_open if probe == "help" else self.outline

    def add(self, got: dict[str, Any]) -> None:
        self.children += 1
        self.help_open += got["help_open"]
        self.help_close += got["help_close"]
        self.outline += got["outline"]
        self.timeouts += got["timeouts"]
        self.peak_kib = max(self.peak_kib, got["peak_kib"])
        self.stall = max(self.stall, got["stall"])
        seconds, stdout = block_facts(Path(got["transcript"]))
        self.tui_block.append(seconds)
        self.stdout_bytes.append(stdout)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--mb", type=int, default=50, help="MiB each streaming block prints")
    ap.add_argument("--interval", type=float, default=0.2, help="seconds between key presses")
    ap.add_argument(
        "--samples",
        type=int,
        default=20,
        help="presses wanted per probe, made while the block streams",
    )
    ap.add_argument("--max-rounds", type=int, default=12, help="children per workload and probe")
    ap.add_argument("--budget", type=float, default=900, help="seconds; no new child after")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--book", help=argparse.SUPPRESS)
    ap.add_argument("--runs", help=argparse.SUPPRESS)
    ap.add_argument("--probe", choices=PROBES, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    size = args.mb * 1024 * 1024
    me = [sys.executable, os.path.abspath(__file__), "--child"]
    runbook = [sys.executable, "-m", "runbook"]
    idle_seconds = round(args.samples * (args.interval + 0.3) + 2)
    print(
        f"{args.mb} MiB per streaming block; a key press every {args.interval * 1000:.0f} ms,"
        f" {args.samples} wanted per probe, up to {args.max_rounds} fresh children each;"
        f" terminal {SIZE[0]}x{SIZE[1]}, Python {platform.python_version()},"
        f" Textual {version('textual')}, {os.cpu_count()} CPUs"
    )
    rows = {label: Rows() for label in WORKLOADS}
    wanted = {(label, probe) for label in WORKLOADS for probe in PROBES}
    stop = time.monotonic() + args.budget
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        books = {}
        for n, (label, template) in enumerate(WORKLOADS.items()):
            books[label] = Path(tmp, f"book-{n}.md")
            books[label].write_text(book(template.format(size=size, seconds=idle_seconds)))
        for round_ in range(args.max_rounds):
            for label in WORKLOADS:
                row = rows[label]
                for probe in PROBES:
                    if (label, probe) not in wanted or time.monotonic() > stop:
                        continue
                    runs = Path(tmp, f"runs-{round_}-{probe}-{label[:4]}")
                    argv = [*me, "--book", str(books[label]), "--runs", str(runs)]
                    presses = args.samples if label == IDLE else OUTLINE_PRESSES
                    argv += ["--probe", probe, "--samples", str(presses)]
                    argv += ["--interval", str(args.interval)]
                    try:
                        out = run_bounded(argv, CHILD_TIMEOUT + 60)
                    except RuntimeError as e:
                        row.failed.append(f"{probe}: {e}")
                        wanted.discard((label, probe))
                        continue
                    row.add(json.loads(out.strip().splitlines()[-1]))
                    if len(row.samples(probe)) >= args.samples:
                        wanted.discard((label, probe))
                if round_ < (1 if label == IDLE else 3):  # headless: the console's overhead
                    headless = Path(tmp, f"headless-{round_}-{label[:4]}")
                    argv = [
                        *runbook,
                        "run",
                        str(books[label]),
                        "--yes",
                        "--runs-dir",
                        str(headless),
                    ]
                    try:
                        run_bounded(argv, CHILD_TIMEOUT, stdout=False)
                    except RuntimeError as e:
                        row.failed.append(f"headless: {e}")
                        continue
                    transcript = next(headless.glob("*/transcript.jsonl"))
                    row.headless_block.append(block_facts(transcript)[0])
    report(rows, size, args.samples)


def report(rows: dict[str, Rows], size: int, want: int) -> None:
    idle = rows[IDLE]
    print("\nkey press -> frame painted (ms)          median     p90     max    n  median vs idle")
    for label, row in rows.items():
        for probe, values, base in (
            ("? opens help", row.help_open, idle.help_open),
            ("escape closes help", row.help_close, idle.help_close),
            ("down in the outline", row.outline, idle.outline),
        ):
            ratio = "-"
            if values and base:
                ratio = f"{statistics.median(values) / statistics.median(base):.1f}x"
            print(f"  {label:16} {probe:20} {ms(values)} {len(values):4d}  {ratio:>9}")
    print(
        "\nworkload          children  peak RSS  vs idle  longest stall"
        "  block: TUI  headless   ratio  stdout bytes in the transcript"
    )
    for label, row in rows.items():
        if not row.children:
            print(f"  {label:16} no child finished: {'; '.join(row.failed)}")
            continue
        tui = statistics.median(row.tui_block)
        head = statistics.median(row.headless_block or [float("nan")])
        expected = 0 if label == IDLE else size
        complete = all(b == expected for b in row.stdout_bytes)
        print(
            f"  {label:16} {row.children:8d}  {row.peak_kib / 1024:5.0f} MB"
            f"  {row.peak_kib / idle.peak_kib:6.2f}x  {row.stall * 1000:10.0f} ms"
            f"  {tui:8.2f} s  {head:6.2f} s  {tui / head:6.1f}x"
            f"  {min(row.stdout_bytes):,} {'all' if complete else f'of {expected:,}: MISSING'}"
        )
        for problem in row.failed:
            print(f"  {label:16} failed: {problem}")
        if row.timeouts:
            print(f"  {label:16} {row.timeouts} press(es) never painted in {PROBE_TIMEOUT:.0f} s")
    streaming = {label: row for label, row in rows.items() if label != IDLE}
    medians = [
        statistics.median(v) for r in streaming.values() for v in (r.help_open, r.outline) if v
    ]
    worst = max(medians) if medians else float("inf")
    peak = max(r.peak_kib for r in streaming.values()) / 1024
    short = [
        f"{label} {probe} n={len(r.samples(probe))}"
        for label, r in streaming.items()
        for probe in PROBES
        if len(r.samples(probe)) < want
    ]
    failed = any(r.failed or r.timeouts for r in rows.values())
    met = worst <= 0.1 and peak <= 300 and not failed
    print(
        f"\nverdict: {'MET' if met else 'NOT MET'}: worst median key press -> screen while"
        f" streaming {worst * 1000:.0f} ms (goal <= 100 ms), worst peak RSS {peak:.0f} MB"
        f" (goal <= 300 MB)"
        + (f"; fewer than {want} samples: {', '.join(short)}" if short else "")
        + ("; some children or presses failed" if failed else "")
    )


if __name__ == "__main__":
    main()
