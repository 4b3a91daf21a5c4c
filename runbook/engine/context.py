"""What the engine's helpers (attempts, rollouts, bakes, questions) are handed instead of
the session: the runbook, the journal, the operator, the transports and the values."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runbook.engine.journal import Journal
from runbook.engine.operator import Operator
from runbook.engine.stopping import Stop
from runbook.format.model import Runbook
from runbook.transports.local import LocalTransport

if TYPE_CHECKING:
    from runbook.transports.ssh import SSHTransport


@dataclass
class Context:
    """One run's shared means; ``values`` grows as the run asks and captures."""

    rb: Runbook
    journal: Journal
    operator: Operator
    values: dict[str, str]
    interrupt: asyncio.Event
    """Set by Ctrl-C while blocks run: stops them."""
    stop: Stop
    """Set by SIGTERM and SIGHUP: nothing more starts, nothing more is asked."""
    transport: LocalTransport
    ssh: SSHTransport | None
    forks: int
    alert: Callable[..., None]
    """Tells the people watching of a failure at once (``Notices.send``)."""
    finished: dict[str, frozenset[str]] = field(default_factory=dict)
    """A resumed block re-run after a crash cut its rollout short: the hosts it had
    finished on, which the re-run (and the gates that name its hosts) leaves out."""
