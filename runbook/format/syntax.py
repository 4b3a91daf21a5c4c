"""What would fail the moment it ran, found before anyone runs it (``runbook check``).

Every shell block that can run is parsed by the shell it will run under (``bash -n``,
``sh -n``: read, never executed), and a ``<placeholder>`` left in a command is named. With
``--shellcheck``, ShellCheck's findings too. Each finding points at the runbook's own
``LINE:COL``. These spawn processes, so they live here and not in the parser: ``plan`` and
``run`` never pay for them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from runbook.format.model import Block, Diagnostic, Runbook, Severity
from runbook.format.plan import shell_for
from runbook.format.prompts import blank_quotes, closes, heredoc_of, split_session

PARSERS = {"bash": "bash", "sh": "sh", "dash": "dash", "zsh": "zsh", "ksh": "ksh"}
"""Shells whose ``-n`` parses without running; a block run by another program is skipped."""
_PLACEHOLDER = re.compile(r"(?<![<>\w$])<([A-Za-z][\w.-]*)>(?![>\w])")
_BASH_LINE = re.compile(r"^\S+: (?:-c: )?line (\d+): (.*)$")
_DASH_LINE = re.compile(r"^\S+: (\d+): (.*)$")
TIMEOUT = 10.0


def _program(rb: Runbook, block: Block) -> str:
    """The name of the program that runs ``block`` (``bash`` for ``/usr/bin/bash -e``)."""
    words = shlex.split(shell_for(rb, block)) or ["sh"]
    return os.path.basename(words[0])


def _runnable(rb: Runbook) -> list[Block]:
    return [b for b in rb.blocks if b.runs and b.code.strip()]


COMMON_COMMANDS = frozenset(
    """cd export source set unset echo printf sudo su apt apt-get yum dnf apk brew
    systemctl service journalctl kubectl oc helm docker podman git curl wget ssh scp rsync
    cp mv rm mkdir chmod chown ln tar make npm npx yarn pip pip3 python python3 go cargo
    terraform ansible ansible-playbook aws gcloud az psql mysql redis-cli etcdctl
    """.split()  # noqa: SIM905 - a word list reads better as words
)
"""Words a line of expected output starting with is probably a command that lost its
``$ ``. A fixed list, so the same file gets the same warnings on every machine."""


def unprompted_commands(rb: Runbook) -> Iterator[Diagnostic]:
    """In a pasted session, a line shown as output that reads like a command: it is not
    run, and its author may have meant it to be (the prompt forgotten)."""
    source = rb.source.split("\n")
    for block in _runnable(rb):
        if not block.lines or not block.expected:
            continue
        indent = block.col - 1
        body = [
            ln[indent:] if ln[:indent].isspace() else ln
            for ln in source[block.code_line - 1 : block.end_line - 1]
        ]
        session = split_session(body, runme=block.runme)
        if session is None:
            continue
        commands = dict(session.commands)
        for offset, text in session.expected:
            word = text.split()[0] if text.split() else ""
            before = [commands[o] for o in commands if o < offset]
            after_same = bool(before) and before[-1].split()[:1] == [word]
            if word in COMMON_COMMANDS and not after_same:
                yield Diagnostic(
                    block.code_line + offset,
                    block.col,
                    "warning",
                    f"`{text.strip()[:60]}` has no `$ ` prompt, so it is shown as the output"
                    " of the command before and never run; add the prompt if it is a command",
                )
                break


RESERVED = frozenset(
    [
        "PATH",
        "HOME",
        "IFS",
        "USER",
        "SHELL",
        "PWD",
        "OLDPWD",
        "LANG",
        "TERM",
        "HOSTNAME",
        "UID",
        "EUID",
        "PS1",
        "PS2",
        "PS4",
        "ENV",
        "CDPATH",
        "TMPDIR",
        "LOGNAME",
        "MAIL",
    ]
)
"""Names the shell or the system gives a meaning: a placeholder never becomes one."""


YAML_WORDS = frozenset({"true", "false", "null", "yes", "no", "on", "off", "y", "n"})
"""Words YAML readers take for booleans or null, in any case: never a plain name or text."""


def placeholder_name(word: str) -> str:
    """``pod-name`` -> ``POD_NAME``: the variable a placeholder becomes (``<path>`` ->
    ``PATH_VALUE``: a run must not replace the shell's own ``$PATH``)."""
    name = re.sub(r"\W", "_", word).upper()
    name = name if name[:1].isalpha() else f"V_{name}"
    reserved = (
        name in RESERVED or name.startswith(("LD_", "BASH_", "LC_")) or name.lower() in YAML_WORDS
    )
    return f"{name}_VALUE" if reserved else name


def placeholders_in(code: str) -> Iterator[tuple[int, int, int, str]]:
    """(line offset, start, end, word) of each ``<pod-name>`` outside quotes and outside
    here-documents (`<html>` in a page being written is not one): text the author meant to
    be replaced."""
    body: tuple[str, bool] | None = None
    for offset, line in enumerate(code.split("\n")):
        if body is not None:
            if closes(line, body):
                body = None
            continue
        body = heredoc_of(line)
        bare = blank_quotes(line)
        for m in _PLACEHOLDER.finditer(bare):
            yield offset, m.start(), m.end(), m.group(1)


def placeholders(block: Block) -> Iterator[Diagnostic]:
    """The block's first placeholder, as a warning that names the variable to use (the
    others are the same fix)."""
    for offset, start, _, word in placeholders_in(block.code):
        name = placeholder_name(word)
        yield Diagnostic(
            block.source_line(offset),
            _column(block, offset, start),
            "warning",
            f"`<{word}>` looks like a placeholder: the shell reads `<` as a redirection;"
            f" declare a variable {name} and write `${name}`",
        )
        return


def _column(block: Block, offset: int, index: int) -> int:
    """The source column of ``index`` in line ``offset`` of the code (fences may be
    indented, prompt lines lose their ``$ ``)."""
    return index + 1 + (block.col - 1) + (2 if block.lines else 0)


def _parse_one(shell: str, code: str) -> tuple[int, str] | None:
    """(line, message) of the first syntax error, or ``None``."""
    try:
        proc = subprocess.run(
            [shell, "-n", "-c", code],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=TIMEOUT,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode == 0:
        return None
    first = next((ln for ln in proc.stderr.splitlines() if ln.strip()), "syntax error")
    m = _BASH_LINE.match(first) or _DASH_LINE.match(first)
    if m is None:
        return (1, first.split(": ", 1)[-1])
    return (int(m.group(1)), m.group(2))


def shell_syntax(rb: Runbook) -> list[Diagnostic]:
    """Each runnable block parsed by its shell, in parallel (one process per block and
    shell; the same script is parsed once)."""
    jobs: dict[tuple[str, str], list[Block]] = {}
    found: list[Diagnostic] = list(unprompted_commands(rb))
    for block in _runnable(rb):
        marks = list(placeholders(block))
        if marks:  # the syntax error they cause says less than they do
            found.extend(marks)
            continue
        parser = PARSERS.get(_program(rb, block))
        if parser is not None and shutil.which(parser):
            jobs.setdefault((parser, block.code), []).append(block)
    if not jobs:
        return found
    with ThreadPoolExecutor(max_workers=min(32, 4 * (os.cpu_count() or 1))) as pool:
        results = pool.map(lambda key: _parse_one(*key), jobs)
        for (parser, code), result in zip(jobs, results, strict=True):
            if result is None:
                continue
            line, message = result
            last = max(0, len(code.rstrip("\n").split("\n")) - 1)
            for block in jobs[(parser, code)]:
                offset = min(max(line - 1, 0), last)
                found.append(
                    Diagnostic(
                        block.source_line(offset),
                        block.col,
                        "warning",
                        f"fails before it starts: `{parser} -n` says: {message}",
                    )
                )
    return found


def shellcheck(rb: Runbook, program: str, known: list[Diagnostic]) -> list[Diagnostic]:
    """ShellCheck's findings on each runnable block, at the runbook's lines; a block that
    does not parse (``known`` says so) is left to that finding alone."""
    found: list[Diagnostic] = []
    broken = {d.line for d in known}
    for block in _runnable(rb):
        if any(block.line <= line <= block.end_line for line in broken):
            continue
        dialect = {"dash": "dash", "sh": "sh", "ksh": "ksh"}.get(_program(rb, block), "bash")
        try:
            proc = subprocess.run(
                [program, "-f", "json", "-s", dialect, "-"],
                input=block.code,
                capture_output=True,
                text=True,
                timeout=60,
            )
            findings = json.loads(proc.stdout or "[]")
        except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError):
            continue
        last = max(0, len(block.code.rstrip("\n").split("\n")) - 1)
        for f in findings:
            offset = min(int(f.get("line", 1)) - 1, last)
            severity: Severity = "warning" if f.get("level") in ("error", "warning") else "note"
            found.append(
                Diagnostic(
                    block.source_line(offset),
                    _column(block, offset, int(f.get("column", 1)) - 1),
                    severity,
                    f"shellcheck SC{f.get('code')}: {f.get('message')}",
                )
            )
    return found
