"""The code stays honest: ruff clean and the layer contracts of setup.cfg kept."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_ruff_is_clean() -> None:
    res = subprocess.run([str(BIN / "ruff"), "check", "esam_mail", "tests"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-4000:]


def test_import_layers_are_kept() -> None:
    """services/store/directory never import a protocol library; layers point downward."""
    res = subprocess.run([str(BIN / "lint-imports")], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-4000:]


def test_the_layer_contracts_are_all_there() -> None:
    """Deleting a contract is not a way to make lint-imports pass."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    have = {s.split(":", 2)[2] for s in cfg.sections() if s.startswith("importlinter:contract:")}
    assert have >= {
        "layers", "frontends-independent", "frontends-no-storage", "services-no-protocol",
        "twisted-only-in-imap", "aiosmtpd-only-in-smtp", "starlette-only-in-web", "orm-only-in-directory",
        "acyclic", "services-domains", "pure-cores",
    }


def test_services_set_no_wire_codes() -> None:
    """HTTP statuses are chosen by the HTTP front-end (web/statuses.py), not by services."""
    import re

    hits = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in sorted((ROOT / "esam_mail" / "services").rglob("*.py"))
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"\bhttp_status\b", line)
    ]
    assert not hits, hits
