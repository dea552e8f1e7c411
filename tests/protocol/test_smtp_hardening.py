"""SMTP hardening over raw sockets: smuggling, STARTTLS injection, PIPELINING, limits.

smtplib normalises line endings and never pipelines, so these tests write the
exact bytes themselves (``Raw``).  Every wait is a socket read with a deadline.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from esam_mail.smtp import codes
from tests.protocol.harness import Running, client_tls
from tests.rawclient import RawSMTP, open_socket

pytestmark = pytest.mark.protocol


class Raw(RawSMTP):
    """The shared byte-exact SMTP client on a plain port; ``starttls`` uses the test CA."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        super().__init__(open_socket(port, timeout=timeout), timeout=timeout)

    def starttls(self) -> None:  # type: ignore[override]
        super().starttls(client_tls())


def greet(port: int, helo: bytes = b"peer.other.test") -> Raw:
    c = Raw(port)
    assert c.reply()[0] == 220
    assert c.cmd(b"EHLO " + helo)[0] == 250
    return c


def inbox(r: Running, login: str) -> list[Path]:
    root = r.cfg.store_path / login
    return sorted((root / "new").iterdir()) + sorted((root / "cur").iterdir())


MSG_HEAD = b"From: bob@other.test\r\nTo: alice@esam.test\r\nSubject: one\r\n\r\nfirst line"
SMUGGLED = (
    b"MAIL FROM:<evil@other.test>\r\nRCPT TO:<alice@esam.test>\r\nDATA\r\n"
    b"From: evil@other.test\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n"
)


# -- SMTP smuggling (CVE-2023-51764 class) ------------------------------------------------
@pytest.mark.parametrize(
    "fake_end",
    [b"\n.\r\n", b"\r.\r\n", b"\r\n.\n", b"\n.\n", b"\r.\r", b"\r\n.\r", b"\r\n.\r\r\n", b"\n..\r\n"],
    ids=["LF.CRLF", "CR.CRLF", "CRLF.LF", "LF.LF", "CR.CR", "CRLF.CR", "CRLF.CRCRLF", "LF..CRLF"],
)
def test_bare_cr_or_lf_around_the_dot_never_ends_data(running: Running, fake_end: bytes) -> None:
    running.add_mailbox("alice")
    c = greet(running.ports["smtp"])
    assert c.cmd(b"MAIL FROM:<bob@other.test>")[0] == 250
    assert c.cmd(b"RCPT TO:<alice@esam.test>")[0] == 250
    assert c.cmd(b"DATA")[0] == 354
    c.send(MSG_HEAD + fake_end + SMUGGLED + b".\r\n")
    # exactly one reply for the one real end of data, then QUIT's: had the fake end
    # ended DATA we would read 250 (first), 250 (MAIL), 250 (RCPT), 354 (DATA) ...
    code, text = c.reply()
    assert code == 250 and text[0].startswith(b"2.0.0"), text
    assert c.cmd(b"QUIT")[0] == 221
    c.close()
    files = inbox(running, "alice")
    assert len(files) == 1, "the smuggled MAIL FROM made a second message"
    stored = files[0].read_bytes()
    assert b"Subject: one" in stored and b"smuggled body" in stored
    assert b"Return-Path: <bob@other.test>" in stored and b"evil@other.test>\r\n" not in stored.split(b"\r\n\r\n")[0]


def test_smuggled_commands_are_data_even_with_pipelining(running: Running) -> None:
    """MAIL/RCPT/DATA, the content with a bare-LF dot and a second transaction, the
    real end and QUIT, all in one write: only one transaction happens."""
    running.add_mailbox("alice")
    c = greet(running.ports["smtp"])
    c.send(
        b"MAIL FROM:<bob@other.test>\r\nRCPT TO:<alice@esam.test>\r\nDATA\r\n"
        + MSG_HEAD + b"\n.\n" + SMUGGLED + b".\r\nQUIT\r\n"
    )
    assert [c.reply()[0] for _ in range(5)] == [250, 250, 354, 250, 221]
    assert c.at_eof()
    assert len(inbox(running, "alice")) == 1


