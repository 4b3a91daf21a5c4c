"""Running runbooks: the session, local execution, and what lands in the transcript."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import stat
import threading
from pathlib import Path

import pytest

from conftest import RUNBOOKS, events, live_processes, run_cli, run_inline, wait_for
from runbook.engine.operator import Decision, HeadlessOperator, ScriptedOperator
from runbook.record.chain import verify


def recorded(transcript: Path, block: str, stream: str = "stdout") -> bytes:
    """The exact bytes the transcript holds for one block's stream (all attempts)."""
    out = bytearray()
    for e in events(transcript):
        if e["type"] == "output" and e["block"] == block and e["stream"] == stream:
            out += base64.b64decode(e["b64"]) if "b64" in e else e["text"].encode()
    return bytes(out)


def test_hello_runs_headless_and_records_everything(tmp_path: Path) -> None:
    proc = run_cli("run", "runbooks/hello.md", "--yes", "--runs-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    transcript = next(tmp_path.glob("*/transcript.jsonl"))
    assert f"recording to {transcript}" in proc.stderr
    assert f"transcript {transcript}" in proc.stderr
    assert "hello from runbook" in proc.stdout
    check = run_cli("transcript", "verify", str(transcript))
    assert check.returncode == 0
    assert "intact" in check.stdout and "complete" in check.stdout
    report = run_cli("transcript", "render", str(transcript)).stdout
    for e in events(transcript):
        if e["type"] == "block.start":
            assert e["command"].strip() in report
    assert "hello from runbook" in report
    assert "| Result | **ok**: every step is done |" in report
    assert stat.S_IMODE(transcript.stat().st_mode) == 0o600
    assert stat.S_IMODE(transcript.parent.stat().st_mode) == 0o700
    assert (transcript.parent / "runbook.md").read_bytes() == (RUNBOOKS / "hello.md").read_bytes()
    start = events(transcript)[0]
    assert (
        start["runbook"]["sha256"]
        == hashlib.sha256((RUNBOOKS / "hello.md").read_bytes()).hexdigest()
    )
    answers = [e for e in events(transcript) if e["type"] in ("gate.answer", "check.tick")]
    assert answers and all(e["by"] == "auto" for e in answers)


def test_gates_without_a_terminal_are_refused_before_anything_runs(tmp_path: Path) -> None:
    proc = run_cli("run", "runbooks/hello.md", "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 1
    assert "has a gate, and there is no terminal to ask" in proc.stderr
    assert "nothing was run" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_variables_reach_commands_only_as_environment(tmp_path: Path) -> None:
    pwned = tmp_path / "pwned"
    text = """---
variables:
  A: {}
  B: {}
---
## Echo

```sh
#| confirm: Echo $A and $B?
printf '[%s]\\n' "$A" $B
```
"""
    values = (f"A='; touch {pwned} #", f"B=$(touch {pwned}2)")
    done = run_inline(tmp_path, text, vars=values)
    assert done.outcome.result == "ok"
    assert not pwned.exists() and not Path(f"{pwned}2").exists()
    out = recorded(done.transcript, "echo-1")
    assert out == f"['; touch {pwned} #]\n[$(touch]\n[{pwned}2)]\n".encode()
    ask = next(e for e in events(done.transcript) if e["type"] == "gate.ask")
    assert ask["prompt"] == f"Echo '; touch {pwned} # and $(touch {pwned}2)?"
    assert ask["command"] == "printf '[%s]\\n' \"$A\" $B\n"


def test_a_secret_never_reaches_the_run_directory(tmp_path: Path) -> None:
    secret = "hunter2-s3cr3t-VALUE"
    text = """---
variables:
  TOKEN:
    secret: true
---
## Leak it

```sh
printf 'whole: %s\\n' "$TOKEN"
printf '%.7s' "$TOKEN"; printf '%s\\n' "${TOKEN#???????}"
printf 'err: %s\\n' "$TOKEN" >&2
echo "done"
```
"""
    done = run_inline(tmp_path, text, vars=(f"TOKEN={secret}",))
    assert done.outcome.result == "ok"
    stdout = recorded(done.transcript, "leak-it-1")
    assert stdout == b"whole: ********\n********\ndone\n"
    assert recorded(done.transcript, "leak-it-1", "stderr") == b"err: ********\n"
    for path in done.transcript.parent.rglob("*"):
        data = path.read_bytes()
        assert secret.encode() not in data, path
        assert base64.b64encode(secret.encode())[:12] not in data, path
    report = launch_render(done.transcript)
    assert secret not in report
    start = events(done.transcript)[0]
    assert start["secrets"] == ["TOKEN"] and start["variables"] == {"TOKEN": None}


def launch_render(transcript: Path) -> str:
    from runbook.record.report import render_run

    return render_run(transcript)


def test_large_and_invalid_utf8_output_is_recorded_exactly(tmp_path: Path) -> None:
    data = tmp_path / "data.bin"
    text = f"""## Dump

```sh
head -c 50000000 /dev/urandom > {data}
cat {data}
```

## Text

```sh
i=0; while [ $i -lt 20000 ]; do printf 'é%05d€\\n' $i; i=$((i+1)); done
```
"""
    done = run_inline(tmp_path, text)
    assert done.outcome.result == "ok"
    got = recorded(done.transcript, "dump-1")
    assert len(got) == 50_000_000
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data.read_bytes()).hexdigest()
    text_out = recorded(done.transcript, "text-1")
    assert text_out.decode("utf-8").count("€\n") == 20000
    text_events = [
        e for e in events(done.transcript) if e["type"] == "output" and e["block"] == "text-1"
    ]
    assert all("text" in e for e in text_events), "valid UTF-8 split across reads stays text"
    end = next(e for e in events(done.transcript) if e["type"] == "block.end")
    assert end["bytes"]["stdout"] == 50_000_000
    assert verify(done.transcript).ok


def test_timeout_stops_the_whole_group(tmp_path: Path) -> None:
    text = """## Hang

```bash
#| timeout: 1s
trap '' INT TERM
sleep 61.25 &
sleep 61.25
```
"""
    operator = ScriptedOperator([("choose", Decision("abort"))])
    done = run_inline(tmp_path, text, operator)
    assert done.outcome.result == "aborted"
    end = next(e for e in events(done.transcript) if e["type"] == "block.end")
    assert end["timed_out"] and end["signal"] == "SIGKILL"
    assert live_processes("sleep 61.25") == []


def test_an_interrupt_stops_the_block_and_asks(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    text = f"""## Hang

```bash
#| timeout: 60s
touch {marker}
sleep 61.5 &
sleep 61.5
```
"""

    def interrupt_when_started() -> None:
        try:
            wait_for(marker.exists, what="the block to start")
        finally:  # never leave the run waiting on its sleep
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_when_started, daemon=True).start()
    operator = ScriptedOperator([("choose", Decision("skip", "interrupted on purpose"))])
    done = run_inline(tmp_path, text, operator)
    assert done.outcome.result == "ok"
    evs = events(done.transcript)
    end = next(e for e in evs if e["type"] == "block.end")
    assert end["interrupted"] and end["signal"] == "SIGINT"
    skip = next(e for e in evs if e["type"] == "block.skip")
    assert skip["reason"] == "interrupted on purpose"
    assert live_processes("sleep 61.5") == []


def test_a_headless_interrupt_aborts_even_where_the_runbook_rolls_back_failures(
    tmp_path: Path,
) -> None:
    """`on-failure: rollback` is for failures; Ctrl-C is someone stopping the run: it ends
    as theirs, with no automatic decision at all."""
    marker = tmp_path / "started"
    text = f"""---
on-failure: rollback
---
## Hang

```bash
#| timeout: 60s
touch {marker}
sleep 62.5
```

```bash
#| rollback: true
echo undoing
```
"""

    def interrupt_when_started() -> None:
        try:
            wait_for(marker.exists, what="the block to start")
        finally:
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_when_started, daemon=True).start()
    done = run_inline(tmp_path, text, HeadlessOperator(yes=True))
    assert (done.outcome.result, done.outcome.exit_code) == ("aborted", 130), done.outcome
    assert done.outcome.message == "interrupted by the operator"
    evs = events(done.transcript)
    assert not any(e["type"] in ("decision", "rollback.start") for e in evs)
    assert live_processes("sleep 62.5") == []


