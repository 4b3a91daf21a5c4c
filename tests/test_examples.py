"""The example runbooks check clean and plan as documented."""

from __future__ import annotations

import hashlib
import json

import pytest

from conftest import RUNBOOKS, run_cli
from runbook.format.parser import parse_file

EXAMPLES = sorted(RUNBOOKS.glob("*.md"))


def test_the_examples_exist() -> None:
    names = {p.name for p in EXAMPLES}
    assert {
        "hello.md",
        "deploy-web.md",
        "blue-green.md",
        "db-migration.md",
        "rotate-tls-cert.md",
    } <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_has_no_diagnostics(path) -> None:  # type: ignore[no-untyped-def]
    result = parse_file(path)
    assert result.diagnostics == ()


def test_check_all_examples_exits_zero() -> None:
    proc = run_cli("check", *[str(p) for p in EXAMPLES])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == ""
    assert f"0 errors, 0 warnings in {len(EXAMPLES)} files" in proc.stderr


def test_plan_deploy_web_shows_canary_then_batches() -> None:
    proc = run_cli("plan", "runbooks/deploy-web.md", "--var", "VERSION=v1.2.3")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    bake = (
        "        then bake 1m, health every 10s: healthz (a failing check stops the rollout);"
        " then confirm the next batch\n"
    )
    assert f"      batch 1/3: web-1\n{bake}      batch 2/3: web-2, web-3\n{bake}" in out
    assert "batch 3/3: web-4" in out
    assert "gate: confirm: Switch staging web hosts to v1.2.3?" in out
    assert "retries 10 every 3s" in out
    assert "<- rollback switch-back" in out


def test_plan_json_of_db_migration() -> None:
    proc = run_cli(
        "plan",
        "runbooks/db-migration.md",
        "--var",
        "DATABASE=orders",
        "--var",
        "MIGRATION=2026_11_20_add_order_index",
        "--format",
        "json",
    )
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["format"] == "runbook-plan/1"
    migrate = next(b for s in plan["steps"] for b in s["blocks"] if b["name"] == "migrate")
    assert migrate["gates"] == [{"type": "type-to-confirm", "text": "orders"}]
    assert migrate["target"]["batches"] == [["db-1"]]
    assert migrate["timeout_seconds"] == 1800
    undo = next(b for s in plan["steps"] for b in s["rollback"])
    assert undo["name"] == "migrate-down"


def test_plan_rotate_tls_defers_the_captured_value() -> None:
    proc = run_cli("plan", "runbooks/rotate-tls-cert.md", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    blocks = {b["name"]: b for s in plan["steps"] for b in s["blocks"]}
    assert blocks["fingerprint"]["capture"] == "NEW_FINGERPRINT"
    assert blocks["install"]["target"]["batches"] == [
        ["edge-1.example.com"],
        ["edge-2.example.com", "edge-3.example.com"],
    ]
    assert "$NEW_FINGERPRINT" in blocks["install"]["gates"][0]["text"]


def test_plan_json_shows_rollback_gates_order_and_ssh_defaults() -> None:
    proc = run_cli("plan", "runbooks/rotate-tls-cert.md", "--format", "json")
    plan = json.loads(proc.stdout)
    assert plan["ssh"] == {"user": "deploy", "port": None, "known_hosts": None}
    undo = plan["steps"][1]["rollback"][0]
    assert undo["gates"] == [{"type": "confirm", "text": f"Run rollback block {undo['name']}?"}]
    proc = run_cli("plan", "runbooks/deploy-web.md", "--var", "VERSION=v1.2.3", "--format", "json")
    assert json.loads(proc.stdout)["rollback_order"] == ["switch-back", "remove-release"]


def test_plan_text_shows_the_full_hash_and_rollback_order() -> None:
    proc = run_cli("plan", "runbooks/deploy-web.md", "--var", "VERSION=v1.2.3")
    digest = hashlib.sha256((RUNBOOKS / "deploy-web.md").read_bytes()).hexdigest()
    assert f"  sha256 {digest}\n" in proc.stdout
    assert (
        "On rollback, the rollback blocks of completed steps run in this order:\n"
        "  switch-back  (step 3. Roll out)\n"
        "  remove-release  (step 2. Stage the release)\n"
    ) in proc.stdout
    assert "gate: confirm: Run rollback block switch-back?" in proc.stdout


def test_plan_text_says_which_gate_values_come_later() -> None:
    proc = run_cli("plan", "runbooks/db-migration.md")
    assert "gate: type to confirm: $DATABASE  ($DATABASE known only at run time)" in proc.stdout
    proc = run_cli("plan", "runbooks/db-migration.md", "--var", "DATABASE=billing")
    assert "gate: type to confirm: billing\n" in proc.stdout
