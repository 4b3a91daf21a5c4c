"""Between the command line and a Session: starting a run, resuming one.

Everything that can refuse a run refuses it here, before a run directory exists or any
command runs: an invalid runbook, bad values, gates with nobody to answer them, a
changed runbook on resume.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from runbook.engine.operator import HeadlessOperator, Operator, TerminalOperator
from runbook.engine.session import Outcome, Session
from runbook.engine.stopping import stop_on_signals
from runbook.format.hosts import DEFAULT_FORKS
from runbook.format.inputs import BadUsage, Refused, load_runbook, parse_vars
from runbook.format.model import Runbook
from runbook.format.variables import VariableProblem, check_value, how_to_give, resolve
from runbook.record.lock import RunBusy, RunLock
from runbook.record.place import run_directory
from runbook.record.runs import Replay, replay, start_run
from runbook.record.transcript import TranscriptError, TranscriptWriter
from runbook.transports.local import LocalTransport

if TYPE_CHECKING:
    from runbook.record.signing import SigningKey
    from runbook.transports.ssh import SSHTransport

T = TypeVar("T")


@dataclass(frozen=True)
class Finished:
    outcome: Outcome
    transcript: Path
    last_hash: str
    end_unknown: str | None = None
    """Recording failed: the transcript's end on disk is not known; what is."""
    signed: str | None = None
    """With a signing key: up to where the transcript is signed, or why it is not."""


def preflight(
    rb: Runbook, values: Mapping[str, str], *, answers_gates: bool, asks_values: bool
) -> list[str]:
    """Reasons the run must not start at all; checked before anything runs or is recorded."""
    problems: list[str] = []
    if not asks_values:
        problems += [
            f"{rb.path}:{v.line}: variable {v.name} has no value: {how_to_give(v)}"
            for v in rb.variables
            if v.name not in values
        ]
    if not answers_gates:
        gates = [
            f"{rb.path}:{b.line}: block {b.name} has a gate"
            for b in rb.blocks
            if b.runs_forward and (b.options.confirm or b.options.type_to_confirm)
        ]
        checks = [
            f"{rb.path}:{c.line}: checklist item {c.text!r}" for s in rb.steps for c in s.checklist
        ]
        problems += [
            f"{item}, and there is no terminal to ask (pass --yes to approve every gate)"
            for item in (*gates, *checks)
        ]
    return problems


def default_operator(yes: bool, terminal: bool, on_failure: str | None = None) -> Operator:
    """``--yes``: automatic answers; a terminal: plain prompts; else nobody to ask.

    ``on_failure`` (``abort`` or ``rollback``) is what a headless run does after a failure;
    a person at a terminal decides for themselves, so giving it there is a usage error.
    """
    if yes or not terminal:
        return HeadlessOperator(yes=yes, on_failure=on_failure)
    if on_failure is not None:
        raise BadUsage(
            "--on-failure decides for a run nobody answers; on a terminal you are asked"
            " (add --yes to run headless)"
        )
    return TerminalOperator()


def run(
    path: str,
    *,
    assignments: Sequence[str],
    runs: Path,
    argv: Sequence[str],
    announce: Callable[[str], None],
    operator: Operator,
    transport: LocalTransport | None = None,
    ssh_config: Path | None = None,
    forks: int | None = None,
    signing: SigningKey | None = None,
    until_exit: bool = False,
) -> Finished:
    """Start a new run of the runbook at ``path`` (``operator`` and ``transport`` for tests;
    ``until_exit``: the process ends with the run, see ``stop_on_signals``)."""
    session = prepare_run(
        path,
        assignments=assignments,
        runs=runs,
        argv=argv,
        announce=announce,
        operator=operator,
        transport=transport,
        ssh_config=ssh_config,
        forks=forks,
        signing=signing,
    )
    return _finish(session, until_exit)


