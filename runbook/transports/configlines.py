"""The operator's OpenSSH config, each line split once a process instead of once a host.

asyncssh parses the config files again for every host (their ``Host`` and ``Match`` blocks
depend on it), and splits every line, even those of blocks that do not match, with
``shlex.split``: pure Python, some 20 us a line. With a 363-line config that is 6.7 ms of
CPU a host on the event loop, 0.7 s for a 100-host batch before its last host can start
to connect (``bench/ssh_options_cost.py --pad 70``). How a line splits depends on the line
alone, so the split is kept, keyed by the line's text; the files are still read, and every
line still evaluated, for every host, so an edit between two connections is seen as
before. asyncssh has no hook for it: its parser's module global ``shlex`` is given a
stand-in whose ``split`` remembers. If a release of asyncssh stops using that name, the
stand-in is not installed and the config is split as asyncssh does it.
"""

from __future__ import annotations

import functools
import shlex
from typing import Any

import asyncssh.config

MAX_LINES = 16384
"""Distinct lines kept; a config longer than this is still right, only split again."""


@functools.lru_cache(maxsize=MAX_LINES)
def _split(line: str) -> tuple[str, ...]:
    return tuple(shlex.split(line))  # a ValueError is raised again each time, never kept


class _Shlex:
    """``shlex`` as asyncssh's config parser sees it: ``split(line)`` remembers."""

    def split(self, s: str, *args: Any, **kwargs: Any) -> list[str]:
        if args or kwargs or not isinstance(s, str):
            return shlex.split(s, *args, **kwargs)
        return list(_split(s))  # a list of its own: the caller may change it

    def __getattr__(self, name: str) -> Any:
        return getattr(shlex, name)


def split_once() -> None:
    """Install the stand-in in asyncssh's config parser (once; idempotent)."""
    if getattr(asyncssh.config, "shlex", None) is shlex:
        asyncssh.config.shlex = _Shlex()  # type: ignore[attr-defined,assignment]
