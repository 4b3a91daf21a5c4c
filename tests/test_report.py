"""The post-mortem report: safe to paste, folded, capped, honest about gaps."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

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


def _event(type_: str, **fields: Any) -> dict[str, Any]:
    return {"type": type_, "time": "2026-12-08T03:00:00Z", **fields}


def _rollout(attempt: int, step: int = 1) -> list[dict[str, Any]]:
    """A block on two hosts in two batches, baked after the first: the engine's shapes."""
    start = {
        "block": "deploy",
        "step": step,
        "attempt": attempt,
        "command": "deploy",
        "shell": "sh",
    }
    end = {"block": "deploy", "attempt": attempt, "exit": 0, "status": "exit 0", "duration": 0.1}
    tag = {"bake": {"block": "deploy", "round": 1, "batch": 1}}
    health = {"block": "health", "step": 1, "attempt": 1, "host": "a", "target": "a", **tag}
    return [
        _event("block.start", **start, host="a", target="a"),
        _event("block.end", **end, host="a"),
        _event("bake.start", block="deploy", batch=1, of=2, hosts=["a"], seconds=60, interval=15),
        _event("block.start", **health, command="curl", shell="sh"),
        _event("block.end", **health, exit=0, status="exit 0", duration=0.1),
        _event("bake.end", block="deploy", batch=1, result="ok", rounds=1, elapsed=60),
        _event("block.start", **start, host="b", target="b"),
        _event("block.end", **end, host="b"),
        _event("block.done", block="deploy", ok=["a", "b"]),
    ]


def test_what_befalls_a_block_run_from_the_palette_is_told_in_its_own_step() -> None:
    """Run again from the palette while step 2 is open, a block's attempts, its bake and its
    skip all go under its own step 1, after what happened there first; the timeline gives
    each its block's step."""
    from runbook.record.report import _Report

    events = [_event("run.start", runbook={"title": "t"}, run="r")]
    events += [_event("step.enter", step=1, title="Deploy"), *_rollout(1)]
    events += [_event("step.done", step=1), _event("step.enter", step=2, title="Verify")]
    events += [_event("decision", block="deploy", kind="run-chosen", choice="run", by="op")]
    events += _rollout(2)[:6]  # the second bake, then the operator skips the rest
    events += [_event("block.skip", block="deploy", reason="enough", by="op")]
    events += [_event("run.end", result="ok", message="every step is done")]
    sections = {s.split("\n")[0]: s for s in _Report(events, []).render().split("\n## ")}
    deploy, verify = sections["1. Deploy"], sections["2. Verify"]
    assert deploy.count("### Bake of `deploy`") == 2 and "### `deploy` on a attempt 2" in deploy
    assert "`deploy` skipped by op: enough" in deploy
    assert "deploy" not in verify
    timeline = sections["Timeline"]
    assert "| 2 |" not in timeline and timeline.count("| 1 |") == 6  # 3 attempts, 2 bakes
    assert "| 1 | `deploy` |  | 03:00:00 | - | skipped | skipped by op: enough |" in timeline


def test_a_rollout_run_early_gives_its_bake_its_own_step_in_the_timeline() -> None:
    """A baked block of step 3, run from the palette while step 1 is open: told where it
    ran ("run early"), and its attempts and its bake both labelled step 3."""
    from runbook.record.report import _Report

    events = [_event("run.start", runbook={"title": "t"}, run="r")]
    events += [_event("step.enter", step=1, title="First"), *_rollout(1, step=3)]
    events += [_event("run.end", result="aborted", message="quit")]
    report = _Report(events, []).render()
    rows = [r for r in report.splitlines() if "`deploy`" in r and r.startswith("|")]
    assert len(rows) == 3 and all(r.startswith("| 3 |") for r in rows), rows
    assert "### `deploy` on a (of step 3, run early)" in report


def test_a_bake_during_a_rollback_is_labelled_so_in_the_timeline() -> None:
    from runbook.record.report import _Report

    events = [_event("run.start", runbook={"title": "t"}, run="r")]
    events += [_event("step.enter", step=1, title="Deploy")]
    events += [_event("rollback.start", reason="check failed"), *_rollout(1)]
    events += [_event("run.end", result="rolled-back", message="rolled back after: check")]
    rows = [r for r in _Report(events, []).render().splitlines() if "bake after batch" in r]
    assert len(rows) == 1 and rows[0].startswith("| rollback | `deploy` bake after batch 1/2"), rows
