"""Transcript -> a Markdown report for the post-mortem, written to render well on GitHub.

The report is built only from the transcript (all files of the run, in order): what the
operator saw, decided and ran, with output made safe to paste (ANSI stripped, control
bytes made visible, fenced so nothing inside can break out, long output folded and capped).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runbook.format.parser import parse_file
from runbook.format.variables import MASK as MASKED
from runbook.record import proof
from runbook.record.chain import Verdict
from runbook.record.markdown import (
    cell,
    clock,
    elapsed,
    fence,
    inline,
    output_block,
    seconds,
    span,
    when,
)
from runbook.record.runs import transcript_files, verify_run
from runbook.record.signing import SigningError
from runbook.record.transcript import SNAPSHOT


@dataclass
class _Attempt:
    block: str
    attempt: int
    start: dict[str, Any]
    end: dict[str, Any] | None = None
    output: bytearray = field(default_factory=bytearray)
    binary: bool = False
    decisions: list[str] = field(default_factory=list)
    step: int | None = None
    """The runbook's step the block is in (0: run as a rollback), as ``block.start`` says."""


@dataclass
class _Bake:
    """A rollout held after a batch: its start, its end, its health runs, what was decided."""

    start: dict[str, Any]
    step: int | None
    end: dict[str, Any] | None = None
    runs: list[_Attempt] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)


@dataclass
class _Settled:
    """A block skipped or marked done, with what was decided before: a timeline row."""

    event: dict[str, Any]
    step: int | None
    decided: list[str]


@dataclass
class _Step:
    index: int
    title: str
    items: list[tuple[str, Any]] = field(default_factory=list)


def render_run(path: Path) -> str:
    """The report of the run ``path`` belongs to (every transcript file of its directory)."""
    files = transcript_files(path.resolve().parent)
    if path.resolve() not in [f.resolve() for f in files]:
        files = [path]  # a file outside the run's own sequence is reported on its own
    events: list[dict[str, Any]] = []
    verdicts = verify_run(files, on_event=events.append)
    report = _Report(events, verdicts)
    report.proof = _proof(files, verdicts)
    report.all_steps = (
        _steps_of(files[0].parent / SNAPSHOT) if proof.is_run_directory(files) else []
    )
    return report.render()


def _steps_of(snapshot: Path) -> list[tuple[int, str]]:
    """The steps of the runbook as run; none when the snapshot cannot be read or parsed."""
    try:
        book = parse_file(snapshot).runbook
    except (OSError, ValueError):
        return []
    return [(st.index, st.title) for st in book.steps] if book is not None else []


def _proof(files: list[Path], verdicts: list[tuple[Path, Verdict]]) -> dict[str, str]:
    """The snapshot's check and what signed the record, for the header (not key-checked:
    that needs the allowed signers, ``runbook transcript verify --allowed-signers``)."""
    rows: dict[str, str] = {}
    if proof.is_run_directory(files) and verdicts and verdicts[0][1].lines:
        snapshot = proof.Proof()
        proof.check_snapshot(files[0].parent, proof.first_event(files[0]), snapshot)
        rows["Runbook snapshot"] = (
            "`runbook.md` matches the SHA-256 above" if snapshot.ok else snapshot.lines[0]
        )
    if all(v.ok or v.truncated for _, v in verdicts):
        signed = proof.Proof()
        try:
            proof.check_signatures(verdicts, None, signed)
        except SigningError as e:
            signed.bad(str(e))
        rows["Signed"] = "; ".join(signed.lines) or "not signed"
    return rows


