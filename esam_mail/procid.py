"""This process's id without a system call at each use.

``os.getpid()`` is a system call (glibc stopped caching it), and a system call releases
the GIL: on the hot paths of the mailbox threads (the pool's fork check before every
hop, the dotlock's owner, the change generation) it was about one call per IMAP
command, each a chance for the GIL to change hands under load (issue 20).  The value
is refreshed in a forked child by ``os.register_at_fork``, which ``os.fork`` and
``multiprocessing`` run.
"""

from __future__ import annotations

import os

_pid = os.getpid()


def _after_fork() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)


def pid() -> int:
    """``os.getpid()``, cached for the life of the process (refreshed after a fork)."""
    return _pid
