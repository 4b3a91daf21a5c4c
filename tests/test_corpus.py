"""The parser never crashes: real-world Markdown (tests/corpus) and generated Markdown."""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import CORPUS, run_cli
from runbook.cli import main
from runbook.format.parser import parse_bytes
from runbook.format.plan import PlanProblem, build_plan
from runbook.format.variables import resolve

CORPUS_FILES = sorted(p for p in CORPUS.rglob("*") if p.suffix in (".md", ".mdx"))


def test_corpus_is_present() -> None:
    assert len(CORPUS_FILES) >= 70
    assert (CORPUS / "stateful__runme" / ".github__workflows__CI.md") in CORPUS_FILES


@pytest.mark.parametrize("path", CORPUS_FILES, ids=[p.name for p in CORPUS_FILES])
def test_corpus_file_never_crashes(path: Path) -> None:
    # Exit 1 is fine: these are other tools' files (unknown front matter keys and so on).
    assert main(["check", "-q", str(path)]) in (0, 1)


def test_corpus_in_one_real_process() -> None:
    proc = run_cli("check", *[str(p) for p in CORPUS_FILES])
    assert proc.returncode in (0, 1)
    assert "Traceback" not in proc.stderr


RUNME_DIR = CORPUS / "stateful__runme"
RUNME = [*sorted(RUNME_DIR.glob("*.md")), RUNME_DIR / ".github__workflows__CI.md"]


@pytest.mark.parametrize("path", RUNME, ids=[p.name for p in RUNME])
def test_runme_annotated_files_have_no_errors(path: Path) -> None:
    result = parse_bytes(path.read_bytes(), str(path))
    assert result.ok, [d.format(path.name) for d in result.diagnostics if d.severity == "error"]


# Fragments that matter to the parser, so that random documents hit its edge cases.
FRAGMENTS = [
    "---",
    "...",
    "```",
    "````",
    "~~~",
    "```sh",
    "```bash {",
    "~~~zsh { name=x }",
    '```sh {"name": 1}',
    "#| ",
    "#| on: web",
    "#| serial: 1, 50%",
    "#| timeout: 5",
    "#| capture: X",
    "#| rollback: true",
    "#| confirm: $X",
    "$X",
    "${Y}",
    "# ",
    "## ",
    "### ",
    "- [ ] ",
    "- [x] ",
    "* ",
    "1. ",
    "> ",
    "> [!WARNING]",
    "    ",
    "\t",
    "|a|b|",
    "|-|-|",
    "<details>",
    "title: t",
    "variables:",
    "  X:",
    "    secret: true",
    "    default: d",
    "hosts:",
    "  web: [a, b]",
    "key: [",
    ": :",
    "{",
    "}",
    "=",
    '"',
    "'",
    "\\",
    "\r",
    "\r\n",
    "\x00",
    "\ufeff",
    "é",
    "\u202e",
    "word",
    " ",
]
documents = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)), max_size=60).map(
    lambda parts: "".join(p + ("\n" if i % 3 else "") for i, p in enumerate(parts))
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_random_markdown_never_crashes(text: str) -> None:
    data = text.encode("utf-8", "surrogatepass")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "random.md")
        path.write_bytes(data)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert main(["check", str(path)]) in (0, 1)
    n_lines = data.count(b"\n") + data.count(b"\r") + 1
    result = parse_bytes(data, "random.md")
    for d in result.diagnostics:
        assert 1 <= d.line <= n_lines and d.col >= 1
    if result.ok and result.runbook is not None:
        with contextlib.suppress(PlanProblem):
            json.dumps(build_plan(result.runbook, resolve(result.runbook, {})))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash(data: bytes) -> None:
    result = parse_bytes(data, "random.md")
    assert result.runbook is not None or not result.ok
