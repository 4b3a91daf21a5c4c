"""The command-line contract: exit codes, help, version, input encodings, secrets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli
from runbook import __version__
from runbook.cli import COMMANDS

CLEAN = """---
variables:
  TOKEN:
    secret: true
  GROUP:
    choices: [web, db]
    default: web
hosts:
  web: [web-1, web-2]
  db: [db-1]
---
# Title

## Only step

```sh
#| on: $GROUP
#| confirm: Go to $GROUP?
echo "$TOKEN" | ./use-token
```
"""


def test_version() -> None:
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"runbook {__version__}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_has_help(command: str) -> None:
    proc = run_cli(command, "--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith(f"usage: runbook {command}")


def test_no_command_is_a_usage_error() -> None:
    proc = run_cli()
    assert proc.returncode == 2
    assert "usage:" in proc.stderr


def test_missing_file_is_a_usage_error_without_traceback() -> None:
    proc = run_cli("check", "does-not-exist.md")
    assert proc.returncode == 2
    assert "does-not-exist.md: cannot read: No such file or directory" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("word", "hint"),
    [
        ("verify", "did you mean `runbook transcript verify FILE`?"),
        ("render", "did you mean `runbook transcript render FILE`?"),
        ("report", "did you mean `runbook transcript render FILE`?"),
        ("chek", "did you mean `runbook check`?"),
    ],
)
def test_a_mistyped_command_is_named_not_opened(word: str, hint: str) -> None:
    proc = run_cli(word, "runs/x/transcript.jsonl")
    assert proc.returncode == 2
    assert proc.stderr == f"runbook: {word!r} is neither a command nor a file; {hint}\n"


def test_a_file_named_like_a_command_still_opens(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "verify").write_text("# Title\n\n## Step\n\n```sh\ntrue\n```\n")
    proc = subprocess.run(
        [sys.executable, "-m", "runbook", "verify"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert "neither a command nor a file" not in proc.stderr
    assert "runbook open:" in proc.stderr  # the console's own refusal: no terminal here


def test_directory_is_a_usage_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    proc = run_cli("plan", str(tmp_path))
    assert proc.returncode == 2
    assert "is a directory" in proc.stderr


def test_check_reports_errors_with_exit_one(write) -> None:  # type: ignore[no-untyped-def]
    path = write("## Step\n\n```sh\n#| timout: 5m\ntrue\n```\n")
    proc = run_cli("check", str(path))
    assert proc.returncode == 1
    assert proc.stdout == f"{path}:4:4: error: unknown option `timout` (did you mean `timeout`?)\n"
    assert "1 error, 0 warnings in 1 file" in proc.stderr


def test_warnings_alone_exit_zero(write) -> None:  # type: ignore[no-untyped-def]
    path = write("```sh\ntrue\n```\n\n## Step\n\nNothing to run.\n")
    proc = run_cli("check", str(path))
    assert proc.returncode == 0
    assert "warning: shell block outside any `##` step" in proc.stdout
    quiet = run_cli("check", "--no-warnings", "-q", str(path))
    assert quiet.returncode == 0
    assert quiet.stdout == quiet.stderr == ""


def test_invalid_utf8_names_line_and_byte_offset(write) -> None:  # type: ignore[no-untyped-def]
    path = write(b"# Title\n\n## Step\nsome \xff text\n")
    proc = run_cli("check", str(path))
    assert proc.returncode == 1
    assert proc.stdout == f"{path}:4:6: error: invalid UTF-8: byte 0xff at byte offset 22\n"


def test_crlf_and_bom_are_accepted(write) -> None:  # type: ignore[no-untyped-def]
    text = (
        "\ufeff---\r\ntitle: T\r\n---\r\n## Step\r\n\r\n```sh\r\n#| timeout: 5m\r\ntrue\r\n```\r\n"
    )
    path = write(text.encode("utf-8"))
    proc = run_cli("plan", str(path), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    block = plan["steps"][0]["blocks"][0]
    assert block["line"] == 6
    assert block["timeout"] == "5m"
    assert block["command"] == "true\n"
    assert run_cli("check", str(path)).returncode == 0


def test_plan_never_prints_a_secret(write) -> None:  # type: ignore[no-untyped-def]
    path = write(CLEAN)
    for fmt in ("text", "json"):
        proc = run_cli("plan", str(path), "--var", "TOKEN=s3cr3t-value", "--format", fmt)
        assert proc.returncode == 0, proc.stderr
        assert "s3cr3t-value" not in proc.stdout + proc.stderr
    assert "********" in run_cli("plan", str(path), "--var", "TOKEN=s3cr3t-value").stdout


def test_plan_resolves_on_from_a_variable(write) -> None:  # type: ignore[no-untyped-def]
    path = write(CLEAN)
    proc = run_cli("plan", str(path), "--var", "GROUP=db", "--format", "json")
    block = json.loads(proc.stdout)["steps"][0]["blocks"][0]
    assert block["target"]["hosts"] == ["db-1"]
    assert block["gates"][0]["text"] == "Go to db?"


@pytest.mark.parametrize(
    ("var", "message"),
    [
        ("GROUP=cache", "GROUP='cache' is not one of: web, db"),
        ("GRUOP=web", "--var GRUOP: the runbook declares no such variable (did you mean `GROUP`?)"),
        ("GROUP", "--var GROUP: no value: give GROUP=VALUE, or set GROUP in the environment"),
        ("=web", "--var '=web': expected NAME=VALUE, or a NAME in the environment"),
    ],
)
def test_plan_rejects_bad_vars(write, var: str, message: str) -> None:  # type: ignore[no-untyped-def]
    proc = run_cli("plan", str(write(CLEAN)), "--var", var)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_secret_can_come_from_the_environment_and_stay_off_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value on a command line shows in ``ps`` and the shell's history: ``--var NAME``
    alone takes the environment's NAME, and a headless run missing a secret says so."""
    book = tmp_path / "book.md"
    book.write_text(
        "---\nvariables:\n  API_TOKEN:\n    secret: true\n    required: true\n---\n"
        '## S\n\n```sh\necho "len=${#API_TOKEN} $API_TOKEN"\n```\n'
    )
    runs = tmp_path / "runs"
    monkeypatch.delenv("API_TOKEN", raising=False)
    missing = run_cli("run", str(book), "--yes", "--runs-dir", str(runs))
    assert "variable API_TOKEN has no value: set API_TOKEN in the environment and give" in (
        missing.stderr
    )
    unset = run_cli("run", str(book), "--yes", "--runs-dir", str(runs), "--var", "API_TOKEN")
    assert unset.returncode == 2 and "set API_TOKEN in the environment" in unset.stderr
    monkeypatch.setenv("API_TOKEN", "tok-s3cr3t-value")
    proc = run_cli("run", str(book), "--yes", "--runs-dir", str(runs), "--var", "API_TOKEN")
    assert proc.returncode == 0, proc.stderr
    assert "len=16 ********" in proc.stdout and "s3cr3t" not in proc.stdout + proc.stderr
    for transcript in runs.glob("*/transcript.jsonl"):
        assert b"s3cr3t" not in transcript.read_bytes()


