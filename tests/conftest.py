"""Shared paths and helpers for the test suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNBOOKS = ROOT / "runbooks"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CORPUS = Path(__file__).resolve().parent / "corpus"


def run_cli(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """The installed-module CLI in a real subprocess, as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "runbook", *args],
        capture_output=True,
        text=True,
        input=None if input is None else input.decode(),
        cwd=ROOT,
        timeout=120,
    )


@pytest.fixture
def write(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Write a runbook (text or bytes) into a temporary file and return its path."""

    def _write(content: str | bytes, name: str = "runbook.md") -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    return _write
