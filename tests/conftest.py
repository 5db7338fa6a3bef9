"""Shared fixtures."""
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
