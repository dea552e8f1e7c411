"""Per-folder mod-sequences (RFC 7162 CONDSTORE): ``esam-modseq.sqlite`` in the folder.

Maildir keeps flags in file names and has nowhere to put a modification counter,
so the folder keeps a small index beside it: per message (by Maildir key) its UID,
the flag letters last seen and the mod-sequence of the last change; the folder's
HIGHESTMODSEQ; and the UIDs expunged with the mod-sequence of the expunge.

The index is brought up to date by :meth:`ModSeqIndex.reconcile`, given the
folder's current messages: every message that is new or whose flag letters differ
from the stored ones gets the next mod-sequence, and so does every message that is
gone.  That catches changes made by any process (and by Dovecot on the same store)
without a hook in each writer; one reconcile is one ``BEGIN IMMEDIATE`` transaction,
so concurrent processes never hand out the same value twice.

Mod-sequences never go backwards (RFC 7162 §3.1.1): a new or recreated index
starts at the current time in microseconds, above any value handed out before
(one change per microsecond is far beyond any mailbox's rate).

SQLite in WAL mode with ``busy_timeout``, like the metadata cache.  Blocking: call
from worker threads.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from esam_mail.store.cache import open_folder_db, shared_folder_db

log = logging.getLogger(__name__)

MODSEQ_FILE = "esam-modseq.sqlite"
MODSEQ_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS msgs (key TEXT PRIMARY KEY, "
    "uid INTEGER NOT NULL, modseq INTEGER NOT NULL, chars TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS expunged (uid INTEGER PRIMARY KEY, modseq INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    # reconcile reads only what changed past a mod-sequence (see ModSeqIndex._stored)
    "CREATE INDEX IF NOT EXISTS msgs_by_modseq ON msgs (modseq)",
    "CREATE INDEX IF NOT EXISTS expunged_by_modseq ON expunged (modseq)",
)
_RECREATED = "modseq_index_recreated"
MAX_MODSEQ = (1 << 63) - 1


def create_index_file(folder_dir: Path) -> None:
    """Make a new folder's mod-sequence file now (blocking), not at its first use."""
    open_folder_db(folder_dir / MODSEQ_FILE, MODSEQ_SCHEMA, _RECREATED).close()


