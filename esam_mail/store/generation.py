"""A per-user change generation shared by every process of a node, with a slot per folder.

One small file per user (``<user dir>/.esam-generation``), :data:`SLOTS` counters of 8
bytes, mapped shared into every process that looks at the user's folders.  Slot 0 counts
every change of the user's store; slot :func:`slot_of` (a hash of the folder's name)
counts the changes of the folders that hash there.  Every esam writer of the store bumps
both after its change is durable (``MaildirUser.notify``: deliveries incl. group commit,
APPEND, STORE, COPY/MOVE, EXPUNGE, folder delete/rename, the folders it changed).  A
session that took a look at a folder remembers its folder's slot as read *before* that
look; while the mapped value is the same (a memory read on the event loop: no syscall,
no file I/O) nothing written by esam changed that folder since, and the end-of-command
refresh may be skipped (see ``SelectedFolder.refresh``).  A change to another folder of
the same user (an APPEND to Sent, a COPY to Archive) leaves the slot alone: with one
counter per user it made every session of the user look again (issue 20).  Two folders
that share a slot only cost each other's sessions a look.

Rules:

* The counters are 64 bits and compared for equality only; it would take 2**64 bumps to
  wrap onto a remembered value.
* Bumps are serialised by ``flock`` on the file (each bump opens its own descriptor, so
  threads of one process exclude each other too): no increment is lost.
* Writers do not map the file (:func:`bump`); readers map it once per user per process,
  kept while a session uses it, at most :data:`_MAX_MAPS` in the registry.
* Only a store on a local filesystem is trusted by readers (``MaildirFolder.
  change_generation``): a mapping of a file on NFS or CephFS does not see another
  machine's writes, so sessions on such a store keep taking a real look after every
  command.  Writers there still bump, for the machine holding the disk.
* The file is created (``O_CREAT``, extended to :data:`SIZE` bytes) by whoever maps it
  first; a race between two creators is harmless (neither truncates below the size nor
  writes outside the lock).  A file of the first layout (8 bytes: slot 0 alone) is
  extended the same way; its folder slots start at 0.
* Mappings are made lazily per process and dropped in a forked child (keyed by pid), and
  re-made when the file was replaced (checked by inode at every real look, in a worker).
* A crash between a change and its bump, and writers that are not esam (someone editing
  the Maildir by hand, or an esam of the first layout during an upgrade, which bumps slot
  0 alone), are not seen until the session's next real look: a session takes one at the
  end of its first command (NOOP, CHECK, IDLE included) once its last real look is
  ``REAL_LOOK_EVERY`` (5) seconds old.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import mmap
import os
import struct
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

FILENAME = ".esam-generation"
SLOTS = 64  # slot 0: the user; 1..63: folders by hash (one 4 KiB page holds them all)
SIZE = 8 * SLOTS
_MAX_MAPS = 4096  # mappings kept in the registry (sessions hold theirs)
_MASK = 0xFFFF_FFFF_FFFF_FFFF

_lock = threading.Lock()
_maps: dict[str, Generation] = {}


class Generation:
    """One mapped generation file (use :func:`of`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if os.fstat(fd).st_size < SIZE:
                os.ftruncate(fd, SIZE)  # never shrinks: a racing creator's value stays
            self._mm = mmap.mmap(fd, SIZE, mmap.MAP_SHARED, mmap.PROT_READ)  # read-only
            self.inode = os.fstat(fd).st_ino
        finally:
            os.close(fd)
        self._view = memoryview(self._mm).cast("Q")

    def value(self, slot: int = 0) -> int:
        """The current value of ``slot`` (0: the user's): a read from the mapped page
        (safe on the loop)."""
        return int(self._view[slot])

    def reader(self, folder: str) -> Callable[[], int]:
        """The reader of ``folder``'s slot (a memory read, safe on the loop)."""
        return functools.partial(self.value, slot_of(folder))


def slot_of(folder: str) -> int:
    """``folder``'s slot (1..SLOTS-1), from a stable hash of its canonical name (the
    same in every process, unlike ``hash()``)."""
    return 1 + zlib.crc32(folder.encode("utf-8", "surrogatepass")) % (SLOTS - 1)


class Held:
    """The generation file under this thread's ``flock`` (see :func:`held`)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._inode: int | None = None

    @property
    def inode(self) -> int:
        """The held file's inode (what a reader's mapping is checked against)."""
        if self._inode is None:
            self._inode = os.fstat(self.fd).st_ino
        return self._inode

    def bump(self, folders: Iterable[str] = (),
             before_write: Callable[[Held, tuple[int, ...]], None] | None = None) -> tuple[int, ...]:
        """One more in the user's slot and in each of ``folders``' slots; ``before_write``
        (given the values before) runs first, still under the lock: a folder's change
        record is on disk before any reader sees the slot move
        (:mod:`esam_mail.store.changelog`)."""
        data = os.pread(self.fd, SIZE, 0)
        before = struct.unpack(f"={SLOTS}Q", data.ljust(SIZE, b"\0")[:SIZE])
        values = list(before)
        for slot in {0, *map(slot_of, folders)}:
            values[slot] = (values[slot] + 1) & _MASK
        if before_write is not None:
            before_write(self, before)
        os.pwrite(self.fd, struct.pack(f"={SLOTS}Q", *values), 0)
        return before


@contextlib.contextmanager
def held(user_dir: Path) -> Iterator[Held | None]:
    """The user's generation file locked (``flock`` on a fresh descriptor: threads of one
    process exclude each other too) for a change and its bump (blocking: a worker
    thread); None when it cannot be opened or locked (the change goes ahead, unlogged,
    and its bump fails as :func:`bump` would)."""
    fd: int | None = None
    try:
        fd = os.open(user_dir / FILENAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:
        if fd is not None:
            os.close(fd)
            fd = None
    try:
        yield None if fd is None else Held(fd)
    finally:
        if fd is not None:
            os.close(fd)  # releases the flock


def bump(user_dir: Path, folders: Iterable[str] = (),
         before_write: Callable[[Held, tuple[int, ...]], None] | None = None) -> tuple[int, ...]:
    """After a durable change: one more in the user's slot and in each of ``folders``'
    slots (blocking: a worker thread).  Read and written with one ``pread`` and one
    ``pwrite`` under ``flock`` on a fresh descriptor, without a mapping (a process
    delivering to many users maps none): on a local disk the file's page is the one every
    mapping shows; on NFS or CephFS the close sends the values to the server
    (close-to-open).  Each slot is an aligned 8-byte word: a reader that catches the
    write half done sees a value different from the one it remembered, or the old one,
    i.e. the bump one read later.  Returns every slot's value *before* this bump (a writer
    whose folder slot was still what it read before its change knows that no other esam
    writer finished a change of that folder in between)."""
    fd = os.open(user_dir / FILENAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return Held(fd).bump(folders, before_write)
    finally:
        os.close(fd)  # releases the flock


def _after_fork() -> None:
    """In a forked child: a fresh lock (the parent's may have been held by a thread that
    does not exist here) and no mappings (made again lazily)."""
    global _lock
    _lock = threading.Lock()
    _maps.clear()


os.register_at_fork(after_in_child=_after_fork)


def of(user_dir: Path, *, check: bool = False) -> Generation:
    """The mapping for a user's directory (blocking: a worker thread, never the loop).
    ``check``: make sure the mapped file is still the one on disk (one ``stat``)."""
    key = str(user_dir / FILENAME)  # a forked child's registry was emptied by _after_fork
    with _lock:
        gen = _maps.get(key)
    if gen is not None and check:
        try:
            if os.stat(key).st_ino != gen.inode:
                gen = None
        except FileNotFoundError:
            gen = None
    if gen is None:
        gen = Generation(Path(key))
        with _lock:
            if len(_maps) >= _MAX_MAPS:  # unmapped once no session holds it
                del _maps[next(iter(_maps))]
            _maps[key] = gen
    return gen
