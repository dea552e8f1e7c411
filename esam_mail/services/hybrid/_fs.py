"""The lock shared by the allocator, the batch store and the event log.

Durable writes go through :mod:`esam_mail.fsio`; hybrid-mail files are group
readable (``FILE_MODE``) so a print operator's account can collect the jobs.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

FILE_MODE = 0o640


@contextlib.contextmanager
def locked(lock_path: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold an fcntl (flock) lock on ``lock_path`` (created if missing) for the block.

    The lock file is never replaced or deleted, so every process locks the same inode.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
