"""Inputs found by review and fuzzing: a diagnostic or a usage error each, never a traceback."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from runbook.cli import main

STEP = "## S\n\n```sh\n{opts}true\n```\n"

HOSTILE = {
    "bad date": "---\ndescription: !!timestamp 2024-13-45\n---\n",
    "bad int tag": "---\ntitle: !!int abc\n---\n",
    "bad bool tag": "---\ntitle: !!bool abc\n---\n",
    "bad float tag": "---\ntitle: !!float abc\n---\n",
    "code point too large": '---\ntitle: "\\U00110000"\n---\n',
    "huge integer tag": "---\ntitle: !!int " + "9" * 5000 + "\n---\n",
    "deep YAML nesting": "---\ntitle: " + "[" * 3000 + "\n---\n",
    "python tag": "---\ntitle: !!python/object:os.system {}\n---\n",
    "set and binary": "---\ntitle: !!set {a, b}\nowner: !!binary aGk=\n---\n",
    "non-text key": "---\n[a, b]: 1\n? {x: 1}\n: 2\n---\n",
    "anchors and merge": "---\nx: &d {prompt: p}\nvariables:\n  A: {<<: *d, default: v}\n---\n",
    "regex too large": "---\nvariables:\n  V:\n    pattern: 'a{99999999999}'\n---\n",
    "regex too deep": "---\nvariables:\n  V:\n    pattern: '" + "(" * 2000 + "'\n---\n",
    "superscript digit": STEP.format(opts="#| retries: ²\n"),
    "huge retries": STEP.format(opts="#| retries: " + "9" * 5000 + "\n"),
    "huge serial": STEP.format(opts="#| serial: " + "9" * 5000 + "\n"),
    "huge port in on": STEP.format(opts="#| on: h:" + "9" * 5000 + "\n"),
    "huge timeout": STEP.format(opts="#| timeout: 1" + "0" * 400 + "s\n"),
    "surrogate in name": STEP.format(opts='#| name: "\\ud800"\n'),
    "surrogate in confirm": STEP.format(opts='#| confirm: "\\ud800"\n'),
    "surrogate JSON key": '## S\n\n```sh {"\\ud800": 1}\ntrue\n```\n',
    "surrogate title": '---\ntitle: "\\ud800"\n---\n## S\n',
    "deep JSON": "## S\n\n```sh {" + '"a":[' * 3000 + "\ntrue\n```\n",
    "bad escape in kv": '## S\n\n```bash {name="a\\q"}\ntrue\n```\n',
}


@pytest.mark.parametrize("text", list(HOSTILE.values()), ids=list(HOSTILE))
@pytest.mark.parametrize("command", ["check", "plan", "plan-json"])
def test_hostile_input(tmp_path: Path, command: str, text: str) -> None:
    path = tmp_path / "hostile.md"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    args = ["plan", "--format", "json"] if command == "plan-json" else [command]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*args, str(path)])
    assert code in (0, 1, 2)
    if command == "plan-json" and code == 0:
        json.loads(out.getvalue())  # valid JSON: no NaN or Infinity


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
