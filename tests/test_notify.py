"""Webhook notifications: what `check` says, what a loopback webhook receives, what is recorded.

Every delivery goes to a real HTTP server on 127.0.0.1 started by the test; nothing else
is ever contacted.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import signal
import socket
from pathlib import Path
from typing import Any

import pytest
from webhook_server import WebhookServer, self_signed

from conftest import (
    crash_mid_block,
    events,
    resume_run,
    run_cli,
    run_inline,
    start_cli,
    wait_for,
)
from runbook.engine.operator import Decision, HeadlessOperator, ScriptedOperator
from runbook.format.parser import parse_text
from runbook.record.chain import verify
from runbook.record.report import render_run
from runbook.transports.local import LocalTransport

BODY_KEYS = {
    "text",
    "head",
    "event",
    "status",
    "runbook",
    "run",
    "resumed",
    "operator",
    "step",
    "block",
    "host",
    "message",
    "transcript",
    "at",
}


ONE = "## a\n\n```sh\ntrue\n```\n"
"""A step with one block: a run with nothing to run is refused before it starts."""


def book(notify: str, body: str, variables: str = "") -> str:
    return f"---\ntitle: Ship it\n{variables}notify:\n{notify}---\n# Ship it\n{body}"


SIMPLE = """
## Prepare

```sh
#| name: prepare
echo preparing
```

```sh
#| name: unprepare
#| rollback: true
echo unpreparing
```

## Switch

