"""Faults that were tracebacks or hangs: each is now a message naming the input, a non-zero
exit where nothing can go on, and a record that ends (issue 12, item 6)."""

from __future__ import annotations

import errno
import hashlib
import os
import re
from pathlib import Path

import pytest

from conftest import events, run_cli
from runbook import launch
from runbook.engine.operator import HeadlessOperator
from runbook.format.inputs import MAX_RUNBOOK_BYTES
from runbook.record import transcript
from runbook.record.chain import read_lines, verify
from runbook.record.transcript import TranscriptWriter


def _run(book: Path, *args: str) -> tuple[int, str, list[dict[str, object]]]:
    runs = book.parent / "runs"
    done = run_cli("run", str(book), "--yes", "--runs-dir", str(runs), *args)
    said = done.stdout + done.stderr
    assert "Traceback" not in said, said
    found = sorted(runs.glob("*/transcript.jsonl"))
    return done.returncode, said, events(found[-1]) if found else []


def test_a_captured_nul_byte_fails_the_block_and_ends_the_record(tmp_path: Path) -> None:
    book = tmp_path / "nul.md"
    book.write_text(
        '## A\n\n```sh\n#| capture: V\nprintf "a\\000b"\n```\n\n```sh\necho "used: $V"\n```\n'
    )
    code, said, evs = _run(book)
    assert code == 1
    assert "capture V: a-1 printed a NUL byte, which no command can be given" in said
    assert evs[-1]["type"] == "run.end" and evs[-1]["result"] == "aborted"
    assert not any(e["type"] == "block.start" and e["block"] == "a-2" for e in evs)


def test_a_value_that_is_not_utf8_is_refused_before_anything_runs(tmp_path: Path) -> None:
    book = tmp_path / "secret.md"
    book.write_text(
        "---\nhosts:\n  web: [nowhere]\nvariables:\n  TOKEN:\n    secret: true\n---\n"
        "## A\n\n```sh\n#| on: web\necho ${#TOKEN}\n```\n"
    )
    runs = tmp_path / "runs"
    argv = ["run", str(book), "--yes", "--runs-dir", str(runs), "--var"]
    done = run_cli(*argv, os.fsdecode(b"TOKEN=a\xffb"))
    assert done.returncode == 2, done.stderr
    assert "TOKEN holds bytes that are not UTF-8 text" in done.stderr
    assert "Traceback" not in done.stderr and "\\xff" not in done.stderr  # a secret: not shown
    assert not runs.exists() or not any(runs.iterdir())


def test_a_path_that_is_not_utf8_with_notify_runs_and_records_its_end(tmp_path: Path) -> None:
    where = Path(os.fsdecode(bytes(tmp_path) + b"/dir\xff"))
    where.mkdir()
    book = where / "book.md"
    book.write_text(  # a webhook on a closed loopback port: the send fails, the run goes on
        "---\nnotify:\n  - url: http://127.0.0.1:9/hook\n    retries: 0\n---\n"
        "## A\n\n```sh\necho hi\n```\n"
    )
    code, said, evs = _run(book)
    assert code == 0, said
    assert evs[-1]["type"] == "run.end" and evs[-1]["result"] == "ok"
    assert any(e["type"] == "notify" for e in evs)


@pytest.mark.parametrize("where", ["missing directory", "a directory"])
def test_render_into_a_place_it_cannot_write_is_a_usage_error(tmp_path: Path, where: str) -> None:
    book = tmp_path / "ok.md"
    book.write_text("## A\n\n```sh\necho hi\n```\n")
    _run(book)
    (path,) = (tmp_path / "runs").glob("*/transcript.jsonl")
    out = tmp_path / "no" / "such" / "r.md" if where == "missing directory" else tmp_path
    done = run_cli("transcript", "render", str(path), "-o", str(out))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    expected = "is a directory" if where == "a directory" else "No such file or directory"
    assert f"-o {out}: " in done.stderr and expected in done.stderr, done.stderr


def test_a_chain_valid_transcript_missing_a_field_is_broken_not_a_keyerror(
    tmp_path: Path,
) -> None:
    """Written through the real writer, so the chain holds: only the field is missing."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    writer = TranscriptWriter(run_dir / "transcript.jsonl", "20260101T000000Z-abcdef")
    book = tmp_path / "b.md"
    book.write_text("## A\n\n```sh\necho hi\n```\n")
    sha = hashlib.sha256(book.read_bytes()).hexdigest()
    runbook = {"path": str(book), "abspath": str(book), "sha256": sha, "title": "b"}
    writer.append("run.start", runbook=runbook, variables={})
    writer.append("step.enter", step=1, title="A", line=1, alerts=[])
    writer.append("block.start", step=1, attempt=1, target="local", command="echo hi\n")
    writer.close()
    path = run_dir / "transcript.jsonl"
    assert verify(path).problem == "a `block.start` event without `block`"
    for args in (["transcript", "render", str(path)], ["resume", str(path), "--yes"]):
        done = run_cli(*args)
        assert "Traceback" not in done.stderr and "KeyError" not in done.stderr, done.stderr
    report = run_cli("transcript", "render", str(path)).stdout
    assert "a `block.start` event without `block`" in report
    resumed = run_cli("resume", str(path), "--yes")
    assert resumed.returncode == 1
    assert "transcript.jsonl:3: broken: a `block.start` event without `block`" in resumed.stderr


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "too large"])
def test_check_refuses_what_is_not_a_runbook_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "book.md"
    if kind == "fifo":
        os.mkfifo(path)  # reading it would block for ever
        expected = "is not a regular file (a FIFO)"
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")  # reading it never ends
        expected = "is not a regular file (a character device)"
    else:
        with open(path, "wb") as f:
            f.truncate(MAX_RUNBOOK_BYTES + 1)
        expected = "larger than 16 MiB, the most a runbook may be"
    done = run_cli("check", str(path))
    assert done.returncode == 2, done.stderr
    assert f"{path}: {expected}" in done.stderr, done.stderr
    assert "1 not read" in done.stderr


def test_after_an_fsync_error_the_end_printed_is_what_is_known_to_be_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = tmp_path / "b.md"
    book.write_text("## A\n\n```sh\necho one\n```\n\n```sh\necho two\n```\n")
    calls = [0]
    real = os.fsync

    def failing_fsync(fd: int) -> None:
        calls[0] += 1
        if calls[0] > 3:  # run.start, step.enter and the first block.start are on disk
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(fd)

    monkeypatch.setattr(transcript.os, "fsync", failing_fsync)
    done = launch.run(
        str(book),
        assignments=(),
        runs=tmp_path / "runs",
        argv=[],
        announce=lambda _: None,
        operator=HeadlessOperator(yes=True),
    )
    monkeypatch.undo()
    assert done.outcome.result == "error"
    assert calls[0] > 3
    assert done.end_unknown is not None and "Input/output error" in done.end_unknown
    lines = list(read_lines(done.transcript))
    said = re.search(
        r"The last line known to be on disk: seq (\d+), sha256 (\w+)", done.end_unknown
    )
    assert said is not None, done.end_unknown
    seq, sha = int(said.group(1)), said.group(2)
    assert sha == hashlib.sha256(lines[seq - 1].raw).hexdigest()
    assert seq < len(lines), "the line whose fsync failed is in the file, but not known durable"
    assert done.last_hash == hashlib.sha256(lines[-1].raw).hexdigest()