class _Report:
    def __init__(self, events: list[dict[str, Any]], verdicts: list[tuple[Path, Verdict]]):
        self.events = events
        self.verdicts = verdicts
        self.start = next((e for e in events if e["type"] == "run.start"), {})
        self.end = next((e for e in events if e["type"] == "run.end"), None)
        self.steps: dict[int, _Step] = {}
        self.attempts: list[_Attempt] = []
        self.timeline: list[_Attempt | _Bake | _Settled] = []
        self.bakes: dict[str, _Bake] = {}
        """The latest bake of each baked block."""
        self.notes: list[dict[str, Any]] = []
        self.proof: dict[str, str] = {}
        """Header rows: the snapshot's check, the signatures."""
        self.all_steps: list[tuple[int, str]] = []
        """The runbook's steps (index, title), from the snapshot, for those never started."""
        self.printed: set[tuple[str, str]] = set()
        """Scripts already printed: a block on ten hosts shows its script once."""
        self._fold()

    def _fold(self) -> None:
        current: dict[tuple[str, int, str | None], _Attempt] = {}
        pending: dict[str, list[str]] = {}
        asked: dict[str, dict[str, Any]] = {}
        step: _Step | None = None
        home_of: dict[str, int] = {}
        """Each block's step, as its attempts say (``block.start``'s ``step``)."""

        def section(block: str) -> _Step | None:
            """Where what befalls ``block`` is told: its own step, once entered (a block
            run from the palette while another step is open: its attempt, its skip, its
            bake); else the step open (one run early; the rollback)."""
            if step is not None and step.index == 0:
                return step
            return self.steps.get(home_of.get(block, -1)) or step

        for e in self.events:
            kind = e["type"]
            if kind == "step.enter":
                step = self.steps.setdefault(e["step"], _Step(e["step"], e["title"]))
            elif kind == "rollback.start":
                step = self.steps.setdefault(0, _Step(0, "Rollback"))
                step.items.append(("text", f"Rollback started: {e.get('reason', '')}"))
            elif kind == "check.tick" and step is not None:
                step.items.append(("tick", e))
            elif kind == "gate.ask":
                asked[e["block"]] = e
            elif kind == "gate.answer":
                pending.setdefault(e["block"], []).append(_gate_text(e, asked.get(e["block"])))
            elif kind == "decision":
                text = f"{e['kind']}: {e['choice']}" + (
                    f" ({e['reason']})" if e.get("reason") else ""
                )
                text += f" by {e.get('by', '?')}"
                last = next((a for a in reversed(self.attempts) if a.block == e["block"]), None)
                if e["kind"] == "bake" and e["block"] in self.bakes:
                    self.bakes[e["block"]].decisions.append(text)
                elif last is not None and e["kind"] == "failure":
                    last.decisions.append(text)
                else:
                    pending.setdefault(e["block"], []).append(text)
            elif kind == "bake.start":
                told = section(e["block"])
                index = told.index if told else None
                own = index if index == 0 else home_of.get(e["block"], index)  # as its attempts
                baked = self.bakes[e["block"]] = _Bake(e, own)
                self.timeline.append(baked)
                if told is not None:
                    told.items.append(("bake", baked))
            elif kind == "bake.end" and e["block"] in self.bakes:
                self.bakes[e["block"]].end = e
            elif kind == "block.start":
                attempt = _Attempt(e["block"], e.get("attempt", 1), e)
                current[(e["block"], attempt.attempt, e.get("host"))] = attempt
                baking = self.bakes.get((e.get("bake") or {}).get("block", ""))
                if "bake" in e and baking is not None:  # a health run: part of its bake
                    baking.runs.append(attempt)
                    continue
                attempt.decisions = pending.pop(e["block"], [])
                self.attempts.append(attempt)
                self.timeline.append(attempt)
                rollback = step is not None and step.index == 0
                attempt.step = 0 if rollback else e.get("step", step.index if step else None)
                if attempt.step:
                    home_of[e["block"]] = attempt.step
                told = section(e["block"])
                if told is not None:
                    told.items.append(("attempt", attempt))
            elif kind == "output":
                found = current.get((e["block"], e.get("attempt", 1), e.get("host")))
                if found is not None:
                    if "b64" in e:
                        found.output += base64.b64decode(e["b64"])
                        found.binary = True
                    else:
                        found.output += e["text"].encode()
            elif kind == "block.end":
                found = current.get((e["block"], e.get("attempt", 1), e.get("host")))
                if found is not None:
                    found.end = e
            elif kind in ("block.skip", "block.mark") and (told := section(e["block"])):
                decided = pending.pop(e["block"], [])
                told.items.append(("skip", (e, decided)))
                self.timeline.append(_Settled(e, told.index, decided))
            elif kind == "capture" and (told := section(e["block"])):
                told.items.append(("text", f"`${e['name']}` captured from `{e['block']}`."))
            elif kind == "note":
                self.notes.append(e)
                if step is not None:
                    step.items.append(("text", f"Note: {e['text']}"))

    # ------------------------------------------------------------------ rendering

    def render(self) -> str:
        out = [
            f"# Run report: {inline(self.start.get('runbook', {}).get('title', 'runbook'))}",
            "",
        ]
        if self.end is None:
            out += [
                "> [!CAUTION]",
                "> **INCOMPLETE**: the transcript ends without the run's end. The run stopped",
                "> (crash, kill, lost machine) or is still going; this is what was recorded.",
                "",
            ]
        broken = [(f, v) for f, v in self.verdicts if not v.ok]
        if broken:
            out += ["> [!WARNING]"]
            out += [f"> **Transcript not intact**: {v.describe(f.name)}" for f, v in broken]
            out += ["> Only the lines before the break are reported.", ""]
        out += [*self._header(), "", *self._variables(), *self._timeline(), ""]
        out += self._notifications()
        for step in self.steps.values():  # in the order they happened: a rollback comes last
            out += self._step(step)
        out += self._not_run()
        return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).rstrip("\n") + "\n"

    def _header(self) -> list[str]:
        s, book = self.start, self.start.get("runbook", {})
        first = self.events[0] if self.events else {}
        last = self.events[-1] if self.events else {}
        # Wall time, not `mono`: a resumed run's files come from different boots.
        duration = elapsed(first.get("time"), last.get("time"))
        result = (
            "INCOMPLETE"
            if self.end is None
            else f"**{self.end['result']}**: {self.end.get('message', '')}"
        )
        integrity = "; ".join(
            f"`{f.name}` {'intact' if v.ok else 'BROKEN'} ({v.lines} events)"
            for f, v in self.verdicts
        )
        rows = [
            ("Runbook", f"`{book.get('path', '?')}`"),
            ("Runbook SHA-256", f"`{book.get('sha256', '?')}`"),
            ("Run", f"`{s.get('run', '?')}`"),
            (
                "Operator",
                f"{s.get('user', '?')} on {s.get('host', '?')} ({s.get('operator', '?')})",
            ),
            ("Started (UTC)", when(first.get("time"))),
            ("Ended (UTC)", when(self.end["time"]) if self.end else "not recorded"),
            ("Duration", seconds(duration)),
            ("Result", result),
            ("Transcript", integrity),
            ("Last line SHA-256", f"`{self.verdicts[-1][1].last_hash}`" if self.verdicts else "?"),
            *self.proof.items(),
        ]
        resumed = [e for e in self.events if e["type"] == "run.start" and e.get("resumed_from")]
        for e in resumed:
            rows.append(("Resumed", f"{when(e['time'])} by {e.get('user', '?')}"))
            if e.get("allow_changed"):
                changed = e["allow_changed"]
                rows.append(
                    (
                        "Runbook changed",
                        f"resumed with --allow-changed: `{changed['recorded_sha256'][:12]}…`"
                        f" -> `{changed['now_sha256'][:12]}…`",
                    )
                )
        out = ["| Run | |", "|---|---|"]  # no empty header: GitHub shows one as a blank row
        out += [f"| {k} | {cell(v)} |" for k, v in rows]
        return out

    def _variables(self) -> list[str]:
        """Every variable, its value (secrets masked) and where it came from; captures too."""
        known = self.start.get("variables") or {}
        sources = self.start.get("sources") or {}
        secrets = set(self.start.get("secrets") or [])
        rows: dict[str, tuple[str, str]] = {}
        for name, value in known.items():
            shown = MASKED if name in secrets else "(asked later)" if value is None else value
            rows[name] = (shown, sources.get(name, "asked" if value is None else "?"))
        for e in self.events:
            if e["type"] == "var.set":  # asked during the run: replaces "asked later"
                shown = MASKED if e.get("secret") or e["name"] in secrets else e.get("value")
                rows[e["name"]] = (str(shown), f"asked at {clock(e.get('time'))} ({e.get('by')})")
            elif e["type"] == "capture":
                shown = MASKED if e["name"] in secrets else str(e.get("value", ""))
                rows[e["name"]] = (shown, f"captured from `{e['block']}`")
        if not rows:
            return []
        out = ["## Variables", "", "| Name | Value | From |", "|---|---|---|"]
        out += [
            f"| `{n}` | {cell(v) if v else '(empty)'} | {cell(f)} |" for n, (v, f) in rows.items()
        ]
        return [*out, ""]

    def _not_run(self) -> list[str]:
        """The runbook's steps that never started, from the snapshot: absent is not done."""
        entered = {e["step"] for e in self.events if e["type"] == "step.enter"}
        missing = [(i, t) for i, t in self.all_steps if i not in entered]
        if not missing:
            return []
        out = ["## Not run", "", "These steps of the runbook never started:", ""]
        out += [f"- {i}. {inline(t)}" for i, t in missing]
        return [*out, ""]

    def _timeline(self) -> list[str]:
        out = [
            "## Timeline",
            "",
            "| Step | Block | Target | Start (UTC) | Duration | Exit | Decisions |",
            "|---|---|---|---|---|---|---|",
        ]
        for a in self.timeline:
            if isinstance(a, _Bake):
                out.append(_bake_row(a))
                continue
            if isinstance(a, _Settled):  # an incident lead reads the skips here too
                e = a.event
                verb = "marked done" if e["type"] == "block.mark" else "skipped"
                why = f"{verb} by {e.get('by', '?')}: {e.get('reason') or ''}".rstrip(": ")
                cells = (_step_label(a.step), f"`{e['block']}`", "", clock(e.get("time")))
                row = (*cells, "-", verb, "; ".join([*a.decided, why]))
                out.append("| " + " | ".join(cell(x) for x in row) + " |")
                continue
            end = a.end
            exit_ = "running / unknown" if end is None else str(end.get("status", end.get("exit")))
            name = a.block + (f" (attempt {a.attempt})" if a.attempt > 1 else "")
            out.append(
                "| "
                + " | ".join(
                    cell(x)
                    for x in (
                        _step_label(a.step),
                        f"`{name}`",
                        a.start.get("target", "local"),
                        clock(a.start.get("time")),
                        seconds(end["duration"]) if end else "-",
                        exit_,
                        "; ".join(a.decisions),
                    )
                )
                + " |"
            )
        if not self.attempts:
            out.append("| | | | | | nothing ran | |")
        return out

    def _notifications(self) -> list[str]:
        """Who was told what, and whether it arrived: one row per message and webhook."""
        records = [e for e in self.events if e["type"] == "notify"]
        if not records:
            return []
        out = ["## Notifications", ""]
        out += [
            f"- webhook {e['hook']} (line {e['line']}) was off: {inline(e['error'])}"
            for e in records
            if e["result"] == "off"
        ]
        last: dict[tuple[int, int], dict[str, Any]] = {}
        for e in records:
            if e["result"] != "off":
                last[(e["hook"], e["message"])] = e
        if last:
            out += [
                "",
                "| Message | Event | Webhook | Result | Attempts | Last try (UTC) |",
                "|---|---|---|---|---|---|",
            ]
            for (hook, number), e in sorted(last.items(), key=lambda kv: kv[0][::-1]):
                result = e["result"] + (f": {e['error']}" if e.get("error") else "")
                cells = (str(number), e["event"], f"{hook}: {e['to']}", result,
                         str(e["attempt"]), clock(e.get("time")))  # fmt: skip
                out.append("| " + " | ".join(cell(c) for c in cells) + " |")
        return [*out, ""]

    def _step(self, step: _Step) -> list[str]:
        heading = "Rollback" if step.index == 0 else f"{step.index}. {step.title}"
        out = [f"## {inline(heading)}", ""]
        for kind, item in step.items:
            if kind == "tick":
                mark = "x" if item["result"] == "ticked" else " "
                why = f" (skipped: {inline(item['reason'])})" if item.get("reason") else ""
                out.append(f"- [{mark}] {inline(item['text'])}{why} ({item.get('by', '?')})")
            elif kind == "text":
                out += ["", inline(item), ""]
            elif kind == "bake":
                out += self._bake(item)
            elif kind == "skip":
                e, decided = item
                verb = "marked done" if e["type"] == "block.mark" else "skipped"
                extra = f" [{'; '.join(decided)}]" if decided else ""
                reason = inline(f"{e.get('reason') or ''}{extra}")
                out += ["", f"`{e['block']}` {verb} by {e.get('by', '?')}: {reason}", ""]
            else:
                out += self._attempt(item, away=item.step not in (None, step.index))
        return [*out, ""]

    def _bake(self, b: _Bake) -> list[str]:
        """A bake: how it ended, its decisions, and each failed health run in full."""
        s, end = b.start, b.end
        checks = ", ".join(f"`{c}`" for c in s.get("checks", [])) or "no health check"
        if end is None:
            result = "**still baking when the record ends**"
        else:
            rounds = end.get("rounds", 0)
            result = f"**{end['result']}** after {rounds} round{'s' * (rounds != 1)}"
            result += f" in {span(end['elapsed'])}" if "elapsed" in end else ""
        hosts = ", ".join(s.get("hosts", [])) or "no host passed"
        out = [
            "",
            f"### Bake of `{s['block']}`",
            "",
            f"After batch {s['batch']}/{s['of']} ({inline(hosts)}): {result}."
            f" Bake {span(s['seconds'])}, health every {span(s['interval'])}: {checks}.",
        ]
        failing = [r for r in b.runs if r.end is None or r.end.get("exit") != 0]
        passed = len(b.runs) - len(failing)
        out += ["", f"Health runs: {passed} passed, {len(failing)} failed or unfinished."]
        if b.decisions:
            out += ["", "Decisions: " + inline("; ".join(b.decisions))]
        for run in failing:
            out += self._attempt(run, level="####")
        return out

    def _attempt(self, a: _Attempt, level: str = "###", away: bool = False) -> list[str]:
        """``away``: reported in a step that is not its own (run early from the palette)."""
        end = a.end
        status = (
            "still running when the record ends: outcome unknown"
            if end is None
            else end.get("status", "")
        )
        host = a.start.get("host")
        title = f"{level} `{a.block}`" + (f" on {host}" if host else "")
        baked = a.start.get("bake")
        if baked:
            title += f", bake round {baked['round']} after batch {baked['batch']}"
        else:
            title += f" attempt {a.attempt}" if a.attempt > 1 else ""
        title += f" (of step {a.step}, run early)" if away else ""
        out = [
            "",
            title,
            "",
            f"On {a.start.get('target', 'local')} with `{a.start.get('shell', 'sh')}`, {status}.",
        ]
        if a.decisions:
            out += ["", "Decisions: " + inline("; ".join(a.decisions))]
        command = a.start.get("command", "")
        if (a.block, command) in self.printed:
            out += ["", "The same script as above."]
        else:
            self.printed.add((a.block, command))
            out += ["", *fence(command, "sh")]
        if a.output:
            out += ["", *output_block(bytes(a.output), a.binary)]
        elif end is not None:
            out += ["", "No output."]
        return out