# -- STARTTLS command injection (CVE-2011-0411 class) -------------------------------------
@pytest.mark.parametrize("listener", ["smtp", "submission"])
@pytest.mark.parametrize(
    "injected", [b"RSET\r\n", b"NOOP\r\n", b"MAIL FROM:<bob@other.test>\r\n", b"EHLO injected\r\nRSET\r\n"]
)
def test_nothing_pipelined_with_starttls_runs_after_tls(running: Running, listener: str, injected: bytes) -> None:
    c = greet(running.ports[listener])
    c.send(b"STARTTLS\r\n" + injected)  # one packet
    code, text = c.reply()
    assert code == 220, text
    # The server must not have answered the injected commands in plaintext either.
    assert c.buf == b""
    c.starttls()
    # The first reply under TLS must answer *our* EHLO; an executed injected
    # command would have queued its own reply (250 OK / 250 Sender OK) first.
    code, lines = c.cmd(b"EHLO client.other.test")
    assert code == 250 and lines[0].startswith(b"mx.esam.test"), lines
    assert any(line.startswith(b"AUTH") for line in lines) == (listener == "submission")
    code, lines = c.cmd(b"NOOP")
    assert code == 250 and c.buf == b""
    # The injected MAIL (if any) is gone: RCPT needs a MAIL first.
    code, lines = c.cmd(b"RCPT TO:<alice@esam.test>")
    assert code in (503, 530), lines
    c.close()


# -- PIPELINING (RFC 2920) ------------------------------------------------------------------
def test_pipelined_transaction_gets_replies_in_order(running: Running) -> None:
    running.add_mailbox("alice")
    running.add_mailbox("bob")
    c = Raw(running.ports["smtp"])
    assert c.reply()[0] == 220
    code, lines = c.cmd(b"EHLO peer.other.test")
    assert b"PIPELINING" in lines
    c.send(
        b"MAIL FROM:<carol@other.test>\r\nRCPT TO:<alice@esam.test>\r\nRCPT TO:<nobody@esam.test>\r\n"
        b"RCPT TO:<bob@esam.test>\r\nDATA\r\n"
    )
    assert c.text() == codes.R250_SENDER_OK
    assert c.text() == codes.R250_RCPT_OK
    assert c.text().startswith(codes.R550_NO_SUCH_USER)
    assert c.text() == codes.R250_RCPT_OK
    assert c.reply()[0] == 354
    c.send(b"Subject: piped\r\n\r\nbody\r\n.\r\nRSET\r\nNOOP\r\nQUIT\r\n")
    code, text = c.reply()
    assert code == 250 and text[0].startswith(b"2.0.0 Message accepted")
    assert c.text() == codes.R250_OK
    assert c.text() == codes.R250_OK
    assert c.reply()[0] == 221
    assert len(inbox(running, "alice")) == 1 and len(inbox(running, "bob")) == 1


def test_pipelined_data_without_valid_recipient_is_refused(running: Running) -> None:
    c = greet(running.ports["smtp"])
    c.send(b"MAIL FROM:<carol@other.test>\r\nRCPT TO:<nobody@esam.test>\r\nDATA\r\n")
    assert c.reply()[0] == 250
    assert c.reply()[0] == 550
    code, text = c.reply()
    assert code == 503, text  # no 354: the following lines are not taken as data
    assert c.cmd(b"NOOP")[0] == 250


# -- limits -------------------------------------------------------------------------------
def test_command_line_too_long(running: Running) -> None:
    c = greet(running.ports["smtp"])
    code, text = c.cmd(b"NOOP " + b"x" * 600)
    assert code == 500 and text[0].startswith(b"5.5.2"), text
    code, text = c.cmd(b"MAIL FROM:<" + b"a" * 1200 + b"@other.test>")
    assert code == 500 and text[0].startswith(b"5.5.2"), text
    assert c.cmd(b"NOOP")[0] == 250  # the session goes on


