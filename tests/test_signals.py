"""Signals and end of input: SIGTERM, SIGHUP and Ctrl-D end a run as Ctrl-C does, with its
commands stopped and its end recorded; checked on real runners, in /proc, on a real pty."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from conftest import OnPty, events, live_processes, signal_on_line, start_cli, wait_for
from runbook.record.chain import verify

LONG = "sleep 300.25"  # unique on this machine: the block's processes, found in /proc

BLOCK = """## Work

```sh
echo started > '{started}'
{long} &
{long}
```

## Never

```sh
echo must-not-run
```
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_stops_the_block_and_records_the_end(tmp_path: Path, sig: signal.Signals) -> None:
    started = tmp_path / "started"
    book = tmp_path / "book.md"
    book.write_text(BLOCK.format(started=started, long=LONG))
    runner = start_cli("run", str(book), "--yes", "--runs-dir", str(tmp_path))
    wait_for(started.exists, what="the block to start")
    wait_for(lambda: len(live_processes(LONG)) >= 3, what="the shell and both sleeps")
    runner.send_signal(sig)
    out, err = runner.communicate(timeout=60)
    assert runner.returncode == 128 + sig, out + err
    assert live_processes(LONG) == [], "the block's processes outlived the run"
    assert "Traceback" not in err, err
    (transcript,) = tmp_path.glob("*/transcript.jsonl")
    evs = events(transcript)
    kinds = [e["type"] for e in evs]
    assert kinds[-3:] == ["block.start", "block.end", "run.end"], kinds
    assert evs[-2]["interrupted"] is True
    end = evs[-1]
    assert (end["result"], end["exit_code"]) == ("aborted", 128 + sig)
    assert end["message"].startswith(f"stopped by {sig.name}"), end["message"]
    assert "must-not-run" not in out
    assert verify(transcript).complete


