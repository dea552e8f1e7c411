from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.protocol.harness import Running


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    from esam_mail import config

    r = Running(config.load(write_config(tmp_path)))
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def make_running(tmp_path: Path) -> Iterator[object]:
    """Start a server with extra config sections: make_running(smtp={...})."""
    from esam_mail import config

    started: list[Running] = []

    def make(**sections: dict[str, object]) -> Running:
        r = Running(config.load(write_config(tmp_path, **sections)))
        started.append(r)
        return r

    yield make
    for r in started:
        r.stop()
