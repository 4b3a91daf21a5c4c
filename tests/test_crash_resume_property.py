"""A property over crashes: whatever the interleaving of kill -9 and resume, no block's
command runs twice unless a recorded decision (re-run) asked for it, and every transcript
file of the run verifies, as one chain.

Real processes throughout: `runbook run` headless, then resumes (an unknown block is the
operator's decision, scripted per example), each killed with SIGKILL at a point the
example chose: inside a block, before or after its command's effect.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT, events, live_processes, run_cli
from runbook.record.runs import transcript_files

BLOCKS = 4
HOLD = "sleep 61.5"  # where a block waits to be killed; unique, so orphans can be found

BLOCK = """## B{k}

```sh
if [ -e '{d}/hold-{k}-before' ]; then rm -f '{d}/hold-{k}-before'; touch '{d}/held'; {hold}; fi
echo b{k} >> '{d}/log'
if [ -e '{d}/hold-{k}-after' ]; then rm -f '{d}/hold-{k}-after'; touch '{d}/held'; {hold}; fi
```
"""

kills = st.lists(
    st.tuples(st.integers(1, BLOCKS), st.sampled_from(["before", "after"])), max_size=3
)
answers = st.lists(st.sampled_from(["r", "m"]), min_size=3, max_size=3)


RESUME = """
import sys
from runbook import launch
from runbook.engine.operator import Decision, ScriptedOperator
rerun = sys.argv[2] == "r"
decision = Decision("rerun") if rerun else Decision("mark-done", "checked by hand")
done = launch.resume(
    sys.argv[1], allow_changed=False, assignments=(), argv=sys.argv,
    announce=lambda _: None, operator=ScriptedOperator([("choose", decision)]),
)
sys.exit(done.outcome.exit_code)
"""
"""`runbook resume` with the operator's answer to the unknown block scripted: a real
process, so that it too can be killed."""


def _start(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _crashed(d: Path, runner: subprocess.Popen[bytes], kill: tuple[int, str] | None) -> bool:
    """Let ``runner`` go until the block of ``kill`` holds, then SIGKILL it (True); or
    until it ends by itself (False), which it must do with success."""
    held = d / "held"
    deadline = time.monotonic() + 60
    while kill is not None and not held.exists() and runner.poll() is None:
        assert time.monotonic() < deadline, "neither the hold nor the end came"
        time.sleep(0.02)
    if kill is None or not held.exists():
        _, err = runner.communicate(timeout=60)
        assert runner.returncode == 0, err.decode(errors="replace")
        return False
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    for pid in live_processes(HOLD):  # the block's orphan
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    held.unlink()
    return True


@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,  # the same interleavings in every run: a failure reproduces
    suppress_health_check=[HealthCheck.too_slow],
)
@given(kills=kills, answers=answers)
def test_no_block_runs_twice_unless_a_decision_asked_and_every_file_verifies(
    kills: list[tuple[int, str]], answers: list[str]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        book = d / "book.md"
        book.write_text("".join(BLOCK.format(k=k, d=d, hold=HOLD) for k in range(1, BLOCKS + 1)))
        runs = [["-m", "runbook", "run", str(book), "--yes", "--runs-dir", str(d)]]
        crashed = True
        for number, kill in enumerate([*kills, None]):
            if kill is not None:
                (d / f"hold-{kill[0]}-{kill[1]}").touch()
            if number > 0:  # a resume, the unknown block answered by this example
                (transcript,) = d.glob("*/transcript.jsonl")
                runs.append(["-c", RESUME, str(transcript), answers[number - 1]])
            crashed = _crashed(d, _start(runs[-1]), kill)
            if not crashed:
                break
            for hold in d.glob("hold-*"):  # a hold not reached stays for no one
                hold.unlink()
        assert not crashed, "the run never reached its end"
        (transcript,) = d.glob("*/transcript.jsonl")

        files = transcript_files(transcript.parent)
        evs = [e for f in files for e in events(f)]
        assert evs[-1]["type"] == "run.end" and evs[-1]["result"] == "ok", evs[-1]
        checked = run_cli("transcript", "verify", str(transcript))
        assert checked.returncode == 0, checked.stdout
        assert checked.stdout.count(": intact,") == len(files), checked.stdout

        lines = (d / "log").read_text().split()
        for k in range(1, BLOCKS + 1):
            block = f"b{k}-1"
            reruns = sum(
                1
                for e in evs
                if e["type"] == "decision" and e["block"] == block and e["choice"] == "rerun"
            )
            ran = lines.count(f"b{k}")
            assert ran <= 1 + reruns, (block, ran, reruns, kills, answers)
            marked = any(
                e["type"] == "decision" and e["block"] == block and e["choice"] == "mark-done"
                for e in evs
            )
            assert ran >= 1 or marked, (block, kills, answers)
