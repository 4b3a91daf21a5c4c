"""The post-mortem report: safe to paste, folded, capped, honest about gaps."""

from __future__ import annotations

import re
from pathlib import Path

from runbook import launch
from runbook.engine.operator import HeadlessOperator
from runbook.record.report import render_run

NOISY = r"""## Noisy

```sh
printf '\033[1;31mred\033[0m and a bell\a and ``` and ````` fences\n'
printf 'tab\there\r\n'
i=0; while [ $i -lt 100 ]; do echo "line $i"; i=$((i+1)); done
```

## Huge

```sh
head -c 200000 /dev/zero | tr '\0' 'y'
printf '\nthe end\n'
```

## Broken

```sh
printf 'bad \377 byte\n'
exit 2
```
"""


def run(tmp_path: Path, text: str) -> launch.Finished:
    book = tmp_path / "book.md"
    book.write_text(text)
    return launch.run(
        str(book),
        assignments=(),
        runs=tmp_path / "runs",
        argv=[],
        announce=lambda _: None,
        operator=HeadlessOperator(yes=True),
    )


def test_report_of_noisy_output(tmp_path: Path) -> None:
    done = run(tmp_path, NOISY)
    assert done.outcome.result == "aborted"
    report = render_run(done.transcript)
    assert "\x1b" not in report and "\a" not in report
    assert "red and a bell\u2407 and ``` and ````` fences" in report
    fences = re.findall(r"^(`{3,})text$", report, re.M)
    assert "``````" in fences, "a fence longer than the five backticks inside"
    assert "<summary>Output: 852 bytes, 102 lines.</summary>" in report
    assert (
        "<summary>Output: 200,009 bytes, 2 lines. Showing the first and last 32 KiB;"
        " the 134,473 bytes between are in the transcript.</summary>"
    ) in report
    assert "the end" in report
    assert "bad \ufffd byte" in report
    assert "Output: 11 bytes, 1 line. Not valid UTF-8" in report
    assert "| 3 | `broken-1` | local |" in report
    assert "failure: abort (no operator to decide (headless run)) by auto" in report
    assert "| Result | **aborted**: broken-1 failed (exit 2) |" in report
    assert "**INCOMPLETE**" not in report


def test_report_header_and_checklist(tmp_path: Path) -> None:
    done = run(tmp_path, "## Check\n\n- [ ] Ticket | approved\n\n```sh\necho ok\n```\n")
    report = render_run(done.transcript)
    assert "- [x] Ticket | approved (auto)" in report
    assert f"| Run | `{done.transcript.parent.name}` |" in report
    assert "| Transcript | `transcript.jsonl` intact (" in report
    assert f"| Last line SHA-256 | `{done.last_hash}` |" in report


INCIDENT = """\
---
variables:
  VERSION:
    default: v1.4.2
  REGION:
    prompt: Region
  TOKEN:
    secret: true
---
# Ship it

## Deploy

```sh {name=deploy confirm="Deploy $VERSION to $REGION?"}
echo "deploying $VERSION"
```

```sh {name=deploy-undo rollback=true}
echo undo
```

## Check

```sh {name=check capture=STATE}
echo degraded
exit 1
```

## Announce

```sh {name=announce}
echo never
```
"""


def test_the_report_an_incident_lead_reads_first(tmp_path: Path) -> None:
    """Variables and where they came from, each gate's question and hosts, a declined
    rollback block, the steps that never ran, in time order; valid tables on GitHub."""
    from markdown_it import MarkdownIt

    from runbook.engine.operator import Decision, ScriptedOperator

    book = tmp_path / "book.md"
    book.write_text(INCIDENT)
    operator = ScriptedOperator(
        [
            ("confirm", True),
            ("choose", Decision("rollback")),
            ("confirm", False),  # deploy-undo: No
            ("choose", Decision("skip", "undo by hand")),
        ]
    )
    done = launch.run(
        str(book),
        assignments=["REGION=eu-west-1", "TOKEN=s3cr3t-t0ken"],
        runs=tmp_path / "runs",
        argv=["runbook", "run", str(book)],
        announce=lambda _: None,
        operator=operator,
    )
    assert done.outcome.result == "rollback-incomplete"
    report = render_run(done.transcript)
    sections = re.split(r"^## ", report, flags=re.M)
    titles = [s.split("\n", 1)[0] for s in sections[1:]]
    assert titles == ["Variables", "Timeline", "1. Deploy", "2. Check", "Rollback", "Not run"]
    variables = sections[1]
    assert "| `VERSION` | v1.4.2 | default |" in variables
    assert "| `REGION` | eu-west-1 | --var |" in variables
    assert "| `TOKEN` | ******** | --var |" in variables and "s3cr3t" not in report
    deploy = sections[3]
    assert "confirm: “Deploy v1.4.2 to eu-west-1?” (locally) yes by operator" in deploy
    rollback = sections[5]
    assert "“Run rollback block deploy-undo locally?" in rollback
    assert "`deploy-undo` skipped by operator: undo by hand" in rollback
    assert "- 3. Announce" in sections[6]
    assert report.count('echo "deploying $VERSION"') == 1
    html = MarkdownIt("commonmark").enable("table").render(report)
    empty_row = re.compile(r"<tr>\s*(?:<t[hd]>\s*</t[hd]>\s*)+</tr>")
    assert not empty_row.search(html), "a table row with nothing in it"
