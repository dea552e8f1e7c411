"""A client that stops reading gets no more than a bounded backlog, then is dropped.

The client's socket has a small receive buffer and is never read after a point;
the server's transport buffer for it is measured on the server (the Twisted
transport under TLS), while other sessions make output for it: pushes to an IDLE
session (flag changes by another session), a FETCH of big bodies, pipelined
commands.  Without flow control each of these grows the buffer with the output.
"""

from __future__ import annotations

import dataclasses
import socket
import time
from typing import Any

import pytest

from tests.protocol.imap.conftest import PASSWORD, Env, msg

pytestmark = pytest.mark.protocol

BOUND = 1024 * 1024  # what one non-reading session may hold on the server
KEYWORD = "$" + "k" * 250  # long flags: each pushed FETCH line is ~ 270 octets


def _set_limits(env: Env, **kw: Any) -> None:
    def go() -> None:
        for f in env.factories:
            f.limits = dataclasses.replace(f.limits, **kw)

    env.loop.call(go)


def _stuck_client(env: Env) -> socket.socket:
    """Implicit TLS, logged in, INBOX selected; a 4 KiB receive buffer."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.settimeout(10)
    raw.connect(("127.0.0.1", env.tls_port))
    sock = env.client_ctx().wrap_socket(raw, server_hostname="127.0.0.1")
    buf = b""

    def until(marker: bytes) -> None:
        nonlocal buf
        while marker not in buf:
            chunk = sock.recv(65536)
            assert chunk, buf
            buf += chunk
        buf = buf[buf.index(marker) + len(marker):]

    until(b"\r\n")
    sock.sendall(b'L LOGIN alice "' + PASSWORD.encode() + b'"\r\n')
    until(b"L OK")
    sock.sendall(b"S SELECT INBOX\r\n")
    until(b"S OK")
    return sock


def _sessions(env: Env) -> list[Any]:
    return env.loop.call(lambda: [s for f in env.factories for s in f.sessions])  # type: ignore[no-any-return]


def _pending(env: Env, session: Any) -> int:
    """Octets the server holds for ``session`` in its TCP transport."""
    def read() -> int:
        t = session.transport
        if t is None:
            return 0
        t = getattr(t, "inner", t)  # COMPRESS
        tcp = getattr(t, "transport", t)  # TLSMemoryBIOProtocol -> tcp.Server
        return len(tcp.dataBuffer) - tcp.offset + tcp._tempDataLen  # type: ignore[no-any-return]

    return env.loop.call(read)  # type: ignore[no-any-return]


def _alice_sessions(env: Env) -> list[Any]:
    return [s for s in _sessions(env) if s.principal is not None and s.principal.login == "alice"]


def _fill(env: Env, n: int, body: str = "x\r\n") -> None:
    for i in range(n):
        env.deliver(msg(f"m{i}", body))


def test_idle_pushes_to_a_client_that_does_not_read_stay_bounded(env: Env) -> None:
    _fill(env, 1000)
    stuck = _stuck_client(env)
    stuck.sendall(b"I IDLE\r\n")  # and never read again
    time.sleep(0.3)
    idle = [s for s in _alice_sessions(env) if s._idle_tag is not None]
    assert len(idle) == 1
    other = env.login()
    other.select("INBOX")
    peak = 0
    for i in range(40):  # 1000 FETCH lines pushed to the IDLE session per STORE: ~11 MB
        other.store("1:*", "+FLAGS.SILENT" if i % 2 == 0 else "-FLAGS.SILENT", KEYWORD)
        peak = max(peak, _pending(env, idle[0]))
    assert peak < BOUND, peak
    # the other session keeps normal latency meanwhile
    t0 = time.monotonic()
    other.noop()
    assert time.monotonic() - t0 < 1.0
    stuck.close()


def test_a_stalled_reader_is_dropped_and_its_slot_released(env: Env) -> None:
    _set_limits(env, output_stall_timeout=1.0)
    _fill(env, 1000)
    stuck = _stuck_client(env)
    stuck.sendall(b"I IDLE\r\n")
    time.sleep(0.3)
    other = env.login()
    other.select("INBOX")
    # Flag changes until the IDLE session is dropped (~ 270 KB of FETCH lines each).
    # A fixed count flaked in CI: the IDLE session sends the diff of its view, one
    # refresh at a time, so toggles made while a refresh runs cancel out; an even
    # number of them may leave nothing to send, and a client that is sent nothing
    # is not stalled.
    deadline = time.monotonic() + 20
    i = 0
    while len(_alice_sessions(env)) > 1 and time.monotonic() < deadline:
        other.store("1:*", "+FLAGS.SILENT" if i % 2 == 0 else "-FLAGS.SILENT", KEYWORD)
        i += 1
    assert len(_alice_sessions(env)) == 1  # only `other` is left
    assert other.noop()[0] == "OK"
    stuck.close()


def test_big_fetch_to_a_client_that_does_not_read_stays_bounded(env: Env) -> None:
    body = ("y" * 998 + "\r\n") * 3000  # 3 MB each
    _fill(env, 3, body)
    stuck = _stuck_client(env)
    stuck.sendall(b"F FETCH 1:* BODY.PEEK[]\r\n")
    time.sleep(0.5)
    (session,) = _alice_sessions(env)
    peak = 0
    for _ in range(20):
        peak = max(peak, _pending(env, session))
        time.sleep(0.05)
    assert peak < BOUND, peak
    stuck.close()


def test_pipelined_commands_without_reading_stay_bounded(env: Env) -> None:
    _fill(env, 2000)  # SEARCH ALL answers ~10 KB
    stuck = _stuck_client(env)
    stuck.setblocking(False)
    sent = 0
    lines = b"s SEARCH ALL\r\n" * 200
    deadline = time.monotonic() + 5
    while sent < 2000 * len(b"s SEARCH ALL\r\n") and time.monotonic() < deadline:
        try:
            sent += stuck.send(lines)
        except (BlockingIOError, OSError):
            time.sleep(0.05)
    time.sleep(1.0)
    (session,) = _alice_sessions(env)
    assert _pending(env, session) < BOUND
    stuck.close()


def test_pipelined_commands_of_a_closed_connection_are_not_run(env: Env, caplog) -> None:
    """Commands still waiting in the input buffer when the connection is lost are dropped,
    not executed against a session that has no mailbox any more (each such run was a
    SERVERBUG log line and wasted work)."""
    _fill(env, 300)
    sock = _stuck_client(env)
    caplog.set_level("INFO", logger="esam_mail.imap.server")
    sock.sendall(b"s SEARCH ALL\r\n" * 300)
    sock.close()
    deadline = time.monotonic() + 10
    while _alice_sessions(env) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert not _alice_sessions(env)
    bugs = [r for r in caplog.records if "server_bug" in r.getMessage()]
    assert bugs == [], f"{len(bugs)} commands ran after the connection was lost"