```sh
#| name: switch
#| confirm: Switch the traffic?
echo switching; exit 3
```
"""


def notify_events(path: Path) -> list[dict[str, Any]]:
    return [e for e in events(path) if e["type"] == "notify"]


def diagnostics(text: str) -> list[str]:
    return [d.format("b.md") for d in parse_text(text, "b.md").diagnostics]


# ---------------------------------------------------------------- check


def test_check_names_the_bad_url_event_and_setting() -> None:
    text = book(
        "  - url: ftp://chat.example.com/hook\n"
        "  - url: https://chat.example.com/hook\n"
        "    events: [run-start, step-dne]\n"
        "    timout: 5s\n"
        "  - url: https://user:pw@chat.example.com/hook\n"
        "  - events: all\n",
        "## a\n",
    )
    found = diagnostics(text)
    assert (
        "b.md:4:10: error: notify: `ftp://chat.example.com/hook` is not an http:// or https:// URL"
        in found
    )
    assert any(
        d.startswith(
            "b.md:6:25: error: notify: unknown event `step-dne` (did you mean `step-done`?)"
        )
        for d in found
    ), found
    assert "b.md:7:5: error: notify: unknown setting `timout` (did you mean `timeout`?)" in found
    assert any("b.md:8:10: error: notify:" in d and "put them in `headers:`" in d for d in found)
    assert "b.md:9:5: error: notify: a webhook needs a `url:`" in found


def test_check_wants_declared_variables_and_secret_credentials() -> None:
    text = book(
        "  - url: $HOOK\n"
        "    headers:\n"
        "      Authorization: Bearer $TOKN\n"
        "  - url: http://chat.example.com/x\n"
        "    headers:\n"
        "      X-Api-Key: abc123\n",
        "## a\n",
        variables="variables:\n  HOOK:\n    secret: true\n  TOKEN:\n    secret: true\n",
    )
    found = diagnostics(text)
    assert any("b.md:9:5: error: notify: `$TOKN` is not a declared variable" in d for d in found)
    assert any("b.md:12:10: warning: notify:" in d and "plain http" in d for d in found), found
    assert any(
        "b.md:12:5: warning: notify: header `X-Api-Key` holds a credential" in d for d in found
    )


def test_check_cli_exits_1_with_positions(tmp_path: Path) -> None:
    path = tmp_path / "b.md"
    path.write_text(book("  - url: https://chat.example.com/hook\n    events: [gate]\n", "## a\n"))
    proc = run_cli("check", str(path))
    assert proc.returncode == 1
    assert f"{path}:5:14: error: notify: unknown event `gate`" in proc.stdout


# ---------------------------------------------------------------- delivery


def test_every_event_kind_reaches_the_webhook_with_the_documented_body(
    tmp_path: Path, webhook: WebhookServer
) -> None:
    text = book(f"  - url: {webhook.url}/hooks/deploys\n", SIMPLE)
    operator = ScriptedOperator(
        [
            ("confirm", True),  # the switch's gate
            ("choose", Decision("rollback")),  # it fails
            ("confirm", True),  # run the rollback block
        ]
    )
    finished = run_inline(tmp_path, text, operator)
    assert finished.outcome.result == "rolled-back"
    assert verify(finished.transcript).ok

    kinds = [b["event"] for b in webhook.bodies()]
    assert kinds == [
        "run-start",
        "step-done",
        "gate-waiting",
        "failure",
        "rollback",
        "gate-waiting",
        "run-end",
    ]
    run = events(finished.transcript)[0]["run"]
    for request in webhook.requests:
        assert request.path == "/hooks/deploys"
        assert request.headers["Content-Type"].startswith("application/json")
        assert set(request.body) == BODY_KEYS
        assert request.body["run"] == run
        assert request.body["operator"] == f"{getpass.getuser()}@{socket.gethostname()}"
        assert request.body["transcript"] == str(finished.transcript.resolve())
        assert request.body["runbook"]["title"] == "Ship it"
        assert request.body["text"]
    # Each message witnesses the chain's head when it was made: that line, that hash.
    lines = finished.transcript.read_bytes().splitlines(keepends=True)
    for body in webhook.bodies():
        seq, sha = body["head"]["seq"], body["head"]["sha256"]
        assert hashlib.sha256(lines[seq - 1]).hexdigest() == sha
        assert body["text"].endswith(f" · record `{seq}:{sha}`")
    by_kind = {b["event"]: b for b in reversed(webhook.bodies())}  # the first of each kind
    assert by_kind["run-start"]["status"] == "started"
    assert by_kind["step-done"]["step"] == {"index": 1, "title": "Prepare", "count": 2}
    waiting = by_kind["gate-waiting"]
    assert (waiting["status"], waiting["block"], waiting["message"]) == (
        "waiting",
        "switch",
        "Switch the traffic?",
    )
    assert waiting["step"]["title"] == "Switch"
    assert "waiting for" in waiting["text"] and "Switch the traffic?" in waiting["text"]
    failure = by_kind["failure"]
    assert (failure["status"], failure["block"]) == ("failed", "switch")
    assert "exit 3" in failure["message"]
    assert by_kind["rollback"]["status"] == "rolling-back"
    end = by_kind["run-end"]
    assert end["status"] == "rolled-back" and end["message"].startswith("rolled back after")

    # Every message is recorded as delivered, in the order it was sent, before run.end.
    records = notify_events(finished.transcript)
    assert [(r["message"], r["event"], r["result"], r["status"]) for r in records] == [
        (n, kind, "delivered", 200) for n, kind in enumerate(kinds, start=1)
    ]
    assert all(r["to"] == webhook.url and r["hook"] == 1 for r in records)
    assert events(finished.transcript)[-1]["type"] == "run.end"


def test_events_filter_and_auto_approved_gates_wait_for_nobody(
    tmp_path: Path, webhook: WebhookServer
) -> None:
    text = book(f"  - url: {webhook.url}/a\n", SIMPLE.replace("exit 3", "true"))
    finished = run_inline(tmp_path, text, HeadlessOperator(yes=True))
    assert finished.outcome.result == "ok"
    assert [b["event"] for b in webhook.bodies()] == [
        "run-start",
        "step-done",
        "step-done",
        "run-end",
    ]

    webhook.requests.clear()
    text = book(f"  - url: {webhook.url}/b\n    events: [run-end]\n", SIMPLE.replace("exit 3", ""))
    finished = run_inline(tmp_path, text, HeadlessOperator(yes=True))
    assert [(b["event"], b["status"]) for b in webhook.bodies()] == [("run-end", "ok")]
    assert [r["message"] for r in notify_events(finished.transcript)] == [1]


def test_a_failing_webhook_is_retried_recorded_and_never_fails_the_run(
    tmp_path: Path, webhook: WebhookServer
) -> None:
    webhook.mode = "fail"
    text = book(
        f"  - url: {webhook.url}/hook\n    events: [run-start]\n    retries: 1\n",
        SIMPLE.replace("exit 3", "true"),
    )
    finished = run_inline(tmp_path, text, HeadlessOperator(yes=True))
    assert finished.outcome.result == "ok" and finished.outcome.exit_code == 0
    records = notify_events(finished.transcript)
    assert [(r["attempt"], r["result"], r["status"]) for r in records] == [
        (1, "retry", 500),
        (2, "failed", 500),
    ]
    assert records[-1]["error"] == "HTTP 500 Internal Server Error: chat is down"
    assert len(webhook.requests) == 2
    assert verify(finished.transcript).ok
    report = render_run(finished.transcript)
    assert (
        f"| 1 | run-start | 1: {webhook.url} | failed: HTTP 500 Internal Server Error:"
        " chat is down | 2 |"
    ) in report


def test_a_hanging_webhook_delays_nothing_and_is_recorded(
    tmp_path: Path, webhook: WebhookServer
) -> None:
    webhook.mode = "hang"
    text = book(
        f"  - url: {webhook.url}/hook\n    timeout: 2s\n    retries: 0\n",
        SIMPLE.replace("exit 3", "true"),
    )
    finished = run_inline(tmp_path, text, HeadlessOperator(yes=True))
    assert finished.outcome.result == "ok"
    kinds = [e["type"] for e in events(finished.transcript)]
    # The run went through every step while the first message was still unanswered.
    first_record = kinds.index("notify")
    assert kinds.count("step.done") == 2
    assert max(i for i, k in enumerate(kinds) if k == "step.done") < first_record
    records = notify_events(finished.transcript)
    assert records[0]["event"] == "run-start"
    assert (records[0]["result"], records[0]["error"]) == ("failed", "no answer within 2s")
    # What could not be delivered by the end is recorded as abandoned, never lost.
    assert {r["result"] for r in records} <= {"failed", "abandoned"}
    assert {r["message"] for r in records} == {1, 2, 3, 4}
    note = next(e for e in events(finished.transcript) if e["type"] == "note")
    assert note["text"].startswith("waiting up to 1s more for")


def test_secrets_in_headers_url_and_body_never_reach_the_transcript(
    tmp_path: Path, webhook: WebhookServer
) -> None:
    token, key = "tok-5ec4e7-value", "k3y-5ec4e7"
    text = book(
        f"  - url: {webhook.url}/hooks/$HOOK_KEY\n"
        "    headers:\n"
        "      Authorization: Bearer $API_TOKEN\n",
        """
