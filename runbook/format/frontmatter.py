"""Front matter schema: what each key may hold, checked strictly with positions.

A key that is a slip of one of ours is an error naming it; any other key belongs to another
tool (a docs site's ``sidebar_position``, Runme's ``runme``) and is left alone, listed once
in a note. Values are type-checked. The YAML
itself is read by :mod:`runbook.yamlstrict` (duplicate keys, positions, YAML 1.2 scalars).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runbook.format.hosts import LOCAL, parse_host
from runbook.format.model import (
    Diagnostic,
    Host,
    HostGroup,
    Position,
    Severity,
    SSHDefaults,
    Variable,
    Webhook,
)
from runbook.format.values import (
    GROUP,
    IDENTIFIER,
    ValueProblem,
    describe,
    did_you_mean,
    near,
    parse_bool,
    parse_port,
    parse_text,
)
from runbook.format.webhooks import read_notify
from runbook.format.yamlstrict import YList, YMap, load

TOP_LEVEL_KEYS = (
    "title",
    "description",
    "owner",
    "variables",
    "hosts",
    "ssh",
    "shell",
    "cwd",
    "notify",
    "on-failure",
)
VARIABLE_KEYS = ("prompt", "description", "default", "choices", "pattern", "required", "secret")
SSH_KEYS = ("user", "port", "known_hosts")


@dataclass
class FrontMatter:
    """What the front matter declares, plus the problems found while reading it."""

    title: str | None = None
    description: str | None = None
    owner: str | None = None
    variables: list[Variable] = field(default_factory=list)
    hosts: list[HostGroup] = field(default_factory=list)
    ssh: SSHDefaults = field(default_factory=SSHDefaults)
    shell: str | None = None
    cwd: str | None = None
    notify: list[Webhook] = field(default_factory=list)
    on_failure: str | None = None
    runme: bool = False
    """The front matter has Runme's ``runme:`` key: a Runme notebook."""
    foreign: list[tuple[str, Position]] = field(default_factory=list)
    """Keys of other tools, left alone."""
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def report(self, pos: Position, severity: Severity, message: str) -> None:
        self.diagnostics.append(Diagnostic(pos.line, pos.col, severity, message))


def load_front_matter(text: str, first_line: int) -> FrontMatter:
    """Read the YAML between the ``---`` fences; ``first_line`` is its first line in the file."""
    fm = FrontMatter()
    data, problems = load(text, first_line)
    fm.diagnostics.extend(problems)
    if data is None:
        return fm
    if not isinstance(data, YMap):
        fm.report(Position(first_line, 1), "error", "front matter must be a mapping of keys")
        return fm
    _read_top(data, fm)
    return fm


def _read_top(data: YMap, fm: FrontMatter) -> None:
    readers: dict[str, Callable[[Any, Position, FrontMatter], None]] = {
        "title": lambda v, p, f: setattr(f, "title", _text(v, p, f, "title")),
        "description": lambda v, p, f: setattr(f, "description", _text(v, p, f, "description")),
        "owner": lambda v, p, f: setattr(f, "owner", _text(v, p, f, "owner")),
        "shell": lambda v, p, f: setattr(f, "shell", _text(v, p, f, "shell")),
        "cwd": lambda v, p, f: setattr(f, "cwd", _text(v, p, f, "cwd")),
        "variables": _read_variables,
        "hosts": _read_hosts,
        "ssh": _read_ssh,
        "notify": lambda v, p, f: setattr(f, "notify", read_notify(v, p, f.report)),
        "on-failure": _read_on_failure,
    }
    for key, value in data.items():
        kpos, vpos = data.key_pos[key], data.value_pos[key]
        if key in readers:
            readers[key](value, vpos, fm)
        elif key == "runme":  # a Runme notebook: its cells run with Runme's semantics
            fm.runme = True
        elif (close := near(key, TOP_LEVEL_KEYS)) is not None:
            fm.report(kpos, "error", f"unknown front matter key `{key}` (did you mean `{close}`?)")
        else:
            fm.foreign.append((key, kpos))


def _text(value: Any, pos: Position, fm: FrontMatter, what: str) -> str | None:
    if value is None:
        return None  # `description:` left empty is simply not set
    try:
        return parse_text(value)
    except ValueProblem as e:
        fm.report(pos, "error", f"`{what}`: {e}")
        return None


def _expect_map(value: Any, pos: Position, fm: FrontMatter, what: str) -> YMap | None:
    if isinstance(value, YMap):
        return value
    if value is not None:
        fm.report(pos, "error", f"`{what}` must be a mapping, got {describe(value)}")
    return None


