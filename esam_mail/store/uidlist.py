"""Dovecot-compatible ``dovecot-uidlist`` / ``dovecot-keywords`` files and the folder lock.

``dovecot-uidlist`` (version 3, as Dovecot 2.x writes it)::

    3 V1764121234 N42 G0c6f5b1e2a9d4f7e8b3c1d2e3f4a5b6c
    1 :1764121234.M12345P678Q1R0123456789abcdef.mx1,S=1234
    7 :1764121300.M5P678Q2R00aa11bb22cc33dd.mx1,S=99

Header: version ``3``, ``V`` UIDVALIDITY, ``N`` next UID, ``G`` 128-bit mailbox GUID,
and the ``R`` first-recent UID older esam versions kept here (RFC 3501 \\Recent: UIDs
from here on have not been claimed by a session yet; Dovecot keeps header fields it does
not know).  Claims now go to ``esam-recent`` beside it (see ``maildir._RecentFloor``), so
that a claim does not rewrite the file; the higher of the two counts.  Other header fields are kept as they are.  Each record is ``<uid> [ext...] :<key>``
where ``key`` is the Maildir base name (the file name before ``:2,``).  Records are in
ascending UID order.  Older ``<uid> <key>`` records (no ``:``) are accepted when reading.

New messages are *appended* as records, as Dovecot does: the header's ``N`` is then a
floor, and the next UID is past the last record (a version 3 record at or past ``N`` is
not an error).  Any other change (an expunge, a header field) rewrites
the file by rename, which folds the appended records in.  A reader that knows the file
reads only the records appended since (same inode, same header, its last record still
where it was); a trailing line without its newline is a write in progress (or torn by a
crash) and is not taken.

``dovecot-keywords``: ``<index> <keyword>`` lines; index 0 is flag letter ``a``,
1 is ``b`` ... 25 is ``z``.

Locking (``FolderLock``): writers first take ``fcntl.flock(LOCK_EX)`` on the folder
directory itself (serialises every esam process and thread; released by the kernel if
a process dies), then create the Dovecot dotlock ``dovecot-uidlist.lock`` with
its ``pid:host`` already inside (an unnamed file linked in, so a killed writer never
leaves an empty one; a Dovecot on the same store also stays out).  A dotlock is taken
over when it is older than ``stale_after`` seconds, names a dead local process, or is
still empty after a few seconds.  A new uidlist is written to a temporary file, fsynced
and renamed over ``dovecot-uidlist`` (Dovecot's own replace-by-rename), or its new
records are appended; the dotlock is then removed.  Readers never lock: the rename makes every read see a whole file.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from esam_mail import fsio, procid
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


_SERIALS = itertools.count(1)


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
    # What this object knows of the file it was read from or last written to: its header
    # line, the length through its last complete record, that record, the entry count and
    # \\Recent floor then; and the keys assigned since (see append_data).  disk_size -1:
    # no such file (a new or rebuilt list is written whole).
    disk_size: int = field(default=-1, repr=False, compare=False)
    disk_header: bytes = field(default=b"", repr=False, compare=False)
    disk_last: bytes = field(default=b"", repr=False, compare=False)
    disk_count: int = field(default=0, repr=False, compare=False)
    disk_ext: int = field(default=0, repr=False, compare=False)
    disk_first_recent: int = field(default=0, repr=False, compare=False)
    appended: list[str] = field(default_factory=list, repr=False, compare=False)
    # this object's number, and the numbers of the lists it was read on from by appended
    # records only (parse_more; the last few): it holds every record they held then, so a
    # reader that built its state on one of them needs no O(messages) check for a record
    # dropped by a rewrite (MaildirFolder._apply_delta)
    serial: int = field(default_factory=lambda: next(_SERIALS), repr=False, compare=False)
    extends: tuple[int, ...] = field(default=(), repr=False, compare=False)

    @classmethod
    def parse(cls, data: bytes) -> UidList:
        """Parse a uidlist file.  Raises ``ValueError`` if the header is unusable.

        Record-level problems (duplicates, UIDs >= next UID, bad lines) are collected in
        ``problems``; the first record for a key or UID wins.
        """
        end = data.rfind(b"\n") + 1  # a trailing line without its newline is not taken
        if end == 0:
            end = len(data)  # a header alone, written by something that left out the newline
        text = data[:end].decode("utf-8", "surrogateescape")
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
        seen_uids: set[int] = set()
        last = 0
        appendable = version == "3"  # records past the header's N: appended ones (v3 only)
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
                ul.problems.append(
                    Message("duplicate key for uids {first} and {uid}", first=ul.entries[key], uid=uid)
                )
                continue
            if uid <= last:
                ul.problems.append(Message("uid {uid} out of order", uid=uid))
            elif uid >= ul.uidnext and appendable:
                ul.uidnext = uid + 1  # an appended record (see the module docstring)
            if uid >= ul.uidnext:
                ul.problems.append(Message("uid {uid} >= next uid {uidnext}", uid=uid, uidnext=uidnext))
            last = max(last, uid)
            seen_uids.add(uid)
            ul.entries[key] = uid
            if exts:
                ul.ext[key] = exts
        ul.first_recent = max(1, min(first_recent, ul.uidnext))
        if appendable and not ul.problems:  # a version 1 file is rewritten as version 3
            ul._on_disk(data[:end])
        return ul

    def _on_disk(self, data: bytes) -> None:
        """Note that the file holds ``data`` (complete lines) and this object's state."""
        nl = data.find(b"\n")
        self.disk_header = data[: nl + 1] if nl >= 0 else data
        prev = data.rfind(b"\n", 0, len(data) - 1) + 1 if len(data) > len(self.disk_header) else len(data)
        self.disk_last = data[prev:]
        self.disk_size = len(data)
        self.disk_count = len(self.entries)
        self.disk_ext = len(self.ext)
        self.disk_first_recent = self.first_recent
        self.appended = []

    def parse_more(self, tail: bytes) -> UidList | None:
        """A copy of this list with the records appended after it (``tail``, what follows
        the file's first ``disk_size`` bytes): None if ``tail`` holds anything but whole
        records in order after the last one (the caller reads the whole file)."""
        end = tail.rfind(b"\n") + 1
        # the highest UID: the last record's, unless the records are out of order
        last = max(self.entries.values(), default=0) if self.problems \
            else next(reversed(self.entries.values()), 0)
        entries, ext = dict(self.entries), dict(self.ext)
        uidnext = self.uidnext
        for line in tail[:end].decode("utf-8", "surrogateescape").split("\n")[:-1]:
            head, colon, key = line.partition(" :")
            fields = head.split()
            if not colon or not fields or not fields[0].isdigit() or not key or "/" in key or key in entries:
                return None
            uid = int(fields[0])
            if uid <= last:
                return None
            last = uid
            uidnext = max(uidnext, uid + 1)
            entries[key] = uid
            if len(fields) > 1:
                ext[key] = " ".join(fields[1:])
        out = UidList(
            uidvalidity=self.uidvalidity,
            uidnext=uidnext,
            guid=self.guid,
            entries=entries,
            ext=ext,
            extra_header=list(self.extra_header),
            first_recent=self.first_recent,
        )
        out.disk_header = self.disk_header
        out.disk_size = self.disk_size + end
        out.disk_last = tail[tail.rfind(b"\n", 0, end - 1) + 1 : end] if end else self.disk_last
        out.disk_count = len(entries)
        out.disk_ext = len(ext)
        out.disk_first_recent = self.disk_first_recent
        out.extends = (self.serial, *self.extends[:7])
        return out

    def written(self, data: bytes, *, appended: bool) -> None:
        """Note that ``data`` was written: appended (the :meth:`append_data` records), or
        as the whole file (:meth:`render`)."""
        if not appended:
            self._on_disk(data)
            return
        self.disk_size += len(data)
        self.disk_last = data[data.rfind(b"\n", 0, len(data) - 1) + 1 :]
        self.disk_count = len(self.entries)
        self.appended = []

    def append_data(self) -> bytes | None:
        """The records to append to the file this list was read from, when the only
        change since is new messages (:meth:`assign`); None when it must be rewritten."""
        if (
            self.disk_size < 0
            or not self.appended
            or self.first_recent != self.disk_first_recent
            or len(self.entries) != self.disk_count + len(self.appended)
            or len(self.ext) != self.disk_ext
        ):
            return None
        entries = self.entries
        try:
            return "".join(f"{entries[k]} :{k}\n" for k in self.appended).encode("utf-8", "surrogateescape")
        except KeyError:
            return None

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
        self.appended.append(key)
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


