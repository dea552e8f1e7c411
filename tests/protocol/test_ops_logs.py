"""Logs: logfmt lines carrying the session id, and TRACE transcripts without credentials or bodies."""

from __future__ import annotations

import base64
import imaplib
import io
import logging
import re
import smtplib
from collections.abc import Iterator

import pytest

from esam_mail.log import LogfmtFormatter, TranscriptFilter, set_level
from tests.protocol.harness import Running, client_tls

pytestmark = pytest.mark.protocol

PASSWORD = "Sup3r-secret-pw"
BODY = "CONFIDENTIAL-BODY-TEXT"
LINE = re.compile(r"^ts=\S+Z level=(trace|debug|info|warning|error) logger=\S+ session=(\S+) msg=\S+")


@pytest.fixture
def trace_log() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(LogfmtFormatter())
    handler.addFilter(TranscriptFilter())
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    set_level("trace")
    try:
        yield buf
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
        logging.getLogger("mail.log").setLevel(logging.WARNING)


def test_trace_transcripts_redact_credentials_and_keep_session_ids(running: Running, trace_log: io.StringIO) -> None:
    running.add_mailbox("alice", PASSWORD)
    with smtplib.SMTP_SSL("127.0.0.1", running.ports["submissions"], context=client_tls(), timeout=10) as s:
        s.ehlo("client.example")
        s.user, s.password = "alice", PASSWORD
        s.auth("PLAIN", s.auth_plain)  # initial response: the credentials are on the command line
        s.mail("alice@esam.test")
        code, reply = s.rcpt("nobody@esam.test")
        assert code == 550
        s.rcpt("alice@esam.test")
        code, _ = s.data(f"From: alice@esam.test\r\nSubject: t\r\n\r\n{BODY}\r\n".encode())
        assert code == 250
    im = imaplib.IMAP4_SSL("127.0.0.1", running.ports["imaps"], ssl_context=client_tls(), timeout=10)
    im.login("alice", PASSWORD)
    im.select("INBOX")
    im.logout()

    text = trace_log.getvalue()
    secrets = [PASSWORD, base64.b64encode(f"\0alice\0{PASSWORD}".encode()).decode(), BODY]
    for secret in secrets:
        assert secret not in text
    lines = text.splitlines()
    assert lines and all(LINE.match(line) for line in lines if line.startswith("ts=")), lines[:3]
    # the transcripts are there, redacted
    assert re.search(r"AUTH PLAIN (\*+|<redacted>)", text), text[-2000:]
    assert re.search(r"event=imap.command session=\S+ line=b'\S+ LOGIN <redacted>'", text)
    assert re.search(r"(?i)RCPT TO:<nobody@esam.test>", text)
    assert "250-AUTH LOGIN PLAIN" in text  # server lines are not mangled by the redaction
    # the session id of the error reply leads to that session's log lines
    sid = re.search(rb"\(session (\w+)\)", reply).group(1).decode()  # type: ignore[union-attr]
    mine = [line for line in lines if f"session={sid} " in line]
    assert any("msg=smtp.connect" in line for line in mine)
    assert any("rcpt to:<nobody@esam.test>" in line.lower() for line in mine)


def test_info_level_has_no_transcript(running: Running) -> None:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    set_level("info")
    try:
        with smtplib.SMTP("127.0.0.1", running.ports["smtp"], timeout=10) as s:
            s.ehlo("client.example")
            s.mail("x@example.org")
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
    text = buf.getvalue()
    assert "msg=smtp.connect" in text and "MAIL FROM" not in text
