"""Frozen dataclasses describing a parsed runbook.

Every element keeps its 1-based source line (and column where it helps) so that any
diagnostic, plan line or transcript event can point back at the Markdown a reviewer read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["error", "warning", "note"]
"""A note never fails a check: what runbook leaves to other tools, said once per file."""

SHELL_LANGUAGES = frozenset({"sh", "bash", "shell", "zsh"})
ALERT_KINDS = ("NOTE", "TIP", "IMPORTANT", "WARNING", "CAUTION")
PROMINENT_ALERTS = frozenset({"IMPORTANT", "WARNING", "CAUTION"})


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem found in a runbook, positioned for ``FILE:LINE:COL`` output."""

    line: int
    col: int
    severity: Severity
    message: str

    def format(self, path: str) -> str:
        return f"{path}:{self.line}:{self.col}: {self.severity}: {self.message}"


@dataclass(frozen=True)
class Amount:
    """A count of hosts, absolute (``3``) or relative to the target list (``25%``)."""

    value: int
    percent: bool = False

    def of(self, total: int, *, at_least_one: bool = False) -> int:
        """The absolute count for ``total`` hosts; percentages round down.

        ``at_least_one`` is for batch sizes, where a non-zero percentage of a small fleet
        must still make progress; a failure tolerance must not round up.
        """
        if not self.percent:
            return self.value
        count = total * self.value // 100
        return max(1, count) if at_least_one and self.value else count

    def __str__(self) -> str:
        return f"{self.value}%" if self.percent else str(self.value)


@dataclass(frozen=True)
class Duration:
    """A time span as written (``5m``) and in seconds."""

    text: str
    seconds: float

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Variable:
    """A variable declared under ``variables:`` in the front matter."""

    name: str
    line: int
    prompt: str | None = None
    description: str | None = None
    default: str | None = None
    choices: tuple[str, ...] = ()
    pattern: str | None = None
    required: bool = False
    secret: bool = False


@dataclass(frozen=True)
class Host:
    """One SSH target as written in ``hosts:`` or ``on:``: ``[user@]host[:port]`` or an alias."""

    spec: str
    hostname: str
    user: str | None = None
    port: int | None = None


@dataclass(frozen=True)
class HostGroup:
    name: str
    hosts: tuple[Host, ...]
    line: int


@dataclass(frozen=True)
class SSHDefaults:
    """Front matter ``ssh:`` defaults; OpenSSH config and agent supply everything else."""

    user: str | None = None
    port: int | None = None
    known_hosts: str | None = None


@dataclass(frozen=True)
class Webhook:
    """One ``notify:`` entry: where to POST, for which events, with which headers.

    ``url`` and header values are kept as written: their ``$VARS`` (often secrets) are
    expanded only when a message is sent, and never recorded.
    """

    url: str
    line: int
    col: int
    events: tuple[str, ...]
    headers: tuple[tuple[str, str], ...] = ()
    timeout: Duration = Duration("5s", 5.0)
    retries: int = 2
    name: str | None = None


@dataclass(frozen=True)
class Position:
    line: int
    col: int


@dataclass(frozen=True)
class BlockOptions:
    """The option map of one block, merged from ``#|`` lines and the info string."""

    name: str | None = None
    on: str = "local"
    serial: tuple[Amount, ...] = ()
    max_fail: Amount = Amount(0)
    confirm: str | None = None
    type_to_confirm: str | None = None
    timeout: Duration | None = None
    retries: int = 0
    retry_delay: Duration = Duration("5s", 5.0)
    capture: str | None = None
    continue_on_error: bool = False
    rollback: bool = False
    run: bool = True
    shell: str | None = None
    cwd: str | None = None
    manual: bool = False
    """Runme's ``excludeFromRunAll``: the block runs only when the operator chooses it."""
    background: bool = False
    """Runme's ``background``: started, then the run goes on beside it; stopped (and its
    end recorded) when the run ends, however it ends."""
    bake: Duration | None = None
    """How long a rollout holds after each batch but the last, running the step's health checks."""
    health_interval: Duration = Duration("15s", 15.0)
    """How often a bake runs the health checks."""
    health: bool = False
    """A health check: besides its own place in the walk, every bake of its step runs it."""
    positions: dict[str, Position] = field(default_factory=dict, compare=False, repr=False)
    """Where each option was written, for diagnostics."""

    def where(self, option: str, default: Position) -> Position:
        return self.positions.get(option, default)


