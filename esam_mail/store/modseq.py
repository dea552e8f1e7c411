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
from collections.abc import Mapping
from pathlib import Path

from esam_mail.store.cache import shared_folder_db

log = logging.getLogger(__name__)

MODSEQ_FILE = "esam-modseq.sqlite"
MAX_MODSEQ = (1 << 63) - 1


class ModSeqIndex:
    """Mod-sequence bookkeeping of one folder (see module docstring)."""

    def __init__(self, folder_dir: Path) -> None:
        self.path = folder_dir / MODSEQ_FILE
        self._shared = shared_folder_db(self.path)  # one connection per folder and process
        self._lock = self._shared.lock

    def _connect(self) -> sqlite3.Connection:
        """The folder's shared connection (call with ``_lock`` held; do not keep it)."""
        # Recreated: the time-based start keeps every new value above the old ones.
        return self._shared.connect(self.path, (
            "CREATE TABLE IF NOT EXISTS msgs (key TEXT PRIMARY KEY, "
            "uid INTEGER NOT NULL, modseq INTEGER NOT NULL, chars TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS expunged (uid INTEGER PRIMARY KEY, modseq INTEGER NOT NULL)",
            "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
        ), "modseq_index_recreated")

    def reconcile(self, state: Mapping[str, tuple[int, str]]) -> tuple[int, dict[int, int]]:
        """Bring the index up to ``state`` (Maildir key -> (uid, flag letters)).

        Returns (HIGHESTMODSEQ, uid -> mod-sequence of every message in ``state``).
        """
        with self._lock:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute("SELECT value FROM meta WHERE name = 'highest'").fetchone()
                highest = int(row[0]) if row else time.time_ns() // 1000
                stored = {k: (u, m, c) for k, u, m, c in
                          conn.execute("SELECT key, uid, modseq, chars FROM msgs")}
                nxt = highest + 1
                changed: list[tuple[str, int, int, str]] = []
                out: dict[int, int] = {}
                for key, (uid, chars) in state.items():
                    old = stored.get(key)
                    if old is not None and old[0] == uid and old[2] == chars:
                        out[uid] = old[1]
                    else:
                        changed.append((key, uid, nxt, chars))
                        out[uid] = nxt
                gone = [(k, v[0]) for k, v in stored.items() if k not in state]
                if changed or gone or row is None:
                    if changed or gone:
                        highest = nxt
                    conn.executemany("INSERT OR REPLACE INTO msgs VALUES (?, ?, ?, ?)", changed)
                    conn.executemany("DELETE FROM msgs WHERE key = ?", [(k,) for k, _ in gone])
                    conn.executemany("INSERT OR REPLACE INTO expunged VALUES (?, ?)",
                                     [(u, highest) for _, u in gone])
                    conn.execute("INSERT OR REPLACE INTO meta VALUES ('highest', ?)", (highest,))
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        return highest, out

    def expunged_since(self, modseq: int) -> list[int]:
        """UIDs expunged with a mod-sequence above ``modseq`` (for QRESYNC)."""
        with self._lock:
            rows = self._connect().execute(
                "SELECT uid FROM expunged WHERE modseq > ? ORDER BY uid", (modseq,))
            return [int(r[0]) for r in rows]

    def close(self) -> None:
        """Nothing to do: the process keeps the folder's connection for its next user."""
