"""SMTP front-end over real sockets with smtplib: MX, submission 587 and 465."""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest

from esam_mail.smtp import codes
from tests.protocol.harness import Running, client_tls

MSG = (
    b"From: Bob <bob@other.test>\r\nTo: alice@esam.test\r\nSubject: hello\r\n"
    b"Message-ID: <1@other.test>\r\n\r\nHello Alice,\r\n.dot-stuffed line\r\nbye\r\n"
)


def reply(code: int, text: bytes) -> str:
    return f"{code} {text.decode()}"


def inbox_files(r: Running, login: str) -> list[Path]:
    root = r.cfg.store_path / login
    return sorted((root / "new").iterdir()) + sorted((root / "cur").iterdir())


def mx(r: Running) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", r.ports["smtp"], timeout=10)
    s.ehlo("peer.other.test")
    return s


def test_mx_ehlo_advertises_extensions_and_no_auth(running: Running) -> None:
    s = mx(running)
    for ext in ("size", "8bitmime", "smtputf8", "starttls", "pipelining", "enhancedstatuscodes"):
        assert s.has_extn(ext), ext
    assert not s.has_extn("auth")
    s.starttls(context=client_tls())
    s.ehlo("peer.other.test")
    assert not s.has_extn("auth"), "MX must not offer AUTH even under TLS"
    s.quit()


def test_mx_delivers_to_maildir_byte_identical(running: Running) -> None:
    running.add_mailbox("alice")
    s = mx(running)
    code, _ = s.mail("bob@other.test")
    assert code == 250
    code, text = s.rcpt("Alice@ESAM.test")
    assert reply(code, text) == codes.R250_RCPT_OK
    code, text = s.data(MSG)
    assert code == 250 and text.startswith(b"2.0.0")
    s.quit()
    files = inbox_files(running, "alice")
    assert len(files) == 1
    stored = files[0].read_bytes()
    assert stored.endswith(MSG.replace(b"\r\n.dot", b"\r\n.dot"))
    assert stored.startswith(b"Return-Path: <bob@other.test>\r\nReceived: from peer.other.test")
    assert oct(files[0].stat().st_mode & 0o777) in ("0o600", "0o640")


def test_unknown_recipient_gets_550_511(running: Running) -> None:
    s = mx(running)
    s.mail("bob@other.test")
    code, text = s.rcpt("nobody@esam.test")
    assert reply(code, text).startswith(codes.R550_NO_SUCH_USER)
    assert b"(session " in text
    s.quit()


@pytest.mark.parametrize(("state", "expected"), [
    ("suspended", codes.R550_MAILBOX_DISABLED),
    ("closed", codes.R550_MAILBOX_DISABLED),
    ("held", codes.R450_MAILBOX_HELD),
])
def test_disabled_mailboxes_say_so_instead_of_no_such_user(running: Running, state: str, expected: str) -> None:
    """RFC 3463 X.2.1: the address exists (and is never reissued), it just takes no mail."""
    running.add_mailbox("carol")
    running.set_state("carol", state)
    s = mx(running)
    s.mail("bob@other.test")
    code, text = s.rcpt("carol@esam.test")
    assert reply(code, text).startswith(expected)


def test_mx_is_not_an_open_relay(running: Running) -> None:
    s = mx(running)
    s.mail("bob@other.test")
    code, text = s.rcpt("victim@elsewhere.test")
    assert reply(code, text).startswith("554 5.7.1")


def test_size_is_enforced(make_running) -> None:  # type: ignore[no-untyped-def]
    r = make_running(smtp={"max_message_size": 2048})
    r.add_mailbox("alice")
    s = mx(r)
    assert s.esmtp_features["size"] == "2048"
    code, text = s.mail("bob@other.test", ["SIZE=4096"])
    assert code == 552 and text.startswith(b"5.3.4")
    s.rset()
    s.mail("bob@other.test")
    s.rcpt("alice@esam.test")
    code, text = s.data(MSG + (b"x" * 70 + b"\r\n") * 60)
    assert code == 552 and text.startswith(b"5.3.4")
    assert inbox_files(r, "alice") == []


def test_too_many_recipients(make_running) -> None:  # type: ignore[no-untyped-def]
    r = make_running(smtp={"max_recipients": 2})
    r.add_mailbox("alice")
    s = mx(r)
    s.mail("bob@other.test")
    assert s.rcpt("alice@esam.test")[0] == 250
    assert s.rcpt("alice@esam.test")[0] == 250
    code, text = s.rcpt("alice@esam.test")
    assert reply(code, text).startswith(codes.R452_TOO_MANY_RCPTS)


# -- submission -------------------------------------------------------------------------
def test_587_requires_starttls_before_auth(running: Running) -> None:
    running.add_mailbox("alice")
    s = smtplib.SMTP("127.0.0.1", running.ports["submission"], timeout=10)
    s.ehlo("client")
    assert not s.has_extn("auth")
    code, _ = s.docmd("AUTH", "PLAIN AGFsaWNlAGNvcnJlY3QgaG9yc2U=")
    assert code == 530
    code, _ = s.docmd("MAIL", "FROM:<alice@esam.test>")
    assert code == 530
    s.starttls(context=client_tls())
    s.ehlo("client")
    assert "PLAIN" in s.esmtp_features["auth"] and "LOGIN" in s.esmtp_features["auth"]
    with pytest.raises(smtplib.SMTPAuthenticationError) as info:
        s.login("alice", "wrong password")
    assert info.value.smtp_code == 535
    s.close()


