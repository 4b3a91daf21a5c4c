"""What would run, where, in which batches, behind which gates: as data and as text.

``build_plan`` returns plain JSON-ready data (schema ``runbook-plan/1``, documented in
docs/format.md); the text form is rendered from that same data so the two never disagree.
"""

from __future__ import annotations

from typing import Any

from runbook.format.hosts import batches
from runbook.format.lint import resolve_block_targets
from runbook.format.model import Block, Runbook, Step
from runbook.format.values import expand, variable_refs
from runbook.format.variables import MASK, Resolved
from runbook.format.webhooks import EVENTS, origin

PLAN_FORMAT = "runbook-plan/1"
DEFAULT_SHELLS = {"sh": "sh", "shell": "sh", "bash": "bash", "zsh": "zsh"}


class PlanProblem(ValueError):
    """Valid runbook, unrunnable values: e.g. ``on: $GROUP`` with a GROUP that is no group."""


def shell_for(rb: Runbook, block: Block) -> str:
    """Block ``shell:`` > front matter ``shell:`` > the fence language; a Runme cell in
    ``sh``/``shell`` runs under bash, as Runme runs it under the user's ``$SHELL`` (bash or
    zsh nearly always), not under a POSIX sh that would refuse its bash-isms."""
    if block.runme and block.language in ("sh", "shell"):
        return block.options.shell or rb.shell or "bash"
    return block.options.shell or rb.shell or DEFAULT_SHELLS[block.language]


def build_plan(rb: Runbook, resolved: Resolved) -> dict[str, Any]:
    shown = resolved.display(rb)
    return {
        "format": PLAN_FORMAT,
        "runbook": {
            "path": rb.path,
            "sha256": rb.sha256,
            "title": rb.title,
            "description": rb.description,
            "owner": rb.owner,
        },
        "variables": [
            {
                "name": v.name,
                "line": v.line,
                "secret": v.secret,
                "required": v.required,
                "source": resolved.sources.get(v.name, "prompt"),
                "value": None if v.secret else resolved.values.get(v.name),
                "prompt": v.prompt,
                "choices": list(v.choices),
                "pattern": v.pattern,
            }
            for v in rb.variables
        ],
        "hosts": {g.name: [h.spec for h in g.hosts] for g in rb.hosts},
        "ssh": {"user": rb.ssh.user, "port": rb.ssh.port, "known_hosts": rb.ssh.known_hosts},
        "notify": [
            {
                "line": hook.line,
                # The path of a literal webhook URL is often its secret: origin only.
                "to": hook.url if hook.url.startswith("$") else origin(hook.url),
                "events": list(hook.events),
                "headers": [name for name, _ in hook.headers],
                "timeout": hook.timeout.text,
                "retries": hook.retries,
            }
            for hook in rb.notify
        ],
        "steps": [_step(rb, s, shown) for s in rb.steps],
        "rollback_order": [b.name for s in reversed(rb.steps) for b in s.rollback_blocks],
    }


def _step(rb: Runbook, step: Step, shown: dict[str, str]) -> dict[str, Any]:
    return {
        "index": step.index,
        "title": step.title,
        "slug": step.slug,
        "line": step.line,
        "checklist": [{"text": c.text, "line": c.line} for c in step.checklist],
        "alerts": [{"kind": a.kind, "text": a.text, "line": a.line} for a in step.alerts],
        "blocks": [_block(rb, b, shown) for b in step.forward_blocks],
        "rollback": [_block(rb, b, shown) for b in step.rollback_blocks],
    }


def _text(text: str | None, shown: dict[str, str]) -> str | None:
    return None if text is None else expand(text, shown)


def _block(rb: Runbook, block: Block, shown: dict[str, str]) -> dict[str, Any]:
    opts = block.options
    gates: list[dict[str, str | None]] = []
    if opts.rollback:  # every rollback block asks first, whatever its own options say
        gates.append({"type": "confirm", "text": f"Run rollback block {block.name}?"})
    if opts.confirm is not None:
        gates.append({"type": "confirm", "text": _text(opts.confirm, shown)})
    if opts.type_to_confirm is not None:
        gates.append({"type": "type-to-confirm", "text": _text(opts.type_to_confirm, shown)})
    return {
        "name": block.name,
        "line": block.line,
        "language": block.language,
        "shell": shell_for(rb, block),
        "cwd": opts.cwd or rb.cwd,
        "runs": opts.run,
        "manual": opts.manual,
        "background": opts.background,
        "target": _target(rb, block, shown),
        "gates": gates,
        "timeout": str(opts.timeout) if opts.timeout else None,
        "timeout_seconds": opts.timeout.seconds if opts.timeout else None,
        "retries": opts.retries,
        "retry_delay": str(opts.retry_delay) if opts.retries else None,
        "capture": opts.capture,
        "keeps": list(block.keeps),
        "continue_on_error": opts.continue_on_error,
        "health": opts.health,
        "bake": _bake(rb, block),
        "command": block.code,
    }


