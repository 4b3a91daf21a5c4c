"""How long does a local-only `runbook run` take to start, relative to `runbook check`?

Both on the same one-block runbook (`true`, locally), as real processes (the installed
entry point's interpreter, `python -m runbook`), interleaved round by round so machine drift
hits both alike, with bytecode as an installed copy has it. The run's extra time is its
engine: the transcript (created, fsynced, hash-chained, locked), the operator, the run
itself; asyncssh and textual are not loaded.
Prints the best time of each and their ratio; the goal is run <= 1.3x check.
Usage: python bench/startup.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# As an installed copy starts: with its bytecode (pip writes it at install). Without it,
# every module is compiled from source at each start (PYTHONDONTWRITEBYTECODE=1 here).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env=ENV)
    return time.perf_counter() - t0


def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        book = Path(tmp, "local.md")
        book.write_text("# Local\n\n## Step\n\n```sh\ntrue\n```\n")
        base = [sys.executable, "-m", "runbook"]
        check = [*base, "check", "--no-shell", str(book)]
        run = [*base, "run", str(book), "--yes", "--runs-dir", str(Path(tmp, "runs"))]
        bare = [sys.executable, "-c", "pass"]
        rows: dict[str, list[float]] = {"python": [], "check": [], "run": []}
        for argv in (bare, check, run):  # warm the page cache
            timed(argv)
        for _ in range(rounds):
            rows["python"].append(timed(bare))
            rows["check"].append(timed(check))
            rows["run"].append(timed(run))
    ref = min(rows["check"])
    print(f"python {sys.version.split()[0]}; best of {rounds} interleaved rounds:")
    for label, key in [
        ("python -c pass", "python"),
        ("runbook check --no-shell FILE (reference)", "check"),
        ("runbook run FILE --yes (local only)", "run"),
    ]:
        best = min(rows[key])
        print(f"  {label:<44} {best * 1000:7.1f} ms  {best / ref:5.2f}x")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=20)
    main(ap.parse_args().rounds)
