"""The documentation covers what the code accepts, and CI runs the README's test command."""

from __future__ import annotations

import re

import pytest

from conftest import ROOT, RUNBOOKS
from runbook.cli import COMMANDS
from runbook.format.frontmatter import SSH_KEYS, TOP_LEVEL_KEYS, VARIABLE_KEYS
from runbook.format.options import OPTIONS, RUNME_ATTRIBUTES, RUNME_MAPPED
from runbook.format.parser import Slugger, plain_title
from runbook.format.webhooks import EVENTS, WEBHOOK_KEYS

FORMAT = (ROOT / "docs" / "format.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("key", sorted(OPTIONS))
def test_every_block_option_is_documented(key: str) -> None:
    assert f"| `{key}` |" in FORMAT


@pytest.mark.parametrize(
    "key", sorted({*TOP_LEVEL_KEYS, *SSH_KEYS, *VARIABLE_KEYS, *RUNME_MAPPED, *RUNME_ATTRIBUTES})
)
def test_every_key_and_attribute_is_documented(key: str) -> None:
    assert re.search(rf"`{re.escape(key)}`|\b{re.escape(key)}:", FORMAT), key


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_is_documented(command: str) -> None:
    assert f"runbook {command}" in README
    assert f"## `runbook {command}`" in FORMAT


@pytest.mark.parametrize("word", sorted({*WEBHOOK_KEYS, *EVENTS}))
def test_every_webhook_setting_and_event_is_documented(word: str) -> None:
    assert f"| `{word}` |" in FORMAT


@pytest.mark.parametrize(
    "doc", ["README.md", *(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]
)
def test_links_to_files_point_at_files(doc: str) -> None:
    page = ROOT / doc
    targets = re.findall(r"\]\(([^)#:\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8"))
    missing = [t for t in targets if not (page.parent / t).exists()]
    assert not missing, missing


def test_every_example_is_listed_in_the_readme() -> None:
    for path in RUNBOOKS.glob("*.md"):
        assert f"`{path.name}`" in README


def test_ci_runs_the_readme_test_command() -> None:
    blocks = re.findall(r"```sh\n(.*?)\n```", README, re.S)
    test_command = next(b for b in blocks if "pytest" in b)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert test_command in ci.splitlines()


@pytest.mark.parametrize("doc", ["README.md", "docs/format.md", "docs/performance.md"])
def test_in_page_links_point_at_headings(doc: str) -> None:
    text = (ROOT / doc).read_text(encoding="utf-8")
    slugger = Slugger()
    anchors = {
        slugger.slug(plain_title(m.group(1))) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)
    }
    for link in re.findall(r"\]\(#([^)]+)\)", text):
        assert link in anchors, f"{doc}: #{link} matches no heading"
