"""The code stays honest: ruff clean and the layer contracts of setup.cfg kept."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_ruff_is_clean() -> None:
    res = subprocess.run([str(BIN / "ruff"), "check", "esam_mail"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-4000:]


def test_import_layers_are_kept() -> None:
    """services/store/directory never import a protocol library; layers point downward."""
    res = subprocess.run([str(BIN / "lint-imports")], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-4000:]


def test_mypy_is_clean() -> None:
    res = subprocess.run([str(BIN / "mypy"), "esam_mail"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-4000:]
