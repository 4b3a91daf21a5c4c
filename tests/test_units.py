"""Small value types: durations, host amounts, batches, host specs, variable references."""

from __future__ import annotations

import pytest

from runbook.format.hosts import batches, parse_host, resolve_targets
from runbook.format.model import Amount, Host, HostGroup
from runbook.format.values import ValueProblem, expand, parse_duration, parse_serial, variable_refs


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("500ms", 0.5), ("1.5s", 1.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text).seconds == seconds


@pytest.mark.parametrize("text", ["5", "", "m", "5 m", "-5s", "5x", "1h-"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueProblem):
        parse_duration(text)


HOSTS = tuple(Host(f"h{i}", f"h{i}") for i in range(1, 11))


@pytest.mark.parametrize(
    ("serial", "sizes"),
    [
        ("1, 50%, 100%", [1, 5, 4]),
        ("1", [1] * 10),
        ("3", [3, 3, 3, 1]),
        ("25%", [2, 2, 2, 2, 2]),
        ("1%", [1] * 10),
        ("100%", [10]),
        ("[2, 100%]", [2, 8]),
    ],
)
def test_batches(serial: str, sizes: list[int]) -> None:
    split = batches(HOSTS, parse_serial(serial))
    assert [len(b) for b in split] == sizes
    assert [h for b in split for h in b] == list(HOSTS)


def test_no_serial_is_one_batch() -> None:
    assert batches(HOSTS, ()) == [HOSTS]
    assert batches((), ()) == []


def test_amount_of() -> None:
    assert Amount(10, percent=True).of(5, at_least_one=True) == 1
    assert Amount(10, percent=True).of(5) == 0  # a failure tolerance never rounds up
    assert Amount(50, percent=True).of(5) == 2
    assert Amount(0, percent=True).of(5, at_least_one=True) == 0
    assert Amount(3).of(100) == 3


@pytest.mark.parametrize(
    ("spec", "user", "hostname", "port"),
    [
        ("web-1", None, "web-1", None),
        ("deploy@web-3.example.com:2222", "deploy", "web-3.example.com", 2222),
        ("root@[::1]:22", "root", "::1", 22),
        ("127.0.0.2", None, "127.0.0.2", None),
    ],
)
def test_parse_host(spec: str, user: str | None, hostname: str, port: int | None) -> None:
    host = parse_host(spec)
    assert (host.user, host.hostname, host.port) == (user, hostname, port)


def test_resolve_targets_dedupes_and_keeps_order() -> None:
    web = HostGroup("web", (parse_host("a"), parse_host("b")), 1)
    db = HostGroup("db", (parse_host("b"), parse_host("c")), 2)
    got = resolve_targets("web, db, ops@d.example:2200", [web, db])
    assert [h.spec for h in got] == ["a", "b", "c", "ops@d.example:2200"]
    assert resolve_targets("local", [web]) == ()
    assert [h.spec for h in resolve_targets("c", [web, db])] == ["c"]


def test_variable_refs_and_expand() -> None:
    text = "Deploy $VERSION to ${ENV} for $$5 (${MISSING:-x})"
    assert [n for n, _ in variable_refs(text)] == ["VERSION", "ENV", "MISSING"]
    assert (
        expand(text, {"VERSION": "v1", "ENV": "prod"}) == "Deploy v1 to prod for $5 (${MISSING:-x})"
    )


def test_stream_masker_sees_a_secret_split_anywhere() -> None:
    from runbook.engine.masking import Masker

    secret = "s3cr3t-value"
    data = f"before {secret} middle {secret}{secret} after {secret[:5]}".encode()
    masker = Masker([secret, "other"])
    for size in (1, 2, 3, 5, 7, 11, 64):
        stream = masker.stream()
        out = b"".join(stream.feed(data[i : i + size]) for i in range(0, len(data), size))
        out += stream.flush()
        assert out == b"before ******** middle **************** after s3cr3", size


def test_console_output_keeps_the_lines_of_stdout_and_stderr_whole() -> None:
    from runbook.tui.output import OutputBuffer

    buffer = OutputBuffer(keep=100, patience=0.5)
    buffer.add("503 Servi", "stdout")
    buffer.add("curl: (22) The", "stderr")
    buffer.add("ce Unavailable\n", "stdout")
    buffer.add(" requested URL returned error: 503\n", "stderr")
    assert buffer.drain(now=0.0) == [
        "503 Service Unavailable",
        "curl: (22) The requested URL returned error: 503",
    ]
    buffer.add("Password: ", "stderr")  # an open line: held back, then shown as it stands
    assert buffer.drain(now=1.0) == []
    assert buffer.drain(now=1.6) == ["Password: "]
    buffer.add("partial")
    buffer.end_line()
    buffer.add("── exit 0 ──\n")
    assert buffer.drain(now=2.0) == ["partial", "── exit 0 ──"]
    for _ in range(50):  # 3.2 MB on one line, held as it came, shown capped
        buffer.add("x" * 64 * 1024, "stdout")
    assert buffer.drain(now=3.0) == []
    assert buffer.drain(now=3.6) == ["x" * 4096 + f" … ({50 * 64 * 1024 - 4096:,} more characters)"]


def test_console_output_gives_a_log_at_most_what_it_keeps_the_notice_of_a_drop_first() -> None:
    """The log keeps ``keep`` lines and drops its oldest: a batch of more than that is cut
    here, after carriage returns became lines, and the notice of what the loop dropped is
    the one line that must survive the cut."""
    from runbook.tui.output import MAX_PENDING, OutputBuffer

    buffer = OutputBuffer(keep=10)
    buffer.add("".join(f"{n}\r{n}b\n" for n in range(100)))
    assert buffer.drain(now=0.0) == [f"{n}{b}" for n in range(95, 100) for b in ("", "b")]
    for n in range(MAX_PENDING // 8 + 1):  # more than the buffer holds: the oldest go
        buffer.add(f"{n:07d}\n")
    drained = buffer.drain(now=1.0)
    last = MAX_PENDING // 8
    assert len(drained) == 10 and drained[0].endswith("not shown (the transcript has them)")
    assert drained[1:] == [f"{n:07d}" for n in range(last - 8, last + 1)]
    # Textual's Log drops "" (str.splitlines): a blank line is a space, so a batch that
    # fills the log still pushes out every line before it; CR LF is one line ending.
    buffer.add("".join(f"new{n}\n\n" for n in range(15)))
    assert buffer.drain(now=2.0) == [x for n in range(10, 15) for x in (f"new{n}", " ")]
    buffer.add("".join(f"crlf{n}\r\n" for n in range(30)))
    assert buffer.drain(now=3.0) == [f"crlf{n}" for n in range(20, 30)]
    tiny = OutputBuffer(keep=1)
    for n in range(MAX_PENDING // 8 + 1):
        tiny.add(f"{n:07d}\n")
    assert [line[-35:] for line in tiny.drain(now=0.0)] == ["not shown (the transcript has them)"]


def test_a_skipped_block_counts_as_skipped_until_a_run_of_it_ends_well() -> None:
    """Run from the palette after its skip, a block whose run never ended (a crash) or
    failed is still named by an "ok" end; one that ended well, or was marked done, is not."""
    from runbook.record.events import RunState

    def state(*tail: dict[str, object]) -> RunState:
        folded = RunState()
        for e in ({"type": "block.skip", "block": "prep"}, *tail):
            folded.apply(e)
        return folded

    start = {"type": "block.start", "block": "prep", "attempt": 1, "step": 1}
    end = {"type": "block.end", "block": "prep", "attempt": 1}
    assert state().skipped == ["prep"]
    assert state(start).skipped == ["prep"]  # its outcome unknown
    assert state(start, {**end, "exit": 3}).skipped == ["prep"]
    assert state(start, {**end, "exit": 0}).skipped == []
    assert state(start, {**end, "exit": 3, "continued": True}).skipped == []
    assert state(start, {"type": "block.mark", "block": "prep"}).skipped == []
    assert state(start).restarted == {"prep"}  # a background block: it ran, then was stopped
    # One run ended well; a re-run of it from the palette, skipped, undid nothing.
    again = RunState()
    for e in (start, {**end, "exit": 0}, {"type": "block.skip", "block": "prep"}):
        again.apply(e)
    assert again.skipped == []
    ticks = [
        {"type": "check.tick", "step": 1, "item": i, "result": r}
        for i, r in enumerate(["ticked", "skipped", "skipped"])
    ]
    assert state(*ticks).items_skipped == 2
