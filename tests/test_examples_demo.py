"""The example runbooks against the demo fleet (real SSH on loopback): blue-green completes
and rolls back, deploy-web completes, ``runbook demo --serve`` serves a separate
``runbook run``; and where the examples are found, installed or in a checkout."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, RUNBOOKS, events, live_processes, run_cli
from runbook import launch
from runbook.demo import DemoFleet, command, examples
from runbook.demo.examples import EXAMPLES, Example, examples_dir
from runbook.engine.operator import HeadlessOperator
from runbook.format.inputs import load_runbook
from runbook.record.chain import verify

BLUE_GREEN = EXAMPLES["blue-green"]
BLUE_SERVES = {"web1": "active", "web2": "active", "web3": "inactive", "web4": "inactive"}
GREEN_SERVES = {"web1": "inactive", "web2": "inactive", "web3": "active", "web4": "active"}


@pytest.fixture
def fleet(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[DemoFleet]:
    """The fleet of the example the test is parametrized with (default: blue-green)."""
    example: Example = getattr(request, "param", BLUE_GREEN)
    with DemoFleet(tmp_path / "demo", example) as started:
        yield started


def shorten_bakes(text: str) -> str:
    """The example with its bakes cut to a second: the one change the tests make to it.

    The rounds, the checks and the gates are the same; only the wall-clock wait is shorter
    (the examples bake for 30s to a minute). Every bake must still happen: checked here.
    """
    short = re.sub(r"^#\| bake: .*$", "#| bake: 1s", text, flags=re.M)
    short = re.sub(r"^#\| health-interval: .*$", "#| health-interval: 300ms", short, flags=re.M)
    assert short.count("#| bake: 1s") == text.count("#| bake:") >= 1
    return short


def run(fleet: DemoFleet, operator: HeadlessOperator | None = None) -> launch.Finished:
    """The fleet's runbook headless, with the values ``runbook demo`` would give it (bakes
    shortened), its notifications going to the fleet's chat channel."""
    fleet.runbook.write_text(shorten_bakes(fleet.runbook.read_text()))
    rb, _ = load_runbook(str(fleet.runbook))
    return launch.run(
        str(fleet.runbook),
        assignments=command.assignments(fleet.example, rb, [], fleet.chat.url),
        runs=fleet.root / "runs",
        argv=[],
        announce=lambda _: None,
        operator=operator or HeadlessOperator(yes=True),
        ssh_config=fleet.ssh_config,
    )


def ends(evs: list[dict[str, Any]], block: str) -> dict[str, int | None]:
    """Each host's last exit code for ``block``."""
    return {e["host"]: e["exit"] for e in evs if e["type"] == "block.end" and e["block"] == block}


def var(fleet: DemoFleet, host: str, name: str) -> str:
    return (fleet.sandbox(host) / "var" / name).read_text().strip()


def routers(fleet: DemoFleet) -> list[str]:
    return [var(fleet, lb, "router-live") for lb in ("lb1", "lb2")]


def services(fleet: DemoFleet) -> dict[str, str]:
    return {h: var(fleet, h, "web.service") for h in ("web1", "web2", "web3", "web4")}


