"""Host specs, host groups, target resolution for ``on:`` and batching for ``serial:``."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from runbook.format.model import Amount, Host, HostGroup
from runbook.format.values import ValueProblem, did_you_mean, expand, parse_port

_HOST = re.compile(
    r"(?:(?P<user>[A-Za-z0-9_][A-Za-z0-9_.-]*)@)?"
    r"(?P<host>\[[0-9A-Fa-f:.%A-Za-z]+\]|[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?)"
    r"(?::(?P<port>[0-9]{1,5}))?\Z"
)

LOCAL = "local"
DEFAULT_FORKS = 50
"""How many hosts of a batch run at once unless --forks says otherwise."""


def parse_host(spec: str) -> Host:
    """``[user@]host[:port]`` (IPv6 in brackets) or an OpenSSH config alias."""
    m = _HOST.match(spec.strip())
    if not m:
        raise ValueProblem(f"`{spec}` is not a host: expected [user@]host[:port]")
    port = None
    if m.group("port") is not None:
        try:
            port = parse_port(m.group("port"))
        except ValueProblem:
            raise ValueProblem(
                f"`{spec}`: port {m.group('port')} is out of range 1-65535"
            ) from None
    return Host(
        spec=spec.strip(), hostname=m.group("host").strip("[]"), user=m.group("user"), port=port
    )


def looks_like_host(item: str) -> bool:
    """A target item that cannot be a group name: it has a user, a port or a domain."""
    return any(c in item for c in "@:.[")


def describe(hosts: Sequence[Host]) -> str:
    """``on web1, web2`` or ``locally``: where a block runs, for a person deciding."""
    return "on " + ", ".join(h.spec for h in hosts) if hosts else "locally"


def where(on: str, values: Mapping[str, str], groups: Sequence[HostGroup]) -> str:
    """:func:`describe` of what an ``on:`` resolves to now; ``on $IDLE (…)`` when it does
    not resolve (yet)."""
    try:
        return describe(resolve_targets(expand(on, dict(values)), groups))
    except ValueProblem as e:
        return f"on {on} (not resolved: {e})"


def resolve_targets(on: str, groups: Sequence[HostGroup]) -> tuple[Host, ...]:
    """The hosts an ``on:`` value (already expanded) names, in order, without repeats.

    ``local`` alone means the operator's machine and gives an empty tuple. Each
    comma-separated item is a group name, a host listed in some group, or a literal
    ``user@host:port``; a bare word that is none of these is a mistyped group.
    """
    items = [i.strip() for i in on.split(",")]
    if items == [LOCAL]:
        return ()
    by_name = {g.name: g for g in groups}
    known = {h.spec: h for g in groups for h in g.hosts}
    hosts: dict[str, Host] = {}
    for item in items:
        if not item:
            raise ValueProblem(f"`on: {on}` has an empty item")
        if item == LOCAL:
            raise ValueProblem("`local` cannot be combined with remote hosts in one block")
        if item in by_name:
            for h in by_name[item].hosts:
                hosts.setdefault(h.spec, h)
        elif item in known:
            hosts.setdefault(item, known[item])
        elif looks_like_host(item):
            hosts.setdefault(item, parse_host(item))
        else:
            hint = did_you_mean(item, [*by_name, *known])
            if not by_name:
                hint = " (the front matter has no `hosts:`)"
            raise ValueProblem(f"`on:` names `{item}`, which is no host group{hint}")
    return tuple(hosts.values())


def batches(hosts: Sequence[Host], serial: Sequence[Amount]) -> list[tuple[Host, ...]]:
    """Split hosts into rollout batches; the last size repeats until every host is covered.

    Percentages are of the whole target list (as Ansible's ``serial``), at least one host.
    """
    if not serial:
        return [tuple(hosts)] if hosts else []
    out: list[tuple[Host, ...]] = []
    start, i = 0, 0
    while start < len(hosts):
        size = max(1, serial[min(i, len(serial) - 1)].of(len(hosts), at_least_one=True))
        out.append(tuple(hosts[start : start + size]))
        start += size
        i += 1
    return out