def prepare_run(
    path: str,
    *,
    assignments: Sequence[str],
    runs: Path,
    argv: Sequence[str],
    announce: Callable[[str], None],
    operator: Operator,
    transport: LocalTransport | None = None,
    ssh_config: Path | None = None,
    forks: int | None = None,
    entered: Mapping[str, str] | None = None,
    signing: SigningKey | None = None,
) -> Session:
    """A session ready to run, its transcript created; ``entered``: values from a form."""
    rb, data = load_runbook(path)
    if isinstance(operator, HeadlessOperator):
        operator.follow(rb.on_failure)
    given = parse_vars(assignments)
    try:
        resolved = resolve(rb, given)
    except VariableProblem as e:
        raise BadUsage(str(e)) from None
    can_ask = operator.interactive
    values = dict(resolved.values)
    sources = dict(resolved.sources)
    declared = {v.name: v for v in rb.variables}
    for name, value in (entered or {}).items():
        try:
            check_value(declared[name], value)
        except (KeyError, VariableProblem) as e:
            raise BadUsage(f"{name}: {e}") from None
        if sources.get(name) != "--var":
            values[name], sources[name] = value, "form"
    if not can_ask:
        for var in rb.variables:
            if var.name not in values and not var.required:
                values[var.name], sources[var.name] = "", "empty"
    problems = preflight(rb, values, answers_gates=operator.auto or can_ask, asks_values=can_ask)
    if problems:
        raise Refused("\n".join([*problems, "nothing was run"]))
    _readable(ssh_config)
    lock, writer, real_runs = _guard(lambda: start_run(runs, data, _user()))
    with lock.released_on_error():
        forks = DEFAULT_FORKS if forks is None else forks
        fields = (
            _context(argv)
            | {"runs_dir": str(real_runs), "ssh": _ssh_record(ssh_config, forks)}
            | _sign(writer, signing)
        )
        session = Session(
            rb,
            operator,
            writer,
            values=values,
            sources=sources,
            transport=transport,
            ssh=_ssh(rb, ssh_config),
            forks=forks,
            start_fields=fields,
            lock=lock,
        )
    announce(f"runbook: recording to {writer.path}")
    return session


def resume(
    transcript: str,
    *,
    allow_changed: bool,
    assignments: Sequence[str],
    argv: Sequence[str],
    announce: Callable[[str], None],
    operator: Operator,
    transport: LocalTransport | None = None,
    ssh_config: Path | None = None,
    forks: int | None = None,
    signing: SigningKey | None = None,
    allow_other_ssh_config: bool = False,
    until_exit: bool = False,
) -> Finished:
    """Continue the run ``transcript`` belongs to, in a new transcript file chained to it."""
    session, _ = prepare_resume(
        transcript,
        allow_changed=allow_changed,
        assignments=assignments,
        argv=argv,
        announce=announce,
        operator=operator,
        transport=transport,
        ssh_config=ssh_config,
        forks=forks,
        signing=signing,
        allow_other_ssh_config=allow_other_ssh_config,
    )
    return _finish(session, until_exit)


