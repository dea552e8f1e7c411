"""The MX as other operators see it: null reverse-path, disabled mailboxes, NUL bytes.

Every test talks to a real in-process server over a socket with smtplib (which sends
``MAIL FROM:<>`` for an empty sender) and asserts on the exact reply.
"""

from __future__ import annotations

import logging
import smtplib

import pytest

from esam_mail.smtp import codes
from tests.protocol.harness import Running, client_tls

pytestmark = pytest.mark.protocol

DSN = (
    b"From: Mail Delivery System <MAILER-DAEMON@mx.other.test>\r\nTo: alice@esam.test\r\n"
    b"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn1@other.test>\r\n\r\n"
    b"Your message could not be delivered.\r\n"
)


def mx(r: Running) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", r.ports["smtp"], timeout=10)
    s.ehlo("mx.other.test")
    return s


def stored(r: Running, login: str) -> list[bytes]:
    root = r.cfg.store_path / login
    return [p.read_bytes() for d in ("new", "cur") for p in sorted((root / d).iterdir())]


def test_null_reverse_path_is_accepted_and_stored_as_empty_return_path(running: Running) -> None:
    """RFC 5321 4.5.5: DSNs are sent with a null reverse-path; they must be accepted."""
    running.add_mailbox("alice")
    s = mx(running)
    code, text = s.mail("")  # smtplib sends MAIL FROM:<>
    assert f"{code} {text.decode()}" == codes.R250_SENDER_OK
    assert s.rcpt("alice@esam.test")[0] == 250
    code, text = s.data(DSN)
    assert code == 250, text
    s.quit()
    (msg,) = stored(running, "alice")
    assert msg.startswith(b"Return-Path: <>\r\nReceived: from mx.other.test")
    assert msg.endswith(DSN)


def test_null_reverse_path_with_parameters_and_several_recipients(running: Running) -> None:
    running.add_mailbox("alice")
    running.add_mailbox("bob")
    s = mx(running)
    assert s.mail("", ["SIZE=200", "BODY=8BITMIME"])[0] == 250
    assert s.rcpt("alice@esam.test")[0] == 250
    assert s.rcpt("bob@esam.test")[0] == 250
    assert s.data(DSN)[0] == 250
    s.quit()
    assert len(stored(running, "alice")) == len(stored(running, "bob")) == 1


def test_nested_mail_after_null_reverse_path_is_503(running: Running) -> None:
    s = mx(running)
    assert s.mail("")[0] == 250
    code, text = s.mail("bob@other.test")
    assert code == 503 and text.startswith(b"5.5.1"), text
    s.quit()


def test_null_reverse_path_is_refused_on_submission(running: Running) -> None:
    """A subscriber sends as their own address; a null sender is never theirs."""
    running.add_mailbox("alice")
    with smtplib.SMTP("127.0.0.1", running.ports["submission"], timeout=10) as s:
        s.starttls(context=client_tls())
        s.login("alice", "correct horse")
        code, text = s.mail("")
        assert f"{code} {text.decode()}".startswith(codes.R553_SENDER_NOT_OWNED)


@pytest.mark.parametrize("sender", ["<>x", "<a b@c>", "<@other.test>", "<<>>"])
def test_malformed_reverse_paths_are_still_refused(running: Running, sender: str) -> None:
    """Only the exact null path "<>" is special; everything else goes through the parser."""
    s = mx(running)
    s.putcmd("MAIL", f"FROM:{sender}")
    code, text = s.getreply()
    assert code in (501, 553, 555), (code, text)
    assert s.rcpt("alice@esam.test")[0] == 503  # no transaction was opened
    s.quit()


def test_rejected_sender_is_logged_with_code_and_peer(running: Running, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    s = mx(running)
    s.putcmd("MAIL", "FROM:<bad\\\"@other.test>")
    code, _ = s.getreply()
    s.quit()
    assert code == 553
    recs = [r for r in caplog.records if r.getMessage() == "smtp.mail_rejected"]
    assert recs, caplog.text
    fields = recs[0].__dict__["fields"]
    assert fields["code"] == 553 and fields["peer"] == "127.0.0.1" and fields["listener"] == "mx"


def test_rejected_recipient_is_logged(running: Running, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    s = mx(running)
    s.mail("")
    assert s.rcpt("nobody@esam.test")[0] == 550
    s.quit()
    recs = [r for r in caplog.records if r.getMessage() == "smtp.rcpt_rejected"]
    assert recs and recs[0].__dict__["fields"]["code"] == 550, caplog.text


# -- aliases ------------------------------------------------------------------------------
def add_alias(r: Running, name: str, *targets: str) -> None:
    from esam_mail.directory.aliases import AliasDirectory

    r.lt.run(AliasDirectory(r.services.directory).add(name, list(targets)))


def test_rcpt_to_an_alias_delivers_to_every_target_once(running: Running) -> None:
    running.add_mailbox("alice")
    running.add_mailbox("bob")
    add_alias(running, "postmaster", "alice", "bob")
    s = mx(running)
    assert s.mail("")[0] == 250
    assert s.rcpt("PostMaster@esam.test")[0] == 250
    assert s.rcpt("alice@esam.test")[0] == 250  # alice also directly: still one copy
    assert s.data(DSN)[0] == 250
    s.quit()
    assert len(stored(running, "alice")) == 1 and len(stored(running, "bob")) == 1
    assert stored(running, "bob")[0].startswith(b"Return-Path: <>\r\n")


def test_alias_skips_disabled_targets_and_is_refused_only_when_none_is_left(running: Running) -> None:
    running.add_mailbox("alice")
    running.add_mailbox("bob")
    add_alias(running, "abuse", "alice", "bob")
    running.set_state("bob", "suspended")
    s = mx(running)
    s.mail("reporter@other.test")
    assert s.rcpt("abuse@esam.test")[0] == 250
    assert s.data(DSN)[0] == 250
    assert len(stored(running, "alice")) == 1 and stored(running, "bob") == []
    running.set_state("alice", "suspended")
    running.services.delivery._rcpt_cache.clear()  # the 2 s RCPT cache, not under test here
    s.mail("reporter@other.test")
    code, text = s.rcpt("abuse@esam.test")
    assert f"{code} {text.decode()}".startswith(codes.R550_MAILBOX_DISABLED)
    s.quit()


def test_alias_with_a_remote_target_queues_it(running: Running) -> None:
    running.add_mailbox("alice")
    add_alias(running, "hostmaster", "alice", "noc@other.test")
    s = mx(running)
    s.mail("bob@elsewhere.test")
    assert s.rcpt("hostmaster@esam.test")[0] == 250
    assert s.data(DSN)[0] == 250
    s.quit()
    assert len(stored(running, "alice")) == 1
    queued = [running.services.spool.get(i) for i in running.services.spool.ids()]
    assert [(e.mail_from, [r.address for r in e.rcpts]) for e in queued] == [("bob@elsewhere.test", ["noc@other.test"])]
