"""The wrapper's first line (``runbook-TOKEN PGID``) is taken out of a host's stdout, and
nothing else: whatever a login shell's startup files or a ForceCommand print around it,
however the bytes are cut into chunks, the command's output is recorded byte for byte."""

from __future__ import annotations

import pytest

from runbook.transports.wrapper import Leader, kill_command, new_token, remote_command


def through(leader: Leader, chunks: list[bytes]) -> bytes:
    out = b"".join(leader.feed(chunk) for chunk in chunks)
    return out + leader.end()


NOISE = [
    b"",
    b"motd line\n",
    b"no newline: ",
    b"\x00\xff\r",
    b"runbook-",  # the line's own first bytes, as output
    b"x" * 70_000,  # more than any buffer: nothing is held back for it
]


@pytest.mark.parametrize("noise", NOISE, ids=range(len(NOISE)))
@pytest.mark.parametrize("eol", [b"\n", b"\r\n"], ids=["lf", "pty-crlf"])
def test_the_line_is_taken_out_wherever_the_chunks_are_cut(noise: bytes, eol: bytes) -> None:
    token = new_token()
    line = f"runbook-{token} 4242".encode() + eol
    output = b"hello\nworld\n\x1b[31mred\x1b[0m" + line  # the same text later is output
    stream = noise + line + output
    cuts = range(len(stream) + 1) if len(stream) < 1000 else range(len(noise) - 5, len(stream))
    for cut in cuts:
        for second in (cut, min(cut + 3, len(stream))):
            leader = Leader(token)
            chunks = [stream[:cut], stream[cut:second], stream[second:]]
            assert through(leader, chunks) == noise + output, (cut, second)
            assert leader.pgid == 4242 and leader.done and leader.said.is_set()
    leader = Leader(token)  # the rest a byte at a time
    assert through(leader, [noise, *(bytes([b]) for b in line + output)]) == noise + output


def test_only_a_little_is_ever_held_back() -> None:
    """Output before the line goes on at once but for a possible start of the line."""
    token = new_token()
    leader = Leader(token)
    assert leader.feed(b"x" * 70_000) == b"x" * 70_000
    assert leader.feed(b"abc runbook-") == b"abc "
    assert leader.feed(f"{token[:5]}".encode()) == b""
    assert leader.feed(b"zz\n") == f"runbook-{token[:5]}zz\n".encode()
    assert leader.feed(f"runbook-{token} 12".encode()) == b""
    assert leader.feed(b"\n!") == b"!" and leader.pgid == 12


def test_a_command_line_echoed_first_is_output_and_the_real_line_still_counts() -> None:
    """A ForceCommand or startup file that prints the command line sent (it holds the
    token, but never the line's text) takes nothing from the record."""
    token = new_token()
    command = remote_command("echo hi", shell="sh", cwd=None, token=token, payload_size=0)
    assert f"runbook-{token}" not in command and token in command
    echoed = f"running: {command}\n".encode()
    leader = Leader(token)
    out = through(leader, [echoed + f"runbook-{token} 77\nhi\n".encode()])
    assert out == echoed + b"hi\n" and leader.pgid == 77


def test_without_the_line_every_byte_is_output_and_no_group_is_known() -> None:
    token = new_token()
    leader = Leader(token)
    assert leader.feed(b"sh: 1: setsid: not found\n") == b"sh: 1: setsid: not found\n"
    assert not leader.said.is_set()
    assert leader.feed(f"runbook-{token} 9".encode()) == b""  # cut short by the end
    assert leader.end() == f"runbook-{token} 9".encode()
    assert leader.pgid is None and leader.said.is_set()


@pytest.mark.parametrize("said", [b"1", b"0", b"-5", b"12x", b"", b" 7", b"9" * 20])
def test_a_group_that_is_not_a_plain_number_above_1_is_never_used(said: bytes) -> None:
    token = new_token()
    leader = Leader(token)
    text = f"runbook-{token} ".encode() + said + b"\nafter\n"
    out = through(leader, [text])
    assert leader.pgid is None
    assert out == (b"after\n" if said in (b"1", b"0") else text)


def test_a_false_start_is_output_and_the_line_after_it_still_counts() -> None:
    """Text that begins like the line but is not it (a startup file printing the prefix,
    say) is output, and the real line later in the same chunk is still found."""
    token = new_token()
    leader = Leader(token)
    false = f"runbook-{token} soon\nrunbook-{token} \n".encode()
    out = through(leader, [false + f"runbook-{token} 31\nhi\n".encode()])
    assert out == false + b"hi\n" and leader.pgid == 31


def test_another_commands_line_is_output() -> None:
    """Only this command's token counts: a line that names another (a log of an earlier
    run printed again, or a forgery) is output like any other."""
    leader = Leader(new_token())
    forged = f"runbook-{new_token()} 4242\n".encode()
    assert through(leader, [forged]) == forged and leader.pgid is None


def test_the_kill_names_the_token_and_a_group_above_1_only() -> None:
    command = kill_command("ab12", 4321, "TERM")
    assert "/proc/4321/cmdline" in command and '*" ab12 "*) kill -TERM "-4321"' in command
    for bad in ((1, "ab12"), (0, "ab12"), (99, "ab 12"), (99, "x;rm")):
        with pytest.raises(AssertionError):
            kill_command(bad[1], bad[0], "INT")
