"""A folder's SQLite files are opened once per process, not once per session (issue 20)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from esam_mail.store import cache as cache_mod
from esam_mail.store.cache import MetadataCache, open_folder_db, schema_stamp
from esam_mail.store.modseq import MODSEQ_SCHEMA


def _cached_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[Path]]:
    """A folder whose metadata cache holds k1, and the list of every connection
    ``open_folder_db`` makes from now on."""
    opened: list[Path] = []
    real = cache_mod.open_folder_db
    monkeypatch.setattr(cache_mod, "open_folder_db", lambda p, *a: opened.append(p) or real(p, *a))
    folder = tmp_path / "f"
    folder.mkdir()
    MetadataCache(folder).put_many({"k1": {"v": 1}})
    return folder, opened


def test_sessions_share_one_connection_and_a_recreated_folder_gets_a_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, opened = _cached_folder(tmp_path, monkeypatch)
    for _ in range(3):  # later sessions
        c = MetadataCache(folder)
        assert c.get_many(["k1"]) == {"k1": {"v": 1}}
        c.close()
    assert len(opened) == 1
    shutil.rmtree(folder)  # folder deleted and made again under the same name
    folder.mkdir()
    MetadataCache(folder).get_many(["k1"])
    assert len(opened) == 2


def _traced_opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement run on connections that open_folder_db makes from now on."""
    statements: list[str] = []
    real = cache_mod.sqlite3.connect

    def connect(*a: object, **kw: object) -> sqlite3.Connection:
        conn = real(*a, **kw)  # type: ignore[arg-type]
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(cache_mod.sqlite3, "connect", connect)
    return statements


def test_a_file_with_the_schema_opens_without_running_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.sqlite"
    open_folder_db(path, MODSEQ_SCHEMA, "x").close()  # a new folder's file
    statements = _traced_opens(monkeypatch)
    conn = open_folder_db(path, MODSEQ_SCHEMA, "x")
    try:
        assert not [s for s in statements if s.startswith(("CREATE", "PRAGMA journal_mode"))], statements
        assert len(statements) <= 3, statements
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # kept in the file
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL, per connection
        conn.execute("INSERT INTO meta VALUES ('highest', 1)")
    finally:
        conn.close()


def test_an_older_file_or_a_changed_schema_gets_the_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.sqlite"
    old = sqlite3.connect(path)  # a file of an earlier release: no index, no stamp
    old.execute(MODSEQ_SCHEMA[0])
    old.execute("INSERT INTO msgs VALUES ('k', 1, 5, 'S')")
    old.commit()
    old.close()
    conn = open_folder_db(path, MODSEQ_SCHEMA, "x")
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"msgs_by_modseq", "expunged_by_modseq"} <= indexes
    assert conn.execute("PRAGMA user_version").fetchone()[0] == schema_stamp(MODSEQ_SCHEMA)
    assert conn.execute("SELECT uid FROM msgs").fetchall() == [(1,)]  # nothing lost
    conn.close()
    grown = (*MODSEQ_SCHEMA, "CREATE TABLE IF NOT EXISTS extra (x INTEGER)")
    conn = open_folder_db(path, grown, "x")
    assert conn.execute("SELECT count(*) FROM extra").fetchone() == (0,)
    conn.close()


def test_an_unchanged_file_is_checked_with_one_stat_an_overwritten_one_is_reopened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each use checks the file: a stat while it is as last checked (five system calls per
    use, each a GIL hand-over, were a quarter of a mailbox thread's per command, issue 20),
    its header read again when the stat differs; overwritten in place (same inode) with
    something that is not SQLite, it gets a new connection."""
    folder, opened = _cached_folder(tmp_path, monkeypatch)
    reads: list[object] = []
    real_open = open
    monkeypatch.setattr(cache_mod, "open", lambda *a, **kw: reads.append(a) or real_open(*a, **kw),
                        raising=False)
    for _ in range(5):
        assert MetadataCache(folder).get_many(["k1"]) == {"k1": {"v": 1}}
    assert len(reads) <= 1 and len(opened) == 1  # the first use may read the header once
    db = next(p for p in folder.iterdir() if p.name.endswith(".sqlite"))
    with real_open(db, "r+b") as f:  # same inode, garbage over the header
        f.write(b"this is not a database at all")
    MetadataCache(folder).get_many(["k1"])
    assert len(opened) == 2
