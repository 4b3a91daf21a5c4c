"""The `runbook` row of the shared SSH fan-out benchmark (shared/bench/fanout.py).

Runs `runbook run --yes` exactly as an operator would, in this process: a one-block
runbook whose block runs $BENCH_CMD on every host of $BENCH_HOSTS_FILE, with the fleet's
OpenSSH client config (strict host keys, the fleet's key) and --forks N. Then it reads
each host's stdout and exit status back from the transcript into $BENCH_OUT/<host>.out
and .rc (the harness's `files` collector), so the harness checks every byte. That
read-back streams (an event at a time) and is timed apart from the run, on stderr.

Use (see docs/performance.md): copy this file to shared/bench/drivers/, install runbook
into the bench venv, and run fanout.py with bench/fanout_tools.toml.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from pathlib import Path

from runbook.cli import main as runbook

E = os.environ
hosts = Path(E["BENCH_HOSTS_FILE"]).read_text().split()
work = Path.cwd()
book = work / "fanout.md"
book.write_text(
    "---\nhosts:\n  fleet: [" + ", ".join(hosts) + "]\n---\n\n"
    "## Fan out\n\n```sh\n#| on: fleet\n" + E["BENCH_CMD"] + "\n```\n"
)
argv = ["run", str(book), "--yes", "--runs-dir", str(work / "runs")]
argv += ["--ssh-config", E["BENCH_SSH_CONFIG"], "--forks", str(len(hosts))]
sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the operator's display is not measured output
started = time.perf_counter()
code = runbook(argv)
ran = time.perf_counter() - started
# The read-back streams: one event at a time, each host's bytes appended to its file, so
# that neither its time nor its memory is taken for the run's.
out = Path(E["BENCH_OUT"])
files = {h: (out / f"{h}.out").open("wb") for h in hosts}
status: dict[str, int] = {}
with next((work / "runs").glob("*/transcript.jsonl")).open("rb") as transcript:
    for line in transcript:
        event = json.loads(line)
        host = event.get("host")
        if event["type"] == "output" and event["stream"] == "stdout":
            text = event.get("text")
            files[host].write(base64.b64decode(event["b64"]) if text is None else text.encode())
        elif event["type"] == "block.end" and host:
            status[host] = event["exit"] if event["exit"] is not None else 255
for host, handle in files.items():
    handle.close()
    (out / f"{host}.rc").write_text(str(status.get(host, 255)))
read = time.perf_counter() - started - ran
print(f"runbook_fanout: run {ran:.3f} s, read-back {read:.3f} s", file=sys.stderr)
sys.exit(code)
