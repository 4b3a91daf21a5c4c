"""A run killed mid-block verifies up to its last event and resumes at the right block."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from conftest import crash_mid_block, events, resume_run, run_cli, run_inline
from runbook import launch
from runbook.engine.operator import Decision, HeadlessOperator, ScriptedOperator
from runbook.record.chain import read_lines, verify
from runbook.transports.local import LocalTransport

BOOK = """## One

```sh
echo one >> {log}
```

## Two

```sh
echo two >> {log}
if [ ! -e {mark}.again ]; then touch {mark} {mark}.again; sleep 61.75; fi
echo two-done >> {log}
```

## Three

```sh
echo three >> {log}
```
"""


def kill_mid_block(tmp_path: Path) -> tuple[Path, Path, Path]:
    log, mark = tmp_path / "log", tmp_path / "mark"
    book = tmp_path / "book.md"
    book.write_text(BOOK.format(log=log, mark=mark))
    runs = tmp_path / "runs"
    crash_mid_block(["run", str(book), "--yes", "--runs-dir", str(runs)], mark, "sleep 61.75")
    return book, log, next(runs.glob("*/transcript.jsonl"))


def test_sigkill_mid_block_then_resume(tmp_path: Path) -> None:
    _, log, transcript = kill_mid_block(tmp_path)
    verdict = verify(transcript)
    assert verdict.ok and not verdict.complete
    types = [line.event["type"] for line in read_lines(transcript)]
    assert types[-1] == "block.start"
    assert run_cli("transcript", "verify", str(transcript)).returncode == 0
    report = run_cli("transcript", "render", str(transcript)).stdout
    assert "**INCOMPLETE**" in report

    operator = ScriptedOperator([("choose", Decision("rerun"))])
    done = resume_run(transcript, operator, transport=LocalTransport(grace=0.3))
    assert done.outcome.result == "ok"
    assert operator.asked == [
        ("choose", "Block two-1 was running when the run stopped: its outcome is unknown.")
    ]
    assert log.read_text() == "one\ntwo\ntwo\ntwo-done\nthree\n"
    second = transcript.parent / "transcript-2.jsonl"
    assert done.transcript == second
    first_event = next(read_lines(second)).event
    assert first_event["resumed_from"]["last_hash"] == verdict.last_hash
    assert first_event["prev"] == verdict.last_hash
    assert first_event["seq"] == verdict.lines + 1
    assert verify(second).ok and verify(second).complete
    blocks = [line.event for line in read_lines(second) if line.event["type"] == "block.start"]
    assert [(b["block"], b["attempt"]) for b in blocks] == [("two-1", 2), ("three-1", 1)]
    report = run_cli("transcript", "render", str(second)).stdout
    assert "**INCOMPLETE**" not in report
    assert "| Resumed |" in report
    # The first file has no end of its own: verify says where the run went on.
    said = run_cli("transcript", "verify", str(transcript)).stdout.splitlines()
    assert said[0].endswith("stopped here, continued in transcript-2.jsonl"), said
    assert said[1].endswith("complete") and "INCOMPLETE" not in "\n".join(said)


def test_unknown_block_can_be_marked_done(tmp_path: Path) -> None:
    _, log, transcript = kill_mid_block(tmp_path)
    operator = ScriptedOperator([("choose", Decision("mark-done", "checked by hand: it finished"))])
    done = resume_run(transcript, operator)
    assert done.outcome.result == "ok"
    assert log.read_text() == "one\ntwo\nthree\n"


def test_headless_resume_does_not_guess_about_an_unknown_block(tmp_path: Path) -> None:
    _, log, transcript = kill_mid_block(tmp_path)
    proc = run_cli("resume", str(transcript), "--yes")
    assert proc.returncode == 1
    assert "block two-1 was running when the run stopped" in proc.stderr
    assert "nothing was run" in proc.stderr
    assert log.read_text() == "one\ntwo\n"
    assert not (transcript.parent / "transcript-2.jsonl").exists()  # still resumable


def test_a_run_is_named_by_its_directory_too(tmp_path: Path) -> None:
    """What `ls runbook-runs` shows, with or without the slash a shell completes."""
    _, _, transcript = kill_mid_block(tmp_path)
    for name in (str(transcript.parent), f"{transcript.parent}/"):
        proc = run_cli("resume", name, "--yes")
        assert proc.returncode == 1 and "block two-1 was running" in proc.stderr, proc.stderr
        verified = run_cli("transcript", "verify", name)
        assert verified.returncode != 2 and "INCOMPLETE" in verified.stdout, verified
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_cli("resume", str(empty), "--yes")
    assert proc.returncode == 2 and "no transcript.jsonl in this directory" in proc.stderr


def test_resume_refuses_a_changed_runbook_unless_allowed(tmp_path: Path) -> None:
    book, _, transcript = kill_mid_block(tmp_path)
    book.write_text(book.read_text() + "\nA new line.\n")
    proc = run_cli("resume", str(transcript), "--yes")
    assert proc.returncode == 1
    assert "changed since the run started" in proc.stderr
    assert not (transcript.parent / "transcript-2.jsonl").exists()
    done = resume_run(
        transcript,
        ScriptedOperator([("choose", Decision("skip", "redo by hand"))]),
        allow_changed=True,
    )
    start = next(read_lines(done.transcript)).event
    assert start["allow_changed"]["recorded_sha256"] != start["allow_changed"]["now_sha256"]
    assert start["allow_changed"]["now_sha256"] == start["runbook"]["sha256"]


def test_a_finished_run_cannot_be_resumed(tmp_path: Path) -> None:
    book = tmp_path / "b.md"
    book.write_text("## S\n\n```sh\ntrue\n```\n")
    done = launch.run(
        str(book),
        assignments=(),
        runs=tmp_path,
        argv=[],
        announce=lambda _: None,
        operator=HeadlessOperator(yes=True),
    )
    with pytest.raises(launch.Refused) as refused:
        resume_run(done.transcript, HeadlessOperator(yes=True))
    said = str(refused.value)  # how it ended, and what the operator can do instead
    assert "the run already ended (ok: every step is done)" in said
    assert f"`runbook transcript render {done.transcript}`" in said and "new run" in said


def test_resume_reuses_the_runs_ssh_config_and_refuses_another(fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The ssh config decides which machine `host1` is: a resume runs with the run's (and
    its forks) unless told otherwise, and never with one edited or swapped unnoticed."""
    config = tmp_path / "ssh_config"
    config.write_text(fleet.ssh_config.read_text())
    log, mark = tmp_path / "log", tmp_path / "mark"
    book = tmp_path / "book.md"
    book.write_text(
        "---\nhosts:\n  web: [host1]\n---\n"
        + BOOK.format(log=log, mark=mark).replace("```sh\n", "```sh\n#| on: web\n")
    )
    runs = tmp_path / "runs"
    args = ["run", str(book), "--yes", "--runs-dir", str(runs), "--ssh-config", str(config)]
    crash_mid_block([*args, "--forks", "3"], mark, "sleep 61.75")
    transcript = next(runs.glob("*/transcript.jsonl"))
    recorded = next(read_lines(transcript)).event["ssh"]
    assert recorded["config"] == str(config.resolve()) and recorded["forks"] == 3

    other = tmp_path / "other_config"
    other.write_text(config.read_text())
    with pytest.raises(launch.Refused, match=r"the run used --ssh-config .*this resume gives"):
        resume_run(transcript, ScriptedOperator([]), ssh_config=other)
    config.write_text(config.read_text() + "# edited\n")
    with pytest.raises(launch.Refused, match="ssh_config changed since the run started"):
        resume_run(transcript, ScriptedOperator([]))
    assert not (transcript.parent / "transcript-2.jsonl").exists(), "refused: nothing recorded"

    operator = ScriptedOperator([("choose", Decision("rerun"))])
    done = resume_run(transcript, operator, allow_other_ssh_config=True)  # no --ssh-config
    assert done.outcome.result == "ok", done.outcome
    assert log.read_text() == "one\ntwo\ntwo\ntwo-done\nthree\n"
    start = next(read_lines(done.transcript)).event
    assert start["ssh"]["config"] == str(config.resolve()) and start["ssh"]["forks"] == 3
    assert "changed since the run started" in start["allow_other_ssh_config"]["problem"]
    hosts = {e["host"] for e in events(done.transcript) if e["type"] == "block.start"}
    assert hosts == {"host1"}


