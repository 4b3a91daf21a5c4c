"""Edge cases of running and resuming, each once a real bug."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import ROOT, events, live_processes, resume_run, run_cli
from runbook import launch
from runbook.engine.operator import Decision, HeadlessOperator, NeedsOperator, ScriptedOperator
from runbook.record.chain import verify
from runbook.record.report import render_run
from runbook.transports.local import LocalTransport


def run(tmp_path: Path, text: str, operator=None, vars=()):  # type: ignore[no-untyped-def]
    book = tmp_path / "book.md"
    book.write_text(text)
    return launch.run(
        str(book),
        assignments=vars,
        runs=tmp_path / "runs",
        argv=["runbook", "run", str(book), *(f"--var={v}" for v in vars)],
        announce=lambda _: None,
        operator=operator or HeadlessOperator(yes=True),
        transport=LocalTransport(grace=0.3),
    )


ROLLBACK_DIES = """## Prepare

```sh
echo prepare
```

```sh
#| rollback: true
if [ ! -e {mark} ]; then touch {mark}; kill -9 $PPID; sleep 5; fi
echo undo-prepare
```

## Deploy

```sh
exit 3
```

```sh
#| rollback: true
echo undo-deploy
```
"""


def test_a_run_that_died_during_rollback_resumes_the_rollback(tmp_path: Path) -> None:
    book = tmp_path / "book.md"
    book.write_text(ROLLBACK_DIES.format(mark=tmp_path / "mark"))
    driver = textwrap.dedent(
        f"""
        from pathlib import Path
        from runbook import launch
        from runbook.engine.operator import Decision, ScriptedOperator
        launch.run({str(book)!r}, assignments=(), runs=Path({str(tmp_path / "runs")!r}),
                   argv=[], announce=lambda _: None,
                   operator=ScriptedOperator([("choose", Decision("rollback")),
                                              ("confirm", True), ("confirm", True)]))
        """
    )
    died = subprocess.run([sys.executable, "-c", driver], cwd=ROOT, capture_output=True)
    assert died.returncode == -signal.SIGKILL
    transcript = next((tmp_path / "runs").glob("*/transcript.jsonl"))
    operator = ScriptedOperator([("choose", Decision("rerun")), ("confirm", True)])
    done = resume_run(transcript, operator)
    assert done.outcome.result == "rolled-back"
    assert operator.asked[0] == (
        "choose",
        "Block prepare-2 was running when the run stopped: its outcome is unknown.",
    )
    ran = [
        (e["block"], e["attempt"]) for e in events(done.transcript) if e["type"] == "block.start"
    ]
    assert ran == [("prepare-2", 2)], "deploy-1 must not run again"


def test_masking_never_touches_names_or_paths(tmp_path: Path) -> None:
    text = "## Step two\n\n```sh\necho two\n```\n"
    done = run(tmp_path, "---\nvariables:\n  T:\n    secret: true\n---\n" + text, vars=("T=two",))
    evs = events(done.transcript)
    assert [e["block"] for e in evs if e["type"] == "block.start"] == ["step-two-1"]
    assert evs[0]["runbook"]["abspath"] == str((tmp_path / "book.md").resolve())
    assert evs[0]["argv"][-1] == "--var=T=********"
    output = "".join(e.get("text", "") for e in evs if e["type"] == "output")
    assert output == "********\n"


def test_a_process_that_escapes_with_setsid_does_not_hold_the_block(tmp_path: Path) -> None:
    text = "## Hang\n\n```bash\n#| timeout: 1s\nsetsid sleep 63.5 &\nsleep 64.5\n```\n"
    try:
        done = run(tmp_path, text, ScriptedOperator([("choose", Decision("abort"))]))
        end = next(e for e in events(done.transcript) if e["type"] == "block.end")
        assert end["timed_out"] and end["detached"] and end["duration"] < 10
        notes = [e["text"] for e in events(done.transcript) if e["type"] == "note"]
        assert any("setsid" in n for n in notes)
        assert live_processes("sleep 64.5") == []
    finally:
        for pid in live_processes("sleep 63.5"):
            os.kill(pid, signal.SIGKILL)


def test_prompts_mask_secrets_that_arrive_through_a_capture(tmp_path: Path) -> None:
    text = """---
