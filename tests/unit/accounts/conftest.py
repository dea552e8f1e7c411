"""The `esam` command in process over a temporary SQLite directory (accounts: passwords, logins)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from esam_mail.cli import main
from tests.conftest import add_staff, migrate_directory, write_config


class Cli:
    def __init__(self, tmp: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                 **sections: dict[str, Any]) -> None:
        from esam_mail import config

        self.tmp = tmp
        self.config = write_config(tmp, registration={"registry_policy": "accept"}, **sections)
        self.cfg = config.load(self.config)
        migrate_directory(self.cfg.directory_url)
        # --employee must be a staff account: a supervisor registers and handles hybrid mail
        add_staff(self.cfg.directory_url, "e-17", "supervisor", "ALA01")
        add_staff(self.cfg.directory_url, "h-1", role="hybrid")  # scans paper letters
        self.capsys, self.monkeypatch = capsys, monkeypatch
        monkeypatch.delenv("ESAM_LANG", raising=False)
        monkeypatch.setenv("LANG", "C.UTF-8")

    def __call__(self, *args: str, stdin: str = "") -> tuple[int, str, str]:
        self.monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        self.capsys.readouterr()
        rc = main(["-c", str(self.config), *args])
        out, err = self.capsys.readouterr()
        return rc, out, err


    def json(self, *args: str, stdin: str = "") -> Any:
        rc, out, err = self(*args, "--json", stdin=stdin)
        assert rc == 0, err
        return json.loads(out)


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(tmp_path, capsys, monkeypatch)
