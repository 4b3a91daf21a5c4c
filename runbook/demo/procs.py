"""Which process groups a command and its descendants are in, from ``/proc``.

A command run through the SSH transport moves itself into a new session
(``setsid -w``), out of the process group the demo server started: to stop it, the
server must find its descendants. Without ``/proc`` only the groups it started are known.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

PROC = Path("/proc")


def _table() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, process group, state) for every process, if ``/proc`` says."""
    table: dict[int, tuple[int, int, str]] = {}
    if not PROC.is_dir():
        return table
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command name (in parentheses) may hold spaces: split after its last ")".
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            table[int(entry.name)] = (int(fields[1]), int(fields[2]), fields[0])
        except (OSError, IndexError, ValueError):
            continue
    return table


def process_groups(pids: Iterable[int]) -> set[int]:
    """The groups of ``pids`` (each a group leader) and of all their live descendants."""
    roots = set(pids)
    table = _table()
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(pid)
    groups = set(roots)
    todo = list(roots)
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            _, group, state = table[child]
            if state not in ("Z", "X"):
                groups.add(group)
            todo.append(child)
    return groups


def alive_groups(groups: set[int]) -> set[int]:
    """Those of ``groups`` that still have a live (not zombie) member."""
    table = _table()
    if table:
        return {g for _, g, state in table.values() if g in groups and state not in ("Z", "X")}
    alive = set()
    for group in groups:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            continue
        except OSError:
            pass
        alive.add(group)
    return alive
