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
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CACHE_FILE = "esam-cache.sqlite"
CACHE_SCHEMA = ("CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, value TEXT NOT NULL)",)
_RECREATED = "cache_corrupt_recreated"
_CHUNK = 500


def schema_stamp(schema: Sequence[str]) -> int:
    """A file's ``user_version`` once ``schema`` is in it (a CRC of the statements: a
    changed schema is applied again by the next open)."""
    return zlib.crc32("\n".join(schema).encode()) & 0x7FFFFFFF or 1


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
            stamp = schema_stamp(schema)
            if conn.execute("PRAGMA user_version").fetchone()[0] != stamp:
                # a new (or older) file: WAL (persistent in the file) and the schema, then
                # the stamp, so the next process's open is two cheap PRAGMAs, not eight
                # statements (1.8 ms, at the first session of each folder in each worker)
                conn.execute("PRAGMA journal_mode=WAL")
                for statement in schema:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version={stamp:d}")
            conn.execute("PRAGMA synchronous=NORMAL")  # per connection, not kept in the file
            return conn
        except sqlite3.DatabaseError:
            if attempt:
                raise
            log.warning("event=%s folder=%s", recreated_event, path.parent.name)
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(str(path) + suffix)
    raise AssertionError("unreachable")


class SharedFolderDB:
    """One open connection to a folder's SQLite file for every session of this process.

    Opening costs a file open, three PRAGMAs and the schema statements; an IMAP session used
    to pay that twice (summary cache and mod-sequence index) at SELECT.  ``lock`` guards the
    connection: users take it around every use and never keep the connection past it.
    Before each use the file is checked: a folder deleted, renamed or recreated, or a file
    overwritten, gets a fresh connection (via :func:`open_folder_db`, which recreates a
    corrupt file).  The check is one ``stat``; the file's header is read (open, fstat,
    16-byte read, close) only when the stat differs from the last checked one: those five
    system calls at every use, each a hand-over of the GIL under load, were a quarter of a
    mailbox thread's system calls per IMAP command (issue 20).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.conn: sqlite3.Connection | None = None
        self.ident: tuple[int, int] | None = None
        # (dev, ino, size, mtime_ns, ctime_ns) of the file when its header was last found good
        self._checked: tuple[int, int, int, int, int] | None = None

    def connect(self, path: Path, schema: Sequence[str], recreated_event: str) -> sqlite3.Connection:
        """The connection (call with ``lock`` held)."""
        ident: tuple[int, int] | None = None
        if self.conn is not None:
            try:
                st = os.stat(path)
                sig = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                if sig == self._checked:
                    ident = (st.st_dev, st.st_ino)
                else:
                    self._checked = None
                    with open(path, "rb") as f:
                        st = os.fstat(f.fileno())
                        # not overwritten in place (empty: a new file whose pages are all in the WAL)
                        if f.read(16) in (b"SQLite format 3\0", b""):
                            ident = (st.st_dev, st.st_ino)
                            self._checked = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
                                             st.st_ctime_ns)
            except OSError:
                ident = None
        if self.conn is None or ident is None or ident != self.ident:
            self._checked = None
            if self.conn is not None:  # nobody keeps it past the lock: close it now (its WAL too)
                with contextlib.suppress(sqlite3.Error):
                    self.conn.close()
                self.conn = None
            self.conn = open_folder_db(path, schema, recreated_event)
            st = os.stat(path)
            self.ident = (st.st_dev, st.st_ino)
        return self.conn


_SHARED_MAX = 64  # folders whose connections stay open (least recently used go first)
_shared: dict[Path, SharedFolderDB] = {}
_shared_lock = threading.Lock()


def shared_folder_db(path: Path) -> SharedFolderDB:
    """The process's :class:`SharedFolderDB` for ``path``."""
    with _shared_lock:
        entry = _shared.pop(path, None)
        if entry is None:
            entry = SharedFolderDB()
            while len(_shared) >= _SHARED_MAX:
                _shared.pop(next(iter(_shared)))  # its users keep it until they are done
        _shared[path] = entry  # most recently used last
        return entry


def close_shared_folder_dbs() -> None:
    """Close every shared folder connection of this process (as at exit; tests use it to
    act as another process would see the files)."""
    with _shared_lock:
        entries = list(_shared.values())
        _shared.clear()
    for entry in entries:
        with entry.lock:
            if entry.conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    entry.conn.close()
                entry.conn = None


def create_cache_file(folder_dir: Path) -> None:
    """Make a new folder's cache file now (blocking), not at its first use."""
    open_folder_db(folder_dir / CACHE_FILE, CACHE_SCHEMA, _RECREATED).close()


class MetadataCache:
    """Key -> JSON dict cache for one folder."""

    def __init__(self, folder_dir: Path) -> None:
        self.path = folder_dir / CACHE_FILE
        self._shared = shared_folder_db(self.path)
        self._lock = self._shared.lock

    def _connect(self) -> sqlite3.Connection:
        """The folder's shared connection (call with ``_lock`` held; do not keep it)."""
        return self._shared.connect(self.path, CACHE_SCHEMA, _RECREATED)

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
        """Nothing to do: the process keeps the folder's connection for its next user."""