variables:
  TOKEN:
    secret: true
---
## Read

```sh
#| capture: LINE
echo "auth with $TOKEN"
```

## Use

```sh
#| confirm: Proceed with $LINE?
echo ok
```
"""
    operator = ScriptedOperator([("confirm", True)])
    run(tmp_path, text, operator, vars=("TOKEN=hunter2-secret",))
    assert operator.asked == [("confirm", "Proceed with auth with ********?")]


def test_a_capture_too_large_for_the_environment_fails_its_block(tmp_path: Path) -> None:
    text = (
        "## Read\n\n```sh\n#| capture: BIG\nhead -c 200000 /dev/zero | tr '\\0' x\n```\n\n"
        '## Use\n\n```sh\necho "$BIG" | wc -c\n```\n'
    )
    done = run(tmp_path, text)
    assert done.outcome.result == "aborted"
    assert "a captured value must be under 64 KiB" in done.outcome.message


def test_a_missing_cwd_is_named(tmp_path: Path) -> None:
    done = run(tmp_path, "## S\n\n```sh\n#| cwd: /nonexistent/dir\ntrue\n```\n")
    stderr = "".join(e.get("text", "") for e in events(done.transcript) if e["type"] == "output")
    assert stderr == "cannot start sh: cwd /nonexistent/dir is not a directory\n"


def test_resume_validates_vars_and_refuses_gates_without_a_terminal(tmp_path: Path) -> None:
    book = tmp_path / "book.md"
    book.write_text(
        "---\nvariables:\n  V:\n    pattern: 'v[0-9]+'\n    default: v1\n---\n"
        "## One\n\n```sh\nkill -9 $PPID; sleep 5\n```\n\n"
        "## Two\n\n```sh\n#| confirm: Go?\ntrue\n```\n"
    )
    runner = run_cli("run", str(book), "--yes", "--runs-dir", str(tmp_path / "runs"))
    assert runner.returncode == -signal.SIGKILL
    transcript = next((tmp_path / "runs").glob("*/transcript.jsonl"))
    bad = run_cli("resume", str(transcript), "--var", "V=not-a-version")
    assert bad.returncode == 2 and "does not match the pattern" in bad.stderr
    unknown = run_cli("resume", str(transcript), "--var", "BOGUS=1")
    assert unknown.returncode == 2 and "declares no such variable" in unknown.stderr
    no_tty = run_cli("resume", str(transcript))
    assert no_tty.returncode == 1 and "has a gate, and there is no terminal" in no_tty.stderr
    assert len(list(transcript.parent.glob("transcript*.jsonl"))) == 1


def test_unrecordable_runs_and_odd_transcripts_give_messages_not_tracebacks(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    proc = run_cli("run", "runbooks/hello.md", "--yes", "--runs-dir", str(not_a_dir))
    assert proc.returncode == 1
    assert "cannot record the run, so it does not start" in proc.stderr
    assert "Traceback" not in proc.stderr
    line = {"seq": 1, "time": "2026-01-01T00:00:00Z", "mono": 1, "run": "r", "type": "output"}
    line |= {"block": "b", "attempt": None, "stream": "stdout", "offset": 0, "size": 1}
    line |= {"text": "x", "prev": "0" * 64}
    odd = tmp_path / "odd.jsonl"
    odd.write_text(json.dumps(line) + "\n")
    check = run_cli("transcript", "verify", str(odd))
    assert check.returncode == 1 and "`attempt` must be a number" in check.stdout


def test_render_reports_the_file_it_was_given(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = run(tmp_path / "a", "## A\n\n```sh\necho from-a\n```\n")
    second = run(tmp_path / "b", "## B\n\n```sh\necho from-b\n```\n")
    copy = second.transcript.parent / "evidence-copy.jsonl"
    copy.write_bytes(first.transcript.read_bytes())
    report = render_run(copy)
    assert "from-a" in report and "from-b" not in report
    assert copy.read_bytes() == first.transcript.read_bytes()  # untouched
    assert verify(copy).ok


class _LeavesDuringRollback(ScriptedOperator):
    """Answers the failure with a rollback, then is gone when the rollback asks."""

    async def confirm(self, prompt: str) -> bool:
        raise NeedsOperator("the operator left")


def test_nobody_to_answer_during_a_rollback_still_ends_the_record(tmp_path: Path) -> None:
    book = "## Change\n\n```sh\ntrue\n```\n\n```sh\n#| rollback: true\ntrue\n```\n\n"
    book += "## Check\n\n```sh\nexit 1\n```\n"
    operator = _LeavesDuringRollback([("choose", Decision("rollback"))])
    done = run(tmp_path, book, operator=operator)
    end = events(done.transcript)[-1]
    # Neither the change nor its undo is whole: the record says so, with its own code.
    assert (end["type"], end["result"], end["exit_code"]) == ("run.end", "rollback-incomplete", 3)
    assert end["message"] == "rollback stopped: the operator left; not rolled back: change-2"
    assert verify(done.transcript).complete


EDITS_ITSELF = """## One

