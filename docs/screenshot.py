"""Make docs/console.svg: the console mid-rollout on the demo fleet, for the README.

Usage: python docs/screenshot.py [--out docs/console.svg]
It runs the real demo (four SSH servers on 127.0.0.1) and answers as an operator would,
then saves the screen while the second batch of the deploy streams its output.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from runbook import launch
from runbook.demo import DemoFleet
from runbook.format.inputs import load_runbook
from runbook.tui.app import Launch, RunbookApp
from runbook.tui.screens import ConfirmScreen
from runbook.tui.widgets import OutputPane


async def shoot(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp, DemoFleet(Path(tmp) / "fleet") as fleet:
        rb, _ = load_runbook(str(fleet.runbook))

        def start(operator, entered):  # type: ignore[no-untyped-def]
            session = launch.prepare_run(
                str(fleet.runbook),
                assignments=[],
                runs=Path(tmp) / "runbook-runs",
                argv=["runbook", "demo"],
                announce=lambda _: None,
                operator=operator,
                ssh_config=fleet.ssh_config,
                entered=entered,
            )
            return session, []

        app = RunbookApp(Launch(rb, start, rb.variables))
        async with app.run_test(size=(140, 42)) as pilot:

            async def until(condition: Callable[[], object]) -> None:
                deadline = time.monotonic() + 30
                while not condition():
                    assert time.monotonic() < deadline, "the demo did not get there"
                    await pilot.pause(0.02)

            def gate() -> bool:
                return isinstance(app.screen, ConfirmScreen)

            def parked(kind: str) -> bool:
                return app.waiting is not None and app.waiting.kind == kind

            await pilot.press("enter")
            for key in ("space", "space"):
                await until(lambda: parked("tick"))
                await pilot.press(key)
            for _ in range(2):
                await until(lambda: parked("proceed"))
                await pilot.press("n")
            await until(gate)
            await pilot.press("y")  # deploy, canary first
            await until(gate)
            await pilot.press("y")  # batch 2
            block = app.progress.block("deploy")
            await until(lambda: block.hosts.get("web3") == "running")
            logs = app.query_one(OutputPane).logs
            await until(lambda: "web2" in logs and "draining" in "".join(logs["web2"].lines))
            app.launch.transcript = "runbook-runs/20261126T101500Z-5f0c2a/transcript.jsonl"
            app.refresh_screen()
            await pilot.pause(0.1)
            app.save_screenshot(filename=out.name, path=str(out.parent))
            app.workers.cancel_group(app, "session")
            app.quitting = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "console.svg")
    args = parser.parse_args()
    asyncio.run(shoot(args.out))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
