"""``runbook fix``: turn a how-to into a runbook that runs as its author meant.

Like ``ruff --fix``, each fix is a small text edit a reviewer can read in the diff:

- a pasted session (``$ kubectl get pods`` and what it printed) becomes its commands, the
  output it showed moving to a ``text`` block after it;
- a ``<placeholder>`` in a command becomes ``$PLACEHOLDER``, declared in the front matter
  (asked when the run starts, its prompt the placeholder's own words);
- a block outside any step gets one: its ``#`` section becomes a ``##`` step, or a
  ``## Before you start`` step opens above it.

Nothing else in the file changes. The result is checked again; a file still in error is
never written, and the errors are said.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from runbook.format.model import Block, Runbook
from runbook.format.parser import parse_text
from runbook.format.syntax import placeholder_name, placeholders_in


@dataclass
class Fixed:
    text: str
    done: list[tuple[int, str]] = field(default_factory=list)
    """What was changed, one line each (at the line of the original), for the operator."""

    def said(self) -> list[str]:
        return [f"line {line}: {text}" for line, text in sorted(self.done)]


_HEADING = re.compile(r"^( {0,3})(#{1,6})([ \t]+.*)?$")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")


def fix(text: str, path: str) -> Fixed:
    result = parse_text(text, path)
    if result.runbook is None:
        return Fixed(text)
    rb = result.runbook
    lines = text.split("\n")
    out = Fixed(text)
    declared: dict[str, str] = {}
    # Edits from the bottom up, so earlier line numbers stay true.
    edits: list[tuple[int, int, list[str]]] = []  # (first line, last line, replacement)
    for block in sorted((*rb.blocks, *rb.loose_blocks), key=lambda b: b.line, reverse=True):
        if not block.runs:
            continue
        opener = _FENCE.match(lines[block.line - 1])
        closed = block.end_line <= len(lines) and _FENCE.match(lines[block.end_line - 1])
        if opener is None or not closed:
            continue  # a fence never closed: an error fix leaves to the author
        body = _fixed_body(block, opener.group(1), declared, out)
        if body is not None:
            edits.append(body)
    for first, last, replacement in edits:
        lines[first - 1 : last] = replacement
    lines = _steps_for_loose_blocks(lines, rb, out)
    text = "\n".join(lines)
    if declared:
        text = _declare(text, declared, out)
    out.text = text
    return out


def _fixed_body(
    block: Block, fence: str, declared: dict[str, str], out: Fixed
) -> tuple[int, int, list[str]] | None:
    """The block rewritten (commands only, placeholders as variables, its expected output
    in a ``text`` block after it), or ``None`` when there is nothing to fix."""
    found = list(placeholders_in(block.code))
    if not block.lines and not found:
        return None
    code_lines = block.code.rstrip("\n").split("\n")
    for offset, start, end, word in reversed(found):  # right to left: offsets stay true
        name = placeholder_name(word)
        declared.setdefault(name, word)
        line = code_lines[offset]
        code_lines[offset] = line[:start] + "${" + name + "}" + line[end:]
    if found:
        names = ", ".join(dict.fromkeys(f"<{w}> -> ${placeholder_name(w)}" for *_, w in found))
        out.done.append((block.line, f"placeholders become variables: {names}"))
    close_line = block.end_line  # the closing fence
    # The fence's own lines (and its `#|` options) stay as they are; the script is replaced.
    indent = " " * (block.col - 1)
    first_code = block.code_line
    replacement = [indent + ln if ln else ln for ln in code_lines]
    if block.lines:
        out.done.append((block.line, "the session's prompts become its commands"))
        if block.expected.strip():
            shown = [indent + ln if ln else ln for ln in block.expected.rstrip("\n").split("\n")]
            tail = [f"{indent}{fence}", "", f"{indent}{fence}text", *shown]
            out.done.append((block.line, "its expected output moves to a `text` block"))
            return (first_code, close_line - 1, [*replacement, *tail])
    return (first_code, close_line - 1, replacement)


def _steps_for_loose_blocks(lines: list[str], rb: Runbook, out: Fixed) -> list[str]:
    """Each block outside any step gets a step: its ``#`` section becomes ``##``, or a step
    opens above it when it sits under the title (or under no heading)."""
    loose = [b for b in rb.loose_blocks if b.runs]
    if not loose:
        return lines
    title_line = rb.title_line if rb.title_line and _is_h1(lines, rb.title_line) else None
    demote: set[int] = set()
    opens: set[int] = set()
    for block in loose:
        heading = next((n for n in range(block.line - 1, 0, -1) if _is_heading(lines, n)), None)
        if heading is not None and _is_h1(lines, heading) and heading != title_line:
            demote.add(heading)
        elif heading is None or heading == title_line:
            opens.add(block.line)
    for n in sorted(demote | opens, reverse=True):
        if n in demote:
            m = _HEADING.match(lines[n - 1])
            assert m is not None
            lines[n - 1] = f"{m.group(1)}##{m.group(3) or ''}"
            out.done.append((n, "the `#` section becomes a `##` step"))
        else:
            lines[n - 1 : n - 1] = ["## Before you start", ""]
            out.done.append((n, "a `## Before you start` step opens for the blocks above any step"))
    return lines


def _is_heading(lines: list[str], n: int) -> bool:
    return _HEADING.match(lines[n - 1]) is not None


def _is_h1(lines: list[str], n: int) -> bool:
    m = _HEADING.match(lines[n - 1])
    return m is not None and m.group(2) == "#"


def _declare(text: str, declared: dict[str, str], out: Fixed) -> str:
    """Each new variable in the front matter's ``variables:`` (made if absent)."""
    entries = []
    for name, word in declared.items():
        prompt = word.replace("-", " ").replace("_", " ")
        entries += [f"  {name}:", f"    prompt: {_yaml_text(prompt)}"]
    out.done.append((1, "the front matter declares " + ", ".join(declared)))
    lines = text.split("\n")
    if lines and lines[0].rstrip() == "---":
        end = next((i for i in range(1, len(lines)) if lines[i].rstrip() in ("---", "...")), None)
        if end is not None:
            at = next((i for i in range(1, end) if re.match(r"variables:\s*$", lines[i])), None)
            if at is None:
                lines[end:end] = ["variables:", *entries]
            else:
                stop = at + 1
                while stop < end and (lines[stop].startswith((" ", "\t")) or not lines[stop]):
                    stop += 1
                lines[stop:stop] = entries
            return "\n".join(lines)
    return "\n".join(["---", "variables:", *entries, "---", "", *lines])


def _yaml_text(value: str) -> str:
    return (
        value
        if re.fullmatch(r"[A-Za-z0-9][\w .-]*", value)
        else '"' + value.replace('"', '\\"') + '"'
    )