@pytest.mark.parametrize("on_failure", ["abort", "rollback"])
def test_a_headless_ctrl_c_during_a_block_ends_the_run(tmp_path: Path, on_failure: str) -> None:
    """Headless, nobody decides after the block is interrupted: the press is the run's, so
    it ends as the operator's (130), with no automatic decision, retry or rollback."""
    started = tmp_path / "started"
    book = tmp_path / "book.md"
    book.write_text(
        f"## Work\n\n```sh\n#| retries: 2\necho started > '{started}'\n{LONG} &\n{LONG}\n```\n\n"
        "```sh\n#| rollback: true\necho must-not-roll-back\n```\n\n"
        "## Never\n\n```sh\necho must-not-run\n```\n"
    )
    args = ["run", str(book), "--yes", "--on-failure", on_failure, "--runs-dir", str(tmp_path)]
    runner = start_cli(*args)
    try:
        wait_for(started.exists, what="the block to start")
        wait_for(lambda: len(live_processes(LONG)) >= 3, what="the shell and both sleeps")
        runner.send_signal(signal.SIGINT)
        out, err = runner.communicate(timeout=60)
    finally:
        runner.kill()  # never left running (and its sleeps with it) after a failure
    assert runner.returncode == 130, out + err
    assert live_processes(LONG) == [], "the block's processes outlived the run"
    (transcript,) = tmp_path.glob("*/transcript.jsonl")
    evs = events(transcript)
    kinds = [e["type"] for e in evs]
    assert kinds[-3:] == ["block.start", "block.end", "run.end"], kinds
    assert kinds.count("block.start") == 1 and "decision" not in kinds, kinds
    assert evs[-2]["interrupted"] is True
    end = evs[-1]
    assert (end["result"], end["exit_code"], end["message"]) == (
        "aborted",
        130,
        "interrupted by the operator",
    )
    assert "must-not-r" not in out
    assert verify(transcript).complete


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_a_signal_in_a_last_block_that_goes_on_still_ends_the_run(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """The block is interrupted and, being continue-on-error, goes on; nothing is asked
    after it. The run must still end as the signal's, never as "every step is done"."""
    started = tmp_path / "started"
    book = tmp_path / "book.md"
    book.write_text(
        f"## Last\n\n```sh\n#| continue-on-error: true\necho > '{started}'\n{LONG}\n```\n"
    )
    runner = start_cli("run", str(book), "--yes", "--runs-dir", str(tmp_path))
    try:
        wait_for(started.exists, what="the block to start")
        runner.send_signal(sig)
        out, err = runner.communicate(timeout=60)
    finally:
        runner.kill()
    assert runner.returncode == 128 + sig, out + err
    assert live_processes(LONG) == []
    (transcript,) = tmp_path.glob("*/transcript.jsonl")
    evs = events(transcript)
    assert [e["type"] for e in evs][-3:] == ["block.start", "block.end", "run.end"]
    assert (evs[-2]["interrupted"], evs[-2]["continued"]) == (True, True)
    assert (evs[-1]["result"], evs[-1]["exit_code"]) == ("aborted", 128 + sig)
    assert verify(transcript).complete


def test_sigterm_during_a_local_retry_delay_ends_the_run_now(tmp_path: Path) -> None:
    """Ten minutes between attempts: SIGTERM must not wait them out (the wait below would
    time out first), and no attempt starts after it."""
    book = tmp_path / "book.md"
    book.write_text("## Flaky\n\n```sh\n#| retries: 2\n#| retry-delay: 10m\nexit 1\n```\n")
    args = ["run", str(book), "--yes", "--runs-dir", str(tmp_path)]
    code, out, err = signal_on_line(args, "exit 1", signal.SIGTERM)  # the delay begins
    assert code == 143, out + err
    (transcript,) = tmp_path.glob("*/transcript.jsonl")
    evs = events(transcript)
    assert [e["attempt"] for e in evs if e["type"] == "block.start"] == [1]
    assert (evs[-1]["result"], evs[-1]["exit_code"]) == ("aborted", 143)


def test_sigterm_at_a_prompt_records_the_end(tmp_path: Path) -> None:
    book = tmp_path / "book.md"
    book.write_text("## Go\n\n```sh\n#| confirm: Deploy now?\necho deployed\n```\n")
    on = OnPty(["run", str(book), "--runs-dir", str(tmp_path)])
    on.expect("Deploy now? [y/N]")
    on.proc.send_signal(signal.SIGTERM)
    assert on.wait() == 128 + signal.SIGTERM, on.seen.decode(errors="replace")
    assert b"Traceback" not in on.seen
    (transcript,) = tmp_path.glob("*/transcript.jsonl")
    evs = events(transcript)
    assert [e["type"] for e in evs][-2:] == ["gate.ask", "run.end"]
    assert evs[-1]["message"] == "stopped by SIGTERM", evs[-1]
    assert not any(e["type"] == "block.start" for e in evs)
    assert verify(transcript).complete


@pytest.mark.parametrize("where", ["confirm", "secret"])
def test_ctrl_d_at_a_prompt_is_a_recorded_abort(tmp_path: Path, where: str) -> None:
    book = tmp_path / "book.md"
    book.write_text(
        "---\nvariables:\n  TOKEN:\n    secret: true\n---\n\n## Go\n\n"
        "```sh\n#| confirm: Deploy now?\necho deployed\n```\n"
    )
    args = ["run", str(book), "--runs-dir", str(tmp_path)]
    on = OnPty(args if where == "secret" else [*args, "--var", "TOKEN=t0ken"])
    on.expect("TOKEN: " if where == "secret" else "Deploy now? [y/N]")
    on.send(b"\x04")  # Ctrl-D at the start of a line: end of input
    assert on.wait() == 1, on.seen.decode(errors="replace")
    assert b"Traceback" not in on.seen and b"EOFError" not in on.seen
    (transcript,) = tmp_path.glob("*/transcript.jsonl")
    end = events(transcript)[-1]
    assert end["type"] == "run.end" and end["result"] == "aborted"
    assert "Ctrl-D" in end["message"], end
    assert verify(transcript).complete


def test_ctrl_c_at_a_prompt_records_the_end(tmp_path: Path) -> None:
    book = tmp_path / "book.md"
    book.write_text(
        "## Warm up\n\n```sh\necho warmed\n```\n\n"
        "## Go\n\n```sh\n#| confirm: Deploy now?\necho deployed\n```\n"
    )
    on = OnPty(["run", str(book), "--runs-dir", str(tmp_path)])
    on.expect("Deploy now? [y/N]")  # after a block ran: Ctrl-C is the run's again
    on.send(b"\x03")  # the terminal turns it into SIGINT, as for a person
    assert on.wait() == 130, on.seen.decode(errors="replace")
    assert b"Traceback" not in on.seen and b"KeyboardInterrupt" not in on.seen
    (transcript,) = tmp_path.glob("*/transcript.jsonl")
    evs = events(transcript)
    assert [e["type"] for e in evs][-2:] == ["gate.ask", "run.end"]
    assert (evs[-1]["result"], evs[-1]["message"]) == ("aborted", "interrupted by the operator")
    assert b"deployed" not in on.seen.replace(b"echo deployed", b"")
    assert verify(transcript).complete


async def test_ctrl_c_sections_nest_and_give_back_the_handler_before() -> None:
    """A block's Ctrl-C section inside a rollout's: the newest open one gets Ctrl-C; when
    the last one closes, the handler before it (the run's own) is back, not Python's
    default, which would raise wherever the loop happens to be."""
    import asyncio
    import os

    from runbook.engine.stopping import ctrl_c_sets

    seen: list[int] = []
    before = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    mine = signal.getsignal(signal.SIGINT)
    try:
        outer, inner = asyncio.Event(), asyncio.Event()
        with ctrl_c_sets(outer):
            with ctrl_c_sets(inner):
                os.kill(os.getpid(), signal.SIGINT)
                await asyncio.wait_for(inner.wait(), 10)
                assert not outer.is_set()
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.wait_for(outer.wait(), 10)
        assert seen == []
        assert signal.getsignal(signal.SIGINT) is mine
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.wait_for(asyncio.to_thread(wait_for, lambda: seen, 10), 10)
        assert seen == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, before)


