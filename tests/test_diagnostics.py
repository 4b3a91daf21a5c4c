"""Every broken runbook in fixtures/broken.txt yields exactly its listed diagnostics.

Fixture format (markdown-it-py's): a title line, ``.``, the runbook, ``.``, the
expected ``LINE:COL: severity: message`` lines, ``.``.
"""

from __future__ import annotations

import pytest
from markdown_it.utils import read_fixture_file

from conftest import FIXTURES
from runbook.format.parser import parse_text

CASES = read_fixture_file(FIXTURES / "broken.txt")


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40
    titles = [title for _, title, _, _ in CASES]
    assert len(set(titles)) == len(titles), "fixture titles must be unique"


@pytest.mark.parametrize(("line", "title", "source", "expected"), CASES, ids=[c[1] for c in CASES])
def test_diagnostic(line: int, title: str, source: str, expected: str) -> None:
    result = parse_text(source, "case.md")
    got = "".join(f"{d.line}:{d.col}: {d.severity}: {d.message}\n" for d in result.diagnostics)
    assert got == expected, f"fixture at broken.txt:{line}"
    assert got, "every fixture must be broken in some way"


def test_a_value_cut_by_a_yaml_comment_is_a_warning() -> None:
    """`URL of #deploys` is `URL of` to YAML; a real comment (`# why`) is left alone."""
    text = (
        "---\nvariables:\n  HOOK:\n    prompt: Incoming-webhook URL of #deploys\n"
        "    secret: true   # a webhook URL is a credential\n  T:\n    prompt: 'Ticket #42'\n"
        "---\n# T\n\n## S\n\n```sh\necho $HOOK $T\n```\n"
    )
    found = [(d.line, d.col, d.severity, d.message) for d in parse_text(text, "b.md").diagnostics]
    assert len(found) == 1, found
    line, col, severity, message = found[0]
    assert (line, col, severity) == (4, 37, "warning")
    assert "`prompt:` ends before `#deploys`" in message and "`Incoming-webhook URL of`" in message
