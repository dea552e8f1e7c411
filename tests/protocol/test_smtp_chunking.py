"""CHUNKING / BDAT (RFC 3030) on the MX and submission, and NUL bytes, over raw sockets.

BDAT chunks are raw octets: no dot-stuffing and no end marker, so the stored message is
exactly the concatenation of the chunks.  Every refused chunk is still read, so the
command that follows it is understood (tested by pipelining the next command).
"""

from __future__ import annotations

import base64
import socket
import time

import pytest

from esam_mail.smtp import codes
from tests.protocol.harness import Running, client_tls

pytestmark = pytest.mark.protocol

HEAD = b"From: bob@other.test\r\nTo: alice@esam.test\r\nSubject: chunked\r\n\r\n"


class Raw:
    def __init__(self, port: int, tls: bool = False) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = client_tls().wrap_socket(sock) if tls else sock
        self.buf = b""
        assert self.reply()[0] == 220

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def reply(self) -> tuple[int, str]:
        lines = []
        while True:
            line = self.line()
            lines.append(line[4:].decode())
            if line[3:4] != b"-":
                return int(line[:3]), lines[-1] if len(lines) == 1 else "\n".join(lines)

    def text(self) -> str:
        code, text = self.reply()
        return f"{code} {text}"

    def cmd(self, line: bytes) -> str:
        self.send(line + b"\r\n")
        return self.text()

    def bdat(self, data: bytes, last: bool = False) -> str:
        self.send(b"BDAT %d%s\r\n" % (len(data), b" LAST" if last else b"") + data)
        return self.text()

    def at_eof(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionError:
            return True


def stored(r: Running, login: str) -> list[bytes]:
    root = r.cfg.store_path / login
    return [p.read_bytes() for d in ("new", "cur") for p in sorted((root / d).iterdir())]


def mx(r: Running) -> Raw:
    c = Raw(r.ports["smtp"])
    c.cmd(b"EHLO peer.other.test")
    return c


def envelope(c: Raw, sender: bytes = b"bob@other.test", rcpt: bytes = b"alice@esam.test") -> None:
    assert c.cmd(b"MAIL FROM:<" + sender + b">").startswith("250")
    assert c.cmd(b"RCPT TO:<" + rcpt + b">").startswith("250")


def test_chunking_is_advertised_on_every_listener(running: Running) -> None:
    c = Raw(running.ports["smtp"])
    assert "CHUNKING" in c.cmd(b"EHLO peer").split("\n")
    c = Raw(running.ports["submissions"], tls=True)
    assert "CHUNKING" in c.cmd(b"EHLO peer").split("\n")


def test_chunks_are_stored_byte_for_byte(running: Running) -> None:
    running.add_mailbox("alice")
    c = mx(running)
    envelope(c)
    body = b"line one\r\n.\r\n..two dots stay\r\nlast line\r\n"  # no stuffing, no end marker
    assert c.bdat(HEAD) == f"250 2.0.0 {len(HEAD)} octets received"
    assert c.bdat(body[:7]).startswith("250 2.0.0")
    got = c.bdat(body[7:], last=True)
    assert got.startswith("250 2.0.0 Message accepted"), got
    assert c.cmd(b"QUIT").startswith("221")
    (msg,) = stored(running, "alice")
    assert msg.endswith(HEAD + body) and msg.startswith(b"Return-Path: <bob@other.test>\r\nReceived: ")


def test_bdat_0_last_ends_the_message(running: Running) -> None:
    running.add_mailbox("alice")
    c = mx(running)
    envelope(c)
    assert c.bdat(HEAD + b"whole body\r\n").startswith("250")
    assert c.bdat(b"", last=True).startswith("250 2.0.0 Message accepted")
    assert stored(running, "alice")[0].endswith(HEAD + b"whole body\r\n")


def test_a_whole_transaction_pipelined_in_one_write(running: Running) -> None:
    running.add_mailbox("alice")
    c = mx(running)
    msg = HEAD + b"pipelined\r\n"
    c.send(b"MAIL FROM:<bob@other.test>\r\nRCPT TO:<alice@esam.test>\r\nBDAT %d LAST\r\n%sNOOP\r\n"
           % (len(msg), msg))
    assert c.text() == codes.R250_SENDER_OK
    assert c.text() == codes.R250_RCPT_OK
    assert c.text().startswith("250 2.0.0 Message accepted")
    assert c.text().startswith("250")  # NOOP: the chunk did not eat the next command
    assert stored(running, "alice")[0].endswith(msg)


def test_two_transactions_in_one_session(running: Running) -> None:
    running.add_mailbox("alice")
    c = mx(running)
    for i in range(2):
        envelope(c)
        assert c.bdat(HEAD + b"n%d\r\n" % i, last=True).startswith("250 2.0.0 Message accepted")
    assert len(stored(running, "alice")) == 2


@pytest.mark.parametrize(("setup", "expected"), [
    (b"", codes.R503_BDAT_NEED_MAIL),
    (b"MAIL FROM:<bob@other.test>\r\n", codes.R554_NO_VALID_RCPT),
    (b"MAIL FROM:<bob@other.test>\r\nRCPT TO:<nobody@esam.test>\r\n", codes.R554_NO_VALID_RCPT),
])
def test_refused_chunks_are_read_and_the_session_stays_in_step(running: Running, setup: bytes, expected: str) -> None:
    running.add_mailbox("alice")
    c = mx(running)
    for line in setup.splitlines():
        c.cmd(line)
    # the chunk holds something that would be a command if we lost count
    chunk = b"RSET\r\nMAIL FROM:<evil@other.test>\r\n"
    c.send(b"BDAT %d LAST\r\n%sNOOP\r\n" % (len(chunk), chunk))
    assert c.text().startswith(expected)
    assert c.text().startswith("250 2.0.0 OK")  # the NOOP, not the smuggled lines
    envelope(c)  # and a clean transaction works afterwards
    assert c.bdat(HEAD, last=True).startswith("250 2.0.0 Message accepted")
    assert len(stored(running, "alice")) == 1


def test_size_limit_refuses_the_chunk_and_the_rest_of_the_transaction(make_running) -> None:  # type: ignore[no-untyped-def]
    r = make_running(smtp={"max_message_size": 2048})
    r.add_mailbox("alice")
    c = mx(r)
    envelope(c)
    assert c.bdat(b"a" * 1500).startswith("250")
    assert c.bdat(b"b" * 1000).startswith(codes.R552_TOO_BIG)
    assert c.bdat(b"c" * 10).startswith(codes.R552_TOO_BIG)
    assert c.bdat(b"", last=True).startswith(codes.R552_TOO_BIG)
    assert stored(r, "alice") == []
    envelope(c)  # a new transaction starts clean
    assert c.bdat(HEAD + b"small\r\n", last=True).startswith("250 2.0.0 Message accepted")
    assert len(stored(r, "alice")) == 1


def test_data_after_bdat_is_refused_and_rset_recovers(running: Running) -> None:
    running.add_mailbox("alice")
    c = mx(running)
    envelope(c)
    assert c.bdat(HEAD).startswith("250")
    assert c.cmd(b"DATA").startswith(codes.R503_DATA_AFTER_BDAT)
    assert c.cmd(b"RSET").startswith("250")
    envelope(c)
    assert c.cmd(b"DATA").startswith("354")  # DATA alone is still fine


@pytest.mark.parametrize("arg", [b"BDAT", b"BDAT x", b"BDAT 10 LAST extra", b"BDAT -1", b"BDAT 1234567890123456"])
def test_unparsable_bdat_gets_501_and_close(running: Running, arg: bytes) -> None:
    c = mx(running)
    assert c.cmd(arg).startswith(codes.R501_BDAT_SYNTAX)
    assert c.at_eof()


def test_submission_bdat_needs_auth_then_delivers(running: Running) -> None:
    running.add_mailbox("alice")
    c = Raw(running.ports["submissions"], tls=True)
    c.cmd(b"EHLO client")
    c.send(b"BDAT 5 LAST\r\nhello")
    assert c.text().startswith(codes.R530_AUTH_REQUIRED)
    blob = base64.b64encode(b"\0alice\0correct horse")
    assert c.cmd(b"AUTH PLAIN " + blob).startswith("235")
    envelope(c, sender=b"alice@esam.test")
    msg = b"From: alice@esam.test\r\nTo: alice@esam.test\r\nSubject: self\r\n\r\nhi\r\n"
    assert c.bdat(msg[:20]).startswith("250")
    assert c.bdat(msg[20:], last=True).startswith("250 2.0.0 Message accepted")
    assert stored(running, "alice")[0].endswith(msg)


def test_reset_in_the_middle_of_a_chunk_leaves_nothing(running: Running) -> None:
    running.add_mailbox("alice")
    c = mx(running)
    envelope(c)
    c.send(b"BDAT 100000 LAST\r\n" + b"x" * 5000)
    c.sock.close()
    tracker = running.server._smtp.tracker
    deadline = time.monotonic() + 10
    while running.lt.call(lambda: dict(tracker.per_ip)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert running.lt.call(lambda: (dict(tracker.per_ip), len(tracker.sessions))) == ({}, 0)
    assert stored(running, "alice") == []


# -- NUL bytes ------------------------------------------------------------------------------
def test_nul_in_data_is_refused_with_5_6_0(running: Running) -> None:
    running.add_mailbox("alice")
    c = mx(running)
    envelope(c)
    assert c.cmd(b"DATA").startswith("354")
    c.send(HEAD + b"bad \x00 byte\r\n.\r\n")
    assert c.text().startswith(codes.R554_NUL_BYTES)
    assert stored(running, "alice") == []


def test_nul_in_bdat_is_refused_with_5_6_0(running: Running) -> None:
    running.add_mailbox("alice")
    c = mx(running)
    envelope(c)
    assert c.bdat(HEAD + b"bad \x00 byte\r\n", last=True).startswith(codes.R554_NUL_BYTES)
    assert stored(running, "alice") == []


def test_a_stored_nul_is_served_over_imap_as_0x80_with_the_same_size(running: Running) -> None:
    """IMAP out: a message that reached the store another way (an import) keeps its size,
    and no NUL goes on the wire (RFC 3501 4.3), as Dovecot does."""
    import imaplib

    running.add_mailbox("alice")
    raw = b"From: bob@other.test\r\nSubject: nul \x00 here\r\n\r\nbody \x00\x00 end\r\n"
    running.services.store.deliver_each(["alice"], raw)
    m = imaplib.IMAP4("127.0.0.1", running.ports["imap"], timeout=10)
    m.starttls(ssl_context=client_tls())
    m.login("alice", "correct horse")
    m.select("INBOX", readonly=True)
    typ, data = m.fetch("1", "(RFC822.SIZE BODY.PEEK[] BODY.PEEK[TEXT]<5.4> ENVELOPE)")
    assert typ == "OK"
    wire = b"".join(part if isinstance(part, bytes) else b"".join(part) for part in data)
    assert b"\x00" not in wire
    assert b"RFC822.SIZE %d" % len(raw) in wire
    assert raw.replace(b"\x00", b"\x80") in wire
    assert b"\x80\x80 e" in wire  # the partial body literal, same offsets
    m.logout()
