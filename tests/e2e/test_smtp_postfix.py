"""A real Postfix plays the other operator (other.test); `esam serve` is esam.test.

* Postfix relays a message into our MX and it lands in the Maildir.
* Our queue delivers a subscriber's submitted message to Postfix; the copy Postfix
  stores carries DKIM signatures (RSA and Ed25519) that verify with dkimpy against
  the TXT records `esam dkim dns` prints, and with OpenDKIM itself (`opendkim -t`, test mode).
* Retry: Postfix is down, the message waits in our queue, Postfix comes back,
  `esam queue retry` delivers it.
* Bounce: Postfix refuses an unknown user with 550 5.1.1; the sender finds an
  RFC 3464 DSN in their INBOX over IMAPS.
* Outbound smuggling: a bare-LF "dot" in a submitted message reaches Postfix as
  data inside one message, never as a second transaction.

Postfix runs as its own instance (``postfix -c DIR``; see tests/e2e/postfix.py) and
needs root, as CI has.  Every wait polls with a deadline.
"""

from __future__ import annotations

import email
import email.policy
import imaplib
import json
import os
import re
import smtplib
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dkim
import pytest

from tests.e2e.conftest import EsamProcess, tool
from tests.e2e.postfix import POSTFIX, PostfixPeer, free_port, wait_for

pytestmark = pytest.mark.e2e

PASSWORD = "s3cret-Passw0rd"
HERE = Path(__file__).resolve().parent


def _need_postfix() -> None:
    if not os.access(POSTFIX, os.X_OK):
        pytest.fail("postfix is not installed: run `bash scripts/test.sh`, which installs it")
    if os.geteuid() != 0:
        pytest.fail("these tests start a Postfix instance, which needs root (as CI runs)")


