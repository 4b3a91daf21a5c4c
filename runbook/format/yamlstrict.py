"""A strict, position-keeping YAML loader for front matter.

- Duplicate keys are reported (PyYAML silently keeps the last one).
- Only ``true``/``false`` are booleans and only ``null``/``~``/empty is null; numbers,
  dates, ``yes``/``no`` and ``on``/``off`` stay text, so ``0755``, ``1:30`` and ``1.10``
  mean what the author typed (YAML 1.2 reading, as GitHub readers expect).
- Mappings and lists remember where each key, value and item was written, so every
  diagnostic can point at its line and column.
- A value PyYAML cannot build (``!!int abc``, a bad date) is a diagnostic, never a crash.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

from runbook.format.model import Diagnostic, Position

# What can go wrong while PyYAML builds a Python value from a well-formed node.
_BUILD_ERRORS = (
    yaml.YAMLError,
    ValueError,
    KeyError,
    AttributeError,
    TypeError,
    OverflowError,
    RecursionError,
)


class YMap(dict[Any, Any]):
    """A mapping that remembers the file position of each key and value."""

    def __init__(self, pos: Position) -> None:
        super().__init__()
        self.pos = pos
        self.key_pos: dict[Any, Position] = {}
        self.value_pos: dict[Any, Position] = {}


class YList(list[Any]):
    """A list that remembers the file position of each item."""

    def __init__(self, pos: Position) -> None:
        super().__init__()
        self.pos = pos
        self.item_pos: list[Position] = []


_CUT = re.compile(r"[ \t]+(#\S+)")


class _Resolver(BaseResolver):
    pass


_Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|)$"), ["~", "n", ""]
)
_Resolver.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), ["<"])


class _Loader(Reader, Scanner, Parser, Composer, SafeConstructor, _Resolver):
    def __init__(self, stream: str, line_offset: int) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        _Resolver.__init__(self)
        self.line_offset = line_offset
        self.problems: list[Diagnostic] = []

    def pos(self, node: yaml.Node) -> Position:
        return Position(node.start_mark.line + 1 + self.line_offset, node.start_mark.column + 1)

    def report(self, node: yaml.Node, message: str) -> None:
        p = self.pos(node)
        self.problems.append(Diagnostic(p.line, p.col, "error", message))

    def build(self, node: yaml.Node) -> tuple[bool, Any]:
        """Construct one node; a value PyYAML cannot build is reported, not raised."""
        try:
            return True, self.construct_object(node, deep=True)
        except _BUILD_ERRORS as e:
            if isinstance(e, yaml.YAMLError) or not isinstance(node, yaml.ScalarNode):
                problem = getattr(e, "problem", None) or str(e) or type(e).__name__
            else:
                tag = node.tag.rsplit(":", 1)[-1]
                detail = f" ({e})" if isinstance(e, ValueError) and str(e) else ""
                problem = f"`{node.value[:40]}` is not a valid !!{tag}{detail}"
            self.report(node, f"invalid YAML value: {problem}")
            return False, None

    def check_cut(self, key: str, node: yaml.Node) -> None:
        """``prompt: URL of #deploys`` is ``URL of``: a ``#`` after a space starts a comment.
        A comment written as one (``# why``) is fine; ``#deploys`` or ``#42`` is a value cut."""
        if not isinstance(node, yaml.ScalarNode) or node.style is not None:
            return
        end = node.end_mark
        rest = end.buffer[end.pointer :].split("\n", 1)[0] if end.buffer else ""
        cut = _CUT.match(rest)
        if cut:
            p = Position(end.line + 1 + self.line_offset, end.column + 1 + cut.start(1))
            self.problems.append(
                Diagnostic(
                    p.line,
                    p.col,
                    "warning",
                    f"`{key}:` ends before `{cut.group(1)}`: YAML reads a `#` after a space as"
                    f" a comment, so the value is `{node.value}`; quote it if the `#` is"
                    " part of it",
                )
            )

    def construct_ymap(self, node: yaml.MappingNode) -> Iterator[YMap]:
        data = YMap(self.pos(node))
        yield data
        explicit = {id(k) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"}
        seen: set[Any] = set()
        self.flatten_mapping(node)
        for key_node, value_node in node.value:
            ok, key = self.build(key_node)
            if not ok:
                continue
            if not isinstance(key, str):
                self.report(key_node, "a mapping key must be text")
                continue
            if id(key_node) in explicit:
                if key in seen:
                    first = data.key_pos[key]
                    self.report(
                        key_node,
                        f"duplicate key `{key}` (first set on line {first.line});"
                        " YAML would silently keep only this one",
                    )
                seen.add(key)
            self.check_cut(key, value_node)
            ok, value = self.build(value_node)
            if ok:
                data[key] = value
                data.key_pos[key] = self.pos(key_node)
                data.value_pos[key] = self.pos(value_node)

    def construct_ylist(self, node: yaml.SequenceNode) -> Iterator[YList]:
        data = YList(self.pos(node))
        yield data
        for item in node.value:
            ok, value = self.build(item)
            if ok:
                data.append(value)
                data.item_pos.append(self.pos(item))


# The stubs only admit PyYAML's own loader classes here.
_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_ymap)  # type: ignore[type-var]
_Loader.add_constructor("tag:yaml.org,2002:seq", _Loader.construct_ylist)  # type: ignore[type-var]


def load(text: str, first_line: int) -> tuple[Any, list[Diagnostic]]:
    """Parse front matter whose first line is ``first_line`` of the file: (data, problems)."""
    offset = first_line - 1
    try:
        loader = _Loader(text, offset)
    except yaml.reader.ReaderError as e:
        return None, [_unreadable(e, text, first_line)]
    try:
        node = loader.get_single_node()
        if node is None:
            return None, loader.problems
        ok, data = loader.build(node)
        return (data if ok else None), loader.problems
    except yaml.reader.ReaderError as e:
        return None, [_unreadable(e, text, first_line)]
    except yaml.MarkedYAMLError as e:
        return None, [_syntax(e, first_line)]
    except yaml.YAMLError as e:
        return None, [Diagnostic(first_line, 1, "error", f"invalid YAML in front matter: {e}")]
    except RecursionError:
        message = "invalid YAML in front matter: nested too deeply"
        return None, [Diagnostic(first_line, 1, "error", message)]
    except (ValueError, OverflowError) as e:  # PyYAML's scanner, e.g. on "\U00110000"
        mark = loader.get_mark()
        line, col = mark.line + first_line, mark.column + 1
        return None, [Diagnostic(line, col, "error", f"invalid YAML in front matter: {e}")]
    finally:
        loader.dispose()


def _syntax(e: yaml.MarkedYAMLError, first_line: int) -> Diagnostic:
    mark = e.problem_mark or e.context_mark
    line = mark.line + first_line if mark else first_line
    col = mark.column + 1 if mark else 1
    what = e.problem or e.context or "syntax error"
    if e.context and e.problem and e.context_mark:
        opened = e.context_mark
        what += f" {e.context} that starts at {opened.line + first_line}:{opened.column + 1}"
    return Diagnostic(line, col, "error", f"invalid YAML in front matter: {what}")


def _unreadable(e: yaml.reader.ReaderError, text: str, first_line: int) -> Diagnostic:
    """YAML refuses control characters before parsing; point at the first one."""
    before = text[: e.position]
    line = before.count("\n") + first_line
    col = e.position - (before.rfind("\n") + 1) + 1
    char = e.character if isinstance(e.character, int) else ord(e.character)
    message = f"invalid YAML in front matter: character U+{char:04X} is not allowed"
    return Diagnostic(line, col, "error", message)
