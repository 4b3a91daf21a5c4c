"""Tampering is caught at the line that was touched; a full disk stops the run."""

from __future__ import annotations

import errno
import os
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import RUNBOOKS, run_cli, run_inline
from runbook import launch
from runbook.engine.operator import HeadlessOperator
from runbook.record import transcript
from runbook.record.chain import verify


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    runs = tmp_path_factory.mktemp("runs")
    proc = run_cli("run", str(RUNBOOKS / "hello.md"), "--yes", "--runs-dir", str(runs))
    assert proc.returncode == 0, proc.stderr
    return next(runs.glob("*/transcript.jsonl")).read_bytes()


def tampered(tmp_path: Path, data: bytes, change) -> Path:  # type: ignore[no-untyped-def]
    lines = data.splitlines(keepends=True)
    change(lines)
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"".join(lines))
    return path


def flip_byte(lines: list[bytes]) -> None:
    line = bytearray(lines[4])
    at = line.index(b'"type"') + 9
    line[at] ^= 0x01
    lines[4] = bytes(line)


def edit_time(lines: list[bytes]) -> None:
    line = lines[4]
    start = line.index(b'"time":"') + 8
    lines[4] = line[:start] + b"2020-01-01T00:00:00.000000Z" + line[start + 27 :]


def edit_prev(lines: list[bytes]) -> None:
    lines[4] = lines[4].replace(b'"prev":"', b'"prev":"0', 1)[:-66] + lines[4][-65:]


CASES = {
    "flipped byte": (flip_byte, 5),
    "edited timestamp": (edit_time, 5),
    "deleted line": (lambda lines: lines.pop(4), 5),
    "duplicated line": (lambda lines: lines.insert(5, lines[4]), 6),
    "reordered lines": (lambda lines: lines.__setitem__(slice(4, 6), [lines[5], lines[4]]), 5),
    "edited prev": (edit_prev, 5),
}


@pytest.mark.parametrize("name", list(CASES))
def test_tampering_names_the_touched_line(tmp_path: Path, pristine: bytes, name: str) -> None:
    change, line = CASES[name]
    path = tampered(tmp_path, pristine, change)
    verdict = verify(path)
    assert not verdict.ok
    assert verdict.bad_line == line, verdict.describe("t")
    proc = run_cli("transcript", "verify", str(path))
    assert proc.returncode == 1
    assert f"{path}:{line}: broken:" in proc.stdout


def test_an_event_after_the_end_is_caught(tmp_path: Path, pristine: bytes) -> None:
    n = len(pristine.splitlines())
    path = tampered(tmp_path, pristine, lambda lines: lines.append(lines[-1]))
    verdict = verify(path)
    assert (verdict.ok, verdict.bad_line) == (False, n + 1)
    assert verdict.problem is not None and "after the run's end" in verdict.problem


def test_the_untouched_transcript_verifies(tmp_path: Path, pristine: bytes) -> None:
    path = tampered(tmp_path, pristine, lambda lines: None)
    assert verify(path).ok and verify(path).complete


DISK_FILLER = """## Fill

```sh
head -c 3000000 /dev/zero | tr '\\0' 'x'
```

## Next

```sh
touch {marker}
```
"""


def test_injected_enospc_stops_the_run_before_the_next_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "next-ran"
    book = tmp_path / "b.md"
    book.write_text(DISK_FILLER.format(marker=marker))
    real = transcript._write_all
    written = [0]

    def filling_write(fd: int, data: bytes) -> None:
        written[0] += len(data)
        if written[0] > 1_000_000:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd, data)

    monkeypatch.setattr(transcript, "_write_all", filling_write)
    done = launch.run(
        str(book),
        assignments=(),
        runs=tmp_path / "runs",
        argv=[],
        announce=lambda _: None,
        operator=HeadlessOperator(yes=True),
    )
    assert done.outcome.result == "error" and done.outcome.exit_code == 1
    assert "No space left on device" in done.outcome.message
    assert not marker.exists()
    monkeypatch.undo()
    verdict = verify(done.transcript)
    assert verdict.ok and not verdict.complete  # what was written is intact


