"""Maildir++ mail store with Dovecot-compatible UID lists (implements ``store.interfaces``).

Maildir: https://cr.yp.to/proto/maildir.html; Maildir++ quotas; Dovecot's
``dovecot-uidlist``/``dovecot-keywords`` (doc.dovecot.org, mailbox_formats/maildir);
IMAP semantics of RFC 3501 (UIDVALIDITY, UIDNEXT) and RFC 4315 (COPYUID).

On-disk layout (every directory 0700, every file 0600)::

    <root>/                          MaildirStore root
      <login>/                       one user; also the INBOX folder
        cur/ new/ tmp/               INBOX messages
        dovecot-uidlist              INBOX UID list (see store.uidlist)
        dovecot-uidlist.lock         dotlock while a writer holds the folder lock
        dovecot-keywords             INBOX keyword letters a..z
        esam-cache.sqlite[-wal,-shm] INBOX metadata cache (store.cache)
        dovecot-uidvalidity          hex; last UIDVALIDITY issued to any folder of the user
        maildirsize                  Maildir++ quota: "<limit>S" then "<bytes> <count>" lines
        subscriptions                subscribed folder names, UTF-8, one per line
        esam-user.lock               flock target for folder create/rename/delete
        .Sent/ .Drafts/ .Trash/ .Junk/ .Archive/   special-use folders (created by create())
        .Projects.2026/              folder "Projects/2026" (see store.names for escaping)
          cur/ new/ tmp/ maildirfolder dovecot-uidlist dovecot-keywords esam-cache.sqlite
          esam-modseq.sqlite (RFC 7162 mod-sequences, store.modseq)
          esam-recent (the first UID no session has claimed as \\Recent yet; see _RecentFloor)

Message files: ``<key>`` in ``new/``, ``<key>:2,<flags>`` in ``cur/`` where ``key`` is
``<sec>.M<usec>P<pid>Q<counter>R<random>.<host>,S=<size>`` (``/``, ``:`` and ``,`` in
the host escaped as ``\\057``, ``\\072``, ``\\054``) and ``flags`` are the letters
``D F R S T`` (\\Draft \\Flagged \\Answered \\Seen \\Deleted) followed by keyword
letters ``a``..``z``, ASCII-sorted.  The internal date is the file's mtime.

Writers: SMTP delivery only writes ``tmp/`` and hard-links into ``new/`` (no lock).
``sync()`` takes the folder lock, renames ``new/x`` -> ``cur/x:2,``, assigns UIDs and
rewrites the uidlist.  Flag changes are renames inside ``cur/`` (no lock; ENOENT means
another process renamed or expunged the file: re-scan).  Expunge is ``unlink``; the
uidlist drops the key at the next sync.  UIDs are never reused: ``N`` only grows, and a
lost or corrupt uidlist is rebuilt with a new UIDVALIDITY taken from the per-user
``dovecot-uidvalidity`` counter (which also makes a folder re-created under an old name
get a different UIDVALIDITY).

Quota: ``maildirsize`` is append-only (``O_APPEND`` + flock), compacted into one line
when it exceeds 5120 bytes and recalculated by walking the folders only when missing.
Reading it is one small read, cached by (inode, size, mtime).
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import datetime as dt
import errno
import fcntl
import functools
import itertools
import logging
import operator
import os
import re
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Set
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from esam_mail import fsio
from esam_mail.errors import (
    BadFolderName,
    FolderError,
    FolderExists,
    FolderHasChildren,
    NoSuchFolder,
    QuotaExceeded,
    StoreError,
)
from esam_mail.store import changelog, generation, names
from esam_mail.store.cache import CACHE_FILE, MetadataCache, create_cache_file
from esam_mail.store.interfaces import (
    SPECIAL_USE,
    FolderInfo,
    FolderStatus,
    MessageInfo,
    Notifier,
)
from esam_mail.store.modseq import ModSeqIndex, create_index_file
from esam_mail.store.uidlist import (
    HOST,
    UIDLIST,
    FolderLock,
    Keywords,
    UidList,
    file_sig,
    fsync_dir,
    read_uidlist,
)

log = logging.getLogger(__name__)

__all__ = ["MaildirFolder", "MaildirStore", "MaildirUser", "QuotaState", "new_key"]

LOGIN_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
FLAG_TO_CHAR = {
    "\\Draft": "D",
    "\\Flagged": "F",
    "\\Answered": "R",
    "\\Seen": "S",
    "\\Deleted": "T",
}
CHAR_TO_FLAG = {v: k for k, v in FLAG_TO_CHAR.items()}
_SYSTEM_LOWER = {k.lower(): k for k in FLAG_TO_CHAR}
_KEYWORD_RE = re.compile(r"^[\x21-\x7e]+$")
_KEYWORD_SPECIALS = set('(){%*"\\]')
_SIZE_RE = re.compile(r",S=(\d+)")
TMP_MAX_AGE = 36 * 3600
# How long after a directory's mtime a listing must be taken to be final (see
# MaildirFolder._full_sync): a change in the same timestamp tick leaves the mtime as it was.
# 1 s (and 2 s FAT, where nobody keeps mail) for filesystems with whole-second times or
# stamped by another machine's clock; on a local filesystem with nanosecond times the tick
# is the kernel's coarse clock (1-10 ms: HZ 1000-100), so 20 ms is two of the longest.
_MTIME_MARGIN_NS = 1_000_000_000
_MTIME_MARGIN_LOCAL_NS = 20_000_000
# the bumps of a folder's message list remembered for sessions (see MaildirFolder._journal);
# a session more bumps behind compares the whole list
JOURNAL_MAX = 256
# filesystems stamped by this kernel's clock (not a server's or another client's)
_LOCAL_FS_TYPES = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "f2fs", "zfs", "bcachefs"})
_now_ns = time.time_ns  # the clock sync() compares mtimes with (tests replace it)
# How long a listing that was not final (an mtime within the margin) may still be served
# while the folder's slot of the change generation holds (see MaildirFolder._sync): every
# esam writer bumps it, a writer that is not esam is seen once this has passed.
_GEN_TRUST_NS = 1_000_000_000
# How long a folder object uses the generation mapping it got without checking that the
# store is still on a local filesystem and the file is still the one mapped (two stats;
# they were made at every look, issue 20).  A replaced file is seen within this, and a
# session takes a real look every REAL_LOOK_EVERY (5 s) in any case.
_GEN_RECHECK_S = 5.0
_fs_types: dict[int, str] = {}
_fs_types_lock = threading.Lock()


def _fs_type(path: Path) -> str:
    """The filesystem type holding ``path`` (from /proc/self/mountinfo; "" if unknown),
    cached per device."""
    dev = os.stat(path).st_dev
    with _fs_types_lock:
        hit = _fs_types.get(dev)
    if hit is not None:
        return hit
    found = ""
    want = f"{os.major(dev)}:{os.minor(dev)}"
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) > 2 and fields[2] == want and " - " in line:
                    found = line.split(" - ", 1)[1].split()[0]
    except OSError:
        found = ""
    with _fs_types_lock:
        _fs_types[dev] = found
    return found


def _local_fs(path: Path) -> bool:
    """Whether ``path``'s timestamps come from this machine's kernel clock."""
    return _fs_type(path) in _LOCAL_FS_TYPES
_MAILDIRSIZE_MAX = 5120
_DIR_MODE = 0o700
_FILE_MODE = 0o600

_counter = itertools.count(1)
_HOST_ESC = HOST.replace("/", "\\057").replace(":", "\\072").replace(",", "\\054")


def new_key(size: int) -> str:
    """A fresh unique Maildir base name for a message of ``size`` bytes."""
    ns = time.time_ns()
    sec, usec = divmod(ns // 1000, 1_000_000)
    return f"{sec}.M{usec}P{os.getpid()}Q{next(_counter)}R{secrets.token_hex(8)}.{_HOST_ESC},S={size}"


_NAME_TIME = re.compile(r"(\d+)\.([^.]*)")
_NAME_PART = re.compile(r"([MQ])(\d+)")


def delivery_order(key: str) -> tuple[int, int, int, str]:
    """Sort key putting new messages in delivery order for their UIDs: the name's seconds,
    then its microseconds ("M") and per-process counter ("Q") as numbers.  As strings the
    unpadded microseconds sort "M10" before "M5" (and M100000 before M99999).  Names of
    another form sort after, by name."""
    m = _NAME_TIME.match(key)
    if m is None:
        return (1 << 62, 0, 0, key)
    parts = {k: int(v) for k, v in _NAME_PART.findall(m.group(2)[:64]) if len(v) <= 18}
    return (int(m.group(1)[:18]), parts.get("M", 0), parts.get("Q", 0), key)


def split_name(filename: str) -> tuple[str, str]:
    """``key:2,FS`` -> (``key``, ``FS``); names without info -> (name, "")."""
    key, sep, chars = filename.partition(":2,")
    return (key, chars) if sep else (filename, "")


def size_from_key(key: str) -> int | None:
    m = _SIZE_RE.search(key)
    return int(m.group(1)) if m else None


_write_all = fsio.write_all


_HEAD_CHUNK = 8192


def _read_file(path: str, *, head: bool) -> bytes:
    """A message file's bytes (raw descriptor reads: no buffered file object); with
    ``head``, only as far as the header's end is known to be in what was read."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if head:
            chunks = [os.read(fd, _HEAD_CHUNK)]
            if len(chunks[0]) < _HEAD_CHUNK or _has_header_end(chunks[0]):
                return chunks[0]  # the common case: one read
            while more := os.read(fd, 1 << 16):
                # the blank line may straddle two reads: look at the joint too
                joint = chunks[-1][-2:] + more
                chunks.append(more)
                if _has_header_end(joint):
                    break
            return b"".join(chunks)
        size = os.fstat(fd).st_size
        data = os.read(fd, size + 1)
        if len(data) <= size:  # a short read of a regular file is its end: one read
            return data
        chunks = [data]  # the file is longer than fstat said (it should not be)
        while chunks[-1]:
            chunks.append(os.read(fd, 1 << 16))
        return b"".join(chunks)
    finally:
        os.close(fd)


def _has_header_end(data: bytes) -> bool:
    return data.startswith((b"\r\n", b"\n")) or b"\n\r\n" in data or b"\n\n" in data


def _mkdir(path: Path) -> None:
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, _DIR_MODE)


def _make_maildir(path: Path) -> None:
    _mkdir(path)
    for sub in ("cur", "new", "tmp"):
        _mkdir(path / sub)


def _make_folder_dbs(folder: Path) -> None:
    """Create a new folder's SQLite files (summary cache, mod-sequence index) now.

    Each costs ~2 ms of file creation and fsyncs (WAL switch, schema); made lazily they
    were paid by the first IMAP session of every folder, all at once after a bulk
    delivery (issue 20: a quarter of the threads' wall time in that first second).  A
    failure here only leaves them to be made at first use, as before."""
    for create in (create_cache_file, create_index_file):
        try:
            create(folder)
        except (OSError, sqlite3.Error):
            log.warning("event=store.folder_db_create_failed folder=%s step=%s", folder.name, create.__name__)


def _open_excl(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _FILE_MODE)


def _dir_id(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino)


def _dir_sig(path: str | Path) -> tuple[int, int]:
    st = os.stat(path)
    return (st.st_ino, st.st_mtime_ns)


def _quota_limit(limit: int | None) -> int | None:
    return limit if limit is not None and limit > 0 else None


@dataclass(frozen=True, slots=True)
class QuotaState:
    """Result of a quota check (for SMTP at RCPT time: 452 4.2.2 when not ``ok``)."""

    usage: int
    limit: int | None  # None: unlimited
    incoming: int = 0

    @property
    def ok(self) -> bool:
        return self.limit is None or self.usage + self.incoming <= self.limit

    @property
    def free(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.usage)