def _bake(rb: Runbook, block: Block) -> dict[str, Any] | None:
    opts = block.options
    if opts.bake is None or block.step is None:
        return None
    checks = rb.steps[block.step - 1].health_checks(block)
    return {
        "duration": str(opts.bake),
        "seconds": opts.bake.seconds,
        "interval": str(opts.health_interval),
        "interval_seconds": opts.health_interval.seconds,
        "checks": [c.name for c in checks],
    }


def _target(rb: Runbook, block: Block, shown: dict[str, str]) -> dict[str, Any]:
    opts = block.options
    missing = [n for n, _ in variable_refs(opts.on) if n not in shown]
    if missing:
        reason = f"`on: {opts.on}` needs ${missing[0]}, known only at run time"
        return {"kind": "deferred", "on": opts.on, "reason": reason}
    on = expand(opts.on, shown)
    hosts, problems = resolve_block_targets(rb, block, shown)
    if problems:
        pos, message = problems[0]
        raise PlanProblem(f"{rb.path}:{pos.line}: {message}")
    if not hosts:
        return {"kind": "local", "on": "local"}
    split = batches(hosts, opts.serial)
    return {
        "kind": "hosts",
        "on": on,
        "hosts": [h.spec for h in hosts],
        "serial": [str(a) for a in opts.serial],
        "batches": [[h.spec for h in b] for b in split],
        "max_fail": str(opts.max_fail),
        "max_fail_hosts": opts.max_fail.of(len(hosts)),
    }


def render_text(plan: dict[str, Any]) -> str:
    """The plan for a terminal or a pull-request comment: plain text, stable order."""
    rb = plan["runbook"]
    out = [rb["title"], f"  {rb['path']}", f"  sha256 {rb['sha256']}"]
    if rb["owner"]:
        out.append(f"  owner {rb['owner']}")
    if rb["description"]:
        out.append(f"  {rb['description']}")
    if plan["variables"]:
        out += ["", "Variables"]
        width = max(len(v["name"]) for v in plan["variables"])
        for v in plan["variables"]:
            out.append(f"  {v['name']:<{width}}  {_variable_line(v)}")
    if plan["hosts"]:
        out += ["", "Hosts"]
        width = max(len(g) for g in plan["hosts"])
        for group, hosts in plan["hosts"].items():
            out.append(f"  {group:<{width}}  {', '.join(hosts)}")
    ssh = {k: v for k, v in plan["ssh"].items() if v is not None}
    if ssh:
        out += ["", "SSH defaults (OpenSSH config and agent supply the rest)"]
        out += [f"  {k}: {v}" for k, v in ssh.items()]
    if plan["notify"]:
        out += ["", "Notifications (webhooks; delivery never holds the run)"]
        for n, hook in enumerate(plan["notify"], start=1):
            events = (
                "all events" if len(hook["events"]) == len(EVENTS) else ", ".join(hook["events"])
            )
            headers = f"; headers {', '.join(hook['headers'])}" if hook["headers"] else ""
            out.append(
                f"  {n}. {hook['to']}  ({events}; timeout {hook['timeout']},"
                f" {_count(hook['retries'], 'retry').replace('retrys', 'retries')}{headers})"
            )
    for step in plan["steps"]:
        out += ["", f"{step['index']}. {step['title']}  (line {step['line']})"]
        out += _step_lines(step)
    if plan["rollback_order"]:
        step_of = {b["name"]: s for s in plan["steps"] for b in s["rollback"]}
        out += ["", "On rollback, the rollback blocks of completed steps run in this order:"]
        for name in plan["rollback_order"]:
            step = step_of[name]
            out.append(f"  {name}  (step {step['index']}. {step['title']})")
    steps = plan["steps"]
    n_blocks = sum(len(s["blocks"]) for s in steps)
    n_rollback = sum(len(s["rollback"]) for s in steps)
    n_gates = sum(len(b["gates"]) for s in steps for b in s["blocks"] + s["rollback"])
    n_checks = sum(len(s["checklist"]) for s in steps)
    out += [
        "",
        f"{_count(len(steps), 'step')}, {_count(n_blocks, 'block')}, "
        f"{_count(n_rollback, 'rollback block')}, {_count(n_gates, 'gate')}, "
        f"{_count(n_checks, 'checklist item')}",
    ]
    return "\n".join(out) + "\n"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _step_lines(step: dict[str, Any]) -> list[str]:
    """A step's alerts, checklist items and blocks, in the order the author wrote them."""
    items: list[tuple[int, list[str]]] = []
    for alert in step["alerts"]:
        text = alert["text"].splitlines() or [""]
        lines = [f"   ! {alert['kind']}: {text[0]}", *(f"     {ln}" for ln in text[1:])]
        items.append((alert["line"], lines))
    for check in step["checklist"]:
        items.append((check["line"], [f"   [ ] {check['text']}"]))
    for block in step["blocks"]:
        items.append((block["line"], _block_lines(block, "run")))
    for block in step["rollback"]:
        items.append((block["line"], _block_lines(block, "rollback")))
    if not items:
        return ["   (nothing to run: read and continue)"]
    return [ln for _, lines in sorted(items, key=lambda i: i[0]) for ln in lines]


