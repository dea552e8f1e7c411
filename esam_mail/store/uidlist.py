"""Dovecot-compatible ``dovecot-uidlist`` / ``dovecot-keywords`` files and the folder lock.

``dovecot-uidlist`` (version 3, as Dovecot 2.x writes it)::

    3 V1764121234 N42 G0c6f5b1e2a9d4f7e8b3c1d2e3f4a5b6c
    1 :1764121234.M12345P678Q1R0123456789abcdef.mx1,S=1234
    7 :1764121300.M5P678Q2R00aa11bb22cc33dd.mx1,S=99

Header: version ``3``, ``V`` UIDVALIDITY, ``N`` next UID, ``G`` 128-bit mailbox GUID,
and esam's own ``R`` first-recent UID (RFC 3501 \\Recent: UIDs from here on have not
been claimed by a session yet; Dovecot keeps the same number in its index and, like
us, keeps header fields it does not know).  Other header fields are kept as they are.  Each record is ``<uid> [ext...] :<key>``
where ``key`` is the Maildir base name (the file name before ``:2,``).  Records are in
ascending UID order.  Older ``<uid> <key>`` records (no ``:``) are accepted when reading.

``dovecot-keywords``: ``<index> <keyword>`` lines; index 0 is flag letter ``a``,
1 is ``b`` ... 25 is ``z``.

Locking (``FolderLock``): writers first take ``fcntl.flock(LOCK_EX)`` on the folder
directory itself (serialises every esam process and thread; released by the kernel if
a process dies), then create the Dovecot dotlock ``dovecot-uidlist.lock`` with
``O_CREAT|O_EXCL`` (so a Dovecot on the same store also stays out).  A dotlock is
taken over when it is older than ``stale_after`` seconds or its ``pid:host`` names a
dead local process.  A new uidlist is written *into the lock file*, fsynced and renamed
over ``dovecot-uidlist`` (Dovecot's own replace-by-rename), which also releases the
dotlock.  Readers never lock: the rename makes every read see a whole file.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from esam_mail import fsio
from esam_mail.errors import StoreError
from esam_mail.i18n import Message

log = logging.getLogger(__name__)

UIDLIST = "dovecot-uidlist"
UIDLIST_LOCK = "dovecot-uidlist.lock"
KEYWORDS = "dovecot-keywords"
MAX_KEYWORDS = 26


def _hostname() -> str:
    return socket.gethostname().split(".")[0] or "localhost"


HOST = _hostname()


@dataclass(slots=True)
class UidList:
    """In-memory ``dovecot-uidlist``: key -> uid plus the header."""

    uidvalidity: int
    uidnext: int = 1
    guid: str = field(default_factory=lambda: secrets.token_hex(16))
    entries: dict[str, int] = field(default_factory=dict)  # key -> uid, ascending uid
    ext: dict[str, str] = field(default_factory=dict)  # key -> extension fields (verbatim)
    extra_header: list[str] = field(default_factory=list)
    first_recent: int = 1  # UIDs >= this are \\Recent to the next session that claims them
    problems: list[str] = field(default_factory=list)  # found while parsing

    @classmethod
    def parse(cls, data: bytes) -> UidList:
        """Parse a uidlist file.  Raises ``ValueError`` if the header is unusable.

        Record-level problems (duplicates, UIDs >= next UID, bad lines) are collected in
        ``problems``; the first record for a key or UID wins.
        """
        text = data.decode("utf-8", "surrogateescape")
        lines = text.split("\n")
        header = lines[0].split()
        if not header:
            raise ValueError("empty uidlist")
        version = header[0]
        uidvalidity = uidnext = 0
        guid = ""
        extra: list[str] = []
        first_recent = 1
        if version == "3":
            for item in header[1:]:
                if item.startswith("R") and item[1:].isdigit():
                    first_recent = int(item[1:])
                elif item.startswith("V"):
                    uidvalidity = int(item[1:])
                elif item.startswith("N"):
                    uidnext = int(item[1:])
                elif item.startswith("G"):
                    guid = item[1:]
                else:
                    extra.append(item)
        elif version == "1" and len(header) >= 3:
            uidvalidity, uidnext = int(header[1]), int(header[2])
        else:
            raise ValueError(f"unsupported uidlist version {version!r}")
        if uidvalidity <= 0 or uidnext <= 0:
            raise ValueError("bad uidlist header")
        ul = cls(uidvalidity=uidvalidity, uidnext=uidnext, guid=guid or secrets.token_hex(16))
        ul.extra_header = extra
        ul.first_recent = max(1, min(first_recent, uidnext))
        seen_uids: set[int] = set()
        last = 0
        for lineno, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            head, colon, key = line.partition(" :")
            if colon:
                fields = head.split()
                exts = " ".join(fields[1:])
            else:
                fields = line.split()
                if len(fields) != 2:
                    ul.problems.append(Message("line {lineno}: unparsable record", lineno=lineno))
                    continue
                key, exts = fields[1], ""
            try:
                uid = int(fields[0])
            except (ValueError, IndexError):
                ul.problems.append(Message("line {lineno}: bad uid", lineno=lineno))
                continue
            if uid <= 0 or not key or "/" in key:
                ul.problems.append(Message("line {lineno}: bad record", lineno=lineno))
                continue
            if uid in seen_uids:
                ul.problems.append(Message("duplicate uid {uid}", uid=uid))
                continue
            if key in ul.entries:
                ul.problems.append(Message("duplicate key for uids {first} and {uid}", first=ul.entries[key], uid=uid))
                continue
            if uid <= last:
                ul.problems.append(Message("uid {uid} out of order", uid=uid))
            if uid >= uidnext:
                ul.problems.append(Message("uid {uid} >= next uid {uidnext}", uid=uid, uidnext=uidnext))
            last = max(last, uid)
            seen_uids.add(uid)
            ul.entries[key] = uid
            if exts:
                ul.ext[key] = exts
        return ul

    @property
    def fatal(self) -> bool:
        """True when the file cannot be trusted to never reuse a UID (needs a rebuild)."""
        return any(p.startswith("duplicate uid") or ">= next uid" in p for p in self.problems)

    def max_uid(self) -> int:
        return max(self.entries.values(), default=0)

    def assign(self, key: str) -> int:
        uid = self.uidnext
        self.entries[key] = uid
        self.uidnext = uid + 1
        return uid

    def render(self) -> bytes:
        head = ["3", f"V{self.uidvalidity}", f"N{self.uidnext}", f"G{self.guid}"]
        if self.first_recent > 1:
            head.append(f"R{self.first_recent}")
        out = [" ".join(head + self.extra_header)]
        for key, uid in sorted(self.entries.items(), key=lambda kv: kv[1]):
            ext = self.ext.get(key)
            out.append(f"{uid} {ext} :{key}" if ext else f"{uid} :{key}")
        return ("\n".join(out) + "\n").encode("utf-8", "surrogateescape")


def file_sig(path: Path) -> tuple[int, int, int] | None:
    """(inode, size, mtime_ns) of a file, None if absent."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def read_uidlist(folder_dir: Path) -> tuple[UidList | None, tuple[int, int, int] | None]:
    """Read ``dovecot-uidlist`` without locking.  Returns (None, sig) if absent/corrupt."""
    path = folder_dir / UIDLIST
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, None
    try:
        st = os.fstat(fd)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(fd)
    sig = (st.st_ino, st.st_size, st.st_mtime_ns)
    try:
        return UidList.parse(b"".join(chunks)), sig
    except ValueError:
        log.warning("event=uidlist_corrupt folder=%s", folder_dir.name)
        return None, sig