def test_blue_green_brings_up_green_switches_both_routers_and_retires_blue(
    fleet: DemoFleet,
) -> None:
    assert routers(fleet) == ["blue", "blue"]
    assert services(fleet) == BLUE_SERVES
    done = run(fleet)
    assert (done.outcome.result, done.outcome.exit_code) == ("ok", 0)
    assert verify(done.transcript).ok
    evs = events(done.transcript)
    captured = {e["name"]: e["value"] for e in evs if e["type"] == "capture"}
    assert (captured["LIVE"], captured["IDLE"]) == ("blue", "green")
    assert ends(evs, "bring-up") == {"web3": 0, "web4": 0}
    # lb1 alone, then lb2: the batch gate between them.
    order = [e.get("host") or e["gate"] for e in evs if e.get("block") == "switch"
             and (e["type"] == "block.start" or e["type"] == "gate.ask")]  # fmt: skip
    assert order == ["confirm", "lb1", "batch", "lb2"]
    # Between them, lb1 baked: verify-live ran through lb1 alone, round by round.
    bake = [e for e in evs if e["type"] in ("bake.start", "bake.end")]
    assert [(e["type"], e.get("result")) for e in bake] == [
        ("bake.start", None),
        ("bake.end", "ok"),
    ]
    rounds = [e for e in evs if e["type"] == "block.end" and e.get("bake")]
    assert rounds and {(e["block"], e["host"], e["exit"]) for e in rounds} == {
        ("verify-live", "lb1", 0)
    }
    # And #deploys heard of it: every message went to the demo's chat channel.
    said = fleet.chat.log.read_text().splitlines()
    assert "▶ Blue-green deploy of shop-web: started by" in said[0]
    assert "✔ Blue-green deploy of shop-web: step 4/5 “Switch traffic” done" in said[4]
    assert "run ok: every step is done" in said[-1]
    assert ends(evs, "retire") == {"web1": 0, "web2": 0}
    assert routers(fleet) == ["green", "green"]
    assert services(fleet) == GREEN_SERVES
    assert var(fleet, "web3", "web.version") == "v2.4.1"
    assert os.readlink(fleet.sandbox("web4") / "srv/app/current") == "releases/v2.4.1"
    assert os.readlink(fleet.sandbox("web1") / "srv/app/current") == "releases/v2.4.0"


def test_a_failed_smoke_test_rolls_back_and_blue_keeps_the_traffic(
    fleet: DemoFleet, tmp_path: Path
) -> None:
    (fleet.sandbox("web3") / "var" / "db-pool-exhausted").write_text("as --break web3 does\n")
    done = run(fleet)
    assert (done.outcome.result, done.outcome.exit_code) == ("rolled-back", 1)
    evs = events(done.transcript)
    assert ends(evs, "smoke-test") == {"web3": 22, "web4": 0}
    decision = next(e for e in evs if e["type"] == "decision")
    assert (decision["block"], decision["choice"], decision["by"]) == (
        "smoke-test",
        "rollback",
        "auto",
    )
    assert decision["reason"] == "the runbook's on-failure: rollback (headless run)"
    assert ends(evs, "bring-up-undo") == {"web3": 0, "web4": 0}
    assert not any(e.get("block") in ("switch", "switch-back", "retire") for e in evs)
    assert routers(fleet) == ["blue", "blue"]
    assert services(fleet) == BLUE_SERVES

    verdict = run_cli("transcript", "verify", str(done.transcript))
    assert verdict.returncode == 0 and "intact" in verdict.stdout, verdict.stdout + verdict.stderr
    report = tmp_path / "report.md"
    rendered = run_cli("transcript", "render", str(done.transcript), "-o", str(report))
    assert rendered.returncode == 0, rendered.stderr
    text = report.read_text()
    assert "**rolled-back**" in text and "`bring-up-undo` on web3" in text
    assert "| rollback | `bring-up-undo` | web3 |" in text  # the timeline names the rollback


class BreaksGreenAfterLb1(HeadlessOperator):
    """Answers as ``--yes``; web3 goes bad once lb1 sends it traffic (before lb2 switches)."""

    def __init__(self, fleet: DemoFleet) -> None:
        super().__init__(yes=True)
        self.fleet = fleet

    async def confirm(self, prompt: str) -> bool:
        if "batch 2/2" in prompt:
            (self.fleet.sandbox("web3") / "var" / "db-pool-exhausted").write_text("now\n")
        return await super().confirm(prompt)


def test_a_failure_after_the_switch_sends_the_traffic_back_to_blue(fleet: DemoFleet) -> None:
    done = run(fleet, BreaksGreenAfterLb1(fleet))
    assert done.outcome.result == "rolled-back"
    evs = events(done.transcript)
    assert ends(evs, "switch") == {"lb1": 0, "lb2": 22}  # lb2 checks green through itself
    assert ends(evs, "switch-back") == {"lb1": 0, "lb2": 0}
    assert "lb2: live traffic green -> blue (web1 web2)" in "".join(
        e.get("text", "")
        for e in evs
        if e["type"] == "output" and e.get("block") == "switch-back" and e.get("host") == "lb2"
    )
    assert routers(fleet) == ["blue", "blue"]
    assert services(fleet)["web1"] == services(fleet)["web2"] == "active"
    assert verify(done.transcript).ok


