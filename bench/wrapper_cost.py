"""What does runbook's remote wrapper cost a host? CPU on the machine (every process but
this client) per command, over one SSH connection, for a bare `echo hello` (reference)
and the same command as `runbook` sends it (`remote_command`), with and without variables.

Needs a host of the shared fleet (`../shared/bench/sshd_fleet.sh start 1`); the machine
should be otherwise idle, since host CPU is read from /proc/stat. Prints ms a command and
the ratio to the reference, per round; the rounds are interleaved.
Usage: python bench/wrapper_cost.py [--host 127.0.0.2] [--n 100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time

import asyncssh

from runbook.transports.wrapper import Leader, env_payload, new_token, remote_command

FLEET = os.environ.get("FLEET_DIR", "/tmp/bench-fleet")


def busy() -> float:
    """Seconds of CPU the whole machine has spent busy (not idle, not waiting on I/O)."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def own() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _without_setsid(token: str) -> str:
    """The wrapper, but in the login shell's session: what `setsid` costs, by difference."""
    command = remote_command("echo hello\n", shell="sh", cwd=None, token=token, payload_size=0)
    return command.replace("exec setsid -w sh -c", "exec sh -c", 1)


async def main(host: str, n: int, rounds: int) -> None:
    script = "echo hello\n"
    token = new_token()
    variants = {
        "echo hello (reference)": ("echo hello", None),
        "runbook's wrapper, a variable": (
            remote_command(script, shell="sh", cwd=None, token=token, payload_size=16),
            env_payload({"VERSION": "v1"}),
        ),
        "runbook's wrapper, no variables": (
            remote_command(script, shell="sh", cwd=None, token=token, payload_size=0),
            None,
        ),
        # Its parts, for scale only (neither is a wrapper runbook could send):
        "  - the same without setsid": (_without_setsid(token), None),
        "  - setsid and sh alone": ("exec setsid -w sh -c 'echo hello'", None),
    }
    async with asyncssh.connect(
        host,
        port=int(os.environ.get("FLEET_PORT", "2222")),
        username=os.environ.get("FLEET_USER", "benchfan"),
        client_keys=[f"{FLEET}/client_key"],
        known_hosts=f"{FLEET}/known_hosts",
    ) as conn:
        for round_ in range(rounds + 1):
            costs: dict[str, float] = {}
            for label, (command, payload) in variants.items():
                mine, machine, started = own(), busy(), time.perf_counter()
                for _ in range(n):
                    done = await conn.run(command, input=payload, check=True, encoding=None)
                    leader = Leader(token)  # the wrapper's first line names its group
                    assert leader.feed(done.stdout) + leader.end() == b"hello\n", done
                hosts = (busy() - machine) - (own() - mine)
                costs[label] = hosts / n
                wall = (time.perf_counter() - started) / n
                if round_:  # the first round warms caches
                    ratio = costs[label] / next(iter(costs.values()))
                    print(f"{label:34} host CPU {costs[label] * 1000:5.2f} ms  {ratio:4.2f}x"
                          f"  wall {wall * 1000:5.2f} ms")  # fmt: skip
            if round_:
                print()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--host", default="127.0.0.2")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    asyncio.run(main(args.host, args.n, args.rounds))