def test_plan_of_an_invalid_runbook_exits_one(write) -> None:  # type: ignore[no-untyped-def]
    path = write("## Step\n\n```sh\n#| on: nowhere\ntrue\n```\n")
    proc = run_cli("plan", str(path))
    assert proc.returncode == 1
    assert f"{path}:4:8: error: `on:` names `nowhere`" in proc.stderr
    assert proc.stdout == ""


def test_secret_pattern_mismatch_does_not_echo_the_value(write) -> None:  # type: ignore[no-untyped-def]
    text = CLEAN.replace("secret: true", "secret: true\n    pattern: 'tok_[a-z]+'")
    proc = run_cli("plan", str(write(text)), "--var", "TOKEN=wrong-secret")
    assert proc.returncode == 2
    assert "wrong-secret" not in proc.stderr
    assert "TOKEN=******** does not match" in proc.stderr


def test_control_character_in_front_matter_is_a_diagnostic(write) -> None:  # type: ignore[no-untyped-def]
    path = write(b"---\ntitle: a\x07b\n---\n## Step\n")
    proc = run_cli("check", str(path))
    assert proc.returncode == 1
    expected = f"{path}:2:9: error: invalid YAML in front matter: character U+0007 is not allowed\n"
    assert proc.stdout == expected


def test_plan_names_a_target_that_a_given_value_breaks(write) -> None:  # type: ignore[no-untyped-def]
    text = (
        "---\nvariables:\n  G:\n    default: web\nhosts:\n  web: [w1]\n---\n"
        "## S\n\n```sh\n#| on: $G\ntrue\n```\n"
    )
    path = write(text)
    assert run_cli("plan", str(path)).returncode == 0
    proc = run_cli("plan", str(path), "--var", "G=wbe")
    assert proc.returncode == 1
    assert f"{path}:11: with G=wbe, `on:` names `wbe`, which is no host group" in proc.stderr


