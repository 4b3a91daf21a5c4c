"""Markdown + front matter + block options -> :class:`Runbook`, with source positions.

markdown-it-py gives the block structure exactly as GitHub renders it (so what a reviewer
sees is what runs); only block-level parsing is needed, so inline parsing is switched off.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.rules_block import StateBlock
from markdown_it.rules_block import fence as commonmark_fence
from markdown_it.token import Token

from runbook.format.frontmatter import FrontMatter, load_front_matter
from runbook.format.lint import lint
from runbook.format.model import (
    ALERT_KINDS,
    SHELL_LANGUAGES,
    Alert,
    Block,
    CheckItem,
    Diagnostic,
    Position,
    Runbook,
    Severity,
    Step,
)
from runbook.format.options import OPTIONS, BlockOptionsReader, is_option_line, is_runme_cell
from runbook.format.prompts import split_session
from runbook.format.runme import link_outputs

_TASK = re.compile(r"\[([ xX])\](?:[ \t]+|\Z)")
_ALERT = re.compile(r"\[!([A-Za-z]+)\][ \t]*(?:\n|\Z)")
_QUOTE_PREFIX = re.compile(r"^[ \t]*>[ \t]?")
_INFO = re.compile(r"([^\s{]*)(.*)", re.S)
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
# Emphasis underscores sit at a word's edge; `my_service` keeps its underscore.
_MARKUP = re.compile(r"[`*~]|<[^>]+>|(?<![^\W_])_+|_+(?![^\W_])")
_SLUG_DROP = re.compile(r"[^\w\- ]", re.U)


@dataclass(frozen=True)
class ParseResult:
    """The model (``None`` only when the file cannot be read as text) and every diagnostic."""

    runbook: Runbook | None
    diagnostics: tuple[Diagnostic, ...]

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)


def _fence_rule(state: StateBlock, start: int, end: int, silent: bool) -> bool:
    """CommonMark's fence rule, noting whether a closing fence was found.

    An unclosed fence silently runs to the end of its container; for a runbook that
    means the rest of the file would be shown as (or run as) one script.
    """
    if not commonmark_fence(state, start, end, silent):
        return False
    if not silent:
        token = state.tokens[-1]
        assert token.map is not None
        last = token.map[1] - 1
        token.meta["closed"] = last > start and _closes(state, last, token.markup)
    return True


def _closes(state: StateBlock, line: int, markup: str) -> bool:
    if state.is_code_block(line):
        return False
    pos, end = state.bMarks[line] + state.tShift[line], state.eMarks[line]
    run = pos
    while run < end and state.src[run] == markup[0]:
        run += 1
    return run - pos >= len(markup) and not state.src[run:end].strip(" \t")


def _make_markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark").enable("table")
    md.disable(["inline", "text_join"])
    md.block.ruler.at(
        "fence", _fence_rule, {"alt": ["paragraph", "reference", "blockquote", "list"]}
    )
    return md


_MD = _make_markdown()


def decode(data: bytes) -> tuple[str | None, Diagnostic | None]:
    """UTF-8 text without BOM and with LF line ends, or the position of the first bad byte."""
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        text = data[bom:].decode("utf-8")
    except UnicodeDecodeError as e:
        before = data[bom : bom + e.start]
        line = before.count(b"\n") + before.count(b"\r") - before.count(b"\r\n") + 1
        col = len(before) - max(before.rfind(b"\n"), before.rfind(b"\r"))
        bad, offset = data[bom + e.start], bom + e.start
        message = f"invalid UTF-8: byte 0x{bad:02x} at byte offset {offset}"
        return None, Diagnostic(line, col, "error", message)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text, None


def parse_file(path: str | Path) -> ParseResult:
    """Read and parse a runbook file (``OSError`` propagates: the caller words it)."""
    data = Path(path).read_bytes()
    return parse_bytes(data, str(path))


def parse_bytes(data: bytes, path: str = "<string>") -> ParseResult:
    text, problem = decode(data)
    if text is None:
        assert problem is not None
        return ParseResult(None, (problem,))
    with _gc_paused():
        return _Parser(text, path, hashlib.sha256(data).hexdigest()).parse()


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while parsing.

    A large runbook makes hundreds of thousands of short-lived, acyclic tokens; the
    collector's passes over them cost about a quarter of the parse and free nothing.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def parse_text(text: str, path: str = "<string>") -> ParseResult:
    return parse_bytes(text.encode("utf-8"), path)


def plain_title(markdown: str) -> str:
    """Heading text without inline markup: ``Roll out `web` **now**`` -> ``Roll out web now``."""
    text = _LINK.sub(r"\1", markdown)
    return " ".join(_MARKUP.sub("", text).split())


class Slugger:
    """GitHub's heading anchors (github-slugger): repeated titles get ``-1``, ``-2``..."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def slug(self, title: str) -> str:
        base = slug = _SLUG_DROP.sub("", title.lower()).replace(" ", "-")
        while slug in self.seen:
            self.seen[base] += 1
            slug = f"{base}-{self.seen[base]}"
        self.seen[slug] = 0
        return slug