@dataclass(frozen=True)
class Block:
    """A fenced code block whose language is a shell: it can run."""

    name: str
    line: int
    col: int
    end_line: int
    language: str
    info: str
    code: str
    """The script as it will run: the fence body without the leading ``#|`` option lines."""
    code_line: int
    """Source line of the first line of ``code``."""
    options: BlockOptions
    step: int | None
    """1-based index of the step it belongs to; ``None`` outside any step (never runs)."""
    expected: str = ""
    """A prompt-style block's expected output (the lines between its ``$`` prompts): shown
    to the operator, never run."""
    lines: tuple[int, ...] = ()
    """A prompt-style block: the source line of each line of ``code`` (they are not
    consecutive). Empty otherwise: ``code`` starts at ``code_line``."""
    runme: bool = False
    """A Runme cell (in a Runme notebook, or with Runme's attributes): Runme's rules for
    prompts and outputs apply (``format/prompts.py``, ``format/runme.py``)."""
    keeps: tuple[str, ...] = ()
    """A Runme cell whose output a later block reads: the names it is kept under, as a
    ``capture`` is (``$__``, or the cell's own name)."""

    def source_line(self, offset: int) -> int:
        """The source line of line ``offset`` (0-based) of ``code``."""
        if self.lines:
            return self.lines[min(offset, len(self.lines) - 1)]
        return self.code_line + offset

    @property
    def runs(self) -> bool:
        """False for ``run: false`` blocks, which are documentation only."""
        return self.options.run

    @property
    def runs_forward(self) -> bool:
        """Runs on every forward pass: not documentation, not a rollback, not chosen-only."""
        return self.options.run and not self.options.rollback and not self.options.manual

    @property
    def position(self) -> Position:
        return Position(self.line, self.col)


@dataclass(frozen=True)
class CheckItem:
    """A task-list item (``- [ ] text``) the operator must tick or skip with a reason."""

    text: str
    line: int
    col: int
    checked_in_source: bool = False


@dataclass(frozen=True)
class Alert:
    """A GitHub alert (``> [!WARNING]``) shown before the step's blocks run."""

    kind: str
    text: str
    line: int

    @property
    def prominent(self) -> bool:
        return self.kind in PROMINENT_ALERTS


@dataclass(frozen=True)
class Step:
    """A ``##`` section: one checkpoint of the procedure."""

    index: int
    title: str
    slug: str
    line: int
    end_line: int
    checklist: tuple[CheckItem, ...] = ()
    alerts: tuple[Alert, ...] = ()
    blocks: tuple[Block, ...] = ()

    @property
    def forward_blocks(self) -> tuple[Block, ...]:
        return tuple(b for b in self.blocks if not b.options.rollback)

    def health_checks(self, baked: Block) -> tuple[Block, ...]:
        """What a bake of ``baked`` runs: the step's other forward ``health: true`` blocks."""
        return tuple(
            b
            for b in self.blocks
            if b.options.health and b.runs and not b.options.rollback and b.name != baked.name
        )

    @property
    def rollback_blocks(self) -> tuple[Block, ...]:
        return tuple(b for b in self.blocks if b.options.rollback)


@dataclass(frozen=True)
class Runbook:
    """A whole parsed runbook: front matter plus steps, with the exact source it came from."""

    path: str
    source: str
    sha256: str
    title: str
    title_line: int
    description: str | None = None
    owner: str | None = None
    variables: tuple[Variable, ...] = ()
    hosts: tuple[HostGroup, ...] = ()
    ssh: SSHDefaults = SSHDefaults()
    shell: str | None = None
    cwd: str | None = None
    notify: tuple[Webhook, ...] = ()
    on_failure: str | None = None
    """``abort`` or ``rollback``: what a run nobody answers does when a block fails."""
    steps: tuple[Step, ...] = ()
    loose_blocks: tuple[Block, ...] = ()
    """Shell blocks outside any ``##`` step: shown, never run."""

    def variable(self, name: str) -> Variable | None:
        return next((v for v in self.variables if v.name == name), None)

    def group(self, name: str) -> HostGroup | None:
        return next((g for g in self.hosts if g.name == name), None)

    @property
    def blocks(self) -> tuple[Block, ...]:
        """Every block of every step, in document order."""
        return tuple(b for s in self.steps for b in s.blocks)
