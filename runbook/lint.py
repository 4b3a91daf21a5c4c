"""Lint rules: plain functions from a parsed :class:`Runbook` to diagnostics.

The parser reports what is wrong with one element (a bad option value, a YAML error);
these rules report what is wrong between elements (a name used twice, a variable that
nothing defines, a rollback with nothing to undo).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from runbook.hosts import resolve_targets
from runbook.model import Block, Diagnostic, Position, Runbook, Severity
from runbook.values import ValueProblem, did_you_mean, variable_refs

Rule = Callable[[Runbook], Iterator[Diagnostic]]


def _at(pos: Position, severity: Severity, message: str) -> Diagnostic:
    return Diagnostic(pos.line, pos.col, severity, message)


def duplicate_names(rb: Runbook) -> Iterator[Diagnostic]:
    seen: dict[str, Block] = {}
    for block in (*rb.blocks, *rb.loose_blocks):
        first = seen.setdefault(block.name, block)
        if first is not block:
            pos = block.options.where("name", block.position)
            how = "" if block.options.name else " (the default name; give one of them a `name:`)"
            yield _at(
                pos,
                "error",
                f"duplicate block name `{block.name}`, first used on line {first.line}{how}",
            )


def loose_blocks(rb: Runbook) -> Iterator[Diagnostic]:
    for block in rb.loose_blocks:
        if block.runs:
            yield _at(
                block.position,
                "warning",
                "shell block outside any `##` step is shown but never run",
            )


def variable_references(rb: Runbook) -> Iterator[Diagnostic]:
    """``$VAR`` in ``confirm``, ``type-to-confirm`` and ``on``: a variable or an earlier capture."""
    declared = {v.name: v for v in rb.variables}
    captured: set[str] = set()
    captured_later = {b.options.capture for b in rb.blocks if b.options.capture and b.runs}
    for block in rb.blocks:
        for option in ("on", "confirm", "type_to_confirm"):
            text = getattr(block.options, option)
            if text is None:
                continue
            pos = block.options.where(option, block.position)
            label = option.replace("_", "-")
            for name, _ in variable_refs(text):
                var = declared.get(name)
                if var is not None and var.secret:
                    yield _at(pos, "error", f"`{label}` shows secret variable `{name}` on screen")
                elif var is None and name not in captured:
                    hint = (
                        " (it is captured only by a later block)"
                        if name in captured_later
                        else did_you_mean(name, [*declared, *captured])
                    )
                    yield _at(
                        pos,
                        "error",
                        f"`{label}` uses `${name}`, which no variable or capture defines{hint}",
                    )
        if block.options.capture and block.runs:
            captured.add(block.options.capture)


def targets(rb: Runbook) -> Iterator[Diagnostic]:
    """``on:`` names known groups; ``serial``, ``max-fail`` and ``capture`` fit the targets."""
    for block in rb.blocks:
        opts = block.options
        pos = opts.where("on", block.position)
        if any(True for _ in variable_refs(opts.on)):
            continue  # resolved at run time
        try:
            hosts = resolve_targets(opts.on, rb.hosts)
        except ValueProblem as e:
            yield _at(pos, "error", str(e))
            continue
        for option in ("serial", "max_fail"):
            if option in opts.positions and not hosts:
                label = option.replace("_", "-")
                yield _at(
                    opts.positions[option],
                    "error",
                    f"`{label}` needs hosts, but this block runs on local (add `on: <group>`)",
                )
        if opts.capture and len(hosts) > 1:
            yield _at(
                opts.where("capture", block.position),
                "error",
                f"`capture` needs a single target, but `on: {opts.on}` is {len(hosts)} hosts",
            )


def captures(rb: Runbook) -> Iterator[Diagnostic]:
    declared = {v.name for v in rb.variables}
    last_use: dict[str, int] = {}
    blocks = rb.blocks
    for i, block in enumerate(blocks):
        for used in _names_used(block):
            last_use[used] = i
    for i, block in enumerate(blocks):
        name = block.options.capture
        if not name:
            continue
        pos = block.options.where("capture", block.position)
        if name in declared:
            yield _at(
                pos, "error", f"`capture: {name}` would overwrite the declared variable `{name}`"
            )
        elif last_use.get(name, -1) <= i:
            yield _at(pos, "warning", f"`capture: {name}` is never used by a later block")


def _names_used(block: Block) -> set[str]:
    opts = block.options
    texts = (block.code, opts.on, opts.confirm, opts.type_to_confirm, opts.cwd)
    return {name for text in texts if text for name, _ in variable_refs(text)}


def rollbacks(rb: Runbook) -> Iterator[Diagnostic]:
    for step in rb.steps:
        if step.rollback_blocks and not any(b.runs for b in step.forward_blocks):
            for block in step.rollback_blocks:
                yield _at(
                    block.options.where("rollback", block.position),
                    "error",
                    f"rollback block in step `{step.title}`, which has no forward block to undo",
                )


def console_prompts(rb: Runbook) -> Iterator[Diagnostic]:
    """A ``$ `` prompt copied from a terminal would run ``$`` as a command."""
    source_lines: list[str] = []
    for block in (*rb.blocks, *rb.loose_blocks):
        for offset, line in enumerate(block.code.split("\n")):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            if text.startswith("$ "):
                source_lines = source_lines or rb.source.split("\n")
                at = block.code_line + offset
                yield _at(
                    Position(at, source_lines[at - 1].find("$ ") + 1),
                    "warning",
                    "`$ ` prompt in a shell block: the shell would run `$` as a command;"
                    " drop the prompt, or use a `console` block to show a session",
                )
            break


RULES: tuple[Rule, ...] = (
    console_prompts,
    duplicate_names,
    loose_blocks,
    variable_references,
    targets,
    captures,
    rollbacks,
)


def lint(rb: Runbook) -> list[Diagnostic]:
    return [d for rule in RULES for d in rule(rb)]
