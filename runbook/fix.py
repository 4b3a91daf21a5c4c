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

from markdown_it import MarkdownIt

from runbook.format.model import Block, Runbook
from runbook.format.parser import parse_text
from runbook.format.syntax import YAML_WORDS, placeholder_name, placeholders_in


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
    """``text`` fixed (its byte-order mark and line endings kept), with what was done."""
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    newline = "\r\n" if "\r\n" in text else "\r" if "\r" in text else "\n"
    body = text[len(bom) :].replace("\r\n", "\n").replace("\r", "\n")
    out = Fixed(text)
    result = parse_text(body, path)
    if result.runbook is None:
        return out
    declared = {v.name for v in result.runbook.variables}
    wanted: dict[str, str] = {}
    body = _fix_blocks(body, result.runbook, declared, wanted, out)
    # Again from the text as it is now: the edits above moved the lines.
    again = parse_text(body, path).runbook
    if again is not None:
        body = _steps_for_loose_blocks(body, again, out)
    if wanted:
        body = _declare(body, wanted, out)
    if out.done:
        out.text = bom + body.replace("\n", newline)
    return out


def _fix_blocks(
    text: str, rb: Runbook, declared: set[str], wanted: dict[str, str], out: Fixed
) -> str:
    lines = text.split("\n")
    # From the bottom up, so that the line numbers of the blocks above stay true.
    for block in sorted((*rb.blocks, *rb.loose_blocks), key=lambda b: b.line, reverse=True):
        if not block.runs:
            continue
        opener = _FENCE.match(lines[block.line - 1])
        closed = block.end_line <= len(lines) and _FENCE.match(lines[block.end_line - 1])
        if opener is None or not closed:
            continue  # a fence never closed: an error fix leaves to the author
        edit = _fixed_body(block, opener.group(1), declared, wanted, out)
        if edit is not None:
            first, last, replacement = edit
            lines[first - 1 : last] = replacement
    return "\n".join(lines)


def _fixed_body(
    block: Block, fence: str, declared: set[str], wanted: dict[str, str], out: Fixed
) -> tuple[int, int, list[str]] | None:
    """The block rewritten (commands only, placeholders as variables, its expected output
    in a ``text`` block after it), or ``None`` when there is nothing to fix."""
    found = list(placeholders_in(block.code))
    if not block.lines and not found:
        return None
    code_lines = block.code.rstrip("\n").split("\n")
    for offset, start, end, word in reversed(found):  # right to left: offsets stay true
        name = placeholder_name(word)
        if name not in declared:
            wanted.setdefault(name, word)
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


def _steps_for_loose_blocks(text: str, rb: Runbook, out: Fixed) -> str:
    """Each block outside any step gets a step: its ``#`` section becomes ``##``, or a step
    opens above it when it sits under the title (or under no heading). Headings are read as
    Markdown reads them: a ``#`` line inside a code block is not one."""
    loose = [b for b in rb.loose_blocks if b.runs]
    if not loose:
        return text
    lines = text.split("\n")
    h1 = _h1_lines(text)
    title = rb.title_line if rb.title_line in h1 else None
    demote: set[int] = set()
    opens: set[int] = set()
    for block in loose:
        heading = max((n for n in h1 if n < block.line), default=None)
        if heading is not None and heading != title:
            demote.add(heading)
        else:
            opens.add(min(b.line for b in loose if b.line > (heading or 0)))
    for n in sorted(demote | opens, reverse=True):
        if n in demote:
            m = _HEADING.match(lines[n - 1])
            assert m is not None
            lines[n - 1] = f"{m.group(1)}##{m.group(3) or ''}"
            out.done.append((n, f"`{lines[n - 1].strip()[3:]}`: its `#` section becomes a step"))
        else:
            lines[n - 1 : n - 1] = ["## Before you start", ""]
            out.done.append((n, "a `## Before you start` step opens for the blocks above any step"))
    return "\n".join(lines)


def _h1_lines(text: str) -> set[int]:
    """The 1-based lines of the document's ``#`` headings (front matter blanked, as the
    parser does, so that line numbers agree)."""
    lines = text.split("\n")
    if lines and lines[0].rstrip() == "---":
        end = next((i for i in range(1, len(lines)) if lines[i].rstrip() in ("---", "...")), 0)
        lines[: end + 1] = [""] * (end + 1)
    tokens = MarkdownIt("commonmark").parse("\n".join(lines))
    return {
        t.map[0] + 1
        for t in tokens
        if t.type == "heading_open" and t.tag == "h1" and t.level == 0 and t.map is not None
    }


def _declare(text: str, declared: dict[str, str], out: Fixed) -> str:
    """Each new variable in the front matter's ``variables:`` (made if absent; an empty
    ``variables: {}`` becomes a block; entries indented as the ones already there)."""
    out.done.append((1, "the front matter declares " + ", ".join(declared)))
    lines = text.split("\n")

    def entries(indent: str) -> list[str]:
        found = []
        for name, word in declared.items():
            prompt = _yaml_text(word.replace("-", " ").replace("_", " "))
            found += [f"{indent}{name}:", f"{indent}{indent}prompt: {prompt}"]
        return found

    if not lines or lines[0].rstrip() != "---":
        return "\n".join(["---", "variables:", *entries("  "), "---", "", *lines])
    end = next((i for i in range(1, len(lines)) if lines[i].rstrip() in ("---", "...")), None)
    if end is None:
        return text
    at = next((i for i in range(1, end) if re.match(r"variables:", lines[i])), None)
    if at is None:
        lines[end:end] = ["variables:", *entries("  ")]
    elif re.fullmatch(r"variables:\s*(\{\s*\})?\s*(#.*)?", lines[at]):
        stop = at + 1
        while stop < end and (lines[stop][:1] in (" ", "\t") or not lines[stop].strip()):
            stop += 1
        first = next((ln for ln in lines[at + 1 : stop] if ln.strip()), "  x")
        indent = first[: len(first) - len(first.lstrip())] or "  "
        lines[at] = "variables:"
        lines[stop:stop] = entries(indent)
    else:  # a flow mapping with entries: not ours to rewrite
        out.done.pop()
        out.done.append((at + 1, "declare " + ", ".join(declared) + " in `variables:` by hand"))
        return text
    return "\n".join(lines)


def _yaml_text(value: str) -> str:
    """A YAML scalar that reads back as this text (never a boolean, a null or a number)."""
    plain = re.fullmatch(r"[A-Za-z][\w .-]*", value) and value.lower() not in YAML_WORDS
    return value if plain else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
