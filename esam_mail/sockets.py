"""Listening sockets shared by worker processes (SO_REUSEPORT).

aiosmtpd's ``loop.create_server`` takes ``reuse_port=True`` itself; Twisted has
no such flag, so the IMAP and HTTP front-ends bind the socket here and let the
reactor adopt it.  The ``esam serve --workers N`` supervisor reserves its ports
the same way.
"""

from __future__ import annotations

import socket
from typing import Any


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` with SO_REUSEADDR and SO_REUSEPORT, not listening."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((host, port))
    except BaseException:
        s.close()
        raise
    return s


# Listening sockets made by the ``esam serve --workers N`` supervisor before it forks,
# by (configured host, concrete port): every worker accepts from the same queue
_inherited: dict[tuple[str, int], socket.socket] = {}


def share_listening(host: str, port: int, s: socket.socket, backlog: int = 1024) -> None:
    """Make ``s`` (bound) the one listening socket of ``host:port`` for the workers forked
    after this: one accept queue that every worker takes from when its loop is free, so a
    new connection goes to a worker with time for it.  With one SO_REUSEPORT socket per
    worker the kernel hashes each connection to a worker whatever its load, and a busy
    worker's sessions queue behind each other while the other waits (the IMAP session
    p99 was 1.5-2x the median's share, issue 20)."""
    s.listen(backlog)
    s.setblocking(False)  # the file description is shared: the workers' loops need this
    _inherited[(host, port)] = s


def inherited_listener(host: str, port: int) -> socket.socket | None:
    """The supervisor's listening socket for ``host:port``, if it made one."""
    return _inherited.get((host, port))


def forget_inherited() -> None:
    """Drop the table (the sockets stay open: the caller owns them)."""
    _inherited.clear()


def adopt_reuseport(reactor: Any, host: str, port: int, factory: Any, backlog: int = 1024) -> Any:
    """Listen on the supervisor's shared socket for ``host:port`` if there is one, else on
    a fresh SO_REUSEPORT socket, and hand it to a Twisted reactor (``adoptStreamPort``
    duplicates the descriptor, so a fresh one is closed here)."""
    shared = inherited_listener(host, port)
    if shared is not None:
        return reactor.adoptStreamPort(shared.fileno(), shared.family, factory)
    with reuseport_socket(host, port) as s:
        s.listen(backlog)
        s.setblocking(False)
        return reactor.adoptStreamPort(s.fileno(), s.family, factory)
