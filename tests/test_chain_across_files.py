"""A run's transcript files form one chain: a file that does not continue the one before
(a forgery, a file from another run, a gap) is refused by resume and failed by verify."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import crash_mid_block, events, resume_run, run_cli
from runbook import launch
from runbook.engine.operator import Decision, ScriptedOperator
from runbook.record.chain import verify
from runbook.record.transcript import GENESIS, TranscriptWriter
from runbook.transports.local import LocalTransport

BOOK = """## Prepare

```sh
if [ ! -e {started} ]; then touch {started}; sleep 61.25; fi
```

## Deploy

```sh
#| confirm: Deploy to production?
touch {deployed}
```
"""


@pytest.fixture
def crashed(tmp_path: Path) -> tuple[Path, Path]:
    """A run killed in its first block, before the gated one; its transcript, and the
    file the gated block creates if it ever runs."""
    started, deployed = tmp_path / "started", tmp_path / "deployed"
    book = tmp_path / "book.md"
    book.write_text(BOOK.format(started=started, deployed=deployed))
    runs = tmp_path / "runs"
    crash_mid_block(["run", str(book), "--yes", "--runs-dir", str(runs)], started, "sleep 61.25")
    (transcript,) = runs.glob("*/transcript.jsonl")
    return transcript, deployed


def _says_all_done(writer: TranscriptWriter) -> None:
    """What a forger wants replayed: both steps done, the gated block among them."""
    writer.append("block.end", block="prepare-1", attempt=1, exit=0, status="exit 0")
    writer.append("step.done", step=1)
    writer.append("step.enter", step=2, title="Deploy", line=9, alerts=[])
    writer.append("block.skip", block="deploy-1", reason="forged")
    writer.append("step.done", step=2)
    writer.close()


def _own_chain(transcript: Path) -> TranscriptWriter:
    """The issue's forgery: its own run id, a chain from zeros, seq from 1."""
    return TranscriptWriter(transcript.parent / "transcript-2.jsonl", "20260101T000000Z-forged")


def _right_head_wrong_seq(transcript: Path) -> TranscriptWriter:
    head = verify(transcript)
    assert head.run_id is not None
    return TranscriptWriter(
        transcript.parent / "transcript-2.jsonl", head.run_id, prev=head.last_hash
    )


def _no_run_start(transcript: Path) -> TranscriptWriter:
    """Everything chains (run, seq, prev) but the file does not begin as a resume does."""
    head = verify(transcript)
    assert head.run_id is not None
    return TranscriptWriter(
        transcript.parent / "transcript-2.jsonl",
        head.run_id,
        prev=head.last_hash,
        first_seq=head.last_seq + 1,
    )


def _a_gap(transcript: Path) -> TranscriptWriter:
    head = verify(transcript)
    assert head.run_id is not None
    return TranscriptWriter(
        transcript.parent / "transcript-3.jsonl",
        head.run_id,
        prev=head.last_hash,
        first_seq=head.last_seq + 1,
    )


FORGERIES: dict[str, tuple[Callable[[Path], TranscriptWriter], str]] = {
    "own run id and chain": (_own_chain, "transcript-2.jsonl:1: broken: does not continue"),
    "seq from 1": (_right_head_wrong_seq, "transcript-2.jsonl:1: broken: does not continue"),
    "no run.start": (_no_run_start, "its first line is not the run.start of a resume"),
    "a missing file": (_a_gap, "transcript-3.jsonl:1: broken: transcript-2.jsonl, which it"),
}


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_a_file_that_does_not_continue_the_chain_is_refused(
    crashed: tuple[Path, Path], forgery: str
) -> None:
    transcript, deployed = crashed
    make, expected = FORGERIES[forgery]
    _says_all_done(make(transcript))

    operator = ScriptedOperator([("choose", Decision("rerun"))])
    with pytest.raises(launch.Refused, match="cannot resume") as refused:
        resume_run(transcript, operator, transport=LocalTransport(grace=0.3))
    assert expected in str(refused.value), refused.value
    assert not deployed.exists() and operator.asked == []

    for name in ("transcript.jsonl", "transcript-2.jsonl", "transcript-3.jsonl"):
        if (transcript.parent / name).exists():
            checked = run_cli("transcript", "verify", str(transcript.parent / name))
            assert checked.returncode == 1, checked.stdout
            assert expected in checked.stdout, checked.stdout
    report = run_cli("transcript", "render", str(transcript)).stdout
    assert expected.split(":1: ")[0] in report, report


def test_a_real_resume_still_chains_and_verifies_as_one_run(crashed: tuple[Path, Path]) -> None:
    transcript, deployed = crashed
    operator = ScriptedOperator([("choose", Decision("rerun")), ("confirm", True)])
    done = resume_run(transcript, operator, transport=LocalTransport(grace=0.3))
    assert done.outcome.result == "ok" and deployed.exists()
    checked = run_cli("transcript", "verify", str(transcript))
    assert checked.returncode == 0, checked.stdout
    assert checked.stdout.count("intact") == 2, checked.stdout
    assert f"last line sha256 {done.last_hash}" in checked.stdout
    assert events(done.transcript)[-1]["result"] == "ok"


def test_a_resumed_file_alone_is_not_called_intact(
    crashed: tuple[Path, Path], tmp_path: Path
) -> None:
    transcript, _ = crashed
    operator = ScriptedOperator([("choose", Decision("rerun")), ("confirm", True)])
    done = resume_run(transcript, operator, transport=LocalTransport(grace=0.3))
    alone = tmp_path / "attached.jsonl"
    alone.write_bytes(done.transcript.read_bytes())
    checked = run_cli("transcript", "verify", str(alone))
    assert checked.returncode == 1
    assert "not verified: it continues 'transcript.jsonl'" in checked.stdout, checked.stdout
    assert GENESIS not in checked.stdout
