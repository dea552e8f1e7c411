"""The searchable text of messages, kept per process for SEARCH TEXT/BODY (issue 20).

Without a full-text index every SEARCH TEXT or BODY reads each message of the folder
from disk and parses its MIME structure again: at a 300-message folder that was 300
file reads (each one several system calls on a mailbox thread) and 300 parses per
command, for the same immutable files a mail client searches again and again (quick
filters, saved searches re-run at each sync).  A message file never changes under its
Maildir key, so the decoded text is kept here by (folder cache id, key): the folder's id
names the login, the folder and its UIDVALIDITY, so a folder deleted and created again
never serves the old texts.

Bounded by the size of what it holds (:data:`BUDGET` bytes, least recently used first
out); a text larger than :data:`MAX_ITEM` is not kept.  Thread-safe (the mailbox
threads search in parallel).  Never holds a message body's bytes, only the decoded text
a search compares with; nothing of it is logged.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict

BUDGET = 32 * 1024 * 1024  # bytes of text kept per process
MAX_ITEM = 1024 * 1024  # a text larger than this is computed each time, not kept


class TextCache:
    """(folder id, message key, which text) -> decoded text, least recently used out."""

    def __init__(self, budget: int = BUDGET, max_item: int = MAX_ITEM) -> None:
        self.budget = budget
        self.max_item = max_item
        self._items: OrderedDict[tuple[str, str, bool], str] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, folder_id: str, key: str, headers: bool) -> str | None:
        """The kept text of message ``key`` of folder ``folder_id`` (``headers``: with
        its header fields, as TEXT; else the text parts alone, as BODY), or None."""
        k = (folder_id, key, headers)
        with self._lock:
            hit = self._items.get(k)
            if hit is not None:
                self._items.move_to_end(k)
            return hit

    def put(self, folder_id: str, key: str, headers: bool, text: str) -> None:
        """Keep ``text`` (made from the message file as read, never from a failed read)."""
        size = sys.getsizeof(text)
        if size > self.max_item:
            return
        k = (folder_id, key, headers)
        with self._lock:
            if k in self._items:
                return
            self._items[k] = text
            self._size += size
            while self._size > self.budget:
                _, old = self._items.popitem(last=False)
                self._size -= sys.getsizeof(old)

    def size(self) -> int:
        """Bytes held (as ``sys.getsizeof`` counts them)."""
        with self._lock:
            return self._size

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


TEXTS = TextCache()
