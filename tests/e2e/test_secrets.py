"""Secrets (R12): after a session at log level ``trace`` the log holds no password, no
AUTH payload and no message body, and nothing under the data folder is readable by
other users of the machine."""

from __future__ import annotations

import base64
import imaplib
import signal
import smtplib
import socket
import ssl
import stat
from typing import Any

import pytest

from tests.e2e.conftest import EsamProcess

pytestmark = pytest.mark.e2e

PASSWORD = "Sekret-Pa55-7f3a9c"
WRONG = "Wr0ng-Guess-b81d2e"
BODY_MARKER = "BODY-MARKER-5d0e7c1b"
SUBJECT_MARKER = "Subject-5d0e7c1b"


def _ctx(esam: EsamProcess) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(esam.cert))
    ctx.check_hostname = False
    return ctx


def _submit(esam: EsamProcess, mechanism: str) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", esam.ports["submission"], timeout=30)
    s.starttls(context=_ctx(esam))
    s.ehlo()
    s.user, s.password = "alice", PASSWORD
    auth = s.auth_plain if mechanism == "PLAIN" else s.auth_login
    code, _ = s.auth(mechanism, auth, initial_response_ok=mechanism == "PLAIN")
    assert code == 235
    return s


def _until(sock: ssl.SSLSocket, prefix: bytes) -> bytes:
    """Read until a line starting with ``prefix`` (the reply we wait for)."""
    buf = b""
    while not any(line.startswith(prefix) for line in buf.split(b"\r\n")):
        chunk = sock.recv(65536)
        assert chunk, buf
        buf += chunk
    return buf


def session(esam: EsamProcess) -> None:
    """SMTP AUTH PLAIN and LOGIN, IMAP LOGIN and AUTHENTICATE PLAIN, wrong passwords too."""
    with _submit(esam, "LOGIN") as s:
        s.noop()
    with _submit(esam, "PLAIN") as s:
        s.sendmail("alice@esam.test", ["alice@esam.test"],
                   f"From: alice@esam.test\r\nTo: alice@esam.test\r\nSubject: {SUBJECT_MARKER}\r\n\r\n"
                   f"{BODY_MARKER}\r\n".encode())
    with smtplib.SMTP("127.0.0.1", esam.ports["submission"], timeout=30) as s:
        s.starttls(context=_ctx(esam))
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login("alice", WRONG)

    m = imaplib.IMAP4_SSL("127.0.0.1", esam.ports["imaps"], ssl_context=_ctx(esam), timeout=30)
    with pytest.raises(imaplib.IMAP4.error):
        m.login("alice", WRONG)
    m.logout()
    m = imaplib.IMAP4_SSL("127.0.0.1", esam.ports["imaps"], ssl_context=_ctx(esam), timeout=30)
    m.login("alice", PASSWORD)
    m.logout()
    # SASL-IR (RFC 4959) and a password sent as a literal
    raw = _ctx(esam).wrap_socket(socket.create_connection(("127.0.0.1", esam.ports["imaps"]), timeout=30),
                                 server_hostname="127.0.0.1")
    ir = base64.b64encode(f"\0alice\0{PASSWORD}".encode())
    for cmd in (b"a AUTHENTICATE PLAIN " + ir + b"\r\n", b"b LOGOUT\r\n"):
        raw.sendall(cmd)
        _until(raw, cmd[:2])
    raw = _ctx(esam).wrap_socket(socket.create_connection(("127.0.0.1", esam.ports["imaps"]), timeout=30),
                                 server_hostname="127.0.0.1")
    raw.sendall(b"c LOGIN alice {%d}\r\n" % len(PASSWORD))
    _until(raw, b"+")
    raw.sendall(PASSWORD.encode() + b"\r\n")
    assert b"c OK" in _until(raw, b"c ")
    raw.close()

    m = imaplib.IMAP4_SSL("127.0.0.1", esam.ports["imaps"], ssl_context=_ctx(esam), timeout=30)
    m.authenticate("PLAIN", lambda _: f"\0alice\0{PASSWORD}".encode())
    m.select("INBOX")
    deadline_ok = False
    for _ in range(200):  # the submission reply came after delivery; poll briefly anyway
        typ, data = m.search(None, "ALL")
        if data[0]:
            deadline_ok = True
            break
        m.noop()
    assert deadline_ok
    typ, data = m.fetch(data[0].split()[-1], "(BODY[] BODYSTRUCTURE ENVELOPE)")
    assert typ == "OK" and BODY_MARKER.encode() in data[0][1]
    m.logout()


def forbidden() -> dict[str, bytes]:
    b64 = lambda raw: base64.b64encode(raw.encode())  # noqa: E731
    return {
        "password": PASSWORD.encode(),
        "wrong password": WRONG.encode(),
        "AUTH PLAIN payload": b64(f"\0alice\0{PASSWORD}"),
        "AUTH PLAIN payload (authzid)": b64(f"alice\0alice\0{PASSWORD}"),
        "AUTH LOGIN password": b64(PASSWORD),
        "AUTH LOGIN wrong password": b64(WRONG),
        "message body": BODY_MARKER.encode(),
    }


def test_trace_log_has_no_secrets_and_data_folder_is_private(make_esam: Any) -> None:
    esam: EsamProcess = make_esam(server={"log_level": "trace"})
    esam.esam("init")
    esam.add_mailbox("alice", PASSWORD)
    esam.start()
    session(esam)
    assert esam.stop(signal.SIGTERM) == 0
    log = esam.log.read_bytes()
    assert b"level=trace" in log, "the session was not logged at trace level"
    assert b"auth.ok" in log and b"auth.failed" in log
    leaks = [what for what, needle in forbidden().items() if needle in log]
    assert not leaks, leaks

    open_to_others = [
        f"{oct(stat.S_IMODE(p.lstat().st_mode))} {p.relative_to(esam.data)}"
        for p in [esam.data, *esam.data.rglob("*")]
        if not p.is_symlink() and p.lstat().st_mode & 0o007
    ]
    assert not open_to_others, open_to_others
    assert (esam.data / "directory.db").exists() and any((esam.data / "mail" / "alice").rglob("*,S*"))
