"""A per-user change generation shared by every process of a node.

One small file per user (``<user dir>/.esam-generation``), 8 bytes, mapped shared into
every process that looks at the user's folders.  Every esam writer of the store bumps it
after its change is durable (``MaildirUser.notify``: deliveries incl. group commit,
APPEND, STORE, COPY/MOVE, EXPUNGE, folder delete/rename).  A session that took a look at
a folder remembers the value read *before* that look; while the mapped value is the same
(a memory read on the event loop: no syscall, no file I/O) nothing written by esam
changed since, and the end-of-command refresh may be skipped (see
``SelectedFolder.refresh``).

Rules:

* The counter is 64 bits and compared for equality only; it would take 2**64 bumps to
  wrap onto a remembered value.
* Bumps are serialised by ``flock`` on the file (each bump opens its own descriptor, so
  threads of one process exclude each other too): no increment is lost.
* Writers do not map the file (:func:`bump`); readers map it once per user per process,
  kept while a session uses it, at most :data:`_MAX_MAPS` in the registry.
* Only a store on a local filesystem is trusted by readers (``MaildirFolder.
  change_generation``): a mapping of a file on NFS or CephFS does not see another
  machine's writes, so sessions on such a store keep taking a real look after every
  command.  Writers there still bump, for the machine holding the disk.
* The file is created (``O_CREAT``, extended to 8 bytes) by whoever maps it first; a race
  between two creators is harmless (neither truncates below 8 bytes nor writes outside
  the lock).
* Mappings are made lazily per process and dropped in a forked child (keyed by pid), and
  re-made when the file was replaced (checked by inode at every real look, in a worker).
* A crash between a change and its bump, and writers that are not esam (someone editing
  the Maildir by hand), are not seen until the session's next real look: a session takes
  one at the end of its first command (NOOP, CHECK, IDLE included) once its last real look
  is ``REAL_LOOK_EVERY`` (5) seconds old.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import threading
from pathlib import Path

FILENAME = ".esam-generation"
SIZE = 8
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

    def value(self) -> int:
        """The current generation: a read from the mapped page (safe on the loop)."""
        return int(self._view[0])


def bump(user_dir: Path) -> None:
    """After a durable change: one more in the user's generation (blocking: a worker
    thread).  Read and written with ``pread``/``pwrite`` under ``flock`` on a fresh
    descriptor, without a mapping (a process delivering to many users maps none): on a
    local disk the file's page is the one every mapping shows; on NFS or CephFS the close
    sends the value to the server (close-to-open).  An aligned 8-byte write: a reader
    that catches it half done sees a value different from the one it remembered, or the
    old one, i.e. the bump one read later."""
    fd = os.open(user_dir / FILENAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        data = os.pread(fd, SIZE, 0)
        old = struct.unpack("=Q", data)[0] if len(data) == SIZE else 0
        os.pwrite(fd, struct.pack("=Q", (old + 1) & _MASK), 0)
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
