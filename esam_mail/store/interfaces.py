"""Contracts of the mail store (implemented by ``store.maildir``).

The store knows nothing about authentication, SMTP or IMAP wire formats.
Everything here is synchronous file I/O; async callers wrap the slow calls
(``deliver``: it fsyncs) in ``asyncio.to_thread``.

Flags are IMAP spellings: ``\\Seen \\Answered \\Flagged \\Deleted \\Draft``
plus keywords (atoms without a backslash).  ``\\Recent`` is not stored.

Folder names are Unicode strings with ``/`` as the hierarchy delimiter
(``"INBOX"``, ``"Sent"``, ``"Projects/2026"``); the IMAP front-end converts
from and to modified UTF-7.  The store validates every name
(``BadFolderName``) so that no name can leave the user's directory.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

SYSTEM_FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")
SPECIAL_USE = {  # folder name -> RFC 6154 attribute; created with every mailbox
    "Sent": "\\Sent",
    "Drafts": "\\Drafts",
    "Trash": "\\Trash",
    "Junk": "\\Junk",
    "Archive": "\\Archive",
}


@dataclass(frozen=True, slots=True)
class MessageInfo:
    uid: int
    key: str  # Maildir base name (the part before ":2,"), stable for the message's life
    flags: frozenset[str]
    size: int  # bytes on disk (CRLF as stored)
    internal_date: dt.datetime  # tz-aware


@dataclass(frozen=True, slots=True)
class FolderInfo:
    name: str
    special_use: str | None = None
    has_children: bool = False
    subscribed: bool = True
    noselect: bool = False  # a parent that exists only in names of its children


@dataclass(slots=True)
class FolderStatus:
    uidvalidity: int
    uidnext: int
    messages: int
    unseen: int
    recent: int = 0
    size: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class Folder(Protocol):
    name: str
    uidvalidity: int

    def sync(self) -> list[MessageInfo]:
        """Pick up new deliveries (new/ -> cur/), assign UIDs under the folder lock
        and return every message, sorted by UID.  Cheap when nothing changed."""

    def uidnext(self) -> int: ...

    def modseqs(self) -> tuple[int, dict[int, int]]:
        """(HIGHESTMODSEQ, uid -> mod-sequence) as of the last sync (RFC 7162)."""

    def expunged_since(self, modseq: int) -> list[int]:
        """UIDs expunged after mod-sequence ``modseq``."""

    def recent(self, *, claim: bool, upto: int | None = None) -> set[int]:
        """UIDs no session has seen as \\Recent yet; ``claim`` makes them this
        caller's (up to UID ``upto``) and no one else's, across processes."""

    def status(self) -> FolderStatus: ...

    def read(self, uid: int) -> bytes:
        """Whole message bytes.  Raises ``KeyError`` if expunged meanwhile."""

    def path_of(self, uid: int) -> str:
        """Current file path (may change on flag updates; re-call after ENOENT)."""

    def append(
        self,
        data: bytes,
        flags: Iterable[str] = (),
        internal_date: dt.datetime | None = None,
    ) -> int:
        """Store a message durably, return its UID.  Raises QuotaExceeded."""

    def store_flags(
        self, uids: Iterable[int], flags: Iterable[str], mode: int
    ) -> dict[int, frozenset[str]]:
        """mode: +1 add, -1 remove, 0 replace.  Returns uid -> new flags for the
        messages that still exist."""

    def copy_to(self, uids: Sequence[int], dest: Folder) -> list[tuple[int, int]]:
        """Copy (hard link when possible) into ``dest``; returns (src_uid, dest_uid)."""

    def expunge(self, uids: Iterable[int] | None = None) -> list[int]:
        """Remove messages flagged \\Deleted (restricted to ``uids`` if given);
        return the UIDs removed."""


class UserStore(Protocol):
    login: str

    def create(self) -> None:
        """Create INBOX and the special-use folders; idempotent."""

    def exists(self) -> bool: ...

    def folder(self, name: str) -> Folder:
        """Raises NoSuchFolder / BadFolderName."""

    def list_folders(self) -> list[FolderInfo]: ...

    def create_folder(self, name: str) -> None: ...

    def delete_folder(self, name: str) -> None: ...

    def rename_folder(self, old: str, new: str) -> None: ...

    def subscribe(self, name: str, on: bool = True) -> None: ...

    def usage(self) -> int:
        """Bytes used by all folders (cached; cheap)."""

    def deliver(self, data: bytes, folder: str = "INBOX") -> str:
        """Durable delivery: tmp/ write, fsync, link into new/, fsync new/.
        Returns the Maildir key.  Raises QuotaExceeded."""


class Notifier(Protocol):
    """Tells IMAP sessions (IDLE) that a folder changed, across processes."""

    def publish(self, login: str, folder: str) -> None: ...

    def subscribe(self, callback: Callable[[str, str], None]) -> Callable[[], None]:
        """Call ``callback(login, folder)`` on every change; returns an unsubscribe."""
