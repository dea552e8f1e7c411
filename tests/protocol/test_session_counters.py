"""Per-IP and per-session counters come back to zero on every exit path.

Each test ends one session in one way (QUIT, STARTTLS then QUIT, a TLS handshake that
fails or is cut, an idle timeout, a reset in the middle of DATA, a 421) and then
checks, on the server's own books and in ``/metrics``' registry, that nothing is left:
no per-IP slot, no session, no transaction in flight.  A limit of 2 connections per
address makes a leak visible at once: a third session would get 421.
"""

from __future__ import annotations

import imaplib
import smtplib
import socket
import ssl
import struct
import time
import zlib
from collections.abc import Callable
from typing import Any

import pytest

from esam_mail import metrics
from esam_mail.smtp import codes
from tests.protocol.harness import Running, client_tls

pytestmark = pytest.mark.protocol


# -- clients ------------------------------------------------------------------------------
class Wire:
    """A raw client: plain socket, optionally wrapped in TLS later."""

    def __init__(self, port: int, *, tls: bool = False) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock: Any = client_tls().wrap_socket(raw) if tls else raw
        self.buf = b""

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def reply(self) -> int:
        while True:
            line = self.line()
            if line[3:4] != b"-":
                return int(line[:3])

    def cmd(self, data: bytes) -> int:
        self.sock.sendall(data + b"\r\n")
        return self.reply()

    def starttls(self) -> None:
        assert self.cmd(b"STARTTLS") == 220
        self.sock = client_tls().wrap_socket(self.sock)

    def reset(self) -> None:
        """Close with RST (SO_LINGER 0), as a crashed client or a middlebox does."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def closed_by_server(self) -> bool:
        self.sock.settimeout(10)
        try:
            while self.sock.recv(65536):
                pass
        except (ConnectionError, ssl.SSLError):
            pass
        return True


def client_hello() -> bytes:
    """The first flight of a real TLS client, to send (part of) it by hand."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_tls().wrap_bio(incoming, outgoing)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


# -- the books ----------------------------------------------------------------------------
def smtp_books(r: Running) -> dict[str, Any]:
    tracker = r.server._smtp.tracker

    def read() -> dict[str, Any]:
        return {"per_ip": dict(tracker.per_ip), "sessions": len(tracker.sessions), "in_flight": tracker.in_flight}

    return r.lt.call(read)  # type: ignore[no-any-return]


def imap_books(r: Running) -> int:
    return r.lt.call(lambda: sum(len(listener.factory.sessions) for listener in r.server._imap))  # type: ignore[no-any-return]


SMTP_ZERO = {"per_ip": {}, "sessions": 0, "in_flight": 0}


def settles(read: Callable[[], Any], want: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = read()
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.02)


def gauges() -> dict[str, float]:
    """The live-session gauges as /metrics renders them (summed over label values)."""
    out: dict[str, float] = {}
    for line in metrics.REGISTRY.render().splitlines():
        if line.startswith(("esam_smtp_sessions", "esam_smtp_connection_slots", "esam_smtp_transactions_in_flight",
                            "esam_imap_sessions")):
            name = line.split("{")[0].split(" ")[0]
            out[name] = out.get(name, 0) + float(line.rsplit(" ", 1)[1])
    return out


def assert_smtp_clean(r: Running) -> None:
    assert settles(lambda: smtp_books(r), SMTP_ZERO) == SMTP_ZERO
    live = gauges()
    assert live["esam_smtp_sessions"] == 0 and live["esam_smtp_connection_slots"] == 0, live
    assert live["esam_smtp_transactions_in_flight"] == 0, live
    # and the address is still served, with STARTTLS, more times than the limit allows at once
    for _ in range(3):
        with smtplib.SMTP("127.0.0.1", r.ports["smtp"], timeout=10) as s:
            s.starttls(context=client_tls())
            assert s.ehlo("peer.other.test")[0] == 250
    assert settles(lambda: smtp_books(r), SMTP_ZERO) == SMTP_ZERO


