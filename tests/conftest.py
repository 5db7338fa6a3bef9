"""Shared fixtures.

NOTE: restored by the engine-correctness helper after it accidentally overwrote a conftest.py
created concurrently; only the `cli` fixture that tests/test_cli.py uses is reconstructed here.
Check it against the original.
"""
from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.fixture
def cli(tmp_path):
    """Run `python -m lbbench ARGS...` in a scratch folder; returns the CompletedProcess."""
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lbbench", *args], capture_output=True, text=True,
                              cwd=tmp_path, timeout=600)
    return run
