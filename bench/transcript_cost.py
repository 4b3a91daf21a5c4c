"""What does recording cost? `runbook run --yes` on a command printing 200 MB, against the
same command piped to a file, timed in this one process, interleaved round by round.

For each workload:
- reference: ``sh -c 'COMMAND > FILE'``;
- runbook:   ``runbook run BOOK --yes --runs-dir DIR`` (the operator's display to /dev/null),
  where BOOK's only block is COMMAND: the run's whole wall time, Python start included,
  with every byte masked-checked, escaped, hash-chained, written and fsynced.

- floor:     a few lines of Python that read the same output from a pipe in 256 KiB
  chunks, SHA-256 each chunk and append the raw bytes to a file, fsynced at the end: what
  any Python recorder must do, with no encoding, no event, no check. On a machine where
  the producer takes a core of its own, this row says how much of runbook's ratio is left
  to win at all.

Prints the best and median wall time of each and the ratio of the medians; goal <= 1.5x.
``--before DIR`` adds a row for the runbook in DIR (another checkout, say a worktree of an
older commit), run the same way and interleaved, so a change is measured side by side.
Usage: python bench/transcript_cost.py [--rounds 5] [--mb 200] [--before DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKLOADS = {
    "yes | head (cheapest possible producer)": (
        "yes 'the quick brown fox jumps over the lazy dog 0123456789' | head -c {size}"
    ),
    "seq (numbers, like a log)": "seq 1 100000000 | head -c {size}",
}


# As an installed copy starts, with its bytecode: this machine sets PYTHONDONTWRITEBYTECODE,
# which makes every start of a source checkout compile each module (0.1 s here).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


FLOOR = """
import fcntl, hashlib, os, subprocess, sys
r, w = os.pipe()
fcntl.fcntl(r, fcntl.F_SETPIPE_SZ, 1 << 20)
producer = subprocess.Popen(["sh", "-c", sys.argv[1]], stdout=w)
os.close(w)
out = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
while chunk := os.read(r, 256 * 1024):
    hashlib.sha256(chunk).digest()
    os.write(out, chunk)
os.fsync(out)
sys.exit(producer.wait())
"""


def timed(argv: list[str], **kwargs: object) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, **kwargs)  # type: ignore[call-overload]
    return time.perf_counter() - t0


def which(env: dict[str, str], cwd: str) -> str:
    """The directory ``python -m runbook`` loads runbook from, started as the bench starts it."""
    argv = [sys.executable, "-c", "import os, runbook; print(os.path.dirname(runbook.__path__[0]))"]
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True).stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--before", type=Path, help="a checkout of runbook to time beside this one")
    args = ap.parse_args()
    size = args.mb * 1_000_000
    runbook = [sys.executable, "-m", "runbook"]
    mine = {**ENV, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    versions = {"runbook": mine}
    if args.before:
        versions["before"] = {**ENV, "PYTHONPATH": str(args.before.resolve())}
    print(f"{args.mb} MB of output, {args.rounds} interleaved rounds after a warm-up")
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        # `python -m` puts the working directory first on sys.path: started from a
        # checkout, every row would load that checkout, whatever PYTHONPATH says. Each
        # row runs in the scratch directory, and says which copy it loads.
        for version, env in versions.items():
            print(f"  {version}: runbook from {which(env, tmp)}")
        for label, template in WORKLOADS.items():
            command = template.format(size=size)
            book = Path(tmp, "book.md")
            book.write_text(f"## Print\n\n```sh\n{command}\n```\n")
            out = Path(tmp, "out")
            runs = Path(tmp, "runs")
            rows: dict[str, list[float]] = {"reference": [], "floor": []}
            rows.update({v: [] for v in versions})
            for round_ in range(args.rounds + 1):
                times = {"reference": timed(["sh", "-c", f"{command} > {out}"])}
                times["floor"] = timed([sys.executable, "-c", FLOOR, command, str(out)], env=ENV)
                for version, env in versions.items():
                    shutil.rmtree(runs, ignore_errors=True)
                    times[version] = timed(
                        [*runbook, "run", str(book), "--yes", "--runs-dir", str(runs)],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        env=env,
                        cwd=tmp,
                    )
                if round_:  # the first round warms caches
                    for row, seconds in times.items():
                        rows[row].append(seconds)
            transcript = next(runs.glob("*/transcript.jsonl"))
            check = subprocess.run(
                [*runbook, "transcript", "verify", str(transcript)],
                capture_output=True,
                env=mine,
                cwd=tmp,
            )
            assert check.returncode == 0, check.stdout
            ref, run = statistics.median(rows["reference"]), statistics.median(rows["runbook"])
            size_mb = transcript.stat().st_size / 1e6
            print(f"\n{label}: {command}")
            names = {"reference": "piped to a file", "runbook": "runbook run --yes"}
            names["floor"] = "floor (read, hash, write)"
            names["before"] = f"the same, {args.before}"
            for row, seconds in rows.items():
                median = statistics.median(seconds)
                print(
                    f"  {names[row]:26} best {min(seconds):6.3f} s  median {median:6.3f} s"
                    f"  {median / ref:5.2f}x"
                )
            ratio = run / ref
            print(
                f"  ratio of medians           {ratio:.2f}x"
                f"   (transcript {size_mb:.0f} MB, verified)"
            )


if __name__ == "__main__":
    main()
