"""An IMAP port the supervisor shares with its workers is adopted as is and accepts one
connection per wake-up (issue 20; the stalled-worker case is in tests/e2e/test_workers.py).

Twisted's port accepts up to ``numberAccepts`` connections per wake-up and grows it when
it takes them all: on a queue shared by two workers the first to wake would take a whole
burst of connecting clients and leave the other worker idle.
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

import pytest
from twisted.internet import protocol

from esam_mail import sockets
from esam_mail.imap import server
from tests.protocol.imap.conftest import _Loop

pytestmark = pytest.mark.protocol


class _Accepted(protocol.Protocol):
    count = 0

    def connectionMade(self) -> None:
        _Accepted.count += 1


def test_a_shared_port_is_adopted_and_takes_one_connection_per_wake_up() -> None:
    loop = _Loop.get()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    host, port = s.getsockname()
    factory: Any = protocol.Factory.forProtocol(_Accepted)
    factory.implicit_tls = False
    sockets.share_listening(host, port, s)
    clients: list[socket.socket] = []
    listening: Any = None
    try:
        listening = loop.call(server._reuse_port_listen, factory, host, port)
        assert os.fstat(listening.fileno()).st_ino == os.fstat(s.fileno()).st_ino  # the shared one
        listening.stopReading()  # we call doRead ourselves
        clients = [socket.create_connection((host, port), timeout=5) for _ in range(5)]
        _Accepted.count = 0
        for expected in (1, 2, 3):
            loop.call(listening.doRead)
            assert _Accepted.count == expected  # one per wake-up, not the whole burst
        listening.numberAccepts = 100  # what Port.startListening and doRead would set
        assert listening.numberAccepts == 1
    finally:
        for c in clients:
            c.close()
        if listening is not None:
            loop.run(_stop(listening))
        sockets.forget_inherited()
        s.close()


async def _stop(listening: Any) -> None:
    from twisted.internet import defer

    await defer.maybeDeferred(listening.stopListening).asFuture(asyncio.get_running_loop())


def test_a_port_of_its_own_keeps_twisteds_accept_batches() -> None:
    loop = _Loop.get()
    factory: Any = protocol.Factory.forProtocol(_Accepted)
    factory.implicit_tls = False
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    listening = loop.call(server._reuse_port_listen, factory, "127.0.0.1", port)
    try:
        assert type(listening).__name__ == "Port"
        assert listening.numberAccepts == 100
    finally:
        loop.run(_stop(listening))
