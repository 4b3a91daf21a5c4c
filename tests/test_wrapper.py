"""The wrapper's first line (``MARKER PGID``) is taken out of a host's stdout, and nothing
else: whatever a login shell's startup files print around it, however the bytes are cut
into chunks, the command's output is recorded byte for byte."""

from __future__ import annotations

import pytest

from runbook.transports.wrapper import LEADER_LIMIT, Leader, new_marker


def through(leader: Leader, chunks: list[bytes]) -> bytes:
    out = b"".join(leader.feed(chunk) for chunk in chunks)
    return out + leader.end()


@pytest.mark.parametrize("noise", [b"", b"motd line\n", b"no newline: ", b"\x00\xff\r"])
def test_the_line_is_taken_out_wherever_the_chunks_are_cut(noise: bytes) -> None:
    marker = new_marker()
    output = b"hello\nworld\n\x1b[31mred\x1b[0m" + marker.encode() + b" 99\n"  # a later echo
    stream = noise + f"{marker} 4242\n".encode() + output
    for cut in range(len(stream) + 1):
        for second in (cut, min(cut + 3, len(stream))):
            leader = Leader(marker)
            chunks = [stream[:cut], stream[cut:second], stream[second:]]
            assert through(leader, chunks) == noise + output, (cut, second)
            assert leader.pgid == 4242 and leader.done and leader.said.is_set()
    leader = Leader(marker)
    assert through(leader, [bytes([b]) for b in stream]) == noise + output
    assert leader.pgid == 4242


def test_without_the_line_every_byte_is_output_and_no_group_is_known() -> None:
    marker = new_marker()
    leader = Leader(marker)
    assert leader.feed(b"sh: 1: setsid: not found\n") == b""  # held while it may yet come
    assert not leader.said.is_set()
    assert leader.end() == b"sh: 1: setsid: not found\n"
    assert leader.pgid is None and leader.said.is_set()


def test_a_flood_before_the_line_is_passed_on_not_held() -> None:
    leader = Leader(new_marker())
    flood = b"x" * (LEADER_LIMIT + 1)
    assert leader.feed(flood[:100]) == b""
    assert leader.feed(flood[100:]) == flood
    assert leader.done and leader.pgid is None
    assert leader.feed(b"later\n") == b"later\n"


@pytest.mark.parametrize("said", [b"1", b"0", b"-5", b"12x", b"", b" 7", b"99999999999999999999x"])
def test_a_group_that_is_not_a_plain_number_above_1_is_never_used(said: bytes) -> None:
    marker = new_marker()
    leader = Leader(marker)
    out = through(leader, [marker.encode() + b" " + said + b"\nafter\n"])
    assert out == b"after\n" and leader.pgid is None


def test_another_runs_marker_is_output() -> None:
    """Only this command's token counts: a line that names another (a log of an earlier
    run printed again, or a forgery) is output like any other."""
    leader = Leader(new_marker())
    forged = f"{new_marker()} 4242\n".encode()
    assert through(leader, [forged]) == forged and leader.pgid is None