def prepare_resume(
    transcript: str,
    *,
    allow_changed: bool,
    assignments: Sequence[str],
    argv: Sequence[str],
    announce: Callable[[str], None],
    operator: Operator,
    transport: LocalTransport | None = None,
    ssh_config: Path | None = None,
    forks: int | None = None,
    signing: SigningKey | None = None,
    allow_other_ssh_config: bool = False,
) -> tuple[Session, Replay]:
    """A session that continues the run, and the replay of what was recorded before."""
    # The lock first: a live run must not append between the replay and this run's start;
    # before it, the check that nobody else can write the run or runs directory (place.py).
    try:
        where = Path(transcript).resolve()
        directory = run_directory(where.parent)
        lock = RunLock(directory, _user())
    except (RunBusy, TranscriptError, OSError) as e:
        raise Refused(f"cannot resume: {e}") from None
    with lock.released_on_error():  # refused or failed: the run stays resumable
        try:
            previous = replay(directory / where.name)
        except (TranscriptError, OSError) as e:
            raise Refused(f"cannot resume: {e}") from None
        if previous.warning:
            announce(f"runbook: {previous.warning}")
        state = previous.state
        if state.result is not None:
            how = f"{state.result}: {state.end_message}" if state.end_message else state.result
            raise Refused(
                f"cannot resume: the run already ended ({how}); an ended run is over on the"
                f" record. `runbook transcript render {transcript}` shows what it did;"
                " `runbook run` or `runbook FILE` starts a new run from the first step"
            )
        if state.runbook_path is None or state.runbook_sha256 is None:
            raise Refused("cannot resume: the transcript has no run.start")
        rb, _ = load_runbook(state.runbook_path)
        if isinstance(operator, HeadlessOperator):
            operator.follow(rb.on_failure)
        changed = rb.sha256 != state.runbook_sha256
        if changed and not allow_changed:
            raise Refused(
                f"cannot resume: {state.runbook_path} changed since the run started"
                f" (was sha256 {state.runbook_sha256}, now {rb.sha256});"
                " compare it with the snapshot in the run directory, or pass --allow-changed"
            )
        given = parse_vars(assignments)
        try:
            checked = resolve(rb, given)  # declared, and matching pattern and choices
        except VariableProblem as e:
            raise BadUsage(str(e)) from None
        can_ask = operator.interactive
        values = {**state.values, **{k: checked.values[k] for k in given}}
        problems = preflight(
            rb, values, answers_gates=operator.auto or can_ask, asks_values=can_ask
        )
        if state.running and not can_ask:
            problems += [
                f"block {name} was running when the run stopped; what to do about it is the"
                " operator's decision: resume on a terminal"
                for name in state.running
            ]
        if problems:
            raise Refused("\n".join(["cannot resume:", *problems, "nothing was run"]))
        ssh_config, forks, other = _resumed_ssh(
            state.ssh, ssh_config, forks, allow_other_ssh_config
        )
        sources = {name: "transcript" for name in state.values} | {n: "--var" for n in given}
        writer = _guard(previous.next_writer)
        fields = (
            _context(argv)
            | _sign(writer, signing)
            | other
            | {
                "runs_dir": str(directory.parent),
                "ssh": _ssh_record(ssh_config, forks),
                "resumed_from": {
                    "transcript": previous.files[-1].name,
                    "last_seq": state.last_seq,
                    "last_hash": previous.last_hash,
                },
            }
        )
        if changed:
            fields["allow_changed"] = {
                "recorded_sha256": state.runbook_sha256,
                "now_sha256": rb.sha256,
            }
        session = Session(
            rb,
            operator,
            writer,
            values=values,
            sources=sources,
            state=state,
            transport=transport,
            ssh=_ssh(rb, ssh_config),
            forks=forks,
            start_fields=fields,
            lock=lock,
        )
        announce(f"runbook: resuming run {state.run_id}, recording to {writer.path}")
        return session, previous


def _ssh_record(config: Path | None, forks: int) -> dict[str, object]:
    """What a resume reuses: the ssh config (another one can reach other machines under
    the same host names), the file's sha256 to tell it was edited, and the forks."""
    return {
        "config": str(config.resolve()) if config is not None else None,
        "config_sha256": _sha256_file(config),
        "forks": forks,
    }


