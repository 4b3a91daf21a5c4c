"""The console on many hosts: the demo fleet end to end (canary, batch gates, per-host tabs
and status, retrying only the failed hosts, rollback) and a connection lost mid-command."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_ssh_faults import dropper  # noqa: F401  (a fixture)
from tuikit import abort, finished, kinds, make_app, modal, shown, until, waiting

from conftest import live_processes
from runbook.demo import DemoFleet
from runbook.record.progress import DONE, FAILED
from runbook.tui.screens import ChoiceScreen, ConfirmScreen, TextScreen, VariablesScreen
from runbook.tui.widgets import OutputPane

SIZE = (120, 40)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[DemoFleet]:
    with DemoFleet(tmp_path / "fleet") as fleet:
        yield fleet


async def test_demo_canary_batches_retry_failed_hosts_and_roll_back(
    demo: DemoFleet, tmp_path: Path
) -> None:
    app = make_app(demo.runbook, tmp_path / "runs", ssh_config=demo.ssh_config)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, modal(app, VariablesScreen), "the start form")
        await pilot.press("enter")
        for _ in range(2):
            await until(pilot, waiting(app, "tick"), "a pre-flight item")
            await pilot.press("space")
        await until(pilot, waiting(app, "proceed", "plan"), "the plan block")
        await pilot.press("n")
        await until(pilot, waiting(app, "proceed", "deploy"), "the deploy block")
        await pilot.press("n")
        await until(pilot, modal(app, ConfirmScreen, "Deploy shop-web"), "the deploy gate")
        assert "Deploy shop-web v2.4.1" in shown(app.screen.query_one(".prompt"))
        await pilot.press("y")
        await until(pilot, modal(app, ConfirmScreen, "batch 2/3"), "the gate before batch 2")
        assert "batch 2/3: web2, web3" in shown(app.screen.query_one(".prompt"))
        assert app.progress.block("deploy").hosts == {"web1": DONE}  # the canary alone
        await until(
            pilot, lambda: "back in the load balancer" in _log(app, "web1"), "output on screen"
        )
        await pilot.press("y")
        await until(pilot, modal(app, ConfirmScreen, "batch 3/3"), "the gate before batch 3")
        await pilot.press("y")
        await until(pilot, waiting(app, "proceed", "health-check"), "the health check")
        await pilot.press("n")
        await until(pilot, modal(app, ChoiceScreen), "the failure menu")
        hosts = app.progress.block("health-check").hosts
        assert hosts == {"web1": DONE, "web2": DONE, "web3": FAILED, "web4": DONE}
        await until(
            pilot, lambda: "503 Service Unavailable" in _log(app, "web3"), "output on screen"
        )
        pane = app.query_one(OutputPane)
        await until(pilot, lambda: pane.active == "tab-web3", "the failed host's tab")
        await pilot.press("r")  # retry: only web3 runs again
        await until(pilot, lambda: _starts(app, "health-check") == 6 + 3, "the retry")
        await until(pilot, modal(app, ChoiceScreen), "the failure menu again")
        await pilot.press("b")
        await until(pilot, modal(app, ConfirmScreen), "the rollback gate")
        assert "deploy-rollback" in shown(app.screen.query_one(".prompt"))
        await pilot.press("y")
        await until(pilot, finished(app), "the end")
    assert app.outcome is not None and app.outcome.result == "rolled-back"
    checked = [e["host"] for e in kinds(app, "block.start") if e["block"] == "health-check"]
    # Each host once, web3 with its two retries; then the operator's retry: web3 alone.
    assert {h: checked.count(h) for h in demo.hosts} == {"web1": 1, "web2": 1, "web3": 6, "web4": 1}
    assert checked[6:] == ["web3"] * 3
    rollback = {e["host"] for e in kinds(app, "block.end") if e["block"] == "deploy-rollback"}
    assert rollback == {"web1", "web2", "web3", "web4"}
    for host in demo.hosts:
        assert (demo.sandbox(host) / "current").readlink() == Path("releases/v2.4.0")


async def test_a_lost_connection_asks_the_operator_about_an_unknown_outcome(
    dropper: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    book = tmp_path / "book.md"
    book.write_text(
        "---\nhosts:\n  edge: [dropper]\n---\n\n## Change\n\n```sh\n#| on: edge\n./change.sh\n```\n"
    )
    app = make_app(book, tmp_path / "runs", ssh_config=dropper)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, waiting(app, "proceed"), "the block")
        await pilot.press("n")
        await until(pilot, modal(app, ChoiceScreen), "the unknown-outcome question")
        assert "Outcome unknown" in shown(app.screen.query_one(".dialog-title"))
        await pilot.press("m")
        await until(pilot, modal(app, TextScreen), "the reason")
        await pilot.press(*"applied, checked by hand", "enter")
        await until(pilot, finished(app), "the end")
    decision = kinds(app, "decision")[0]
    assert (decision["kind"], decision["choice"], decision["host"]) == (
        "unknown",
        "mark-done",
        "dropper",
    )
    assert decision["reason"] == "applied, checked by hand"
    assert app.outcome is not None and app.outcome.result == "ok"


def _log(app: object, target: str) -> str:
    log = app.query_one(OutputPane).logs.get(target)  # type: ignore[attr-defined]
    return "\n".join(log.lines) if log is not None else ""


def _starts(app: object, block: str) -> int:
    return sum(1 for e in kinds(app, "block.start") if e["block"] == block)  # type: ignore[arg-type]


async def test_interrupt_stops_every_host_of_the_batch(fleet: Any, tmp_path: Path) -> None:
    book = tmp_path / "book.md"
    book.write_text(
        "---\nhosts:\n  pair: [host1, host2]\n---\n\n## Wait\n\n"
        "```sh\n#| on: pair\necho waiting; sleep 43.75\n```\n"
    )
    app = make_app(book, tmp_path / "runs", ssh_config=fleet.ssh_config)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, waiting(app, "proceed"), "the block")
        await pilot.press("n")
        block = app.progress.block("wait-1")
        started = lambda: all("waiting" in _log(app, h) for h in ("host1", "host2"))  # noqa: E731
        await until(pilot, started, "both hosts to run")
        assert live_processes("sleep 43.75")
        await pilot.press("i")
        await until(pilot, modal(app, ConfirmScreen), "the interrupt confirmation")
        await pilot.press("y")
        await until(pilot, modal(app, ChoiceScreen), "the failure menu")
        assert block.hosts == {"host1": FAILED, "host2": FAILED}
        await until(pilot, lambda: not live_processes("sleep 43.75"), "the remote commands to stop")
        await abort(pilot, app)
        await until(pilot, finished(app), "the end")
    ends = [e for e in kinds(app, "block.end") if e["block"] == "wait-1"]
    assert sorted(e["host"] for e in ends) == ["host1", "host2"]
    assert all(e["interrupted"] for e in ends)