CHECKLIST = """---
variables:
  DATABASE:
    choices: [orders, billing]
---
## Pre-flight

- [ ] Ticket approved
- [ ] Backup verified

## Migrate

```sh
#| type-to-confirm: $DATABASE
echo "migrating $DATABASE"
```

- [ ] Dashboard is green
"""


def test_checklists_and_typed_confirmation_through_a_script(tmp_path: Path) -> None:
    operator = ScriptedOperator(
        [
            ("value", "orders"),
            ("tick", Decision("ticked")),
            ("tick", Decision("skipped", "backup job is down, accepted by the lead")),
            ("type", "order"),
            ("choose", Decision("skip", "typo, will redo")),
            ("tick", Decision("ticked")),
        ]
    )
    done = run_inline(tmp_path, CHECKLIST, operator)
    assert done.outcome.result == "ok"
    evs = events(done.transcript)
    ticks = [
        (e["text"], e["result"], e["reason"], e["by"]) for e in evs if e["type"] == "check.tick"
    ]
    assert ticks == [
        ("Ticket approved", "ticked", None, "operator"),
        ("Backup verified", "skipped", "backup job is down, accepted by the lead", "operator"),
        ("Dashboard is green", "ticked", None, "operator"),
    ]
    answer = next(e for e in evs if e["type"] == "gate.answer")
    assert (answer["answer"], answer["accepted"]) == ("order", False)
    assert not any(e["type"] == "block.start" for e in evs)
    operator = ScriptedOperator(
        [("value", "billing"), ("tick", None), ("tick", None), ("type", "billing"), ("tick", None)]
    )
    done = run_inline(tmp_path, CHECKLIST, operator)
    assert recorded(done.transcript, "migrate-1") == b"migrating billing\n"
    assert operator.answers == type(operator.answers)()


