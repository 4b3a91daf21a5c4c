"""Bytes a terminal obeys never reach it from text runbook did not write.

A command's output, a captured value shown in a gate, a webhook server's answer: each
carries OSC 52 (the clipboard), OSC 0 (the window title), DCS, screen clearing and a
carriage return. What reaches the terminal is checked raw (a pipe, and a real pty where
colour may pass); the transcript must keep the exact bytes.
"""

from __future__ import annotations

import fcntl
import signal
import struct
import termios
from pathlib import Path
from typing import Any

import pytest
from webhook_server import WebhookServer

from conftest import OnPty, events, run_cli, run_inline
from runbook.format.screen import inert, inert_bytes

EVIL = (
    r"a\033]52;c;SGVsbG8=\007b\033]0;pwned\007c\033P1$qm\033\\d\033[2J"
    r"\033[31mred\033[0m\033[8mhid\r\n"
)
EXACT = (
    "a\x1b]52;c;SGVsbG8=\x07b\x1b]0;pwned\x07c\x1bP1$qm\x1b\\d\x1b[2J"
    "\x1b[31mred\x1b[0m\x1b[8mhid\r\n"
)
# What the terminal must never receive: an ESC that starts an OSC, a DCS or a clear.
# (A bare BEL is no marker in the console: Textual ends its own OSC 22 with one.)
OBEYED = (
    b"\x1b]52", b"\x1b]0;pwned", b"\x1bP1", b"\x1b[2J", b"\x07b", b"\x07c",
    b"\x1b[8m",  # conceal: colour may pass, hiding what follows may not
    b"\x1b]0;PWNTITLE", b"\x1b]2;PWNSTEP",  # the runbook's own headings
)  # fmt: skip

BOOK = f"""\
# Hostile \x1b]0;PWNTITLE\x1b\\ output

## Print \x1b]2;PWNSTEP\x07

```sh {{name=evil capture=EVIL}}
printf '{EVIL}'
```

```sh {{name=gate confirm="Deploy with $EVIL now?"}}
echo gate passed
```
"""


def obeyed(screen: bytes) -> list[bytes]:
    return [seq for seq in OBEYED if seq in screen]


def test_inert_escapes_everything_but_text_newline_tab_and_asked_for_colour() -> None:
    assert inert("a\tb\nc") == "a\tb\nc"
    assert inert("\x1b]52;c;SGVsbG8=\x07") == "\\x1b]52;c;SGVsbG8=\\x07"
    assert inert("x\ry") == "x\\ry" and inert("x\r\ny") == "x\ny"
    assert inert("\x9b2J \u202eevil \x00") == "\\x9b2J \\u202eevil \\x00"
    assert inert("\x1b[31mred\x1b[0m") == "\\x1b[31mred\\x1b[0m"
    assert inert("\x1b[31mred\x1b[0m\x1b[2J", colour=True) == "\x1b[31mred\x1b[0m\\x1b[2J"
    assert inert_bytes(b"ok\n") == b"ok\n"
    assert inert_bytes(b"\xff\x1b]0;t\x07") == b"\\xff\\x1b]0;t\\x07"


def test_headless_output_is_escaped_and_the_transcript_exact(tmp_path: Path) -> None:
    book = tmp_path / "book.md"
    book.write_text(BOOK)
    done = run_cli("run", str(book), "--yes", "--runs-dir", str(tmp_path / "runs"))
    assert done.returncode == 0, done.stderr
    screen = (done.stdout + done.stderr).encode()
    assert obeyed(screen) == [] and b"\x1b" not in screen  # not a terminal: no colour either
    assert b"\\x1b]52;c;SGVsbG8=\\x07" in screen
    transcript = next((tmp_path / "runs").glob("*/transcript.jsonl"))
    recorded = [e for e in events(transcript) if e["type"] == "output"]
    assert "".join(e["text"] for e in recorded if e["block"] == "evil") == EXACT


def test_a_terminal_gets_colour_but_nothing_else(tmp_path: Path) -> None:
    """Plain prompts on a real pty: output and the gate's prompt with the captured value."""
    book = tmp_path / "book.md"
    book.write_text(BOOK)
    on = OnPty(["run", str(book), "--runs-dir", str(tmp_path / "runs")])
    on.expect("now? [y/N]")
    on.send(b"y\n")
    on.expect("gate passed")
    assert on.wait() == 0
    assert obeyed(on.seen) == [], on.seen
    assert b"\x1b[31mred\x1b[0m" in on.seen  # SGR colour passes to a terminal
    assert b"Deploy with a\\x1b]52;c;SGVsbG8=\\x07b\\x1b]0;pwned\\x07" in on.seen
    transcript = next((tmp_path / "runs").glob("*/transcript.jsonl"))
    asked = next(e for e in events(transcript) if e["type"] == "gate.ask")
    assert asked["prompt"] == f"Deploy with {EXACT.strip()} now?"


