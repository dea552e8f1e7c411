"""Test tiers by directory: tests/conftest.py gives every test its tier's marker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, pytest_collection_modifyitems


class FakeItem:
    def __init__(self, path: Path, marked: str | None = None) -> None:
        self.path = path
        self.markers: list[str] = [marked] if marked else []

    def get_closest_marker(self, name: str) -> Any:
        return name if name in self.markers else None

    def add_marker(self, mark: Any) -> None:
        self.markers.append(mark.name)


@pytest.mark.parametrize(
    ("where", "want"),
    [("protocol/test_x.py", ["protocol"]), ("protocol/imap/test_y.py", ["protocol"]), ("e2e/test_z.py", ["e2e"]),
     ("slow/test_w.py", ["slow"]), ("unit/test_v.py", [])],
)
def test_each_directory_marks_its_tier(where: str, want: list[str]) -> None:
    item = FakeItem(ROOT / "tests" / where)
    pytest_collection_modifyitems(None, [item])  # type: ignore[arg-type,list-item]
    assert item.markers == want


def test_an_explicit_marker_is_not_doubled() -> None:
    item = FakeItem(ROOT / "tests" / "protocol" / "test_x.py", marked="protocol")
    pytest_collection_modifyitems(None, [item])  # type: ignore[arg-type,list-item]
    assert item.markers == ["protocol"]


def test_the_slow_tier_is_not_under_unit() -> None:
    """The fast tier stays fast: multi-process races and mypy live in tests/slow."""
    unit = ROOT / "tests" / "unit"
    for name in ("test_concurrency.py", "test_multiprocess.py"):
        assert not list(unit.rglob(name)), name
    assert "mypy" not in (unit / "test_quality.py").read_text()
