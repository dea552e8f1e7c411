"""A Starlette TestClient over the real web application with a stand-in for the services
that only the pages under test touch (no sockets: httpx drives the ASGI app directly)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.conftest import write_config


@pytest.fixture
def web_cfg(tmp_path: Path) -> Any:
    from esam_mail import config

    return config.load(write_config(tmp_path))


@pytest.fixture
def client(web_cfg: Any) -> Any:
    from starlette.testclient import TestClient

    from esam_mail.web.server import build_app

    class Directory:
        async def count_by(self) -> int:
            return 0

    services = SimpleNamespace(cfg=web_cfg, directory=Directory(), spool=None, extras={}, hasher=None,
                               authenticator=None, store=None)
    with TestClient(build_app(services), base_url="http://esam.test") as c:
        yield c
