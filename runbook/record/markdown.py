"""Markdown for the report: text made safe to paste (escape sequences dropped, control
bytes shown as control pictures), fences nothing inside can close, long output folded and
capped, times and durations as people read them."""

from __future__ import annotations

import re
from datetime import datetime

FOLD_LINES = 30
CAP_BYTES = 64 * 1024
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_BACKTICKS = re.compile(r"`+")


def output_block(data: bytes, binary: bool) -> list[str]:
    note = (
        " Not valid UTF-8: shown with replacement characters; the transcript has the exact bytes."
        if binary
        else ""
    )
    shown = data
    cut = ""
    if len(data) > CAP_BYTES:
        half = CAP_BYTES // 2
        shown = data[:half] + b"\n" + data[-half:]
        cut = (
            f" Showing the first and last {half // 1024} KiB;"
            f" the {len(data) - 2 * half:,} bytes between are in the transcript."
        )
    text = visible(shown.decode("utf-8", "replace"))
    lines = data.count(b"\n") + (not data.endswith(b"\n"))
    summary = f"Output: {len(data):,} bytes, {lines:,} line{'' if lines == 1 else 's'}.{cut}{note}"
    fenced = fence(text, "text")
    if text.count("\n") < FOLD_LINES and not cut:
        return [summary, "", *fenced]
    return ["<details>", f"<summary>{html(summary)}</summary>", "", *fenced, "", "</details>"]


def visible(text: str) -> str:
    """ANSI sequences removed; other control bytes shown as Unicode control pictures."""
    text = _ANSI.sub("", text).replace("\r\n", "\n")
    return _CONTROL.sub(
        lambda m: chr(0x2400 + ord(m.group())) if m.group() != "\x7f" else "\u2421", text
    )


def fence(text: str, language: str) -> list[str]:
    """A fence longer than any backtick run inside, so the content cannot close it."""
    longest = max((len(m.group()) for m in _BACKTICKS.finditer(text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [f"{fence}{language}", text.rstrip("\n"), fence]


def inline(text: str) -> str:
    return " ".join(visible(str(text)).split())


def cell(text: str) -> str:
    return inline(text).replace("|", "\\|")


def html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def when(stamp: str | None) -> str:
    if not stamp:
        return "?"
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M:%S")


def clock(stamp: str | None) -> str:
    return when(stamp)[11:] if stamp else "?"


def elapsed(start: str | None, end: str | None) -> float:
    if not start or not end:
        return 0.0
    parse = datetime.fromisoformat
    return (parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds()


def seconds(value: float) -> str:
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(int(value), 60)
    return f"{minutes} min {seconds} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def span(value: float) -> str:
    """A bake's durations, which are often under a second in tests and minutes in use."""
    return f"{value * 1000:.0f} ms" if value < 1 else seconds(value)
