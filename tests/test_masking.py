"""Secrets masked in the forms commands print them in, overlapping ones in full, and output
held back only while it could still begin a secret."""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from conftest import run_cli, start_cli, wait_for
from runbook.engine.masking import MIN_DERIVED, Masker
from runbook.format.variables import MASK

PRINTABLE = "p@ss w0rd/\"q'ü+=&z~#1"
"""Escaped by every quoting (and printable: ``printf %q`` uses backslashes)."""
TABBED = "tab\there~ü-s3cr3t"
"""A control character: ``printf %q`` writes ``$'...'``."""
PLAIN = "hunter2-s3cr3t-VALUE"


def bash_q(value: str, locale: str) -> str:
    out = subprocess.run(
        ["bash", "-c", 'printf %q "$1"', "_", value],
        capture_output=True,
        text=True,
        env={**os.environ, "LC_ALL": locale},
        check=True,
    )
    return out.stdout


def lower_hex(url: str) -> str:
    return re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), url)


def forms(value: str) -> set[str]:
    """Every form the masker must catch, made the way the tools that print them do."""
    raw = value.encode()
    urls = [quote(value, safe=""), quote(value), quote_plus(value)]
    b64 = [base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()]
    made = {
        value,
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        shlex.quote(value),
        bash_q(value, "C.UTF-8"),
        bash_q(value, "C"),
        *urls,
        *map(lower_hex, urls),
        *b64,
        *(b.rstrip("=") for b in b64),
    }
    return {f for f in made if len(f) >= MIN_DERIVED or f == value}


CASES = [(v, f) for v in (PRINTABLE, TABBED, PLAIN) for f in sorted(forms(v))]


@pytest.mark.parametrize(("value", "form"), CASES)
def test_each_form_is_masked_in_text_and_in_a_stream_split_anywhere(value: str, form: str) -> None:
    masker = Masker([value, "other-secret"])
    assert masker.text(f"before {form} after") == f"before {MASK} after"
    data = f"before {form} after\n".encode()
    expected = f"before {MASK} after\n".encode()
    assert masker.data(data) == expected
    for cut in range(len(data) + 1):
        stream = masker.stream()
        out = stream.feed(data[:cut]) + stream.feed(data[cut:]) + stream.flush()
        assert out == expected, (form, cut)


@pytest.mark.parametrize("value", [PRINTABLE, TABBED, PLAIN])
@pytest.mark.parametrize("before", [b"", b"u", b"us", b"user:", b"Bearer x"])
@pytest.mark.parametrize("alphabet", [base64.b64encode, base64.urlsafe_b64encode])
def test_base64_inside_a_longer_encoding_is_masked(value: str, before: bytes, alphabet) -> None:  # type: ignore[no-untyped-def]
    raw = value.encode()
    encoded = alphabet(before + raw + b"\n").decode()
    masked = Masker([value]).text(f"Authorization: Basic {encoded}")
    assert masked.count(MASK) == 1
    # What is left is at most what the other bytes set: two characters at each side.
    left = masked.removeprefix("Authorization: Basic ").replace(MASK, "")
    assert len(left) <= len(encoded) - (len(raw) * 4 // 3 - 2)


def test_short_derived_forms_are_not_masked_but_the_value_is() -> None:
    masker = Masker(["two", "ab"])
    assert base64.b64encode(b"two") == b"dHdv"
    assert masker.text("dHdv two xaby") == f"dHdv {MASK} x{MASK}y"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alpha-XYZ-bravo", MASK),
        ("<alpha-XYZ-bravo>", f"<{MASK}>"),
        ("XYZ-bravo alpha-XYZ", f"{MASK} {MASK}"),
        ("alpha-XYZalpha-XYZ-bravo", f"{MASK}{MASK}"),
    ],
)
def test_overlapping_secrets_are_both_masked_in_full(text: str, expected: str) -> None:
    masker = Masker(["alpha-XYZ", "XYZ-bravo"])
    assert masker.text(text) == expected
    data = text.encode()
    for cut in range(len(data) + 1):
        stream = masker.stream()
        out = stream.feed(data[:cut]) + stream.feed(data[cut:]) + stream.flush()
        assert out == expected.encode(), cut
    one_by_one = masker.stream()
    out = b"".join(one_by_one.feed(data[i : i + 1]) for i in range(len(data)))
    assert out + one_by_one.flush() == expected.encode()


