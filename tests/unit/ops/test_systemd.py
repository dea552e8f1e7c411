"""conf/systemd units: the hardening and reload settings are there, and systemd accepts the files."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
UNITS = ROOT / "conf" / "systemd"


def unit(name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            k, _, v = line.partition("=")
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def test_esam_service_is_hardened_and_reloadable() -> None:
    u = unit("esam.service")
    assert u["User"] == ["esam"] and u["ProtectSystem"] == ["strict"]
    assert "/var/lib/esam" in u["ReadWritePaths"][0].split()
    assert u["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert u["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert u["NoNewPrivileges"] == ["yes"] and u["RestartPreventExitStatus"] == ["78"]
    assert any("esam serve" in v for v in u["ExecStart"])


def test_units_parse_and_pass_systemd_analyze(tmp_path: Path) -> None:
    for f in UNITS.iterdir():
        configparser.ConfigParser(strict=False, interpolation=None).read_string(
            f.read_text().replace("%%", "%"))
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    # point the units at an executable that exists here, keep everything else
    fake = tmp_path / "esam"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    for f in UNITS.iterdir():
        (tmp_path / f.name).write_text(f.read_text().replace("/opt/esam/.venv/bin/esam", str(fake)))
    res = subprocess.run(["systemd-analyze", "verify", *(str(tmp_path / f.name) for f in UNITS.iterdir())],
                         capture_output=True, text=True, timeout=60)
    problems = [line for line in (res.stdout + res.stderr).splitlines()
                if line.strip() and "not executable" not in line and "/bin/kill" not in line]
    assert res.returncode == 0 and not problems, res.stdout + res.stderr