fsync_dir = fsio.fsync_dir  # re-exported for the store's modules


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FolderLock:
    """Exclusive writer lock of one folder (flock on the directory + Dovecot dotlock).

    Use as a context manager.  ``commit(data)`` replaces ``dovecot-uidlist`` with
    ``data`` (write into the lock file, fsync, rename); otherwise the dotlock is
    removed on exit.
    """

    def __init__(self, folder_dir: Path, *, fsync: bool = True, stale_after: float = 120.0) -> None:
        self.dir = folder_dir
        self.fsync = fsync
        self.stale_after = stale_after
        self._dir_fd: int | None = None
        self._lock_fd: int | None = None

    def __enter__(self) -> FolderLock:
        self._dir_fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(self._dir_fd, fcntl.LOCK_EX)
            self._take_dotlock()
        except BaseException:
            os.close(self._dir_fd)
            self._dir_fd = None
            raise
        return self

    def _take_dotlock(self) -> None:
        path = self.dir / UIDLIST_LOCK
        delay = 0.001
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                if self._stale(path):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                    log.warning("event=stale_dotlock_removed folder=%s", self.dir.name)
                    continue
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
                continue
            os.write(fd, f"{os.getpid()}:{HOST}".encode())
            self._lock_fd = fd
            return

    def _stale(self, path: Path) -> bool:
        try:
            st = os.stat(path)
            with open(path, "rb") as fh:
                content = fh.read(256).decode("ascii", "replace")
        except FileNotFoundError:
            return False
        if time.time() - st.st_mtime > self.stale_after:
            return True
        pid_s, _, host = content.partition(":")
        if host.strip() == HOST and pid_s.isdigit():
            pid = int(pid_s)
            # We hold the flock: a dotlock of our own pid can only be a leftover.
            return pid == os.getpid() or not _pid_alive(pid)
        return False

    def commit(self, data: bytes) -> None:
        """Atomically replace ``dovecot-uidlist`` with ``data`` (durable when fsync=True).

        Written to a temporary file, fsynced and renamed while the dotlock is held, so
        ``commit`` may be called more than once under one lock.
        """
        assert self._lock_fd is not None and self._dir_fd is not None
        fsio.atomic_write(self.dir / UIDLIST, data, fsync=self.fsync)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.dir / UIDLIST_LOCK)
        if self._dir_fd is not None:
            os.close(self._dir_fd)  # releases the flock
            self._dir_fd = None