def _sha256_file(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _resumed_ssh(
    recorded: Mapping[str, Any] | None, given: Path | None, forks: int | None, allow_other: bool
) -> tuple[Path | None, int, dict[str, object]]:
    """The ssh config and forks a resume runs with: the run's, unless told otherwise.

    A config other than the run's, or the run's edited since, is refused unless
    ``allow_other`` (then recorded as ``allow_other_ssh_config``)."""
    if recorded is None:  # a record from before these were kept: what the resume is given
        return given, DEFAULT_FORKS if forks is None else forks, {}
    was, was_sha = recorded.get("config"), recorded.get("config_sha256")
    use = given if given is not None else (Path(was) if isinstance(was, str) else None)
    now = str(use.resolve()) if use is not None else None
    sha = _sha256_file(use)
    problem = None
    if now != was:
        said = f"--ssh-config {was}" if was else "no --ssh-config (~/.ssh/config)"
        problem = f"the run used {said}; this resume gives {now or 'none'}"
    elif use is not None and sha != was_sha:
        problem = (
            f"{was} changed since the run started (sha256 {was_sha}, now {sha or 'unreadable'})"
        )
    fields: dict[str, object] = {}
    if problem is not None:
        if not allow_other:
            raise Refused(
                f"cannot resume: {problem}. Another ssh config can reach other machines under"
                " the same host names: resume with the run's, or pass --allow-other-ssh-config"
            )
        fields["allow_other_ssh_config"] = {"recorded": dict(recorded), "problem": problem}
    recorded_forks = recorded.get("forks")
    if forks is None:
        forks = recorded_forks if isinstance(recorded_forks, int) else DEFAULT_FORKS
    return use, forks, fields


def _sign(writer: TranscriptWriter, signing: SigningKey | None) -> dict[str, object]:
    """Sign ``writer``'s heads with ``signing``; the run.start field that says so."""
    if signing is None:
        return {}
    writer.signer = _guard(lambda: signing.signer(writer.path, writer.run_id))
    return {"signing_key": signing.key_id}


def _guard(make: Callable[[], T]) -> T:
    """A run directory or transcript that cannot be created refuses the run."""
    try:
        return make()
    except (TranscriptError, OSError) as e:
        raise Refused(f"cannot record the run, so it does not start: {e}") from None


def _finish(session: Session, until_exit: bool = False) -> Finished:
    """Run the session; Ctrl-C, SIGTERM or SIGHUP anywhere ends it with a recorded abort,
    never a traceback.

    Not ``asyncio.run``: its SIGINT handler only cancels the task, which cannot stop a
    prompt that is waiting for the operator's answer.
    """
    loop = asyncio.new_event_loop()
    task = loop.create_task(session.run())
    try:
        stopping = stop_on_signals(
            loop, session.stop, session.interrupt, session.operator, session.cancel, until_exit
        )
        with stopping:
            while True:
                try:
                    outcome = loop.run_until_complete(task)
                    break
                except KeyboardInterrupt:  # out of a question asked in a host's own task
                    if task.done():  # never wait again for a task that cannot end twice
                        raise
                    session.cancel()  # the session records the abort and returns
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    writer = session.writer
    unknown = None
    if writer.failed is not None:  # the file may hold less, or more, than is durable
        seq, durable = writer.synced
        unknown = f"{writer.failed} The last line known to be on disk: seq {seq}, sha256 {durable}"
    return Finished(outcome, writer.path, writer.prev, unknown, signed_status(writer))


def signed_status(writer: TranscriptWriter) -> str | None:
    """With a signing key: up to where the transcript is signed, or why it is not."""
    if writer.signer is None:
        return None
    from runbook.record.signing import Signer

    signer = writer.signer
    if not isinstance(signer, Signer):
        return None
    if signer.signed is None:
        return f"NOT signed: {signer.failed or 'no signature was made'}"
    seq, _ = signer.signed
    text = f"signed up to seq {seq} by {signer.key_id} ({signer.path.name})"
    if signer.failed is not None:
        text += f"; signing then failed: {signer.failed}"
    return text


def _context(argv: Sequence[str]) -> dict[str, object]:
    """Who runs it where; ``argv`` is masked by the session like every typed value."""
    return {
        "user": _user(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "cwd": os.getcwd(),
        "argv": list(argv),
    }


def _user() -> str:
    """Who runs it, as ``getpass.getuser`` says (importing getpass loads termios: 0.5 ms)."""
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        if user := os.environ.get(name):
            return user
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


__all__ = [
    "BadUsage",
    "Finished",
    "Refused",
    "Replay",
    "prepare_resume",
    "prepare_run",
    "resume",
    "run",
    "signed_status",
]


def _readable(ssh_config: Path | None) -> None:
    """``--ssh-config FILE`` can be read: said before the run starts, not at its first host."""
    if ssh_config is not None:
        try:
            ssh_config.open("rb").close()
        except OSError as e:
            raise BadUsage(f"--ssh-config {ssh_config}: cannot read: {e.strerror or e}") from None


def _ssh(rb: Runbook, config: Path | None) -> SSHTransport | None:
    """The SSH transport, for a runbook with a block anywhere but local; a local-only run
    never imports asyncssh (a third of the start-up time)."""
    if all(b.options.on.strip() == "local" for b in rb.blocks):
        return None
    from runbook.transports.ssh import SSHTransport

    return SSHTransport(config=config, defaults=rb.ssh)