```sh
printf '\\n## Three\\n\\n```sh\\necho added-later\\n```\\n' >> '{book}'
```

## Two

```sh
echo two
```
"""


def test_a_runbook_edited_during_the_run_is_told_and_what_runs_is_the_snapshot(
    tmp_path: Path,
) -> None:
    book = tmp_path / "book.md"
    book.write_text(EDITS_ITSELF.format(book=book))
    started = book.read_bytes()
    done = run_cli("run", str(book), "--yes", "--runs-dir", str(tmp_path / "runs"))
    assert done.returncode == 0, done.stderr
    assert f"note: {book} changed on disk since the run started" in done.stdout
    assert "added-later" not in done.stdout  # the edit did not add a step to this run
    (path,) = (tmp_path / "runs").glob("*/transcript.jsonl")
    evs = events(path)
    (note,) = [e for e in evs if e["type"] == "note"]
    assert note["by"] == "runbook"
    assert note["runbook_changed"] == {
        "recorded_sha256": hashlib.sha256(started).hexdigest(),
        "now_sha256": hashlib.sha256(book.read_bytes()).hexdigest(),
    }
    enter_two = next(i for i, e in enumerate(evs) if e["type"] == "step.enter" and e["step"] == 2)
    assert evs.index(note) == enter_two - 1, "told before the step runs"
    assert (path.parent / "runbook.md").read_bytes() == started
    report = run_cli("transcript", "render", str(path)).stdout
    assert "changed on disk since the run started" in report


def test_a_declined_rollback_block_never_ends_rolled_back(tmp_path: Path) -> None:
    """Blue-green with a No to `switch-back`: the rest may go on only when chosen, and the
    run ends rollback-incomplete (exit 3) naming what was not undone."""
    for choice, undone in (("skip", True), ("abort", False)):
        where = tmp_path / choice
        where.mkdir()
        book = (
            "## Bring up\n\n```sh {name=up}\ntrue\n```\n\n```sh {name=up-undo rollback=true}\n"
            f"touch {where}/up-undone\n```\n\n## Switch\n\n```sh {{name=switch}}\ntrue\n```\n\n"
            f"```sh {{name=switch-back rollback=true}}\ntouch {where}/switched-back\n```\n\n"
            "## Check\n\n```sh {name=check}\nexit 1\n```\n"
        )
        operator = ScriptedOperator(
            [
                ("choose", Decision("rollback")),
                ("confirm", False),  # switch-back: No
                ("choose", Decision(choice, "LB still points at green")),
                *([("confirm", True)] if choice == "skip" else []),  # up-undo
            ]
        )
        done = run(where, book, operator=operator)
        assert (done.outcome.result, done.outcome.exit_code) == ("rollback-incomplete", 3)
        assert "not rolled back: switch-back" in done.outcome.message
        asked = [about for kind, about in operator.asked if kind == "choose"][1]
        assert "skip it and go on" in asked.lower() and "stop the rollback" in asked
        assert not (where / "switched-back").exists()
        assert (where / "up-undone").exists() == undone, choice
        assert verify(done.transcript).complete
