"""A runs directory another user could write into is refused, as OpenSSH's StrictModes
refuses such a ``~/.ssh``: the runs (and run) directory must be yours alone, and every
directory above it yours or root's and not writable by others unless sticky."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import events, run_cli
from runbook.record.place import UnsafeDirectory, run_directory, runs_directory
from runbook.record.transcript import TranscriptError

BOOK = """## One

```sh
echo one >> {log}
```
"""

WRITE = Callable[..., Path]
ROOT_ONLY = "needs root to give a directory to another user (os.chown)"


def book(write: WRITE, tmp_path: Path) -> tuple[Path, Path]:
    log = tmp_path / "log"
    return write(BOOK.format(log=log)), log


def run(path: Path, runs: Path):  # type: ignore[no-untyped-def]
    return run_cli("run", str(path), "--yes", "--runs-dir", str(runs))


def refused(proc, *words: str) -> str:  # type: ignore[no-untyped-def]
    """The one-line message of a refused run, which says every one of ``words``."""
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return str(lines[0])


# ---------------------------------------------------------------- through the CLI


def test_a_world_writable_runs_dir_is_refused_and_nothing_runs(
    write: WRITE, tmp_path: Path
) -> None:
    path, log = book(write, tmp_path)
    runs = tmp_path / "runs"
    runs.mkdir()
    runs.chmod(0o777)
    message = refused(
        run(path, runs),
        f"runbook run: cannot record the run, so it does not start: the runs directory {runs}",
        "is writable by every user (mode 0777)",
        f"chmod go-w {runs}",
        "choose another --runs-dir",
    )
    assert "another user could hide a run or plant a transcript" in message
    assert not log.exists()
    assert list(runs.iterdir()) == []


@pytest.mark.parametrize(
    ("mode", "why"),
    [
        (0o770, "is writable by its group"),
        (0o1777, "is writable by every user (mode 1777)"),  # sticky: others still add runs
    ],
)
def test_a_run_is_refused_in_a_runs_dir_others_can_write(
    write: WRITE, tmp_path: Path, mode: int, why: str
) -> None:
    path, log = book(write, tmp_path)
    runs = tmp_path / "runs"
    runs.mkdir()
    runs.chmod(mode)
    refused(run(path, runs), f"the runs directory {runs}", why)
    assert not log.exists()
    assert list(runs.iterdir()) == []


def test_a_parent_writable_by_all_without_the_sticky_bit_is_refused(
    write: WRITE, tmp_path: Path
) -> None:
    path, log = book(write, tmp_path)
    parent = tmp_path / "open"
    parent.mkdir()
    parent.chmod(0o777)
    runs = parent / "runs"
    refused(
        run(path, runs),
        f"{parent}, above the runs directory {runs}, is writable by every user",
        "and has no sticky bit (mode 0777)",
        f"chmod go-w {parent}",
    )
    assert not log.exists()
    assert list(runs.iterdir()) == []  # created 0700 (as always), then refused


def test_a_sticky_parent_writable_by_all_is_accepted(write: WRITE, tmp_path: Path) -> None:
    path, log = book(write, tmp_path)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp
    runs = shared / "runs"
    proc = run(path, runs)
    assert proc.returncode == 0, proc.stderr
    assert log.read_text() == "one\n"
    assert stat.S_IMODE(runs.stat().st_mode) == 0o700
    (transcript,) = runs.glob("*/transcript.jsonl")
    assert events(transcript)[0]["runs_dir"] == str(runs)


def test_a_runs_dir_owned_by_another_user_is_refused(write: WRITE, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip(ROOT_ONLY)
    path, log = book(write, tmp_path)
    runs = tmp_path / "runs"
    runs.mkdir(mode=0o700)
    os.chown(runs, 65534, 65534)
    refused(
        run(path, runs),
        f"the runs directory {runs} is owned by uid 65534",
        "not you",
        "choose another --runs-dir",
    )
    assert not log.exists()
    assert list(runs.iterdir()) == []


def test_a_symlinked_runs_dir_is_followed_and_its_real_path_recorded(
    write: WRITE, tmp_path: Path
) -> None:
    path, log = book(write, tmp_path)
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    proc = run(path, link)
    assert proc.returncode == 0, proc.stderr
    assert log.read_text() == "one\n"
    (transcript,) = real.glob("*/transcript.jsonl")
    assert f"recording to {transcript}" in proc.stderr  # the real path, not the link
    assert events(transcript)[0]["runs_dir"] == str(real.resolve())


def test_resume_is_refused_once_the_runs_dir_is_writable_by_all(
    write: WRITE, tmp_path: Path
) -> None:
    path, log = book(write, tmp_path)
    runs = tmp_path / "runs"
    assert run(path, runs).returncode == 0
    (transcript,) = runs.glob("*/transcript.jsonl")
    # Only its run.start left: a prefix of a chain is intact, and the run resumable.
    transcript.write_bytes(transcript.read_bytes().splitlines(keepends=True)[0])
    log.unlink()
    runs.chmod(0o777)
    resumed = run_cli("resume", str(transcript), "--yes")
    refused(
        resumed,
        f"runbook resume: cannot resume: the runs directory {runs}",
        "is writable by every user (mode 0777)",
        f"chmod go-w {runs}",
    )
    assert not log.exists()
    assert not (transcript.parent / "transcript-2.jsonl").exists()

    transcript.parent.chmod(0o757)
    runs.chmod(0o700)
    refused(
        run_cli("resume", str(transcript), "--yes"),
        f"the run directory {transcript.parent} is writable by every user (mode 0757)",
    )
    assert not log.exists()

    transcript.parent.chmod(0o700)  # fixed: the same run resumes
    again = run_cli("resume", str(transcript), "--yes")
    assert again.returncode == 0, again.stderr
    assert log.read_text() == "one\n"
    start = events(transcript.parent / "transcript-2.jsonl")[0]
    assert start["runs_dir"] == str(runs)


# ---------------------------------------------------------------- the checker itself


def test_a_missing_runs_dir_is_created_0700_whatever_the_umask(tmp_path: Path) -> None:
    runs = tmp_path / "a" / "b" / "runs"
    old = os.umask(0o277)
    try:
        real = runs_directory(runs)
    finally:
        os.umask(old)
    assert real == runs
    assert stat.S_IMODE(runs.stat().st_mode) == 0o700


def test_an_existing_runs_dir_keeps_its_mode(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    runs.chmod(0o755)  # readable by others is their choice; writable is not
    assert runs_directory(runs) == runs
    assert stat.S_IMODE(runs.stat().st_mode) == 0o755


@pytest.mark.parametrize(
    ("mode", "says"),
    [
        (0o777, "is writable by every user (mode 0777)"),
        (0o702, "is writable by every user (mode 0702)"),
        (0o720, "is writable by its group, gid "),
        (0o1770, "(mode 1770)"),
    ],
)
def test_a_runs_dir_others_can_write_is_refused(tmp_path: Path, mode: int, says: str) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    runs.chmod(mode)
    with pytest.raises(UnsafeDirectory) as refusal:
        runs_directory(runs)
    message = str(refusal.value)
    assert message.startswith(f"the runs directory {runs} ")
    assert says in message and "\n" not in message
    assert f"run `chmod go-w {runs}`, or choose another --runs-dir" in message


@pytest.mark.parametrize("mode", [0o1777, 0o1770, 0o755, 0o700])
def test_parents_may_be_sticky_or_not_writable_by_others(tmp_path: Path, mode: int) -> None:
    parent = tmp_path / "parent"
    parent.mkdir()
    parent.chmod(mode)
    assert runs_directory(parent / "runs") == parent / "runs"


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o757])
def test_parents_writable_by_others_without_sticky_are_refused(tmp_path: Path, mode: int) -> None:
    parent = tmp_path / "parent" / "deeper"
    parent.mkdir(parents=True)
    parent.parent.chmod(mode)
    runs = parent / "runs"
    with pytest.raises(UnsafeDirectory, match="has no sticky bit") as refusal:
        runs_directory(runs)
    assert str(refusal.value).startswith(f"{parent.parent}, above the runs directory {runs},")


def test_a_parent_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip(ROOT_ONLY)
    parent = tmp_path / "theirs"
    parent.mkdir(mode=0o755)
    (parent / "runs").mkdir(mode=0o700)
    os.chown(parent, 65534, 65534)
    with pytest.raises(UnsafeDirectory, match="is owned by uid 65534"):
        runs_directory(parent / "runs")


def test_the_real_path_of_a_symlink_is_checked_and_returned(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o777)
    real.chmod(0o777)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(UnsafeDirectory, match=f"the runs directory {real} is writable"):
        runs_directory(link)
    real.chmod(0o700)
    assert runs_directory(link) == real


def test_a_dangling_symlink_is_followed_to_where_the_runs_dir_is_created(tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "there")
    assert runs_directory(link) == tmp_path / "there"
    assert stat.S_IMODE((tmp_path / "there").stat().st_mode) == 0o700


def test_a_runs_dir_that_is_a_file_or_cannot_be_made_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(UnsafeDirectory, match="is not a directory"):
        runs_directory(tmp_path / "file")
    with pytest.raises(TranscriptError, match="cannot create the runs directory"):
        runs_directory(tmp_path / "file" / "runs")


def test_a_run_directory_and_its_runs_directory_are_both_checked(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run = runs / "20261203T000000Z-abcdef"
    run.mkdir(parents=True, mode=0o700)
    runs.chmod(0o700)
    assert run_directory(run) == run
    run.chmod(0o770)
    with pytest.raises(UnsafeDirectory, match=f"the run directory {run} is writable") as refusal:
        run_directory(run)
    assert "resume again" in str(refusal.value) and "--runs-dir" not in str(refusal.value)
    run.chmod(0o700)
    runs.chmod(0o1777)  # sticky is not enough for the runs directory
    with pytest.raises(UnsafeDirectory, match=f"the runs directory {runs} is writable"):
        run_directory(run)
    runs.chmod(0o700)
    tmp_path.chmod(0o777)
    try:
        with pytest.raises(UnsafeDirectory, match=f"above the runs directory {runs},"):
            run_directory(run)
    finally:
        tmp_path.chmod(0o700)


def test_an_unsafe_directory_is_a_transcript_error() -> None:
    assert issubclass(UnsafeDirectory, TranscriptError)