def test_data_line_too_long_is_refused_after_the_end(running: Running) -> None:
    running.add_mailbox("alice")
    c = greet(running.ports["smtp"])
    assert c.cmd(b"MAIL FROM:<bob@other.test>")[0] == 250
    assert c.cmd(b"RCPT TO:<alice@esam.test>")[0] == 250
    assert c.cmd(b"DATA")[0] == 354
    c.send(b"Subject: long\r\n\r\n" + b"y" * 998 + b"\r\n" + b"z" * 5000 + b"\r\n.\r\n")
    code, text = c.reply()
    assert code == 500 and text[0].startswith(b"5.5.2") and b"too long" in text[0], text
    assert inbox(running, "alice") == []
    # a line of exactly 998 octets + CRLF (RFC 5321 4.5.3.1.6) is fine
    assert c.cmd(b"MAIL FROM:<bob@other.test>")[0] == 250
    assert c.cmd(b"RCPT TO:<alice@esam.test>")[0] == 250
    assert c.cmd(b"DATA")[0] == 354
    c.send(b"Subject: long\r\n\r\n" + b"y" * 998 + b"\r\n.\r\n")
    assert c.reply()[0] == 250
    assert len(inbox(running, "alice")) == 1


def test_too_many_recipients_pipelined(make_running) -> None:  # type: ignore[no-untyped-def]
    r = make_running(smtp={"max_recipients": 3})
    r.add_mailbox("alice")
    c = greet(r.ports["smtp"])
    c.send(b"MAIL FROM:<bob@other.test>\r\n" + b"RCPT TO:<alice@esam.test>\r\n" * 5)
    assert c.reply()[0] == 250
    got = [c.text() for _ in range(5)]
    assert got[:3] == [codes.R250_RCPT_OK] * 3
    assert all(g.startswith(codes.R452_TOO_MANY_RCPTS) for g in got[3:]), got


def test_command_count_limit_closes_with_421(make_running) -> None:  # type: ignore[no-untyped-def]
    r = make_running(smtp={"max_commands": 10})
    c = greet(r.ports["smtp"])  # EHLO is command 1
    c.send(b"NOOP\r\n" * 9 + b"HELP\r\n" + b"NOOP\r\n" * 5)
    codes_seen = [c.reply()[0] for _ in range(9)]
    assert codes_seen == [250] * 9
    assert c.text().startswith(codes.R421_TOO_MANY_COMMANDS)
    assert c.at_eof()


def test_idle_session_gets_421_then_close(make_running) -> None:  # type: ignore[no-untyped-def]
    r = make_running(smtp={"timeout": 1})
    c = greet(r.ports["smtp"])
    started = time.monotonic()
    assert c.text().startswith(codes.R421_TIMEOUT)  # blocks until the server speaks
    assert time.monotonic() - started >= 0.9
    assert c.at_eof()


def test_slow_but_steady_data_is_not_idle(make_running) -> None:  # type: ignore[no-untyped-def]
    r = make_running(smtp={"timeout": 1})
    r.add_mailbox("alice")
    c = greet(r.ports["smtp"])
    assert c.cmd(b"MAIL FROM:<bob@other.test>")[0] == 250
    assert c.cmd(b"RCPT TO:<alice@esam.test>")[0] == 250
    assert c.cmd(b"DATA")[0] == 354
    c.send(b"Subject: slow\r\n\r\n")
    end = time.monotonic() + 2.5  # longer than the timeout in total, never idle for 1 s
    while time.monotonic() < end:
        c.send(b"line\r\n")
        c.sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            c._fill()  # nothing may arrive (no 421) while we keep sending
        assert c.buf == b""
    c.sock.settimeout(10)
    c.send(b".\r\n")
    assert c.reply()[0] == 250


