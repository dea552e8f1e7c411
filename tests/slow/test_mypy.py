"""mypy over esam_mail stays clean (10-25 s, hence the slow tier)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_mypy_is_clean() -> None:
    res = subprocess.run([str(BIN / "mypy"), "esam_mail"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-4000:]