def test_587_auth_then_submit_local(running: Running) -> None:
    running.add_mailbox("alice")
    running.add_mailbox("bob")
    s = smtplib.SMTP("127.0.0.1", running.ports["submission"], timeout=10)
    s.starttls(context=client_tls())
    s.login("alice", "correct horse")
    msg = b"From: alice@esam.test\r\nTo: bob@esam.test\r\nSubject: hi\r\n\r\nhi bob\r\n"
    s.sendmail("alice@esam.test", ["bob@esam.test"], msg)
    s.quit()
    stored = inbox_files(running, "bob")[0].read_bytes()
    assert stored.endswith(msg) and b"with ESMTPSA" in stored


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_465_implicit_tls_offers_and_accepts_auth(running: Running, mech: str) -> None:
    running.add_mailbox("alice")
    s = smtplib.SMTP_SSL("127.0.0.1", running.ports["submissions"], timeout=10, context=client_tls())
    s.ehlo("client")
    assert mech in s.esmtp_features["auth"]
    s.user, s.password = "alice", "correct horse"
    code, _ = s.auth(mech, getattr(s, f"auth_{mech.lower()}"), initial_response_ok=mech == "PLAIN")
    assert code == 235
    s.quit()


def test_submission_refuses_foreign_envelope_sender_and_from(running: Running) -> None:
    running.add_mailbox("alice")
    running.add_mailbox("bob")
    s = smtplib.SMTP_SSL("127.0.0.1", running.ports["submissions"], timeout=10, context=client_tls())
    s.login("alice", "correct horse")
    code, text = s.mail("bob@esam.test")
    assert reply(code, text).startswith(codes.R553_SENDER_NOT_OWNED)
    s.rset()
    s.mail("alice@esam.test")
    s.rcpt("bob@esam.test")
    code, text = s.data(b"From: bob@esam.test\r\nTo: bob@esam.test\r\n\r\nspoof\r\n")
    assert code == 553 and text.startswith(b"5.7.1")
    assert inbox_files(running, "bob") == []


def test_submission_without_auth_is_refused(running: Running) -> None:
    running.add_mailbox("alice")
    s = smtplib.SMTP_SSL("127.0.0.1", running.ports["submissions"], timeout=10, context=client_tls())
    s.ehlo("client")
    code, _ = s.mail("alice@esam.test")
    assert code == 530


def test_internal_error_is_451_without_exception_text(running: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    running.add_mailbox("alice")

    def boom(*a: object, **k: object) -> None:
        raise RuntimeError("secret internal detail /var/lib/x")

    monkeypatch.setattr(running.services.store, "deliver_each", boom)
    monkeypatch.setattr(running.services.store, "deliver_batch", boom)  # the group-commit path
    s = mx(running)
    s.mail("bob@other.test")
    s.rcpt("alice@esam.test")
    code, text = s.data(MSG)
    assert code == 451 and text.startswith(b"4.3.0")
    assert b"secret" not in text and b"RuntimeError" not in text and b"(session " in text


def test_partial_quota_failure_accepts_and_bounces_to_sender(running: Running) -> None:
    """One recipient over quota at DATA: the others get it, the sender gets a DSN."""
    running.add_mailbox("alice")
    running.add_mailbox("bob", quota_bytes=200)
    running.add_mailbox("carol")
    s = smtplib.SMTP_SSL("127.0.0.1", running.ports["submissions"], timeout=10, context=client_tls())
    s.login("carol", "correct horse")
    msg = b"From: carol@esam.test\r\nTo: alice@esam.test, bob@esam.test\r\nSubject: big\r\n\r\n" + b"y" * 400 + b"\r\n"
    s.mail("carol@esam.test")  # no SIZE= so that RCPT cannot see it coming
    assert s.rcpt("alice@esam.test")[0] == 250
    assert s.rcpt("bob@esam.test")[0] == 250
    code, _ = s.data(msg)
    assert code == 250
    s.quit()
    assert len(inbox_files(running, "alice")) == 1
    assert inbox_files(running, "bob") == []
    dsn = inbox_files(running, "carol")
    assert len(dsn) == 1
    text = dsn[0].read_bytes()
    assert b"multipart/report" in text and b"Final-Recipient: rfc822; bob@esam.test" in text
    assert b"Status: 5.2.2" in text


def test_resumed_mailbox_receives_at_once(running: Running) -> None:
    """The RCPT cache keeps only active mailboxes: resuming takes effect immediately."""
    running.add_mailbox("dave")
    running.set_state("dave", "suspended")
    s = mx(running)
    s.mail("bob@other.test")
    assert s.rcpt("dave@esam.test")[0] == 550
    s.rset()
    running.set_state("dave", "active")
    s.mail("bob@other.test")
    assert s.rcpt("dave@esam.test")[0] == 250
    s.quit()
