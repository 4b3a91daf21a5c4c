"""Text that runbook did not write, made inert before it reaches a terminal.

Command output, captured values, a webhook server's error text, even a runbook's own
headings can hold bytes a terminal obeys: ``ESC ] 52`` writes the clipboard, ``ESC ] 0``
the window title, DCS and CSI sequences move the cursor or clear the screen, a carriage
return overwrites what was shown, bidi overrides reorder it. On the screen, every control
character but newline and tab is shown escaped (``\\x1b]52;…``, ``\\r``, ``\\u202e``);
only SGR colour (``ESC [ … m``) may pass, and only where the caller says the output is a
terminal. The transcript is never touched: it keeps the exact bytes.

This sits with the format (the bottom layer) because every layer that shows text needs
it: the headless display, the terminal prompts, the console, the command line.
"""

from __future__ import annotations

import codecs
import re
from typing import Any, TextIO

# C0 but \t and \n, DEL, C1 (U+0080-U+009F: U+009B is CSI to many terminals), line and
# paragraph separators, bidi controls, and the surrogates that stand for bytes that
# were not UTF-8 (surrogateescape).
_CONTROL = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
    "\udc80-\udcff]"
)
# SGR that only colours: reset, bold, faint, italic, underline and their ends, the 16, 256
# and RGB colours. Not conceal (8), reverse (7) or blink (5): text a command prints may
# colour itself, never hide the lines after it.
_SGR = re.compile(
    r"\x1b\[(?:(?:0|1|2|3|4|22|23|24|39|49|3[0-7]|4[0-7]|9[0-7]|10[0-7]"
    r"|[34]8;5;\d{1,3}|[34]8;2;\d{1,3};\d{1,3};\d{1,3})(?:;(?=\d))?)*m"
)
RESET = b"\x1b[0m"
_SAFE_BYTES = bytes(range(0x20, 0x7F)) + b"\n\t"


def _escape(code: int) -> str:
    if code in (0x0D, 0x1B):
        return "\\r" if code == 0x0D else "\\x1b"
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_TABLE = {
    code: _escape(code)
    for code in (
        *range(0x00, 0x09),
        *range(0x0B, 0x20),
        *range(0x7F, 0xA0),
        0x061C, 0x200E, 0x200F, 0x2028, 0x2029,
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
        *range(0xDC80, 0xDD00),
    )
}  # fmt: skip


def inert(text: str, *, colour: bool = False) -> str:
    """``text`` with every control but newline and tab escaped; SGR kept if ``colour``."""
    if not _CONTROL.search(text):
        return text
    text = text.replace("\r\n", "\n")
    if not colour:
        return _CONTROL.sub(_escaped, text)
    parts = []
    last = 0
    for sgr in _SGR.finditer(text):
        parts.append(_CONTROL.sub(_escaped, text[last : sgr.start()]))
        parts.append(sgr.group())
        last = sgr.end()
    parts.append(_CONTROL.sub(_escaped, text[last:]))
    return "".join(parts)


def _escaped(match: re.Match[str]) -> str:
    return _TABLE[ord(match.group())]


def inert_bytes(data: bytes, *, colour: bool = False) -> bytes:
    """:func:`inert` for raw output; a chunk that is not UTF-8 has every byte but printable
    ASCII, newline and tab shown as ``\\xNN`` (at C speed: binary output can be large)."""
    if data.isascii() and not data.translate(None, _SAFE_BYTES):
        return data  # printable ASCII, newlines and tabs: nearly all output
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return _escape_binary(data)
    return inert(text, colour=colour).encode("utf-8")


def _escape_binary(data: bytes) -> bytes:
    # escape_encode writes bytes as a bytes literal's body; newline and tab (and the quote
    # it escapes) are then put back, between the escaped backslashes it made.
    escaped = codecs.escape_encode(data)[0]
    pieces = escaped.split(b"\\\\")
    for i, piece in enumerate(pieces):
        if b"\\" in piece:
            piece = piece.replace(b"\\r\\n", b"\n").replace(b"\\n", b"\n")
            pieces[i] = piece.replace(b"\\t", b"\t").replace(b"\\'", b"'")
    return b"\\".join(pieces)


class InertStream:
    """A text stream whose writes are made :func:`inert`, colour included (``sys.stdout``
    and ``sys.stderr`` of the command line: every message there may quote a runbook, a
    host, a file, a server, and none of them may colour or hide what follows).

    Everything else (``buffer``, ``fileno``, ``isatty``, ``flush``) is the stream's own;
    command output written to ``buffer`` is made inert by its writer.
    """

    def __init__(self, inner: TextIO) -> None:
        self._inner = inner

    def write(self, text: str) -> int:
        self._inner.write(inert(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
