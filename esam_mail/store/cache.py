"""Per-folder metadata cache (``esam-cache.sqlite`` in the folder directory).

The IMAP layer stores parsed data (ENVELOPE, BODYSTRUCTURE, header fields ...) per
message so that FETCH and SEARCH need not re-parse files.  Keys are Maildir keys (base
name, which includes ``,S=<size>``), values are JSON-serialisable dicts chosen by the
caller.  Because a key is never reused for other content, entries never go stale; they
only become orphaned after an expunge and are pruned lazily (``prune``/``delete``).

SQLite in WAL mode with ``busy_timeout`` is safe for several processes on one host;
``synchronous=NORMAL`` because the cache can always be rebuilt.  A corrupt cache file
is deleted and recreated.  One connection per ``MetadataCache`` object, guarded by a
lock so it may be used from worker threads.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CACHE_FILE = "esam-cache.sqlite"
_CHUNK = 500


def open_folder_db(path: Path, schema: Sequence[str], recreated_event: str) -> sqlite3.Connection:
    """Open (creating 0600 first: SQLite would use the umask; WAL/SHM files inherit the
    database file's mode) one of a folder's own SQLite files, WAL, with ``schema``.

    The file only holds what can be rebuilt from the folder, so a corrupt one is deleted and
    made again once (``recreated_event`` is logged), never repaired.
    """
    for attempt in range(2):
        try:
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            conn = sqlite3.connect(str(path), timeout=10.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            for statement in schema:
                conn.execute(statement)
            return conn
        except sqlite3.DatabaseError:
            if attempt:
                raise
            log.warning("event=%s folder=%s", recreated_event, path.parent.name)
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(str(path) + suffix)
    raise AssertionError("unreachable")


class MetadataCache:
    """Key -> JSON dict cache for one folder."""

    def __init__(self, folder_dir: Path) -> None:
        self.path = folder_dir / CACHE_FILE
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = open_folder_db(
                self.path,
                ("CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, value TEXT NOT NULL)",),
                "cache_corrupt_recreated",
            )
        return self._conn

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Values for the keys that are cached (missing keys are simply absent)."""
        wanted = list(dict.fromkeys(keys))
        out: dict[str, dict[str, Any]] = {}
        if not wanted:
            return out
        with self._lock:
            conn = self._connect()
            for i in range(0, len(wanted), _CHUNK):
                chunk = wanted[i : i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                for key, value in conn.execute(
                    f"SELECT key, value FROM entries WHERE key IN ({marks})",  # noqa: S608
                    chunk,
                ):
                    with contextlib.suppress(ValueError):
                        out[key] = json.loads(value)
        return out

    def put_many(self, items: Mapping[str, dict[str, Any]] | Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Insert or replace entries (one transaction)."""
        pairs = items.items() if isinstance(items, Mapping) else items
        rows = [(k, json.dumps(v, separators=(",", ":"))) for k, v in pairs]
        if not rows:
            return
        with self._lock:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?)", rows)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def delete(self, keys: Iterable[str]) -> None:
        rows = [(k,) for k in keys]
        if not rows or not self.path.exists():
            return
        with self._lock:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("DELETE FROM entries WHERE key = ?", rows)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def prune(self, live_keys: Iterable[str]) -> int:
        """Delete every entry whose key is not in ``live_keys``; returns how many."""
        with self._lock:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("CREATE TEMP TABLE IF NOT EXISTS live (key TEXT PRIMARY KEY)")
                conn.execute("DELETE FROM live")
                conn.executemany("INSERT OR IGNORE INTO live VALUES (?)", ((k,) for k in live_keys))
                cur = conn.execute("DELETE FROM entries WHERE key NOT IN (SELECT key FROM live)")
                removed = cur.rowcount
                conn.execute("DELETE FROM live")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        return removed

    def count(self) -> int:
        with self._lock:
            row = self._connect().execute("SELECT count(*) FROM entries").fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