def _bake_row(b: _Bake) -> str:
    s, end = b.start, b.end
    if end is None:
        result = "still baking / unknown"
    else:
        rounds = end.get("rounds", 0)
        result = f"bake {end['result']}, {rounds} round{'s' * (rounds != 1)}"
        failed = end.get("failed") or {}
        result += "".join(f"; {k}: {v}" for k, v in failed.items())
    cells = (
        _step_label(b.step),
        f"`{s['block']}` bake after batch {s['batch']}/{s['of']}",
        ", ".join(s.get("hosts", [])),
        clock(s.get("time")),
        span(end["elapsed"]) if end and "elapsed" in end else "-",
        result,
        "; ".join(b.decisions),
    )
    return "| " + " | ".join(cell(x) for x in cells) + " |"


def _step_label(index: int | None) -> str:
    """A timeline row's step: its number, or ``rollback`` (rollback blocks are step 0 here)."""
    return "" if index is None else "rollback" if index == 0 else str(index)


def _gate_text(e: dict[str, Any], asked: dict[str, Any] | None) -> str:
    """The answer, after the question as it was put and where the block was to run."""
    by = e.get("by", "?")
    question = ""
    if asked is not None and asked.get("gate") == e.get("gate"):
        where = f" ({asked['where']})" if asked.get("where") else ""
        question = f"“{asked.get('prompt', '')}”{where} "
    if e["gate"] == "type-to-confirm":
        typed = e.get("answer")
        verdict = "accepted" if e.get("accepted") else "refused"
        return f"{e['gate']}: {question}typed {typed!r} ({verdict}) by {by}"
    return f"{e['gate']}: {question}{e.get('answer')} by {by}"
