"""Paired ratios from the shared fan-out harness's results: each row against asyncssh-raw
in the same round, then the median over every round of every results directory given.

The harness runs the rows of a round one after another, so a round's ratio cancels most of
the machine's drift; on a noisy 2-core machine single cells move by 10-20% between
sessions, and pooling rounds from several sessions is what resolves a change of a few per
cent. Warm-up and failed runs are left out; a round without a raw run is skipped.

The harness times the runbook row's whole process, which includes the driver reading every
host's output back out of the transcript for the harness to check (its streamed read-back,
which raw does not need: it writes its files from memory). The driver prints that time on
stderr. When the harness kept its runs next to the results (``--results R --work R/work
--keep-runs``), a "run" figure is added: the wall time less the read-back, what an
operator waits for ``runbook run``.

Usage: python bench/fanout_pairs.py R/STAMP [R2/STAMP ...]
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

REFERENCE = "asyncssh-raw"
FIGURES = {"wall": "wall", "host CPU": "hostcpu", "client CPU": "cpu"}
READ_BACK = re.compile(rb"runbook_fanout: run [0-9.]+ s, read-back ([0-9.]+) s")


def read_back(directory: Path, run: dict[str, object]) -> float | None:
    """Seconds the runbook driver spent reading the transcript back, from its kept stderr."""
    kept = directory.parent / "work" / "runs" / str(run["workload"]) / f"n{run['n']}"
    path = kept / str(run["tool"]) / f"r{run['round']}" / "stderr"
    found = READ_BACK.search(path.read_bytes()) if path.is_file() else None
    return float(found.group(1)) if found else None


def main(directories: list[Path]) -> None:
    rounds: dict[tuple[str, int, Path, int], dict[str, dict[str, float]]] = defaultdict(dict)
    for directory in directories:
        for line in (directory / "runs.jsonl").read_text().splitlines():
            run = json.loads(line)
            if run.get("warmup") or not run.get("ok"):
                continue
            run["read_back"] = read_back(directory, run)
            rounds[(run["workload"], run["n"], directory, run["round"])][run["tool"]] = run
    ratios: dict[tuple[str, int, str], dict[str, list[float]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for (workload, n, _, _), tools in rounds.items():
        reference = tools.get(REFERENCE)
        if reference is None:
            continue
        for tool, run in tools.items():
            if tool == REFERENCE:
                continue
            for figure, key in FIGURES.items():
                ratios[(workload, n, tool)][figure].append(run[key] / reference[key])
            if (back := run.get("read_back")) is not None:
                ratios[(workload, n, tool)]["run"].append((run["wall"] - back) / reference["wall"])
    print(f"median of per-round ratios to {REFERENCE}, over {len(directories)} results")
    for (workload, n, tool), figures in sorted(ratios.items()):
        count = len(figures["wall"])
        if "run" in figures and len(figures["run"]) != count:
            del figures["run"]  # not every round's read-back was kept: no figure
        shown = "  ".join(f"{f} {statistics.median(v):.2f}x" for f, v in figures.items())
        print(f"  {workload:5} {n:4}  {tool:16} {count:3} rounds  {shown}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main([Path(arg) for arg in sys.argv[1:]])