class _Usage:
    """``maildirsize`` of one user (bytes and message count, cached)."""

    def __init__(self, user_dir: Path, limit_hint: int | None) -> None:
        self.user_dir = user_dir
        self.path = user_dir / "maildirsize"
        self.limit_hint = limit_hint or 0
        self._sig: tuple[int, int, int] | None = None
        self._head = b""
        self._value = (0, 0)
        self._seen: tuple[int, int, int] | None = None  # (inode, size, mtime) _value was read at
        self._lock = threading.Lock()

    @staticmethod
    def _parse(data: bytes) -> tuple[int, int]:
        """Sum ``<bytes> <count>`` lines (``data`` holds complete lines, no header)."""
        total = count = 0
        for line in data.split(b"\n"):
            parts = line.split()
            if len(parts) == 2:
                try:
                    total += int(parts[0])
                    count += int(parts[1])
                except ValueError:
                    continue
        return total, count

    def get(self) -> tuple[int, int]:
        """(bytes, messages); parses only what was appended since the last call.

        Unchanged since then (same inode, size and mtime: one ``stat``, as at every RCPT):
        the figure read last time."""
        try:
            st0 = os.stat(self.path)
        except FileNotFoundError:
            return self.recalc()
        with self._lock:
            if self._seen == (st0.st_ino, st0.st_size, st0.st_mtime_ns):
                return self._value
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return self.recalc()
        try:
            st = os.fstat(fd)
            # inode numbers are reused after compaction: the head identifies the file too
            head = os.pread(fd, 64, 0)
            with self._lock:
                if (
                    self._sig is not None
                    and self._sig[0] == st.st_ino
                    and self._sig[1] <= st.st_size
                    and self._head == head[: len(self._head)]
                ):
                    offset, (total, count) = self._sig[1], self._value
                else:
                    offset, total, count = 0, 0, 0
            if offset == st.st_size:
                with self._lock:
                    self._seen = (st.st_ino, st.st_size, st.st_mtime_ns)
                return total, count
            data = os.pread(fd, st.st_size - offset + 4096, offset)
        finally:
            os.close(fd)
        end = data.rfind(b"\n") + 1  # only complete lines
        chunk = data[:end]
        if offset == 0:
            chunk = chunk[chunk.find(b"\n") + 1 :] if b"\n" in chunk else b""  # header
        t, c = self._parse(chunk)
        value = (max(total + t, 0), max(count + c, 0))
        with self._lock:
            self._sig, self._value = (st.st_ino, offset + end, 0), value
            # the whole file was read: the next call may answer from a stat
            self._seen = (st.st_ino, st.st_size, st.st_mtime_ns) if offset + end == st.st_size else None
            if offset == 0:
                self._head = head[:end]
        return value

    def add(self, nbytes: int, count: int) -> None:
        line = f"{nbytes} {count}\n".encode()
        for _ in range(10):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
            except FileNotFoundError:
                self.recalc()  # counts the files already on disk, ours included
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                st = os.fstat(fd)
                try:
                    if os.stat(self.path).st_ino != st.st_ino:
                        continue  # compacted meanwhile: append to the new file
                except FileNotFoundError:
                    continue
                os.write(fd, line)
                if st.st_size + len(line) > _MAILDIRSIZE_MAX:
                    self._compact_locked(fd)
                    return
                self._added(fd, st, line, nbytes, count)
                return
            finally:
                os.close(fd)

    def _added(self, fd: int, before: os.stat_result, line: bytes, nbytes: int, count: int) -> None:
        """Under the flock, after our own line: when the cached figure was the file just
        before it, it becomes the figure with our line, so the next :meth:`get` answers
        from a stat instead of opening and reading the file again (six system calls per
        delivery and APPEND, issue 20).  Anything else (a writer without the flock, a
        figure not read yet) leaves the cache alone: the next get reads what it lacks."""
        after = os.fstat(fd)
        with self._lock:
            if (self._seen != (before.st_ino, before.st_size, before.st_mtime_ns)
                    or after.st_ino != before.st_ino or after.st_size != before.st_size + len(line)):
                return
            total, msgs = self._value[0] + nbytes, self._value[1] + count
            if total < 0 or msgs < 0:  # an inconsistent file: let get() read it again
                return
            self._value = (total, msgs)
            self._sig = (after.st_ino, after.st_size, 0)
            self._seen = (after.st_ino, after.st_size, after.st_mtime_ns)

    def _compact_locked(self, fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        data = b"".join(chunks)
        total, count = self._parse(data[data.find(b"\n") + 1 :])
        self._replace(total, count, exclusive=False)

    def _replace(self, total: int, count: int, *, exclusive: bool) -> bool:
        body = f"{self.limit_hint}S\n{total} {count}\n".encode()
        tmp = self.user_dir / f"maildirsize.tmp.{os.getpid()}.{secrets.token_hex(4)}"
        fd = _open_excl(tmp)
        try:
            _write_all(fd, body)
        finally:
            os.close(fd)
        try:
            if exclusive:
                try:
                    os.link(tmp, self.path)
                except FileExistsError:
                    return False
            else:
                os.rename(tmp, self.path)
                return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return True

    def walk(self) -> tuple[int, int]:
        """Actual usage by listing every folder (slow; recalc and check only)."""
        total = count = 0
        try:
            entries = [
                self.user_dir,
                *(
                    self.user_dir / e.name
                    for e in os.scandir(self.user_dir)
                    if e.name.startswith(".") and e.name not in (".", "..") and e.is_dir()
                ),
            ]
        except FileNotFoundError:
            return 0, 0
        for folder in entries:
            size, n = _folder_usage(folder)
            total += size
            count += n
        return total, count

    def recalc(self, *, force: bool = False) -> tuple[int, int]:
        total, count = self.walk()
        if not self.user_dir.is_dir():
            return total, count
        if force:
            self._replace(total, count, exclusive=False)
        elif not self._replace(total, count, exclusive=True):
            return self.get()
        return total, count


# what _own_start saw before a change: the folder's signatures and its generation slot
_Own = tuple[tuple[Any, ...], int]


@dataclass(slots=True)
class _Entry:
    uid: int
    key: str
    name: str  # current file name in cur/
    chars: str  # flag letters after ":2,"
    size: int
    mtime: float
    info: MessageInfo | None = None


_ENTRY_UID: Callable[[_Entry], int] = operator.attrgetter("uid")


def _grown(acc: set[Any] | None, more: Iterable[Any] | None) -> set[Any] | None:
    """``acc`` grown by ``more`` (in place); None, "unknown", once either is."""
    if acc is None or more is None:
        return None
    acc.update(more)
    return acc


class _EntryState(Mapping[str, tuple[int, str]]):
    """key -> (uid, flag letters) of a folder's entries, read through (no copy): what
    :meth:`ModSeqIndex.reconcile` looks up for the keys that changed."""

    __slots__ = ("_by_key",)

    def __init__(self, by_key: dict[str, _Entry]) -> None:
        self._by_key = by_key

    def __getitem__(self, key: str) -> tuple[int, str]:
        e = self._by_key[key]
        return (e.uid, e.chars)

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_key)

    def __len__(self) -> int:
        return len(self._by_key)


def _keep_longer(listing: dict[str, str], key: str, fn: str) -> None:
    """Put ``fn`` in ``listing`` for ``key``.  A key seen twice (a concurrent rename or a
    crash leftover) keeps the longer name: the longer flag set (a later flag rename usually
    adds flags)."""
    prev = listing.get(key)
    if prev is None or len(fn) > len(prev):
        listing[key] = fn


RECENT_FILE = "esam-recent"
# Keys this store expunged whose uidlist records are not dropped yet (see _dead_allowed):
# `esam store check` does not count those records as lost files.  Appended by each
# EXPUNGE, rewritten with the uidlist; not fsynced (after a crash check reports them, and
# --repair drops them, as it would have).
EXPUNGED_FILE = "esam-expunged"


def _key_lines(keys: Iterable[str]) -> bytes:
    """:data:`EXPUNGED_FILE`'s format: a key per line (read back by :func:`expunged_keys`)."""
    return "".join(f"{k}\n" for k in keys).encode("utf-8", "surrogateescape")


def _note_expunged(folder: Path, keys: Iterable[str]) -> None:
    """Add ``keys`` to the folder's :data:`EXPUNGED_FILE` (one O_APPEND write: whole lines
    even with other writers); never fails the expunge."""
    try:
        fd = os.open(folder / EXPUNGED_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                     _FILE_MODE)
        try:
            os.write(fd, _key_lines(keys))
        finally:
            os.close(fd)
    except OSError:
        log.warning("event=expunged_note_failed folder=%s", folder.name)


def _keep_expunged(folder: Path, live: Set[str]) -> None:
    """After the uidlist was rewritten (under the folder lock): :data:`EXPUNGED_FILE`
    keeps only the keys the new list still names.  An expunge does not take the lock, so
    its note may land between this read and the rename and be lost; `esam store check`
    then counts that one record as a lost file until the next rewrite or a --repair."""
    keys = expunged_keys(folder)
    if not keys:
        return
    keep = keys & live
    try:
        if keep:
            fsio.atomic_write(folder / EXPUNGED_FILE, _key_lines(sorted(keep)), mode=_FILE_MODE,
                              fsync=False)
        else:
            os.unlink(folder / EXPUNGED_FILE)
    except OSError:
        log.warning("event=expunged_note_failed folder=%s", folder.name)


def expunged_keys(folder: Path) -> set[str]:
    """The keys in the folder's :data:`EXPUNGED_FILE` (empty when there is none)."""
    try:
        raw = (folder / EXPUNGED_FILE).read_bytes()
    except FileNotFoundError:
        return set()
    return set(raw.decode("utf-8", "surrogateescape").split())


def _dead_allowed(live: int) -> int:
    """How many uidlist records of expunged messages a folder keeps before it rewrites the
    uidlist without them: rewritten at every EXPUNGE it cost a lock, a full render and two
    fsyncs, and every other process a full re-read and parse of the list, O(messages) per
    expunge (issue 20).  Dovecot's uidlist keeps them too until it is recreated."""
    return 32 + live // 4


class _RecentFloor:
    """A folder's first UID that no session has claimed as \\Recent yet (RFC 3501 2.3.2).

    Kept in ``esam-recent`` beside the uidlist (``V<uidvalidity> R<uid>``, one record of
    fixed length rewritten in place by one ``pwrite``), not in the uidlist header: a claim
    (a SELECT after new mail) rewrote and renamed the whole uidlist, and every other
    process then parsed it whole again (issue 20).  The effective floor is the higher of
    this file's (when its UIDVALIDITY is the folder's) and the uidlist header's ``R``
    (where older versions kept it).  A claim is written under the folder lock and not
    fsynced: \\Recent is advisory, and a claim a crash loses only shows messages as
    recent once more.  Blocking: call from worker threads."""

    SIZE = 48

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen = (0, 0)  # (uidvalidity, the highest floor read or written): floors only rise

    def floor(self, ul: UidList, *, above: int | None = None) -> int:
        """The floor; with ``above``, a floor known to be above it is returned without a
        read (the common "nothing new to claim" look of a selected session)."""
        uv, seen = self._seen
        if above is not None and uv == ul.uidvalidity and seen > above:
            return seen
        value = self._read(ul)
        if uv != ul.uidvalidity or value > seen:
            self._seen = (ul.uidvalidity, value)
        return value

    def _read(self, ul: UidList) -> int:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return ul.first_recent
        try:
            data = os.pread(fd, self.SIZE, 0)
        finally:
            os.close(fd)
        parts = data.split()
        if (len(parts) == 2 and parts[0] == b"V%d" % ul.uidvalidity
                and parts[1][:1] == b"R" and parts[1][1:].isdigit()):
            return max(ul.first_recent, int(parts[1][1:]))
        return ul.first_recent  # another folder's (recreated) or torn: the header's

    def claim(self, ul: UidList, first: int) -> None:
        """Under the folder lock: UIDs below ``first`` are claimed."""
        record = b"V%d R%d" % (ul.uidvalidity, first)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
        try:
            os.pwrite(fd, record.ljust(self.SIZE - 1) + b"\n", 0)
        finally:
            os.close(fd)
        self._seen = (ul.uidvalidity, first)


def _move_name(name_keys: dict[str, str], key: str, was: str | None, now: str | None) -> None:
    """Bring the name -> key map forward for one key whose name went from ``was`` to
    ``now`` (None: no file), as the last listing changes (see _listing_delta)."""
    if was != now:
        if was is not None and name_keys.get(was) == key:
            del name_keys[was]
        if now is not None:
            name_keys[now] = key


def _log_changes(folder: Path, slot: int, changes: Sequence[changelog.Change],
                 held: generation.Held, before: tuple[int, ...]) -> None:
    """Under the generation lock, before the bump: the folder's change record (see
    :mod:`esam_mail.store.changelog`); never fails the change (readers list cur/)."""
    try:
        record = changelog.encode(held.inode, before[slot], changes)
        if record is not None:
            changelog.append(folder / changelog.CHANGES_FILE, record)
    except OSError:
        log.warning("event=change_log_failed folder=%s", folder.name)