@dataclass
class _StepDraft:
    title: str
    slug: str
    line: int
    end_line: int = 0
    checklist: list[CheckItem] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)


class _Parser:
    def __init__(self, text: str, path: str, sha256: str) -> None:
        self.text = text
        self.path = path
        self.sha256 = sha256
        self.lines = text.split("\n")
        self.line_count = len(self.lines) - (self.lines[-1] == "")
        self.diagnostics: list[Diagnostic] = []
        self.steps: list[_StepDraft] = []
        self.current: _StepDraft | None = None
        self.loose: list[Block] = []
        self.title: str | None = None
        self.title_line = 1
        self.slugger = Slugger()
        self.foreign: list[tuple[str, Position]] = []
        """Info-string attributes of other tools on shell blocks."""
        self.h1_steps = False
        self.section: tuple[str, str, int] | None = None
        """The `#` section being read: (title, slug, line)."""
        self.fm_title: str | None = None
        self.runme = False
        """A Runme notebook (``runme:`` front matter): its blocks follow Runme's rules."""

    def report(self, line: int, col: int, severity: Severity, message: str) -> None:
        self.diagnostics.append(Diagnostic(line, col, severity, message))

    def parse(self) -> ParseResult:
        fm, body = self._front_matter()
        self.runme, self.fm_title = fm.runme, fm.title
        self.diagnostics.extend(fm.diagnostics)
        self._walk(_MD.parse(body))
        linked = iter(link_outputs([b for d in self.steps for b in d.blocks]))
        for draft in self.steps:
            draft.blocks = [next(linked) for _ in draft.blocks]
        steps = self._finish_steps()
        title, title_line = fm.title, 1
        if title is None:
            title, title_line = self.title or Path(self.path).stem, self.title_line
        runbook = Runbook(
            path=self.path,
            source=self.text,
            sha256=self.sha256,
            title=title,
            title_line=title_line,
            description=fm.description,
            owner=fm.owner,
            variables=tuple(fm.variables),
            hosts=tuple(fm.hosts),
            ssh=fm.ssh,
            shell=fm.shell,
            cwd=fm.cwd,
            notify=tuple(fm.notify),
            on_failure=fm.on_failure,
            steps=steps,
            loose_blocks=tuple(self.loose),
        )
        self.diagnostics.extend(lint(runbook))
        note = _foreign_note(fm.foreign, self.foreign)
        if note is not None:
            self.diagnostics.append(note)
        return ParseResult(runbook, tuple(sorted(set(self.diagnostics))))

    def _front_matter(self) -> tuple[FrontMatter, str]:
        """Split off the leading ``---`` YAML; blank lines keep the body's line numbers."""
        lines = self.lines
        if not lines or lines[0].rstrip() != "---":
            return FrontMatter(), self.text
        for i in range(1, len(lines)):
            if lines[i].rstrip() in ("---", "..."):
                fm = load_front_matter("\n".join(lines[1:i]), first_line=2)
                return fm, "\n" * (i + 1) + "\n".join(lines[i + 1 :])
        fm = FrontMatter()
        fm.report(Position(1, 1), "error", "front matter opened here is never closed with `---`")
        return fm, self.text

    def _walk(self, tokens: list[Token]) -> None:
        # A document without `##` steps (a how-to) runs too: each `#` section is a step,
        # and what comes before any heading is one, titled like the file. So does a Runme
        # notebook's `#` section: Runme runs every cell, whatever the headings.
        self.runme = self.runme or any(
            t.type == "fence" and "{" in t.info and _runme_info(t.info) for t in tokens
        )
        self.h1_steps = self.runme or not any(
            t.type == "heading_open" and t.tag == "h2" and t.level == 0 for t in tokens
        )
        pending_task = pending_alert = False
        alert_map: list[int] | None = None
        for i, tok in enumerate(tokens):
            kind = tok.type
            if kind == "inline":
                if pending_task:
                    self._task(tok)
                if pending_alert and alert_map is not None:
                    self._alert(tok, alert_map)
                pending_task = pending_alert = False
                continue
            if kind == "paragraph_open":
                continue
            pending_task = pending_alert = False
            if kind == "heading_open":
                self._heading(tok, tokens[i + 1])
            elif kind == "fence":
                self._fence(tok)
            elif kind == "list_item_open":
                pending_task = True
            elif kind == "blockquote_open":
                pending_alert, alert_map = True, tok.map

    def _heading(self, tok: Token, inline: Token) -> None:
        assert tok.map is not None
        line = tok.map[0] + 1
        title = plain_title(inline.content)
        slug = self.slugger.slug(title)
        if tok.level != 0:
            return
        if tok.tag == "h1":
            if self.title is None:
                self.title, self.title_line = title, line
            if self.current is not None:
                self.current.end_line = line - 1
                self.current = None
            self.section = (title, slug, line)  # a step once it holds a block or a task
        elif tok.tag == "h2":
            if self.current is not None:
                self.current.end_line = line - 1
            self._open_step(title, slug, line)

    def _open_step(self, title: str, slug: str, line: int) -> None:
        name = title or f"Step {len(self.steps) + 1}"
        self.current = _StepDraft(title=name, slug=slug or "step", line=line)
        self.steps.append(self.current)

    def _step_for_content(self, line: int) -> None:
        """A block or task in a `#` section (or before any heading) of a document without
        `##` steps, or of a Runme notebook: that section is a step."""
        if self.current is not None or not self.h1_steps:
            return
        if self.section is not None:
            self._open_step(*self.section)
        elif not self.steps:
            title = self.fm_title or Path(self.path).stem
            self._open_step(title, self.slugger.slug(title), line)

    def _task(self, inline: Token) -> None:
        m = _TASK.match(inline.content)
        if not m or inline.map is None:
            return
        line = inline.map[0] + 1
        text = " ".join(inline.content[m.end() :].split())
        col = self.lines[line - 1].find("[") + 1
        self._step_for_content(line)
        if self.current is None:
            self.report(line, col, "warning", "checklist item outside any `##` step is never asked")
            return
        self.current.checklist.append(CheckItem(text, line, col, m.group(1) != " "))

    def _alert(self, inline: Token, quote_map: list[int]) -> None:
        m = _ALERT.match(inline.content)
        if not m or m.group(1).upper() not in ALERT_KINDS or self.current is None:
            return
        start, end = quote_map
        text = "\n".join(_QUOTE_PREFIX.sub("", ln) for ln in self.lines[start + 1 : end]).strip()
        self.current.alerts.append(Alert(m.group(1).upper(), text, start + 1))

    def _fence(self, tok: Token) -> None:
        assert tok.map is not None
        line = tok.map[0] + 1
        raw = self.lines[line - 1]
        col = raw.find(tok.markup) + 1
        m = _INFO.match(tok.info.strip())
        assert m is not None
        language, rest = m.group(1).lower(), m.group(2)
        if not tok.meta.get("closed"):
            reach = (
                "the end of the file"
                if tok.map[1] >= self.line_count
                else "the end of the enclosing list item or quote"
            )
            self.report(
                line,
                col,
                "error",
                f"code fence opened here is never closed; CommonMark runs it to {reach}",
            )
        body = tok.content.split("\n")
        if body and body[-1] == "":
            body.pop()
        # Options open the block; blank lines before them are not a command.
        first = 0
        while first < len(body) and not body[first].strip():
            first += 1
        end = first
        while end < len(body) and is_option_line(body[end]):
            end += 1
        if end == first:
            first = end = 0
        reader = BlockOptionsReader()
        info_col = (
            col + len(tok.markup) + (len(tok.info) - len(tok.info.lstrip())) + len(m.group(1))
        )
        reader.read_info(rest, Position(line, info_col))
        for k in range(first, end):
            at = line + 1 + k
            reader.read_option_line(body[k].lstrip(), Position(at, self._col(at, "#|")))
        if language not in SHELL_LANGUAGES:
            if any(opt.key in OPTIONS for opt in reader.raw):
                self.report(
                    line,
                    col,
                    "warning",
                    f"options on a `{language or 'plain'}` block do nothing:"
                    " only sh, bash, shell and zsh blocks run",
                )
            return
        for k in range(end, len(body)):
            if is_option_line(body[k]):
                at = line + 1 + k
                self.report(
                    at,
                    self._col(at, "#|"),
                    "error",
                    "`#|` option after the first command would only be a shell comment;"
                    " move it to the top of the block",
                )
        options = reader.build()
        self.diagnostics.extend(reader.diagnostics)
        self.foreign.extend(reader.foreign)
        code = "\n".join(body[end:])
        if body[end:]:
            code += "\n"
        expected, lines = "", tuple[int, ...]()  # a prompt-style block: from its session
        runme = self.runme or is_runme_cell(reader.raw)
        session = split_session(body[end:], runme=runme)
        if session is not None:
            code, expected = session.code, session.output
            lines = tuple(line + 1 + end + offset for offset, _ in session.commands)
        self._step_for_content(line)
        step = self.current
        if step is None:
            name = options.name or f"line-{line}"
        else:
            name = options.name or f"{step.slug}-{len(step.blocks) + 1}"
        block = Block(
            name=name,
            line=line,
            col=col,
            end_line=tok.map[1],
            language=language,
            info=tok.info,
            code=code,
            code_line=line + 1 + end,
            options=options,
            step=len(self.steps) if step is not None else None,
            expected=expected,
            lines=lines,
            runme=runme,
        )
        (step.blocks if step is not None else self.loose).append(block)

    def _col(self, line: int, needle: str) -> int:
        """1-based column of ``needle`` on a source line (1 if it is not there)."""
        return self.lines[line - 1].find(needle) + 1 or 1

    def _finish_steps(self) -> tuple[Step, ...]:
        last_line = self.line_count
        out = []
        for i, d in enumerate(self.steps, start=1):
            out.append(
                Step(
                    index=i,
                    title=d.title,
                    slug=d.slug,
                    line=d.line,
                    end_line=d.end_line or last_line,
                    checklist=tuple(d.checklist),
                    alerts=tuple(d.alerts),
                    blocks=tuple(d.blocks),
                )
            )
        return tuple(out)


