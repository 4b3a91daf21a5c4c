"""The command line's shape: subcommands, their options and help (``runbook --help``).

Kept apart from ``cli``, which runs the commands, so the whole interface reads in one place.
"""

from __future__ import annotations

import argparse

from runbook import __version__
from runbook.format.hosts import DEFAULT_FORKS


def parser() -> argparse.ArgumentParser:
    """Every subcommand, its options and its help text."""
    top = argparse.ArgumentParser(
        prog="runbook",
        description="Step through a Markdown runbook: check it, plan it, run it, keep the record.",
    )
    top.add_argument("--version", action="version", version=f"runbook {__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", required=True)

    check = sub.add_parser(
        "check",
        help="lint runbooks: FILE:LINE:COL: error|warning|note: message",
        description="Report every problem in the given runbooks, each block parsed by the "
        "shell it runs under (never run). Notes name what is left to other tools. Exit 0 "
        "clean (warnings and notes allowed), 1 errors, 2 usage errors or unreadable files.",
    )
    check.add_argument("files", nargs="+", metavar="FILE", help="Markdown runbooks")
    check.add_argument("-q", "--quiet", action="store_true", help="no summary line on stderr")
    check.add_argument("--no-warnings", action="store_true", help="print errors only")
    check.add_argument(
        "--no-shell",
        action="store_true",
        help="do not parse each block with the shell it runs under (`bash -n`, `sh -n`)",
    )
    check.add_argument(
        "--shellcheck",
        action="store_true",
        help="also run ShellCheck on each block (pip install 'runbook-md[lint]' ships it)",
    )

    fix = sub.add_parser(
        "fix",
        help="turn a how-to into a runnable runbook: show the diff, --write to apply",
        description="Rewrite what keeps FILE from running as its author meant: a pasted "
        "session's prompts become its commands (its output moves to a text block), "
        "<placeholders> become declared variables, blocks outside any step get one. Prints a "
        "unified diff; --write applies it. A result that still has errors is never written. "
        "Exit 0, 1 if errors remain, 2 usage errors.",
    )
    fix.add_argument("file", metavar="FILE", help="a Markdown runbook")
    fix.add_argument("--write", action="store_true", help="write the fixed file in place")

    plan = sub.add_parser(
        "plan",
        help="what would run, where, in which batches, behind which gates",
        description="Print the plan of a runbook without running anything. Secret values are "
        "never printed. Exit 0, 1 if the runbook is invalid, 2 usage errors.",
    )
    plan.add_argument("file", metavar="FILE", help="a Markdown runbook")
    _var_option(plan)
    plan.add_argument("--format", choices=("text", "json"), default="text", help="output format")

    run = sub.add_parser(
        "run",
        help="run a runbook headless or with plain terminal prompts, recording a transcript",
        description="Run FILE step by step. On a terminal every gate, checklist item and "
        "failure is asked; --yes approves every gate (recorded as automatic). Without a "
        "terminal and without --yes, a runbook with gates is refused before anything runs. "
        "Exit 0 when every step is done, 1 when a step failed or the run was aborted or "
        "rolled back, 2 usage errors, 3 when a rollback was incomplete (a rollback block "
        "declined, skipped or failed, or the rollback stopped).",
    )
    run.add_argument("file", metavar="FILE", help="a Markdown runbook")
    _run_options(run)

    resume = sub.add_parser(
        "resume",
        help="continue an interrupted run where it stopped",
        description="Replay TRANSCRIPT (verifying it), then continue the run in a new "
        "transcript file chained to the last one. A block that was running when the run died "
        "is unknown: the operator decides whether to re-run it, mark it done or skip it.",
    )
    resume.add_argument(
        "transcript", metavar="TRANSCRIPT", help="the run's transcript.jsonl, or its directory"
    )
    resume.add_argument(
        "--allow-changed",
        action="store_true",
        help="resume even though the runbook changed since the run started (recorded)",
    )
    resume.add_argument(
        "--allow-other-ssh-config",
        action="store_true",
        help="resume with an --ssh-config other than the run's, or the run's though it"
        " changed since (recorded)",
    )
    _run_options(resume, runs_dir=False)

    open_ = sub.add_parser(
        "open",
        help="the console (TUI): step through FILE; `runbook FILE` is the same",
        description="Open FILE in the console: a form for its variables, then each step "
        "rendered, its checklist, gates and failures answered on screen, output per host, "
        "the transcript path in the header. Needs a terminal (use `run` without one). Exit as "
        "`run`.",
    )
    open_.add_argument("file", metavar="FILE", help="a Markdown runbook")
    _run_options(open_)

    demo = sub.add_parser(
        "demo",
        help="try it: an example runbook against an embedded SSH fleet on loopback",
        description="Start SSH servers on 127.0.0.1 (random ports, keys generated for this run, "
        "each host a temporary directory with stand-ins for sudo, systemctl, curl and the "
        "site's tools) and open an example runbook for them. EXAMPLE is one of deploy (the "
        "default: canary, batches, web3's failing health check, rollback), deploy-web, "
        "blue-green (`--list` says what each does), or FILE, any runbook whose hosts are plain "
        "names. Nothing outside the temporary directory changes; nothing is left running. "
        "Without a terminal (or with --yes) it runs headless. --serve starts the fleet alone "
        "and prints a `runbook run` command for it.",
    )
    demo.add_argument("target", nargs="?", metavar="EXAMPLE|FILE", help="default: deploy")
    demo.add_argument("--list", action="store_true", help="list the examples and exit")
    demo.add_argument("--yes", action="store_true", help="headless: approve every gate")
    _on_failure_option(demo)
    demo.add_argument(
        "--break", dest="broken", action="append", metavar="HOST",
        help="make HOST's health check fail (repeatable; `none` for none; default: web3 for "
        "deploy, none for the others)",
    )  # fmt: skip
    demo.add_argument(
        "--serve", action="store_true",
        help="start the fleet only, print its ssh_config and a `runbook run` command, and wait "
        "for Ctrl-C or SIGTERM",
    )  # fmt: skip
    _var_option(demo)
    _runs_dir_option(demo)
    _signing_option(demo)

    transcript = sub.add_parser("transcript", help="verify or render a run's transcript")
    tsub = transcript.add_subparsers(dest="action", metavar="ACTION", required=True)
    verify = tsub.add_parser(
        "verify",
        help="check the transcript's hash chain",
        description="Check JSON, seq, the hash chain, the run id, nothing after the run's end "
        "and output offsets. Exit 0 intact (says whether the run completed), 1 broken "
        "(names the first bad line and why), a signature or witness that does not match, or "
        "a runbook.md that is not the runbook the run recorded.",
    )
    verify.add_argument("file", metavar="FILE", help="a transcript.jsonl, or its run's directory")
    verify.add_argument(
        "--allowed-signers", metavar="FILE",
        help="OpenSSH allowed_signers file: check the run's signatures (see docs/security.md);"
        " fails unless a listed key signed up to the last line",
    )  # fmt: skip
    verify.add_argument(
        "--allow-incomplete", action="store_true",
        help="with --allowed-signers: accept a run without a signed end (still running, or"
        " crashed); otherwise a missing end fails, as a cut-back record would look",
    )  # fmt: skip
    verify.add_argument(
        "--expect", action="append", default=[], metavar="[SEQ:]SHA256",
        help="fail unless the last line (or line SEQ) hashes to SHA256: the hash `run` printed"
        " at the end, or one a chat message carried (repeatable)",
    )  # fmt: skip
    render = tsub.add_parser(
        "render",
        help="a Markdown report of the run, for the post-mortem",
        description="Render the run the transcript belongs to as Markdown (all its transcript "
        "files, resumed parts included).",
    )
    render.add_argument("file", metavar="FILE", help="a transcript.jsonl, or its run's directory")
    render.add_argument("-o", "--output", metavar="OUT.md", help="write here instead of stdout")
    return top


