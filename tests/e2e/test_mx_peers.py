"""The MX as another operator's Postfix sees it (esam.test <-> a real Postfix at other.test).

* Postfix accepts a subscriber's message for ``bounce.test``, fails it afterwards (the
  next hop refuses it with a 5xx, as after any store-and-forward hop) and sends its own
  RFC 3464 bounce back with ``MAIL FROM:<>``: the bounce reaches the subscriber's
  INBOX, read over IMAPS.
"""

from __future__ import annotations

import email
import email.policy
import imaplib
import smtplib
import ssl
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import EsamProcess
from tests.e2e.postfix import PostfixPeer, free_port, wait_for
from tests.e2e.test_smtp_postfix import PASSWORD, _need_postfix, message

pytestmark = pytest.mark.e2e


class Peers:
    def __init__(self, make_esam: Any) -> None:
        _need_postfix()
        mx_port = free_port()
        self.postfix = PostfixPeer(
            ["carol"], esam_mx_port=mx_port,
            # bounce.test's "MX" is our own MX, which refuses to relay (554 5.7.1) only after
            # Postfix has queued the message: Postfix must bounce it, as any remote MTA does
            transports={"bounce.test": f"smtp:[127.0.0.1]:{mx_port}"},
        )
        self.esam: EsamProcess = make_esam(
            listen={"smtp": f"127.0.0.1:{mx_port}"},
            outbound={"transport": {"other.test": f"127.0.0.1:{self.postfix.port}",
                                    "bounce.test": f"127.0.0.1:{self.postfix.port}"},
                      "retry_base": 1, "retry_max": 2},
        )
        self.esam.esam("init")
        self.esam.add_mailbox("alice", PASSWORD)
        self.ctx = ssl.create_default_context(cafile=str(self.esam.cert))
        self.ctx.check_hostname = False

    def submit(self, rcpt: str, data: bytes) -> None:
        with smtplib.SMTP_SSL("127.0.0.1", self.esam.ports["submissions"], context=self.ctx, timeout=30) as s:
            s.login("alice", PASSWORD)
            s.sendmail("alice@esam.test", [rcpt], data)

    def imap_messages(self, login: str = "alice") -> list[bytes]:
        m = imaplib.IMAP4_SSL("127.0.0.1", self.esam.ports["imaps"], ssl_context=self.ctx, timeout=20)
        try:
            m.login(login, PASSWORD)
            m.select("INBOX")
            typ, data = m.uid("SEARCH", "ALL")
            assert typ == "OK"
            out = []
            for uid in data[0].split():
                _typ, parts = m.uid("FETCH", uid, "(BODY.PEEK[])")
                out.append(bytes(parts[0][1]))
            return out
        finally:
            m.logout()

    def diagnostics(self) -> str:
        return f"--- postfix maillog ---\n{self.postfix.log()}\n--- esam log ---\n{self.esam.log.read_text()}"


@pytest.fixture
def peers(make_esam: Any) -> Iterator[Peers]:
    p = Peers(make_esam)
    try:
        p.postfix.start()
        p.esam.start()
        yield p
    finally:
        p.postfix.cleanup()


def test_postfix_bounce_with_null_sender_reaches_the_inbox_over_imap(peers: Peers) -> None:
    peers.submit("gone@bounce.test", message("to be bounced", to="gone@bounce.test"))
    got = wait_for(peers.imap_messages, 60, interval=0.5)
    assert got, peers.diagnostics()
    [raw] = got
    # Postfix sent it with the null reverse-path, and we kept it as such
    assert raw.startswith(b"Return-Path: <>\r\n"), peers.diagnostics()
    assert "from=<>" in peers.postfix.log(), peers.diagnostics()
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert "MAILER-DAEMON@" in str(msg["From"]) and "alice@esam.test" in str(msg["To"])
    text = raw.decode("utf-8", "replace")
    assert "by mx.other.test (Postfix)" in text  # Postfix's own bounce, not ours
    assert "Final-Recipient: rfc822; gone@bounce.test" in text
    assert "Action: failed" in text and "Status: 5.7.1" in text
    assert "Relay access denied" in text  # what the next hop said, relayed by Postfix
    assert "Subject: to be bounced" in text


def test_fresh_install_takes_mail_for_postmaster_and_abuse(esam: EsamProcess) -> None:
    """`esam init` made the role aliases; swaks (a real client) sends to them on the MX."""
    import subprocess

    from tests.e2e.conftest import tool

    for rcpt in ("postmaster@esam.test", "abuse@esam.test", "HostMaster@esam.test"):
        res = subprocess.run(
            [tool("swaks"), "--server", f"127.0.0.1:{esam.ports['smtp']}", "--from", "<>",
             "--to", rcpt, "--header", f"Subject: to {rcpt}", "--body", "report\n"],
            capture_output=True, text=True, timeout=60,
        )
        assert res.returncode == 0, res.stdout + res.stderr
        assert "250 2.0.0 Message accepted" in res.stdout, res.stdout
    esam.esam("passwd", "operator", "--password-stdin", input=PASSWORD + "\n")
    ctx = ssl.create_default_context(cafile=str(esam.cert))
    ctx.check_hostname = False
    m = imaplib.IMAP4_SSL("127.0.0.1", esam.ports["imaps"], ssl_context=ctx, timeout=20)
    try:
        m.login("operator", PASSWORD)
        m.select("INBOX", readonly=True)
        typ, data = m.uid("SEARCH", "ALL")
        assert typ == "OK"
        subjects = []
        for uid in data[0].split():
            _typ, parts = m.uid("FETCH", uid, "(BODY.PEEK[HEADER.FIELDS (SUBJECT RETURN-PATH)])")
            subjects.append(bytes(parts[0][1]))
    finally:
        m.logout()
    # `esam passwd` above also sent the operator a "password changed" notice (issue 16)
    subjects = [h for h in subjects if b"Subject: to " in h]
    assert len(subjects) == 3
    assert all(b"Return-Path: <>" in h for h in subjects)
    assert sorted(h.split(b"Subject: ")[1].strip() for h in subjects) == [
        b"to HostMaster@esam.test", b"to abuse@esam.test", b"to postmaster@esam.test"]
