"""SMTP toward a client that stops reading: replies stay bounded, the session ends.

aiosmtpd awaits ``drain()`` after every reply, so the replies of a client that
pipelines and never reads stop at asyncio's 64 KiB high-water mark (commands are
also capped by ``smtp.max_commands``).  Empty lines are no command and have no cap:
each gets ``500``.  Once the buffer is full the command loop waits in ``drain()``,
reading stops, and the idle timeout fires - whose ``close()`` then waits for the
client to read the replies, for ever, holding the session and its per-IP slot.
"""

from __future__ import annotations

import smtplib
import socket
import time
from typing import Any

import pytest

from tests.protocol.harness import Running
from tests.protocol.test_session_counters import SMTP_ZERO, settles, smtp_books

pytestmark = pytest.mark.protocol


def _pending(r: Running) -> list[int]:
    tracker = r.server._smtp.tracker
    return r.lt.call(lambda: [s.transport.get_write_buffer_size()  # type: ignore[no-any-return]
                              for s in tracker.sessions if s.transport is not None])


def test_smtp_client_that_never_reads_is_bounded_and_released(make_running: Any) -> None:
    r: Running = make_running(smtp={"timeout": 2, "max_connections_per_ip": 2})
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", r.ports["smtp"]))
    sock.setblocking(False)
    flood = b"\r\n" * 65536
    # Flood until the server has stopped reading: sends blocked for a whole second (the
    # kernel buffers on both sides are full).  How much got through before that depends on
    # how fast the server consumed under the machine's load (256 KiB to several MiB), so
    # that is no measure; a deadline in time, not a fixed 4 s window, bounds the loop.
    sent, peak, blocked_since = 0, 0, None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # ~ 30 octets of reply per 2 sent
        try:
            sent += sock.send(flood)
            blocked_since = None
        except (BlockingIOError, OSError):
            blocked_since = blocked_since or time.monotonic()
            time.sleep(0.05)
        peak = max([peak, *_pending(r)])
        if blocked_since is not None and time.monotonic() - blocked_since > 1.0:
            break
    assert blocked_since is not None and time.monotonic() - blocked_since > 1.0, "the server kept reading"
    # replies to what was sent would be 15 times as large; what waits in the server is bounded
    assert peak <= 256 * 1024, (sent, peak)
    # the idle timeout ends the session although its replies were never read
    assert settles(lambda: smtp_books(r), SMTP_ZERO, timeout=30) == SMTP_ZERO
    with smtplib.SMTP("127.0.0.1", r.ports["smtp"], timeout=10) as s:
        t0 = time.monotonic()
        assert s.noop()[0] == 250
        assert time.monotonic() - t0 < 1.0
    sock.close()