def _bake_text(bake: dict[str, Any]) -> str:
    checks = ", ".join(bake["checks"])
    if not checks:
        return f"bake {bake['duration']} (no health check: it only waits)"
    return (
        f"bake {bake['duration']}, health every {bake['interval']}: {checks}"
        " (a failing check stops the rollout)"
    )


def _variable_line(v: dict[str, Any]) -> str:
    if v["secret"]:
        return (
            "(secret: asked at run time, never shown)"
            if v["source"] == "prompt"
            else f"{MASK}  ({v['source']})"
        )
    if v["source"] == "prompt":
        need = "required, " if v["required"] else ""
        return f"({need}asked at run time)"
    extra = f"; one of {', '.join(v['choices'])}" if v["choices"] else ""
    return f"{v['value']}  ({v['source']}{extra})"


def _block_lines(block: dict[str, Any], kind: str) -> list[str]:
    target = block["target"]
    where = {
        "local": "local",
        "deferred": f"on {target['on']} (resolved at run time)",
    }.get(target["kind"]) or f"on {target['on']} ({_count(len(target.get('hosts', [])), 'host')})"
    head = f"   {'->' if kind == 'run' else '<-'} {kind} {block['name']}  {block['shell']}  {where}"
    out = [head + f"  (line {block['line']})"]
    details = []
    if not block["runs"]:
        details.append("run: false (shown only, never run)")
    if block["manual"]:
        details.append("runs only when chosen")
    if block["background"]:
        details.append("background: the run goes on beside it; stopped when the run ends")
    if block["cwd"]:
        details.append(f"cwd {block['cwd']}")
    if block["timeout"]:
        details.append(f"timeout {block['timeout']}")
    if block["retries"]:
        details.append(f"retries {block['retries']} every {block['retry_delay']}")
    if block["capture"]:
        details.append(f"captures stdout as ${block['capture']}")
    if block["keeps"]:
        kept = ", ".join(f"${name}" for name in block["keeps"])
        details.append(f"its output is kept for later blocks as {kept} (Runme)")
    if block["continue_on_error"]:
        details.append("continues on error")
    if block["health"]:
        details.append("health check: every bake of its step runs it too")
    if details:
        out.append(f"      {', '.join(details)}")
    for gate in block["gates"]:
        verb = "confirm" if gate["type"] == "confirm" else "type to confirm"
        later = sorted({f"${name}" for name, _ in variable_refs(gate["text"])})
        known = f"  ({', '.join(later)} known only at run time)" if later else ""
        out.append(f"      gate: {verb}: {gate['text']}{known}")
    bake = block["bake"]
    if target["kind"] == "hosts":
        n = len(target["batches"])
        for i, batch in enumerate(target["batches"], start=1):
            pause = "  then confirm the next batch" if i < n and not bake else ""
            out.append(f"      batch {i}/{n}: {', '.join(batch)}{pause}")
            if bake and i < n:
                out.append(f"        then {_bake_text(bake)}; then confirm the next batch")
        tolerated = target["max_fail_hosts"]
        out.append(
            f"      stops at the first failed host (max-fail {target['max_fail']})"
            if tolerated == 0
            else f"      tolerates {_count(tolerated, 'failed host')}, stops at the next"
            f" (max-fail {target['max_fail']})"
        )
    elif bake:
        out.append(f"      after each batch but the last: {_bake_text(bake)}")
    if target["kind"] == "deferred":
        out.append(f"      {target['reason']}")
    lines = block["command"].rstrip("\n").split("\n") if block["command"] else ["(empty)"]
    out.append(f"      $ {lines[0]}")
    out += [f"        {ln}" for ln in lines[1:]]
    return out
