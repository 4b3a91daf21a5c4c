"""Lint rules: plain functions from a parsed :class:`Runbook` to diagnostics.

The parser reports what is wrong with one element (a bad option value, a YAML error);
these rules report what is wrong between elements (a name used twice, a variable that
nothing defines, a rollback with nothing to undo).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

from runbook.format.hosts import batches, resolve_targets
from runbook.format.model import Block, Diagnostic, Host, Position, Runbook, Severity
from runbook.format.values import ValueProblem, did_you_mean, expand, variable_refs
from runbook.format.webhooks import references

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
                f"duplicate block name `{block.name}`,"
                f" already used by the block on line {first.line}{how}",
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
    """``$VAR`` in ``confirm``, ``type-to-confirm`` and ``on``: a variable or an earlier capture.

    Only blocks that run on every forward pass define a capture for the blocks after them.
    """
    declared = {v.name: v for v in rb.variables}
    captured: set[str] = set()
    later = {b.options.capture for b in rb.blocks if b.options.capture and b.runs_forward}
    optional = {b.options.capture for b in rb.blocks if b.options.capture and b.runs}
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
                    if name in later:
                        hint = " (it is captured only by a later block)"
                    elif name in optional:
                        hint = " (only a rollback or optional block captures it)"
                    else:
                        hint = did_you_mean(name, [*declared, *captured])
                    yield _at(
                        pos,
                        "error",
                        f"`{label}` uses `${name}`, which no variable or capture defines{hint}",
                    )
        if block.options.capture and block.runs_forward:
            captured.add(block.options.capture)


def targets(rb: Runbook) -> Iterator[Diagnostic]:
    """``on:`` names known groups; ``serial``, ``max-fail`` and ``capture`` fit the targets.

    An ``on:`` with variables is checked for every value they can take before the run:
    each of their ``choices``, else their default.
    """
    for block in rb.blocks:
        opts = block.options
        reported: set[str] = set()
        for values in _possible_values(rb, opts.on):
            for pos, message in resolve_block_targets(rb, block, values)[1]:
                if message not in reported:
                    reported.add(message)
                    yield _at(pos, "error", message)


def _possible_values(rb: Runbook, text: str) -> list[dict[str, str]]:
    names = sorted({name for name, _ in variable_refs(text)})
    choices: list[tuple[str, ...]] = []
    for name in names:
        var = rb.variable(name)
        if var is None or var.secret:
            return []  # reported by variable_references
        values = var.choices or ((var.default,) if var.default is not None else ())
        if not values:
            return []  # known only when the run starts
        choices.append(values)
    combos = itertools.islice(itertools.product(*choices), MAX_TARGET_COMBINATIONS)
    return [dict(zip(names, combo, strict=True)) for combo in combos]


MAX_TARGET_COMBINATIONS = 64


def resolve_block_targets(
    rb: Runbook, block: Block, values: dict[str, str]
) -> tuple[tuple[Host, ...], list[tuple[Position, str]]]:
    """A block's hosts for these values, and what is wrong with them (``check`` and ``plan``)."""
    opts = block.options
    refs = {name for name, _ in variable_refs(opts.on)}
    when = "".join(f"with {k}={v}, " for k, v in values.items() if k in refs)
    try:
        hosts = resolve_targets(expand(opts.on, values), rb.hosts)
    except ValueProblem as e:
        return (), [(opts.where("on", block.position), f"{when}{e}")]
    problems = []
    for option in ("serial", "max_fail", "bake"):
        if option in opts.positions and not hosts:
            label = option.replace("_", "-")
            problems.append(
                (
                    opts.positions[option],
                    f"{when}`{label}` needs hosts, but this block runs on local"
                    " (add `on: <group>`)",
                )
            )
    if opts.capture and len(hosts) > 1:
        problems.append(
            (
                opts.where("capture", block.position),
                f"{when}`capture` needs a single target, but `on: {opts.on}` is {len(hosts)} hosts",
            )
        )
    return hosts, problems


