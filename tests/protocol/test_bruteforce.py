"""Brute force over the wire (R12): repeated failed IMAP LOGINs and SMTP AUTHs from one
address lock that (login, address) pair -- the right password then fails too from
there --, an ``auth.lock`` audit event is written, and the owner still logs in from
another address (127.0.0.2: Linux routes all of 127/8 to lo).  Counters live in the
directory database, so a second server process on the same database sees the lock.

The policy itself (keys, thresholds, growing delay) is unit-tested in
tests/unit/test_auth.py.
"""

from __future__ import annotations

import imaplib
import smtplib
import socket
from typing import Any

import pytest

from tests.protocol.harness import Running, client_tls

pytestmark = pytest.mark.protocol

PASSWORD = "right-Passw0rd-1"
LIMIT = 3
AUTH = {"max_failures": LIMIT, "lock_seconds": 120}


class IMAPFrom(imaplib.IMAP4_SSL):
    """IMAPS client whose socket is bound to a given source address."""

    def __init__(self, source: str, port: int) -> None:
        self.source = source
        super().__init__("127.0.0.1", port, ssl_context=client_tls(), timeout=30)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout, source_address=(self.source, 0))
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)


def imap_login(r: Running, login: str, password: str, source: str = "127.0.0.1") -> bool:
    m = IMAPFrom(source, r.ports["imaps"])
    try:
        m.login(login, password)
    except imaplib.IMAP4.error as exc:
        assert b"AUTHENTICATIONFAILED" in str(exc).encode() or "failed" in str(exc).lower(), exc
        return False
    finally:
        try:
            m.logout()
        except (imaplib.IMAP4.error, OSError):
            pass
    return True


def smtp_login(r: Running, login: str, password: str, source: str = "127.0.0.1") -> bool:
    with smtplib.SMTP_SSL("127.0.0.1", r.ports["submissions"], context=client_tls(), timeout=30,
                          source_address=(source, 0)) as s:
        try:
            s.login(login, password)
        except smtplib.SMTPAuthenticationError as exc:
            assert exc.smtp_code == 535, exc
            return False
    return True


def locks(r: Running) -> list[Any]:
    return r.lt.run(r.services.directory.audit_list(action="auth.lock"))


def test_imap_logins_from_one_address_get_locked_owner_still_gets_in_elsewhere(make_running: Any) -> None:
    r: Running = make_running(auth=AUTH)
    r.add_mailbox("alice", PASSWORD)
    assert imap_login(r, "alice", PASSWORD)
    for i in range(LIMIT):
        assert not imap_login(r, "alice", f"guess-{i}")
    assert not imap_login(r, "alice", PASSWORD), "the right password must fail from a locked address"
    assert imap_login(r, "alice", PASSWORD, source="127.0.0.2"), "the owner is locked out everywhere"
    events = locks(r)
    assert [(e.action, e.outcome) for e in events] == [("auth.lock", "denied")]
    assert events[0].target == "ip:127.0.0.1" or events[0].target.startswith("login:alice")
    assert events[0].detail["peer"] == "127.0.0.1"


def test_smtp_auth_from_one_address_gets_locked_owner_still_gets_in_elsewhere(make_running: Any) -> None:
    r: Running = make_running(auth=AUTH)
    r.add_mailbox("bob", PASSWORD)
    for i in range(LIMIT):
        assert not smtp_login(r, "bob", f"guess-{i}")
    assert not smtp_login(r, "bob", PASSWORD)
    assert smtp_login(r, "bob", PASSWORD, source="127.0.0.2")
    # the lock is per (login, address) for both protocols: IMAP from 127.0.0.1 is refused too
    assert not imap_login(r, "bob", PASSWORD)
    assert [e.action for e in locks(r)] == ["auth.lock"]


def test_lock_is_shared_by_two_servers_on_one_directory(make_running: Any) -> None:
    first: Running = make_running(auth=AUTH)
    second: Running = make_running(auth=AUTH)  # same data folder, same directory DB
    assert first.cfg.directory_url == second.cfg.directory_url
    first.add_mailbox("carol", PASSWORD)
    assert not imap_login(first, "carol", "guess-1")
    assert not smtp_login(second, "carol", "guess-2")
    assert not imap_login(first, "carol", "guess-3")
    assert not imap_login(second, "carol", PASSWORD), "the other process does not see the lock"
    assert smtp_login(second, "carol", PASSWORD, source="127.0.0.2")