@pytest.fixture
def srv(make_running: Any) -> Running:
    r: Running = make_running(smtp={"max_connections_per_ip": 2, "timeout": 2},
                              imap={"max_connections_per_ip": 2})
    r.add_mailbox("alice")
    return r


# -- SMTP exit paths ----------------------------------------------------------------------
def quit_plain(r: Running) -> None:
    w = Wire(r.ports["smtp"])
    w.reply()
    w.cmd(b"EHLO peer")
    assert w.cmd(b"QUIT") == 221


def starttls_then_quit(r: Running) -> None:
    w = Wire(r.ports["smtp"])
    w.reply()
    w.cmd(b"EHLO peer")
    w.starttls()
    assert w.cmd(b"EHLO peer") == 250
    assert w.cmd(b"QUIT") == 221


def starttls_then_reset(r: Running) -> None:
    w = Wire(r.ports["smtp"])
    w.reply()
    w.cmd(b"EHLO peer")
    w.starttls()
    w.cmd(b"EHLO peer")
    w.sock.sendall(b"MAIL FROM:<a@other.test>\r\n")
    w.reset()


def starttls_garbage_handshake(r: Running) -> None:
    w = Wire(r.ports["smtp"])
    w.reply()
    w.cmd(b"EHLO peer")
    assert w.cmd(b"STARTTLS") == 220
    w.sock.sendall(b"\x16\x03\x01\x00\x05hello this is no TLS\r\n" * 4)
    assert w.closed_by_server()


