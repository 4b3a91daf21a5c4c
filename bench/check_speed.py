"""How fast is `runbook check` on a huge runbook, relative to markdown-it-py alone?

Generates a runbook of 5,000 steps and 10,000 shell blocks (with options, checklists,
alerts and prose), then times, in this one process and interleaved round by round:

- reference: markdown-it-py's own full parse of the same text (``MarkdownIt().parse``);
- runbook check --no-shell: the whole `runbook check` command (read, decode, front matter,
  Markdown, options, lint, output), called in-process through ``runbook.cli.main``;
- runbook check: the same, and each block parsed by its shell (``bash -n``: a process
  per distinct block, in parallel), timed once.

Two more rows show where the time goes: markdown-it-py with only the block rules (all
runbook needs), and the same with the garbage collector paused, as runbook's parser does;
the gap between that row and runbook check is runbook's own work.

Prints the best time of each and their ratio; the goal is runbook check --no-shell <= 2x the
reference (the shell parse is the shells' own time, reported beside it).
Usage: python bench/check_speed.py [--steps 5000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import markdown_it
from markdown_it import MarkdownIt

import runbook
from runbook.cli import main
from runbook.format.parser import _gc_paused


def generate(steps: int) -> str:
    """A runbook shaped like a real one, repeated: 2 blocks per step, half with options."""
    out = [
        "---",
        "title: Generated",
        "variables:",
        "  VERSION:",
        "    pattern: 'v\\d+'",
        "    default: v1",
        "hosts:",
        "  web: [web-1, web-2, web-3, web-4]",
        "---",
        "",
        "# Generated runbook",
        "",
    ]
    for i in range(steps):
        out += [
            f"## Step {i}: restart the *service* number {i}",
            "",
            f"Some prose about step {i} with a [link](https://example.com/{i}) and `code`.",
            "",
            f"- [ ] Check item {i}",
            "",
        ]
        if i % 10 == 0:
            out += ["> [!WARNING]", f"> Step {i} drains a host.", ""]
        out += [
            "```bash",
            "#| on: web",
            "#| serial: 1, 50%",
            f"#| confirm: Restart {i} at $VERSION?",
            "#| timeout: 5m",
            f'echo "restart {i} $VERSION"',
            "systemctl restart app",
            "```",
            "",
            "```sh",
            f"curl -fsS http://127.0.0.1:8080/health/{i}",
            "```",
            "",
        ]
    return "\n".join(out)


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(steps: int, rounds: int) -> None:
    text = generate(steps)
    md_full = MarkdownIt()
    md_block = MarkdownIt().disable(["inline", "text_join"])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "huge.md")
        path.write_text(text, encoding="utf-8")

        def check(*flags: str) -> None:
            sink = io.StringIO()
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                assert main(["check", *flags, str(path)]) == 0, sink.getvalue()

        def block_gc_paused() -> None:
            with _gc_paused():
                md_block.parse(text)

        rows: dict[str, list[float]] = {"full": [], "block": [], "block-nogc": [], "check": []}
        check("--no-shell")  # warm up, and prove the generated runbook is valid
        for _ in range(rounds):  # interleaved, so machine drift hits every row alike
            rows["full"].append(timed(lambda: md_full.parse(text)))
            rows["block"].append(timed(lambda: md_block.parse(text)))
            rows["block-nogc"].append(timed(block_gc_paused))
            rows["check"].append(timed(lambda: check("--no-shell")))
        # Each block parsed by its shell: a process per block, so once is enough.
        rows["shell"] = [timed(check)]
    ref = min(rows["full"])
    n_blocks = text.count("\n```bash\n") + text.count("\n```sh\n")
    print(
        f"python {platform.python_version()}, markdown-it-py {markdown_it.__version__},"
        f" runbook {runbook.__version__}"
    )
    print(f"input: {steps} steps, {n_blocks} blocks, {len(text.encode()) / 1e6:.1f} MB")
    print(f"best of {rounds} interleaved rounds, in one process:")
    for label, key in [
        ("markdown-it-py MarkdownIt().parse (reference)", "full"),
        ("markdown-it-py, block rules only", "block"),
        ("  the same, GC paused as runbook does", "block-nogc"),
        ("runbook check --no-shell FILE", "check"),
        ("runbook check FILE (+ bash -n of each block)", "shell"),
    ]:
        best = min(rows[key])
        print(f"  {label:<46} {best:7.3f} s  {best / ref:5.2f}x")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    run(args.steps, args.rounds)