def _foreign_note(
    keys: list[tuple[str, Position]], attributes: list[tuple[str, Position]]
) -> Diagnostic | None:
    """One line for everything left to other tools (a docs site's front matter, another
    runner's attributes): named, so a reviewer sees what runbook does not read."""
    if not keys and not attributes:
        return None
    first = min((p for _, p in [*keys, *attributes]), key=lambda p: (p.line, p.col))
    parts = []
    if keys:
        parts.append(
            "front matter " + ", ".join(f"`{k}`" for k in dict.fromkeys(k for k, _ in keys))
        )
    if attributes:
        counts = Counter(k for k, _ in attributes)
        named = [f"`{k}`" + (f" ({n} blocks)" if n > 1 else "") for k, n in counts.items()]
        parts.append("block attributes " + ", ".join(named))
    message = f"left to other tools, not read by runbook: {'; '.join(parts)}"
    return Diagnostic(first.line, first.col, "note", message)


def _runme_info(info: str) -> bool:
    """Whether a fence's info string has an attribute only Runme writes (parsed, not a
    word found anywhere in it: `title="provider.yaml"` holds no `id`)."""
    m = _INFO.match(info.strip())
    if m is None:
        return False
    reader = BlockOptionsReader()
    reader.read_info(m.group(2), Position(1, 1))
    return is_runme_cell(reader.raw)