def test_a_rollout_killed_mid_host_resumes_on_the_hosts_that_had_not_finished(
    fleet, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """kill -9 while host2 runs (host1 done, host3 not started, one host at a time): the
    resume says which hosts finished, and re-run runs on host2 and host3 only."""
    mark = tmp_path / "mark"
    book = tmp_path / "book.md"
    book.write_text(
        "---\nhosts:\n  web: [host1, host2, host3]\n---\n## Deploy\n\n```sh\n#| name: deploy\n"
        "#| on: web\n#| confirm: Deploy?\n"
        f'case "$SSH_CONNECTION" in *" {fleet.hosts[1].address} "*)\n'
        f"  [ -e {mark}.again ] || {{ touch {mark} {mark}.again; sleep 62.25; }};;\nesac\n"
        "echo deployed\n```\n"
    )
    runs = tmp_path / "runs"
    config = str(fleet.ssh_config)
    args = ["run", str(book), "--yes", "--runs-dir", str(runs), "--ssh-config", config]
    crash_mid_block([*args, "--forks", "1"], mark, "sleep 62.25")
    transcript = next(runs.glob("*/transcript.jsonl"))
    first = [(e["type"], e.get("host")) for e in events(transcript) if e["type"] == "block.end"]
    assert first == [("block.end", "host1")], first

    operator = ScriptedOperator([("choose", Decision("rerun")), ("confirm", True)])
    done = resume_run(transcript, operator)
    assert done.outcome.result == "ok", done.outcome
    gate = next(e for e in events(done.transcript) if e["type"] == "gate.ask")
    assert gate["where"] == "on host2, host3 (done before: host1)"  # where it runs now
    asked = operator.asked[0][1]
    assert asked.endswith(
        ": it finished on host1; on host2 its outcome is unknown; host3 had not started."
        " Re-run runs it on host2, host3 only."
    ), asked
    again = [e for e in events(done.transcript) if e["type"] in ("block.start", "block.done")]
    assert [e.get("host") for e in again if e["type"] == "block.start"] == ["host2", "host3"]
    assert again[-1]["ok"] == ["host1", "host2", "host3"] and again[-1]["failed"] == {}
    assert verify(done.transcript).complete


def test_a_run_on_plain_prompts_resumes_on_plain_prompts(tmp_path: Path) -> None:
    """`runbook run` on a terminal asks in plain prompts; its resume on a terminal does too
    (not the console), and the operator kind on record stays `terminal`."""
    import signal

    from conftest import OnPty, live_processes, wait_for

    mark = tmp_path / "mark"
    book = tmp_path / "book.md"
    book.write_text(
        f"## Wait\n\n```sh\n[ -e {mark} ] || {{ touch {mark}; sleep 64.75; }}\necho waited\n```\n"
    )
    runs = tmp_path / "runs"
    first = OnPty(["run", str(book), "--runs-dir", str(runs)])
    wait_for(mark.exists, what="the block to start")
    first.proc.send_signal(signal.SIGKILL)
    first.wait()
    for pid in live_processes("sleep 64.75"):
        os.kill(pid, signal.SIGKILL)
    transcript = next(runs.glob("*/transcript.jsonl"))
    assert next(read_lines(transcript)).event["operator"] == "terminal"

    again = OnPty(["resume", str(transcript)])
    again.expect("its outcome is unknown")
    again.expect("[r]e-run, [m]ark done, [s]kip, abort [x]? ")
    again.send(b"r\n")
    assert again.wait() == 0, again.seen.decode(errors="replace")
    assert b"\x1b[?1049h" not in again.seen, "the console (alternate screen) opened"
    second = transcript.parent / "transcript-2.jsonl"
    assert next(read_lines(second)).event["operator"] == "terminal"


def _cut_after(transcript: Path, found: Any) -> None:
    """The record as ``kill -9`` leaves it: every line up to the first that ``found``."""
    lines = transcript.read_bytes().splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if found(json.loads(line)))
    transcript.write_bytes(b"".join(lines[: cut + 1]))


