"""``runbook demo``: example runbooks against an embedded SSH fleet on loopback."""

from __future__ import annotations

from runbook.demo.fleet import DemoFleet
from runbook.demo.sandbox import DemoFleetError

__all__ = ["DemoFleet", "DemoFleetError"]
