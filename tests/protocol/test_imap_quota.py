"""Per-mailbox quota from the directory reaches IMAP (QUOTA, APPEND -> NO [OVERQUOTA])."""

from __future__ import annotations

import imaplib

from tests.protocol.harness import Running, client_tls


def test_directory_quota_is_the_imap_quota(running: Running) -> None:
    running.add_mailbox("small", quota_bytes=4096)
    m = imaplib.IMAP4_SSL("127.0.0.1", running.ports["imaps"], ssl_context=client_tls(), timeout=10)
    m.login("small", "correct horse")
    typ, data = m.getquotaroot("INBOX")
    assert typ == "OK"
    assert b"STORAGE 0 4" in b" ".join(x for x in data[1] if isinstance(x, bytes))
    big = b"Subject: big\r\n\r\n" + b"z" * 5000 + b"\r\n"
    typ, data = m.append("INBOX", None, None, big)
    assert typ == "NO" and b"OVERQUOTA" in data[0]
    typ, _ = m.append("INBOX", None, None, b"Subject: small\r\n\r\nok\r\n")
    assert typ == "OK"
    m.logout()
