"""Inputs found by review and fuzzing: a diagnostic or a usage error each, never a traceback."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from conftest import run_cli
from runbook.cli import main

STEP = "## S\n\n```sh\n{opts}true\n```\n"

# name: (runbook text, the message `check` must give)
HOSTILE = {
    "bad date": (
        "---\ndescription: !!timestamp 2024-13-45\n---\n",
        "2:14: error: invalid YAML value: `2024-13-45` is not a valid !!timestamp"
        " (month must be in 1..12)",
    ),
    "bad int tag": (
        "---\ntitle: !!int abc\n---\n",
        "2:8: error: invalid YAML value: `abc` is not a valid !!int",
    ),
    "bad bool tag": (
        "---\ntitle: !!bool abc\n---\n",
        "2:8: error: invalid YAML value: `abc` is not a valid !!bool",
    ),
    "bad float tag": (
        "---\ntitle: !!float abc\n---\n",
        "2:8: error: invalid YAML value: `abc` is not a valid !!float",
    ),
    "code point too large": (
        '---\ntitle: "\\U00110000"\n---\n',
        "2:11: error: invalid YAML in front matter: chr() arg not in range(0x110000)",
    ),
    "huge integer tag": (
        "---\ntitle: !!int " + "9" * 5000 + "\n---\n",
        "2:8: error: invalid YAML value: `9999",
    ),
    "deep YAML nesting": (
        "---\ntitle: " + "[" * 3000 + "\n---\n",
        "2:1: error: invalid YAML in front matter: nested too deeply",
    ),
    "python tag": (
        "---\ntitle: !!python/object:os.system {}\n---\n",
        "2:8: error: invalid YAML value: could not determine a constructor for the tag",
    ),
    "set": ("---\ntitle: !!set {a, b}\n---\n", "2:8: error: `title`: expected text, got a set"),
    "binary": (
        "---\nowner: !!binary aGk=\n---\n",
        "2:8: error: `owner`: expected text, got binary data",
    ),
    "non-text key": ("---\n[a, b]: 1\n---\n", "2:1: error: a mapping key must be text"),
    "regex too large": (
        "---\nvariables:\n  V:\n    pattern: 'a{99999999999}'\n---\n",
        "4:14: error: variable `V`: `pattern` is not a valid regular expression:"
        " the repetition number is too large",
    ),
    "regex too deep": (
        "---\nvariables:\n  V:\n    pattern: '" + "(" * 2000 + "'\n---\n",
        "4:14: error: variable `V`: `pattern` is not a valid regular expression:",
    ),
    "superscript digit": (
        STEP.format(opts="#| retries: \u00b2\n"),
        "4:13: error: bad value for `retries`: expected a whole number below 1000000",
    ),
    "huge retries": (
        STEP.format(opts="#| retries: " + "9" * 5000 + "\n"),
        "4:13: error: bad value for `retries`: expected a whole number below 1000000",
    ),
    "huge serial": (
        STEP.format(opts="#| serial: " + "9" * 5000 + "\n"),
        "4:12: error: bad value for `serial`: expected a number of hosts",
    ),
    "huge port in on": (
        STEP.format(opts="#| on: h:" + "9" * 5000 + "\n"),
        "4:8: error: `h:999",
    ),
    "huge timeout": (
        STEP.format(opts="#| timeout: 1" + "0" * 400 + "s\n"),
        "4:13: error: bad value for `timeout`: expected a duration",
    ),
    "surrogate in name": (
        STEP.format(opts='#| name: "\\ud800"\n'),
        "4:10: error: bad value for `name`: contains a lone UTF-16 surrogate",
    ),
    "surrogate in confirm": (
        STEP.format(opts='#| confirm: "\\ud800"\n'),
        "4:13: error: bad value for `confirm`: contains a lone UTF-16 surrogate",
    ),
    "surrogate JSON key": (
        '## S\n\n```sh {"\\ud800": 1}\ntrue\n```\n',
        "3:8: error: unknown option `\ud800`",
    ),
    "surrogate title": (
        '---\ntitle: "\\ud800"\n---\n## S\n',
        "2:8: error: `title`: contains a lone UTF-16 surrogate",
    ),
    "deep JSON": (
        '## S\n\n```sh {"a":' + "[" * 3000 + "]" * 3000 + "}\ntrue\n```\n",
        "3:7: error: attributes are not valid JSON: too deep",
    ),
    "bad escape in kv": (
        '## S\n\n```bash {name="a\\q"}\ntrue\n```\n',
        '3:15: error: cannot read the quoted value "a\\q": Invalid \\escape',
    ),
}


@pytest.mark.parametrize(("text", "message"), list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_input_gets_a_diagnostic(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "hostile.md"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(["check", str(path)]) == 1
    assert f"{path}:{message}" in out.getvalue()
    for args in (["plan"], ["plan", "--format", "json"]):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            assert main([*args, str(path)]) == 1


def test_lone_cr_lines_and_bom_give_the_right_position(tmp_path: Path) -> None:
    path = tmp_path / "cr.md"
    path.write_bytes(b"\xef\xbb\xbf## S\r\rx\r\xff\r")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert main(["check", str(path)]) == 1
    assert out.getvalue() == f"{path}:4:1: error: invalid UTF-8: byte 0xff at byte offset 11\n"


def test_a_variable_given_twice_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "v.md"
    path.write_text("---\nvariables:\n  A: {}\n---\n## S\n", encoding="utf-8")
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        assert main(["plan", str(path), "--var", "A=1", "--var", "A=2"]) == 2
    assert "--var A is given twice" in err.getvalue()


def test_unprintable_text_is_escaped_by_the_real_cli(tmp_path: Path) -> None:
    text, _ = HOSTILE["surrogate JSON key"]
    path = tmp_path / "hostile.md"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    proc = run_cli("check", str(path))
    assert proc.returncode == 1, proc.stderr
    assert f"{path}:3:8: error: unknown option `\\ud800`" in proc.stdout
