"""The console's keys, for the help dialog: one table, drawn at once."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

KEYS = [
    ("n", "run the next block (the highlighted card)"),
    ("space", "tick the highlighted checklist item"),
    ("s", "skip the next block, or the checklist item, with a reason"),
    ("S", "skip the rest of the step, with a reason"),
    ("a", "add a note to the transcript"),
    ("i / ctrl+c", "interrupt the running block (asks first)"),
    ("ctrl+p", "command palette: go to any step, run a chosen block, re-run one"),
    ("o", "the run's report, as `runbook transcript render` writes it"),
    ("tab", "move between the outline, the step and the output tabs"),
    (
        "← / →",
        "in the output: scroll a long line sideways (or shift+wheel)",
    ),
    ("q / ctrl+q", "quit (while the run is in progress: asks, stops it, records an abort)"),
]


def help_text() -> Group:
    """The keys, as a table: drawn at once (a Markdown table took ~45 ms)."""
    table = Table(box=None, show_header=False, padding=(0, 2, 0, 0))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    for key, does in KEYS:
        table.add_row(key, does)
    rules = Text(
        "\nEvery gate defaults to No; a typed confirmation needs the exact text; in a failure"
        " menu Enter does nothing: each choice takes its letter. Every answer, tick, skip,"
        " note, command, output and exit code is in the transcript named in the header."
    )
    return Group(table, rules)
