"""runbook: step through Markdown runbooks, locally or over SSH, with an audit transcript.

The core (parser, model, lint, plan) is UI-free: importing it never imports ``textual``.
"""

from __future__ import annotations

__version__ = "0.1.0"

import warnings

from runbook.format.model import Block, CheckItem, Diagnostic, Runbook, Step, Variable
from runbook.format.parser import ParseResult, parse_file, parse_text

# asyncssh (2.24.1, the newest) still names DSA types, which cryptography 51 deprecates:
# five warnings at its import, printed over the operator's terminal and the console. They
# are about asyncssh's own code; runbook offers and accepts whatever keys OpenSSH would.
warnings.filterwarnings("ignore", message="DSA is deprecated", module="asyncssh")

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
