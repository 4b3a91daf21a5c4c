"""Prompt-style shell blocks: a terminal session pasted into a ``sh`` block.

Authors write ``$ kubectl get pods`` followed by what it printed everywhere. Such a block
runs its prompt lines without the ``$``, and the lines between them are the output the
author saw: shown to the operator, never run. A line that continues a command (after a
trailing ``\\``, or inside a here-document) belongs to the command, prompt or not.

Runme notebooks follow Runme instead: every line starting with ``$`` loses the prompt,
wherever it is, and every other line still runs (Runme's ``PrepareScript``), so a Runme
file runs here as it does there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PROMPT = re.compile(r"[ \t]*\$(?: |$)")
_REDIRECT = re.compile(r"(?<!<)<<(?!<)")
_HEREDOC = re.compile(r"<<(-?)[ \t]*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\2")
_QUOTED = re.compile(r"'[^']*'|\"(?:[^\"\\]|\\.)*\"")
_COMMENT = re.compile(r"(?:^|[ \t])#.*$")


def blank_quotes(text: str) -> str:
    """``text`` with each quoted string blanked, its length kept (columns stay true)."""
    return _QUOTED.sub(lambda m: " " * len(m.group()), text)


def _code_part(text: str) -> str:
    """``text`` with its quoted strings blanked and its comment cut: what the shell reads
    as operators (a `<<` or a trailing backslash inside quotes or a comment is not one)."""
    return _COMMENT.sub("", blank_quotes(text))


def continues(text: str) -> bool:
    """A trailing backslash, an odd run of them, outside quotes and comments."""
    code = _code_part(text).rstrip()
    run = len(code) - len(code.rstrip("\\"))
    return run % 2 == 1


def heredoc_of(text: str) -> tuple[str, bool] | None:
    """The delimiter of a here-document the line opens (and whether tabs are stripped)."""
    at = _REDIRECT.search(_code_part(text))  # outside quotes and comments, not `<<<`
    found = _HEREDOC.match(text, at.start()) if at else None
    return (found.group(3), found.group(1) == "-") if found else None


def closes(line: str, heredoc: tuple[str, bool]) -> bool:
    """Whether ``line`` ends the here-document ``heredoc_of`` opened."""
    delimiter, dash = heredoc
    return (line.lstrip("\t") if dash else line) == delimiter


@dataclass(frozen=True)
class Session:
    """A prompt-style block split into what runs and what it is expected to print."""

    commands: tuple[tuple[int, str], ...]
    """(offset in the block's body, text without the prompt) of each line that runs."""
    expected: tuple[tuple[int, str], ...]
    """(offset, text) of each line of expected output."""

    @property
    def code(self) -> str:
        return "".join(f"{text}\n" for _, text in self.commands)

    @property
    def output(self) -> str:
        return "".join(f"{text}\n" for _, text in self.expected)


def is_session(lines: list[str]) -> bool:
    """The first line that says anything (not blank, not a ``#`` comment) is a prompt."""
    for line in lines:
        text = line.strip()
        if text and not text.startswith("#"):
            return _PROMPT.match(line) is not None
    return False


def split_session(lines: list[str], runme: bool = False) -> Session | None:
    """The commands and expected output of a prompt-style block, or ``None`` if it is not
    one. ``runme``: Runme's rule, under which no line is output."""
    if runme and not any(_PROMPT.match(line) for line in lines):
        return None
    if not runme and not is_session(lines):
        return None
    commands: list[tuple[int, str]] = []
    expected: list[tuple[int, str]] = []
    continued = False
    heredoc: tuple[str, bool] | None = None  # (delimiter, tabs stripped)
    for offset, line in enumerate(lines):
        prompt = _PROMPT.match(line)
        if heredoc is not None:
            if closes(line, heredoc):
                heredoc = None
            commands.append((offset, line))
            continue
        if continued:
            text = line
        elif prompt is not None:
            text = line[prompt.end() :]
        elif runme or not line.strip() or line.lstrip().startswith("#"):
            # Runme runs every line; a blank line or a comment runs nothing either way.
            commands.append((offset, line))
            continue
        else:
            expected.append((offset, line))
            continue
        commands.append((offset, text))
        continued = continues(text)
        opened = heredoc_of(text)
        if opened is not None:
            heredoc = opened
    while commands and not commands[-1][1].strip():
        commands.pop()
    return Session(tuple(commands), tuple(expected))