def file_sig(path: str | Path) -> tuple[int, int, int] | None:
    """(inode, size, mtime_ns) of a file, None if absent."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def read_uidlist(
    folder_dir: Path,
    prev: UidList | None = None,
    prev_sig: tuple[int, int, int] | None = None,
) -> tuple[UidList | None, tuple[int, int, int] | None]:
    """Read ``dovecot-uidlist`` without locking.  Returns (None, sig) if absent/corrupt.

    With ``prev`` (the list as last read, whose file signature was ``prev_sig``), a file
    that only grew by appended records is read from where ``prev`` ended: a new list is
    made from ``prev`` and the new records (see :meth:`UidList.parse_more`)."""
    path = folder_dir / UIDLIST
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, None
    try:
        st = os.fstat(fd)
        sig = (st.st_ino, st.st_size, st.st_mtime_ns)
        if (
            prev is not None
            and prev_sig is not None
            and prev.disk_size > 0
            and prev_sig[0] == st.st_ino
            and st.st_size >= prev.disk_size
        ):
            more = _read_more(fd, prev)
            if more is not None:
                return more, sig
        data = _pread_all(fd, 0)
    finally:
        os.close(fd)
    try:
        return UidList.parse(data), sig
    except ValueError:
        log.warning("event=uidlist_corrupt folder=%s", folder_dir.name)
        return None, sig


def _pread_all(fd: int, start: int) -> bytes:
    chunks: list[bytes] = []
    pos = start
    while chunk := os.pread(fd, 1 << 20, pos):
        chunks.append(chunk)
        pos += len(chunk)
    return b"".join(chunks)


def _read_more(fd: int, prev: UidList) -> UidList | None:
    """:func:`read_uidlist`'s incremental read: the file still starts with ``prev``'s header
    and holds ``prev``'s last record where it ended (the same file, grown by appends, not
    a rewrite that got the same inode number), then the new records."""
    head = prev.disk_header
    if os.pread(fd, len(head), 0) != head:
        return None
    data = _pread_all(fd, prev.disk_size - len(prev.disk_last))
    if not data.startswith(prev.disk_last):
        return None
    if len(data) == len(prev.disk_last):
        return prev
    return prev.parse_more(data[len(prev.disk_last) :])


fsync_dir = fsio.fsync_dir  # re-exported for the store's modules


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# An empty dotlock older than this is a leftover (see FolderLock._stale).
EMPTY_DOTLOCK_GRACE = 3.0

_O_TMPFILE = getattr(os, "O_TMPFILE", 0)


def _create_with(dir_fd: int, path: Path, content: bytes) -> None:
    """Create ``path`` (in the directory open as ``dir_fd``) holding ``content``; raises
    FileExistsError if it exists.  The name never points at an empty file: the content
    is written to an unnamed file (``O_TMPFILE``) that is then linked in (open(2)'s own
    recipe), so a process killed half-way leaves nothing.  Without ``O_TMPFILE`` or ``/proc`` it is
    ``O_CREAT|O_EXCL`` and a write (the empty-file grace covers that window).
    """
    if _O_TMPFILE:
        try:
            fd = os.open(path.parent, _O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
        except OSError:  # EOPNOTSUPP/EISDIR: not supported by this file system
            fd = -1
        if fd >= 0:
            try:
                os.write(fd, content)
                # linkat(AT_SYMLINK_FOLLOW): a dir fd makes os.link use linkat, not link(2)
                os.link(f"/proc/self/fd/{fd}", path.name, dst_dir_fd=dir_fd, follow_symlinks=True)
                return
            except FileExistsError:
                raise
            except OSError:  # no /proc: the plain way below
                pass
            finally:
                os.close(fd)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, content)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise
    finally:
        os.close(fd)


LOCK_SOURCES = ".esam-locks"  # in the store root: one file per process, see lock_source
_sources: dict[tuple[int, Path], Path | None] = {}
_sources_lock = threading.Lock()


def lock_source(root: Path) -> Path | None:
    """This process's dotlock source under ``root``: ``<root>/.esam-locks/<host>.<pid>``,
    holding ``pid:host``.  A dotlock is taken as a hard link to it (then unlinked), not
    made as a new file: making a file allocates an inode, and on ext4 that cost grows
    with recent deletions (it was ~8 % of the server's CPU under a write-heavy load,
    perf, issue 20).  Made once per process, when first asked; the files of dead
    processes of this host are removed then.  None when it cannot be made (the caller
    makes each dotlock as a file)."""
    key = (procid.pid(), root)
    with _sources_lock:
        if key in _sources:
            return _sources[key]
        path: Path | None = root / LOCK_SOURCES / f"{HOST}.{procid.pid()}"
        try:
            assert path is not None
            os.makedirs(path.parent, 0o700, exist_ok=True)
            fsio.atomic_write(path, f"{procid.pid()}:{HOST}".encode(), fsync=True)
            for name in os.listdir(path.parent):
                host, _, pid_s = name.rpartition(".")
                if host == HOST and pid_s.isdigit() and not _pid_alive(int(pid_s)):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path.parent / name)
        except OSError as exc:
            log.warning("event=lock_source_unusable root=%s error=%s", root, exc.__class__.__name__)
            path = None
        _sources[key] = path
        return path


def _forget_source(root: Path) -> None:
    with _sources_lock:
        _sources[(procid.pid(), root)] = None


class FolderLock:
    """Exclusive writer lock of one folder (flock on the directory + Dovecot dotlock).

    Use as a context manager.  ``commit(data)`` replaces ``dovecot-uidlist`` with
    ``data`` (write into the lock file, fsync, rename); otherwise the dotlock is
    removed on exit.
    """

    def __init__(self, folder_dir: Path, *, fsync: bool = True, stale_after: float = 120.0,
                 store_root: Path | None = None) -> None:
        self.dir = folder_dir
        self.fsync = fsync
        self.stale_after = stale_after
        self.store_root = store_root  # where this process's dotlock source lives (lock_source)
        self._dir_fd: int | None = None
        self._held = False

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
        source = lock_source(self.store_root) if self.store_root is not None else None
        delay = 0.001
        while True:
            try:
                assert self._dir_fd is not None
                if source is None:
                    _create_with(self._dir_fd, path, f"{procid.pid()}:{HOST}".encode())
                elif not self._link_source(source):
                    source = None  # unusable: each dotlock made as a file from now on
                    continue
            except FileExistsError:
                if self._stale(path):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                    log.warning("event=stale_dotlock_removed folder=%s", self.dir.name)
                    continue
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
                continue
            self._held = True
            return

    def _link_source(self, source: Path) -> bool:
        """Take the dotlock as a link to this process's source (see :func:`lock_source`);
        False when the source cannot be linked (another file system, or removed).  Raises
        FileExistsError while the dotlock is held."""
        assert self._dir_fd is not None and self.store_root is not None
        try:
            os.utime(source)  # the dotlock's mtime is its age (stale_after)
            os.link(source, UIDLIST_LOCK, dst_dir_fd=self._dir_fd)
        except FileExistsError:
            raise
        except OSError as exc:
            log.warning("event=lock_source_failed folder=%s error=%s", self.dir.name, exc.__class__.__name__)
            _forget_source(self.store_root)
            return False
        return True

    def _stale(self, path: Path) -> bool:
        try:
            st = os.stat(path)
            with open(path, "rb") as fh:
                content = fh.read(256).decode("ascii", "replace")
        except FileNotFoundError:
            return False
        age = time.time() - st.st_mtime
        if age > self.stale_after:
            return True
        if not content:
            # Ours are never empty (_create_with); Dovecot writes its pid right after
            # creating the file: an empty one that stays so is a writer killed in between.
            return age > EMPTY_DOTLOCK_GRACE
        pid_s, _, host = content.partition(":")
        if host.strip() == HOST and pid_s.isdigit():
            pid = int(pid_s)
            # We hold the flock: a dotlock of our own pid can only be a leftover.
            return pid == procid.pid() or not _pid_alive(pid)
        return False

    def commit(self, data: bytes) -> None:
        """Atomically replace ``dovecot-uidlist`` with ``data`` (durable when fsync=True).

        Written to a temporary file, fsynced and renamed while the dotlock is held, so
        ``commit`` may be called more than once under one lock.
        """
        assert self._held and self._dir_fd is not None
        fsio.atomic_write(self.dir / UIDLIST, data, fsync=self.fsync)

    def append(self, data: bytes, expect_size: int) -> bool:
        """Append records to ``dovecot-uidlist`` if it is ``expect_size`` bytes long (the
        list the caller changed was read from exactly that file); durable when fsync=True
        (the name exists already: the file alone is synced).  False, nothing written, when
        the file is not as expected (the caller then rewrites it whole with :meth:`commit`).
        """
        assert self._held and self._dir_fd is not None
        # a file longer than expected holds a torn append left by a crash: the rewrite drops it
        return fsio.append_exact(self.dir / UIDLIST, data, expect_size, fsync=self.fsync)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._held:
            self._held = False
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