def test_runbook_file_opens_the_console_and_reports_bad_input_first(write) -> None:  # type: ignore[no-untyped-def]
    bad = write("---\ntitle: [\n---\n", name="bad.md")
    result = run_cli(str(bad))
    assert result.returncode == 1
    assert f"runbook open: {bad}:2:9: error: invalid YAML" in result.stderr
    result = run_cli(str(bad.parent / "missing.md"))
    assert result.returncode == 2 and "cannot read" in result.stderr
    good = write(CLEAN, name="good.md")
    result = run_cli(str(good), "--var", "NOPE=1")
    assert result.returncode == 2 and "--var NOPE: the runbook declares no such" in result.stderr
    result = run_cli(str(good))  # no terminal here: the console refuses, nothing runs
    assert result.returncode == 2
    assert "the console needs a terminal; `runbook run` runs without one" in result.stderr
    assert "Traceback" not in result.stderr


BAKED = """---
variables:
  GROUP:
    prompt: Which group
hosts:
  web: [web-1, web-2, web-3, web-4]
  lb: [lb-1]
---

## Roll out

```sh
#| name: deploy
#| on: web
#| serial: 1, 50%, 100%
#| bake: 5m
#| health-interval: 20s
./deploy.sh
```

```sh
#| name: healthz
#| on: web
#| health: true
curl -fsS localhost/healthz
```

```sh
#| name: lb-view
#| on: lb
#| health: true
./lb-status.sh
```

## Later

```sh
#| name: elsewhere
#| on: $GROUP
#| serial: 1
#| bake: 1m
./deploy.sh
```
"""


def test_plan_shows_each_bake_between_batches(write) -> None:  # type: ignore[no-untyped-def]
    path = write(BAKED)
    text = run_cli("plan", str(path))
    assert text.returncode == 0, text.stderr
    bake = (
        "        then bake 5m, health every 20s: healthz, lb-view (a failing check stops the"
        " rollout); then confirm the next batch\n"
    )
    assert (
        "      batch 1/3: web-1\n"
        + bake
        + "      batch 2/3: web-2, web-3\n"
        + bake
        + "      batch 3/3: web-4\n      stops at the first failed host (max-fail 0)\n"
    ) in text.stdout
    assert text.stdout.count("health check: every bake of its step runs it too") == 2
    # A target known only at run time: the bake is still said, without batches.
    assert (
        "      after each batch but the last: bake 1m (no health check: it only waits)\n"
        in text.stdout
    )

    plan = json.loads(run_cli("plan", str(path), "--format", "json").stdout)
    blocks = {b["name"]: b for s in plan["steps"] for b in s["blocks"]}
    assert blocks["deploy"]["bake"] == {
        "duration": "5m",
        "seconds": 300.0,
        "interval": "20s",
        "interval_seconds": 20.0,
        "checks": ["healthz", "lb-view"],
    }
    assert (blocks["deploy"]["health"], blocks["healthz"]["health"]) == (False, True)
    assert blocks["healthz"]["bake"] is None
    assert blocks["elsewhere"]["bake"]["checks"] == []


def test_an_ssh_config_that_cannot_be_read_or_parsed_says_so(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Unreadable: refused before anything is recorded (exit 2). Not SSH's syntax: the
    host fails, on record, with the file and line. Both were a traceback at the first
    host, and the first left a run without its end."""
    book = tmp_path / "b.md"
    book.write_text(
        "---\nhosts:\n  web: [web1]\n---\n\n# T\n\n## S\n\n```sh\n#| on: web\ntrue\n```\n"
    )
    runs = tmp_path / "runs"
    missing = tmp_path / "nowhere" / "config"
    proc = run_cli("run", str(book), "--yes", "--runs-dir", str(runs), "--ssh-config", str(missing))
    assert proc.returncode == 2, proc.stderr
    assert f"--ssh-config {missing}: cannot read: No such file or directory" in proc.stderr
    assert "Traceback" not in proc.stderr and not runs.exists()
    bad = tmp_path / "config"
    bad.write_text("Host *\n  Port notanumber\n")
    proc = run_cli("run", str(book), "--yes", "--runs-dir", str(runs), "--ssh-config", str(bad))
    assert proc.returncode == 1, proc.stderr
    why = f"its SSH config: {bad} line 2: Invalid Port integer value: notanumber"
    assert f"web1 ({why})" in proc.stderr and f"<-- s-1 on web1: {why} (" in proc.stdout
    assert "web1: web1" not in proc.stdout and "(web1:" not in proc.stderr  # named once
    assert "Traceback" not in proc.stderr
    (transcript,) = runs.glob("*/transcript.jsonl")
    end = json.loads(transcript.read_text().splitlines()[-1])
    assert (end["type"], end["result"]) == ("run.end", "aborted")
    events = [json.loads(line) for line in transcript.read_text().splitlines()]
    (host_end,) = [e for e in events if e["type"] == "block.end"]
    assert (host_end["host"], host_end["status"]) == ("web1", why)