def test_ctrl_c_while_the_end_stops_a_background_block_still_records_its_end(
    tmp_path: Path,
) -> None:
    """The run is ending: its background block, which ignores SIGINT, is being stopped
    (SIGTERM follows after the grace). A Ctrl-C then must not cut that short: the block's
    end is recorded before the run's, and the run ends as interrupted."""
    book = tmp_path / "book.md"
    book.write_text(
        "## Serve\n\n```sh\n#| name: serve\n#| background: true\n"
        "trap '' INT; while :; do sleep 0.05; done\n```\n\n"
        "## Go\n\n```sh\n#| name: go\necho GO\n```\n"
    )
    runner = start_cli("run", str(book), "--yes", "--runs-dir", str(tmp_path))
    assert runner.stdout is not None
    for line in runner.stdout:
        if "stopped as the run ends" in line:
            break
    runner.send_signal(signal.SIGINT)
    out, err = runner.communicate(timeout=60)
    assert runner.returncode == 130, out + err
    assert "Traceback" not in err, err
    (transcript,) = tmp_path.glob("*/transcript.jsonl")
    evs = events(transcript)
    ends = [(e["type"], e.get("block")) for e in evs if e["type"] in ("block.end", "run.end")]
    assert ends[-2:] == [("block.end", "serve"), ("run.end", None)], ends
    assert evs[-2]["interrupted"] is True
    assert evs[-1]["message"] == (
        "interrupted by the operator as the run was ending (ok: every step is done)"
    )
    assert verify(transcript).complete


@pytest.mark.parametrize("last", [False, True], ids=["a-block-follows", "the-last-block"])
def test_ctrl_c_as_a_block_ends_is_not_lost(tmp_path: Path, last: bool) -> None:
    """The block's shell has exited; what it left in its group ignores SIGINT and is being
    stopped (SIGTERM comes after the grace). A Ctrl-C now reaches no command: it is the
    run's, so the run ends there and the next block never starts; nor, when the block was
    the last, does the run end as done."""
    started = tmp_path / "started"
    book = tmp_path / "book.md"
    book.write_text(
        "## First\n\n```sh\n#| name: first\n"
        f"(trap '' INT; echo > '{started}'; exec sleep 30.125) &\n"
        f"while [ ! -s '{started}' ]; do :; done\necho GO\n```\n\n"
        + ("" if last else "## Second\n\n```sh\n#| name: second\necho SECOND-RAN\n```\n")
    )
    runner = start_cli("run", str(book), "--yes", "--runs-dir", str(tmp_path))
    assert runner.stdout is not None
    for line in runner.stdout:
        if line.strip() == "GO":
            break
    # The shell exits right after GO; the sleep it left holds the block open.
    wait_for(lambda: len(live_processes("sleep 30.125")) == 1, what="the leftover sleep")
    runner.send_signal(signal.SIGINT)
    out, err = runner.communicate(timeout=60)
    assert "SECOND-RAN" not in out
    assert runner.returncode == 130, out + err
    (transcript,) = tmp_path.glob("*/transcript.jsonl")
    evs = events(transcript)
    first = next(e for e in evs if e["type"] == "block.end")
    assert (first["block"], first["exit"]) == ("first", 0), first
    assert not any(e["type"] == "block.start" and e["block"] == "second" for e in evs)
    end = evs[-1]
    assert (end["type"], end["result"], end["message"]) == (
        "run.end",
        "aborted",
        "interrupted by the operator",
    )
    assert live_processes("sleep 30.125") == []
    assert verify(transcript).complete


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_a_signal_at_a_rollback_prompt_ends_the_run_rollback_incomplete(
    tmp_path: Path, how: str
) -> None:
    """A rollback that a signal stops is incomplete, as transcript.md promises: neither the
    change nor its undo is whole, and the record names what was not rolled back."""
    book = tmp_path / "book.md"
    book.write_text(
        "## Change\n\n```sh\n#| name: change\ntrue\n```\n\n"
        "```sh\n#| name: undo\n#| rollback: true\necho undone\n```\n\n"
        "## Check\n\n```sh\n#| name: check\nexit 1\n```\n"
    )
    on = OnPty(["run", str(book), "--runs-dir", str(tmp_path)])
    on.expect("abort [x]?")
    on.send(b"b\n")  # roll back
    on.expect("Run rollback block undo")
    if how == "ctrl-c":
        on.send(b"\x03")
    else:
        on.proc.send_signal(signal.SIGTERM)
    code = 130 if how == "ctrl-c" else 128 + signal.SIGTERM
    assert on.wait() == code, on.seen.decode(errors="replace")
    assert b"Traceback" not in on.seen
    (transcript,) = tmp_path.glob("*/transcript.jsonl")
    end = events(transcript)[-1]
    assert (end["type"], end["result"], end["exit_code"]) == (
        "run.end",
        "rollback-incomplete",
        code,
    )
    reason = "interrupted by the operator" if how == "ctrl-c" else "stopped by SIGTERM"
    assert end["message"] == f"rollback stopped: {reason}; not rolled back: undo", end
    assert verify(transcript).complete


