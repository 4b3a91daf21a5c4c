"""runbook: step through Markdown runbooks, locally or over SSH, with an audit transcript.

The core (parser, model, lint, plan) is UI-free: importing it never imports ``textual``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from runbook.format.model import Block, CheckItem, Diagnostic, Runbook, Step, Variable
from runbook.format.parser import ParseResult, parse_file, parse_text

__all__ = [
    "Block",
    "CheckItem",
    "Diagnostic",
    "ParseResult",
    "Runbook",
    "Step",
    "Variable",
    "__version__",
    "parse_file",
    "parse_text",
]