def test_only_what_could_begin_a_secret_is_held_back() -> None:
    secret = "tok-" + "x9Y" * 1332
    stream = Masker([secret]).stream()
    assert stream.feed(b"ordinary text\n") == b"ordinary text\n"
    assert not stream.holding
    assert stream.feed(b"then tok-x9") == b"then "
    assert stream.holding
    assert stream.flush() == b"tok-x9"  # after the quiet time: released as it is
    assert stream.feed(secret[:2000].encode()) == b""
    assert stream.feed(secret[2000:].encode() + b"!") == MASK.encode() + b"!"


def output_of(transcript: Path) -> bytes:
    """The stdout recorded so far, read while the run may still write (whole lines only)."""
    out = bytearray()
    for line in transcript.read_bytes().split(b"\n")[:-1]:
        event = json.loads(line)
        if event["type"] == "output" and event["stream"] == "stdout":
            out += base64.b64decode(event["b64"]) if "b64" in event else event["text"].encode()
    return bytes(out)


def test_a_long_secret_does_not_hold_back_a_waiting_blocks_output(tmp_path: Path) -> None:
    secret = "tok-" + "x9Y" * 1332  # 4,000 characters
    go = tmp_path / "go"
    book = tmp_path / "book.md"
    book.write_text(
        "---\nvariables:\n  TOKEN:\n    secret: true\n---\n## Wait\n\n```sh\n"
        "printf 'ordinary text, waiting for tok'\n"
        f"until [ -e '{go}' ]; do sleep 0.02; done\necho ' done'\n```\n"
    )
    runs = tmp_path / "runs"
    runner = start_cli(
        "run", str(book), "--yes", "--runs-dir", str(runs), "--var", f"TOKEN={secret}"
    )
    try:
        transcript = wait_for(lambda: next(runs.glob("*/transcript.jsonl"), None), what="a run")
        # "tok" could begin the secret: held, then released once the block has been quiet.
        wait_for(
            lambda: output_of(transcript) == b"ordinary text, waiting for tok",
            what="the block's output while it waits",
        )
        assert not go.exists() and runner.poll() is None
    finally:
        go.touch()
        out, err = runner.communicate(timeout=60)
    assert runner.returncode == 0, out + err
    assert output_of(transcript) == b"ordinary text, waiting for tok done\n"


HELPER = """\
import base64, json, os, re, shlex
from urllib.parse import quote, quote_plus
for name in ("PRINTABLE", "TABBED", "PLAIN"):
    v = os.environ[name]
    raw = v.encode()
    urls = [quote(v, safe=""), quote(v), quote_plus(v)]
    print(json.dumps({"token": v}), json.dumps({"token": v}, ensure_ascii=False))
    lower = [re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), u) for u in urls]
    print(shlex.quote(v), *urls, *lower)
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for before in (b"", b"u", b"us", b"user:"):
            whole = encode(before + raw).decode()
            print(whole, whole.rstrip("="), encode(before + raw + b"...").decode())
"""