def test_a_full_tmpfs_stops_the_run_before_the_next_command(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("CI runs as root: the tmpfs disk-full test must run there")
        pytest.skip("mounting a tmpfs needs root (the injected ENOSPC test covers the logic)")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs", str(mount)], check=True
    )
    try:
        marker = tmp_path / "next-ran"
        book = tmp_path / "b.md"
        book.write_text(DISK_FILLER.format(marker=marker))
        proc = run_cli("run", str(book), "--yes", "--runs-dir", str(mount))
        assert proc.returncode == 1
        assert "No space left on device" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert not marker.exists()
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.parametrize(
    "data",
    [b"plain\n", b'quotes " and \\ backslash\ttab\r\n', b"\x7f del and / slash", b"x" * 70000],
)
def test_fast_output_lines_are_what_json_would_write(tmp_path: Path, data: bytes) -> None:
    import json

    from runbook.record.transcript import TranscriptWriter

    fast = TranscriptWriter(tmp_path / "fast.jsonl", "r")
    event = fast.append_output(data, block="b", stream="stdout")
    fast.close()
    line = (tmp_path / "fast.jsonl").read_bytes()
    assert json.loads(line) == event
    assert line == (json.dumps(event, separators=(",", ":")) + "\n").encode()


def test_every_byte_value_is_recorded_as_json_would_write_it(tmp_path: Path) -> None:
    """Whichever path a chunk takes (the fast one for printable ASCII, newline, tab and
    carriage return; json.dumps or base64 for the rest), every byte value, alone and amid
    text, makes the line json.dumps would and reads back as the same bytes."""
    import base64
    import json

    from runbook.record.transcript import TranscriptWriter

    path = tmp_path / "t.jsonl"
    writer = TranscriptWriter(path, "r")
    chunks = [bytes([b]) for b in range(256)]
    chunks += [b"a line " + bytes([b]) + b" of text\n" for b in range(256)]
    events = [writer.append_output(data, block="b", stream="stdout") for data in chunks]
    writer.close()
    lines = path.read_bytes().split(b"\n")[:-1]
    for data, event, line in zip(chunks, events, lines, strict=True):
        assert line == json.dumps(event, separators=(",", ":")).encode(), data
        read = json.loads(line)
        text = read.get("text")
        assert (base64.b64decode(read["b64"]) if text is None else text.encode()) == data


def test_an_fsync_failing_on_the_helper_thread_stops_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Output groups are fsynced beside the loop (``record/offload.py``); an I/O error there
    stops the run before the next command, as one on the writer's own thread does."""
    marker = tmp_path / "next-ran"
    real = os.fsync

    def failing_disk(fd: int) -> None:
        if threading.current_thread().name == "runbook-fsync":
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(fd)

    monkeypatch.setattr(os, "fsync", failing_disk)
    done = run_inline(tmp_path, DISK_FILLER.format(marker=marker).replace("3000000", "20000000"))
    monkeypatch.undo()
    assert done.outcome.result == "error" and done.outcome.exit_code == 1
    assert "Input/output error" in done.outcome.message
    assert not marker.exists()
    assert verify(done.transcript).ok