ROLLBACK = """## One

```sh
echo one
```

```sh
#| rollback: true
echo undo-one
```

## Two

```sh
echo two
```

```sh
#| rollback: true
echo undo-two
```

## Three

```sh
echo three; exit 3
```
"""


def test_failure_then_rollback_in_reverse_order(tmp_path: Path) -> None:
    operator = ScriptedOperator(
        [
            ("choose", Decision("rollback")),
            ("confirm", True),
            ("confirm", True),
        ]
    )
    done = run_inline(tmp_path, ROLLBACK, operator)
    assert done.outcome.result == "rolled-back" and done.outcome.exit_code == 1
    asked = [about for kind, about in operator.asked if kind == "confirm"]
    no = " (No: you choose next whether to skip it or to stop the rollback)"
    assert asked == [
        f"Run rollback block two-2 locally?{no}",
        f"Run rollback block one-2 locally?{no}",
    ]
    ran = [e["block"] for e in events(done.transcript) if e["type"] == "block.start"]
    assert ran == ["one-1", "two-1", "three-1", "two-2", "one-2"]


def test_retries_until_success(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    text = f"""## Poll

```sh
#| retries: 3
#| retry-delay: 10ms
echo x >> {counter}
test "$(wc -l < {counter})" -ge 3
```
"""
    done = run_inline(tmp_path, text)
    assert done.outcome.result == "ok"
    attempts = [e["attempt"] for e in events(done.transcript) if e["type"] == "block.end"]
    assert attempts == [1, 2, 3]


def test_capture_feeds_later_blocks(tmp_path: Path) -> None:
    text = """## Read

```sh
#| capture: BUILD
printf '  b-42  \\n'
```

## Use

```sh
#| confirm: Deploy build $BUILD?
echo "deploying [$BUILD]"
```
"""
    operator = ScriptedOperator([("confirm", True)])
    done = run_inline(tmp_path, text, operator)
    assert operator.asked == [("confirm", "Deploy build b-42?")]
    assert recorded(done.transcript, "use-1") == b"deploying [b-42]\n"


def test_continue_on_error_records_and_goes_on(tmp_path: Path) -> None:
    text = """## Try

```sh
#| continue-on-error: true
exit 4
```

```sh
echo after
```
"""
    done = run_inline(tmp_path, text)
    assert done.outcome.result == "ok"
    end = next(e for e in events(done.transcript) if e["type"] == "block.end")
    assert (end["exit"], end["continued"]) == (4, True)
    assert recorded(done.transcript, "try-2") == b"after\n"


def test_transcript_lines_are_json_with_the_documented_fields(tmp_path: Path) -> None:
    done = run_inline(tmp_path, "## S\n\n```sh\necho hi\n```\n")
    lines = done.transcript.read_bytes().splitlines(keepends=True)
    prev = "0" * 64
    for number, raw in enumerate(lines, start=1):
        event = json.loads(raw)
        assert event["seq"] == number
        assert event["prev"] == prev
        assert event["run"] == done.transcript.parent.name
        assert event["time"].endswith("Z")
        prev = hashlib.sha256(raw).hexdigest()
    assert prev == done.last_hash
    types = [json.loads(raw)["type"] for raw in lines]
    assert types[0] == "run.start" and types[-1] == "run.end"


def test_the_transcript_is_never_overwritten_or_followed(tmp_path: Path) -> None:
    from runbook.record.transcript import TranscriptError, TranscriptWriter

    target = tmp_path / "elsewhere"
    link = tmp_path / "t.jsonl"
    link.symlink_to(target)
    with pytest.raises(TranscriptError):
        TranscriptWriter(link, "r")
    assert not target.exists()
    (tmp_path / "existing.jsonl").write_text("keep me")
    with pytest.raises(TranscriptError):
        TranscriptWriter(tmp_path / "existing.jsonl", "r")
    assert (tmp_path / "existing.jsonl").read_text() == "keep me"


def test_a_closed_display_does_not_stop_the_run(tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import ROOT

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runbook",
            "run",
            "runbooks/hello.md",
            "--yes",
            "--runs-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # like `runbook run ... | head -1`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0, err
    transcript = next(tmp_path.glob("*/transcript.jsonl"))
    verdict = verify(transcript)
    assert verdict.ok and verdict.complete
    notes = [e["text"] for e in events(transcript) if e["type"] == "note"]
    assert notes and "display failed" in notes[0]
