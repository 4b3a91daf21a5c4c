"""Strict YAML front matter: duplicate keys, unknown keys and mistyped values are errors.

PyYAML silently keeps the last of two equal keys, so the loader is subclassed to report
them, and every mapping remembers where its keys and values were written.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from runbook.hosts import LOCAL, parse_host
from runbook.model import Diagnostic, Host, HostGroup, Position, Severity, SSHDefaults, Variable
from runbook.values import (
    IDENTIFIER,
    NAME,
    ValueProblem,
    did_you_mean,
    parse_bool,
    parse_text,
)

TOP_LEVEL_KEYS = ("title", "description", "owner", "variables", "hosts", "ssh", "shell", "cwd")
RUNME_KEYS = ("runme", "skipPrompts", "terminalRows", "category", "tag")
VARIABLE_KEYS = ("prompt", "description", "default", "choices", "pattern", "required", "secret")
SSH_KEYS = ("user", "port", "known_hosts")


class YMap(dict[Any, Any]):
    """A YAML mapping that remembers the file position of each key and value."""

    def __init__(self, pos: Position) -> None:
        super().__init__()
        self.pos = pos
        self.key_pos: dict[Any, Position] = {}
        self.value_pos: dict[Any, Position] = {}


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that builds :class:`YMap` and records duplicate keys instead of dropping them."""

    line_offset = 0

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.problems: list[Diagnostic] = []

    def _pos(self, node: yaml.Node) -> Position:
        return Position(node.start_mark.line + 1 + self.line_offset, node.start_mark.column + 1)

    def construct_ymap(self, node: yaml.MappingNode) -> Any:
        data = YMap(self._pos(node))
        yield data
        explicit = {id(k) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"}
        seen: set[Any] = set()
        self.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                self.problems.append(
                    Diagnostic(*_tuple(self._pos(key_node)), "error", "a mapping key must be text")
                )
                continue
            if id(key_node) in explicit and key in seen:
                first = data.key_pos[key]
                self.problems.append(
                    Diagnostic(
                        *_tuple(self._pos(key_node)),
                        "error",
                        f"duplicate key `{key}` (first set on line {first.line});"
                        " YAML would silently keep only this one",
                    )
                )
            if id(key_node) in explicit:
                seen.add(key)
            data[key] = self.construct_object(value_node, deep=True)
            data.key_pos[key] = self._pos(key_node)
            data.value_pos[key] = self._pos(value_node)


_StrictLoader.add_constructor("tag:yaml.org,2002:map", _StrictLoader.construct_ymap)


def _tuple(p: Position) -> tuple[int, int]:
    return p.line, p.col


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
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def report(self, pos: Position, severity: Severity, message: str) -> None:
        self.diagnostics.append(Diagnostic(pos.line, pos.col, severity, message))


def load_front_matter(text: str, first_line: int) -> FrontMatter:
    """Parse the YAML between the ``---`` fences; ``first_line`` is its first line in the file."""
    fm = FrontMatter()
    try:
        loader = _StrictLoader(text)
    except yaml.reader.ReaderError as e:
        fm.diagnostics.append(_unreadable(e, text, first_line))
        return fm
    loader.line_offset = first_line - 1
    try:
        data = loader.get_single_data()
    except yaml.reader.ReaderError as e:
        fm.diagnostics.append(_unreadable(e, text, first_line))
        return fm
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + first_line if mark else first_line
        col = mark.column + 1 if mark else 1
        what = e.problem or e.context or "syntax error"
        if e.context and e.problem and e.context_mark:
            opened = e.context_mark
            what += f" {e.context} (at line {opened.line + first_line}:{opened.column + 1})"
        fm.diagnostics.append(
            Diagnostic(line, col, "error", f"invalid YAML in front matter: {what}")
        )
        return fm
    except yaml.YAMLError as e:
        fm.diagnostics.append(
            Diagnostic(first_line, 1, "error", f"invalid YAML in front matter: {e}")
        )
        return fm
    finally:
        loader.dispose()
    fm.diagnostics.extend(loader.problems)
    if data is None:
        return fm
    if not isinstance(data, YMap):
        fm.report(Position(first_line, 1), "error", "front matter must be a mapping of keys")
        return fm
    _read_top(data, fm)
    return fm


def _unreadable(e: yaml.reader.ReaderError, text: str, first_line: int) -> Diagnostic:
    """YAML refuses control characters before parsing; point at the first one."""
    before = text[: e.position]
    line = before.count("\n") + first_line
    col = e.position - (before.rfind("\n") + 1) + 1
    char = e.character if isinstance(e.character, int) else ord(e.character)
    return Diagnostic(
        line, col, "error", f"invalid YAML in front matter: character U+{char:04X} is not allowed"
    )


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
    }
    for key, value in data.items():
        kpos, vpos = data.key_pos[key], data.value_pos[key]
        if key in readers:
            readers[key](value, vpos, fm)
        elif key in RUNME_KEYS:
            fm.report(kpos, "warning", f"Runme front matter key `{key}` is accepted and ignored")
        else:
            hint = did_you_mean(str(key), TOP_LEVEL_KEYS)
            fm.report(kpos, "error", f"unknown front matter key `{key}`{hint}")


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
    if value is None:
        return None
    fm.report(pos, "error", f"`{what}` must be a mapping, got {_kind(value)}")
    return None


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return repr(value)