## Look

```sh
#| name: look
#| capture: SEEN
printf '%s' "$API_TOKEN"
```

```sh
#| name: use
#| confirm: Go on with $SEEN?
true
```
""",
        variables="variables:\n  API_TOKEN:\n    secret: true\n  HOOK_KEY:\n    secret: true\n",
    )
    operator = ScriptedOperator([("confirm", True)])
    finished = run_inline(tmp_path, text, operator, vars=(f"API_TOKEN={token}", f"HOOK_KEY={key}"))
    assert finished.outcome.result == "ok"
    # The webhook got what it needs: the key in its path, the token in its header ...
    assert {r.path for r in webhook.requests} == {f"/hooks/{key}"}
    assert {r.headers["Authorization"] for r in webhook.requests} == {f"Bearer {token}"}
    # ... but no body carries a secret (the gate's prompt showed the captured token).
    waiting = next(b for b in webhook.bodies() if b["event"] == "gate-waiting")
    assert waiting["message"] == "Go on with ********?"
    assert all(token.encode() not in r.raw and key.encode() not in r.raw for r in webhook.requests)
    # And no record of the run holds either, anywhere.
    for file in finished.transcript.parent.iterdir():
        data = file.read_bytes()
        assert token.encode() not in data and key.encode() not in data, file.name
    assert {r["to"] for r in notify_events(finished.transcript)} == {webhook.url}


def test_a_server_that_echoes_the_secret_path_does_not_put_it_on_record(
    tmp_path: Path, webhook: WebhookServer
) -> None:
    webhook.mode = "missing"
    hook = f"{webhook.url}/services/T0001/B0002/XyZsecretKEY"
    text = book(
        "  - url: $HOOK\n    events: [run-start]\n    retries: 0\n",
        ONE,
        variables="variables:\n  HOOK:\n    secret: true\n",
    )
    finished = run_inline(tmp_path, text, HeadlessOperator(yes=True), vars=(f"HOOK={hook}",))
    (record,) = notify_events(finished.transcript)
    assert record["error"] == "HTTP 404 Not Found: Cannot POST /…"
    for file in finished.transcript.parent.iterdir():
        assert b"XyZsecretKEY" not in file.read_bytes(), file.name


def test_a_webhook_whose_certificate_is_not_trusted_is_refused(tmp_path: Path) -> None:
    server = WebhookServer(tls=self_signed(tmp_path))
    try:
        text = book(
            f"  - url: {server.url}/hook\n    events: [run-end]\n    retries: 0\n",
            ONE,
        )
        finished = run_inline(tmp_path, text, HeadlessOperator(yes=True))
    finally:
        server.close()
    assert finished.outcome.result == "ok"
    (record,) = notify_events(finished.transcript)
    assert record["result"] == "failed" and "CERTIFICATE_VERIFY_FAILED" in record["error"]
    assert server.requests == []  # nothing was sent to a server that could not be trusted


def test_a_webhook_without_a_usable_url_is_off_and_the_run_goes_on(
    tmp_path: Path, webhook: WebhookServer
) -> None:
    text = book(
        "  - url: $CHAT_WEBHOOK\n",
        SIMPLE.replace("exit 3", "true"),
        variables="variables:\n  CHAT_WEBHOOK:\n    prompt: Webhook of the deploys channel\n",
    )
    finished = run_inline(tmp_path, text, HeadlessOperator(yes=True))
    assert finished.outcome.result == "ok"
    (record,) = notify_events(finished.transcript)
    assert (record["hook"], record["result"], record["error"]) == (1, "off", "its URL is empty")

    finished = run_inline(
        tmp_path, text, HeadlessOperator(yes=True), vars=("CHAT_WEBHOOK=gopher://x",)
    )
    (record,) = notify_events(finished.transcript)
    assert record["result"] == "off" and "not an http:// or https:// URL" in record["error"]
    assert webhook.requests == []


def test_the_terminal_warns_of_an_undelivered_notification(
    tmp_path: Path, webhook: WebhookServer
) -> None:
    webhook.mode = "fail"
    path = tmp_path / "b.md"
    path.write_text(book(f"  - url: {webhook.url}/h\n    events: [run-end]\n    retries: 0\n", ONE))
    proc = run_cli("run", str(path), "--yes", "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr
    assert (
        f"warning: notification run-end to {webhook.url} failed:"
        " HTTP 500 Internal Server Error: chat is down"
    ) in proc.stdout
    body = json.loads(webhook.requests[0].raw)
    assert body["status"] == "ok"


async def test_the_console_shows_an_undelivered_notification_as_a_warning(
    tmp_path: Path, webhook: WebhookServer
) -> None:
    from textual.widgets import Static
    from tuikit import make_app, until, waiting

    webhook.mode = "fail"
    path = tmp_path / "b.md"
    path.write_text(
        book(
            f"  - url: {webhook.url}/h\n    events: [run-start]\n    retries: 0\n",
            "## a\n\n```sh\n#| name: only\ntrue\n```\n",
        )
    )
    app = make_app(path, tmp_path / "runs")
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await until(pilot, waiting(app, "proceed", "only"), "the first block")

        def toasts() -> list[str]:
            return [str(t.render()) for t in app.screen.query("Toast").results(Static)]

        await until(pilot, lambda: any("failed" in t for t in toasts()), "the warning")
        (toast,) = toasts()
        assert f"notification run-start to {webhook.url} failed: HTTP 500" in toast
        await pilot.press("n")
        await until(pilot, lambda: app.outcome is not None, "the end")
        await pilot.press("q")
    assert app.outcome is not None and app.outcome.result == "ok"


FAILS = "## a\n\n```sh\n#| name: breaks\nexit 3\n```\n"
ROLLS_BACK = FAILS + "\n```sh\n#| name: undo\n#| rollback: true\ntrue\n```\n"


@pytest.mark.parametrize(
    ("body", "presses", "sig"),
    [
        (ONE, 1, signal.SIGINT),
        (ONE, 200, signal.SIGINT),
        (FAILS, 200, signal.SIGINT),
        (ONE, 1, signal.SIGTERM),
        (ROLLS_BACK, 1, signal.SIGTERM),
    ],
    ids=["done", "held", "failed", "sigterm", "sigterm-rolled-back"],
)
def test_ctrl_c_while_the_end_waits_for_a_webhook_ends_at_once(
    tmp_path: Path, webhook: WebhookServer, body: str, presses: int, sig: signal.Signals
) -> None:
    """One Ctrl-C, or Ctrl-C held down (wherever the presses fall on the loop: a callback,
    a ``finally``, the end being written), or a SIGTERM: the run ends at once and on
    record, not after the 29 s the webhook was given, whether it was ending as done or as
    aborted; never as "ok" with the signal's exit status."""
    webhook.mode = "hang"
    path = tmp_path / "b.md"
    hook = f"  - url: {webhook.url}/h\n    timeout: 30s\n    retries: 0\n"
    policy = "on-failure: rollback\n" if body is ROLLS_BACK else ""
    path.write_text(book(hook, body, policy))
    runs = tmp_path / "runs"
    proc = start_cli("run", str(path), "--yes", "--runs-dir", str(runs))
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("note: waiting up to 29s more for"):
                break
        for _ in range(presses):  # until the process is gone
            if proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err
    (transcript,) = runs.glob("*/transcript.jsonl")
    end = events(transcript)[-1]
    # How the steps ended stays on record; only "ok" is no longer true once a signal came.
    result, was = {
        ONE: ("aborted", "ok: every step is done"),
        FAILS: ("aborted", "aborted: breaks failed (exit 3)"),
        ROLLS_BACK: ("rolled-back", "rolled-back: rolled back after: breaks failed (exit 3)"),
    }[body]
    assert (end["type"], end["result"], end["exit_code"]) == ("run.end", result, 128 + sig)
    why = "interrupted by the operator" if sig == signal.SIGINT else "stopped by SIGTERM"
    assert end["message"] == f"{why} as the run was ending ({was})", end
    records = notify_events(transcript)
    sent = [1, 2, 3, 4] if body is ROLLS_BACK else [1, 2, 3]  # start, step done (rollback), end
    assert [r["message"] for r in records] == sent  # all on record
    assert {r["result"] for r in records} == {"abandoned"}
    assert verify(transcript).complete


