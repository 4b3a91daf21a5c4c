"""Where runs are recorded must be a place no other user can write: checked as OpenSSH's
StrictModes checks ``~/.ssh``.

The runs directory (and, on resume, the run directory) must be owned by the current user
and writable by nobody else, sticky bit or not: with it, others could still plant new run
directories. Every directory above it, up to ``/``, must be owned by the current user or
root and not writable by others unless it has the sticky bit (``/tmp`` is fine). A
symlinked runs directory is followed: its real path is what is checked and then used.
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import stat
from pathlib import Path

from runbook.record.transcript import TranscriptError


class UnsafeDirectory(TranscriptError):
    """A directory others could write into; the message says which, why and what to do."""


def runs_directory(runs: Path) -> Path:
    """The real path of the runs directory, created 0700 (and its parents) if missing,
    then checked; raises ``TranscriptError`` (``UnsafeDirectory``) if it cannot be used."""
    path = _resolve(runs)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass  # checked below, whatever it is
        else:
            _private_mode(path)
    except OSError as e:
        raise TranscriptError(f"cannot create the runs directory {path}: {_why(e)}") from e
    real = _resolve(path, strict=True)
    check(real, ["the runs directory"])
    return real


def run_directory(directory: Path) -> Path:
    """The real path of an existing run directory, checked with its runs directory."""
    real = _resolve(directory, strict=True)
    check(real, ["the run directory", "the runs directory"], resuming=True)
    return real


def check(real: Path, private: list[str], *, resuming: bool = False) -> None:
    """Check the real (symlink-free) path ``real``: it and the parents named in ``private``
    (``real`` first) must be the current user's alone; the rest up to ``/`` must be owned
    by the user or root and not writable by others without the sticky bit."""
    me = os.geteuid()
    chain = [real, *real.parents]
    top = f"{private[-1]} {chain[len(private) - 1]}"
    for depth, path in enumerate(chain):
        try:
            st = os.stat(path, follow_symlinks=False)
        except OSError as e:
            raise TranscriptError(f"cannot check {path}: {_why(e)}") from e
        mode = stat.S_IMODE(st.st_mode)
        mine = depth < len(private)
        what = f"{private[depth]} {path}" if mine else f"{path}, above {top},"
        if stat.S_ISLNK(st.st_mode):
            raise UnsafeDirectory(f"{what} became a symlink while it was checked; try again")
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafeDirectory(f"{what} is not a directory")
        owners = {me} if mine else {me, 0}
        if st.st_uid not in owners:
            you = "you" if owners == {me} else "you or root"
            other = (
                "resume it only from directories that are yours alone"
                if resuming
                else "choose another --runs-dir"
            )
            raise UnsafeDirectory(
                f"{what} is owned by {_user(st.st_uid)}, not {you}: another user could hide"
                f" a run or plant a transcript there; {other}"
            )
        writers = mode & 0o022 if mine or not mode & stat.S_ISVTX else 0
        if writers:
            who = "every user" if writers & 0o002 else f"its group, {_group(st.st_gid)}"
            sticky = "" if mine else " and has no sticky bit"
            cmd = f"chmod go-w {shlex.quote(str(path))}"
            fix = (
                f"check that nobody else wrote there, run `{cmd}` and resume again"
                if resuming
                else f"run `{cmd}`, or choose another --runs-dir"
            )
            raise UnsafeDirectory(
                f"{what} is writable by {who}{sticky} (mode {mode:04o}): another user could"
                f" hide a run or plant a transcript there; {fix}"
            )


def _resolve(path: Path, strict: bool = False) -> Path:
    try:
        return path.resolve(strict=strict)
    except (OSError, RuntimeError) as e:  # RuntimeError: a symlink loop (Python < 3.13)
        raise TranscriptError(f"cannot use {path}: {_why(e)}") from e


def _private_mode(path: Path) -> None:
    """0700 whatever the umask, on the directory just made (never through a symlink)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.fchmod(fd, 0o700)
        finally:
            os.close(fd)
    except OSError as e:
        raise TranscriptError(f"cannot make {path} private: {_why(e)}") from e


def _user(uid: int) -> str:
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def _group(gid: int) -> str:
    try:
        return f"gid {gid} ({grp.getgrgid(gid).gr_name})"
    except KeyError:
        return f"gid {gid}"


def _why(e: BaseException) -> str:
    return (e.strerror if isinstance(e, OSError) else None) or str(e)