def starttls_cut_mid_handshake(r: Running) -> None:
    w = Wire(r.ports["smtp"])
    w.reply()
    w.cmd(b"EHLO peer")
    assert w.cmd(b"STARTTLS") == 220
    hello = client_hello()
    w.sock.sendall(hello[: len(hello) // 2])
    time.sleep(0.05)
    w.sock.close()


def starttls_reset_before_handshake(r: Running) -> None:
    w = Wire(r.ports["smtp"])
    w.reply()
    w.cmd(b"EHLO peer")
    assert w.cmd(b"STARTTLS") == 220
    w.reset()


def starttls_silent_until_timeout(r: Running) -> None:
    """STARTTLS, then not a byte: the idle timeout (2 s here) must end it."""
    w = Wire(r.ports["smtp"])
    w.reply()
    w.cmd(b"EHLO peer")
    assert w.cmd(b"STARTTLS") == 220
    assert w.closed_by_server()


def idle_timeout(r: Running) -> None:
    w = Wire(r.ports["smtp"])
    w.reply()
    assert w.reply() == 421
    assert w.closed_by_server()


def reset_mid_data(r: Running) -> None:
    w = Wire(r.ports["smtp"])
    w.reply()
    w.cmd(b"EHLO peer")
    assert w.cmd(b"MAIL FROM:<bob@other.test>") == 250
    assert w.cmd(b"RCPT TO:<alice@esam.test>") == 250
    assert w.cmd(b"DATA") == 354
    w.sock.sendall(b"Subject: cut\r\n\r\n" + b"x" * 70_000)
    w.reset()


def reset_mid_data_tls(r: Running) -> None:
    w = Wire(r.ports["smtp"])
    w.reply()
    w.cmd(b"EHLO peer")
    w.starttls()
    w.cmd(b"EHLO peer")
    assert w.cmd(b"MAIL FROM:<bob@other.test>") == 250
    assert w.cmd(b"RCPT TO:<alice@esam.test>") == 250
    assert w.cmd(b"DATA") == 354
    w.sock.sendall(b"Subject: cut\r\n\r\n" + b"x" * 70_000)
    w.reset()


def over_the_limit_421(r: Running) -> None:
    a, b = Wire(r.ports["smtp"]), Wire(r.ports["smtp"])
    assert a.reply() == 220 and b.reply() == 220
    c = Wire(r.ports["smtp"])
    assert c.line().decode() == codes.R421_TOO_MANY_CONN
    assert c.closed_by_server()
    a.cmd(b"QUIT")
    b.reset()


def too_many_commands_421(r: Running) -> None:
    w = Wire(r.ports["smtp"])
    w.reply()
    w.sock.sendall(b"NOOP\r\n" * 1200)
    assert w.closed_by_server()


def implicit_tls_quit(r: Running) -> None:
    w = Wire(r.ports["submissions"], tls=True)
    w.reply()
    w.cmd(b"EHLO peer")
    assert w.cmd(b"QUIT") == 221


def implicit_tls_garbage(r: Running) -> None:
    w = Wire(r.ports["submissions"])
    w.sock.sendall(b"EHLO not-tls\r\n")
    assert w.closed_by_server()


def implicit_tls_cut_mid_handshake(r: Running) -> None:
    w = Wire(r.ports["submissions"])
    hello = client_hello()
    w.sock.sendall(hello[:40])
    w.reset()


def auth_failures_then_quit(r: Running) -> None:
    w = Wire(r.ports["submissions"], tls=True)
    w.reply()
    w.cmd(b"EHLO peer")
    for _ in range(2):
        assert w.cmd(b"AUTH PLAIN AGFsaWNlAHdyb25n") == 535  # \0alice\0wrong
    assert w.cmd(b"QUIT") == 221


def submission_starttls_then_reset_mid_data(r: Running) -> None:
    w = Wire(r.ports["submission"])
    w.reply()
    w.cmd(b"EHLO peer")
    w.starttls()
    w.cmd(b"EHLO peer")
    assert w.cmd(b"AUTH PLAIN AGFsaWNlAGNvcnJlY3QgaG9yc2U=") == 235  # \0alice\0correct horse
    assert w.cmd(b"MAIL FROM:<alice@esam.test>") == 250
    assert w.cmd(b"RCPT TO:<alice@esam.test>") == 250
    assert w.cmd(b"DATA") == 354
    w.sock.sendall(b"From: alice@esam.test\r\n\r\npartial")
    w.reset()


SMTP_PATHS = [
    quit_plain, starttls_then_quit, starttls_then_reset, starttls_garbage_handshake,
    starttls_cut_mid_handshake, starttls_reset_before_handshake, starttls_silent_until_timeout,
    idle_timeout, reset_mid_data, reset_mid_data_tls, over_the_limit_421, too_many_commands_421,
    implicit_tls_quit, implicit_tls_garbage, implicit_tls_cut_mid_handshake, auth_failures_then_quit,
    submission_starttls_then_reset_mid_data,
]


@pytest.mark.parametrize("path", SMTP_PATHS, ids=lambda f: f.__name__)
def test_smtp_exit_path_leaves_no_counter_behind(srv: Running, path: Callable[[Running], None]) -> None:
    for _ in range(3):  # more than the per-IP limit of 2: a leak of one per session shows
        path(srv)
    assert_smtp_clean(srv)


def test_sequential_starttls_sessions_beyond_the_limit_are_all_served(srv: Running) -> None:
    """The reported bug: each STARTTLS session left one per-IP slot taken."""
    for listener in ("smtp", "submission"):
        for _ in range(6):
            with smtplib.SMTP("127.0.0.1", srv.ports[listener], timeout=10) as s:
                s.starttls(context=client_tls())
                code, _ = s.ehlo("peer.other.test")
                assert code == 250
    assert settles(lambda: smtp_books(srv), SMTP_ZERO) == SMTP_ZERO


# -- IMAP exit paths ----------------------------------------------------------------------
def imap_logout(r: Running) -> None:
    m = imaplib.IMAP4("127.0.0.1", r.ports["imap"], timeout=10)
    m.logout()


def imap_starttls_login_logout(r: Running) -> None:
    m = imaplib.IMAP4("127.0.0.1", r.ports["imap"], timeout=10)
    m.starttls(ssl_context=client_tls())
    m.login("alice", "correct horse")
    m.select("INBOX")
    m.logout()


def imap_starttls_cut_mid_handshake(r: Running) -> None:
    w = Wire(r.ports["imap"])
    w.line()
    w.sock.sendall(b"a STARTTLS\r\n")
    assert w.line().startswith(b"a OK")
    hello = client_hello()
    w.sock.sendall(hello[: len(hello) // 2])
    w.reset()


def imap_starttls_garbage(r: Running) -> None:
    w = Wire(r.ports["imap"])
    w.line()
    w.sock.sendall(b"a STARTTLS\r\n")
    assert w.line().startswith(b"a OK")
    w.sock.sendall(b"\x16\x03\x01\x00\x05 not tls at all\r\n" * 4)
    assert w.closed_by_server()


def imaps_garbage(r: Running) -> None:
    w = Wire(r.ports["imaps"])
    w.sock.sendall(b"a CAPABILITY\r\n")
    assert w.closed_by_server()


def imaps_login_failures_then_reset(r: Running) -> None:
    m = imaplib.IMAP4_SSL("127.0.0.1", r.ports["imaps"], ssl_context=client_tls(), timeout=10)
    with pytest.raises(imaplib.IMAP4.error):
        m.login("alice", "wrong")
    m.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    m.sock.close()


def imap_over_the_limit(r: Running) -> None:
    a = imaplib.IMAP4("127.0.0.1", r.ports["imap"], timeout=10)
    b = imaplib.IMAP4("127.0.0.1", r.ports["imap"], timeout=10)
    w = Wire(r.ports["imap"])
    assert b"BYE" in w.line()
    assert w.closed_by_server()
    a.logout()
    b.logout()


def _imaps_compressed(r: Running) -> tuple[Wire, Any, Any]:
    """An implicit-TLS session after LOGIN and COMPRESS DEFLATE (RFC 4978): (wire, out, in)."""
    w = Wire(r.ports["imaps"], tls=True)
    w.line()
    w.sock.sendall(b'a LOGIN alice "correct horse"\r\n')
    while not w.line().startswith(b"a OK"):
        pass
    w.sock.sendall(b"z COMPRESS DEFLATE\r\n")
    assert w.line() == b"z OK DEFLATE active."
    return w, zlib.compressobj(6, zlib.DEFLATED, -15), zlib.decompressobj(-15)


def imaps_compress_logout(r: Running) -> None:
    w, zout, zin = _imaps_compressed(r)
    w.sock.sendall(zout.compress(b"b LOGOUT\r\n") + zout.flush(zlib.Z_SYNC_FLUSH))
    got = b""
    while b"b OK" not in got:
        chunk = w.sock.recv(65536)
        assert chunk, got
        got += zin.decompress(chunk)
    assert got.startswith(b"* BYE Logging out.\r\n"), got
    assert w.closed_by_server()


def imaps_compress_reset_mid_command(r: Running) -> None:
    w, zout, _ = _imaps_compressed(r)
    w.sock.sendall(zout.compress(b"b APPEND INBOX {100000+}\r\n" + b"x" * 5000)
                   + zout.flush(zlib.Z_SYNC_FLUSH))
    w.reset()


IMAP_PATHS = [imap_logout, imap_starttls_login_logout, imap_starttls_cut_mid_handshake, imap_starttls_garbage,
              imaps_garbage, imaps_login_failures_then_reset, imap_over_the_limit, imaps_compress_logout,
              imaps_compress_reset_mid_command]


@pytest.mark.parametrize("path", IMAP_PATHS, ids=lambda f: f.__name__)
def test_imap_exit_path_leaves_no_session_behind(srv: Running, path: Callable[[Running], None]) -> None:
    for _ in range(3):
        path(srv)
    assert settles(lambda: imap_books(srv), 0) == 0
    assert gauges()["esam_imap_sessions"] == 0
    for _ in range(3):  # still served, more often than the per-IP limit
        m = imaplib.IMAP4("127.0.0.1", srv.ports["imap"], timeout=10)
        m.starttls(ssl_context=client_tls())
        m.logout()
    assert settles(lambda: imap_books(srv), 0) == 0