def test_a_headless_ctrl_c_is_not_posted_as_a_failure(
    tmp_path: Path, webhook: WebhookServer
) -> None:
    """Ctrl-C is someone stopping the run: the chat hears how the run ended, not that a
    block failed and waits for a decision that nobody will make."""
    started = tmp_path / "started"
    body = f"## a\n\n```sh\necho > '{started}'\nsleep 60.5\n```\n"
    path = tmp_path / "b.md"
    path.write_text(book(f"  - url: {webhook.url}/h\n    events: [failure, run-end]\n", body))
    runs = tmp_path / "runs"
    proc = start_cli("run", str(path), "--yes", "--runs-dir", str(runs))
    try:
        wait_for(started.exists, what="the block to start")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert [(b["event"], b["status"]) for b in webhook.bodies()] == [("run-end", "aborted")]


def test_a_resumed_run_says_so_to_the_webhook(tmp_path: Path, webhook: WebhookServer) -> None:
    mark = tmp_path / "mark"
    path = tmp_path / "b.md"
    path.write_text(
        book(
            f"  - url: {webhook.url}/h\n    events: [run-start, run-end]\n",
            f"## Long\n\n```sh\n#| name: long\ntouch {mark}; sleep 63.25\n```\n",
        )
    )
    runs = tmp_path / "runs"
    args = ["run", str(path), "--yes", "--runs-dir", str(runs)]
    # Once run-start has arrived, a crash: no run.end, no run-end message.
    crash_mid_block(args, mark, "sleep 63.25", also=lambda: webhook.requests)
    (transcript,) = runs.glob("*/transcript.jsonl")
    finished = resume_run(
        transcript,
        ScriptedOperator([("choose", Decision("mark-done", "it finished by hand"))]),
        transport=LocalTransport(grace=0.3),
    )
    assert finished.outcome.result == "ok"
    sent = [(b["event"], b["resumed"], b["run"]) for b in webhook.bodies()]
    run = events(transcript)[0]["run"]
    assert sent == [("run-start", False, run), ("run-start", True, run), ("run-end", True, run)]
    resumed = webhook.bodies()[1]
    assert resumed["text"].startswith("▶ Ship it: resumed by")
    assert resumed["transcript"] == str(finished.transcript.resolve())


