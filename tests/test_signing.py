"""The record proves itself: SSH signatures, witnesses (--expect) and the runbook snapshot.

Each test stages what someone with write access to the run directory would do: edit the
end, recompute the hash chain so that the chain alone still verifies, drop lines, append
a made-up success, edit the snapshot, re-sign with their own key.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, crash_mid_block, events, resume_run, run_cli, wait_for

BOOK = """\
# Signed

## Prepare

```sh
echo prepared
```

## Deploy

```sh {name=deploy}
echo deployed
```
"""


def keypair(directory: Path, name: str, passphrase: str = "") -> Path:
    key = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", name, "-f", str(key)],
        check=True,
    )
    return key


def allowed(directory: Path, *entries: tuple[str, Path]) -> Path:
    path = directory / "allowed_signers"
    lines = [f"{who} {' '.join(Path(f'{k}.pub').read_text().split()[:2])}\n" for who, k in entries]
    path.write_text("".join(lines))
    return path


@pytest.fixture
def signed_run(tmp_path: Path) -> tuple[Path, Path, str]:
    """A finished run signed by alice's key: its transcript, alice's key, the printed hash."""
    key = keypair(tmp_path, "alice")
    book = tmp_path / "book.md"
    book.write_text(BOOK)
    done = run_cli(
        "run", str(book), "--yes", "--runs-dir", str(tmp_path / "runs"), "--signing-key", str(key)
    )
    assert done.returncode == 0, done.stderr
    transcript = next((tmp_path / "runs").glob("*/transcript.jsonl"))
    printed = re.search(r"last line sha256 ([0-9a-f]{64})", done.stderr)
    assert printed is not None
    assert f"signed up to seq {len(events(transcript))}" in done.stderr
    return transcript, key, printed.group(1)


def rechain(path: Path, edit: Any) -> None:
    """Rewrite the transcript through ``edit(events) -> events`` with a correct chain."""
    lines = edit([json.loads(raw) for raw in path.read_bytes().splitlines()])
    prev, out = "0" * 64, []
    for seq, event in enumerate(lines, start=1):
        event["seq"], event["prev"] = seq, prev
        raw = (json.dumps(event, separators=(",", ":")) + "\n").encode()
        prev = hashlib.sha256(raw).hexdigest()
        out.append(raw)
    path.write_bytes(b"".join(out))


def verify(transcript: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("transcript", "verify", str(transcript), *args)


def test_a_signed_run_verifies_against_allowed_signers(signed_run, tmp_path):
    transcript, key, printed = signed_run
    signers = allowed(tmp_path, ("alice@example.com", key))
    count = len(events(transcript))
    sigs = [json.loads(line) for line in Path(f"{transcript}.sig").read_text().splitlines()]
    assert sigs[-1]["seq"] == count and sigs[-1]["sha256"] == printed
    assert oct(Path(f"{transcript}.sig").stat().st_mode & 0o777) == "0o600"
    done = verify(transcript, "--allowed-signers", str(signers), "--expect", printed)
    assert done.returncode == 0, done.stdout
    assert "signed by alice@example.com (ED25519 SHA256:" in done.stdout
    assert f"up to line {count} of {count}" in done.stdout
    assert "as witnessed" in done.stdout


def test_another_key_is_refused(signed_run, tmp_path):
    transcript, _, _ = signed_run
    bob = keypair(tmp_path, "bob")
    done = verify(transcript, "--allowed-signers", str(allowed(tmp_path, ("bob@x", bob))))
    assert done.returncode == 1
    assert "does not verify" in done.stdout and "does not list" in done.stdout


def test_a_forged_end_with_a_recomputed_chain_is_caught(signed_run, tmp_path):
    transcript, key, printed = signed_run

    def aborted_to_ok(evs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        evs[-1]["result"], evs[-1]["message"] = "ok", "all fine, nothing to see"
        return evs

    rechain(transcript, aborted_to_ok)
    plain = verify(transcript)
    assert plain.returncode == 0, "the chain alone cannot see a recomputed chain"
    signers = allowed(tmp_path, ("alice@example.com", key))
    signed = verify(transcript, "--allowed-signers", str(signers))
    assert signed.returncode == 1
    assert "CHANGED after it was signed" in signed.stdout
    witnessed = verify(transcript, "--expect", printed)
    assert witnessed.returncode == 1 and "NOT the witnessed" in witnessed.stdout


def test_a_made_up_success_appended_is_not_signed(signed_run, tmp_path):
    transcript, key, _ = signed_run

    def append_success(evs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        end = evs.pop()
        note = dict(end, type="note", text="health check passed", by="operator")
        for k in ("result", "exit_code", "message"):
            note.pop(k)
        return [*evs, note, end]

    # Re-signing the old head is what a forger with the old signatures can do at most:
    # keep the real lines' signatures, which now sit before their new lines' hashes.
    rechain(transcript, append_success)
    done = verify(transcript, "--allowed-signers", str(allowed(tmp_path, ("a@x", key))))
    assert done.returncode == 1
    assert "CHANGED after it was signed" in done.stdout


def test_lines_after_the_last_signature_fail(signed_run, tmp_path):
    transcript, key, _ = signed_run
    sig = Path(f"{transcript}.sig")
    kept = sig.read_text().splitlines(keepends=True)[:-1]  # the final signature removed
    sig.write_text("".join(kept))
    done = verify(transcript, "--allowed-signers", str(allowed(tmp_path, ("a@x", key))))
    assert done.returncode == 1
    assert "come after the last signature: NOT SIGNED" in done.stdout


def test_a_dropped_last_line_is_caught_by_signature_and_witness(signed_run, tmp_path):
    transcript, key, printed = signed_run
    lines = transcript.read_bytes().splitlines(keepends=True)
    transcript.write_bytes(b"".join(lines[:-1]))  # no chain to recompute: a prefix is valid
    plain = verify(transcript)
    assert plain.returncode == 0 and "INCOMPLETE" in plain.stdout
    done = verify(transcript, "--allowed-signers", str(allowed(tmp_path, ("a@x", key))))
    assert done.returncode == 1 and "not in the file" in done.stdout
    witnessed = verify(transcript, "--expect", printed)
    assert witnessed.returncode == 1 and "NOT the witnessed" in witnessed.stdout


def test_a_signature_made_with_another_key_is_refused(signed_run, tmp_path):
    """The forger re-signs their forgery with their own key: not an allowed signer."""
    transcript, key, _ = signed_run
    mallory = keypair(tmp_path, "mallory")
    records = [json.loads(line) for line in Path(f"{transcript}.sig").read_text().splitlines()]
    run_id = events(transcript)[0]["run"]
    last = records[-1]
    message = f"runbook transcript head\nrun {run_id}\nseq {last['seq']}\nsha256 {last['sha256']}\n"
    forged = subprocess.run(
        ["ssh-keygen", "-Y", "sign", "-f", str(mallory), "-n", "runbook"],
        input=message.encode(),
        capture_output=True,
        check=True,
    ).stdout.decode()
    Path(f"{transcript}.sig").write_text(json.dumps(dict(last, signature=forged)) + "\n")
    done = verify(transcript, "--allowed-signers", str(allowed(tmp_path, ("a@x", key))))
    assert done.returncode == 1 and "does not verify" in done.stdout


def test_no_signature_fails_when_signers_are_given(tmp_path):
    key = keypair(tmp_path, "alice")
    book = tmp_path / "book.md"
    book.write_text(BOOK)
    assert run_cli("run", str(book), "--yes", "--runs-dir", str(tmp_path / "runs")).returncode == 0
    transcript = next((tmp_path / "runs").glob("*/transcript.jsonl"))
    assert verify(transcript).returncode == 0
    done = verify(transcript, "--allowed-signers", str(allowed(tmp_path, ("a@x", key))))
    assert done.returncode == 1 and "NOT SIGNED (no transcript.jsonl.sig)" in done.stdout


def test_an_edited_snapshot_fails_verify_and_shows_in_the_report(signed_run):
    transcript, _, _ = signed_run
    snapshot = transcript.parent / "runbook.md"
    assert "the runbook as run" in verify(transcript).stdout
    snapshot.write_text(BOOK.replace("echo deployed", "echo something else"))
    done = verify(transcript)
    assert done.returncode == 1 and "runbook.md: CHANGED after the run started" in done.stdout
    report = run_cli("transcript", "render", str(transcript)).stdout
    assert "| Runbook snapshot | runbook.md: CHANGED after the run started" in report
    snapshot.unlink()
    assert verify(transcript).returncode == 1


def test_the_report_names_the_head_and_its_signer(signed_run):
    transcript, _, printed = signed_run
    report = run_cli("transcript", "render", str(transcript)).stdout
    assert f"| Last line SHA-256 | `{printed}` |" in report
    assert "| Signed | transcript.jsonl: signed up to line" in report
    assert "by key ED25519 SHA256:" in report


def test_expect_takes_a_line_witness_and_refuses_nonsense(signed_run):
    transcript, _, _ = signed_run
    second = transcript.read_bytes().splitlines(keepends=True)[1]
    good = verify(transcript, "--expect", f"2:{hashlib.sha256(second).hexdigest()}")
    assert good.returncode == 0 and "(seq 2) hashes to" in good.stdout
    wrong = verify(transcript, "--expect", f"3:{hashlib.sha256(second).hexdigest()}")
    assert wrong.returncode == 1
    bad = verify(transcript, "--expect", "abc")
    assert bad.returncode == 2 and "64-hex-digit" in bad.stderr


def test_a_key_in_the_agent_signs_through_its_public_half(tmp_path):
    key = keypair(tmp_path, "carol", passphrase="correct horse")
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        wait_for(sock.exists, what="the ssh-agent socket")
        env = dict(os.environ, SSH_AUTH_SOCK=str(sock), SSH_ASKPASS_REQUIRE="never")
        book = tmp_path / "book.md"
        book.write_text(BOOK)
        runs = tmp_path / "runs"

        # Not in the agent yet: refused before anything runs, saying what to do.
        refused = _cli(env, "run", str(book), "--yes", "--runs-dir", str(runs),
                       "--signing-key", str(key))  # fmt: skip
        assert refused.returncode == 2 and "ssh-add" in refused.stderr
        assert not runs.exists() or not any(runs.iterdir())

        add = subprocess.run(
            ["ssh-add", str(key)],
            env=dict(env, SSH_ASKPASS=str(_askpass(tmp_path)), SSH_ASKPASS_REQUIRE="force"),
            capture_output=True,
            stdin=subprocess.DEVNULL,
        )
        assert add.returncode == 0, add.stderr
        env["RUNBOOK_SIGNING_KEY"] = f"{key}.pub"
        done = _cli(env, "run", str(book), "--yes", "--runs-dir", str(runs))
        assert done.returncode == 0, done.stderr
        transcript = next(runs.glob("*/transcript.jsonl"))
        signers = allowed(tmp_path, ("carol@example.com", key))
        checked = verify(transcript, "--allowed-signers", str(signers))
        assert checked.returncode == 0 and "signed by carol@example.com" in checked.stdout
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait()


def test_a_resumed_run_is_signed_by_whoever_resumed_it(tmp_path):
    """Alice's run crashes mid-block; Bob resumes it with his key: both files are covered."""
    from runbook.engine.operator import Decision, ScriptedOperator

    alice, bob = keypair(tmp_path, "alice"), keypair(tmp_path, "bob")
    started = tmp_path / "started"
    book = tmp_path / "book.md"
    book.write_text(
        BOOK.replace(
            "echo deployed", f"touch {started}; exec sleep 301 # orphan-sign-{tmp_path.name}"
        )
    )
    runs = tmp_path / "runs"
    crash_mid_block(
        ["run", str(book), "--yes", "--runs-dir", str(runs), "--signing-key", str(alice)],
        started,
        f"orphan-sign-{tmp_path.name}",
    )
    transcript = next(runs.glob("*/transcript.jsonl"))
    book.write_text(BOOK)
    from runbook.record.signing import SigningKey

    done = resume_run(
        transcript,
        ScriptedOperator([("choose", Decision("mark-done", "it finished, checked by hand"))]),
        allow_changed=True,
        signing=SigningKey.load(bob),
    )
    assert done.signed is not None and done.signed.startswith("signed up to seq")
    signers = allowed(tmp_path, ("alice@x", alice), ("bob@x", bob))
    checked = verify(transcript, "--allowed-signers", str(signers))
    # The crash left alice's last lines unsigned; bob's signature chains over them.
    assert checked.returncode == 0, checked.stdout
    assert "transcript-2.jsonl: signed by bob@x" in checked.stdout
    assert re.search(r"transcript.jsonl: (signed by alice@x|.*covered by)", checked.stdout)
    only_alice = verify(transcript, "--allowed-signers", str(allowed(tmp_path, ("a@x", alice))))
    assert only_alice.returncode == 1


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    import sys

    return subprocess.run(
        [sys.executable, "-m", "runbook", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        start_new_session=True,  # no terminal: ssh-keygen cannot ask for the passphrase
    )


def _askpass(directory: Path) -> Path:
    script = directory / "askpass"
    script.write_text("#!/bin/sh\necho 'correct horse'\n")
    script.chmod(0o700)
    return script


def test_a_record_cut_back_to_an_earlier_signature_fails(signed_run, tmp_path):
    """Every remaining line signed, the failure and the end gone: only the end can tell."""
    transcript, key, _ = signed_run
    records = Path(f"{transcript}.sig").read_text().splitlines(keepends=True)
    first = json.loads(records[0])
    assert first["seq"] < len(events(transcript)), "the run must have signed mid-way"
    lines = transcript.read_bytes().splitlines(keepends=True)
    transcript.write_bytes(b"".join(lines[: first["seq"]]))
    Path(f"{transcript}.sig").write_text(records[0])
    signers = str(allowed(tmp_path, ("a@x", key)))
    done = verify(transcript, "--allowed-signers", signers)
    assert done.returncode == 1 and "the run has no signed end" in done.stdout
    accepted = verify(transcript, "--allowed-signers", signers, "--allow-incomplete")
    assert accepted.returncode == 0 and "INCOMPLETE" in accepted.stdout


def test_another_signed_run_copied_over_this_one_fails(tmp_path):
    key = keypair(tmp_path, "alice")
    book = tmp_path / "book.md"
    book.write_text(BOOK)
    runs = tmp_path / "runs"
    for _ in range(2):
        args = ("run", str(book), "--yes", "--runs-dir", str(runs), "--signing-key", str(key))
        assert run_cli(*args).returncode == 0
    failed, other = sorted(runs.iterdir())
    for name in ("transcript.jsonl", "transcript.jsonl.sig", "runbook.md"):
        (failed / name).write_bytes((other / name).read_bytes())
    done = verify(
        failed / "transcript.jsonl", "--allowed-signers", str(allowed(tmp_path, ("a@x", key)))
    )
    assert done.returncode == 1
    assert f"is not the name of its directory {failed.name}" in done.stdout


def test_removed_signatures_fail_even_without_signers(signed_run):
    transcript, _, _ = signed_run
    Path(f"{transcript}.sig").unlink()
    done = verify(transcript)
    assert done.returncode == 1 and "the signatures were removed" in done.stdout


def test_nothing_runs_once_signing_fails(tmp_path):
    """A block takes the key away: the next block must not run, the run stops recorded."""
    key = keypair(tmp_path, "alice")
    ran = tmp_path / "second-ran"
    book = tmp_path / "book.md"
    book.write_text(
        f"# Lose the key\n\n## One\n\n```sh\nrm {key}\n```\n\n## Two\n\n```sh\ntouch {ran}\n```\n"
    )
    runs = tmp_path / "runs"
    done = run_cli("run", str(book), "--yes", "--runs-dir", str(runs), "--signing-key", str(key))
    assert done.returncode == 1
    assert "cannot sign the transcript" in done.stderr and "nothing more runs" in done.stderr
    assert not ran.exists()
    transcript = next(runs.glob("*/transcript.jsonl"))
    assert [e["block"] for e in events(transcript) if e["type"] == "block.start"] == ["one-1"]


@pytest.mark.parametrize("after", [0.0, 0.02], ids=["at-once", "at-the-end"])
def test_ctrl_c_held_down_never_leaves_the_end_unsigned(tmp_path: Path, after: float) -> None:
    """Ctrl-C pressed again and again, from the moment the block is done or a little
    later, while the run ends: whatever it records, every line is signed, and the exit
    status is the one on record. Signals wait while the record is closed (its last line
    fsynced and signed); only then may one end the process, with the code on record."""
    import sys
    import time

    key = keypair(tmp_path, "alice")
    book = tmp_path / "book.md"
    book.write_text("## Go\n\n```sh\necho GO\n```\n")
    runs = tmp_path / "runs"
    args = ["run", str(book), "--yes", "--runs-dir", str(runs), "--signing-key", str(key)]
    stderr = tmp_path / "stderr"  # a file: a pipe nobody reads during the flood could fill
    with stderr.open("w") as errors:
        proc = subprocess.Popen(
            [sys.executable, "-m", "runbook", *args], cwd=ROOT, text=True,
            stdout=subprocess.PIPE, stderr=errors,
        )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == "GO":
                break
        deadline = time.monotonic() + after
        while time.monotonic() < deadline:
            pass  # a busy wait of a few ms: a sleep would be coarser than the window
        while proc.poll() is None:  # a flood, far denser than a key held down
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGINT)
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    err = stderr.read_text()
    assert "Traceback" not in err and "Exception" not in err, err
    (transcript,) = runs.glob("*/transcript.jsonl")
    end = events(transcript)[-1]
    assert end["type"] == "run.end", end
    assert proc.returncode == end["exit_code"], (proc.returncode, end, err)
    done = verify(transcript, "--allowed-signers", str(allowed(tmp_path, ("a@x", key))))
    assert done.returncode == 0, done.stdout
    count = len(events(transcript))
    assert f"up to line {count} of {count}" in done.stdout