class Keywords:
    """``dovecot-keywords``: keyword <-> flag letter (a..z) for one folder."""

    def __init__(self, folder_dir: Path) -> None:
        self.path = folder_dir / KEYWORDS
        self._sig: tuple[int, int, int] | None = None
        self._names: list[str | None] = [None] * MAX_KEYWORDS
        self._index: dict[str, int] = {}

    def refresh(self) -> None:
        sig = file_sig(self.path)
        if sig == self._sig:
            return
        names: list[str | None] = [None] * MAX_KEYWORDS
        if sig is not None:
            try:
                text = self.path.read_text("utf-8", "replace")
            except FileNotFoundError:
                text = ""
            for line in text.splitlines():
                idx_s, _, name = line.partition(" ")
                if idx_s.isdigit() and 0 <= int(idx_s) < MAX_KEYWORDS and name:
                    names[int(idx_s)] = name
        self._names = names
        self._index = {n.lower(): i for i, n in enumerate(names) if n is not None}
        self._sig = sig

    def letter_to_name(self, letter: str) -> str | None:
        idx = ord(letter) - ord("a")
        if 0 <= idx < MAX_KEYWORDS:
            return self._names[idx]
        return None

    def letter_of(self, keyword: str) -> str | None:
        idx = self._index.get(keyword.lower())
        return None if idx is None else chr(ord("a") + idx)

    def allocate(self, keywords: list[str], *, fsync: bool) -> None:
        """Give letters to unknown keywords.  Caller holds the folder lock.

        Raises:
            StoreError: more than 26 distinct keywords in the folder.
        """
        self._sig = None
        self.refresh()
        changed = False
        for kw in keywords:
            if kw.lower() in self._index:
                continue
            try:
                idx = self._names.index(None)
            except ValueError:
                raise StoreError("too many keywords in folder") from None
            self._names[idx] = kw
            self._index[kw.lower()] = idx
            changed = True
        if not changed:
            return
        body = "".join(f"{i} {n}\n" for i, n in enumerate(self._names) if n is not None)
        fsio.atomic_write(self.path, body.encode("utf-8"), fsync=fsync)
        self._sig = None
        self.refresh()
