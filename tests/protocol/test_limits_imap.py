"""IMAP limits (R11/R12), each with a clear reply.

SMTP limits (message size, recipients, line length, commands per session, connections
per IP, timeouts) are tested by tests/protocol/test_smtp*.py; the IMAP literal caps
before the ``+`` by tests/protocol/imap/test_mailbox.py.  Here: the ``[imap]`` config
values reach the server (literal size, connections per IP), a command line without
end, the unauthenticated and authenticated idle timeouts, and MIME nesting depth.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from esam_mail.imap import mime
from tests.protocol.harness import Running, client_tls
from tests.rawclient import RawIMAP, open_socket

pytestmark = pytest.mark.protocol

PASSWORD = "limits-Passw0rd"


class Raw(RawIMAP):
    """The shared IMAP line client, implicit TLS by default."""

    def __init__(self, port: int, *, tls: bool = True, timeout: float = 10) -> None:
        super().__init__(open_socket(port, tls=client_tls() if tls else None, timeout=timeout), timeout=timeout)

    def cmd(self, tag: bytes, text: bytes, timeout: float = 10) -> list[bytes]:
        return self.tagged(tag, text, timeout)

    def closed(self, timeout: float = 10) -> bool:
        """True when the server closes the connection within ``timeout``."""
        return self.at_eof(timeout)


@pytest.fixture
def server(make_running: Any) -> Running:
    r: Running = make_running(imap={"max_literal_size": 4096, "max_connections_per_ip": 3})
    r.add_mailbox("alice", PASSWORD)
    return r


def login(r: Running) -> Raw:
    c = Raw(r.ports["imaps"])
    assert c.cmd(b"l", b'LOGIN alice "' + PASSWORD.encode() + b'"')[-1].startswith(b"l OK")
    return c


def test_config_literal_size_refused_before_continuation(server: Running) -> None:
    c = login(server)
    c.sock.sendall(b"a APPEND INBOX {4097}\r\n")
    assert c.line() == b"a NO [TOOBIG] Literal too large."  # no "+": the client sends nothing
    msg = b"Subject: fits\r\n\r\n" + b"x" * 3000 + b"\r\n"
    c.sock.sendall(b"b APPEND INBOX {%d}\r\n" % len(msg))
    assert c.line().startswith(b"+")
    c.sock.sendall(msg + b"\r\n")
    assert c.until(b"b")[-1].startswith(b"b OK")


def test_config_connections_per_ip(server: Running) -> None:
    held = [Raw(server.ports["imaps"]) for _ in range(3)]
    assert all(h.greeting.startswith(b"* OK") for h in held)
    extra = Raw(server.ports["imaps"])
    assert extra.greeting == b"* BYE [UNAVAILABLE] Too many connections from your address."
    assert extra.closed()
    # another address is not affected, and a slot frees up when one client leaves
    other = socket.create_connection(("127.0.0.1", server.ports["imaps"]), timeout=10,
                                     source_address=("127.0.0.2", 0))
    other = client_tls().wrap_socket(other, server_hostname="127.0.0.1")
    assert other.recv(4096).startswith(b"* OK")
    other.close()
    held.pop().sock.close()
    deadline = time.monotonic() + 10
    while True:
        again = Raw(server.ports["imaps"])
        if again.greeting.startswith(b"* OK") or time.monotonic() > deadline:
            break
        again.sock.close()
        time.sleep(0.05)
    assert again.greeting.startswith(b"* OK")


def test_endless_command_line_is_cut_off(server: Running) -> None:
    c = login(server)
    c.sock.sendall(b"a NOOP " + b"x" * (64 * 1024 + 10))  # no CRLF ever comes
    assert c.line() == b"* BYE [TOOBIG] Command line too long."
    assert c.closed()
    assert login(server).cmd(b"n", b"NOOP")[-1].startswith(b"n OK")  # the server is fine


def _nested(depth: int, kind: str) -> bytes:
    """A message nested ``depth`` levels deep in multiparts or message/rfc822 parts."""
    inner = b"Content-Type: text/plain\r\n\r\nthe innermost text\r\n"
    for level in range(depth):
        if kind == "multipart":
            b = f"b{level}".encode()
            inner = (b'Content-Type: multipart/mixed; boundary="' + b + b'"\r\n\r\n--' + b + b"\r\n"
                     + inner + b"\r\n--" + b + b"--\r\n")
        else:
            inner = b"Content-Type: message/rfc822\r\n\r\nSubject: level\r\n" + inner
    return b"From: deep@ext.test\r\nSubject: deep\r\n" + inner


def _paren_depth(data: bytes) -> int:
    depth = best = 0
    for ch in data:
        if ch == 0x28:
            depth += 1
            best = max(best, depth)
        elif ch == 0x29:
            depth -= 1
    return best


@pytest.mark.parametrize("kind", ["multipart", "rfc822"])
def test_hundred_level_mime_nesting_answers_quickly_and_truncated(server: Running, kind: str) -> None:
    data = _nested(100, kind)
    server.services.store.user("alice").deliver(data)
    c = login(server)
    c.cmd(b"s", b"SELECT INBOX")
    t0 = time.monotonic()
    out = c.cmd(b"f", b"FETCH 1 (BODYSTRUCTURE BODY ENVELOPE)")
    assert time.monotonic() - t0 < 2.0
    assert out[-1].startswith(b"f OK"), out
    structure = b"\n".join(out[:-1])
    # every level of message/rfc822 adds an envelope and a body: bounded by MAX_DEPTH, not by 100
    assert 0 < _paren_depth(structure) < 6 * mime.MAX_DEPTH, _paren_depth(structure)
    assert b"APPLICATION" in structure.upper() or kind == "rfc822"
    # deep section numbers are answered, not crashed on
    path = b".".join([b"1"] * 60)
    deep = c.cmd(b"g", b"FETCH 1 (BODY.PEEK[" + path + b"])")
    assert deep[-1].split()[1] in (b"OK", b"NO", b"BAD"), deep
    assert c.cmd(b"n", b"NOOP")[-1].startswith(b"n OK")


# -- timeouts: config minimums are 60 s, so these use the listener with its own limits ----


@pytest.fixture
def short_timeouts(tmp_path: Path) -> Iterator[tuple[int, Any]]:
    from esam_mail.imap.server import IMAPFactory, IMAPLimits, start_listener
    from esam_mail.store.maildir import MaildirStore
    from esam_mail.store.notify import LocalNotifier
    from tests.protocol.harness import loop_thread
    from tests.protocol.imap.conftest import FakeAuthenticator

    lt = loop_thread()
    store = MaildirStore(tmp_path / "mail", fsync=False)
    store.user("alice").create()
    limits = IMAPLimits(unauth_timeout=1.0, auth_timeout=2.0, allow_plaintext_auth=True)

    def start() -> Any:
        factory = IMAPFactory(store, FakeAuthenticator(), LocalNotifier(), tls_context_factory=None,
                              limits=limits)
        return start_listener(factory, "127.0.0.1", 0)

    listener = lt.call(start)
    try:
        yield listener.port, limits
    finally:
        lt.run(listener.close())


def test_unauthenticated_idle_timeout(short_timeouts: tuple[int, Any]) -> None:
    port, _ = short_timeouts
    c = Raw(port, tls=False)
    t0 = time.monotonic()
    assert c.line(timeout=10) == b"* BYE Autologout; idle for too long."
    assert 0.5 < time.monotonic() - t0 < 5
    assert c.closed()


def test_authenticated_idle_timeout_is_reset_by_commands(short_timeouts: tuple[int, Any]) -> None:
    from tests.protocol.imap.conftest import PASSWORD as FAKE_PASSWORD

    port, _ = short_timeouts
    c = Raw(port, tls=False)
    assert c.cmd(b"l", b'LOGIN alice "' + FAKE_PASSWORD.encode() + b'"')[-1].startswith(b"l OK")
    for i in range(3):  # activity keeps the session open past the timeout
        time.sleep(0.8)
        assert c.cmd(b"n%d" % i, b"NOOP")[-1].startswith(b"n%d OK" % i)
    t0 = time.monotonic()
    assert c.line(timeout=10) == b"* BYE Autologout; idle for too long."
    assert 1.5 < time.monotonic() - t0 < 6