class ModSeqIndex:
    """Mod-sequence bookkeeping of one folder (see module docstring)."""

    def __init__(self, folder_dir: Path) -> None:
        self.path = folder_dir / MODSEQ_FILE
        self._shared = shared_folder_db(self.path)  # one connection per folder and process
        self._lock = self._shared.lock
        # the msgs table as of HIGHESTMODSEQ ``highest``, read through connection ``conn``:
        # (conn, highest, key -> (uid, modseq, chars)).  Every write raises HIGHESTMODSEQ and
        # gives each row it writes (and each expunge it records) a mod-sequence above the old
        # one, so rows past ``highest`` are all that changed since: reconcile reads those, not
        # the whole table (it was an O(messages) read after every change, issue 20).
        self._memo: tuple[sqlite3.Connection, int, dict[str, tuple[int, int, str]]] | None = None
        # the state the last reconcile was given and the uid -> mod-sequence it returned
        self._last: tuple[dict[str, tuple[int, str]], dict[int, int]] | None = None
        # after a reconcile: a superset of the UIDs whose mod-sequence it changed, added or
        # removed in the returned map (None: unknown, a full pass)
        self.moved: set[int] | None = None

    def _connect(self) -> sqlite3.Connection:
        """The folder's shared connection (call with ``_lock`` held; do not keep it)."""
        # Recreated: the time-based start keeps every new value above the old ones.
        return self._shared.connect(self.path, MODSEQ_SCHEMA, _RECREATED)

    def reconcile(
        self, state: Mapping[str, tuple[int, str]], changed: Iterable[str] | None = None,
    ) -> tuple[int, dict[int, int]]:
        """Bring the index up to ``state`` (Maildir key -> (uid, flag letters)).

        Returns (HIGHESTMODSEQ, uid -> mod-sequence of every message in ``state``); the
        caller must not change the returned dict.  ``changed``: the caller knows that
        only these keys' (uid, letters) may differ from the ``state`` it gave last time
        (a key gone from ``state`` included); then ``state`` is only looked up, never
        walked or copied, and need not be a dict.  None: any may have.

        After a first full pass, a reconcile looks only at the messages whose (uid,
        letters) differ from the last ``state`` given (set operations in C) and at the
        rows any process wrote since: every message once per reconcile in Python was the
        most of a look at a busy folder (issue 20).  A message the last state held and this
        one does not is expunged; a row of a message this process has not listed yet is
        left alone (a full pass would count it as expunged until the next look).
        """
        with self._lock:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute("SELECT value FROM meta WHERE name = 'highest'").fetchone()
                highest = int(row[0]) if row else time.time_ns() // 1000
                stored, touched = self._stored(conn, highest if row else None)
                last, self._last = self._last, None
                nxt = highest + 1
                rows: list[tuple[str, int, int, str]] = []
                candidates: Iterable[tuple[str, tuple[int, str]]]
                incremental = last is not None and touched is not None
                moved: set[int] | None = None
                if last is not None and touched is not None:
                    prev, before = last[0], last[1]
                    out = dict(before)
                    moved = set()
                    if changed is None:
                        keys = {k for k, _ in state.items() - prev.items()}
                        gone_keys = prev.keys() - state.keys()
                    else:
                        keys = set(changed)
                        gone_keys = {k for k in keys if k in prev and k not in state}
                    keys.update(touched)
                    for k in keys | gone_keys:  # a message gone or renumbered: its old UID
                        was = prev.get(k)
                        if was is not None:
                            out.pop(was[0], None)
                            moved.add(was[0])
                    candidates = [(k, state[k]) for k in keys if k in state]
                    gone = [(k, stored[k][0]) for k in gone_keys if k in stored]
                else:
                    out = {}
                    candidates = state.items()
                    gone = [(k, v[0]) for k, v in stored.items() if k not in state]
                for key, (uid, chars) in candidates:
                    old = stored.get(key)
                    if old is not None and old[0] == uid and old[2] == chars:
                        out[uid] = old[1]
                    else:
                        rows.append((key, uid, nxt, chars))
                        out[uid] = nxt
                    if moved is not None and before.get(uid) != out[uid]:
                        moved.add(uid)
                if rows or gone or row is None:
                    if rows or gone:
                        highest = nxt
                    # only the statements with rows: each one run releases the GIL twice
                    # (prepare, step), a hand-over to the busy event loop under load
                    if rows:
                        conn.executemany("INSERT OR REPLACE INTO msgs VALUES (?, ?, ?, ?)", rows)
                    if gone:
                        conn.executemany("DELETE FROM msgs WHERE key = ?", [(k,) for k, _ in gone])
                        conn.executemany("INSERT OR REPLACE INTO expunged VALUES (?, ?)",
                                         [(u, highest) for _, u in gone])
                    conn.execute("INSERT OR REPLACE INTO meta VALUES ('highest', ?)", (highest,))
            except BaseException:
                self._memo = None
                conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except BaseException:
                self._memo = None
                raise
            for key, _uid in gone:
                del stored[key]
            for key, uid, modseq, chars in rows:
                stored[key] = (uid, modseq, chars)
            self._memo = (conn, highest, stored)
            if incremental and changed is not None:
                for k in keys | gone_keys:  # the last state brought forward in place
                    now = state.get(k)
                    if now is None:
                        prev.pop(k, None)
                    else:
                        prev[k] = now
                self._last = (prev, out)
            else:
                self._last = (dict(state.items()), out)
            self.moved = moved
        return highest, out

    def _stored(
        self, conn: sqlite3.Connection, highest: int | None,
    ) -> tuple[dict[str, tuple[int, int, str]], set[str] | None]:
        """key -> (uid, modseq, chars) of the msgs table (inside reconcile's transaction):
        the memo brought forward by the rows and expunges past its HIGHESTMODSEQ, or the
        whole table when there is no usable memo; and the keys of the rows brought forward
        (None after a whole read).  The returned dict becomes the new memo (reconcile
        updates it with what it writes)."""
        memo, self._memo = self._memo, None
        if memo is None or memo[0] is not conn or highest is None or highest < memo[1]:
            rows = conn.execute("SELECT key, uid, modseq, chars FROM msgs")
            return {k: (u, m, c) for k, u, m, c in rows}, None
        stored, since = memo[2], memo[1]
        touched: set[str] = set()
        if highest == since:
            return stored, touched
        gone = {u for (u,) in conn.execute("SELECT uid FROM expunged WHERE modseq > ?", (since,))}
        if gone:  # not touched: a message still listed here keeps its row's last value
            for key in [k for k, v in stored.items() if v[0] in gone]:
                del stored[key]
        for k, u, m, c in conn.execute("SELECT key, uid, modseq, chars FROM msgs WHERE modseq > ?", (since,)):
            stored[k] = (u, m, c)
            touched.add(k)
        return stored, touched

    def expunged_since(self, modseq: int) -> list[int]:
        """UIDs expunged with a mod-sequence above ``modseq`` (for QRESYNC)."""
        with self._lock:
            rows = self._connect().execute(
                "SELECT uid FROM expunged WHERE modseq > ? ORDER BY uid", (modseq,))
            return [int(r[0]) for r in rows]

    def close(self) -> None:
        """Nothing to do: the process keeps the folder's connection for its next user."""