@pytest.mark.parametrize("fleet", [EXAMPLES["deploy-web"]], indirect=True, ids=["deploy-web"])
def test_deploy_web_runs_unchanged_against_the_fleet(fleet: DemoFleet) -> None:
    done = run(fleet)
    assert done.outcome.result == "ok", done.outcome.message
    evs = events(done.transcript)
    assert ends(evs, "health-check") == {f"web-{n}": 0 for n in range(1, 5)}
    for host in fleet.hosts:
        app = fleet.sandbox(host) / "srv" / "app"
        assert os.readlink(app / "current") == "releases/v2.4.1", host
        assert os.readlink(app / "previous") == "releases/v2.4.0", host
        assert var(fleet, host, "web.version") == "v2.4.1"
        assert var(fleet, host, "lb") == "enabled"


@pytest.mark.parametrize(
    "fleet", [EXAMPLES["deploy-web"].with_broken(("web-3",))], indirect=True, ids=["web-3 bad"]
)
def test_deploy_web_bake_catches_a_release_that_breaks_a_host_and_rolls_back(
    fleet: DemoFleet,
) -> None:
    """web-3 passes the pre-flight on v2.4.0 and fails once it runs v2.4.1: the bake after
    the second batch finds it, the last batch never starts, the rollback undoes the rest."""
    done = run(fleet, HeadlessOperator(yes=True, on_failure="rollback"))
    assert done.outcome.result == "rolled-back", done.outcome.message
    evs = events(done.transcript)
    bakes = [(e["batch"], e["result"]) for e in evs if e["type"] == "bake.end"]
    assert bakes == [(1, "ok"), (2, "failed")]
    failed = next(e for e in evs if e["type"] == "bake.end" and e["result"] == "failed")
    assert failed["failed"] == {"healthz on web-3": "exit 22"}
    switched = [
        e["host"] for e in evs if e["type"] == "block.start" and e["block"] == "switch-release"
    ]
    assert switched == ["web-1", "web-2", "web-3"]  # web-4, the last batch, never started
    decision = next(e for e in evs if e["type"] == "decision")
    assert (decision["kind"], decision["choice"], decision["by"]) == ("bake", "rollback", "auto")
    assert sorted(ends(evs, "switch-back")) == ["web-1", "web-2", "web-3", "web-4"]
    for host in fleet.hosts:  # every host serves the release it had
        assert os.readlink(fleet.sandbox(host) / "srv/app/current") == "releases/v2.4.0", host
    assert verify(done.transcript).ok
    said = fleet.chat.log.read_text()
    assert "failed at step 3/4 “Roll out”, block switch-release" in said


def test_the_curl_stand_in_answers_the_app_only_and_contacts_nothing(fleet: DemoFleet) -> None:
    def on(host: str, script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["/bin/sh", "-c", script], cwd=fleet.sandbox(host), capture_output=True, text=True,
            env={"PATH": f"{fleet.sandbox(host)}/bin:{os.defpath}"},
        )  # fmt: skip

    elsewhere = on("web1", "curl -fsS http://127.0.0.1:9/elsewhere")
    assert elsewhere.returncode == 7 and "refusing http://127.0.0.1:9/elsewhere" in elsewhere.stderr
    assert on("web1", "curl -fsS http://127.0.0.1:8080/version").stdout == "v2.4.0\n"
    stopped = on("web3", "curl -fsS http://127.0.0.1:8080/healthz")  # green is idle
    assert stopped.returncode == 7 and "Connection refused" in stopped.stderr
    assert on("lb1", "curl -fsS http://127.0.0.1/healthz").stdout.startswith("ok: lb1 -> blue")
    switched = on(
        "lb2", "sudo -n /usr/local/bin/router switch green && curl -fsS http://127.0.0.1/healthz"
    )
    assert switched.returncode == 22 and "web3 down; web4 down" in switched.stdout


