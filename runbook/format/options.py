"""Block options from ``#|`` lines and from Runme-style info-string attributes.

Both forms feed one option map; an option given twice (in either form) is an error,
so what a reviewer reads in one place is never silently overridden by the other.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runbook.format.model import BlockOptions, Diagnostic, Position, Severity
from runbook.format.prompts import blank_quotes
from runbook.format.values import (
    IDENTIFIER,
    NAME,
    ValueProblem,
    did_you_mean,
    near,
    parse_amount,
    parse_bool,
    parse_count,
    parse_duration,
    parse_serial,
    parse_text,
)


def _name(value: object) -> str:
    text = parse_text(value).strip()
    if not NAME.match(text) or any(unicodedata.category(c) in _INVISIBLE for c in text):
        raise ValueProblem(
            f"`{text}` is not a valid name: a name has no spaces or control characters"
        )
    return text


def _identifier(value: object) -> str:
    text = parse_text(value).strip()
    if not IDENTIFIER.match(text):
        raise ValueProblem(f"`{text}` is not a variable name like FINGERPRINT")
    return text


def _positive_duration(value: object) -> Any:
    d = parse_duration(value)
    if d.seconds <= 0:
        raise ValueProblem("must be longer than 0s")
    return d


_INVISIBLE = frozenset({"Cf", "Zs", "Zl", "Zp"})
"""Format and space characters: `deploy` and `deploy\u200b` must not both be names."""

# option key -> (BlockOptions field, value parser)
OPTIONS: dict[str, tuple[str, Callable[[object], Any]]] = {
    "name": ("name", _name),
    "on": ("on", lambda v: parse_text(v).strip()),
    "serial": ("serial", parse_serial),
    "max-fail": ("max_fail", lambda v: parse_amount(v, allow_zero=True)),
    "confirm": ("confirm", parse_text),
    "type-to-confirm": ("type_to_confirm", parse_text),
    "timeout": ("timeout", _positive_duration),
    "retries": ("retries", parse_count),
    "retry-delay": ("retry_delay", parse_duration),
    "capture": ("capture", _identifier),
    "continue-on-error": ("continue_on_error", parse_bool),
    "rollback": ("rollback", parse_bool),
    "run": ("run", parse_bool),
    "shell": ("shell", parse_text),
    "cwd": ("cwd", parse_text),
    "bake": ("bake", _positive_duration),
    "health-interval": ("health_interval", _positive_duration),
    "health": ("health", parse_bool),
}
# Runme attributes with a meaning here.
RUNME_MAPPED: dict[str, tuple[str, Callable[[object], Any]]] = {
    "interpreter": ("shell", parse_text),
    "excludeFromRunAll": ("manual", parse_bool),
    "background": ("background", parse_bool),
}
# Runme's automatic cell id: Runme's bookkeeping, said nothing about.
RUNME_SILENT = frozenset({"id"})
# Every cell attribute Runme documents: docs/format.md says what runbook does with each.
RUNME_ATTRIBUTES = (
    "name",
    "id",
    "interpreter",
    "excludeFromRunAll",
    "background",
    "interactive",
    "promptEnv",
    "terminalRows",
    "closeTerminalOnSuccess",
    "mimeType",
    "category",
    "tag",
    "skipPrompts",
    "cwd",
)
KNOWN = (*OPTIONS, *RUNME_MAPPED)
_WORD = re.compile(r"(?:^|\s)([A-Za-z_][\w-]*)(?=[=:]|\s|$)")
# Attributes only Runme writes: a block that has one is a Runme cell (an `id` only when it
# is a ULID, as Runme's are: `id` alone is too common a word).
RUNME_ONLY = frozenset(RUNME_ATTRIBUTES) - {"name", "cwd", "id"}
_ULID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}\Z")
# Other tools' attributes, accepted in braces; any other unknown key there is an error, as
# a typo of ours (`comfrim`, `host=`) would silently drop a gate or a target.
OTHER_TOOLS = frozenset(
    {
        *RUNME_ATTRIBUTES,
        "openTerminalOnError",
        "ignore",
        "transform",
        "title",
        "filename",
        "file",
        "caption",
        "class",
        "lang",
        "showLineNumbers",
        "lineNumbers",
        "linenums",
        "linenos",
        "hl_lines",
        "highlight",
        "emphasize-lines",
        "copy",
        "noCopy",
        "mark",
        "ins",
        "del",
        "spinner",
    }
)


SYNONYMS = {
    "host": "on",
    "hosts": "on",
    "target": "on",
    "targets": "on",
    "prompt": "confirm",
    "dir": "cwd",
    "workdir": "cwd",
    "retry": "retries",
    "interpreter_args": "shell",
}
"""Words other tools use for one of our options: named in the error."""


def is_runme_cell(raw: list[RawOption]) -> bool:
    """Whether a block's attributes are ones only Runme writes."""
    return any(o.key in RUNME_ONLY or (o.key == "id" and _ULID.match(str(o.value))) for o in raw)