def test_a_re_run_of_a_done_steps_block_that_failed_is_offered_again_on_resume(
    tmp_path: Path,
) -> None:
    """Re-run from the palette after its step was done, a block fails, and the run dies at
    the failure menu. The resume offers it again in its own step; it used to walk past the
    done step and end "ok" with the block's last run failed."""
    count = tmp_path / "count"
    runs_twice = f"n=$(cat {count} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {count}"
    text = (
        f"## One\n\n```sh {{name=a}}\n{runs_twice}; [ $n -ne 2 ]\n```\n\n"
        "## Two\n\n```sh {name=b}\necho b\n```\n"
    )
    first = ScriptedOperator(
        [
            ("proceed", Decision("run")),
            ("proceed", Decision("run-other", block="a")),  # at b, in step two
            ("choose", Decision("abort")),
        ]
    )
    done = run_inline(tmp_path, text, first)
    _cut_after(done.transcript, lambda e: e["type"] == "block.end" and e["attempt"] == 2)
    again = resume_run(done.transcript, ScriptedOperator([]))
    assert again.outcome.result == "ok", again.outcome
    starts = [
        (e["block"], e["attempt"]) for e in events(again.transcript) if e["type"] == "block.start"
    ]
    assert starts == [("a", 3), ("b", 1)]


