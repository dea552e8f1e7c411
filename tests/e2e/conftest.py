"""`esam serve` as a subprocess from a temporary config, for third-party clients."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_config

ESAM = [sys.executable, "-m", "esam_mail"]


class EsamProcess:
    def __init__(self, tmp: Path, **sections: dict[str, Any]) -> None:
        self.tmp = tmp
        self.config = write_config(tmp, **sections)
        self.ready = tmp / "ready.json"
        self.log = tmp / "esam.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, int] = {}

    def esam(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([*ESAM, "-c", str(self.config), *args], input=input, capture_output=True,
                             text=True, timeout=120)
        if check and res.returncode != 0:
            raise AssertionError(f"esam {' '.join(args)} -> {res.returncode}\n{res.stdout}\n{res.stderr}")
        return res

    def start(self, timeout: float = 60) -> None:
        if self.ready.exists():
            self.ready.unlink()
        with open(self.log, "ab") as logf:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(
                [*ESAM, "-c", str(self.config), "serve", "--ready-file", str(self.ready)], stdout=logf, stderr=logf
            )
        deadline = time.monotonic() + timeout
        while not self.ready.exists():
            if self.proc.poll() is not None:
                raise AssertionError(f"esam serve exited {self.proc.returncode}:\n{self.log.read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"esam serve not ready:\n{self.log.read_text()}")
            time.sleep(0.05)
        self.ports = json.loads(self.ready.read_text())["ports"]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    @property
    def data(self) -> Path:
        return self.tmp / "data"

    @property
    def cert(self) -> Path:
        return self.data / "tls" / "cert.pem"

    def add_staff(self, username: str, role: str = "employee", office: str | None = "ALA01") -> None:
        """A staff account (``--employee`` must name one)."""
        extra = ["--office", office] if office else []
        self.esam("staff", "add", username, "--name", f"Staff {username}", "--role", role, *extra,
                  "--password-stdin", input="a long staff password\n")

    def add_mailbox(self, login: str, password: str) -> None:
        self.esam("mailbox", "add", login, "--password-stdin", input=password + "\n")


@pytest.fixture
def esam(tmp_path: Path) -> Iterator[EsamProcess]:
    p = EsamProcess(tmp_path)
    p.esam("init")
    p.start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def make_esam(tmp_path: Path) -> Iterator[Any]:
    made: list[EsamProcess] = []

    def make(sub: str = "", **sections: dict[str, Any]) -> EsamProcess:
        d = tmp_path / sub if sub else tmp_path
        d.mkdir(exist_ok=True)
        p = EsamProcess(d, **sections)
        made.append(p)
        return p

    yield make
    for p in made:
        if p.proc is not None:
            p.stop()


def tool(name: str) -> str:
    for d in [*os.environ.get("PATH", "").split(":"), "/usr/sbin"]:
        if os.access(os.path.join(d, name), os.X_OK):
            return os.path.join(d, name)
    pytest.fail(f"{name} is not installed: run `bash scripts/test.sh`, which installs it")
