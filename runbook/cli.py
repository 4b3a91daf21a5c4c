"""Command line: argparse subcommands and exit codes; the work happens in the core modules.

Exit codes: 0 success, 1 the runbook is invalid (or the run failed), 2 usage errors
(bad arguments, unreadable files). Bad input never produces a traceback.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Sequence

from runbook import __version__
from runbook.parser import ParseResult, parse_file
from runbook.plan import PlanProblem, build_plan, render_text
from runbook.variables import VariableProblem, parse_assignment, resolve

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad command-line input: reported on stderr with exit code 2."""


def _parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="runbook",
        description="Step through a Markdown runbook: check it, plan it, run it, keep the record.",
    )
    top.add_argument("--version", action="version", version=f"runbook {__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", required=True)

    check = sub.add_parser(
        "check",
        help="lint runbooks: FILE:LINE:COL: error|warning: message",
        description="Report every problem in the given runbooks. Exit 0 clean (warnings allowed), "
        "1 errors, 2 usage errors or unreadable files.",
    )
    check.add_argument("files", nargs="+", metavar="FILE", help="Markdown runbooks")
    check.add_argument("-q", "--quiet", action="store_true", help="no summary line on stderr")
    check.add_argument("--no-warnings", action="store_true", help="print errors only")

    plan = sub.add_parser(
        "plan",
        help="what would run, where, in which batches, behind which gates",
        description="Print the plan of a runbook without running anything. Secret values are "
        "never printed. Exit 0, 1 if the runbook is invalid, 2 usage errors.",
    )
    plan.add_argument("file", metavar="FILE", help="a Markdown runbook")
    plan.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a declared variable (repeatable)",
    )
    plan.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    return top


def _read(path: str) -> ParseResult:
    try:
        return parse_file(path)
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, not a runbook") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror or e}") from None


def cmd_check(args: argparse.Namespace) -> int:
    errors = warnings = 0
    unreadable = False
    for path in args.files:
        try:
            result = _read(path)
        except UsageError as e:
            print(f"runbook check: {e}", file=sys.stderr)
            unreadable = True
            continue
        for d in result.diagnostics:
            if d.severity == "error":
                errors += 1
            else:
                warnings += 1
                if args.no_warnings:
                    continue
            print(d.format(path))
    if not args.quiet:
        files = len(args.files)
        print(
            f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"
            f" in {files} file{'s' * (files != 1)}",
            file=sys.stderr,
        )
    if unreadable:
        return EXIT_USAGE
    return EXIT_INVALID if errors else EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    result = _read(args.file)
    errors = [d for d in result.diagnostics if d.severity == "error"]
    if errors or result.runbook is None:
        for d in errors:
            print(d.format(args.file), file=sys.stderr)
        print(f"runbook plan: {args.file} has errors; fix them first", file=sys.stderr)
        return EXIT_INVALID
    try:
        given: dict[str, str] = {}
        for assignment in args.var:
            name, value = parse_assignment(assignment)
            if name in given:
                raise VariableProblem(f"--var {name} is given twice")
            given[name] = value
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


COMMANDS = {"check": cmd_check, "plan": cmd_plan}


def main(argv: Sequence[str] | None = None) -> int:
    # Text from a runbook can hold anything; never let printing it raise.
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UsageError as e:
        print(f"runbook {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # `runbook plan x.md | head`: the reader left; not an error of ours.
        sys.stderr.close()
        return EXIT_OK
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
