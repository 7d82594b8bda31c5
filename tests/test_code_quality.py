"""The codebase stays ruff and mypy clean: checked on every test run, so CI catches a slip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["hotline", "telephony", "asr", "tts", "dialog", "routing", "recordings", "console"]
BIN = Path(sys.executable).parent


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing() -> None:
    r = run(str(BIN / "ruff"), "check", ".")
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.slow
def test_mypy_finds_nothing() -> None:
    r = run(str(BIN / "mypy"), *PACKAGES)
    assert r.returncode == 0, r.stdout + r.stderr