def test_an_older_attempt_ending_leaves_the_newer_one_running() -> None:
    """A background block run again beside itself: attempt 1 ending says nothing of
    attempt 2, which a crash leaves unknown, never settled."""
    from runbook.record.events import RunState

    state = RunState()
    for e in (
        {"type": "block.start", "block": "g", "attempt": 1},
        {"type": "block.start", "block": "g", "attempt": 2},
        {"type": "block.end", "block": "g", "attempt": 1, "exit": 0},
    ):
        state.apply(e)
    assert state.running == {"g": 2} and "g" not in state.blocks_settled


def test_a_block_whose_capture_failed_is_not_done_on_resume(tmp_path: Path) -> None:
    """Its end says exit 0, then its output cannot be captured (a NUL byte): it failed. A
    run killed at the failure menu, resumed, offers it again; it used to take it as done
    and run the next block without the value."""
    count = tmp_path / "count"
    runs_twice = f"n=$(cat {count} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {count}"
    text = (
        f"## One\n\n```sh {{name=a capture=X}}\n{runs_twice}\n"
        "[ $n -eq 1 ] && printf 'v\\0' || printf v2\n```\n\n"
        '## Two\n\n```sh {name=b}\necho "got=$X"\n```\n'
    )
    first = ScriptedOperator([("choose", Decision("abort"))])
    done = run_inline(tmp_path, text, first)
    _cut_after(done.transcript, lambda e: e["type"] == "note" and "capture_failed" in e)
    again = resume_run(done.transcript, ScriptedOperator([]))
    assert again.outcome.result == "ok", again.outcome
    resumed = events(again.transcript)
    began = [(e["block"], e["attempt"]) for e in resumed if e["type"] == "block.start"]
    assert began == [("a", 2), ("b", 1)]
    said = [e["text"] for e in resumed if e["type"] == "output" and e["block"] == "b"]
    assert said == ["got=v2\n"]


def test_an_unknown_outcome_is_asked_once_when_another_block_runs_before_its_re_run(
    tmp_path: Path,
) -> None:
    """Resumed with a block unknown, the operator chooses to re-run it, then first runs
    another block from the palette: the question is not put again."""
    text = (
        "## One\n\n```sh {name=a}\necho a\n```\n\n"
        "## Two\n\n```sh {name=b}\necho b\n```\n\n```sh {name=c}\necho c\n```\n"
    )
    done = run_inline(tmp_path, text, ScriptedOperator([]))
    _cut_after(done.transcript, lambda e: e["type"] == "block.start" and e["block"] == "b")
    operator = ScriptedOperator(
        [("choose", Decision("rerun")), ("proceed", Decision("run-other", block="a"))]
    )
    again = resume_run(done.transcript, operator)
    assert again.outcome.result == "ok", again.outcome
    assert [kind for kind, _ in operator.asked] == ["choose", "proceed"]
    began = [e["block"] for e in events(again.transcript) if e["type"] == "block.start"]
    assert began == ["a", "b", "c"]
