"""Bake time between batches, over a real sshd fleet: health checks every interval, a failed
check stops the rollout before the next batch, the operator's decision, interrupt, resume."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from conftest import crash_mid_block, events, resume_run, wait_for
from conftest import run_on_fleet as run
from runbook.engine.operator import Decision, HeadlessOperator, ScriptedOperator
from runbook.format.parser import parse_file
from runbook.record.chain import verify
from runbook.record.progress import DONE, PENDING, UNKNOWN, Progress
from runbook.record.report import render_run
from runbook.record.runs import replay

# The host's own address: every sshd of the fleet runs on this machine, one per address.
ADDRESS = "$(echo $SSH_CONNECTION | cut -d' ' -f3)"


def counting_check(tmp_path: Path, fails_when: str) -> str:
    """A health check that counts its runs per host and fails when ``[ $n <fails_when> ]``."""
    count = tmp_path / "count"
    return (
        f"f={count}.{ADDRESS}\n"
        'n=$(( $(cat "$f" 2>/dev/null || echo 0) + 1 )); echo "$n" > "$f"\n'
        'echo "check $n"\n'
        f"! [ $n {fails_when} ]\n"
    )


def book(tmp_path: Path, hosts: str, bake: str, check: str, more: str = "") -> Path:
    path = tmp_path / "book.md"
    path.write_text(
        f"---\nhosts:\n  web: [{hosts}]\n  lb: [host6]\n---\n\n## Roll out\n\n"
        f"```sh\n#| name: deploy\n#| on: web\n#| serial: 1\n{bake}echo deployed\n```\n\n"
        f"```sh\n#| name: healthy\n#| on: web\n#| health: true\n{check}```\n{more}"
    )
    return path


def of(evs: list[dict[str, Any]], type_: str, **match: Any) -> list[dict[str, Any]]:
    return [e for e in evs if e["type"] == type_ and all(e.get(k) == v for k, v in match.items())]


def bake_runs(evs: list[dict[str, Any]], type_: str = "block.start") -> list[tuple[Any, ...]]:
    return [
        (e["block"], e.get("host", "local"), e["bake"]["batch"], e["bake"]["round"], e["attempt"])
        for e in evs
        if e["type"] == type_ and "bake" in e
    ]


ROLLBACK = "\n```sh\n#| rollback: true\necho undone\n```\n"


@pytest.mark.parametrize("choice", ["abort", "rollback"])
def test_a_check_failing_in_the_second_round_stops_before_the_next_batch(
    fleet: Any, tmp_path: Path, choice: str
) -> None:
    path = book(
        tmp_path,
        "host1, host2, host3",
        "#| bake: 30s\n#| health-interval: 100ms\n",
        counting_check(tmp_path, "-ge 2"),
        ROLLBACK,
    )
    answers: list[tuple[str, Any]] = [("choose", Decision(choice))]
    if choice == "rollback":
        answers.append(("confirm", True))  # "Run rollback block roll-out-3?"
    operator = ScriptedOperator(answers)
    done = run(fleet, path, operator)
    assert done.outcome.result == {"abort": "aborted", "rollback": "rolled-back"}[choice]
    assert verify(done.transcript).ok
    evs = events(done.transcript)

    deployed = [e["host"] for e in of(evs, "block.start", block="deploy")]
    assert deployed == ["host1"], "the rollout stopped before batch 2"
    assert not of(evs, "gate.ask", gate="batch")
    start = of(evs, "bake.start")
    assert [
        {k: e[k] for k in ("block", "batch", "of", "hosts", "seconds", "interval", "checks")}
        for e in start
    ] == [
        {
            "block": "deploy",
            "batch": 1,
            "of": 3,
            "hosts": ["host1"],
            "seconds": 30.0,
            "interval": 0.1,
            "checks": ["healthy"],
        }
    ]
    # Round by round, on the batch's host only, the round as the attempt number.
    assert bake_runs(evs) == [("healthy", "host1", 1, 1, 1), ("healthy", "host1", 1, 2, 2)]
    ends = {e["bake"]["round"]: e for e in evs if e["type"] == "block.end" and "bake" in e}
    assert (ends[1]["exit"], ends[2]["exit"]) == (0, 1)
    outputs = [e for e in evs if e["type"] == "output" and e["block"] == "healthy"]
    assert [(e["bake"]["round"], e["text"]) for e in outputs] == [
        (1, "check 1\n"),
        (2, "check 2\n"),
    ]
    (end,) = of(evs, "bake.end")
    assert (end["result"], end["rounds"], end["failed"]) == (
        "failed",
        2,
        {"healthy on host1": "exit 1"},
    )
    (decision,) = of(evs, "decision")
    assert (decision["kind"], decision["choice"]) == ("bake", choice)
    assert "a health check failed while baking after batch 1/3, in round 2" in decision["problem"]
    order = [e["type"] for e in evs]
    assert order.index("bake.end") < order.index("decision")
    undone = of(evs, "block.end", block="roll-out-3")
    assert [e["exit"] for e in undone] == ([0] if choice == "rollback" else [])
    # The walk never reached the health check itself: the bake runs are not its own.
    assert "healthy" not in replay(done.transcript).state.attempts
    report = render_run(done.transcript)
    assert "After batch 1/3 (host1): **failed** after 2 rounds in " in report
    assert f"Decisions: bake: {choice} by operator" in report
    assert "Health runs: 1 passed, 1 failed or unfinished." in report
    failed_run = report.split("#### `healthy` on host1, bake round 2 after batch 1\n")[1]
    assert failed_run.split("####")[0].count("check 2") == 1
    assert "| `deploy` bake after batch 1/3 | host1 |" in report
    assert "bake failed, 2 rounds; healthy on host1: exit 1" in report


def test_a_passing_bake_goes_on_to_the_next_batch(fleet: Any, tmp_path: Path) -> None:
    lb = tmp_path / "lb-checked"
    local = tmp_path / "local-checked"
    more = (
        # A check from a host outside the batch (a load balancer) runs there; a local one here.
        f"\n```sh\n#| name: from-lb\n#| on: lb\n#| health: true\necho lb >> {lb}\n```\n"
        f"\n```sh\n#| name: here\n#| health: true\necho here >> {local}\n```\n"
    )
    path = book(
        tmp_path,
        "host1, host2",
        "#| bake: 600ms\n#| health-interval: 150ms\n",
        counting_check(tmp_path, "-lt 0"),  # never fails
        more,
    )
    operator = ScriptedOperator([("confirm", True)])
    done = run(fleet, path, operator)
    assert done.outcome.result == "ok", done.outcome
    assert verify(done.transcript).ok
    evs = events(done.transcript)
    (end,) = of(evs, "bake.end")
    rounds = end["rounds"]
    assert (end["result"], end["batch"]) == ("ok", 1) and rounds >= 1
    assert "failed" not in end
    runs = bake_runs(evs)
    for r in range(1, rounds + 1):
        assert sorted(x for x in runs if x[3] == r) == [
            ("from-lb", "host6", 1, r, r),
            ("healthy", "host1", 1, r, r),
            ("here", "local", 1, r, r),
        ]
    assert len(runs) == 3 * rounds
    order = [(e["type"], e.get("host")) for e in evs]
    assert order.index(("bake.end", None)) < order.index(("block.start", "host2"))
    assert operator.asked == [("confirm", "deploy: 1 ok. Go on with batch 2/2: host2?")]
    # Then each check runs where it is written, as its own first attempt.
    walk = [
        (e["block"], e.get("host"), e["attempt"]) for e in of(evs, "block.start") if "bake" not in e
    ]
    assert walk[:2] == [("deploy", "host1", 1), ("deploy", "host2", 1)]
    assert sorted(walk[2:4]) == [("healthy", "host1", 1), ("healthy", "host2", 1)]
    assert walk[4:] == [("from-lb", "host6", 1), ("here", None, 1)]
    assert local.read_text() == "here\n" * (rounds + 1)
    report = render_run(done.transcript)
    plural = "s" * (rounds != 1)  # a loaded machine may fit only one round in 600 ms
    assert f"After batch 1/2 (host1): **ok** after {rounds} round{plural} in " in report
    assert "Bake 600 ms, health every 150 ms: `healthy`, `from-lb`, `here`." in report
    assert f"Health runs: {3 * rounds} passed, 0 failed or unfinished." in report


def test_retry_bakes_the_batch_again(fleet: Any, tmp_path: Path) -> None:
    # Room for a second health run however slow the machine: with 500 ms, a loaded run
    # fitted one check in the bake, which passed, and nothing was left to retry.
    path = book(
        tmp_path,
        "host1, host2",
        "#| bake: 3s\n#| health-interval: 100ms\n",
        counting_check(tmp_path, "-eq 2"),  # only the second run fails
    )
    operator = ScriptedOperator([("choose", Decision("retry")), ("confirm", True)])
    done = run(fleet, path, operator)
    assert done.outcome.result == "ok", done.outcome
    evs = events(done.transcript)
    assert [e["result"] for e in of(evs, "bake.end")] == ["failed", "ok"]
    assert [e["batch"] for e in of(evs, "bake.start")] == [1, 1]
    (decision,) = of(evs, "decision")
    assert (decision["kind"], decision["choice"]) == ("bake", "retry")
    runs = bake_runs(evs)
    assert runs[:3] == [
        ("healthy", "host1", 1, 1, 1),
        ("healthy", "host1", 1, 2, 2),
        ("healthy", "host1", 1, 1, 1),  # the second bake counts its rounds from 1 again
    ]
    assert [e["host"] for e in of(evs, "block.start", block="deploy")] == ["host1", "host2"]
    assert verify(done.transcript).ok


def _interrupt_once_baking(runs: Path) -> None:
    """Ctrl-C as soon as the bake has begun (its start is on disk before it waits)."""

    def baking() -> bool:
        return any(
            e["type"] == "bake.start" for t in runs.glob("*/transcript.jsonl") for e in events(t)
        )

    try:
        wait_for(baking, what="the bake to start")
    finally:  # never leave the run baking for a minute
        os.kill(os.getpid(), signal.SIGINT)


def test_an_interrupted_bake_can_go_on(fleet: Any, tmp_path: Path) -> None:
    path = book(
        tmp_path,
        "host1, host2",
        "#| bake: 10m\n#| health-interval: 5m\n",
        counting_check(tmp_path, "-lt 0"),
    )
    threading.Thread(target=_interrupt_once_baking, args=(tmp_path / "runs",), daemon=True).start()
    operator = ScriptedOperator([("choose", Decision("go-on")), ("confirm", True)])
    done = run(fleet, path, operator)
    assert done.outcome.result == "ok", done.outcome
    evs = events(done.transcript)
    (end,) = of(evs, "bake.end")
    assert (end["result"], end["rounds"]) == ("interrupted", 0)
    assert operator.asked[0][1].startswith(
        "The bake of deploy after batch 1/2 was interrupted after 0 rounds"
    )
    (decision,) = of(evs, "decision")
    assert (decision["kind"], decision["choice"]) == ("bake", "go-on")
    assert [e["host"] for e in of(evs, "block.start", block="deploy")] == ["host1", "host2"]
    assert verify(done.transcript).ok


def test_yes_aborts_at_a_failed_bake(
    fleet: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = book(
        tmp_path,
        "host1, host2",
        "#| bake: 30s\n#| health-interval: 100ms\n",
        counting_check(tmp_path, "-ge 1"),
    )
    done = run(fleet, path, HeadlessOperator(yes=True))
    assert done.outcome.result == "aborted"
    evs = events(done.transcript)
    (decision,) = of(evs, "decision")
    assert (decision["kind"], decision["choice"], decision["by"]) == ("bake", "abort", "auto")
    assert [e["host"] for e in of(evs, "block.start", block="deploy")] == ["host1"]
    shown = capsys.readouterr().out
    assert "~~~ deploy: baking 30s after batch 1/2, health every 0.1s (healthy)\n" in shown
    assert "--> healthy on host1 (bake round 1)\nhost1 | check 1\n" in shown
    assert "~~~ deploy: bake after batch 1 failed after 1 round (healthy on host1: exit 1)" in shown


def test_resume_after_a_crash_while_baking(fleet: Any, tmp_path: Path) -> None:
    mark = tmp_path / "mid-check"
    check = counting_check(tmp_path, "-lt 0") + (
        f'if [ "$n" = 2 ] && [ ! -e {mark} ]; then touch {mark}; sleep 61.375; fi\n'
    )
    path = book(tmp_path, "host1, host2", "#| bake: 5m\n#| health-interval: 100ms\n", check)
    runs = tmp_path / "runs"
    args = [
        "run",
        str(path),
        "--yes",
        "--runs-dir",
        str(runs),
        "--ssh-config",
        str(fleet.ssh_config),
    ]
    crash_mid_block(args, mark, "sleep 61.375")  # in the second round's check
    transcript = next(runs.glob("*/transcript.jsonl"))
    last = [e for e in events(transcript) if e["type"] != "output"][-1]
    assert last["type"] == "block.start" and last["bake"]["round"] == 2, last
    recorded = replay(transcript)
    assert recorded.state.running == {"deploy": 1}, "only the baked block is unknown"
    assert "healthy" not in recorded.state.attempts
    # What the console shows of it on resume: the same, and the bake as stopped.
    progress = Progress(parse_file(path).runbook)  # type: ignore[arg-type]
    for event in recorded.history:
        progress.apply(event)
    progress.stopped()
    assert (progress.block("deploy").status, progress.block("healthy").status) == (
        UNKNOWN,
        PENDING,
    )
    bake = progress.block("deploy").bake
    assert bake is not None and (bake.result, bake.rounds) == ("stopped", 2)
    assert [(r.round, r.target, r.status) for r in bake.runs.values()] == [
        (1, "host1", DONE),
        (2, "host1", UNKNOWN),
    ]
    assert progress.baking is None

    operator = ScriptedOperator([("choose", Decision("mark-done", "host2 deployed by hand"))])
    done = resume_run(transcript, operator, ssh_config=fleet.ssh_config)
    assert done.outcome.result == "ok", done.outcome
    assert operator.asked == [
        (
            "choose",
            "Block deploy was running on hosts when the run stopped: it finished on host1;"
            " host2 had not started. Re-run runs it on host2 only.",
        )
    ]
    after = events(done.transcript)
    walk = [(e["block"], e["host"], e["attempt"]) for e in of(after, "block.start")]
    assert walk == [("healthy", "host1", 1), ("healthy", "host2", 1)]
    assert verify(done.transcript).ok
    assert "**INCOMPLETE**" not in render_run(done.transcript)
