"""Output on its way to the screen: buffered per target, cut to what a log can show.

A block may print 50 MB in seconds; the transcript keeps every byte, the screen needs the
last few thousand lines. Each refresh takes the complete lines gathered since the last
one, keeps the last ``keep``, makes them safe to draw and caps their length, so the cost
of a refresh is bounded whatever was printed. A line still open (a prompt, a progress
bar) is shown once it has waited ``patience`` seconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from runbook.format.screen import inert

_SGR = re.compile(r"\x1b\[[0-9;:]*m")

MAX_PENDING = 4 * 1024 * 1024
"""Characters held per target between refreshes before the oldest are dropped."""
LINE_CHARS = 4096
"""A longer line is cut on screen (the transcript has it whole)."""


def visible(text: str) -> str:
    """Output made safe for the screen: SGR colours dropped (the pane has its own), a
    carriage return a new line, every other control shown escaped (``\\x1b]52;…``)."""
    if "\x1b" in text:
        text = _SGR.sub("", text)
    return inert(text.replace("\r\n", "\n").replace("\r", "\n"))


@dataclass
class OutputBuffer:
    keep: int
    patience: float = 0.5
    chunks: list[str] = field(default_factory=list)
    """Complete lines (each ends with a newline), oldest first."""
    size: int = 0
    partial: dict[str, list[str]] = field(default_factory=dict)
    """Per stream, text not ended by a newline yet: stdout and stderr of one command arrive
    separately and must not be spliced into each other mid-line. Kept as pieces, joined
    once, so a 50 MB line costs no more than 50 MB of lines."""
    partial_size: dict[str, int] = field(default_factory=dict)
    open_since: float | None = None
    """When text held back without a newline was first seen."""
    dropped: int = 0

    def add(self, text: str, stream: str = "stdout") -> None:
        cut = text.rfind("\n") + 1
        if cut:
            pieces = self.partial.pop(stream, [])
            self.partial_size.pop(stream, None)
            self._lines("".join([*pieces, text[:cut]]))
        if text[cut:]:
            self.partial.setdefault(stream, []).append(text[cut:])
            size = self.partial_size[stream] = self.partial_size.get(stream, 0) + len(text) - cut
            if size > MAX_PENDING:  # the loop fell behind on one endless line
                joined = "".join(self.partial[stream])
                self.dropped += len(joined) - MAX_PENDING // 2
                self.partial[stream] = [joined[-MAX_PENDING // 2 :]]
                self.partial_size[stream] = MAX_PENDING // 2

    def _lines(self, text: str) -> None:
        self.chunks.append(text)
        self.size += len(text)
        if self.size > MAX_PENDING:  # the loop fell behind: the oldest text goes
            joined = "".join(self.chunks)
            self.dropped += len(joined) - MAX_PENDING // 2
            self.chunks, self.size = [joined[-MAX_PENDING // 2 :]], MAX_PENDING // 2

    def end_line(self) -> None:
        """Whatever is open ends here (the block ended, a marker line follows)."""
        for pieces in self.partial.values():
            self._lines("".join([*pieces, "\n"]))
        self.partial.clear()
        self.partial_size.clear()
        self.open_since = None

    def drain(self, now: float) -> list[str]:
        """The lines to write now: at most ``keep``, the newest, so that a log keeping as
        many, which drops its oldest lines itself, shows a whole, unbroken tail (the notice
        of what the loop dropped, if anything, comes first)."""
        if self.partial:
            if self.open_since is None:
                self.open_since = now
            if now - self.open_since >= self.patience:
                self.end_line()  # a prompt or a progress bar: shown as it stands
        if not self.chunks:
            return []
        lines = "".join(self.chunks).replace("\r\n", "\n").split("\n")
        lines.pop()  # the empty text after the last newline
        self.chunks, self.size = [], 0
        room = self.keep - 1 if self.dropped else self.keep
        # A lone carriage return shows as a new line: cut to the room after that, not before.
        shown = visible("\n".join(lines[-room:])).split("\n")[-room:] if room > 0 else []
        if self.dropped:
            shown.insert(0, f"… {self.dropped:,} characters not shown (the transcript has them)")
            self.dropped = 0
        # Textual's Log drops an empty line: a space keeps it, and keeps the count true.
        return [_cap(line) if line else " " for line in shown]


def _cap(line: str) -> str:
    if len(line) <= LINE_CHARS:
        return line
    return f"{line[:LINE_CHARS]} … ({len(line) - LINE_CHARS:,} more characters)"