def _run_options(parser: argparse.ArgumentParser, runs_dir: bool = True) -> None:
    parser.add_argument("--yes", action="store_true", help="approve every gate (recorded)")
    _on_failure_option(parser)
    _var_option(parser)
    if runs_dir:
        _runs_dir_option(parser)
    _signing_option(parser)
    parser.add_argument(
        "--ssh-config", metavar="FILE", help="OpenSSH config to use instead of ~/.ssh/config"
    )
    parser.add_argument(
        "--forks",
        type=int,
        default=None,
        metavar="N",
        help=f"hosts a batch runs on at once (default {DEFAULT_FORKS}; a resume: the run's)",
    )


def _signing_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--signing-key", metavar="KEY",
        help="sign the transcript's head with this SSH key (a private key file, or a public"
        " key whose private half is in the ssh-agent; default $RUNBOOK_SIGNING_KEY)",
    )  # fmt: skip


def _var_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--var", action="append", default=[], metavar="NAME=VALUE",
        help="set a declared variable (repeatable); NAME alone takes it from the"
        " environment, keeping a secret off the command line",
    )  # fmt: skip


def _runs_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runs-dir", metavar="DIR",
        help="where run directories go (default: $RUNBOOK_RUNS_DIR, else ./runbook-runs)",
    )  # fmt: skip


def _on_failure_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--on-failure",
        choices=("abort", "rollback"),
        help="headless: what a failed block does when nobody is there to choose"
        " (default abort; rollback runs the rollback blocks, recorded as automatic)",
    )
