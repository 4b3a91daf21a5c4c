"""Text for the console's widgets that can neither drive the terminal nor be read as markup.

A prompt may hold a captured value, a problem a host's words, a heading a block's name:
Rich keeps ESC and other controls inside ``Text`` (the terminal then obeys them) and a
``str`` given to a Label is parsed as markup (``[s]`` would strike the rest through).
"""

from __future__ import annotations

from rich.text import Text

from runbook.format.screen import inert


def plain(text: str, style: str = "") -> Text:
    """``text`` shown as written, its control characters escaped (``\\x1b``), no markup."""
    return Text(inert(text), style=style)