def test_plan_lists_webhooks_without_their_paths_or_header_values(tmp_path: Path) -> None:
    path = tmp_path / "b.md"
    path.write_text(
        book(
            "  - url: https://hooks.example.com/services/T0/B0/literalKEY\n"
            "    events: [run-start, run-end]\n"
            "    headers:\n"
            "      Authorization: Bearer $TOKEN\n"
            "  - url: $HOOK\n",
            "## a\n",
            variables="variables:\n  TOKEN:\n    secret: true\n  HOOK:\n    secret: true\n",
        )
    )
    text = run_cli("plan", str(path))
    assert text.returncode == 0, text.stderr
    assert (
        "  1. https://hooks.example.com  (run-start, run-end; timeout 5s, 2 retries;"
        " headers Authorization)\n  2. $HOOK  (all events; timeout 5s, 2 retries)\n"
    ) in text.stdout
    plan = json.loads(run_cli("plan", str(path), "--format", "json").stdout)
    assert [h["to"] for h in plan["notify"]] == ["https://hooks.example.com", "$HOOK"]
    assert plan["notify"][0]["headers"] == ["Authorization"]
    assert "literalKEY" not in text.stdout and "Bearer" not in text.stdout


def test_a_step_whose_failed_block_was_skipped_is_not_posted_as_done(
    tmp_path: Path, webhook: WebhookServer
) -> None:
    body = (
        "\n## Check\n\n```sh\n#| name: check\nexit 3\n```\n\n"
        "## Tidy\n\n```sh\n#| name: tidy\ntrue\n```\n"
    )
    text = book(f"  - url: {webhook.url}/hooks/deploys\n    events: [step-done]\n", body)
    operator = ScriptedOperator([("choose", Decision("skip", "known flaky"))])
    finished = run_inline(tmp_path, text, operator)
    assert finished.outcome.result == "ok"
    first, second = (b["text"] for b in webhook.bodies())
    assert first.startswith("↷ Ship it: step 1/2 “Check” finished, skipped: check, after failing")
    assert "✔" not in first and "done" not in first.split(" · record")[0]
    assert second.startswith("✔ Ship it: step 2/2 “Tidy” done")
