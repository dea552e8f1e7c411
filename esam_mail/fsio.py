"""Durable file writes: the one place that knows the tmp, fsync, rename, fsync-dir dance.

A file is on disk after a crash only if its data *and* the directory entry naming it
were flushed: ``fsync(file)`` then ``rename`` then ``fsync(directory)``
(rename(2) is atomic on POSIX file systems; the directory fsync makes the new name
durable, see fsync(2) and the ext4/XFS notes on "rename without fsync").

* :func:`write_file` -- create (by default exclusively) one file and fsync it;
* :func:`atomic_write` -- replace ``path`` with ``data`` so that a reader or a crash
  sees either the old or the new content, never a mix or a half-written file;
* :func:`atomic_file` -- the same for content that is streamed (a tar archive);
* :func:`fsync_dir` -- make a create/rename/unlink inside a directory durable.

``fsync=False`` keeps the atomicity and skips the flushes (tests, caches, the
``store.fsync = false`` setting).  Every function is blocking: callers on the
asyncio loop run them in a worker thread.  The mail store, the outbound spool, the
uidlist, the hybrid-mail batches, the DKIM keys and the backups all write through
this module; a new copy of this logic elsewhere is a review finding.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from typing import BinaryIO

__all__ = ["atomic_file", "atomic_write", "fsync_dir", "write_all", "write_file"]

StrPath = str | os.PathLike[str]


def write_all(fd: int, data: bytes | memoryview) -> None:
    """``os.write`` until every byte is written (a write may be short)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(path: StrPath) -> None:
    """fsync a directory so that a create, rename or unlink inside it survives a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(
    path: StrPath,
    data: bytes | memoryview,
    *,
    mode: int = 0o600,
    fsync: bool = True,
    exclusive: bool = True,
    sync_dir: bool = False,
) -> None:
    """Write ``data`` to a new file at ``path`` and fsync it.

    ``exclusive`` (the default) refuses an existing file (``FileExistsError``);
    otherwise an existing file is truncated.  On any failure the partial file is
    removed.  ``sync_dir`` also fsyncs the parent directory (the new *name* is then
    durable too); leave it off when the file is renamed afterwards.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, mode)
    try:
        write_all(fd, data)
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)
    if fsync and sync_dir:
        fsync_dir(os.path.dirname(os.path.abspath(path)))


def append_exact(path: StrPath, data: bytes, expect_size: int, *, fsync: bool = True) -> bool:
    """Append ``data`` to the existing file ``path`` if it is ``expect_size`` bytes long,
    durably when ``fsync`` (the name exists already: the file alone is synced).  False,
    nothing written, when the file is missing or of another length.  A failed write is
    cut back to ``expect_size``.  The caller serialises writers (a lock)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        if os.fstat(fd).st_size != expect_size:
            return False
        try:
            write_all(fd, data)
            if fsync:
                os.fsync(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, expect_size)
            raise
    finally:
        os.close(fd)
    return True


def _tmp_name(path: StrPath, tmp_dir: StrPath | None) -> str:
    head, tail = os.path.split(os.fspath(path))
    where = os.fspath(tmp_dir) if tmp_dir is not None else head
    # No leading dot: in a Maildir++ root a dotted name is a folder.
    return os.path.join(where, f"{tail}.tmp.{os.getpid()}.{secrets.token_hex(6)}")


def atomic_write(
    path: StrPath, data: bytes | memoryview, *, mode: int = 0o600, fsync: bool = True, tmp_dir: StrPath | None = None
) -> None:
    """Replace ``path`` atomically and durably: temp file, fsync, rename, fsync directory.

    The temp file lives next to ``path`` unless ``tmp_dir`` (which must be on the
    same file system) is given; it never outlives a failure.
    """
    tmp = _tmp_name(path, tmp_dir)
    write_file(tmp, data, mode=mode, fsync=fsync)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if fsync:
        fsync_dir(os.path.dirname(os.path.abspath(path)))


@contextlib.contextmanager
def atomic_file(path: StrPath, *, mode: int = 0o600, fsync: bool = True) -> Iterator[BinaryIO]:
    """A binary file to stream into; on a clean exit it atomically and durably
    replaces ``path``, on an exception it is removed and ``path`` is untouched."""
    tmp = _tmp_name(path, None)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if fsync:
        fsync_dir(os.path.dirname(os.path.abspath(path)))
