"""Selecting by marker really splits the tiers (a full collection, so it lives here)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_no_protocol_e2e_or_slow_test_escapes_its_marker() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider",
         "-m", "not protocol and not e2e and not slow", "tests/protocol", "tests/e2e", "tests/slow"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 5, res.stdout[-2000:]  # 5: nothing collected, everything deselected
    assert "deselected" in res.stdout
