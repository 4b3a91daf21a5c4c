"""What does reading the variables cost the wrapper, by the payload's size and shape?

Runs runbook's real wrapper (`remote_command`, script `true`) under the local `sh`, as a
host's login shell would, with the payload on stdin (`env_payload` of one variable), once
with each reader: the shell's `read` loop (what `LOOP_BYTES` picks for a small payload)
and `cat` (a large one). CPU of the child processes per run, and the ratio to the same
wrapper reading no variables (reference, measured in the same process).
Usage: python bench/payload_cost.py [--budget 1.0]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import time

from runbook.transports.wrapper import LOOP_BYTES, env_payload, remote_command

SHAPES = {
    "200 bytes, one line": "v" * 200,
    "1 KB, one line": "v" * 1024,
    "4 KB, one line": "v" * 4096,
    "100 KB, one line": "v" * 100_000,
    "1,000 lines": "x'\n" * 1000,
    "10,000 lines": "x'\n" * 10_000,
    "40,000 lines": "x'\n" * 40_000,
}


def children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cost(command: str, payload: bytes | None, budget: float) -> float:
    """Seconds of CPU a run, over as many runs as fit ``budget`` seconds (at least 2)."""
    runs, began, cpu = 0, time.monotonic(), children()
    while runs < 2 or time.monotonic() - began < budget:
        done = subprocess.run(["sh", "-c", command], input=payload or b"", capture_output=True)
        assert done.returncode == 0, done
        runs += 1
    return (children() - cpu) / runs


def main(budget: float) -> None:
    token = "0123456789abcdef"
    reference = cost(
        remote_command("true", shell="sh", cwd=None, token=token, payload_size=0), None, budget
    )
    print(f"the wrapper reading no variables (reference): {reference * 1000:.2f} ms of CPU a run")
    print(f"{'one variable':<22} {'payload':>9}  {'read loop':>18}  {'cat':>18}  picked")
    for label, value in SHAPES.items():
        payload = env_payload({"VALUE": value})
        row = []
        for size in (1, LOOP_BYTES + 1):  # forces the loop, then cat
            command = remote_command("true", shell="sh", cwd=None, token=token, payload_size=size)
            took = cost(command, payload, budget)
            row.append(f"{took * 1000:8.2f} ms {took / reference:6.2f}x")
        picked = "cat" if len(payload) > LOOP_BYTES else "read loop"
        print(f"{label:<22} {len(payload):>9,}  {row[0]:>18}  {row[1]:>18}  {picked}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--budget", type=float, default=1.0, help="seconds per cell, at least 2 runs")
    main(ap.parse_args().budget)