def bakes(rb: Runbook) -> Iterator[Diagnostic]:
    """``bake``, ``health-interval`` and ``health`` where they can do what they say.

    ``bake`` without hosts is reported by :func:`targets`; a target with variables is not
    guessed at here.
    """
    for step in rb.steps:
        for block in step.blocks:
            opts = block.options
            where = block.position
            if opts.health and opts.rollback:
                yield _at(
                    opts.where("health", where),
                    "error",
                    "`health` on a rollback block: health checks watch the way forward",
                )
            gated = [o for o in ("confirm", "type_to_confirm") if getattr(opts, o) is not None]
            if opts.health and gated:
                yield _at(
                    opts.where(gated[0], where),
                    "error",
                    f"a `health` check runs unattended in every bake round: its"
                    f" `{gated[0].replace('_', '-')}` would be asked once and then ignored",
                )
            if opts.bake is None:
                if "health_interval" in opts.positions:
                    yield _at(
                        opts.positions["health_interval"],
                        "warning",
                        "`health-interval` does nothing without `bake`",
                    )
                continue
            at = opts.where("bake", where)
            if opts.rollback:
                yield _at(at, "error", "`bake` on a rollback block: bake is for the way forward")
                continue
            if opts.health:
                yield _at(
                    opts.where("health", where),
                    "error",
                    "a block with `bake` cannot be its own health check; mark another block"
                    " of the step `health: true`",
                )
            one_batch = _one_batch(rb, block)
            if one_batch:
                yield _at(at, "warning", f"`bake` applies only between batches, {one_batch}")
            if not step.health_checks(block):
                yield _at(
                    at,
                    "warning",
                    f"`bake` finds no `health: true` block in step `{step.title}`: it only waits",
                )
            if opts.health_interval.seconds > opts.bake.seconds:
                given = "health_interval" in opts.positions
                interval = "`health-interval`" if given else "the default `health-interval`"
                yield _at(
                    opts.where("health_interval", at),
                    "warning",
                    f"{interval} {opts.health_interval} is longer than `bake` {opts.bake}:"
                    " the health checks run once, when the bake ends",
                )


def _one_batch(rb: Runbook, block: Block) -> str | None:
    """Why a baked block's hosts are one batch, when that is known before the run."""
    opts = block.options
    if any(variable_refs(opts.on)):
        return None  # known only at run time: not guessed
    try:
        hosts = resolve_targets(opts.on, rb.hosts)
    except ValueProblem:
        return None  # reported by `targets`
    if not hosts:
        return None  # `bake` without hosts is an error of its own
    if not opts.serial:
        return "and without `serial` all the hosts are one batch (add `serial`)"
    if len(batches(hosts, opts.serial)) == 1:
        return f"and `serial: {', '.join(map(str, opts.serial))}` makes one batch of" + (
            f" the {len(hosts)} hosts" if len(hosts) > 1 else " the one host"
        )
    return None


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


def backgrounds(rb: Runbook) -> Iterator[Diagnostic]:
    """A background block runs on the operator's machine, beside the run, once."""
    for block in rb.blocks:
        opts = block.options
        if not opts.background:
            continue
        at = opts.where("background", block.position)
        if opts.on != "local":
            yield _at(at, "error", "`background` runs locally only: drop `on:` or `background`")
        elif opts.rollback or opts.retries or opts.capture:
            what = (
                "a rollback block"
                if opts.rollback
                else "`retries`"
                if opts.retries
                else "`capture`"
            )
            yield _at(at, "error", f"`background` with {what}: nothing waits for its end")


def console_prompts(rb: Runbook) -> Iterator[Diagnostic]:
    """A ``$ `` prompt after the first command would run ``$`` as a command (a block
    that starts with one is a session: its prompts are stripped)."""
    source_lines: list[str] = []
    for block in (*rb.blocks, *rb.loose_blocks):
        if block.lines:
            continue  # a prompt-style block: its prompts are stripped (format/prompts.py)
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
                break  # once per block


CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "x-auth-token"})


def webhooks(rb: Runbook) -> Iterator[Diagnostic]:
    """``$VAR`` in a webhook is expanded when the run starts: only declared variables,
    and a credential belongs in a secret variable, not in the runbook's text."""
    declared = {v.name: v for v in rb.variables}
    for hook, name in references(rb):
        if name not in declared:
            hint = did_you_mean(name, declared)
            yield _at(
                Position(hook.line, hook.col),
                "error",
                f"notify: `${name}` is not a declared variable{hint}"
                " (webhooks are set up when the run starts, before any capture)",
            )
    for hook in rb.notify:
        for header, value in hook.headers:
            if header.lower() in CREDENTIAL_HEADERS and not any(variable_refs(value)):
                yield _at(
                    Position(hook.line, hook.col),
                    "warning",
                    f"notify: header `{header}` holds a credential in clear;"
                    " give it from a `secret: true` variable",
                )


RULES: tuple[Rule, ...] = (
    backgrounds,
    console_prompts,
    duplicate_names,
    loose_blocks,
    variable_references,
    targets,
    captures,
    rollbacks,
    webhooks,
    bakes,
)


def lint(rb: Runbook) -> list[Diagnostic]:
    return [d for rule in RULES for d in rule(rb)]
