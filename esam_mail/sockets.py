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


def adopt_reuseport(reactor: Any, host: str, port: int, factory: Any, backlog: int = 1024) -> Any:
    """Listen on a fresh SO_REUSEPORT socket and hand it to a Twisted reactor
    (``adoptStreamPort`` duplicates the descriptor, so ours is closed here)."""
    with reuseport_socket(host, port) as s:
        s.listen(backlog)
        s.setblocking(False)
        return reactor.adoptStreamPort(s.fileno(), s.family, factory)
