"""docs/hybrid-sample-letter.png is page 1 of the sample letter as the script renders it now."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="needs poppler-utils (scripts/test.sh installs it)")
def test_sample_png_is_current(tmp_path: Path) -> None:
    png, pdf = tmp_path / "sample.png", tmp_path / "sample.pdf"
    subprocess.run([sys.executable, str(ROOT / "scripts/render_sample_letter.py"), "--png", str(png),
                    "--pdf", str(pdf)], check=True, cwd=ROOT, capture_output=True, timeout=120)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pdf.read_bytes().startswith(b"%PDF-")
    committed = ROOT / "docs/hybrid-sample-letter.png"
    assert png.read_bytes() == committed.read_bytes(), (
        "docs/hybrid-sample-letter.png is stale: run `.venv/bin/python scripts/render_sample_letter.py`"
    )