def _read_variables(value: Any, pos: Position, fm: FrontMatter) -> None:
    data = _expect_map(value, pos, fm, "variables")
    if data is None:
        return
    for name, spec in data.items():
        kpos = data.key_pos[name]
        if not isinstance(name, str) or not IDENTIFIER.match(name):
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

    def problem(key: str, message: str) -> None:
        nonlocal ok
        ok = False
        fm.report(spec.value_pos.get(key, kpos), "error", f"variable `{name}`: {message}")

    for key, value in spec.items():
        if key not in VARIABLE_KEYS:
            hint = did_you_mean(str(key), VARIABLE_KEYS)
            fm.report(
                spec.key_pos[key], "error", f"variable `{name}`: unknown setting `{key}`{hint}"
            )
            ok = False
            continue
        try:
            if key in ("required", "secret"):
                fields[key] = parse_bool(value)
            elif key == "choices":
                if not isinstance(value, list) or not value:
                    raise ValueProblem("`choices` must be a non-empty list")
                fields[key] = tuple(parse_text(c) for c in value)
            else:
                fields[key] = parse_text(value)
        except ValueProblem as e:
            problem(key, f"`{key}`: {e}")
    if "pattern" in fields:
        try:
            re.compile(fields["pattern"])
        except re.error as e:
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
        if not isinstance(name, str) or not NAME.match(name) or "," in name:
            fm.report(kpos, "error", f"host group name `{name}` must be a simple name like web")
            continue
        if name == LOCAL:
            fm.report(kpos, "error", "`local` is reserved for the operator's machine")
            continue
        items = members.split(",") if isinstance(members, str) else members
        if not isinstance(items, list) or not items:
            fm.report(vpos, "error", f"host group `{name}` must be a non-empty list of hosts")
            continue
        hosts: list[Host] = []
        for item in items:
            try:
                host = parse_host(parse_text(item))
            except ValueProblem as e:
                fm.report(vpos, "error", f"host group `{name}`: {e}")
                continue
            if any(h.spec == host.spec for h in hosts):
                fm.report(vpos, "error", f"host group `{name}` lists `{host.spec}` twice")
                continue
            hosts.append(host)
        fm.hosts.append(HostGroup(name=name, hosts=tuple(hosts), line=kpos.line))


def _read_ssh(value: Any, pos: Position, fm: FrontMatter) -> None:
    data = _expect_map(value, pos, fm, "ssh")
    if data is None:
        return
    fields: dict[str, Any] = {}
    for key, v in data.items():
        vpos = data.value_pos[key]
        if key not in SSH_KEYS:
            hint = did_you_mean(str(key), SSH_KEYS)
            fm.report(data.key_pos[key], "error", f"unknown `ssh` setting `{key}`{hint}")
        elif key == "port":
            if isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 65535:
                fields["port"] = v
            else:
                fm.report(vpos, "error", f"`ssh.port` must be a port number 1-65535, got {v!r}")
        else:
            text = _text(v, vpos, fm, f"ssh.{key}")
            if text is not None:
                fields[key] = text
    fm.ssh = SSHDefaults(**fields)