def test_no_form_of_a_secret_reaches_any_file_or_the_screen(tmp_path: Path) -> None:
    helper = tmp_path / "leak.py"
    helper.write_text(HELPER)
    book = tmp_path / "book.md"
    book.write_text(
        "---\nvariables:\n"
        + "".join(f"  {n}:\n    secret: true\n" for n in ("PRINTABLE", "TABBED", "PLAIN", "A", "B"))
        + "---\n## Leak\n\n```bash\n"
        f"'{sys.executable}' '{helper}'\n"
        'for v in "$PRINTABLE" "$TABBED" "$PLAIN"; do\n'
        "  printf '%q\\n' \"$v\"; LC_ALL=C printf '%q\\n' \"$v\"\n"
        "  printf 'Authorization: Basic %s\\n' \"$(printf 'user:%s' \"$v\" | base64 -w0)\"\n"
        "  printf '%s\\n' \"$v\" | base64\n"
        "done\n"
        'printf \'%s%s\\n\' "$A" "${B#XYZ}"\n'
        "echo finished\n```\n"
    )
    runs = tmp_path / "runs"
    values = {"PRINTABLE": PRINTABLE, "TABBED": TABBED, "PLAIN": PLAIN}
    values |= {"A": "alpha-XYZ", "B": "XYZ-bravo"}
    args = [a for n, v in values.items() for a in ("--var", f"{n}={v}")]
    proc = run_cli("run", str(book), "--yes", "--runs-dir", str(runs), *args)
    assert proc.returncode == 0, proc.stderr
    assert "finished" in proc.stdout and MASK in proc.stdout
    (transcript,) = runs.glob("*/transcript.jsonl")
    report = run_cli("transcript", "render", str(transcript))
    assert report.returncode == 0 and MASK in report.stdout
    leaks = {f for v in (PRINTABLE, TABBED, PLAIN) for f in forms(v)}
    leaks |= {"alpha-XYZ", "XYZ-bravo", "XYZ-b", "ha-XYZ"}
    for v in (PRINTABLE, TABBED, PLAIN):  # inside base64("user:" + secret)
        leaks.add(base64.b64encode(f"user:{v}".encode()).decode()[8:-4])
    recorded = output_of(transcript)
    assert recorded.count(b"\n") > 20 and recorded.endswith(f"{MASK}\nfinished\n".encode())
    files = [p for p in runs.rglob("*") if p.is_file()]
    assert transcript in files
    for leak in leaks:
        # as printed, and as a transcript (JSON) or a report would write it
        for written in {leak, json.dumps(leak)[1:-1], json.dumps(leak, ensure_ascii=False)[1:-1]}:
            needle = written.encode()
            for path in files:
                assert needle not in path.read_bytes(), (leak, path)
            assert needle not in recorded, leak
            for shown in (proc.stdout, proc.stderr, report.stdout, report.stderr):
                assert written not in shown, leak


def test_the_forms_bash_itself_prints_are_masked() -> None:
    """`set -x`, `${S@Q}` and `declare -p` quote a value their own ways: the most common
    way a secret leaks into a log is a block run with `set -x`."""
    import subprocess

    from runbook.engine.masking import Masker

    secret = 'pa\'ss word$1 "q" `x` \\ & <b>'
    script = 'set -x; : "$S"; set +x; printf "%s\\n" "${S@Q}"; declare -p S'
    done = subprocess.run(
        ["bash", "-c", script], env={"S": secret}, capture_output=True, check=True
    )
    printed = done.stdout + done.stderr
    assert secret.encode() not in printed  # each line quotes it
    masked = Masker([secret]).data(printed)
    assert masked.count(b"********") == 3, masked
    assert b"ss word" not in masked and b"<b>" not in masked, masked


def test_json_and_uri_forms_of_other_languages_are_masked() -> None:
    from urllib.parse import quote

    from runbook.engine.masking import Masker

    secret = "p@ss!w0rd(x)*&<go>"
    go_json = '"p@ss!w0rd(x)*\\u0026\\u003cgo\\u003e"'  # encoding/json's HTML-safe escapes
    js_uri = quote(secret, safe="!'()*")  # encodeURIComponent
    for form in (go_json, js_uri):
        assert b"w0rd" not in Masker([secret]).data(form.encode()), form