def test_the_examples_are_found_installed_and_in_a_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whichever way this test run imports runbook (CI: the installed wheel), the examples
    # it finds are the repository's runbooks/.
    found = examples_dir()
    assert {p.name for p in found.glob("*.md")} == {p.name for p in RUNBOOKS.glob("*.md")}
    assert (found / "blue-green.md").read_bytes() == (RUNBOOKS / "blue-green.md").read_bytes()
    installed = tmp_path / "site-packages" / "runbook"
    (installed / "examples").mkdir(parents=True)
    monkeypatch.setattr(examples, "PACKAGE", installed)
    assert examples_dir() == installed / "examples"
    checkout = tmp_path / "checkout"
    (checkout / "runbook").mkdir(parents=True)
    (checkout / "runbooks").mkdir()
    monkeypatch.setattr(examples, "PACKAGE", checkout / "runbook")
    assert examples_dir() == checkout / "runbooks"
    monkeypatch.setattr(examples, "PACKAGE", tmp_path / "nowhere" / "runbook")
    with pytest.raises(examples.DemoFleetError, match="example runbooks are missing"):
        examples_dir()


def test_demo_list_and_the_clear_refusals() -> None:
    listed = run_cli("demo", "--list")
    assert listed.returncode == 0
    names = [line.split()[0] for line in listed.stdout.splitlines()]
    assert names == ["deploy", "deploy-web", "blue-green"]
    for args, message in [
        (
            ["bluegreen"],
            "no example `bluegreen` (did you mean `blue-green`?);"
            " the examples are deploy, deploy-web, blue-green",
        ),
        (["blue-green", "--break", "web9", "--yes"], "--break web9: no such host in this demo"),
        (["--break", "none", "--break", "web1", "--yes"], "cannot be combined"),
        (["runbooks/hello.md", "--yes"], "names no hosts"),
        (["runbooks/rotate-tls-cert.md", "--yes"], "front matter `ssh:` sets user: deploy"),
        (["blue-green", "--serve", "--yes"], "--serve runs nothing itself"),
    ]:
        proc = run_cli("demo", *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    proc = run_cli("open", "runbooks/hello.md", "--on-failure", "rollback")
    assert proc.returncode == 2 and "--on-failure is for a run without a person" in proc.stderr


def test_demo_blue_green_headless_rolls_back_with_a_broken_green_host(tmp_path: Path) -> None:
    """blue-green.md says `on-failure: rollback`; `--on-failure abort` overrides it."""
    proc = run_cli("demo", "blue-green", "--yes", "--break", "web3", "--runs-dir", str(tmp_path))
    assert proc.returncode == 1, proc.stderr
    assert "broken: web3" in proc.stderr
    assert "the demo gives --var VERSION=v2.4.1 --var APP_DIR=srv/app" in proc.stderr
    assert (
        "runbook: rolled-back: rolled back after: smoke-test failed on 1 host, more than max-fail"
        " 0 allows: web3 (exit 22); the runbook's on-failure: rollback (headless run)"
    ) in proc.stderr
    (transcript,) = tmp_path.glob("*/transcript.jsonl")
    assert verify(transcript).ok

    proc = run_cli(
        "demo", "blue-green", "--yes", "--break", "web3", "--on-failure", "abort",
        "--runs-dir", str(tmp_path / "abort"),
    )  # fmt: skip
    assert proc.returncode == 1 and "runbook: aborted: smoke-test failed on 1 host" in proc.stderr


NOTED = """
import os, random, signal, threading, time
from runbook.demo.command import signals_noted

wanted = (signal.SIGINT, signal.SIGTERM)
before = [signal.getsignal(s) for s in wanted]
with signals_noted(wanted) as arrived:  # taken before anyone waits: kept
    os.kill(os.getpid(), signal.SIGTERM)
    print("early", signal.Signals(arrived()).name)
with signals_noted(wanted) as arrived:  # taken by another thread, the main one waiting
    def take():
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)
    taker = threading.Thread(target=take)
    taker.start()
    print("thread", signal.Signals(arrived()).name)
    taker.join()
print("restored", [signal.getsignal(s) for s in wanted] == before, signal.set_wakeup_fd(-1))


class Raised(Exception):
    pass


armed = False


def raising(signum, frame):  # as the handlers before it may: Ctrl-C, the demo's SIGTERM
    if armed:
        raise Raised


for s in wanted:
    signal.signal(s, raising)
flooding = True


def flood():
    while flooding:
        os.kill(os.getpid(), signal.SIGINT if random.random() < 0.5 else signal.SIGTERM)
        time.sleep(random.uniform(0, 0.0002))


threading.Thread(target=flood, daemon=True).start()
left = 0
for _ in range(5000):  # a signal at any bytecode, on the way in and out
    try:
        armed = True
        with signals_noted(wanted) as arrived:
            arrived()
        armed = False
    except Raised:
        armed = False
    left += signal.set_wakeup_fd(-1) != -1
    left += any(signal.getsignal(s) is not raising for s in wanted)
    for s in wanted:
        signal.signal(s, raising)
flooding = False
print("left behind under a flood", left)
"""


def test_a_signal_is_noted_whichever_thread_takes_it_and_whenever_it_comes() -> None:
    """`--serve`'s wait: its handler takes no lock (one that set an Event could wait for
    its own lock for ever), and the signal's number comes through the wakeup fd, from
    whichever thread the kernel gave it to; under a flood of signals whose handlers raise
    (at any bytecode), nothing is left behind: no wakeup fd on a closed socket, no handler
    half restored. A wait that missed a signal would hang: the child's timeout fails the
    test instead."""
    done = subprocess.run(
        [sys.executable, "-c", NOTED], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:4] == [
        "early SIGTERM",
        "thread SIGINT",
        "restored True -1",
        "left behind under a flood 0",
    ]


def test_ctrl_c_pressed_again_and_again_does_not_cut_the_cleanup_short() -> None:
    """The first Ctrl-C stops `--serve`; those after it land in the cleanup (the servers
    stopping, the sandboxes removed), which must still run to its end."""
    server = subprocess.Popen(
        [sys.executable, "-m", "runbook", "demo", "--serve"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert server.stdout is not None
    config = Path(server.stdout.readline().removeprefix("ssh_config: ").strip())
    assert server.stdout.readline().startswith("run: ")
    presses = 0
    while server.poll() is None and presses < 20_000:
        server.send_signal(signal.SIGINT)
        presses += 1
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(0.001)
    _, err = server.communicate(timeout=60)
    assert server.returncode == 0 and presses > 1, (presses, err)
    assert "stopping the fleet" in err and "Traceback" not in err
    assert not config.parent.exists() and live_processes(str(config.parent)) == []


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_keeps_the_fleet_up_for_a_separate_runbook_run(
    tmp_path: Path, stop: signal.Signals
) -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "runbook", "demo", "blue-green", "--serve"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        config = Path(server.stdout.readline().removeprefix("ssh_config: ").strip())
        line = server.stdout.readline()
        assert line.startswith(f"run: runbook run runbooks/blue-green.md --ssh-config {config} ")
        words = line.removeprefix("run: runbook ").split()
        short = tmp_path / "blue-green.md"  # the same runbook, baking for a second
        short.write_text(shorten_bakes((ROOT / words[1]).read_text()))
        words[1] = str(short)
        assert words[-1] == "--yes" and "APP_DIR=srv/app" in words, words
        ports = [int(p) for p in re.findall(r"^  Port (\d+)$", config.read_text(), re.M)]
        assert len(ports) == 6
        client = run_cli(*words, "--runs-dir", str(tmp_path))
        assert client.returncode == 0, client.stderr
        assert "runbook: ok: every step is done" in client.stderr
        (transcript,) = tmp_path.glob("*/transcript.jsonl")
        assert json.loads(transcript.read_text().splitlines()[-1])["result"] == "ok"
    finally:
        server.send_signal(stop)
        _, err = server.communicate(timeout=60)
    assert server.returncode == 0, err
    assert "serving until Ctrl-C" in err and "stopping the fleet" in err
    assert "Traceback" not in err
    assert not config.parent.exists()  # the fleet's files are gone with it
    assert live_processes(str(config.parent)) == []
    for port in ports:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