def test_the_console_draws_captured_values_inert(tmp_path: Path) -> None:
    """The TUI on a real pty: its own sequences pass; none of the output's."""
    book = tmp_path / "book.md"
    book.write_text(BOOK)
    on = OnPty(["open", str(book), "--runs-dir", str(tmp_path / "runs")])
    fcntl.ioctl(on.master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    on.proc.send_signal(signal.SIGWINCH)
    on.expect("runs it")  # the first block waits for `n`
    on.send(b"n")
    on.expect("exit 0")
    on.send(b"n")  # the gate's turn: its confirm opens
    on.expect("Deploy with")  # the gate's dialog, with the captured value in it
    on.expect("pwned")
    on.proc.send_signal(signal.SIGTERM)
    on.wait()
    assert obeyed(on.seen) == [], on.seen
    assert b"\\x1b]52;c;SGVsbG8=" in on.seen


def test_a_webhook_answer_is_escaped_in_the_warning(tmp_path: Path) -> None:
    server = WebhookServer(mode="hostile")
    try:
        book = tmp_path / "book.md"
        book.write_text(
            f"---\nnotify:\n  - url: {server.url}/hook\n    retries: 0\n---\n"
            "# Hook\n\n## One\n\n```sh\necho one\n```\n"
        )
        done = run_cli("run", str(book), "--yes", "--runs-dir", str(tmp_path / "runs"))
    finally:
        server.close()
    assert done.returncode == 0, done.stderr
    screen = (done.stdout + done.stderr).encode()
    assert b"\x1b" not in screen and b"\x07" not in screen
    assert b"\\x1b]52;c;cHduZWQ=" in screen or b"\\x1b]0;pwned-reason" in screen, screen
    transcript = next((tmp_path / "runs").glob("*/transcript.jsonl"))
    errors = [e.get("error") or "" for e in events(transcript) if e["type"] == "notify"]
    assert any("\x1b]0;pwned-reason\x07" in e or "\x1b]52;c;cHduZWQ=" in e for e in errors)


def test_the_plain_display_trusts_the_writers_check_for_no_byte_it_would_escape(
    tmp_path: Path, capsysbinary
) -> None:  # type: ignore[no-untyped-def]
    """The headless display skips its own pass over text the writer found plain
    (``CheckedOutput``): for every ASCII byte, alone and amid text, from a host or not, what
    it prints is what the full check prints."""
    from runbook.engine.operator import HeadlessOperator
    from runbook.record.transcript import CheckedOutput, TranscriptWriter

    writer = TranscriptWriter(tmp_path / "t.jsonl", "r")
    trusted = 0
    for byte in range(128):
        for data in (bytes([byte]), b"log line " + bytes([byte]) + b" more\n"):
            for where in ({}, {"host": "web1"}):
                event = writer.append_output(data, block="b", stream="stdout", **where)
                trusted += isinstance(event, CheckedOutput)
                HeadlessOperator(yes=True).show(event)
                shown = capsysbinary.readouterr().out
                HeadlessOperator(yes=True).show(dict(event))  # a plain dict: every byte checked
                assert shown == capsysbinary.readouterr().out, (byte, data, where, shown)
                assert not set(shown) - {*range(0x20, 0x7F), *b"\n\t"}, shown
    writer.close()
    assert trusted == 4 * (0x7F - 0x20 + 3)  # printable, newline, tab, carriage return


def test_a_refusal_quoting_a_record_is_escaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refusal quotes what it refuses: ``resume`` of an ended run says how it ended, from
    the record, which an edit (or a message quoting a command's words) can fill with a
    terminal's control sequences."""
    from runbook import cli, launch

    done = run_inline(tmp_path, "## S\n\n```sh\ntrue\n```\n")
    replay = launch.replay

    def edited(path: Path) -> Any:
        recorded = replay(path)
        recorded.state.end_message = "\x1b]0;owned\x07\x1b[2J"
        return recorded

    monkeypatch.setattr(launch, "replay", edited)
    assert cli.main(["resume", str(done.transcript)]) == 1
    said = capsys.readouterr().err
    assert "\x1b" not in said and "\\x1b]0;owned\\x07" in said, said
