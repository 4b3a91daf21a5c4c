"""The plain terminal operator: No by default, exact typed text, secrets without echo."""

from __future__ import annotations

from collections import deque
from pathlib import Path

from runbook import launch
from runbook.engine.operator import TerminalOperator
from runbook.record.chain import read_lines

BOOK = """---
variables:
  TOKEN:
    prompt: API token
    secret: true
  ENVIRONMENT:
    choices: [staging, production]
---
## Go

- [ ] Ticket approved

```sh
#| confirm: Restart the cache?
echo restarting
```

```sh
#| type-to-confirm: $ENVIRONMENT
echo "deploying to $ENVIRONMENT with a ${#TOKEN}-character token"
```
"""


def test_terminal_prompts(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    answers = deque(
        ["prod", "production", "y", "", "s", "", "not during the freeze", "prod", "production"]
    )
    secrets = deque(["tok-123456"])
    prompts: list[str] = []
    secret_prompts: list[str] = []

    def read(prompt: str) -> str:
        prompts.append(prompt)
        return answers.popleft()

    def read_secret(prompt: str) -> str:
        secret_prompts.append(prompt)
        return secrets.popleft()

    book = tmp_path / "book.md"
    book.write_text(BOOK)
    done = launch.run(
        str(book),
        assignments=(),
        runs=tmp_path / "runs",
        argv=[],
        announce=lambda _: None,
        operator=TerminalOperator(read=read, read_secret=read_secret),
    )
    assert done.outcome.result == "ok", done.outcome
    assert secret_prompts == ["API token: "]
    assert prompts[0] == "ENVIRONMENT (staging/production): "
    assert "not one of: staging, production" in capsys.readouterr().out  # "prod" was refused
    assert prompts[3] == "Restart the cache? [y/N] "  # empty answer: the default, No
    assert prompts[4].endswith("[s]kip, abort [x]? ")
    assert "Type 'production' to go on" in prompts[7]
    events = [line.event for line in read_lines(done.transcript)]
    skip = next(e for e in events if e["type"] == "block.skip")
    assert (skip["block"], skip["reason"]) == ("go-1", "not during the freeze")
    out = "".join(e.get("text", "") for e in events if e["type"] == "output")
    assert out == "deploying to production with a 10-character token\n"
    assert all(b"tok-123456" not in p.read_bytes() for p in done.transcript.parent.iterdir())
    typed = [e for e in events if e["type"] == "gate.answer" and e["gate"] == "type-to-confirm"]
    assert [(e["answer"], e["accepted"]) for e in typed] == [("production", True)]


def test_the_command_is_printed_at_its_gate_not_again_before_each_batch(capsys) -> None:  # type: ignore[no-untyped-def]
    """Between batches the canary's output matters: the 17-line script must not push it
    off the screen again."""
    from runbook.engine.operator import _show

    lines: list[str] = []
    command = "\n".join(f"step {i}" for i in range(17)) + "\n"
    base = {"type": "gate.ask", "block": "deploy", "command": command, "where": "on web1, web2"}
    _show({**base, "gate": "confirm", "prompt": "Deploy?"}, lines.append, {})
    assert lines[0] == "--- deploy will run on web1, web2:" and len(lines) == 18
    lines.clear()
    _show({**base, "gate": "batch", "prompt": "Go on with batch 2/3: web2?"}, lines.append, {})
    assert lines == []
