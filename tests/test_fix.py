"""`runbook fix` on real-world how-tos: the diff, a clean check of the result, and a run of
it against stand-ins that does what the author meant (their commands, values in place)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from conftest import CORPUS, run_cli

STANDIN = """#!/bin/sh
printf '%s\\n' "$(basename "$0") $*" >> "$STANDIN_LOG"
[ "$(basename "$0")" = jq ] && cat >/dev/null
echo standard
"""
"""Every tool logs how it was called and prints one resource name, `standard`."""

# file in tests/corpus, its --var values, and the commands the fixed runbook runs.
PROMETHEUS = "prometheus-operator__runbooks/content__runbooks__kubernetes__"
OPENSHIFT = "openshift__runbooks/alerts__openshift-virtualization-operator__"
STOLOSTRON = "stolostron__managed-service-runbooks/server-foundation__alerts__"
CASES = {
    f"{PROMETHEUS}KubePersistentVolumeFillingUp.md": (
        {"MY_NAMESPACE": "shop", "MY_PVC": "data-0"},
        [
            "kubectl -n shop get pvc data-0 -ojson",
            "jq -r .spec.storageClassName",
            "kubectl get storageclass standard",
            "kubectl -n shop edit pvc data-0",
            "kubectl -n shop get pvc data-0",
            "kubectl -n shop get pod -ojson",
            'jq -r .items[] | select(.spec.volumes[] .persistentVolumeClaim.claimName=="<my-pvc>")'
            " | .metadata.name",
            "kubectl -n shop delete pod standard",
        ],
    ),
    f"{OPENSHIFT}PersistentVolumeFillingUp.md": (
        {"MY_NAMESPACE": "vms", "MY_PVC": "disk-1", "NAMESPACE": "vms", "POD_NAME": "virt-0"},
        [
            "oc exec -it virt-0 -n vms -- df -h /path/to/mount",
            "oc -n vms get pvc disk-1 -ojson",
            "jq -r .spec.storageClassName",
            "oc get storageclass standard",
            "oc -n vms edit pvc disk-1",
            "oc -n vms get pvc disk-1",
            "oc -n vms get pod -ojson",
            'jq -r .items[] | select(.spec.volumes[] .persistentVolumeClaim.claimName=="<my-pvc>")'
            " | .metadata.name",
            "oc -n vms delete pod standard",
        ],
    ),
    "cloudnative-pg__cloudnative-pg/docs__src__declarative_hibernation.md": (
        {"CLUSTER_NAME": "pg-main"},
        [
            "kubectl annotate cluster pg-main --overwrite cnpg.io/hibernation=on",
            "kubectl get cluster pg-main -o"
            ' jsonpath={.status.conditions[?(.type=="cnpg.io/hibernation")]}',
            "kubectl cnpg status pg-main",
        ],
    ),
    f"{STOLOSTRON}managedclulster_condition_unknown.md": (
        {
            "MANAGEDCLUSTER_NAME": "edge-1",
            "MANAGED_CLUSTER_NAME": "standard",
            "KLUSTERLET_NAME": "k1",
        },
        [
            "oc get managedcluster edge-1 -o yaml",
            "oc get klusterlet",
            *(
                f'oc get klusterlet k1 -o=jsonpath={{.status.conditions[?(@.type=="{kind}")]}}'
                for kind in ("Available", "ReadyToApply", "HubConnectionDegraded")
            ),
            "oc delete klusterlet k1",
        ],
    ),
    "mattrussi__gitlab-com-runbooks/docs__Teleport__Connect_to_Rails_Console_via_Teleport.md": (
        {},
        [
            "tsh status",
            "tsh login --proxy=teleport.gstg.gitlab.net --request-roles=rails-ro"
            " --request-reason=Issue-URL or explanation",
        ],
    ),
}


@pytest.fixture
def standins(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "standin").write_text(STANDIN)
    (bin_dir / "standin").chmod(0o755)
    for name in ("kubectl", "oc", "jq", "tsh"):
        (bin_dir / name).symlink_to("standin")
    return bin_dir


@pytest.mark.parametrize("name", CASES, ids=[Path(n).stem[:40] for n in CASES])
def test_fix_makes_a_how_to_run_as_its_author_meant(
    tmp_path: Path, standins: Path, name: str
) -> None:
    values, commands = CASES[name]
    book = tmp_path / "howto.md"
    shutil.copyfile(CORPUS / name, book)
    before = book.read_bytes()

    shown = run_cli("fix", str(book))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"--- {book}\n+++ {book}\n@@ "), shown.stdout[:200]
    assert "nothing written; --write applies the diff above" in shown.stderr
    assert book.read_bytes() == before  # the diff only, until --write

    written = run_cli("fix", "--write", str(book))
    assert written.returncode == 0 and f"{book} written" in written.stderr, written.stderr
    assert written.stdout == shown.stdout
    checked = run_cli("check", str(book))
    assert checked.returncode == 0, checked.stdout
    assert "warning" not in checked.stdout, checked.stdout
    assert run_cli("fix", str(book)).stdout == ""  # fixed: nothing more to do

    log = tmp_path / "commands.log"
    env = {**os.environ, "PATH": f"{standins}:{os.environ['PATH']}", "STANDIN_LOG": str(log)}
    argv = [sys.executable, "-m", "runbook", "run", str(book), "--yes"]
    argv += ["--runs-dir", str(tmp_path / "runs")]
    for key, value in values.items():
        argv += ["--var", f"{key}={value}"]
    ran = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    # Each command as written, values in place; the two sides of a pipe log in either order.
    assert Counter(log.read_text().splitlines()) == Counter(commands)


def test_fix_leaves_a_file_with_errors_it_cannot_fix_unwritten(tmp_path: Path) -> None:
    book = tmp_path / "broken.md"
    text = "## Go\n\n```sh\n$ kubectl get pod <pod-name>\n```\n\n```sh {timeout=5}\ntrue\n```\n"
    book.write_text(text)
    proc = run_cli("fix", "--write", str(book))
    assert proc.returncode == 1
    assert "bad value for `timeout`" in proc.stderr
    assert "1 error(s) that fix cannot fix; " in proc.stderr and "not written" in proc.stderr
    assert book.read_text() == text


def test_fix_gives_blocks_outside_any_step_one(tmp_path: Path) -> None:
    book = tmp_path / "guide.md"
    book.write_text(
        "# Guide\n\n```sh\necho first\n```\n\n## Deploy\n\n```sh\necho deploy\n```\n\n"
        "# Clean up\n\n```sh\necho clean\n```\n"
    )
    proc = run_cli("fix", "--write", str(book))
    assert proc.returncode == 0, proc.stderr
    assert book.read_text() == (
        "# Guide\n\n## Before you start\n\n```sh\necho first\n```\n\n## Deploy\n\n"
        "```sh\necho deploy\n```\n\n## Clean up\n\n```sh\necho clean\n```\n"
    )
    assert run_cli("check", str(book)).stdout == ""


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
def test_fix_keeps_the_byte_order_mark_and_the_line_endings(tmp_path: Path, newline: str) -> None:
    book = tmp_path / "bom.md"
    lines = ["---", "title: Restart", "owner: ops", "---", "", "## Restart the pod", "", "```sh"]
    lines += ["kubectl delete pod <pod-name>", "```", ""]
    book.write_bytes(b"\xef\xbb\xbf" + newline.join(lines).encode())
    assert run_cli("fix", "--write", str(book)).returncode == 0
    data = book.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf---" + newline.encode() + b"title: Restart")
    text = data.decode("utf-8-sig")
    assert text.count(newline) == len(text.splitlines()) and "${POD_NAME}" in text
    if newline != "\n":
        assert "\n" not in text.replace(newline, "")
    checked = run_cli("check", str(book))
    assert checked.returncode == 0 and checked.stdout == "", checked.stdout


def test_fix_never_declares_what_the_shell_owns_nor_edits_a_here_document(
    tmp_path: Path,
) -> None:
    book = tmp_path / "restore.md"
    book.write_text(
        "---\ntitle: Restore\nvariables: {}\n---\n\n## Restore\n\n```sh\n"
        "cp /var/backups/db.dump <path>\ncat > page.html <<'EOF'\n<html>\nEOF\n```\n"
    )
    assert run_cli("fix", "--write", str(book)).returncode == 0
    text = book.read_text()
    assert "cp /var/backups/db.dump ${PATH_VALUE}\n" in text and "\n<html>\n" in text
    assert "variables:\n  PATH_VALUE:\n    prompt: path\n" in text
    assert run_cli("check", str(book)).returncode == 0