class MaildirFolder:
    """One Maildir folder as seen by one client session (implements ``Folder``).

    The object caches the folder state; ``sync()`` refreshes it.  Methods are
    thread-safe (one lock per object) and do blocking file I/O.
    """

    def __init__(self, user: MaildirUser, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        # the paths a look stats at every command, as strings once: a Path join and its
        # str() per use were 5 % of the mailbox threads' Python time (py-spy, issue 20)
        self._new_s = f"{path}/new"
        self._cur_s = f"{path}/cur"
        self._ul_s = f"{path}/{UIDLIST}"
        self.user = user
        self._fsync = user.store.fsync
        self._tlock = threading.RLock()
        self._ul: UidList | None = None
        self._ul_sig: tuple[int, int, int] | None = None
        self._by_uid: dict[int, _Entry] = {}
        self._by_key: dict[str, _Entry] = {}
        self._sig: tuple[Any, ...] | None = None
        self._dirty = True
        self._infos: list[MessageInfo] = []
        self._info_uids: list[int] = []  # the UIDs of _infos, in order (for bisect)
        # (old, new) infos replaced in place since the last modseqs() (old None: added,
        # new None: removed); None: the list was rebuilt (modseqs then compares the whole list)
        self._infos_replaced: list[tuple[MessageInfo | None, MessageInfo | None]] | None = None
        self._keywords = Keywords(path)
        self._flag_sets: dict[str, frozenset[str]] = {}
        self._cache: MetadataCache | None = None
        self._modseq: ModSeqIndex | None = None
        self._version = 0  # bumped whenever the message list, a flag or a mod-sequence changes
        # what each bump changed: (version, the UIDs whose record or mod-sequence changed, or
        # None: unknown, the list was rebuilt), the last JOURNAL_MAX of them; a session that
        # compared the list at version v looks only at the UIDs of the bumps after v
        # (see changes(), and SelectedFolder.refresh).  ``_epoch`` names this object's
        # numbering: a session whose version came from another object starts over.
        self._journal: collections.deque[tuple[int, frozenset[int] | None]] = \
            collections.deque(maxlen=JOURNAL_MAX)
        self._epoch = object()
        # the UIDs journaled since the last modseqs() (None: an unknown change among them)
        self._since_modseqs: set[int] | None = None
        # keys of the last applied listing that have no entry (no UID yet, or gone between
        # the listing and the stat): looked at again by the next incremental apply
        self._pending: set[str] = set()
        self._applied_uv: int | None = None  # the UIDVALIDITY the entries were made under
        self._modseq_seen: tuple[int, tuple[int, dict[int, int]]] | None = None
        self._modseq_infos: dict[int, MessageInfo] | None = None  # id -> info (see modseqs)
        self._fine_mtimes = False  # see _mtime_margin
        self._name_keys: dict[str, str] = {}  # file name -> key, as of the last listing
        self._cur_listing: dict[str, str] | None = None  # the last listing (see _listing_delta)
        self._keys_since_apply: set[str] | None = None  # see _list_cur and _settle
        self._recent = _RecentFloor(path / RECENT_FILE)
        # the uidlist records known to name expunged messages, under that UIDVALIDITY (a
        # key never names another file, so they stay dead across the list's appends, each
        # a new UidList object)
        self._dead: tuple[int | None, set[str]] = (None, set())
        # the reader of this folder's slot of the change generation (None: it cannot be
        # mapped) and when it was got (monotonic; 0: never), and the slot's value and the
        # clock read before the last full look
        self._gen_got = 0.0
        self._gen_read: Callable[[], int] | None = None
        self._gen_inode = 0  # the mapped generation file's (the change log's records name it)
        self._changes = changelog.ChangeLog(path / changelog.CHANGES_FILE)
        self._listed_gen: int | None = None
        self._listed_ns = 0
        # the uidlist and the listing the last full sync applied (see _apply_delta)
        self._last_listing: tuple[UidList, dict[str, str]] | None = None
        ul = self._read_uidlist()
        if ul is None:
            with self._locked() as lock:
                ul = self._load_uidlist_locked(lock)
        self.uidvalidity = ul.uidvalidity
        self._dir_id = _dir_id(path)

    def reusable(self, user: MaildirUser) -> bool:
        """Whether this object may serve another session of ``user`` (the mailbox
        service shares folder objects): the folder was not deleted, renamed or
        recreated since it was opened (same directory, same UIDVALIDITY).  Binds the
        object to ``user`` (its quota) on success."""
        with self._tlock:
            try:
                if _dir_id(self.path) != self._dir_id or not os.path.isdir(self._cur_s):
                    return False
            except FileNotFoundError:
                return False
            if file_sig(self._ul_s) != self._ul_sig:
                before = self.uidvalidity
                if self._read_uidlist() is None or self.uidvalidity != before:
                    return False  # missing, untrustworthy or rebuilt: a new object starts over
            self.user = user
            return True

    # -- helpers ---------------------------------------------------------------

    def __repr__(self) -> str:
        return f"<MaildirFolder {self.user.login}:{self.name}>"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[FolderLock]:
        try:
            with FolderLock(self.path, fsync=self._fsync, store_root=self.user.store.root) as lock:
                yield lock
        except FileNotFoundError as exc:
            if not self.path.is_dir():
                raise NoSuchFolder(self.name) from exc
            raise

    def _read_uidlist(self) -> UidList | None:
        ul, sig = read_uidlist(self.path, self._ul, self._ul_sig)
        if ul is not None and not ul.fatal:
            if self._ul is not None and ul.uidvalidity != self._ul.uidvalidity:
                # Rebuilt by another process (esam store check --repair): UIDs were
                # renumbered, so forget the old uid -> entry map and report the new
                # UIDVALIDITY (never new UIDs under the old one).
                self._by_uid.clear()
                self._by_key.clear()
                self._infos, self._info_uids, self._infos_replaced = [], [], None
                self._bump(None)
                self._dirty = True
            self._ul, self._ul_sig = ul, sig
            self.uidvalidity = ul.uidvalidity
            return ul
        return None

    def _load_uidlist_locked(self, lock: FolderLock) -> UidList:
        """Current uidlist (re-read if changed); creates/rebuilds it if missing or bad."""
        sig = file_sig(self._ul_s)
        if self._ul is not None and sig is not None and sig == self._ul_sig:
            return self._ul
        ul = self._read_uidlist()
        if ul is not None:
            return ul
        uv = self.user.next_uidvalidity()
        log.info(
            "event=uidlist_created user=%s folder=%s uidvalidity=%d",
            self.user.login,
            self.name,
            uv,
        )
        ul = UidList(uidvalidity=uv)
        self._commit(lock, ul)
        self.uidvalidity = uv
        self._by_uid.clear()
        self._by_key.clear()
        self._infos, self._info_uids, self._infos_replaced = [], [], None
        self._bump(None)
        self._dirty = True
        return ul

    def _commit(self, lock: FolderLock, ul: UidList) -> None:
        """Write ``ul``: its new records appended when that is its only change (one
        short write; the whole list was rendered and renamed over per new message, an
        O(messages) write per APPEND and an O(messages) read for every other session,
        issue 20), else the whole file."""
        try:
            data = ul.append_data()
            if data is not None and lock.append(data, ul.disk_size):
                ul.written(data, appended=True)
            else:
                data = ul.render()
                lock.commit(data)
                ul.written(data, appended=False)
                _keep_expunged(self.path, ul.entries.keys())
        except BaseException:
            self._ul = self._ul_sig = None
            raise
        self._ul, self._ul_sig = ul, file_sig(self._ul_s)

    def _flags_of(self, chars: str) -> frozenset[str]:
        # One frozenset per distinct flag string, shared by every message that has it:
        # a 10,000-message folder holds a handful of sets, not 10,000 objects for the
        # garbage collector to walk (a full collection stalls every thread).
        hit = self._flag_sets.get(chars)
        if hit is not None:
            return hit
        out = set()
        for c in chars:
            if c in CHAR_TO_FLAG:
                out.add(CHAR_TO_FLAG[c])
            elif "a" <= c <= "z":
                kw = self._keywords.letter_to_name(c)
                if kw is not None:
                    out.add(kw)
        flags = frozenset(out)
        if len(self._flag_sets) < 4096:
            self._flag_sets[chars] = flags
        return flags

    def _info(self, e: _Entry) -> MessageInfo:
        if e.info is None:
            e.info = MessageInfo(
                uid=e.uid,
                key=e.key,
                flags=self._flags_of(e.chars),
                size=e.size,
                internal_date=dt.datetime.fromtimestamp(e.mtime, dt.UTC),
            )
        return e.info

    def _bump(self, uids: Iterable[int] | None) -> None:
        """A new version of the message list: ``uids`` changed (None: unknown)."""
        self._version += 1
        changed = None if uids is None else frozenset(uids)
        self._journal.append((self._version, changed))
        self._since_modseqs = _grown(self._since_modseqs, changed)

    def changes(self) -> tuple[object, int, tuple[tuple[int, frozenset[int] | None], ...]]:
        """(epoch, version, journal): the version of the list the last look returned and
        the UIDs each of the last bumps changed (see ``_journal``).  Take it under the same
        hold of the folder's lock as the look it describes (``_snapshot`` does)."""
        with self._tlock:
            return self._epoch, self._version, tuple(self._journal)

    @property
    def look_lock(self) -> threading.RLock:
        """Held by a snapshot around its look, its mod-sequences and :meth:`changes`."""
        return self._tlock

    def _rebuild_infos(self) -> None:
        by_uid, info = self._by_uid, self._info
        self._info_uids = uids = sorted(by_uid)
        self._infos = [e.info or info(e) for e in map(by_uid.__getitem__, uids)]
        self._infos_replaced = None
        self._bump(None)

    def _drop_infos(self, uids: Iterable[int]) -> None:
        """Take ``uids`` (their entries already gone) out of the message list in place: a
        binary search each, not the whole list built again (O(messages) in Python after
        every expunge, issue 20)."""
        lst, infos = self._info_uids, self._infos
        replaced = self._infos_replaced
        dropped = []
        for uid in sorted(set(uids), reverse=True):
            i = bisect.bisect_left(lst, uid)
            if i < len(lst) and lst[i] == uid:
                if replaced is not None:
                    replaced.append((infos[i], None))
                del lst[i], infos[i]
                dropped.append(uid)
        self._bump(dropped)

    def _add_infos(self, entries: Iterable[_Entry]) -> None:
        """Put new entries' infos into the message list, in UID order."""
        lst, infos, info = self._info_uids, self._infos, self._info
        replaced = self._infos_replaced
        added = []
        for e in sorted(entries, key=_ENTRY_UID):
            new = info(e)
            if not lst or lst[-1] < e.uid:
                lst.append(e.uid)
                infos.append(new)
            else:
                i = bisect.bisect_left(lst, e.uid)
                lst.insert(i, e.uid)
                infos.insert(i, new)
            if replaced is not None:
                replaced.append((None, new))
            added.append(e.uid)
        self._bump(added)

    def _replace_infos(self, entries: Iterable[_Entry]) -> None:
        """:meth:`_rebuild_infos` after only ``entries`` changed name (flags): their infos
        are replaced where they stand (a bisect each), not the whole list sorted and built
        again (O(messages) in Python at every flag change, issue 20)."""
        entries = list(entries)
        uids, infos, info = self._info_uids, self._infos, self._info
        replaced = self._infos_replaced
        for e in entries:
            i = bisect.bisect_left(uids, e.uid)
            if i == len(uids) or uids[i] != e.uid or infos[i].key != e.key:
                self._rebuild_infos()  # not where the list says: build it again
                return
            new = info(e)
            if replaced is not None:
                replaced.append((infos[i], new))
            infos[i] = new
        self._bump([e.uid for e in entries])

    def _list_cur(self) -> tuple[dict[str, str], tuple[int, int]]:
        """key -> file name in cur/, and the cur/ signature taken *before* reading.

        The returned dict is the caller's own (it may change it)."""
        cur = self._cur_s
        listing: dict[str, str] = {}
        sig = (0, 0)
        changed: set[str] | None = None
        for _ in range(3):
            sig = _dir_sig(cur)
            names = os.listdir(cur)
            got = self._listing_delta(names)
            if got is not None:
                listing, changed = got
            else:
                listing, changed = self._listing_walk(names), None
            if _dir_sig(cur) == sig:
                break
        base, name_keys = self._cur_listing, self._name_keys
        if changed is not None and base is not None:
            # the names' keys brought forward by the keys that changed (a dict of every
            # name built again at each listing was O(messages) per look, issue 20)
            for key in changed:
                _move_name(name_keys, key, base.get(key), listing.get(key))
        else:
            self._name_keys = dict(zip(listing.values(), listing.keys(), strict=True))
        self._cur_listing = listing.copy()
        # the keys whose name may differ between the last applied listing and this one
        # (every listing's delta since; None once a listing was walked)
        self._keys_since_apply = _grown(self._keys_since_apply, changed)
        return listing, sig

    def _listing_walk(self, names: list[str]) -> dict[str, str]:
        """The listing of ``names``, name by name."""
        # the keys of the names the last listing kept: a name seen again needs no split
        # (most names of a folder are unchanged from one look to the next)
        known = self._name_keys
        listing: dict[str, str] = {}
        for fn in names:
            key = known.get(fn)
            if key is None:
                if fn.startswith("."):
                    continue
                key = split_name(fn)[0]
            _keep_longer(listing, key, fn)
        return listing

    def _listing_delta(self, names: list[str]) -> tuple[dict[str, str], set[str]] | None:
        """The listing of ``names`` as the last listing changed by the names that came and
        went (set operations in C: a busy folder's next look differs by a few renames, and
        the walk in Python cost ~0.3 us a name, the most of a look at a 300-message folder,
        issue 20); None when there is no last listing or most names changed.  The same
        result as :meth:`_listing_walk`: a name the last listing did not keep (a dot file,
        the shorter of a key's two names) is looked at again each time.  With it, the keys
        whose name came or went (the only ones that may differ from the last listing)."""
        base, known = self._cur_listing, self._name_keys
        if base is None:
            return None
        now = set(names)
        added = now.difference(known)
        # names are unique, so how many known names went follows from the counts; the
        # difference itself (one more pass over the folder) only when some did
        gone = known.keys() - now if len(known) - len(now) + len(added) else set()
        if len(gone) + len(added) > 16 + len(names) // 4:
            return None
        listing = base.copy()
        keys: set[str] = set()
        for fn in gone:
            key = known[fn]
            keys.add(key)
            if listing.get(key) == fn:
                del listing[key]
        for fn in sorted(added):  # names' order, as a walk would meet ties
            if fn.startswith("."):
                continue
            key = split_name(fn)[0]
            keys.add(key)
            _keep_longer(listing, key, fn)
        return listing, keys

    # -- Folder protocol ---------------------------------------------------------

    def sync(self) -> list[MessageInfo]:
        """Move new/ to cur/, assign UIDs, return every message sorted by UID."""
        return self._sync(claim=False)[0]

    def _sync(self, *, claim: bool) -> tuple[list[MessageInfo], set[int] | None]:
        """:meth:`sync`; with ``claim``, a look that numbers new messages also claims
        them as \\Recent in the same write and returns the claimed UIDs (else None)."""
        with self._tlock:
            start = _now_ns()
            try:
                sig = (
                    _dir_sig(self._new_s),
                    _dir_sig(self._cur_s),
                    file_sig(self._ul_s),
                )
            except FileNotFoundError as exc:
                raise NoSuchFolder(self.name) from exc
            if self._keywords_changed():
                self._invalidate_infos()
            read = self.change_generation()
            gen = read() if read is not None else None
            if sig == self._sig and (not self._dirty or (
                    gen is not None and gen == self._listed_gen
                    and start - self._listed_ns < _GEN_TRUST_NS)):
                # Unchanged, and final; or not final (an mtime within the margin: a busy
                # folder) but no esam writer finished a change since the generation was
                # read before that listing (each bumps it after its change), so another
                # session's look right after needs no listing of its own (issue 20).
                return list(self._infos), None
            if gen is not None:
                logged = self._logged_look(sig, gen, start)
                if logged is not None:
                    return logged, None
            out = self._full_sync(start, claim)
            self._listed_gen, self._listed_ns = gen, start
            return out

    def _logged_look(self, sig: tuple[Any, ...], gen: int, start: int) -> list[MessageInfo] | None:
        """The look after other esam writers' changes, from their change records instead
        of a listing of cur/ (see :mod:`esam_mail.store.changelog`): the last applied
        listing brought forward by every record from the slot value it was taken at to
        ``gen`` (read before ``sig``), then applied as a listing's delta.  None (nothing
        touched) when that cannot be trusted: new/ changed, the view is not vouched for
        by the slot any more, a record is missing or does not fit, the uidlist was
        rebuilt, or a dead record would be one too many.

        The result is served as a listing within the mtime margin (``_dirty``): trusted
        while the slot holds, for at most :data:`_GEN_TRUST_NS` after the last listing
        that was final, so a writer that is not esam is still seen within that."""
        last, seen, listed = self._last_listing, self._sig, self._listed_gen
        if (last is None or seen is None or listed is None or sig[0] != seen[0] or self._pending
                or self._keys_since_apply or self._keys_since_apply is None):
            return None  # (a key left pending is looked at again by a real listing)
        if self._dirty and start - self._listed_ns >= _GEN_TRUST_NS:
            return None
        if gen == listed:
            return None  # cur/ changed, no esam writer bumped: one that is not esam, maybe
        chain = self._changes.records(self._gen_inode, listed, (gen - listed) & 0xFFFF_FFFF_FFFF_FFFF)
        if chain is None:
            return None
        base = last[1]
        moved = changelog.fold(base, chain)
        if moved is None:
            return None
        ul = self._ul
        if ul is None or sig[2] != self._ul_sig:
            ul = self._read_uidlist()  # appended to: read from where it was
            if ul is None or ul.uidvalidity != self._applied_uv:
                return None
        entries = ul.entries
        by_key, cur_s = self._by_key, self._cur_s + "/"
        gone = []
        for k, fn in moved.items():
            if fn is None:
                if k in entries:
                    gone.append(k)
            elif k not in entries:
                return None  # a message the uidlist does not name yet: the locked path numbers it
            elif k not in by_key and not os.path.exists(cur_s + fn):
                # renamed again since its record (a writer before its bump): left pending,
                # it would show after messages with higher UIDs; a listing has its name
                return None
        known_uv, dead = self._dead
        if known_uv != ul.uidvalidity:
            dead = set()
        live = len(base) + sum(1 if fn is not None else -1 for k, fn in moved.items() if (k in base) != (fn is not None))
        if gone and len(dead) + len(gone) > _dead_allowed(live):
            return None  # the locked path drops the dead records (one rewrite for many)
        # An APPEND or COPY numbered but not bumped yet (its record comes with its bump,
        # which may follow a later one's): shown later, its UID would come after higher
        # ones already shown.  A listing sees its file; so does the locked path.
        top = self._info_uids[-1] if self._info_uids else 0
        if ul.uidnext - 1 > top:
            if ul.problems:
                return None  # records may be out of UID order
            for k, u in reversed(entries.items()):  # ascending UIDs: the tail above ours
                if u <= top:
                    break
                if k not in moved and k not in base and k not in dead:
                    return None
        was_final = not self._dirty
        # The last applied listing becomes this view in place (with the keys given, the
        # delta apply reads no other listing), and the last listing (the base of the next
        # listing's delta) is the same dict: two O(messages) copies per look saved.  The
        # names' keys follow, as _list_cur brings them: the pair must stay one.
        cur, name_keys = self._cur_listing, self._name_keys
        for key, now in moved.items():
            _move_name(name_keys, key, cur.get(key) if cur is not None else None, now)
            if now is None:
                base.pop(key, None)
            else:
                base[key] = now
        listing = self._cur_listing = base
        keys = set(moved)
        self._keys_since_apply = keys
        infos = self._settle(ul, listing, sig[0], sig[1], self._ul_sig, start)
        if gone:
            self._dead = (ul.uidvalidity, dead | set(gone))
        if was_final:
            self._listed_ns = start  # the view was final: trusted from now on, as a listing
        self._dirty = True
        self._listed_gen = gen
        return infos

    def sync_claim(self) -> tuple[list[MessageInfo], set[int]]:
        """:meth:`sync`, then :meth:`recent` with ``claim`` up to the last UID it lists:
        a SELECT.  When the look itself numbers new messages (under the folder lock), the
        claim goes into the same uidlist write: one lock and one durable write at a
        folder's first SELECT after a delivery, not two."""
        with self._tlock:
            infos, claimed = self._sync(claim=True)
            if claimed is None:
                claimed = self.recent(claim=True, upto=infos[-1].uid if infos else 0)
            return infos, claimed

    def change_generation(self) -> Callable[[], int] | None:
        """The reader of this folder's slot of the user's change generation, mapped
        (blocking to get; the reader is a memory read, safe on the loop); ``None`` if it
        cannot be mapped, or if the store is not on a local filesystem (another machine's
        bumps would not show in the mapping: see :mod:`esam_mail.store.generation`).
        Checked again (two stats) every :data:`_GEN_RECHECK_S` seconds, not at every look."""
        now = time.monotonic()
        if self._gen_got and now - self._gen_got < _GEN_RECHECK_S:
            return self._gen_read
        read: Callable[[], int] | None = None
        try:
            if _local_fs(self.user.path):
                mapped = generation.of(self.user.path, check=True)
                read, self._gen_inode = mapped.reader(self.name), mapped.inode
        except OSError:
            read = None
        self._gen_read, self._gen_got = read, now
        return read

    def _mtime_margin(self, mtimes: Iterable[int]) -> int:
        """:data:`_MTIME_MARGIN_LOCAL_NS` once this folder's mtimes showed sub-millisecond
        parts on a local filesystem (whole-second filesystems never show them), else the
        long margin."""
        if not self._fine_mtimes and any(m % 1_000_000 for m in mtimes) and _local_fs(self.path):
            self._fine_mtimes = True
        return _MTIME_MARGIN_LOCAL_NS if self._fine_mtimes else _MTIME_MARGIN_NS

    def _full_sync(self, start: int, claim: bool) -> tuple[list[MessageInfo], set[int] | None]:
        """List the folder and bring the uidlist up to date.  ``start``: the clock before
        the signatures the listing is checked against were taken; a later change in the
        same timestamp tick as the newest of those mtimes would not alter them, so the
        listing counts as final (``_dirty`` False) only when ``start`` is a margin past it."""
        new_dir, cur_dir = self._new_s, self._cur_s
        looked = self._look_unlocked(new_dir)
        if looked is not None:
            ul, listing, new_sig, cur_sig = looked
            return self._settle(ul, listing, new_sig, cur_sig, self._ul_sig, start), None
        claimed: set[int] | None = None
        with self._locked() as lock:
            ul = self._load_uidlist_locked(lock)
            new_sig = _dir_sig(new_dir)
            new_s, cur_s = f"{new_dir}/", f"{cur_dir}/"  # str joins: Path's cost per name showed
            for fn in os.listdir(new_dir):
                if fn.startswith("."):
                    continue
                key, chars = split_name(fn)
                with contextlib.suppress(FileNotFoundError):
                    os.rename(new_s + fn, f"{cur_s}{key}:2,{chars}")
            listing, cur_sig = self._list_cur()
            missing = list(ul.entries.keys() - listing.keys())  # in C: O(messages) per look
            if missing:
                # readdir may miss a file renamed concurrently: look again before dropping.
                again, _ = self._list_cur()
                for k, fn in again.items():
                    listing.setdefault(k, fn)
                missing = [k for k in missing if k not in listing]
            if missing and len(missing) <= _dead_allowed(len(listing)):
                self._dead = (ul.uidvalidity, set(missing))  # confirmed by two listings; kept
                missing = []
            changed = bool(missing)
            for k in missing:
                del ul.entries[k]
                ul.ext.pop(k, None)
            if changed:
                self._dead = (ul.uidvalidity, set())
            for key in sorted(listing.keys() - ul.entries.keys(), key=delivery_order):
                ul.assign(key)
                changed = True
            if changed:
                self._commit(lock, ul)
            if changed and claim:
                # the claim of recent() with upto = the last UID listed here
                limit = max(map(ul.entries.__getitem__, listing.keys() & ul.entries.keys()), default=0)
                first = self._recent.floor(ul)
                claimed = self._listed_between(ul, listing, first, limit)
                if first <= limit:
                    self._recent.claim(ul, limit + 1)
            uidlist_sig = self._ul_sig
        return self._settle(ul, listing, new_sig, cur_sig, uidlist_sig, start), claimed

    def _look_unlocked(
        self, new_dir: str,
    ) -> tuple[UidList, dict[str, str], tuple[int, int], tuple[int, int]] | None:
        """The look that needs to write nothing, without the folder lock (a dotlock file
        made and removed, a flock, seven system calls): new/ holds no message and the
        uidlist names exactly the messages in cur/.  The uidlist is replaced by rename, so
        it is read whole; a writer between the two reads shows as a mismatch of the names
        (a message moved in and not yet numbered, or numbered and not yet listed), and
        then None: the locked path decides, as before."""
        new_sig = _dir_sig(new_dir)
        if any(not fn.startswith(".") for fn in os.listdir(new_dir)):
            return None
        ul = self._ul
        if ul is None or file_sig(self._ul_s) != self._ul_sig:
            ul = self._read_uidlist()
            if ul is None:
                return None  # missing or untrustworthy: made or rebuilt under the lock
        listing, cur_sig = self._list_cur()
        if listing.keys() != ul.entries.keys():
            got = self._with_dead(ul, listing, cur_sig)
            if got is None:
                return None
            listing, cur_sig = got
        return ul, listing, new_sig, cur_sig

    def _with_dead(self, ul: UidList, listing: dict[str, str], cur_sig: tuple[int, int]
                   ) -> tuple[dict[str, str], tuple[int, int]] | None:
        """The unlocked look when the uidlist still names expunged messages (records kept,
        see :func:`_dead_allowed`): the listing to use and its cur/ signature, or None
        for the locked path (a message not numbered yet, more dead records than allowed,
        or a listing that does not settle).  Records newly missing from cur/ are confirmed
        by a second listing first (readdir may miss a file renamed meanwhile), as the
        locked path does before it drops records, unless the esam process that removed
        them noted them in :data:`EXPUNGED_FILE` (after the unlink); confirmed ones are remembered for this
        uidlist, so a later look does not list twice for them (a key never names another
        file: they stay dead while the list grows by appends)."""
        entries = ul.entries
        if not listing.keys() <= entries.keys():
            return None  # a message in cur/ without a UID: numbered under the lock
        dead = entries.keys() - listing.keys()
        if len(dead) > _dead_allowed(len(listing)):
            return None  # the locked path drops them: one rewrite for many expunges
        known_uv, known = self._dead
        if known_uv != ul.uidvalidity:
            known = set()
        if not dead <= known and not dead - known <= expunged_keys(self.path):
            # (keys the expunging esam process noted after the unlink are gone for good: a
            # key never names another file; only others are confirmed by listing again,
            # which at 5,000 messages was the most of the look after another's EXPUNGE)
            again, cur_sig = self._list_cur()
            if not listing.keys() <= again.keys() or not again.keys() <= entries.keys():
                return None  # came or went between the two listings: the lock decides
            listing = again
            dead = entries.keys() - listing.keys()
        self._dead = (ul.uidvalidity, set(dead))
        return listing, cur_sig

    def _settle(
        self, ul: UidList, listing: dict[str, str], new_sig: tuple[int, int],
        cur_sig: tuple[int, int], uidlist_sig: tuple[int, int, int] | None, start: int,
    ) -> list[MessageInfo]:
        """Apply a look's listing under its uidlist and note how final it is."""
        prev, self._last_listing = self._last_listing, (ul, listing)
        # the keys that may differ from the last applied listing: those of every listing's
        # delta since (a look may list twice, to confirm what went missing), or None
        keys, self._keys_since_apply = self._keys_since_apply, set()
        if prev is None or not self._apply_delta(listing, prev, keys, ul):
            self._apply_listing(listing, ul)
        self._sig = (new_sig, cur_sig, uidlist_sig)
        mtimes = (new_sig[1], cur_sig[1], uidlist_sig[2] if uidlist_sig else 0)
        margin = self._mtime_margin(mtimes)
        self._dirty = any(start - m < margin for m in mtimes)
        return list(self._infos)

    def _apply_listing(self, listing: Mapping[str, str], ul: UidList) -> None:
        cur_s = self._cur_s + "/"
        by_uid: dict[int, _Entry] = {}
        by_key: dict[str, _Entry] = {}
        for key, fn in listing.items():
            uid = ul.entries.get(key)
            if uid is None:
                continue
            old = self._by_key.get(key)
            if old is not None and old.uid == uid:
                if old.name != fn:
                    old.name, old.chars, old.info = fn, split_name(fn)[1], None
                e = old
            else:
                size = size_from_key(key)
                try:
                    st = os.stat(cur_s + fn)
                except FileNotFoundError:
                    continue
                e = _Entry(uid, key, fn, split_name(fn)[1], size if size is not None else st.st_size, st.st_mtime)
            by_uid[uid] = e
            by_key[key] = e
        self._by_uid, self._by_key = by_uid, by_key
        self._pending = set(listing.keys() - by_key.keys())
        self._applied_uv = ul.uidvalidity
        self._rebuild_infos()

    def _apply_delta(self, listing: Mapping[str, str], prev: tuple[UidList, dict[str, str]],
                     keys: Iterable[str] | None, ul: UidList) -> bool:
        """The incremental case of :meth:`_apply_listing`: this listing under this uidlist
        differs from the last applied one (``prev``: its uidlist and listing) in a few keys,
        and only their entries change: renamed (flags), added (a delivery, an APPEND or COPY
        by another process) or gone (an expunge).  The full apply walked every message in
        Python and built the message list again at each such change: per process and per
        change, O(messages) (issue 20); this is set operations in C plus work per key.
        False (maybe after touching entries, which the full apply then sets right) when the
        UIDVALIDITY changed or the entries disagree with the uidlist.

        ``keys``: the only keys whose name may differ between ``prev`` and ``listing`` (from
        the listing's delta); None: found by comparing the two listings.  Keys the last apply
        left without an entry (``_pending``: not numbered yet) are looked at again."""
        prev_ul, prev_listing = prev
        if prev_ul.uidvalidity != ul.uidvalidity or self._applied_uv != ul.uidvalidity:
            return False
        if keys is None:
            cand = {k for k, _ in listing.items() - prev_listing.items()}
            cand.update(prev_listing.keys() - listing.keys())
        else:
            cand = set(keys)
        cand |= self._pending
        by_key, by_uid, entries = self._by_key, self._by_uid, ul.entries
        if prev_ul is not ul and prev_ul.serial not in ul.extends and not by_key.keys() <= entries.keys():
            # a record dropped while its file is listed: a race, the full apply (not when
            # the list was read on from prev_ul by appended records: it drops none, and
            # the check was O(messages) in every look after an APPEND, issue 20)
            return False
        cur_s = self._cur_s + "/"
        pending: set[str] = set()
        removed: list[int] = []
        added: list[_Entry] = []
        renamed: list[_Entry] = []
        for key in cand:
            fn = listing.get(key)
            uid = entries.get(key) if fn is not None else None
            old = by_key.get(key)
            if old is not None and old.uid != uid:
                if uid is not None:
                    return False  # renumbered under the same UIDVALIDITY: not ours to patch
                del by_key[key]
                if by_uid.get(old.uid) is old:
                    del by_uid[old.uid]
                removed.append(old.uid)
                continue
            if fn is None:
                continue
            if uid is None:
                pending.add(key)
                continue
            if old is not None:
                if old.name != fn:
                    old.name, old.chars, old.info = fn, split_name(fn)[1], None
                    renamed.append(old)
                continue
            if uid in by_uid:
                return False  # the UID is another key's
            size = size_from_key(key)
            try:
                st = os.stat(cur_s + fn)
            except FileNotFoundError:
                pending.add(key)
                continue
            e = _Entry(uid, key, fn, split_name(fn)[1], size if size is not None else st.st_size, st.st_mtime)
            by_uid[uid] = e
            by_key[key] = e
            added.append(e)
        self._pending = pending
        if removed:
            self._drop_infos(removed)
        if renamed:
            self._replace_infos(renamed)
        if added:
            self._add_infos(added)
        return True

    def _invalidate_infos(self) -> None:
        self._flag_sets.clear()  # keyword letters may mean other names now
        for e in self._by_uid.values():
            e.info = None
        self._rebuild_infos()

    def _keywords_changed(self) -> bool:
        before = self._keywords._sig
        self._keywords.refresh()
        return before != self._keywords._sig

    def uidnext(self) -> int:
        with self._tlock:
            if self._ul is None or file_sig(self._ul_s) != self._ul_sig:
                self._read_uidlist()
            if self._ul is None:
                self.sync()
            assert self._ul is not None
            return self._ul.uidnext

    def messages(self) -> list[MessageInfo]:
        """The message list as of the last ``sync()`` (no I/O)."""
        with self._tlock:
            return list(self._infos)

    def status(self) -> FolderStatus:
        infos = self.sync()
        return FolderStatus(
            uidvalidity=self.uidvalidity,
            uidnext=self.uidnext(),
            messages=len(infos),
            unseen=sum(1 for i in infos if "\\Seen" not in i.flags),
            recent=len(self.recent(claim=False)),
            size=sum(i.size for i in infos),
            extra={"highestmodseq": self.modseqs()[0],
                   "deleted": sum(1 for i in infos if "\\Deleted" in i.flags)},
        )

    def modseqs(self) -> tuple[int, dict[int, int]]:
        """(HIGHESTMODSEQ, uid -> mod-sequence) as of the last ``sync()`` (RFC 7162).

        Reconciles the folder's mod-sequence index with the messages and flags the
        folder sees now (see :mod:`store.modseq`); free while nothing changed.
        """
        with self._tlock:
            if self._modseq_seen is not None and self._modseq_seen[0] == self._version:
                return self._modseq_seen[1]
            if self._modseq is None:
                self._modseq = ModSeqIndex(self.path)
            # What changed since the last reconcile, from the message list itself: every
            # change of a message's UID or flag letters gives it a new MessageInfo, so the
            # infos that came and went (identities compared in C; ``_modseq_infos`` keeps
            # the last ones alive, so no id is reused) or, after flag changes only, the
            # infos replaced in place (``_replace_infos``) are the keys to look at.  The
            # O(messages) Python state dict and its diff were a fifth of an APPEND's CPU
            # at a 600-message folder (issue 20).
            infos = self._infos
            last, replaced = self._modseq_infos, self._infos_replaced
            state: Mapping[str, tuple[int, str]]
            if last is None:
                now = dict(zip(map(id, infos), infos, strict=True))
                changed = None
                state = {e.key: (e.uid, e.chars) for e in self._by_uid.values()}
            elif replaced is not None:
                now = last
                changed = {m.key for pair in replaced for m in pair if m is not None}
                state = _EntryState(self._by_key)
            else:
                now = dict(zip(map(id, infos), infos, strict=True))
                changed = {now[i].key for i in now.keys() - last.keys()}
                changed.update(last[i].key for i in last.keys() - now.keys())
                state = _EntryState(self._by_key)
            try:
                result = self._modseq.reconcile(state, changed)
            except BaseException:
                self._modseq_infos = self._infos_replaced = None  # the next one starts over
                raise
            if replaced is not None and now is last:
                for old, new in replaced:  # in order: an info replaced twice ends as the last
                    if old is not None:
                        now.pop(id(old), None)
                    if new is not None:
                        now[id(new)] = new
            self._modseq_infos = now  # only after a reconcile that took them
            self._infos_replaced = []
            # mod-sequences that moved with no bump of their message's record in this
            # object (another process wrote them, or a full reconcile) are journaled too
            moved, since = self._modseq.moved, self._since_modseqs
            if since is not None and (moved is None or not moved <= since):
                self._bump(None if moved is None else moved - since)
            self._since_modseqs = set()
            self._modseq_seen = (self._version, result)
            return result

    def expunged_since(self, modseq: int) -> list[int]:
        """UIDs expunged after mod-sequence ``modseq`` (RFC 7162 QRESYNC)."""
        self.modseqs()
        assert self._modseq is not None
        return self._modseq.expunged_since(modseq)

    def recent(self, *, claim: bool, upto: int | None = None) -> set[int]:
        """UIDs not yet claimed as \\Recent by any session (RFC 3501 §2.3.2).

        With ``claim`` the folder's first-recent UID (``R`` in the uidlist header)
        moves past ``upto`` (the highest UID the claiming session knows) under the
        folder lock, so the returned UIDs are recent to this caller and to no other
        session, in any process.  Without ``claim`` (EXAMINE, STATUS) nothing moves.
        """
        with self._tlock:
            ul = self._ul if self._ul is not None and file_sig(self._ul_s) == self._ul_sig \
                else self._read_uidlist()
            if ul is None:
                self.sync()
                ul = self._ul
            assert ul is not None
            limit = ul.uidnext - 1 if upto is None else upto
            first = self._recent.floor(ul, above=limit)
            if first > limit:
                return set()  # the common case: nothing new since the last claim, no lock
            if not claim:
                return self._uids_between(ul, first, limit)
            with self._locked() as lock:
                ul = self._load_uidlist_locked(lock)
                limit = min(limit, ul.uidnext - 1)
                first = self._recent.floor(ul)
                got = self._uids_between(ul, first, limit)
                if first <= limit:
                    self._recent.claim(ul, limit + 1)
            return got

    def _gone_from_cur(self, keys: list[str]) -> None:
        """Messages this object removed from cur/ (EXPUNGE, MOVE): their uidlist records
        stay for now (see :func:`_dead_allowed`), noted as expunged for `esam store check`
        and known dead here (no second listing to confirm what we removed ourselves)."""
        _note_expunged(self.path, keys)
        known_uv, dead = self._dead
        if known_uv == self.uidvalidity:
            dead.update(keys)
        else:
            self._dead = (self.uidvalidity, set(keys))

    @staticmethod
    def _listed_between(ul: UidList, listing: Mapping[str, str], first: int, limit: int) -> set[int]:
        """The UIDs of ``ul`` from ``first`` to ``limit`` whose key is in ``listing``."""
        entries = ul.entries
        if ul.problems:  # records may be out of UID order: every one
            return {entries[k] for k in listing if k in entries and first <= entries[k] <= limit}
        out: set[int] = set()
        for k, u in reversed(entries.items()):  # ascending UIDs: the tail from ``first``
            if u < first:
                break
            if u <= limit and k in listing:
                out.add(u)
        return out

    def _uids_between(self, ul: UidList, first: int, limit: int) -> set[int]:
        """The UIDs of ``ul`` from ``first`` to ``limit``, less the records known to name
        expunged messages (kept in the uidlist for now, see :func:`_dead_allowed`)."""
        dead = self._dead[1]
        if ul.problems:  # records may be out of UID order: every one
            return {u for k, u in ul.entries.items() if first <= u <= limit and k not in dead}
        out: set[int] = set()
        for k, u in reversed(ul.entries.items()):  # ascending UIDs: the tail from ``first``
            if u < first:
                break
            if u <= limit and k not in dead:
                out.add(u)
        return out

    def _entry(self, uid: int) -> _Entry:
        e = self._by_uid.get(uid)
        if e is None:
            raise KeyError(uid)
        return e

    def _refresh_names(self) -> None:
        """Re-list cur/ (no lock) after ENOENT: pick up renames and expunges by others."""
        listing, _ = self._list_cur()
        for key, e in list(self._by_key.items()):
            fn = listing.get(key)
            if fn is None:
                del self._by_key[key]
                self._by_uid.pop(e.uid, None)
            elif fn != e.name:
                e.name, e.chars, e.info = fn, split_name(fn)[1], None
        self._rebuild_infos()
        self._dirty = True

    def path_of(self, uid: int) -> str:
        with self._tlock:
            return str(self.path / "cur" / self._entry(uid).name)

    def read(self, uid: int) -> bytes:
        return self._read(uid, head=False)

    def read_head(self, uid: int) -> bytes:
        """The message's start, at least through the blank line after its header (the
        whole message if it has none): what an envelope needs, without reading a large
        attachment."""
        return self._read(uid, head=True)

    def _read(self, uid: int, *, head: bool) -> bytes:
        with self._tlock:
            for attempt in range(3):
                e = self._entry(uid)
                try:
                    return _read_file(f"{self.path}/cur/{e.name}", head=head)
                except FileNotFoundError:
                    if attempt == 2:
                        break
                    self._refresh_names()
            raise KeyError(uid)

    def _chars_for(self, flags: Iterable[str], *, allocate: bool) -> tuple[str, set[str]]:
        """System flag letters and keyword names for IMAP flags (\\Recent ignored)."""
        sys_chars = set()
        kws: set[str] = set()
        for f in flags:
            if f.startswith("\\"):
                canon = _SYSTEM_LOWER.get(f.lower())
                if canon is not None:
                    sys_chars.add(FLAG_TO_CHAR[canon])
            elif _KEYWORD_RE.match(f) and not (set(f) & _KEYWORD_SPECIALS):
                kws.add(f)
        letters = set()
        self._keywords.refresh()
        unknown = [k for k in kws if self._keywords.letter_of(k) is None]
        if unknown and allocate:
            with self._locked():
                self._keywords.allocate(sorted(unknown), fsync=self._fsync)
            self._invalidate_infos()
        for k in kws:
            letter = self._keywords.letter_of(k)
            if letter is not None:
                letters.add(letter)
        return "".join(sorted(sys_chars | letters)), kws

    def append(
        self,
        data: bytes,
        flags: Iterable[str] = (),
        internal_date: dt.datetime | None = None,
    ) -> int:
        """Store ``data`` durably in cur/ with ``flags``; returns the new UID.

        Raises:
            QuotaExceeded: the user's quota would be exceeded.
        """
        size = len(data)
        self.user.check_quota(size)
        with self._tlock:
            chars, _ = self._chars_for(flags, allocate=True)
        key = new_key(size)
        tmp = self.path / "tmp" / key
        fsio.write_file(tmp, data, mode=_FILE_MODE, fsync=self._fsync)
        if internal_date is not None:
            ts = internal_date.timestamp()
            os.utime(tmp, (ts, ts))
        try:
            uid, own = self._link_tmp(tmp, key, chars)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)  # not renamed into cur/ (once renamed it is not there)
            raise
        self._appended(size, key, chars, uid, own)
        return uid

    def _appended(self, size: int, key: str, chars: str, uid: int, own: _Own | None) -> None:
        """After an APPEND's file is in cur/ with its UID: quota, bump and notice, and the
        new entry made from what we wrote (:meth:`_own_end`)."""
        self.user.usage_add(size, 1)
        added: list[changelog.Change] = [(key, None, f"{key}:2,{chars}")]
        self._own_end(own, added, self.user.notify(self.name, changes=(self.path, added)), uid)

    def _link_tmp(self, tmp: Path, key: str, chars: str) -> tuple[int, _Own | None]:
        """Move a complete, synced file from tmp/ into cur/ and give it the next UID; with
        the UID, the proof for :meth:`_own_end` (or None)."""
        with self._tlock, self._locked() as lock:
            own = self._own_start(uidlist=True)
            ul = self._load_uidlist_locked(lock)
            os.rename(tmp, f"{self._cur_s}/{key}:2,{chars}")
            uid = ul.assign(key)
            if self._fsync:
                fsync_dir(self._cur_s)
            self._commit(lock, ul)
        return uid, own

    def append_file(
        self,
        path: str | os.PathLike[str],
        size: int,
        flags: Iterable[str] = (),
        internal_date: dt.datetime | None = None,
    ) -> int:
        """Commit a spooled message file (in this user's tree) as a new message.

        The file is fsync'd now (not while it was written), then renamed into cur/:
        no copy, so a 50 MB APPEND never sits in memory.  The file is gone afterwards
        whatever happens.

        Raises:
            QuotaExceeded: the user's quota would be exceeded.
            StoreError: the file is not ``size`` bytes long.
        """
        src = Path(path)
        try:
            if os.stat(src).st_size != size:
                raise StoreError("spooled message has the wrong size")
            self.user.check_quota(size)
            with self._tlock:
                chars, _ = self._chars_for(flags, allocate=True)
            key = new_key(size)
            tmp = self.path / "tmp" / key
            os.rename(src, tmp)  # same user tree, same filesystem
            src = tmp
            if self._fsync:
                fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            ts = (internal_date or dt.datetime.now(dt.UTC)).timestamp()
            os.utime(tmp, (ts, ts))
            uid, own = self._link_tmp(tmp, key, chars)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(src)
        self._appended(size, key, chars, uid, own)
        return uid

    def store_flags(self, uids: Iterable[int], flags: Iterable[str], mode: int) -> dict[int, frozenset[str]]:
        """Change flags (mode +1 add, -1 remove, 0 replace); uid -> resulting flags.

        UIDs unknown to the last ``sync()`` or expunged meanwhile are left out.
        """
        flags = list(flags)
        with self._tlock:
            chars, _ = self._chars_for(flags, allocate=mode >= 0)
            want = set(chars)
            result: dict[int, frozenset[str]] = {}
            changed: list[_Entry] = []
            own = self._own_start()
            renames: list[tuple[str, str | None, str | None]] = []
            before: int | None = None
            # the generation lock from the first rename to the bump: the change log gets
            # two renames of one message in the order they were made (changelog's rules)
            with self.user.changing() as held:
                for uid in uids:
                    for _attempt in range(4):
                        e = self._by_uid.get(uid)
                        if e is None:
                            break
                        old = set(e.chars)
                        new = old | want if mode > 0 else old - want if mode < 0 else want
                        new_chars = "".join(sorted(new))
                        if new_chars == e.chars:
                            result[uid] = self._info(e).flags
                            break
                        new_name = f"{e.key}:2,{new_chars}"
                        try:
                            os.rename(f"{self._cur_s}/{e.name}", f"{self._cur_s}/{new_name}")
                        except FileNotFoundError:
                            # Renamed (flags) or expunged by another session: re-list, retry.
                            self._refresh_names()
                            own = None
                            continue
                        renames.append((e.key, e.name, new_name))
                        e.name, e.chars, e.info = new_name, new_chars, None
                        result[uid] = self._info(e).flags
                        changed.append(e)
                        break
                if changed:
                    before = self._bumped(self.user.bump_generation(
                        self.name, changes=(self.path, renames), held=held))
            if changed:
                self._replace_infos(changed)
                self._dirty = True
        if changed:
            self.user.publish(self.name)
            self._own_end(own, renames, before)
        return result

    def _bumped(self, before: tuple[int, ...] | None) -> int | None:
        """This folder's slot value before a bump (None: the bump failed)."""
        return None if before is None else before[generation.slot_of(self.name)]

    def _own_start(self, *, uidlist: bool = False) -> _Own | None:
        """Before this object changes cur/ (under ``_tlock``; with ``uidlist``, under the
        folder lock too, the uidlist about to be appended to): the signatures and the
        folder's generation slot, when the last look is the folder as it is by the proof
        a ``sync()`` would serve it on (the same signatures, and final or vouched for by
        the slot); else None."""
        sig, read = self._sig, self.change_generation()
        if sig is None or read is None:
            return None
        gen = read()
        try:
            cur = _dir_sig(self._cur_s)
            if uidlist and (file_sig(self._ul_s) != sig[2] or self._ul_sig != sig[2]
                            or self._last_listing is None or self._last_listing[0] is not self._ul):
                return None
        except OSError:
            return None
        if cur != sig[1] or (self._dirty and not (
                gen == self._listed_gen and _now_ns() - self._listed_ns < _GEN_TRUST_NS)):
            return None
        return sig, gen

    def _own_end(self, own: _Own | None, renames: Sequence[tuple[str, str | None, str | None]],
                 before_bump: int | None, added: int | None = None) -> None:
        """After this object's flag renames, unlinks (new name None) or APPEND (old name
        None, UID ``added``, appended to the uidlist) and their bump: when the last look
        was current before them (``own``) and no other esam writer bumped the folder's
        slot in between (it was still the value read before), the last listing with our
        changes is cur/ now: it becomes the last listing, with the signatures of now, and
        the look at the end of the command lists nothing (an unlinked message's record is
        known dead: no second listing to confirm it either).  Each STORE, EXPUNGE and
        APPEND made every look after it list cur/ again (twice after an EXPUNGE) to learn
        what this object had just done (issue 20).  A writer still between
        its change and its bump bumps later: the next look sees the slot moved and lists;
        a writer that is not esam is seen once the slot's vouching lapses, as for any
        listing within the mtime margin (``_sync``)."""
        if own is None or before_bump is None or before_bump != own[1]:
            return
        with self._tlock:
            sig = self._sig
            if sig is not own[0]:
                return  # a look meanwhile
            # an EXPUNGE's keys are known dead already (_gone_from_cur)
            if any(new is None for _, _, new in renames) and \
                    len(self._dead[1]) > _dead_allowed(len(self._by_key)):
                return  # the next look drops the dead records (one rewrite for many)
            entry = None
            try:
                cur = _dir_sig(self._cur_s)
                if added is not None:
                    key, _, name = renames[0]
                    assert name is not None
                    if self._ul is None or self._ul.entries.get(key) != added or added in self._by_uid \
                            or (self._info_uids and self._info_uids[-1] > added):
                        return
                    st = os.stat(f"{self._cur_s}/{name}")
                    size = size_from_key(key)
                    entry = _Entry(added, key, name, split_name(name)[1],
                                   size if size is not None else st.st_size, st.st_mtime)
            except OSError:
                return
            if entry is not None:
                self._by_uid[entry.uid] = entry
                self._by_key[entry.key] = entry
                self._add_infos([entry])  # the highest UID: appended
            last = self._last_listing[1] if self._last_listing is not None else None
            names = self._name_keys
            for key, old, new in renames:
                for listing in (self._cur_listing, last):
                    if listing is not None and listing.get(key) == old:
                        if new is None:
                            del listing[key]
                        else:
                            listing[key] = new
                if old is not None and names.get(old) == key:
                    del names[old]
                if new is not None:
                    names[new] = key
            self._sig = (sig[0], cur, self._ul_sig if entry is not None else sig[2])
            self._dirty = True  # mtimes of now: vouched for by the slot alone
            self._listed_gen = (own[1] + 1) & 0xFFFF_FFFF_FFFF_FFFF
            self._listed_ns = _now_ns()

    def copy_to(self, uids: Sequence[int], dest: Any) -> list[tuple[int, int]]:
        """Hard-link messages into ``dest`` (tmp/ -> cur/); returns (src_uid, dest_uid).

        Flags (keywords included) are copied.  UIDs that vanished are skipped.

        Raises:
            QuotaExceeded: the destination user's quota would be exceeded.
            NoSuchFolder: ``dest`` was deleted.
        """
        if not isinstance(dest, MaildirFolder):
            raise TypeError("dest must be a MaildirFolder")
        staged: list[tuple[int, int, str, Path, frozenset[str]]] = []  # uid size key tmp fl
        pairs: list[tuple[int, int]] = []
        added: list[changelog.Change] = []
        try:
            with self._tlock:
                wanted = [u for u in sorted(set(uids)) if u in self._by_uid]
                dest.user.check_quota(sum(self._by_uid[u].size for u in wanted))
                if not (dest.path / "tmp").is_dir():
                    raise NoSuchFolder(dest.name)
                for uid in wanted:
                    for _attempt in range(3):
                        e = self._by_uid.get(uid)
                        if e is None:
                            break
                        key = new_key(e.size)
                        tmp = dest.path / "tmp" / key
                        try:
                            self._link_or_copy(self.path / "cur" / e.name, tmp)
                        except FileNotFoundError:
                            self._refresh_names()
                            continue
                        staged.append((uid, e.size, key, tmp, self._info(e).flags))
                        break
            if not staged:
                return []
            with dest._tlock:
                dest_chars = [dest._chars_for(st[4], allocate=True)[0] for st in staged]
                with dest._locked() as lock:
                    ul = dest._load_uidlist_locked(lock)
                    for (uid, _size, key, tmp, _fl), chars in zip(staged, dest_chars, strict=True):
                        os.rename(tmp, dest.path / "cur" / f"{key}:2,{chars}")
                        pairs.append((uid, ul.assign(key)))
                        added.append((key, None, f"{key}:2,{chars}"))
                    if self._fsync:
                        fsync_dir(dest.path / "cur")
                    dest._commit(lock, ul)
        finally:
            for *_rest, tmp, _fl in staged:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        dest.user.usage_add(sum(st[1] for st in staged), len(staged))
        dest.user.notify(dest.name, changes=(dest.path, added))
        return pairs

    def move_to(self, uids: Sequence[int], dest: Any) -> list[tuple[int, int]]:
        """Move messages into ``dest`` (RFC 6851 MOVE); returns (src_uid, dest_uid).

        Crash-safe: every file is renamed from this folder's ``cur/`` straight into
        ``dest``'s ``cur/`` under a new key, so at each instant it is in exactly one
        folder.  A crash before ``dest``'s uidlist is committed leaves the file in
        ``dest/cur`` without a UID: the next sync gives it a fresh one, like any new
        message; this folder's stale uidlist line is dropped by its next sync, like an
        expunge by another process.  (Copy-then-expunge would leave both copies.)
        Flags and keywords are kept; UIDs that vanished are skipped.  Into another
        user's folder, or into this folder itself: copy, then expunge.

        Raises:
            NoSuchFolder: ``dest`` was deleted.
        """
        if not isinstance(dest, MaildirFolder):
            raise TypeError("dest must be a MaildirFolder")
        if dest.user.login != self.user.login or dest.path == self.path:
            copied = self.copy_to(uids, dest)
            if copied:
                self.store_flags([p[0] for p in copied], ["\\Deleted"], 1)
                self.expunge([p[0] for p in copied])
            return copied
        pairs: list[tuple[int, int]] = []
        moved: list[_Entry] = []
        gone: list[changelog.Change] = []
        added: list[changelog.Change] = []
        # both locks, always in path order: folder objects are shared by sessions, and
        # a MOVE A -> B may run beside a MOVE B -> A
        first, second = sorted((self, dest), key=lambda f: str(f.path))
        with first._tlock, second._tlock:
            if not (dest.path / "cur").is_dir():
                raise NoSuchFolder(dest.name)
            wanted = [self._by_uid[u] for u in sorted(set(uids)) if u in self._by_uid]
            chars = {e.uid: dest._chars_for(self._info(e).flags, allocate=True)[0] for e in wanted}
            with dest._locked() as lock:
                ul = dest._load_uidlist_locked(lock)
                for uid in chars:
                    for _attempt in range(3):
                        e = self._by_uid.get(uid)
                        if e is None:
                            break
                        key = new_key(e.size)
                        try:
                            os.rename(self.path / "cur" / e.name, dest.path / "cur" / f"{key}:2,{chars[uid]}")
                        except FileNotFoundError:  # flags renamed or expunged by another session
                            self._refresh_names()
                            continue
                        moved.append(e)
                        pairs.append((uid, ul.assign(key)))
                        gone.append((e.key, e.name, None))
                        added.append((key, None, f"{key}:2,{chars[uid]}"))
                        break
                if not moved:
                    return []
                if self._fsync:
                    fsync_dir(dest.path / "cur")
                    fsync_dir(self.path / "cur")
                dest._commit(lock, ul)
            self._gone_from_cur([e.key for e in moved])
            for e in moved:
                self._by_uid.pop(e.uid, None)
                self._by_key.pop(e.key, None)
            self._drop_infos([e.uid for e in moved])
            self._dirty = True
            dest._dirty = True
            if self._cache is not None:
                with contextlib.suppress(Exception):
                    self._cache.delete(e.key for e in moved)
        self.user.notify(self.name, changes=(self.path, gone))
        dest.user.notify(dest.name, changes=(dest.path, added))
        return pairs

    def _link_or_copy(self, src: Path, dst: Path) -> None:
        try:
            os.link(src, dst)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
            with open(src, "rb") as fh:
                data = fh.read()
            st = os.stat(src)
            fsio.write_file(dst, data, mode=_FILE_MODE, fsync=self._fsync)
            os.utime(dst, (st.st_atime, st.st_mtime))

    def expunge(self, uids: Iterable[int] | None = None) -> list[int]:
        """Unlink messages flagged \\Deleted (only among ``uids`` if given)."""
        with self._tlock:
            limit = None if uids is None else set(uids)
            removed: list[_Entry] = []
            own = self._own_start()
            candidates = [
                e for e in list(self._by_uid.values()) if "T" in e.chars and (limit is None or e.uid in limit)
            ]
            for e in candidates:
                for attempt in range(3):
                    try:
                        os.unlink(f"{self._cur_s}/{e.name}")  # the name carries "T"
                    except FileNotFoundError:
                        if attempt == 2:
                            break
                        self._refresh_names()
                        own = None
                        cur = self._by_uid.get(e.uid)
                        if cur is None or "T" not in cur.chars:
                            break
                        continue
                    removed.append(e)
                    break
            if not removed:
                return []
            if self._fsync:
                fsync_dir(self._cur_s)
            self._gone_from_cur([e.key for e in removed])
            for e in removed:
                self._by_uid.pop(e.uid, None)
                self._by_key.pop(e.key, None)
            self._drop_infos([e.uid for e in removed])
            self._dirty = True
            if self._cache is not None:
                with contextlib.suppress(Exception):
                    self._cache.delete(e.key for e in removed)
        self.user.usage_add(-sum(e.size for e in removed), -len(removed))
        gone: list[changelog.Change] = [(e.key, e.name, None) for e in removed]
        self._own_end(own, gone, self.user.notify(self.name, changes=(self.path, gone)))
        return sorted(e.uid for e in removed)

    # -- metadata cache ---------------------------------------------------------

    def _metadata(self) -> MetadataCache:
        if self._cache is None:
            self._cache = MetadataCache(self.path)
        return self._cache

    def cache_get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Cached metadata for Maildir keys (absent keys are not in the result)."""
        return self._metadata().get_many(keys)

    def cache_put_many(
        self, items: Mapping[str, dict[str, Any]] | Iterable[tuple[str, dict[str, Any]]]
    ) -> None:
        """Store metadata dicts (JSON-serialisable) by Maildir key."""
        self._metadata().put_many(items)

    def cache_prune(self) -> int:
        """Drop cache entries of messages that no longer exist; returns how many."""
        with self._tlock:
            live = list(self._by_key)
        return self._metadata().prune(live)

    def close(self) -> None:
        if self._modseq is not None:
            self._modseq.close()
            self._modseq = None
        if self._cache is not None:
            self._cache.close()
            self._cache = None


class MaildirUser:
    """One user's Maildir++ tree (implements ``UserStore``)."""

    def __init__(self, store: MaildirStore, login: str, quota: int | None) -> None:
        self.store = store
        self.login = login
        self.path = store.root / login
        self.quota = _quota_limit(quota if quota is not None else store.default_quota)
        self._usage = store._usage_of(login)

    def __repr__(self) -> str:
        return f"<MaildirUser {self.login}>"

    # -- locking, counters ------------------------------------------------------

    @contextlib.contextmanager
    def _user_lock(self) -> Iterator[None]:
        fd = os.open(self.path / "esam-user.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def next_uidvalidity(self) -> int:
        """A UIDVALIDITY never issued before to any folder of this user."""
        path = self.path / "dovecot-uidvalidity"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.read(fd, 64).decode("ascii", "replace").strip()
            try:
                last = int(raw, 16)
            except ValueError:
                last = 0
            value = max(int(time.time()), last + 1)
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, f"{value:08x}\n".encode())
            if self.store.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        return value

    def bump_generation(self, *folders: str, changes: tuple[Path, Sequence[changelog.Change]] | None = None,
                        held: generation.Held | None = None) -> tuple[int, ...] | None:
        """After a durable change: one more in the user's change generation and in the
        slots of ``folders`` (see :mod:`esam_mail.store.generation`); never fails the
        change.  ``changes``: (the folder's path, what changed in its cur/), written to
        its change log under the bump's lock (one folder only); ``held``: the lock, taken
        by the caller before its change.  The slots' values before the bump, or None if
        it failed."""
        write = None
        if changes is not None and len(folders) == 1:
            write = functools.partial(_log_changes, changes[0], generation.slot_of(folders[0]), changes[1])
        try:
            if held is not None:
                return held.bump(folders, write)
            return generation.bump(self.path, folders, write)
        except OSError:  # sessions see it at their next real look
            log.exception("event=generation_bump_failed user=%s", self.login)
            return None

    def changing(self) -> contextlib.AbstractContextManager[generation.Held | None]:
        """The user's generation lock, held across a change and its bump (flag renames:
        see :mod:`esam_mail.store.changelog`)."""
        return generation.held(self.path)

    def notify(self, folder: str, changes: tuple[Path, Sequence[changelog.Change]] | None = None,
               held: generation.Held | None = None) -> int | None:
        """After a durable change to ``folder``: bump the user's generation (and the
        folder's slot; with ``changes``, logged: see :meth:`bump_generation`), then tell
        the other processes.  The folder slot's value before the bump (None: the bump
        failed)."""
        before = self.bump_generation(folder, changes=changes, held=held)
        self.publish(folder)
        return None if before is None else before[generation.slot_of(folder)]

    def publish(self, folder: str) -> None:
        """Tell the other processes (IDLE) that ``folder`` changed."""
        notifier = self.store.notifier
        if notifier is not None:
            try:
                notifier.publish(self.login, folder)
            except Exception:  # a lost notification must never fail a store operation
                log.exception("event=notify_failed user=%s", self.login)

    # -- quota -----------------------------------------------------------------

    def usage(self) -> int:
        return self._usage.get()[0]

    def message_count(self) -> int:
        return self._usage.get()[1]

    def usage_add(self, nbytes: int, count: int) -> None:
        self._usage.add(nbytes, count)

    def quota_state(self, incoming_size: int = 0) -> QuotaState:
        return QuotaState(usage=self.usage(), limit=self.quota, incoming=incoming_size)

    def check_quota(self, incoming_size: int) -> None:
        if self.quota is None:
            return
        state = self.quota_state(incoming_size)
        if not state.ok:
            err = QuotaExceeded("mailbox full")
            err.login = self.login  # type: ignore[attr-defined]
            raise err

    # -- layout ----------------------------------------------------------------

    def exists(self) -> bool:
        return (self.path / "cur").is_dir()

    def create(self) -> None:
        """Create INBOX and the special-use folders (idempotent)."""
        _mkdir(self.store.root)
        _make_maildir(self.path)
        self.folder("INBOX")  # creates the uidlist with its UIDVALIDITY
        if not (self.path / CACHE_FILE).exists():
            _make_folder_dbs(self.path)
        self._usage.get()  # creates maildirsize
        for name in SPECIAL_USE:
            with contextlib.suppress(FolderExists):
                self.create_folder(name)
        with self._user_lock():
            subs = self._read_subscriptions()
            want = ["INBOX", *SPECIAL_USE]
            if any(n not in subs for n in want):
                self._write_subscriptions(subs | set(want))

    def folder_path(self, name: str) -> Path:
        """Directory of a (validated) folder name; raises BadFolderName."""
        disk = names.to_disk(name)
        return self.path if disk is None else self.path / disk

    def folder(self, name: str) -> MaildirFolder:
        canonical = names.normalize(name)
        path = self.folder_path(canonical)
        if canonical == names.INBOX:
            if not self.path.is_dir():
                raise NoSuchFolder(canonical)
            if not (path / "cur").is_dir():
                _make_maildir(path)
        elif path.is_symlink() or not (path / "cur").is_dir():
            raise NoSuchFolder(canonical)
        return MaildirFolder(self, canonical, path)

    def _folder_names(self) -> set[str]:
        out: set[str] = set()
        try:
            it = os.scandir(self.path)
        except FileNotFoundError:
            return out
        with it:
            for e in it:
                if e.name.startswith(".") and e.is_dir(follow_symlinks=False):
                    name = names.from_disk(e.name)
                    if name is not None:
                        out.add(name)
        return out

    def list_folders(self) -> list[FolderInfo]:
        present = self._folder_names()
        present.add(names.INBOX)
        subs = self._read_subscriptions()
        every = set(present)
        for n in present:
            every.update(names.parent_names(n))
        parents = {p for n in every for p in names.parent_names(n)}
        out = []
        for n in sorted(every, key=lambda s: (s != names.INBOX, s)):
            out.append(
                FolderInfo(
                    name=n,
                    special_use=SPECIAL_USE.get(n),
                    has_children=n in parents,
                    subscribed=n in subs,
                    noselect=n not in present,
                )
            )
        return out

    def create_folder(self, name: str) -> None:
        """Create a folder (and missing parents).  Raises FolderExists/BadFolderName.

        Does not subscribe it (RFC 3501 §6.3.3: subscriptions are the client's own
        list); :meth:`create` subscribes the default folders."""
        canonical = names.normalize(name)
        if canonical == names.INBOX:
            raise FolderExists(canonical)
        if not self.path.is_dir():
            raise NoSuchFolder(canonical)
        with self._user_lock():
            for parent in names.parent_names(canonical):
                if parent != names.INBOX and not self.folder_path(parent).is_dir():
                    self._create_one(parent)
            if self.folder_path(canonical).exists():
                raise FolderExists(canonical)
            self._create_one(canonical)
        self.bump_generation()

    def _create_one(self, name: str) -> None:
        target = self.folder_path(name)
        staging = self.path / f"esam-staging.{os.getpid()}.{secrets.token_hex(6)}"
        _make_maildir(staging)
        os.close(_open_excl(staging / "maildirfolder"))
        ul = UidList(uidvalidity=self.next_uidvalidity())
        fsio.write_file(staging / UIDLIST, ul.render(), mode=_FILE_MODE, fsync=self.store.fsync)
        _make_folder_dbs(staging)
        try:
            os.rename(staging, target)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise FolderExists(name) from None
            raise
        if self.store.fsync:
            fsync_dir(self.path)

    def delete_folder(self, name: str) -> None:
        """Delete a folder and its messages.  INBOX and folders with children are refused."""
        canonical = names.normalize(name)
        if canonical == names.INBOX:
            raise FolderError("INBOX cannot be deleted")
        with self._user_lock():
            path = self.folder_path(canonical)
            if not path.is_dir() or path.is_symlink():
                raise NoSuchFolder(canonical)
            if any(n.startswith(canonical + "/") for n in self._folder_names()):
                raise FolderHasChildren("folder has children")
            trash = self.path / f"esam-trash.{os.getpid()}.{secrets.token_hex(6)}"
            os.rename(path, trash)
            if self.store.fsync:
                fsync_dir(self.path)
            # the subscription stays (RFC 3501 §6.3.6: never removed unilaterally)
        nbytes, count = _folder_usage(trash)
        shutil.rmtree(trash, ignore_errors=True)
        if count:
            self.usage_add(-nbytes, -count)
        self.notify(canonical)

    def rename_folder(self, old: str, new: str) -> None:
        """Rename a folder and all its children; UIDVALIDITY moves with it.

        Raises:
            NoSuchFolder: ``old`` does not exist.
            FolderExists: ``new`` (or one of the renamed children) exists.
            BadFolderName: invalid name, or ``new`` inside ``old``.
            FolderError: renaming INBOX (not supported).
        """
        src = names.normalize(old)
        dst = names.normalize(new)
        if src == names.INBOX:
            raise FolderError("renaming INBOX is not supported")
        if dst == names.INBOX:
            raise FolderExists(dst)
        if dst == src or dst.startswith(src + "/"):
            raise BadFolderName("cannot rename a folder into itself")
        with self._user_lock():
            present = self._folder_names()
            if src not in present:
                raise NoSuchFolder(src)
            moves = [(src, dst)] + [
                (n, dst + n[len(src) :]) for n in sorted(present) if n.startswith(src + "/")
            ]
            for _, target in moves:
                names.normalize(target)  # depth/length of the children too
                if target in present:
                    raise FolderExists(target)
            for parent in names.parent_names(dst):
                if parent != names.INBOX and parent not in present:
                    self._create_one(parent)
            for a, b in moves:
                os.rename(self.folder_path(a), self.folder_path(b))
            if self.store.fsync:
                fsync_dir(self.path)
            subs = self._read_subscriptions()
            renamed = {a: b for a, b in moves}
            if any(s in renamed for s in subs):
                self._write_subscriptions({renamed.get(s, s) for s in subs})
        self.notify(src)
        self.notify(dst)

    # -- subscriptions ---------------------------------------------------------------

    def _read_subscriptions(self) -> set[str]:
        try:
            text = (self.path / "subscriptions").read_text("utf-8", "replace")
        except FileNotFoundError:
            return set()
        out = set()
        for line in text.splitlines():
            with contextlib.suppress(BadFolderName):
                if line:
                    out.add(names.normalize(line))
        return out

    def _write_subscriptions(self, subs: set[str]) -> None:
        body = "".join(f"{s}\n" for s in sorted(subs)).encode("utf-8")
        fsio.atomic_write(self.path / "subscriptions", body, mode=_FILE_MODE, fsync=self.store.fsync)

    def subscriptions(self) -> set[str]:
        return self._read_subscriptions()

    def subscribe(self, name: str, on: bool = True) -> None:
        """(Un)subscribe a name; the folder need not exist (RFC 3501 6.3.6)."""
        canonical = names.normalize(name)
        with self._user_lock():
            subs = self._read_subscriptions()
            if (canonical in subs) != on:
                self._write_subscriptions(subs | {canonical} if on else subs - {canonical})

    # -- delivery ----------------------------------------------------------------

    def deliver(self, data: bytes, folder: str = "INBOX") -> str:
        """Durable delivery into ``folder``'s new/; returns the key.  Raises QuotaExceeded."""
        path = self.folder_path(folder)
        if folder != names.INBOX and not path.is_dir():
            raise NoSuchFolder(names.normalize(folder))
        result = self.store._deliver([(self, path, names.normalize(folder))], data)
        value = result[self.login]
        if isinstance(value, BaseException):
            raise value
        return value

    def spool_dir(self) -> Path:
        """Where incoming literals are spooled (INBOX's tmp/, same filesystem as every
        folder; ``cleanup_tmp`` removes what a crash leaves behind)."""
        return self.path / "tmp"

    def cleanup_tmp(self, max_age: float = TMP_MAX_AGE) -> int:
        """Remove tmp/ files older than ``max_age`` seconds in every folder; returns count."""
        removed = 0
        limit = time.time() - max_age
        folders = [self.path] + [self.folder_path(n) for n in self._folder_names()]
        for folder in folders:
            try:
                it = os.scandir(folder / "tmp")
            except FileNotFoundError:
                continue
            with it:
                for e in it:
                    try:
                        if (
                            e.is_file(follow_symlinks=False)
                            and e.stat(follow_symlinks=False).st_mtime < limit
                        ):
                            os.unlink(e.path)
                            removed += 1
                    except FileNotFoundError:
                        continue
        return removed


