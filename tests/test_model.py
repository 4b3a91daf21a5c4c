"""What the parser builds: every element of the format, with its source line."""

from __future__ import annotations

import pytest

from runbook.format.model import Amount, Duration
from runbook.format.parser import parse_text

KITCHEN_SINK = """\
---
title: Kitchen sink
owner: ops
shell: bash
cwd: /srv
variables:
  ENV:
    choices: [staging, production]
    default: staging
hosts:
  web: [web-1, deploy@web-2:2222]
ssh:
  user: deploy
  port: 2200
---

# Ignored because the front matter has a title

Intro prose.

## First step

- [ ] Ticket approved
- [x] Pre-ticked in the source
  - [ ] Nested item

> [!WARNING]
> Drains hosts.
> Second line.

> [!NOTE]
> A note.

~~~~sh
#| on: web
#| serial: 1, 50%
#| max-fail: 10%
#| confirm: Go to $ENV?
#| timeout: 1h30m
#| retries: 3
#| retry-delay: 2s
#| continue-on-error: true
#| shell: zsh
#| cwd: /tmp
echo "one"
~~~~

```console
$ echo shown, never run
```

```zsh {"name": "json-form", "on": "web", "timeout": "5m"}
echo two
```

```shell { name=kv-form on=web timeout=5m }
echo three
```

```bash {"interpreter": "dash", "excludeFromRunAll": true}
echo optional
```

```sh
#| run: false
echo documentation
```

```sh
#| rollback: true
echo undo
```

## First step

```bash
#| capture: OUT
echo captured
```

```bash
echo "$OUT"
```
"""


@pytest.fixture(scope="module")
def rb():  # type: ignore[no-untyped-def]
    result = parse_text(KITCHEN_SINK, "sink.md")
    assert result.diagnostics == ()
    assert result.runbook is not None
    return result.runbook


def test_front_matter(rb) -> None:  # type: ignore[no-untyped-def]
    assert (rb.title, rb.title_line, rb.owner, rb.shell, rb.cwd) == (
        "Kitchen sink",
        1,
        "ops",
        "bash",
        "/srv",
    )
    env = rb.variable("ENV")
    assert env is not None and (env.choices, env.default, env.line) == (
        ("staging", "production"),
        "staging",
        7,
    )
    web = rb.group("web")
    assert web is not None and web.line == 11
    assert [(h.user, h.hostname, h.port) for h in web.hosts] == [
        (None, "web-1", None),
        ("deploy", "web-2", 2222),
    ]
    assert (rb.ssh.user, rb.ssh.port, rb.ssh.known_hosts) == ("deploy", 2200, None)


def test_steps_keep_lines_and_get_github_anchors(rb) -> None:  # type: ignore[no-untyped-def]
    assert [(s.index, s.title, s.slug, s.line) for s in rb.steps] == [
        (1, "First step", "first-step", 21),
        (2, "First step", "first-step-1", 74),
    ]
    assert rb.steps[0].end_line == 73


def test_checklist_and_alerts(rb) -> None:  # type: ignore[no-untyped-def]
    step = rb.steps[0]
    assert [(c.text, c.line, c.checked_in_source) for c in step.checklist] == [
        ("Ticket approved", 23, False),
        ("Pre-ticked in the source", 24, True),
        ("Nested item", 25, False),
    ]
    assert [(a.kind, a.text, a.line, a.prominent) for a in step.alerts] == [
        ("WARNING", "Drains hosts.\nSecond line.", 27, True),
        ("NOTE", "A note.", 31, False),
    ]


def test_every_option_from_hash_pipe_lines(rb) -> None:  # type: ignore[no-untyped-def]
    block = rb.steps[0].blocks[0]
    assert (block.name, block.line, block.code_line, block.language) == (
        "first-step-1",
        34,
        45,
        "sh",
    )
    assert block.code == 'echo "one"\n'
    o = block.options
    assert o.on == "web"
    assert o.serial == (Amount(1), Amount(50, percent=True))
    assert o.max_fail == Amount(10, percent=True)
    assert o.confirm == "Go to $ENV?"
    assert o.timeout == Duration("1h30m", 5400.0)
    assert (o.retries, o.retry_delay.seconds, o.continue_on_error) == (3, 2.0, True)
    assert (o.shell, o.cwd, o.rollback, o.run, o.manual) == ("zsh", "/tmp", False, True, False)


def test_json_and_key_value_attributes_give_the_same_options(rb) -> None:  # type: ignore[no-untyped-def]
    json_form, kv_form = rb.steps[0].blocks[1], rb.steps[0].blocks[2]
    assert (json_form.name, json_form.language) == ("json-form", "zsh")
    assert (kv_form.name, kv_form.language) == ("kv-form", "shell")
    assert json_form.options.on == kv_form.options.on == "web"
    assert json_form.options.timeout == kv_form.options.timeout == Duration("5m", 300.0)


def test_non_shell_blocks_are_not_blocks_and_runme_attributes_map(rb) -> None:  # type: ignore[no-untyped-def]
    blocks = rb.steps[0].blocks
    assert all(b.language in ("sh", "bash", "shell", "zsh") for b in blocks)
    assert "shown, never run" not in "".join(b.code for b in blocks)
    optional = blocks[3]
    assert (optional.options.shell, optional.options.manual) == ("dash", True)
    assert not optional.runs_forward


def test_run_false_and_rollback(rb) -> None:  # type: ignore[no-untyped-def]
    step = rb.steps[0]
    doc, undo = step.blocks[4], step.blocks[5]
    assert (doc.runs, doc.runs_forward) == (False, False)
    assert undo.options.rollback and step.rollback_blocks == (undo,)
    assert undo not in step.forward_blocks
    assert [b.name for b in rb.steps[1].blocks] == ["first-step-1-1", "first-step-1-2"]
    assert rb.steps[1].blocks[0].options.capture == "OUT"


def test_crlf_and_bom_keep_the_same_model() -> None:
    plain = parse_text(KITCHEN_SINK).runbook
    crlf_text = "\ufeff" + KITCHEN_SINK.replace("\n", "\r\n")
    crlf = parse_text(crlf_text).runbook
    assert plain is not None and crlf is not None
    assert crlf.steps == plain.steps
    assert crlf.variables == plain.variables


BAKED = """\
---
hosts:
  web: [web-1, web-2, web-3]
---

## Roll out

```sh
#| on: web
#| health: true
precheck
```

```sh {"on": "web", "serial": "1", "bake": "1m30s", "health-interval": "500ms"}
deploy
```

```sh
#| on: web
#| health: yes
#| run: false
documentation
```

```sh
#| rollback: true
#| on: web
undo
```

```sh
#| on: web
#| bake: 5m
#| serial: 1
other
```
"""


def test_bake_options_and_the_health_checks_a_bake_runs() -> None:
    result = parse_text(BAKED)
    assert [d.message for d in result.diagnostics] == []
    assert result.runbook is not None
    step = result.runbook.steps[0]
    precheck, deploy, doc, _, other = step.blocks
    assert (precheck.options.health, precheck.options.bake) == (True, None)
    assert precheck.options.health_interval == Duration("15s", 15.0), "the default"
    assert deploy.options.bake == Duration("1m30s", 90.0)
    assert deploy.options.health_interval == Duration("500ms", 0.5)
    assert not deploy.options.health
    # Written before the baked block counts too; documentation-only and rollback blocks don't.
    assert step.health_checks(deploy) == (precheck,)
    assert step.health_checks(other) == (precheck,)
    assert doc.options.health and doc not in step.health_checks(deploy)