class Pair:
    """Our server and the Postfix peer, wired to each other on loopback ports."""

    def __init__(self, make_esam: Any, *, retry_base: int = 1) -> None:
        _need_postfix()
        mx_port = free_port()
        self.postfix = PostfixPeer(["carol", "dave"], esam_mx_port=mx_port)
        self.esam: EsamProcess = make_esam(
            listen={"smtp": f"127.0.0.1:{mx_port}"},
            outbound={"transport": {"other.test": f"127.0.0.1:{self.postfix.port}"},
                      "retry_base": retry_base, "retry_max": max(retry_base, 2)},
        )
        self.esam.esam("init")
        self.esam.add_mailbox("alice", PASSWORD)

    def start(self) -> None:
        self.postfix.start()
        self.esam.start()

    def close(self) -> None:
        self.postfix.cleanup()

    def submit(self, rcpt: str, data: bytes, sender: str = "alice@esam.test") -> None:
        ctx = ssl.create_default_context(cafile=str(self.esam.cert))
        ctx.check_hostname = False
        with smtplib.SMTP_SSL("127.0.0.1", self.esam.ports["submissions"], context=ctx, timeout=30) as s:
            s.login("alice", PASSWORD)
            s.sendmail(sender, [rcpt], data)

    def queue(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = json.loads(self.esam.esam("queue", "list", "--json").stdout)
        return out

    def inbox(self, login: str = "alice") -> list[bytes]:
        root = self.esam.data / "mail" / login
        return [p.read_bytes() for d in ("new", "cur") if (root / d).is_dir() for p in sorted((root / d).iterdir())]

    def diagnostics(self) -> str:
        return f"--- postfix maillog ---\n{self.postfix.log()}\n--- esam log ---\n{self.esam.log.read_text()}"


@pytest.fixture
def pair(make_esam: Any) -> Iterator[Pair]:
    p = Pair(make_esam)
    try:
        p.start()
        yield p
    finally:
        p.close()


def message(subject: str, to: str = "carol@other.test", body: str = "Hello Carol.\r\n") -> bytes:
    return (
        f"From: Alice <alice@esam.test>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Date: Mon, 01 Jun 2026 10:00:00 +0000\r\nMessage-ID: <{subject.replace(' ', '-')}@esam.test>\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    ).encode()


def crlf(raw: bytes) -> bytes:
    """Postfix stores Maildir files with LF line ends; DKIM works on CRLF."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


# -- Postfix -> our MX ----------------------------------------------------------------------
def test_postfix_relays_into_our_mx(pair: Pair) -> None:
    msg = (b"From: Carol <carol@other.test>\r\nTo: alice@esam.test\r\nSubject: from postfix\r\n"
           b"Message-ID: <pf-1@other.test>\r\n\r\nHello Alice, via a real Postfix.\r\n")
    with smtplib.SMTP("127.0.0.1", pair.postfix.port, timeout=30) as s:
        s.sendmail("carol@other.test", ["alice@esam.test"], msg)
    got = wait_for(pair.inbox, 30)
    assert got, pair.diagnostics()
    [raw] = got
    head, _, body = raw.partition(b"\r\n\r\n")
    assert body == b"Hello Alice, via a real Postfix.\r\n"
    assert head.startswith(b"Return-Path: <carol@other.test>\r\nReceived: from mx.other.test ([127.0.0.1])")
    assert b"by mx.other.test (Postfix)" in head  # Postfix's own Received below ours
    assert b"Message-ID: <pf-1@other.test>" in head
    # we answered 250 once the copy was on disk; Postfix logs its side just after
    assert wait_for(lambda: "status=sent" in pair.postfix.log(), 30), pair.diagnostics()
    assert f"relay=127.0.0.1[127.0.0.1]:{pair.esam.ports['smtp']}" in pair.postfix.log()


def test_postfix_relay_to_unknown_local_user_bounces_at_postfix(pair: Pair) -> None:
    with smtplib.SMTP("127.0.0.1", pair.postfix.port, timeout=30) as s:
        s.sendmail("carol@other.test", ["nobody@esam.test"], b"Subject: x\r\n\r\nx\r\n")
    # our RCPT-time 550 5.1.1 makes Postfix bounce to carol, whose mailbox it holds
    dsn = wait_for(lambda: pair.postfix.messages("carol"), 30)
    assert dsn, pair.diagnostics()
    assert b"550 5.1.1" in dsn[0] and b"nobody@esam.test" in dsn[0]


# -- our queue -> Postfix --------------------------------------------------------------------
def test_submitted_mail_reaches_postfix_with_verifying_dkim(pair: Pair, tmp_path: Path) -> None:
    pair.submit("carol@other.test", message("dkim check", body="Signed once, verified at the peer.\r\n"))
    got = wait_for(lambda: pair.postfix.messages("carol"), 30)
    assert got, pair.diagnostics()
    raw = crlf(got[0])
    assert b"Signed once, verified at the peer." in raw
    assert raw.count(b"DKIM-Signature:") == 2
    records = {r["dns_name"]: r["txt"] for r in json.loads(pair.esam.esam("dkim", "dns", "--json").stdout)}

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        return records.get(name.decode().rstrip("."), "").encode()

    d = dkim.DKIM(raw)
    algorithms = []
    for i in range(2):
        assert d.verify(idx=i, dnsfunc=dnsfunc), f"signature {i} does not verify"
        algorithms.append(d.signature_fields[b"a"])
    assert sorted(algorithms) == [b"ed25519-sha256", b"rsa-sha256"]
    assert d.signature_fields[b"c"] == b"relaxed/relaxed"
    # tampering with the stored copy breaks both
    bad = raw.replace(b"Signed once", b"Signed twice")
    for i in range(2):
        with pytest.raises(dkim.ValidationError, match="body hash mismatch"):
            dkim.DKIM(bad).verify(idx=i, dnsfunc=dnsfunc)
    wait_for(lambda: pair.queue() == [], 30)
    assert pair.queue() == []


def _opendkim_results(records: dict[str, str], raw: bytes, tmp: Path) -> str:
    """Verify with OpenDKIM itself (``opendkim -t``, test mode, Debian's ``opendkim``).

    ``TestPublicKeys`` hands it our TXT records, so no DNS is needed.  Debian 12's
    ``opendkim-testmsg`` cannot be used: it exits 70 with "dkim_chunk(): Syntax error"
    on every input, even an unsigned three-line message.  Returns the
    Authentication-Results value OpenDKIM would add."""
    keys = tmp / "keys"
    keys.write_text("".join(f"{name} {txt}\n" for name, txt in records.items()))
    conf = tmp / "opendkim.conf"
    conf.write_text(f"Mode v\nTestPublicKeys {keys}\nSyslog no\nAlwaysAddARHeader yes\nAuthservID test\n")
    (tmp / "msg.eml").write_bytes(raw.replace(b"\r\n", b"\n"))
    res = subprocess.run([tool("opendkim"), "-x", str(conf), "-t", str(tmp / "msg.eml"), "-vvv"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    m = re.search(r"hname='Authentication-Results' hvalue='(.*?)'", res.stdout + res.stderr, re.S)
    assert m, res.stdout + res.stderr
    return m.group(1)


def test_opendkim_verifies_the_stored_copy(pair: Pair, tmp_path: Path) -> None:
    pair.submit("carol@other.test", message("opendkim check"))
    got = wait_for(lambda: pair.postfix.messages("carol"), 30)
    assert got, pair.diagnostics()
    records = {r["dns_name"]: r["txt"] for r in json.loads(pair.esam.esam("dkim", "dns", "--json").stdout)}
    ar = _opendkim_results(records, crlf(got[0]), tmp_path)
    assert re.search(r"dkim=pass [^;]*header\.a=rsa-sha256", ar), ar
    assert re.search(r"dkim=pass [^;]*header\.a=ed25519-sha256", ar), ar
    ar = _opendkim_results(records, crlf(got[0]).replace(b"Hello Carol", b"Hello Eve"), tmp_path)
    assert "dkim=pass" not in ar and ar.count("dkim=fail") == 2, ar


# -- retry and bounce ------------------------------------------------------------------------
def test_peer_down_then_back_queue_retry_delivers(make_esam: Any) -> None:
    p = Pair(make_esam, retry_base=3600)  # only `esam queue retry` can make it go quickly
    try:
        p.esam.start()  # Postfix not started: the peer is down
        p.submit("carol@other.test", message("while you were down"))

        def deferred() -> list[dict[str, Any]]:
            q = p.queue()
            return [e for e in q if e["attempts"] >= 1]

        q = wait_for(deferred, 30)
        assert q, p.diagnostics()
        [entry] = q
        [rcpt] = entry["recipients"]
        assert rcpt["status"] == "pending" and rcpt["reply"].startswith("4"), rcpt
        assert p.postfix.messages("carol") == []
        p.postfix.start()
        res = p.esam.esam("queue", "retry", entry["id"])
        assert f"{entry['id']}: scheduled now" in res.stdout
        got = wait_for(lambda: p.postfix.messages("carol"), 30)
        assert got, p.diagnostics()
        assert b"while you were down" in got[0]
        assert wait_for(lambda: p.queue() == [], 30)
    finally:
        p.close()


def test_peer_rejects_with_550_sender_gets_dsn_over_imap(pair: Pair) -> None:
    pair.submit("nobody@other.test", message("to nobody", to="nobody@other.test"))
    ctx = ssl.create_default_context(cafile=str(pair.esam.cert))
    ctx.check_hostname = False

    def dsn() -> bytes | None:
        m = imaplib.IMAP4_SSL("127.0.0.1", pair.esam.ports["imaps"], ssl_context=ctx, timeout=20)
        try:
            m.login("alice", PASSWORD)
            m.select("INBOX")
            typ, data = m.uid("SEARCH", "ALL")
            assert typ == "OK"
            uids = data[0].split()
            if not uids:
                return None
            _typ, parts = m.uid("FETCH", uids[0], "(BODY.PEEK[])")
            return bytes(parts[0][1])
        finally:
            m.logout()

    raw = wait_for(dsn, 30, interval=0.2)
    assert raw, pair.diagnostics()
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert "alice@esam.test" in str(msg["To"]) and "MAILER-DAEMON@" in str(msg["From"])
    text = raw.decode("utf-8", "replace")
    assert "Final-Recipient: rfc822; nobody@other.test" in text
    assert "Action: failed" in text and "Status: 5.1.1" in text
    assert "User unknown in virtual mailbox table" in text  # Postfix's own words
    assert "Subject: to nobody" in text  # the original headers come back
    assert wait_for(lambda: pair.queue() == [], 30)


def test_bare_lf_dot_in_submitted_mail_is_one_message_at_postfix(pair: Pair) -> None:
    """CVE-2023-51764 outbound: our relay normalises line ends and dot-stuffs, so a
    smuggled '\\n.\\r\\n' + MAIL FROM stays data inside the one message."""
    ctx = ssl.create_default_context(cafile=str(pair.esam.cert))
    ctx.check_hostname = False
    with smtplib.SMTP_SSL("127.0.0.1", pair.esam.ports["submissions"], context=ctx, timeout=30) as s:
        s.login("alice", PASSWORD)
        s.mail("alice@esam.test")
        s.rcpt("carol@other.test")
        # smtplib.data() would normalise the bare LF away: send DATA by hand
        assert s.docmd("DATA")[0] == 354
        s.send(message("smuggle", body="first\n.\r\nMAIL FROM:<alice@esam.test>\r\nRCPT TO:<dave@other.test>\r\n"
                       "DATA\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n") + b".\r\n")
        code, _ = s.getreply()
        assert code == 250
    got = wait_for(lambda: pair.postfix.messages("carol"), 30)
    assert got, pair.diagnostics()
    assert wait_for(lambda: pair.queue() == [], 30)
    assert len(pair.postfix.messages("carol")) == 1
    assert b"smuggled body" in got[0] and b"Subject: smuggle\n" in got[0]
    assert pair.postfix.messages("dave") == []
