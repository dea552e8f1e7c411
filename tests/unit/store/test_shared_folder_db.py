"""A folder's SQLite files are opened once per process, not once per session (issue 20)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from esam_mail.store import cache as cache_mod
from esam_mail.store.cache import MetadataCache


def test_sessions_share_one_connection_and_a_recreated_folder_gets_a_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[Path] = []
    real = cache_mod.open_folder_db
    monkeypatch.setattr(cache_mod, "open_folder_db", lambda p, *a: opened.append(p) or real(p, *a))
    folder = tmp_path / "f"
    folder.mkdir()
    MetadataCache(folder).put_many({"k1": {"v": 1}})
    for _ in range(3):  # later sessions
        c = MetadataCache(folder)
        assert c.get_many(["k1"]) == {"k1": {"v": 1}}
        c.close()
    assert len(opened) == 1
    shutil.rmtree(folder)  # folder deleted and made again under the same name
    folder.mkdir()
    assert MetadataCache(folder).get_many(["k1"]) == {}
    assert len(opened) == 2