def test_a_durable_event_is_on_disk_though_a_group_fsync_is_still_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group fsync in flight must not pass for a durable one: the durable sync waits for
    it, then fsyncs on the caller's thread, every line before it included; the signed head
    (``synced``) never moves back when the group's fsync ends."""
    real = os.fsync
    waiting = threading.Event()
    calls: list[tuple[str, int]] = []

    def slow_disk(fd: int) -> None:
        if threading.current_thread().name == "runbook-fsync":
            assert waiting.wait(30)  # still running when the writer comes to sync
        calls.append((threading.current_thread().name, os.fstat(fd).st_size))
        real(fd)

    monkeypatch.setattr(os, "fsync", slow_disk)
    path = tmp_path / "t.jsonl"
    writer = transcript.TranscriptWriter(path, "r")
    writer.append_output(b"x" * (transcript.FSYNC_BYTES + 1), block="b", stream="stdout")
    real_drain = writer._offload.drain

    def drain() -> None:
        waiting.set()
        real_drain()

    monkeypatch.setattr(writer._offload, "drain", drain)
    writer.sync()  # what the journal's group commit does after appending a batch's events
    assert calls[-1] == ("MainThread", path.stat().st_size), calls
    assert [name for name, _ in calls] == ["runbook-fsync", "MainThread"]
    writer.append("note", durable=True, text="after")
    durable = (writer.seq, writer.prev)
    assert calls[-1] == ("MainThread", path.stat().st_size), calls
    assert writer.synced == durable
    writer.close()
    assert writer.synced == durable


class _Signer:
    failed = None

    def __init__(self) -> None:
        self.asked: list[int] = []

    def request(self, seq: int, sha256: str) -> None:
        self.asked.append(seq)

    def wait(self, seq: int) -> None:
        return None

    def close(self, seq: int, sha256: str) -> None:
        self.asked.append(seq)


def _errseq_disk(monkeypatch: pytest.MonkeyPatch, fail_on_helper: threading.Event) -> None:
    """Linux's errseq: a writeback error reaches one fsync of the file, and every later
    fsync returns 0 though the data is lost. The helper's first fsync gets the error."""
    real = os.fsync
    told = threading.Event()

    def fsync(fd: int) -> None:
        if threading.current_thread().name == "runbook-fsync" and not told.is_set():
            assert fail_on_helper.wait(5), "the writer never waited for the helper"
            told.set()
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_after_a_failed_group_fsync_nothing_is_ever_called_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fsync after a failed one returns 0 on lost data: ``synced`` (the head reported
    as on disk, and signed) must not move past the failure, and the run must stop."""
    go = threading.Event()
    go.set()
    _errseq_disk(monkeypatch, go)
    writer = transcript.TranscriptWriter(tmp_path / "t.jsonl", "r")
    writer.signer = _Signer()  # type: ignore[assignment]
    big = b"x" * (transcript.FSYNC_BYTES + 1)
    writer.append_output(big, block="b", stream="stdout")  # group 1: the helper's EIO
    with pytest.raises(transcript.TranscriptError, match="Input/output error"):
        writer.append_output(big, block="b", stream="stdout")
        writer.append("block.start", durable=True, block="next")
    with pytest.raises(transcript.TranscriptError):
        writer.sync()
    writer.close()
    assert writer.synced == (0, transcript.GENESIS)
    assert writer.signer.asked == [0]  # only close's, of the last head known on disk


def test_a_durable_sync_waits_for_the_group_fsync_in_flight_and_hears_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two fsyncs at once: the kernel tells one of them. The durable one must not be the
    one told 'fine' while the helper's is told of the loss: it waits for the helper."""
    waiting = threading.Event()
    _errseq_disk(monkeypatch, waiting)
    writer = transcript.TranscriptWriter(tmp_path / "t.jsonl", "r")
    writer.append_output(b"x" * (transcript.FSYNC_BYTES + 1), block="b", stream="stdout")
    real_drain = writer._offload.drain

    def drain() -> None:
        waiting.set()  # the helper's fsync ends (with the error) once the writer waits
        real_drain()

    monkeypatch.setattr(writer._offload, "drain", drain)
    writer.append("block.start", block="next")
    with pytest.raises(transcript.TranscriptError, match="Input/output error"):
        writer.sync()  # the journal's group commit before the command runs
    writer.close()
    assert writer.synced == (0, transcript.GENESIS)