def _read_variables(value: Any, pos: Position, fm: FrontMatter) -> None:
    data = _expect_map(value, pos, fm, "variables")
    if data is None:
        return
    for name, spec in data.items():
        kpos = data.key_pos[name]
        if not IDENTIFIER.match(name):
            fm.report(
                kpos, "error", f"variable name `{name}` must be a shell identifier like DEPLOY_ENV"
            )
            continue
        if spec is None:
            spec = YMap(data.value_pos[name])
        if not isinstance(spec, YMap):
            fm.report(
                data.value_pos[name],
                "error",
                f"variable `{name}` must be a mapping of settings ({', '.join(VARIABLE_KEYS)})",
            )
            continue
        variable = _read_variable(name, kpos, spec, fm)
        if variable is not None:
            fm.variables.append(variable)


def _read_variable(name: str, kpos: Position, spec: YMap, fm: FrontMatter) -> Variable | None:
    fields: dict[str, Any] = {}
    ok = True

    def problem(key: str, message: str, at: Position | None = None) -> None:
        nonlocal ok
        ok = False
        where = at or spec.value_pos.get(key, kpos)
        fm.report(where, "error", f"variable `{name}`: {message}")

    for key, value in spec.items():
        if key not in VARIABLE_KEYS:
            hint = did_you_mean(key, VARIABLE_KEYS)
            problem(key, f"unknown setting `{key}`{hint}", spec.key_pos[key])
            continue
        try:
            if key in ("required", "secret"):
                fields[key] = parse_bool(value)
            elif key == "choices":
                if not isinstance(value, YList) or not value:
                    raise ValueProblem(f"expected a non-empty list, got {describe(value)}")
                fields[key] = tuple(parse_text(c) for c in value)
            else:
                fields[key] = parse_text(value)
        except ValueProblem as e:
            problem(key, f"`{key}`: {e}")
    if "pattern" in fields:
        try:
            re.compile(fields["pattern"])
        except (re.error, OverflowError, RecursionError, ValueError) as e:
            problem("pattern", f"`pattern` is not a valid regular expression: {e}")
            fields.pop("pattern")
    default = fields.get("default")
    if default is not None:
        if fields.get("secret"):
            problem(
                "default", "a secret must not have a default: it would sit in the runbook in clear"
            )
        if fields.get("choices") and default not in fields["choices"]:
            problem("default", f"default `{default}` is not one of the choices")
        if "pattern" in fields and not re.fullmatch(fields["pattern"], default):
            problem("default", f"default `{default}` does not match the pattern")
    if not ok:
        return None
    return Variable(name=name, line=kpos.line, **fields)


def _read_hosts(value: Any, pos: Position, fm: FrontMatter) -> None:
    data = _expect_map(value, pos, fm, "hosts")
    if data is None:
        return
    for name, members in data.items():
        kpos, vpos = data.key_pos[name], data.value_pos[name]
        if not GROUP.match(name):
            fm.report(kpos, "error", f"host group name `{name}` must be a simple name like web")
            continue
        if name == LOCAL:
            fm.report(kpos, "error", "`local` is reserved for the operator's machine")
            continue
        if isinstance(members, str):
            items: list[tuple[Any, Position]] = [(m, vpos) for m in members.split(",")]
        elif isinstance(members, YList):
            items = list(zip(members, members.item_pos, strict=True))
        else:
            items = []
        if not items:
            got = describe(members)
            fm.report(
                vpos, "error", f"host group `{name}` must be a non-empty list of hosts, got {got}"
            )
            continue
        hosts: list[Host] = []
        for item, ipos in items:
            try:
                host = parse_host(parse_text(item))
            except ValueProblem as e:
                fm.report(ipos, "error", f"host group `{name}`: {e}")
                continue
            if any(h.spec == host.spec for h in hosts):
                fm.report(ipos, "error", f"host group `{name}` lists `{host.spec}` twice")
                continue
            hosts.append(host)
        fm.hosts.append(HostGroup(name=name, hosts=tuple(hosts), line=kpos.line))


def _read_on_failure(value: Any, pos: Position, fm: FrontMatter) -> None:
    text = _text(value, pos, fm, "on-failure")
    if text is not None and text not in ("abort", "rollback"):
        fm.report(pos, "error", f"`on-failure` is `abort` or `rollback`, not `{text}`")
    elif text is not None:
        fm.on_failure = text


def _read_ssh(value: Any, pos: Position, fm: FrontMatter) -> None:
    data = _expect_map(value, pos, fm, "ssh")
    if data is None:
        return
    fields: dict[str, Any] = {}
    for key, v in data.items():
        vpos = data.value_pos[key]
        if key not in SSH_KEYS:
            hint = did_you_mean(key, SSH_KEYS)
            fm.report(data.key_pos[key], "error", f"unknown `ssh` setting `{key}`{hint}")
        elif key == "port":
            try:
                fields["port"] = parse_port(v)
            except ValueProblem as e:
                fm.report(vpos, "error", f"`ssh.port`: {e}")
        else:
            text = _text(v, vpos, fm, f"ssh.{key}")
            if text is not None:
                fields[key] = text
    fm.ssh = SSHDefaults(**fields)