def test_connections_per_ip_limit(make_running) -> None:  # type: ignore[no-untyped-def]
    r = make_running(smtp={"max_connections_per_ip": 2})
    a, b = greet(r.ports["smtp"]), greet(r.ports["smtp"])
    third = Raw(r.ports["smtp"])
    assert third.text() == codes.R421_TOO_MANY_CONN
    assert third.at_eof()
    a.cmd(b"QUIT")
    assert a.at_eof()
    # the slot is freed once the server saw the close
    deadline = time.monotonic() + 10
    while True:
        c = Raw(r.ports["smtp"])
        code, _ = c.reply()
        if code == 220 or time.monotonic() > deadline:
            break
        c.close()
    assert code == 220
    b.close()
    c.close()


def test_full_mailbox_at_rcpt_is_452(running: Running) -> None:
    running.add_mailbox("alice", quota_bytes=4096)
    running.services.store.deliver_many(["alice"], b"Subject: big\r\n\r\n" + b"x" * 5000 + b"\r\n")
    c = greet(running.ports["smtp"])
    assert c.cmd(b"MAIL FROM:<bob@other.test>")[0] == 250
    c.send(b"RCPT TO:<alice@esam.test>\r\n")
    assert c.text().startswith(codes.R452_MAILBOX_FULL)


def test_rcpt_with_size_over_quota_is_452(running: Running) -> None:
    running.add_mailbox("alice", quota_bytes=4096)
    c = greet(running.ports["smtp"])
    assert c.cmd(b"MAIL FROM:<bob@other.test> SIZE=10000")[0] == 250
    c.send(b"RCPT TO:<alice@esam.test>\r\n")
    assert c.text().startswith(codes.R452_MAILBOX_FULL)


def test_message_over_remaining_quota_at_data_is_552_522(running: Running) -> None:
    running.add_mailbox("alice", quota_bytes=4096)
    c = greet(running.ports["smtp"])
    assert c.cmd(b"MAIL FROM:<carol@other.test>")[0] == 250
    assert c.cmd(b"RCPT TO:<alice@esam.test>")[0] == 250  # no SIZE: there is room for now
    assert c.cmd(b"DATA")[0] == 354
    c.send(b"Subject: big\r\n\r\n" + (b"x" * 78 + b"\r\n") * 100 + b".\r\n")
    assert c.text().startswith(codes.R552_MAILBOX_FULL)
    assert inbox(running, "alice") == []
    # a small one still fits
    assert c.cmd(b"MAIL FROM:<carol@other.test>")[0] == 250
    assert c.cmd(b"RCPT TO:<alice@esam.test>")[0] == 250
    assert c.cmd(b"DATA")[0] == 354
    c.send(b"Subject: small\r\n\r\nhi\r\n.\r\n")
    assert c.reply()[0] == 250
    assert len(inbox(running, "alice")) == 1


def test_one_full_mailbox_among_several_is_accepted_and_bounced(running: Running) -> None:
    """Some recipients already have it: 250 (a 4xx/5xx would make the client resend
    to everyone), and the sender gets an RFC 3464 DSN for the full one."""
    running.add_mailbox("alice", quota_bytes=4096)
    running.add_mailbox("bob")
    running.add_mailbox("dave")
    c = greet(running.ports["smtp"])
    assert c.cmd(b"MAIL FROM:<dave@esam.test>")[0] == 250
    assert c.cmd(b"RCPT TO:<alice@esam.test>")[0] == 250
    assert c.cmd(b"RCPT TO:<bob@esam.test>")[0] == 250
    assert c.cmd(b"DATA")[0] == 354
    c.send(b"Subject: big\r\n\r\n" + (b"x" * 78 + b"\r\n") * 100 + b".\r\n")
    assert c.reply()[0] == 250
    assert inbox(running, "alice") == [] and len(inbox(running, "bob")) == 1
    dsn = inbox(running, "dave")[0].read_bytes()
    assert b"Final-Recipient: rfc822; alice@esam.test" in dsn and b"Status: 5.2.2" in dsn