_KEY = re.compile(r"[A-Za-z_][\w.:/-]*\Z", re.ASCII)
"""What another tool's attribute looks like (``terminalRows``, ``runme.dev/id``)."""
_OPTION_LINE = re.compile(r"#\|\s?(.*)\Z")
_JSON_KEY = re.compile(r'"(?:[^"\\]|\\.)*"\s*:')
_KV = re.compile(r"""\s*([A-Za-z_][\w-]*)\s*=\s*("(?:[^"\\]|\\.)*"|'[^']*'|[^\s"']*)""")


@dataclass
class RawOption:
    key: str
    value: object
    pos: Position
    value_pos: Position | None = None
    """Where the value starts, when known: value diagnostics point there."""
    line_option: bool = False
    """From a ``#|`` line: runbook's own syntax, so an unknown key there is an error."""
    in_braces: bool = False
    """From ``{…}`` after the language: an unknown key there is an error unless another
    tool's (``OTHER_TOOLS``)."""

    @property
    def at_value(self) -> Position:
        return self.value_pos or self.pos


@dataclass
class BlockOptionsReader:
    """Collects raw options for one block, then validates them into :class:`BlockOptions`."""

    raw: list[RawOption] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    foreign: list[tuple[str, Position]] = field(default_factory=list)
    """Info-string attributes of other tools (Runme's ``terminalRows``, a docs site's
    ``title=``), left alone: the parser lists them once per file."""

    def report(self, pos: Position, severity: Severity, message: str) -> None:
        self.diagnostics.append(Diagnostic(pos.line, pos.col, severity, message))

    def read_info(self, rest: str, pos: Position) -> None:
        """Attributes after the language: ``{"name": "x"}`` or ``{ name=x on=web }``."""
        text = rest.strip()
        if not text:
            return
        col = pos.col + rest.index(text[0])
        if text.startswith("{") != text.endswith("}"):
            # Half an attribute block would silently drop a target or a gate.
            self.report(
                Position(pos.line, col), "error", f"attributes `{text}` need both `{{` and `}}`"
            )
            return
        if not text.startswith("{"):
            # Another tool's words (rundown's `spinner:"…"`, a docs site's `title="x"`)
            # are left alone; one of ours here would be dropped, so that is an error.
            words = [(m.group(1), m.start(1)) for m in _WORD.finditer(blank_quotes(text))]
            ours = [w for w, _ in words if near(w, KNOWN) is not None]
            if ours:
                self.report(
                    Position(pos.line, col),
                    "error",
                    f"`{text}` after the language is ignored; options go in `#|` lines"
                    " or in `{ key=value }`",
                )
                return
            for word, at in words:
                self.foreign.append((word, Position(pos.line, col + at)))
            return
        inner = text[1:-1].strip()
        if inner.startswith('"'):
            self._read_json(text, Position(pos.line, col))
        else:
            self._read_kv(text[1:-1], Position(pos.line, col + 1))

    def _read_json(self, text: str, pos: Position) -> None:
        try:
            # Pairs, not a dict: a key given twice must be reported, not silently dropped.
            pairs = json.loads(text, object_pairs_hook=list)
        except (json.JSONDecodeError, RecursionError) as e:
            at, msg = (e.pos, e.msg) if isinstance(e, json.JSONDecodeError) else (0, "too deep")
            self.report(
                Position(pos.line, pos.col + at), "error", f"attributes are not valid JSON: {msg}"
            )
            return
        keys = [m.start() for m in _JSON_KEY.finditer(text)]
        if len(keys) != len(pairs):
            keys = [0] * len(pairs)  # nested objects: point at the `{`
        for (key, value), offset in zip(pairs, keys, strict=True):
            self.raw.append(
                RawOption(key, value, Position(pos.line, pos.col + offset), in_braces=True)
            )

    def _read_kv(self, text: str, pos: Position) -> None:
        at = 0
        while at < len(text):
            if not text[at:].strip():
                break
            m = _KV.match(text, at)
            if not m:
                bad_col = pos.col + at + (len(text[at:]) - len(text[at:].lstrip()))
                self.report(
                    Position(pos.line, bad_col),
                    "error",
                    f"cannot read attribute `{text[at:].strip()}`: expected key=value pairs",
                )
                return
            value = m.group(2)
            if value[:1] == '"':
                try:
                    value = json.loads(value)
                except json.JSONDecodeError as e:
                    where = Position(pos.line, pos.col + m.start(2))
                    self.report(where, "error", f"cannot read the quoted value {value}: {e.msg}")
                    return
            elif value[:1] == "'":
                value = value[1:-1]
            self.raw.append(
                RawOption(
                    m.group(1),
                    value,
                    Position(pos.line, pos.col + m.start(1)),
                    Position(pos.line, pos.col + m.start(2)),
                    in_braces=True,
                )
            )
            at = m.end()

    def read_option_line(self, line: str, pos: Position) -> None:
        """One ``#| key: value`` line; ``line`` starts with ``#|``, which is at ``pos``."""
        m = _OPTION_LINE.match(line.rstrip())
        body = m.group(1) if m else ""
        key, sep, value = body.partition(":")
        key = key.strip()
        if not sep or not key:
            self.report(Position(pos.line, pos.col), "error", "expected `#| key: value`")
            return
        key_col = pos.col + line.find(key, 2)
        value_start = line.find(":", 2) + 1 + len(value) - len(value.lstrip())
        value_col = pos.col + value_start if value.strip() else key_col
        self.raw.append(
            RawOption(
                key,
                _unquote(value.strip()),
                Position(pos.line, key_col),
                Position(pos.line, value_col),
                line_option=True,
            )
        )

    def build(self) -> BlockOptions:
        values: dict[str, Any] = {}
        positions: dict[str, Position] = {}
        given: dict[str, RawOption] = {}
        for opt in self.raw:
            if opt.key in RUNME_SILENT:
                continue
            spec = OPTIONS.get(opt.key) or RUNME_MAPPED.get(opt.key)
            slip = near(opt.key, KNOWN) is not None or not _KEY.match(opt.key)
            unknown = (
                opt.in_braces and opt.key not in OTHER_TOOLS and not opt.key.startswith("data-")
            )
            if spec is None and (opt.line_option or slip or unknown):
                meant = SYNONYMS.get(opt.key)
                hint = f" (did you mean `{meant}`?)" if meant else did_you_mean(opt.key, KNOWN)
                self.report(opt.pos, "error", f"unknown option `{opt.key}`{hint}")
                continue
            if spec is None:
                self.foreign.append((opt.key, opt.pos))
                continue
            attr, parse = spec
            if attr in given:
                first = given[attr]
                alias = f" as `{first.key}`" if first.key != opt.key else ""
                self.report(
                    opt.pos,
                    "error",
                    f"option `{opt.key}` is set twice"
                    f" (first{alias} at {first.pos.line}:{first.pos.col})",
                )
                continue
            given[attr] = opt
            if opt.value == "" or opt.value is None:
                self.report(opt.pos, "error", f"option `{opt.key}` needs a value")
                continue
            try:
                values[attr] = parse(opt.value)
            except ValueProblem as e:
                self.report(opt.at_value, "error", f"bad value for `{opt.key}`: {e}")
                continue
            positions[attr] = opt.at_value
        return BlockOptions(**values, positions=positions)


def is_option_line(line: str) -> bool:
    return line.lstrip().startswith("#|")


def _unquote(value: str) -> object:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'")
    return value