def _folder_usage(path: Path) -> tuple[int, int]:
    total = count = 0
    for sub in ("cur", "new"):
        try:
            listing = os.listdir(path / sub)
        except FileNotFoundError:
            continue
        for fn in listing:
            if fn.startswith("."):
                continue
            size = size_from_key(split_name(fn)[0])
            if size is None:
                try:
                    size = os.lstat(path / sub / fn).st_size
                except FileNotFoundError:
                    continue
            total += size
            count += 1
    return total, count


class MaildirStore:
    """All users' Maildirs under ``root``.

    Args:
        root: store directory (created 0700 if missing).
        default_quota: bytes per user when a call gives none; None or <= 0: unlimited.
        fsync: False only for tests/benchmarks that say so (loses durability).
        notifier: told about every change (IDLE).
    """

    def __init__(
        self,
        root: Path,
        *,
        default_quota: int | None = None,
        fsync: bool = True,
        notifier: Notifier | None = None,
    ) -> None:
        self.root = Path(root)
        self.default_quota = default_quota
        self.fsync = fsync
        self.notifier = notifier
        self._usages: dict[str, _Usage] = {}
        self._usages_lock = threading.Lock()
        with contextlib.suppress(FileExistsError):
            os.makedirs(self.root, _DIR_MODE)

    @staticmethod
    def check_login(login: str) -> str:
        if not isinstance(login, str) or not LOGIN_RE.match(login) or ".." in login:
            raise StoreError("invalid login for the store")
        return login

    def _usage_of(self, login: str) -> _Usage:
        with self._usages_lock:
            u = self._usages.get(login)
            if u is None:
                if len(self._usages) > 10000:
                    self._usages.clear()
                u = self._usages[login] = _Usage(self.root / login, self.default_quota)
            return u

    def user(self, login: str, quota: int | None = None) -> MaildirUser:
        """The user's store.  ``quota``: None -> default_quota; <= 0 -> unlimited."""
        return MaildirUser(self, self.check_login(login), quota)

    def users(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.root) if LOGIN_RE.match(n))
        except FileNotFoundError:
            return []

    def quota_state(self, login: str, incoming_size: int = 0, quota: int | None = None) -> QuotaState:
        """Usage vs limit for an RCPT-time check (cheap: cached ``maildirsize``)."""
        return self.user(login, quota).quota_state(incoming_size)

    def deliver_each(
        self,
        logins: Sequence[str],
        data: bytes,
        *,
        quotas: Mapping[str, int | None] | None = None,
    ) -> dict[str, str | StoreError]:
        """Deliver one message to several INBOXes; per-recipient key or error.

        The message is written and fsynced once, hard-linked into each new/, and each
        new/ directory is fsynced before this returns.  Over-quota recipients get
        ``QuotaExceeded``; others may get a ``StoreError`` on I/O failure.
        """
        quotas = quotas or {}
        users = [self.user(lg, quotas.get(lg)) for lg in dict.fromkeys(logins)]
        return self._deliver([(u, u.path, names.INBOX) for u in users], data)

    def deliver_many(
        self,
        logins: Sequence[str],
        data: bytes,
        *,
        quotas: Mapping[str, int | None] | None = None,
    ) -> dict[str, str]:
        """Deliver to every login or raise before writing anything.

        Returns:
            login -> Maildir key.

        Raises:
            QuotaExceeded: some recipient is over quota (``.logins`` lists them).
            StoreError: I/O failure; ``.delivered`` holds the recipients that got it.
        """
        quotas = quotas or {}
        users = [self.user(lg, quotas.get(lg)) for lg in dict.fromkeys(logins)]
        over = [u.login for u in users if not u.quota_state(len(data)).ok]
        if over:
            err = QuotaExceeded("mailbox full")
            err.logins = over  # type: ignore[attr-defined]
            raise err
        result = self._deliver([(u, u.path, names.INBOX) for u in users], data)
        failed = {k: v for k, v in result.items() if isinstance(v, BaseException)}
        if failed:
            first = next(iter(failed.values()))
            err2 = first if isinstance(first, StoreError) else StoreError("delivery failed")
            err2.delivered = {  # type: ignore[attr-defined]
                k: v for k, v in result.items() if isinstance(v, str)
            }
            raise err2
        return {k: v for k, v in result.items() if isinstance(v, str)}

    def deliver_batch(
        self, jobs: Sequence[tuple[Sequence[str], bytes, Mapping[str, int | None] | None]]
    ) -> list[dict[str, str | StoreError] | OSError]:
        """:meth:`deliver_each` for several messages at once (group commit).

        Every message file is written, then each is fsynced, then linked into its new/
        directories, then each new/ directory of the batch is fsynced once: concurrent
        deliveries share the journal commits instead of paying two each.  Every message is
        on stable storage when this returns; each job gets what :meth:`deliver_each` would
        have returned, or the ``OSError`` it would have raised (the other jobs go on).
        """
        batch = []
        for logins, data, quotas in jobs:
            q = quotas or {}
            users = [self.user(lg, q.get(lg)) for lg in dict.fromkeys(logins)]
            batch.append(([(u, u.path, names.INBOX) for u in users], data))
        return self._deliver_batch(batch)

    def _deliver(
        self, targets: list[tuple[MaildirUser, Path, str]], data: bytes
    ) -> dict[str, str | StoreError]:
        result = self._deliver_batch([(targets, data)])[0]
        if isinstance(result, OSError):
            raise result
        return result

    def _deliver_batch(
        self, batch: Sequence[tuple[list[tuple[MaildirUser, Path, str]], bytes]]
    ) -> list[dict[str, str | StoreError] | OSError]:
        out: list[dict[str, str | StoreError] | OSError] = []
        # (job, key, tmp path, open fd or -1, recipients under quota, data)
        staged: list[tuple[int, str, Path, int, list[tuple[MaildirUser, Path, str]], bytes]] = []
        linked: list[tuple[int, str, MaildirUser, Path, str]] = []
        done: list[tuple[MaildirUser, int, str]] = []  # (user, size, folder) now in new/
        try:
            for targets, data in batch:
                result: dict[str, str | StoreError] = {}
                out.append(result)
                ok: list[tuple[MaildirUser, Path, str]] = []
                for user, path, folder in targets:
                    try:
                        user.check_quota(len(data))
                    except QuotaExceeded as exc:
                        result[user.login] = exc
                        continue
                    ok.append((user, path, folder))
                if not ok:
                    continue
                key = new_key(len(data))
                try:
                    tmp, fd = self._write_tmp_open(ok[0][1], data, key)
                except OSError as exc:
                    out[-1] = exc
                    continue
                staged.append((len(out) - 1, key, tmp, fd, ok, data))
            # 1. the data of every message on stable storage, before any name points at it
            for n, (job, key, tmp, fd, ok, data) in enumerate(staged):
                try:
                    if self.fsync:
                        os.fsync(fd)
                except OSError as exc:
                    out[job] = exc
                finally:
                    os.close(fd)
                    staged[n] = (job, key, tmp, -1, ok, data)
            # 2. the names, 3. each new/ directory once
            for job, key, tmp, _fd, ok, data in staged:
                staged_result = out[job]
                if isinstance(staged_result, OSError):
                    continue
                for user, path, folder in ok:
                    try:
                        self._link_new(tmp, path, key, data)
                        linked.append((job, key, user, path, folder))
                    except OSError as exc:
                        log.error("event=deliver_failed user=%s errno=%s", user.login, exc.errno)
                        staged_result[user.login] = StoreError("delivery failed")
            dir_errors: dict[Path, OSError] = {}
            if self.fsync:
                for path in dict.fromkeys(path for _j, _k, _u, path, _f in linked):
                    try:
                        fsync_dir(path / "new")
                    except OSError as exc:
                        dir_errors[path] = exc
            for job, key, user, path, folder in linked:
                linked_result = out[job]
                assert not isinstance(linked_result, OSError)
                if path in dir_errors:
                    log.error("event=deliver_failed user=%s errno=%s", user.login, dir_errors[path].errno)
                    linked_result[user.login] = StoreError("delivery failed")
                else:
                    linked_result[user.login] = key
                    done.append((user, len(batch[job][1]), folder))
        finally:
            for _job, _key, tmp, fd, _ok, _data in staged:
                if fd >= 0:
                    os.close(fd)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        for user, size, folder in done:
            with contextlib.suppress(OSError):
                user.usage_add(size, 1)
            user.notify(folder)
        return out

    def _write_tmp_open(self, folder: Path, data: bytes, key: str) -> tuple[Path, int]:
        """The message in tmp/, written but not yet fsynced: (path, open fd)."""
        tmp = folder / "tmp" / key
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            fd = os.open(tmp, flags, _FILE_MODE)
        except FileNotFoundError:  # first delivery: the maildir does not exist yet
            _mkdir(self.root)
            _make_maildir(folder)
            fd = os.open(tmp, flags, _FILE_MODE)
        try:
            fsio.write_all(fd, data)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return tmp, fd

    def _write_tmp(self, folder: Path, data: bytes, key: str) -> Path:
        tmp = folder / "tmp" / key
        try:
            fsio.write_file(tmp, data, mode=_FILE_MODE, fsync=self.fsync)
        except FileNotFoundError:  # first delivery: the maildir does not exist yet
            _mkdir(self.root)
            _make_maildir(folder)
            fsio.write_file(tmp, data, mode=_FILE_MODE, fsync=self.fsync)
        return tmp

    def _link_new(self, tmp: Path, folder: Path, key: str, data: bytes) -> None:
        dest = folder / "new" / key
        try:
            os.link(tmp, dest)
        except FileNotFoundError:
            _make_maildir(folder)
            os.link(tmp, dest)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
            own = self._write_tmp(folder, data, key)
            os.rename(own, dest)

    def cleanup_tmp(self, max_age: float = TMP_MAX_AGE) -> int:
        """Remove tmp/ files older than ``max_age`` (default 36 h) for every user."""
        return sum(self.user(lg).cleanup_tmp(max_age) for lg in self.users())