def test_a_ctrl_c_as_the_block_returns_is_the_runs(tmp_path: Path) -> None:
    """The press lands in the last moment of the block's section, before the loop could
    deliver it to the block: the section still knows of it, so the run ends and the next
    block never starts (in-process, the signal sent from inside the transport)."""
    import os

    from conftest import run_inline
    from runbook.transports.local import LocalTransport

    class PressedAsItReturns(LocalTransport):
        async def run(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            status = await super().run(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGINT)  # handled before the next bytecode
            return status

    book = "## One\n\n```sh\necho one\n```\n\n## Two\n\n```sh\necho SECOND-RAN\n```\n"
    done = run_inline(tmp_path, book, transport=PressedAsItReturns(grace=0.3))
    assert (done.outcome.result, done.outcome.exit_code) == ("aborted", 130), done.outcome
    evs = events(done.transcript)
    assert [e["block"] for e in evs if e["type"] == "block.start"] == ["one-1"]
    assert verify(done.transcript).complete


def test_a_ctrl_c_the_process_was_started_to_ignore_stays_ignored(tmp_path: Path) -> None:
    """nohup, or a script's `&`: SIGINT ignored from the start, during a block too."""
    import subprocess
    import sys

    started = tmp_path / "started"
    book = tmp_path / "book.md"
    book.write_text(f"## Work\n\n```sh\ntouch '{started}'\nsleep 1.5\necho finished\n```\n")
    runner = subprocess.Popen(
        [sys.executable, "-m", "runbook", "run", str(book), "--yes", "--runs-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )  # fmt: skip
    wait_for(started.exists, what="the block to start")
    runner.send_signal(signal.SIGINT)
    out, err = runner.communicate(timeout=60)
    assert runner.returncode == 0, out + err
    assert "finished" in out
    (transcript,) = tmp_path.glob("*/transcript.jsonl")
    assert events(transcript)[-1]["result"] == "ok"


def test_a_block_stopped_before_its_command_starts_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C just after a block's start is written, while it is made durable (with a
    signing key, while it is signed): the command never runs, and the record says so with
    the block's end, instead of a start without an end, which reads as "it may have run"."""
    import os

    from conftest import run_inline
    from runbook.engine.journal import Journal

    emit = Journal.emit

    def pressed_after_the_start(self, kind, *args, **fields):  # type: ignore[no-untyped-def]
        event = emit(self, kind, *args, **fields)
        if kind == "block.start" and fields.get("block") == "two":
            os.kill(os.getpid(), signal.SIGINT)  # handled before the next bytecode
        return event

    monkeypatch.setattr(Journal, "emit", pressed_after_the_start)
    marker = tmp_path / "ran"
    done = run_inline(
        tmp_path,
        f"## One\n\n```sh\n#| name: one\ntrue\n```\n\n"
        f"## Two\n\n```sh\n#| name: two\ntouch '{marker}'\n```\n",
    )
    assert (done.outcome.result, done.outcome.exit_code) == ("aborted", 130), done.outcome
    assert not marker.exists()
    evs = events(done.transcript)
    ends = [e for e in evs if e["type"] == "block.end" and e["block"] == "two"]
    assert len(ends) == 1, [e["type"] for e in evs]
    assert (ends[0]["exit"], ends[0]["interrupted"], ends[0]["status"]) == (
        None,
        True,
        "not started: the run stopped",
    )
    assert evs[-1]["type"] == "run.end"
    assert verify(done.transcript).complete
